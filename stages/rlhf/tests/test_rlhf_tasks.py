"""The stage's tasks under flytekit's local execution: the reward model and DPO train through the shared training task
body (Elastic launch, checkpoints mirrored into Flyte's checkpoint store, Decks) and hand back report and folder.
Own file, so its process forks the Elastic worker before another test has run torch in it: run after the
batch-inference workflow test in one process, the forked worker hung (passes alone in ~30 s; see the issue note)."""

from pathlib import Path
from typing import NamedTuple

import pytest

from llmft.core.datasets import read_manifest
from llmft.proto.training.v1 import training_pb2 as T


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMFT_CACHE", str(tmp_path / "llmft-cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # a fresh ~/.flyte local cache
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_reward_model_and_dpo_tasks_train_and_hand_back_report_and_folder(tmp_path: Path) -> None:
    from flytekit import workflow
    from flytekit.types.directory import FlyteDirectory

    from llmft.core.training import read_artifact
    from llmft.flyte.training import training_node
    from llmft.proto.rlhf.v1 import rlhf_pb2 as R
    from llmft.rlhf.tasks import dpo, reward_model
    from llmft.testing import write_preference_dataset

    data = write_preference_dataset(tmp_path / "prefs", train_rows=16, eval_rows=4)
    manifest = read_manifest(data)
    recipe = T.TrainingRecipe(
        max_length=64,
        schedule=T.Schedule(max_steps=2, learning_rate=1e-3, per_device_batch_size=4),
        checkpoint=T.CheckpointConfig(save_steps=1),
    )
    rm_request = R.RewardModelRequest(base_model="llmft/tiny-llama", recipe=recipe)
    dpo_request = R.DpoRequest(base_model="llmft/tiny-llama", recipe=recipe)

    class Trained(NamedTuple):
        reward: R.RewardModelReport
        reward_model: FlyteDirectory
        dpo: R.DpoReport

    @workflow
    def preferences() -> Trained:
        rm = training_node(reward_model, rm_request)(
            request=rm_request, dataset=manifest, data=FlyteDirectory(str(data))
        )
        policy = dpo(request=dpo_request, dataset=manifest, data=FlyteDirectory(str(data)))
        return Trained(reward=rm.report, reward_model=rm.model, dpo=policy.report)

    out = preferences()
    assert out.reward.reward_model.metrics.steps == 2 and out.dpo.policy.metrics.steps == 2
    assert read_artifact(Path(out.reward_model.download())) == out.reward.reward_model
    assert out.dpo.policy.provenance.stage == "llmft.rlhf"
