"""The RLHF stage's Flyte face: reward-model training and DPO as Elastic tasks on the shared training body
(llmft.flyte.training.run_training: checkpoints mirrored into Flyte's checkpoint store and restored on a retry, the
report as a Deck). Bodies only unpack, call the core (llmft.rlhf.reward, llmft.rlhf.dpo) and pack; `overrides`
reads a request's resources and Elastic launch."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

from flytekit import Resources, task
from flytekit.types.directory import FlyteDirectory

from llmft.core import fingerprint as fp
from llmft.flyte.decks import task_deck_fields
from llmft.flyte.images import stage_image
from llmft.flyte.training import elastic, run_training, training_overrides
from llmft.flyte.types import ModelDir
from llmft.proto.data.v1.dataset_pb2 import DatasetManifest
from llmft.proto.rlhf.v1.rlhf_pb2 import DpoReport, DpoRequest, RewardModelReport, RewardModelRequest
from llmft.rlhf import STAGE, __version__
from llmft.rlhf.dpo import train_dpo
from llmft.rlhf.reward import train_reward_model

IMAGE = stage_image("llmft-rlhf", __version__, ["accelerate", "bitsandbytes", "datasets", "deepspeed", "trl"])
CACHE_VERSION = fp.cache_version(STAGE, __version__)


class RewardModel(NamedTuple):
    report: RewardModelReport
    model: ModelDir


class DpoPolicy(NamedTuple):
    report: DpoReport
    model: ModelDir


@task(
    container_image=IMAGE,
    task_config=elastic(),
    requests=Resources(cpu="2", mem="8Gi"),
    cache=True,
    cache_version=CACHE_VERSION,
    retries=2,
    enable_deck=True,
    deck_fields=task_deck_fields(),
)
def reward_model(
    request: RewardModelRequest,
    dataset: DatasetManifest,
    data: FlyteDirectory,
    base_model: Optional[FlyteDirectory] = None,
) -> RewardModel:
    result, model = run_training(train_reward_model, request, dataset, data, base_model, "Reward model")
    return RewardModel(report=result.report, model=model)


@task(
    container_image=IMAGE,
    task_config=elastic(),
    requests=Resources(cpu="2", mem="8Gi"),
    cache=True,
    cache_version=CACHE_VERSION,
    retries=2,
    enable_deck=True,
    deck_fields=task_deck_fields(),
)
def dpo(
    request: DpoRequest, dataset: DatasetManifest, data: FlyteDirectory, policy: Optional[FlyteDirectory] = None
) -> DpoPolicy:
    result, model = run_training(train_dpo, request, dataset, data, policy, "DPO")
    return DpoPolicy(report=result.report, model=model)


def overrides(request: RewardModelRequest | DpoRequest) -> dict[str, Any]:
    """`reward_model(...).with_overrides(**overrides(request))`: the request's resources, accelerator and Elastic
    launch."""
    return training_overrides(request.resources, request.distributed)
