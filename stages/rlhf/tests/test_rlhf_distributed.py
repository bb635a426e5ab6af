"""The reward model and DPO under ZeRO-2 with 2 local processes (torchrun, gloo): the held-out evaluation before
training runs inside `train` (deepspeed refuses an evaluation before its engine exists), the run trains its steps and
rank 0 alone writes the model and its artifact. PPO data-parallel (DDP) over 2 processes, checkpoint included. One
small run each: the CI budget."""

from pathlib import Path

import pytest
import yaml

from llmft.core.training import read_artifact
from llmft.testing import run_distributed, write_preference_dataset


@pytest.mark.parametrize("command", ["reward", "dpo"])
def test_reward_model_and_dpo_train_under_zero2_with_two_processes(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMFT_CACHE", str(tmp_path / "cache"))
    data = write_preference_dataset(tmp_path / "data", train_rows=16, eval_rows=4)
    recipe = {
        "zero": {"stage": 2},
        "max_length": 48,
        "seed": 0,
        "schedule": {"learning_rate": 0.002, "max_steps": 2, "per_device_batch_size": 2},
        "checkpoint": {"save_steps": 2},
    }
    config = tmp_path / "request.yaml"
    config.write_text(yaml.safe_dump({"base_model": "llmft/tiny-llama", "recipe": recipe}))
    out = tmp_path / "model"
    checkpoints = tmp_path / "checkpoints"
    args = [
        command,
        "--config",
        str(config),
        "--data",
        str(data),
        "--out",
        str(out),
        "--checkpoint-dir",
        str(checkpoints),
    ]
    run_distributed("llmft.rlhf", args)
    # ZeRO-2 partitioned the optimizer state between the two ranks: each saved its own shard.
    shards = sorted(p.name for p in (checkpoints / "checkpoint-2").glob("global_step2/*optim_states.pt"))
    assert len(shards) == 2 and "zero_pp_rank_0" in shards[0] and "zero_pp_rank_1" in shards[1]
    artifact = read_artifact(out)
    assert artifact is not None and artifact.metrics.steps == 2
    assert artifact.metrics.eval_before.loss > 0 and artifact.metrics.eval_after.loss > 0
    assert artifact.provenance.stage == "llmft.rlhf"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model-")]  # no staging folder left behind


def test_ppo_trains_data_parallel_over_two_processes_and_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmft.proto.rlhf.v1 import rlhf_pb2 as R
    from llmft.proto.training.v1 import training_pb2 as T
    from llmft.rlhf.reward import train_reward_model

    monkeypatch.setenv("LLMFT_CACHE", str(tmp_path / "cache"))
    data = write_preference_dataset(tmp_path / "data", train_rows=16, eval_rows=4)
    small = T.TrainingRecipe(
        max_length=48, schedule=T.Schedule(max_steps=2, learning_rate=1e-3, per_device_batch_size=4)
    )
    train_reward_model(R.RewardModelRequest(base_model="llmft/tiny-llama", recipe=small), data, tmp_path / "rm")
    request = {
        "base_model": "llmft/tiny-llama",
        "ppo": {"response_length": 6, "eval_prompts": 4},
        "recipe": {
            "max_length": 48,
            "schedule": {"learning_rate": 0.001, "max_steps": 2, "per_device_batch_size": 2},
            "checkpoint": {"save_steps": 2},
        },
    }
    config = tmp_path / "request.yaml"
    config.write_text(yaml.safe_dump(request))
    out, checkpoints = tmp_path / "ppo", tmp_path / "checkpoints"
    args = ["ppo", "--config", str(config), "--data", str(data), "--reward-model-dir", str(tmp_path / "rm")]
    run_distributed("llmft.rlhf", [*args, "--out", str(out), "--checkpoint-dir", str(checkpoints)])
    artifact = read_artifact(out)
    assert artifact is not None and artifact.metrics.steps == 2
    # Each update took 2 prompts on each of the 2 processes.
    state = yaml.safe_load((checkpoints / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["episode"] == 2 * 2 * 2 and (checkpoints / "checkpoint-2" / "value_model.safetensors").is_file()
