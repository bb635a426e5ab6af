"""Flyte types of llmft's blobs. A dataset or model folder crosses a task boundary as a FlyteDirectory whose cache hash
is its content fingerprint (the manifest's or the model artifact's), so a rerun that produces the same dataset or model
hits the caches downstream, whatever temporary path it was written to."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NamedTuple

from flytekit.core.hash import HashMethod
from flytekit.types.directory import FlyteDirectory

from llmft.core.datasets import read_manifest
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
