"""The dataset folder layout every stage shares: `manifest.json` (a DatasetManifest) beside one Parquet file per
split (`train.parquet`, `eval.parquet`). The data stage writes it; training and serving stages read it through these
functions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from llmft.proto.data.v1 import dataset_pb2

MANIFEST_FILE = "manifest.json"
SPLITS = ("train", "eval")


class DatasetKindError(ValueError):
    """A dataset of the wrong kind for the stage that was given it."""


def read_manifest(data_dir: Path) -> dataset_pb2.DatasetManifest:
    path = Path(data_dir) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{data_dir}: no {MANIFEST_FILE}; not a dataset folder written by llmft.data")
    return json_format.Parse(path.read_text(encoding="utf-8"), dataset_pb2.DatasetManifest())


def read_split(data_dir: Path, split: str) -> Any:
    """One split as a pandas DataFrame (empty when the split has no rows)."""
    import pandas as pd

    if split not in SPLITS:
        raise ValueError(f"split: {split!r} is not one of {SPLITS}")
    path = Path(data_dir) / f"{split}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{data_dir}: no {split}.parquet")
    return pd.read_parquet(path)


def split_rows(manifest: dataset_pb2.DatasetManifest, split: str) -> int:
    return sum(s.rows for s in manifest.splits if s.name == split)


def require_kind(manifest: dataset_pb2.DatasetManifest, kind: int, stage: str) -> None:
    if manifest.kind != kind:
        raise DatasetKindError(
            f"dataset {manifest.name!r} is {dataset_pb2.DatasetKind.Name(manifest.kind)}, but {stage} trains on "
            f"{dataset_pb2.DatasetKind.Name(kind)}"
        )


def conversation(messages: str | list[dict[str, str]]) -> list[dict[str, str]]:
    """A chat row's `messages` (JSON text in Parquet) as a list of {role, content}."""
    return json.loads(messages) if isinstance(messages, str) else list(messages)
