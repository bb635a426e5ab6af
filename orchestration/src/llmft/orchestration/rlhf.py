"""RLHF end to end on the synthetic demo data (llmft.rlhf.demo): SFT → reward model → PPO, and SFT → DPO, then the
SFT, PPO and DPO policies answer the same held-out questions and the reward model scores them (a Deck with the
comparison and the answers side by side).

Run it locally (offline, built-in tiny model):
    pyflyte run orchestration/src/llmft/orchestration/rlhf.py rlhf
"""

from __future__ import annotations

from typing import NamedTuple

from flytekit import workflow
from flytekit.core.workflow import WorkflowBase
from flytekit.types.directory import FlyteDirectory

from llmft.flyte.training import training_node
from llmft.orchestration.defaults import DPO, EVALUATION, PPO, REWARD, RLHF_SFT
from llmft.proto.rlhf.v1.rlhf_pb2 import (
    DpoReport,
    DpoRequest,
    PolicyComparison,
    PolicyEvaluationRequest,
    PpoReport,
    PpoRequest,
    RewardModelReport,
    RewardModelRequest,
)
from llmft.proto.training.v1.training_pb2 import ModelArtifact, TrainingRequest
from llmft.rlhf.tasks import demo_data, dpo, evaluate, ppo, reward_model
from llmft.train_sft.tasks import train as train_sft


class RlhfOutputs(NamedTuple):
    sft: ModelArtifact
    reward_model: RewardModelReport
    ppo: PpoReport
    dpo: DpoReport
    comparison: PolicyComparison
    ppo_model: FlyteDirectory
    dpo_model: FlyteDirectory


def rlhf_workflow(
    sft: TrainingRequest,
    reward: RewardModelRequest,
    ppo_request: PpoRequest,
    dpo_request: DpoRequest,
    evaluation: PolicyEvaluationRequest,
) -> WorkflowBase:
    """The RLHF workflow with its requests bound in as constants (pyflyte's command line cannot take protobuf inputs;
    tests bind smaller requests)."""

    @workflow
    def rlhf() -> RlhfOutputs:
        chat = demo_data(kind="chat", seed=0)
        prefs = demo_data(kind="preference", seed=0)
        policy = training_node(train_sft, sft)(request=sft, dataset=chat.manifest, data=chat.data)
        rm = training_node(reward_model, reward)(
            request=reward, dataset=prefs.manifest, data=prefs.data, base_model=policy.model
        )
        by_ppo = training_node(ppo, ppo_request)(
            request=ppo_request, dataset=prefs.manifest, data=prefs.data, reward_model=rm.model, policy=policy.model
        )
        by_dpo = training_node(dpo, dpo_request)(
            request=dpo_request, dataset=prefs.manifest, data=prefs.data, policy=policy.model
        )
        comparison = evaluate(
            request=evaluation,
            dataset=prefs.manifest,
            data=prefs.data,
            policies={"ppo": by_ppo.model, "dpo": by_dpo.model},
            reference=policy.model,
            reward_model=rm.model,
        )
        return RlhfOutputs(
            sft=policy.artifact,
            reward_model=rm.report,
            ppo=by_ppo.report,
            dpo=by_dpo.report,
            comparison=comparison,
            ppo_model=by_ppo.model,
            dpo_model=by_dpo.model,
        )

    return rlhf


rlhf = rlhf_workflow(RLHF_SFT, REWARD, PPO, DPO, EVALUATION)
