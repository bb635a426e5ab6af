"""The dataset folder layout every stage shares: `manifest.json` (a DatasetManifest) beside one Parquet file per
split (`train.parquet`, `eval.parquet`). The data stage writes it; training and serving stages read it through these
functions."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from llmft.core.staging import OWNER_FILE, check_output_folder, make_staging_dir
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


class DatasetWriter:
    """Writes a dataset folder split by split in chunks (Parquet row groups), atomically: rows go to a hidden folder
    beside `out_dir`, which becomes `out_dir` on `finish(manifest)`; `abort()` (or an exception inside `with`)
    removes it. Every column is a string column."""

    def __init__(self, out_dir: Path, columns: list[str]) -> None:
        import pyarrow as pa

        self.out_dir = Path(out_dir)
        check_output_folder(self.out_dir)
        self.tmp = make_staging_dir(self.out_dir)
        self.tmp.chmod(0o755)
        self.schema = pa.schema([(c, pa.string()) for c in columns])
        self.writers: dict[str, Any] = {}

    def _writer(self, split: str) -> Any:
        import pyarrow.parquet as pq

        if split not in self.writers:
            self.writers[split] = pq.ParquetWriter(self.tmp / f"{split}.parquet", self.schema)
        return self.writers[split]

    def write(self, split: str, frame: Any) -> None:
        """Appends rows (a pandas DataFrame or an Arrow table with the writer's columns) to a split."""
        import pyarrow as pa

        if split not in SPLITS:
            raise ValueError(f"split: {split!r} is not one of {SPLITS}")
        if isinstance(frame, pa.Table):
            table = frame.select(self.schema.names)
            if not table.schema.equals(self.schema):  # a cast imports pyarrow.compute (~8 MiB): only where needed
                table = table.cast(self.schema)
        else:
            table = pa.Table.from_pandas(frame[self.schema.names], schema=self.schema, preserve_index=False)
        if table.num_rows:
            self._writer(split).write_table(table)

    def finish(self, manifest: dataset_pb2.DatasetManifest) -> None:
        for split in SPLITS:
            self._writer(split)  # an empty split still gets its (empty) file
        for writer in self.writers.values():
            writer.close()
        (self.tmp / MANIFEST_FILE).write_text(json_format.MessageToJson(manifest, sort_keys=True) + "\n")
        (self.tmp / OWNER_FILE).unlink(missing_ok=True)
        if self.out_dir.exists():
            self.out_dir.rmdir()
        self.tmp.rename(self.out_dir)

    def abort(self) -> None:
        for writer in self.writers.values():
            try:
                writer.close()
            except Exception:  # the folder is removed anyway
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        if kind is not None or self.tmp.exists():
            self.abort()


def write_dataset(out_dir: Path, splits: dict[str, Any], manifest: dataset_pb2.DatasetManifest) -> None:
    """Writes whole splits (pandas DataFrames) and the manifest into a fresh `out_dir`, atomically."""
    columns = list(next(iter(splits.values())).columns)
    with DatasetWriter(out_dir, columns) as writer:
        for name, frame in splits.items():
            writer.write(name, frame)
        writer.finish(manifest)
