"""The RLHF workflow end to end under flytekit's local execution, with short runs: demo data → SFT → reward model →
PPO and DPO → the held-out comparison. Own file, so its process forks the Elastic workers before any other test has
run torch in it (see test_rlhf_tasks.py in the stage)."""

from pathlib import Path

import pytest

from llmft.orchestration.defaults import DPO, EVALUATION, PPO, REWARD, RLHF_SFT
from llmft.orchestration.rlhf import rlhf_workflow


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMFT_CACHE", str(tmp_path / "llmft-cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # a fresh ~/.flyte local cache
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def shorter(request, steps: int):  # type: ignore[no-untyped-def]
    out = type(request)()
    out.CopyFrom(request)
    out.recipe.schedule.max_steps = steps
    return out


def test_rlhf_workflow_chains_sft_reward_model_ppo_and_dpo_into_one_comparison() -> None:
    evaluation = type(EVALUATION)()
    evaluation.CopyFrom(EVALUATION)
    evaluation.prompts = 8
    ppo = shorter(PPO, 2)
    ppo.ppo.eval_prompts = 8
    workflow = rlhf_workflow(shorter(RLHF_SFT, 4), shorter(REWARD, 4), ppo, shorter(DPO, 2), evaluation)
    out = workflow()
    sft_lineage = out.sft.fingerprint.removeprefix("sha256:")[:12]
    assert out.reward_model.reward_model.base_model.endswith(sft_lineage)  # the reward model grew from the SFT model
    assert out.ppo.policy.base_model.endswith(sft_lineage) and out.dpo.policy.base_model.endswith(sft_lineage)
    assert out.ppo.policy.metrics.steps == 2 and out.dpo.policy.metrics.steps == 2
    assert [p.name for p in out.comparison.policies] == ["sft", "ppo", "dpo"]
    assert out.comparison.prompts == 8
    assert out.comparison.reference_fingerprint == out.sft.fingerprint
    assert out.comparison.reward_model_fingerprint == out.reward_model.reward_model.fingerprint
    assert (Path(out.ppo_model.download()) / "model.safetensors").is_file()
