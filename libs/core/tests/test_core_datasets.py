"""The dataset folder every stage shares: DatasetWriter writes splits atomically, in row groups of a bounded size
rather than one per chunk written (a Parquet writer keeps each row group's metadata until it closes the file)."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmft.core.datasets import DatasetWriter, read_manifest, read_split
from llmft.proto.data.v1 import dataset_pb2


def chunk(first: int, rows: int) -> pa.Table:
    return pa.table(
        {"id": [f"{i:08d}" for i in range(first, first + rows)], "text": ["word " * 50 for _ in range(rows)]}
    )


def test_chunks_are_gathered_into_row_groups_of_the_given_size_in_order(tmp_path: Path) -> None:
    size = chunk(0, 100).nbytes
    with DatasetWriter(tmp_path / "out", ["id", "text"], row_group_bytes=size * 4) as writer:
        for n in range(10):  # ten chunks of 100 rows: row groups of 4, 4 and the last 2 chunks
            writer.write("train", chunk(n * 100, 100))
        writer.write("eval", chunk(5000, 3))
        writer.finish(dataset_pb2.DatasetManifest(name="t"))
    train = pq.ParquetFile(tmp_path / "out" / "train.parquet").metadata
    assert [train.row_group(g).num_rows for g in range(train.num_row_groups)] == [400, 400, 200]
    assert read_split(tmp_path / "out", "train")["id"].tolist() == [f"{i:08d}" for i in range(1000)]
    assert read_split(tmp_path / "out", "eval")["id"].tolist() == ["00005000", "00005001", "00005002"]
    assert read_manifest(tmp_path / "out").name == "t"


def test_a_writer_that_fails_leaves_nothing_and_writes_no_pending_rows(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), DatasetWriter(tmp_path / "out", ["id", "text"]) as writer:
        writer.write("train", chunk(0, 10))  # pending: under a row group
        raise RuntimeError("the build failed")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no staging folder either
