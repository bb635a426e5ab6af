"""The reward model and DPO train on the shared path: a run stopped after step k starts again from its checkpoint
folder at k and ends where an uninterrupted run ends (held-out loss and weights)."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llmft.core.training import latest_checkpoint
from llmft.proto.rlhf.v1 import rlhf_pb2 as R
from llmft.proto.training.v1 import training_pb2 as T
from llmft.rlhf.dpo import train_dpo
from llmft.rlhf.reward import train_reward_model
from llmft.testing import FirstStep, Interrupted, StopAfterSaving, write_preference_dataset

STEPS, STOP = 4, 2


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMFT_CACHE", str(tmp_path / "cache"))


def recipe() -> T.TrainingRecipe:
    return T.TrainingRecipe(
        max_length=64,
        seed=5,
        schedule=T.Schedule(max_steps=STEPS, learning_rate=2e-3, per_device_batch_size=4),
        checkpoint=T.CheckpointConfig(save_steps=STOP, save_total_limit=2),
    )


METHODS: dict[str, tuple[Callable[..., Any], Callable[[], Any]]] = {
    "reward": (train_reward_model, lambda: R.RewardModelRequest(base_model="llmft/tiny-llama", recipe=recipe())),
    "dpo": (train_dpo, lambda: R.DpoRequest(base_model="llmft/tiny-llama", recipe=recipe())),
}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_stopped_run_resumes_and_ends_as_an_uninterrupted_one(method: str, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    train, request = METHODS[method]
    data = write_preference_dataset(tmp_path / "data", train_rows=16, eval_rows=4)
    full = train(request(), data, tmp_path / "full", checkpoint_dir=tmp_path / "full-ckpt").report
    with pytest.raises(Interrupted):
        train(
            request(), data, tmp_path / "resumed", checkpoint_dir=tmp_path / "ckpt", callbacks=[StopAfterSaving(STOP)]
        )
    latest = latest_checkpoint(tmp_path / "ckpt")
    assert latest is not None and latest.name == f"checkpoint-{STOP}"
    first = FirstStep()
    resumed = train(request(), data, tmp_path / "resumed", checkpoint_dir=tmp_path / "ckpt", callbacks=[first]).report
    assert first.started_at == STOP
    artifact = resumed.reward_model if method == "reward" else resumed.policy
    expected = full.reward_model if method == "reward" else full.policy
    assert artifact.metrics.steps == STEPS
    # The "before" evaluation of the resumed run is the first attempt's, restored from its log history.
    assert artifact.metrics.eval_before.loss == pytest.approx(expected.metrics.eval_before.loss, abs=1e-6)
    assert artifact.metrics.eval_after.loss == pytest.approx(expected.metrics.eval_after.loss, abs=1e-4)
    ours, theirs = load_file(str(tmp_path / "resumed/model.safetensors")), load_file(
        str(tmp_path / "full/model.safetensors")
    )
    assert max(float((ours[k] - theirs[k]).abs().max()) for k in theirs) < 1e-4


def test_a_stopped_ppo_run_resumes_from_its_checkpoint_and_ends_as_an_uninterrupted_one(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from llmft.rlhf.ppo import POLICY_LOSS, VALUE_WEIGHTS, train_ppo

    data = write_preference_dataset(tmp_path / "data", train_rows=16, eval_rows=4)
    train_reward_model(R.RewardModelRequest(base_model="llmft/tiny-llama", recipe=recipe()), data, tmp_path / "rm")

    def request() -> R.PpoRequest:
        return R.PpoRequest(base_model="llmft/tiny-llama", recipe=recipe(), ppo=R.PpoConfig(response_length=6))

    full = train_ppo(
        request(), data, tmp_path / "full", checkpoint_dir=tmp_path / "full-ckpt", reward_model_dir=tmp_path / "rm"
    ).report
    with pytest.raises(Interrupted):
        train_ppo(
            request(),
            data,
            tmp_path / "resumed",
            checkpoint_dir=tmp_path / "ckpt",
            callbacks=[StopAfterSaving(STOP)],
            reward_model_dir=tmp_path / "rm",
        )
    latest = latest_checkpoint(tmp_path / "ckpt")
    assert latest is not None and latest.name == f"checkpoint-{STOP}" and (latest / VALUE_WEIGHTS).is_file()
    first = FirstStep()
    resumed = train_ppo(
        request(),
        data,
        tmp_path / "resumed",
        checkpoint_dir=tmp_path / "ckpt",
        callbacks=[first],
        reward_model_dir=tmp_path / "rm",
    ).report
    assert first.started_at == STOP
    assert resumed.policy.metrics.steps == STEPS and resumed.episodes == full.episodes == STEPS * 4
    ours, theirs = load_file(str(tmp_path / "resumed/model.safetensors")), load_file(
        str(tmp_path / "full/model.safetensors")
    )
    assert max(float((ours[k] - theirs[k]).abs().max()) for k in theirs) < 1e-4
    assert resumed.mean_reward_after == pytest.approx(full.mean_reward_after, abs=1e-4)
    # train_loss is the policy loss over the whole run, the first attempt's steps included: the mean of every step's.
    history = json.loads((tmp_path / f"full-ckpt/checkpoint-{STEPS}/trainer_state.json").read_text())["log_history"]
    losses = {e["step"]: e[POLICY_LOSS] for e in history if POLICY_LOSS in e}
    assert sorted(losses) == list(range(1, STEPS + 1)) and len(set(losses.values())) > 1
    assert full.policy.metrics.train_loss == pytest.approx(sum(losses.values()) / STEPS, rel=1e-6)
    assert resumed.policy.metrics.train_loss == pytest.approx(full.policy.metrics.train_loss, abs=1e-4)
