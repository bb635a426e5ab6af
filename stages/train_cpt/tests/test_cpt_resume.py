"""Stop a run after step k, start it again: it resumes at k and ends where an uninterrupted run ends. Once from a
plain checkpoint folder (how it works without Flyte), once through Flyte's checkpoint store (how a retried task
resumes), with flytekit's own SyncCheckpoint on the local filesystem."""

from pathlib import Path

import pytest

from llmft.core.training import latest_checkpoint
from llmft.flyte.training import FlyteCheckpoints, restore_flyte_checkpoints
from llmft.proto.training.v1 import training_pb2 as T
from llmft.testing import FirstStep, Interrupted, StopAfterSaving, write_text_dataset
from llmft.train_cpt.train import train_cpt

STEPS, STOP = 8, 4


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMFT_CACHE", str(tmp_path / "cache"))


def request() -> T.TrainingRequest:
    recipe = T.TrainingRecipe(
        max_length=64,
        packing=True,
        seed=3,
        schedule=T.Schedule(max_steps=STEPS, learning_rate=3e-3, per_device_batch_size=4),
        checkpoint=T.CheckpointConfig(save_steps=STOP, save_total_limit=3),
    )
    return T.TrainingRequest(base_model="llmft/tiny-llama", recipe=recipe)


def weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def assert_same_run(resumed: T.ModelArtifact, full: T.ModelArtifact, resumed_dir: Path, full_dir: Path) -> None:
    assert resumed.metrics.steps == full.metrics.steps == STEPS
    assert abs(resumed.metrics.eval_after.loss - full.metrics.eval_after.loss) < 1e-4
    ours, theirs = weights(resumed_dir), weights(full_dir)
    assert max(float((ours[k] - theirs[k]).abs().max()) for k in theirs) < 1e-4


def test_a_stopped_run_resumes_from_its_checkpoint_folder(tmp_path: Path) -> None:
    data = write_text_dataset(tmp_path / "data", train_docs=120)
    full = train_cpt(request(), data, tmp_path / "full", checkpoint_dir=tmp_path / "full-ckpt").artifact
    with pytest.raises(Interrupted):
        train_cpt(
            request(), data, tmp_path / "resumed", checkpoint_dir=tmp_path / "ckpt", callbacks=[StopAfterSaving(STOP)]
        )
    latest = latest_checkpoint(tmp_path / "ckpt")
    assert latest is not None and latest.name == f"checkpoint-{STOP}"
    first = FirstStep()
    resumed = train_cpt(
        request(), data, tmp_path / "resumed", checkpoint_dir=tmp_path / "ckpt", callbacks=[first]
    ).artifact
    assert first.started_at == STOP
    assert_same_run(resumed, full, tmp_path / "resumed", tmp_path / "full")
    # The metrics cover the whole run, the killed attempt's steps included, not only the resumed ones.
    assert resumed.metrics.train_loss == pytest.approx(full.metrics.train_loss, abs=1e-5)
    assert resumed.metrics.train_tokens == full.metrics.train_tokens
    import json

    def clock(checkpoint: str) -> list[float]:
        state = json.loads((tmp_path / "ckpt" / checkpoint / "trainer_state.json").read_text())
        return [e["run_seconds"] for e in state["log_history"] if "run_seconds" in e]

    # The resumed attempt's clock starts where the checkpoint's stopped: it keeps rising across the resume, and the
    # run's seconds are at least all of it.
    at_stop, at_end = clock(f"checkpoint-{STOP}"), clock(f"checkpoint-{STEPS}")
    assert at_end[: len(at_stop)] == at_stop and at_end[len(at_stop)] > at_stop[-1] > 0
    assert resumed.metrics.train_seconds >= at_end[-1]
    assert resumed.metrics.tokens_per_second == pytest.approx(
        resumed.metrics.train_tokens / resumed.metrics.train_seconds
    )


def test_a_retried_task_resumes_from_flytes_checkpoint_store(tmp_path: Path) -> None:
    from flytekit.core.checkpointer import SyncCheckpoint

    data = write_text_dataset(tmp_path / "data", train_docs=120)
    full = train_cpt(request(), data, tmp_path / "full", checkpoint_dir=tmp_path / "full-ckpt").artifact

    first_attempt = SyncCheckpoint(checkpoint_dest=str(tmp_path / "store-1"))
    with pytest.raises(Interrupted):
        train_cpt(
            request(),
            data,
            tmp_path / "attempt-1",
            checkpoint_dir=tmp_path / "pod-1",
            callbacks=[FlyteCheckpoints(first_attempt), StopAfterSaving(STOP)],
        )
    assert (tmp_path / "store-1" / "node-0" / f"checkpoint-{STOP}" / "trainer_state.json").is_file()

    # The retry runs in a fresh pod: nothing local survives, only the checkpoint store.
    retry = SyncCheckpoint(checkpoint_dest=str(tmp_path / "store-2"), checkpoint_src=str(tmp_path / "store-1"))
    restored = restore_flyte_checkpoints(tmp_path / "pod-2", retry)
    assert restored is not None and restored.name == f"checkpoint-{STOP}"
    first = FirstStep()
    resumed = train_cpt(
        request(),
        data,
        tmp_path / "attempt-2",
        checkpoint_dir=tmp_path / "pod-2",
        callbacks=[FlyteCheckpoints(retry), first],
    ).artifact
    assert first.started_at == STOP
    assert_same_run(resumed, full, tmp_path / "attempt-2", tmp_path / "full")
    assert (tmp_path / "store-2" / "node-0" / f"checkpoint-{STEPS}").is_dir()
