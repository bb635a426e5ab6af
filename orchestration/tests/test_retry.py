"""A pipeline's training task that fails once resumes on its retry, through flytekit's own task entrypoint: the SFT task
runs as a pod runs it (`pyflyte-execute`, with the Elastic launch it is built with) with a pipeline config's recipe,
which checkpoints by default. The first attempt dies right after a checkpoint; the retry gets what Flyte hands a
retried task (a fresh output location, a checkpoint path of its own and `--prev-checkpoint` pointing at the failed
attempt's), starts at that checkpoint and ends with the weights of a run that never failed."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from llmft.core.datasets import read_manifest
from llmft.orchestration.config import parse_config
from llmft.testing import write_chat_dataset

STEPS = 8

# Loaded by the task's interpreter (PYTHONPATH): wraps the stage's train function with callbacks after the task's own
# (the checkpoint mirror first). One records the step the run starts from; with LLMFT_TEST_STOP_AFTER the other kills
# the run right after that step's checkpoint is written and mirrored.
FAULTS = textwrap.dedent(
    """
    import os

    if os.environ.get("LLMFT_TEST_STARTED_AT"):
        from transformers import TrainerCallback

        import llmft.train_sft.train as stage
        from llmft.testing import StopAfterSaving

        original = stage.train_sft

        class Started(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                with open(os.environ["LLMFT_TEST_STARTED_AT"], "w") as out:
                    out.write(str(state.global_step))

        def train_sft(*args, callbacks, **kwargs):
            stop = int(os.environ.get("LLMFT_TEST_STOP_AFTER") or 0)
            extra = [Started()] + ([StopAfterSaving(stop)] if stop else [])
            return original(*args, callbacks=[*callbacks, *extra], **kwargs)

        stage.train_sft = train_sft
    """
)


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMFT_CACHE", str(tmp_path / "cache"))


def weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def test_a_training_task_that_fails_once_resumes_from_its_checkpoint_on_the_retry(tmp_path: Path) -> None:
    from flyteidl.core import literals_pb2
    from flytekit.core.context_manager import FlyteContextManager
    from flytekit.core.type_engine import TypeEngine
    from flytekit.models.literals import LiteralMap
    from flytekit.types.directory import FlyteDirectory

    from llmft.train_sft.tasks import train

    data = write_chat_dataset(tmp_path / "data", train_rows=64, eval_rows=8)
    config = {
        "name": "retry",
        "base_model": "llmft/tiny-llama",
        "chat": {"sources": [{"local": {"patterns": [str(data)]}}]},
        "sft": {"recipe": {"max_length": 64, "seed": 1, "schedule": {"max_steps": STEPS, "learning_rate": 0.003,
                                                                      "per_device_batch_size": 4}}},  # fmt: skip
    }
    request = parse_config(config).sft
    save = request.recipe.checkpoint.save_steps
    assert 0 < save < STEPS  # the pipeline's default: checkpoints with no `checkpoint` section in the recipe

    ctx = FlyteContextManager.current_context()
    given = {"request": request, "dataset": read_manifest(data), "data": FlyteDirectory(str(data)), "run_name": ""}
    hints = {name: train.python_interface.inputs[name] for name in given}
    inputs = tmp_path / "inputs.pb"
    inputs.write_bytes(TypeEngine.dict_to_literal_map(ctx, given, hints).to_flyte_idl().SerializeToString())
    (tmp_path / "faults").mkdir()
    (tmp_path / "faults" / "sitecustomize.py").write_text(FAULTS)

    def attempt(name: str, stop_after: int = 0, previous: str = "") -> tuple[subprocess.CompletedProcess, Path, int]:
        """One attempt of the task, as a pod runs it; what it printed, where its outputs went, its first step."""
        out, started = tmp_path / name / "outputs", tmp_path / name / "started_at"
        env = {**os.environ, "LLMFT_TEST_STARTED_AT": str(started), "LLMFT_TEST_STOP_AFTER": str(stop_after)}
        env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "faults"), *(os.path.abspath(p) for p in sys.path if p)])
        env["HOME"] = str(tmp_path / "home")
        command = [
            sys.executable, "-c", "from flytekit.bin.entrypoint import execute_task_cmd; execute_task_cmd()",
            "--inputs", str(inputs), "--output-prefix", str(out),
            "--raw-output-data-prefix", str(tmp_path / name / "raw"),
            "--checkpoint-path", str(tmp_path / name / "checkpoints"),
            *(["--prev-checkpoint", previous] if previous else []),
            "--resolver", "flytekit.core.python_auto_container.default_task_resolver",
            "--", "task-module", "llmft.train_sft.tasks", "task-name", "train",
        ]  # fmt: skip
        (tmp_path / name).mkdir()
        run = subprocess.run(command, env=env, cwd=tmp_path / name, capture_output=True, text=True, timeout=600)
        return run, out, int(started.read_text()) if started.is_file() else -1

    def outputs(out: Path) -> Any:
        pb = literals_pb2.LiteralMap()
        pb.ParseFromString((out / "outputs.pb").read_bytes())
        return TypeEngine.literal_map_to_kwargs(ctx, LiteralMap.from_flyte_idl(pb), train.python_interface.outputs)

    run, out, started = attempt("never-failed")
    assert (out / "outputs.pb").is_file(), run.stderr[-3000:]
    full = outputs(out)

    run, out, started = attempt("attempt-1", stop_after=save)
    assert not (out / "outputs.pb").is_file() and "stopped at step" in run.stdout + run.stderr
    assert started == 0
    mirrored = tmp_path / "attempt-1" / "checkpoints"
    assert any(mirrored.rglob("trainer_state.json")), "the failed attempt left no checkpoint in Flyte's store"

    run, out, started = attempt("attempt-2", previous=str(mirrored))
    assert (out / "outputs.pb").is_file(), run.stderr[-3000:]
    resumed = outputs(out)
    assert started == save  # it began at the failed attempt's checkpoint, not at step 0
    assert resumed["artifact"].metrics.steps == STEPS
    ours, theirs = weights(Path(resumed["model"].download())), weights(Path(full["model"].download()))
    assert max(float((ours[k] - theirs[k]).abs().max()) for k in theirs) < 1e-4
