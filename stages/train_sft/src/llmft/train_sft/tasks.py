"""The SFT stage's Flyte face: one Elastic training task (torch elastic workers locally and in a pod; a
PyTorchJob when nnodes > 1, through llmft.flyte.training.training_node). The body only unpacks the inputs, calls
llmft.train_sft.train and packs the outputs."""

from __future__ import annotations

from typing import Optional

from flytekit import Resources, task
from flytekit.types.directory import FlyteDirectory

from llmft.flyte.decks import task_deck_fields
from llmft.flyte.images import stage_cache_version, stage_image
from llmft.flyte.training import CACHE_IGNORED_INPUTS, elastic, train_in_task
from llmft.flyte.types import TrainedModel
from llmft.proto.data.v1.dataset_pb2 import DatasetManifest
from llmft.proto.training.v1.training_pb2 import TrainingRequest
from llmft.train_sft import __version__
from llmft.train_sft.train import train_sft

PACKAGES = ["accelerate", "bitsandbytes", "datasets", "deepspeed", "trl"]
IMAGE = stage_image("llmft-train-sft", __version__, PACKAGES)
CACHE_VERSION = stage_cache_version("llmft-train-sft", __version__, PACKAGES)


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
def train(
    request: TrainingRequest,
    dataset: DatasetManifest,
    data: FlyteDirectory,
    base_model: Optional[FlyteDirectory] = None,
    run_name: str = "",
) -> TrainedModel:
    """`run_name` titles the report; it is not part of the cache key (a renamed run hits the cache)."""
    return train_in_task(train_sft, request, dataset, data, base_model, "SFT", run_name)
