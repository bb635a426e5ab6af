"""The dataset folder layout every stage shares: `manifest.json` (a DatasetManifest) beside one Parquet file per
split (`train.parquet`, `eval.parquet`). The data stage writes it; training and serving stages read it through these
functions."""

from __future__ import annotations

import json
import shutil
import tempfile
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


def write_dataset(out_dir: Path, splits: dict[str, Any], manifest: dataset_pb2.DatasetManifest) -> None:
    """Writes the split files and the manifest into a fresh `out_dir`, atomically: a failure leaves nothing behind."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir}: output folder exists and is not empty; nothing was overwritten")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    tmp.chmod(0o755)
    try:
        for name, part in splits.items():
            part.to_parquet(tmp / f"{name}.parquet", index=False)
        (tmp / MANIFEST_FILE).write_text(json_format.MessageToJson(manifest, sort_keys=True) + "\n")
        if out_dir.exists():
            out_dir.rmdir()
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
