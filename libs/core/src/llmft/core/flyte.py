"""Flyte-facing helpers the stages' tasks modules share: blob types whose cache hash is their content fingerprint
(so a re-run that produces the same dataset or model hits downstream caches), the trained-model output tuple, and the
boundary check that a manifest describes the folder beside it. The only module of llmft.core that imports flytekit;
stage cores never import it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NamedTuple

from flytekit import Deck, current_context
from flytekit.core.hash import HashMethod
from flytekit.types.directory import FlyteDirectory

from llmft.core.datasets import read_manifest
from llmft.core.distributed import under_launcher
from llmft.core.training import model_fingerprint
from llmft.proto.data.v1.dataset_pb2 import DatasetManifest
from llmft.proto.training.v1.training_pb2 import ModelArtifact


def dataset_hash(directory: FlyteDirectory) -> str:
    return read_manifest(Path(directory.path)).fingerprint


def model_hash(directory: FlyteDirectory) -> str:
    return model_fingerprint(Path(directory.path))


DatasetDir = Annotated[FlyteDirectory, HashMethod(dataset_hash)]
ModelDir = Annotated[FlyteDirectory, HashMethod(model_hash)]


class TrainedModel(NamedTuple):
    artifact: ModelArtifact
    model: ModelDir


def download_dataset(manifest: DatasetManifest, data: FlyteDirectory) -> Path:
    """Fetches a dataset folder and checks that `manifest` describes it (the pair crossed the boundary together)."""
    data_dir = Path(data.download())
    on_disk = read_manifest(data_dir)
    if on_disk.fingerprint != manifest.fingerprint:
        raise ValueError(
            f"dataset: the manifest given ({manifest.fingerprint}) does not describe the folder given "
            f"({on_disk.fingerprint})"
        )
    return data_dir


def train_in_task(
    train: Callable[..., Any],
    request: Any,
    dataset: DatasetManifest,
    data: FlyteDirectory,
    base_model: FlyteDirectory | None,
    deck_title: str,
) -> TrainedModel:
    """The body every training task shares: fetch the inputs, run the stage's `train` core function in the task's
    working directory (checkpoints beside the model), publish its report as a Deck, hand back artifact and folder."""
    data_dir = download_dataset(dataset, data)
    base_dir = Path(base_model.download()) if base_model is not None else None
    work = Path(current_context().working_directory)
    result = train(
        request, data_dir, work / "model", base_dir, checkpoint_dir=work / "checkpoints", distributed=under_launcher()
    )
    Deck(deck_title, result.report_html)
    return TrainedModel(artifact=result.artifact, model=FlyteDirectory(path=str(work / "model")))
