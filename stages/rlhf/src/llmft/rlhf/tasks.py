"""The RLHF stage's Flyte face: reward-model training and DPO as Elastic tasks. Bodies only unpack, call the core
(llmft.rlhf.reward, llmft.rlhf.dpo) and pack."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional

from flytekit import Resources, current_context, task
from flytekit.types.directory import FlyteDirectory

from llmft.core import fingerprint as fp
from llmft.core.distributed import under_launcher
from llmft.flyte.decks import publish, task_deck_fields
from llmft.flyte.images import stage_image
from llmft.flyte.training import elastic, leave_single_worker_launch
from llmft.flyte.types import ModelDir, download_dataset
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
    data_dir = download_dataset(dataset, data)
    base_dir = Path(base_model.download()) if base_model is not None else None
    out = Path(current_context().working_directory) / "reward-model"
    leave_single_worker_launch(request.recipe.zero.stage)
    result = train_reward_model(request, data_dir, out, base_dir, distributed=under_launcher())
    publish("Reward model", result.report_html)
    return RewardModel(report=result.report, model=FlyteDirectory(path=str(out)))


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
def dpo(request: DpoRequest, dataset: DatasetManifest, data: FlyteDirectory, policy: FlyteDirectory) -> DpoPolicy:
    data_dir = download_dataset(dataset, data)
    out = Path(current_context().working_directory) / "dpo-policy"
    leave_single_worker_launch(request.recipe.zero.stage)
    result = train_dpo(request, data_dir, out, Path(policy.download()), distributed=under_launcher())
    publish("DPO", result.report_html)
    return DpoPolicy(report=result.report, model=FlyteDirectory(path=str(out)))
