"""The RLHF stage's Flyte face: reward-model training, PPO and DPO as Elastic tasks on the shared training body
(llmft.flyte.training.run_training: checkpoints mirrored into Flyte's checkpoint store and restored on a retry, the
report as a Deck); the held-out comparison of policies; the synthetic demo data. Bodies only unpack, call the core
(llmft.rlhf.reward, .ppo, .dpo, .evaluation, .demo) and pack. A workflow calls a training task through
`llmft.flyte.training.training_node(task, request)`, which applies the request's launch shape and resources."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import NamedTuple, Optional

from flytekit import Resources, current_context, task
from flytekit.types.directory import FlyteDirectory

from llmft.flyte.decks import publish, task_deck_fields
from llmft.flyte.images import stage_cache_version, stage_image
from llmft.flyte.training import CACHE_IGNORED_INPUTS, elastic, run_training
from llmft.flyte.types import DatasetDir, ModelDir, download_dataset
from llmft.proto.data.v1.dataset_pb2 import DatasetManifest
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
from llmft.proto.training.v1.training_pb2 import ModelArtifact
from llmft.rlhf import __version__
from llmft.rlhf.demo import write_demo_dataset
from llmft.rlhf.dpo import resolve_dpo as resolve_dpo  # the pipeline's config check asks it up front
from llmft.rlhf.dpo import train_dpo
from llmft.rlhf.evaluation import evaluate_policies
from llmft.rlhf.evaluation import resolve_evaluation as resolve_evaluation  # and this, of the comparison
from llmft.rlhf.ppo import resolve_ppo as resolve_ppo  # the pipeline's config check asks it up front
from llmft.rlhf.ppo import train_ppo
from llmft.rlhf.reward import train_reward_model

PACKAGES = ["accelerate", "bitsandbytes", "datasets", "deepspeed", "safetensors", "trl"]
IMAGE = stage_image("llmft-rlhf", __version__, PACKAGES)
CACHE_VERSION = stage_cache_version("llmft-rlhf", __version__, PACKAGES)


class RewardModel(NamedTuple):
    report: RewardModelReport
    model: ModelDir
    artifact: ModelArtifact  # the model's own artifact, as every training task hands it on


class DpoPolicy(NamedTuple):
    report: DpoReport
    model: ModelDir
    artifact: ModelArtifact  # the model's own artifact, as every training task hands it on


class PpoPolicy(NamedTuple):
    report: PpoReport
    model: ModelDir
    artifact: ModelArtifact  # the model's own artifact, as every training task hands it on


class DemoData(NamedTuple):
    manifest: DatasetManifest
    data: DatasetDir


@task(
    container_image=IMAGE,
    task_config=elastic(),
    requests=Resources(cpu="2", mem="8Gi"),
    cache=True,
    cache_version=CACHE_VERSION,
    cache_ignore_input_vars=CACHE_IGNORED_INPUTS,
    retries=2,
    enable_deck=True,
    deck_fields=task_deck_fields(),
)
def reward_model(
    request: RewardModelRequest,
    dataset: DatasetManifest,
    data: FlyteDirectory,
    base_model: Optional[FlyteDirectory] = None,
    run_name: str = "",
) -> RewardModel:
    """`run_name` titles the report; it is not part of the cache key (a renamed run hits the cache)."""
    result, model = run_training(train_reward_model, request, dataset, data, base_model, "Reward model", run_name)
    return RewardModel(report=result.report, model=model, artifact=result.report.reward_model)


@task(
    container_image=IMAGE,
    task_config=elastic(),
    requests=Resources(cpu="2", mem="8Gi"),
    cache=True,
    cache_version=CACHE_VERSION,
    cache_ignore_input_vars=CACHE_IGNORED_INPUTS,
    retries=2,
    enable_deck=True,
    deck_fields=task_deck_fields(),
)
def dpo(
    request: DpoRequest,
    dataset: DatasetManifest,
    data: FlyteDirectory,
    policy: Optional[FlyteDirectory] = None,
    run_name: str = "",
) -> DpoPolicy:
    """`run_name` titles the report; it is not part of the cache key (a renamed run hits the cache)."""
    result, model = run_training(train_dpo, request, dataset, data, policy, "DPO", run_name)
    return DpoPolicy(report=result.report, model=model, artifact=result.report.policy)


@task(
    container_image=IMAGE,
    task_config=elastic(),
    requests=Resources(cpu="2", mem="8Gi"),
    cache=True,
    cache_version=CACHE_VERSION,
    cache_ignore_input_vars=CACHE_IGNORED_INPUTS,
    retries=2,
    enable_deck=True,
    deck_fields=task_deck_fields(),
)
def ppo(
    request: PpoRequest,
    dataset: DatasetManifest,
    data: FlyteDirectory,
    reward_model: Optional[FlyteDirectory] = None,
    policy: Optional[FlyteDirectory] = None,
    run_name: str = "",
) -> PpoPolicy:
    """PPO of `policy` (or the request's base_model) against `reward_model` (or the request's reward_model).
    `run_name` titles the report; it is not part of the cache key (a renamed run hits the cache)."""
    reward_dir = Path(reward_model.download()) if reward_model is not None else None
    train = partial(train_ppo, reward_model_dir=reward_dir)
    result, model = run_training(train, request, dataset, data, policy, "PPO", run_name)
    return PpoPolicy(report=result.report, model=model, artifact=result.report.policy)


@task(
    container_image=IMAGE,
    requests=Resources(cpu="2", mem="8Gi"),
    cache=True,
    cache_version=CACHE_VERSION,
    retries=1,
    enable_deck=True,
    deck_fields=task_deck_fields(),
)
def evaluate(
    request: PolicyEvaluationRequest,
    dataset: DatasetManifest,
    data: FlyteDirectory,
    policies: dict[str, FlyteDirectory],
    reference: Optional[FlyteDirectory] = None,
    reward_model: Optional[FlyteDirectory] = None,
) -> PolicyComparison:
    """Every policy in `policies` against the reference (the SFT model) on the held-out prompts, by the reward model;
    the comparison and the answers side by side as a Deck."""
    result = evaluate_policies(
        request,
        download_dataset(dataset, data),
        {name: Path(folder.download()) for name, folder in policies.items()},
        Path(reference.download()) if reference is not None else None,
        Path(reward_model.download()) if reward_model is not None else None,
    )
    publish("Policies on held-out prompts", result.report_html)
    return result.comparison


@task(container_image=IMAGE, requests=Resources(cpu="1", mem="1Gi"), cache=True, cache_version=CACHE_VERSION, retries=1)
def demo_data(kind: str, seed: int = 0) -> DemoData:
    """The synthetic demo dataset (llmft.rlhf.demo): "chat" for SFT, "preference" for the reward model, PPO and DPO."""
    out = Path(current_context().working_directory) / f"demo-{kind}"
    manifest = write_demo_dataset(out, kind, seed=seed)
    return DemoData(manifest=manifest, data=FlyteDirectory(path=str(out)))
