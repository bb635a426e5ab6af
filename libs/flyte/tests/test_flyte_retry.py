"""A pipeline's training task that fails once resumes on its retry: the SFT task body (`run_training`, as the task runs
it) with a pipeline config's recipe, which checkpoints by default, is killed after a checkpoint; the retry, in a fresh
working folder with only Flyte's checkpoint store of the failed attempt (what Flyte hands a retried task), starts at
that checkpoint and ends with the weights of a run that never failed."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from llmft.core.datasets import read_manifest
from llmft.flyte.config import parse_config
from llmft.flyte.training import run_training
from llmft.testing import FirstStep, Interrupted, StopAfterSaving, write_chat_dataset
from llmft.train_sft.train import train_sft

STEPS = 8


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMFT_CACHE", str(tmp_path / "cache"))


@contextmanager
def task_attempt(work: Path, checkpoint: Any) -> Iterator[None]:
    """What a task attempt sees on a cluster: its own empty working folder and Flyte's checkpoint object."""
    from flytekit.core.context_manager import ExecutionParameters, FlyteContextManager

    ctx = FlyteContextManager.current_context()
    builder = ExecutionParameters.new_builder(ctx.user_space_params)
    work.mkdir(parents=True)
    builder.working_dir = str(work)
    builder.checkpoint = checkpoint
    state = ctx.execution_state.with_params(user_space_params=builder.build())
    with FlyteContextManager.with_context(ctx.with_execution_state(state)):
        yield


def with_callbacks(*extra: Any) -> Any:
    """The stage's train function with `extra` callbacks after the task's own (the checkpoint mirror first)."""

    def train(*args: Any, callbacks: list, **kwargs: Any) -> Any:
        kwargs["callbacks"] = [*callbacks, *extra]
        return train_sft(*args, **kwargs)

    return train


def weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def test_a_training_task_that_fails_once_resumes_from_its_checkpoint_on_the_retry(tmp_path: Path) -> None:
    from flytekit.core.checkpointer import SyncCheckpoint
    from flytekit.types.directory import FlyteDirectory

    data = write_chat_dataset(tmp_path / "data", train_rows=64, eval_rows=8)
    dataset, folder = read_manifest(data), FlyteDirectory(str(data))
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

    with task_attempt(tmp_path / "never-failed", SyncCheckpoint(checkpoint_dest=str(tmp_path / "store-0"))):
        _, full = run_training(train_sft, request, dataset, folder, None, "SFT")

    with task_attempt(tmp_path / "attempt-1", SyncCheckpoint(checkpoint_dest=str(tmp_path / "store-1"))):
        with pytest.raises(Interrupted):
            run_training(with_callbacks(StopAfterSaving(save)), request, dataset, folder, None, "SFT")

    first = FirstStep()
    retry = SyncCheckpoint(checkpoint_dest=str(tmp_path / "store-2"), checkpoint_src=str(tmp_path / "store-1"))
    with task_attempt(tmp_path / "attempt-2", retry):
        result, model = run_training(with_callbacks(first), request, dataset, folder, None, "SFT")

    assert first.started_at == save
    assert result.artifact.metrics.steps == STEPS
    ours, theirs = weights(Path(model.path)), weights(Path(full.path))
    assert max(float((ours[k] - theirs[k]).abs().max()) for k in theirs) < 1e-4
