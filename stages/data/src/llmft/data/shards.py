"""Preparing a dataset in shards, for corpora one process cannot hold: datatrove's shape, on llmft's rows.

1. `plan_shards`: the request's sources, in order, become shards of about equal bytes. A local file is one piece; a
   JSONL file larger than a shard is cut at line boundaries into byte ranges. Each file is hashed once here, so the
   manifest's source fingerprints are the one-process build's. A source that is not local files (a URL, git, the Hub,
   a package) is one shard of its own. A shard is named by the fingerprint of what it reads and how.
2. `run_shard` (a worker process locally; one element of a Flyte map_task): reads, normalises and cleans its rows by
   the per-row steps (blank rows, min_chars, drop_patterns, languages, max_chars) and writes them to Parquet, with
   each row's content key and, with near deduplication on, its MinHash band hashes. Its folder is complete once its
   `done.json` exists: a rerun with the same work folder redoes only the shards without one.
3. `deduplicate`: over every shard's keys, one bucket file at a time: exact duplicates (the first in source order
   stays), then near duplicates among the rest, in datatrove's four stages (signatures from step 2; bucket files per
   LSH band; clusters of rows that share a band, by union-find; the filter keeping each cluster's first row).
4. `build_sharded`: the kept rows of every shard, in source order, through `build.prepare` (validation, split,
   statistics, manifest, fingerprint).

Memory: a worker holds a batch of its shard (BATCH_CHARS of content) and 16 bytes a row (72 more with near
deduplication) for its keys, so its peak grows with the shard, not the corpus; deduplication holds one bucket file
(about BUCKET_ROWS rows) and the union-find of the rows that have a near duplicate (it grows with the duplicates
found, as datatrove's clustering does); the merge holds a batch. The workers validate their rows against the kind's
schema (`kinds.screen`; pandera only for a batch that fails), so the process that runs the global steps and the merge
imports neither pandera nor the MinHash code (the shards record their LSH bands): it only moves Arrow batches."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmft.core import fingerprint as fp
from llmft.data import __version__
from llmft.data.build import (
    CHUNK_ROWS,
    arrow_rows,
    arrow_strings,
    check_request,
    columns_of,
    no_rows_error,
    prepare,
    validated,
)
from llmft.data.clean import Cleaner, Signatures, lsh_params
from llmft.data.kinds import CONTENT_COLUMNS, DataValidationError, screen
from llmft.data.normalize import Changes, to_row
from llmft.data.sources import (
    PREFIX,
    PYTHON_SKIP_STEP,
    Skipped,
    SourceError,
    file_records,
    json_lines,
    local_files,
    read_source,
)
from llmft.proto.data.v1 import dataset_pb2

READ_BLOCK = 8 << 20
# The cleaning steps that remove rows, as the manifest names them.
STEPS = {"drop_blank", "min_chars", "drop_patterns", "languages", "deduplicate_exact", "deduplicate_near"}
# Rows per bucket file of the global steps: a bucket is loaded whole and sorted, so this bounds their memory (24 bytes
# a row for exact keys, 16 for a band, about three times that while sorting): about 20 MiB, whatever the corpus.
BUCKET_ROWS = 262_144
# A worker validates and writes its rows, and the merge reads them back, in batches of about this many characters of
# content (at most CHUNK_ROWS rows): the working set is a few times a batch, so long documents do not make it grow.
BATCH_CHARS = 1 << 20
DONE = "done.json"


class ShardError(SourceError):
    """A shard that failed; the message names the shard, and the file and row where that is known."""


@dataclass
class Piece:
    """What one shard reads of one source: a local file (`path`, whole or the byte range [start, end) of a JSONL
    file starting at line `first_line`), or a whole non-local source (`path` empty)."""

    source: int
    path: str = ""
    fmt: str = ""
    module: str = ""
    allow_empty: bool = False
    start: int = 0
    end: int = -1
    first_line: int = 1
    size: int = 0
    digest: str = ""  # the content fingerprint of the file, or of the non-local source's message


@dataclass
class Shard:
    index: int
    name: str
    pieces: list[Piece]


@dataclass
class ShardPlan:
    shards: list[Shard]
    # The content fingerprint of each local file, in reading order, by source; None for a non-local source, whose
    # shard reports its own.
    fingerprints: list[list[str] | None] = field(default_factory=list)


def _hash_and_cuts(path: Path, cut_every: int) -> tuple[str, list[tuple[int, int]]]:
    """The file's content fingerprint, and (byte offset, line number) of a line start about every `cut_every` bytes
    (none with 0): one pass over the file."""
    digest = hashlib.sha256()
    cuts: list[tuple[int, int]] = []
    position, line, next_cut = 0, 1, cut_every
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(READ_BLOCK), b""):
            digest.update(block)
            offset = 0
            while cut_every:
                newline = block.find(b"\n", max(next_cut - position, offset))
                if next_cut - position >= len(block) or newline < 0:
                    break
                cuts.append((position + newline + 1, line + block.count(b"\n", 0, newline + 1)))
                offset = newline + 1
                next_cut = position + offset + cut_every
            line += block.count(b"\n")
            position += len(block)
    return PREFIX + digest.hexdigest(), [cut for cut in cuts if cut[0] < position]


def plan_shards(request: dataset_pb2.DatasetRequest, shards: int) -> ShardPlan:
    """About `shards` shards of about equal bytes, in source order (see the module docstring)."""
    if shards < 1:
        raise ValueError(f"shards: must be >= 1, got {shards}")
    check_request(request)
    pieces: list[Piece] = []
    fingerprints: list[list[str] | None] = []
    local = [
        (index, list(local_files(source.local, source.format or "auto")))
        if source.WhichOneof("source") == "local"
        else (index, None)
        for index, source in enumerate(request.sources)
    ]
    total = sum(f.path.stat().st_size for _, files in local if files for f in files)
    target = max(1, total // shards)
    for index, files in local:
        if files is None:
            fingerprints.append(None)
            pieces.append(Piece(source=index, digest=fp.fingerprint_message(request.sources[index])))
            continue
        hashes = []
        for file in files:
            size = file.path.stat().st_size
            cut = file.fmt == "jsonl" and size > target and not _json_array(file.path)
            digest, cuts = _hash_and_cuts(file.path, target if cut else 0)
            hashes.append(digest)
            bounds = [(0, 1), *cuts, (size, 0)]
            for (start, first), (end, _) in zip(bounds, bounds[1:], strict=False):
                pieces.append(
                    Piece(index, str(file.path), file.fmt, file.module, file.allow_empty, start,
                          end if cut else -1, first, end - start, digest)
                )  # fmt: skip
        fingerprints.append(hashes)
    groups: list[list[Piece]] = []
    filled = 0
    for piece in pieces:
        whole_source = not piece.path
        if not groups or whole_source or filled >= target or not groups[-1][-1].path:
            groups.append([])
            filled = 0
        groups[-1].append(piece)
        filled += piece.size
    config = _shard_config(request)
    plan = ShardPlan([], fingerprints)
    for number, group in enumerate(groups):
        name = fp.combine(config, *(fp.fingerprint_json(asdict(p)) for p in group))
        plan.shards.append(Shard(number, f"shard-{number:05d}-{fp.short(name, 16)}", group))
    return plan


def _json_array(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(64).lstrip().startswith(b"[")


def _shard_config(request: dataset_pb2.DatasetRequest) -> str:
    """What decides a shard's rows besides its input: the kind and the per-row cleaning, and this code's version."""
    cleaning = dataset_pb2.CleaningConfig()
    cleaning.CopyFrom(request.cleaning)
    return fp.combine(__version__, str(request.kind), fp.fingerprint_message(cleaning))


# ------------------------------------------------------------------------------------------------ one shard


def _per_row_cleaning(request: dataset_pb2.DatasetRequest) -> dataset_pb2.CleaningConfig:
    """The request's cleaning without the deduplication, which runs over every shard afterwards."""
    config = dataset_pb2.CleaningConfig()
    config.CopyFrom(request.cleaning)
    config.deduplicate_exact = False
    config.near_duplicate_threshold = 0.0
    return config


def lsh_bands(threshold: float) -> tuple[int, int]:
    """(bands, rows per band) of the MinHash LSH the one-process build uses for `threshold` (datasketch's choice)."""
    return lsh_params(threshold)


_SIGNATURES: list[Signatures] = []


def band_hashes(text: str, bands: int, rows: int) -> list[int]:
    """The text's MinHash signature (word shingles, as the one-process build) cut into bands, each hashed to 64 bits."""
    if not _SIGNATURES:
        _SIGNATURES.append(Signatures())
    values = _SIGNATURES[0].of(text)
    return [
        int.from_bytes(hashlib.blake2b(values[b * rows : (b + 1) * rows].tobytes(), digest_size=8).digest(), "little")
        for b in range(bands)
    ]


def _records(request: dataset_pb2.DatasetRequest, piece: Piece, fingerprints: list[str]) -> Iterator[Any]:
    if not piece.path:
        yield from read_source(request.sources[piece.source], fingerprints)
        return
    path = Path(piece.path)
    if piece.end < 0:
        yield from file_records(path, piece.path, piece.fmt, [], allow_empty=piece.allow_empty, module=piece.module)
        return

    def lines() -> Iterator[bytes]:
        with open(path, "rb") as handle:
            handle.seek(piece.start)
            while handle.tell() < piece.end:
                line = handle.readline()
                if not line:
                    return
                yield line

    yield from json_lines(lines(), piece.path, None, piece.first_line)


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB: Linux's VmHWM, which starts afresh at exec (ru_maxrss
    keeps the peak of the process that forked it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


ARROW_POOL = {"ARROW_DEFAULT_MEMORY_POOL": "jemalloc"}  # for the processes that run the sharded steps, from their start


def bounded_allocation() -> None:
    """From here on, in this process, the memory Arrow and numpy free goes back to the system, so a process that reads
    and writes batch after batch stays about the size of a batch (tests/test_data_shards.py measures it). Arrow's
    default pool (mimalloc) keeps the pages of freed batches; so does malloc, once glibc has raised its mmap threshold
    to the largest block freed (up to 32 MiB), after which ~1 MiB batch buffers, and the deduplication's bucket arrays,
    come from a heap that fragments and does not shrink. So Arrow allocates through its jemalloc pool with decay 0
    (freed pages go back at once; where pyarrow was built without jemalloc, through malloc), and glibc's mmap threshold
    is held at 128 KiB, its starting value, so that large blocks are mapped and unmapped rather than kept in the heap.

    Arrow's C++ code (the Parquet reader and writer among it) takes its pool from ARROW_DEFAULT_MEMORY_POOL when it
    first allocates, so this sets that variable too, which only counts if nothing has allocated yet: `build_sharded`
    calls this before its first step, the spawned workers inherit the variable, and the Flyte shard and merge tasks
    set `ARROW_POOL` in their environment."""
    for key, value in ARROW_POOL.items():
        os.environ.setdefault(key, value)
    import pyarrow as pa

    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD; glibc only (elsewhere the symbol is missing: nothing to do)
    except (OSError, AttributeError):
        pass
    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
        pa.jemalloc_set_decay_ms(0)
    except NotImplementedError:  # pyarrow built without jemalloc
        pa.set_memory_pool(pa.system_memory_pool())


def run_shard(request: dataset_pb2.DatasetRequest, shard: Shard, work_dir: Path) -> dict[str, Any]:
    """Reads and cleans one shard into `work_dir/<name>/` (rows.parquet, keys.npy, bands.npy) and writes done.json
    last; returns done.json's content. A shard already done is not read again."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    bounded_allocation()

    folder = Path(work_dir) / shard.name
    done = folder / DONE
    if done.is_file():
        return dict(json.loads(done.read_text()))
    staging = folder.with_name(f".{shard.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    columns = columns_of(request.kind)
    schema = pa.schema([(name, pa.string()) for name in columns])
    cleaner = Cleaner(CONTENT_COLUMNS[request.kind], _per_row_cleaning(request))
    changes = Changes()
    near = request.cleaning.near_duplicate_threshold
    bands, rows_per_band = lsh_bands(near) if near else (0, 0)
    keys: list[np.ndarray] = []  # per chunk: (rows, 2) uint64, the first 128 bits of each content id
    band_rows: list[np.ndarray] = []  # per chunk: (rows, bands) uint64
    pending_bands: list[list[int]] = []
    buffer: list[dict[str, Any]] = []
    buffered = 0  # characters of content in the buffer
    offset = 0  # rows of this shard validated so far

    def flush() -> None:
        nonlocal buffer, pending_bands, offset, buffered
        # Validated here, in parallel, so the merge only moves rows; ids repeat until the merge deduplicates. A batch
        # the screen passes is valid by the schema's own checks, and becomes Arrow without pandas; only a batch that
        # fails goes through pandera (imported then), which names its rows.
        if screen(buffer, request.kind, unique_ids=False):
            table = pa.Table.from_arrays(
                [arrow_strings([row[name] for row in buffer]) for name in columns], schema=schema
            )
        else:
            table = validated(pa.Table.from_pylist(buffer, schema=schema), request.kind, offset, unique_ids=False)
        offset += table.num_rows
        writer.write_table(table)
        ids = b"".join(bytes.fromhex(row["id"][:32]) for row in buffer)
        keys.append(np.frombuffer(ids, dtype=np.uint64).reshape(-1, 2))
        if bands:
            band_rows.append(np.array(pending_bands, dtype=np.uint64).reshape(-1, bands))
        buffer, pending_bands, buffered = [], [], 0

    fingerprints: list[str] = []
    read = skipped = 0
    first_skipped = ""
    writer = pq.ParquetWriter(staging / "rows.parquet", schema)
    try:
        for piece in shard.pieces:
            for item in _records(request, piece, fingerprints):
                if isinstance(item, Skipped):
                    skipped += 1
                    first_skipped = first_skipped or f"{item.origin} ({item.reason})"
                    continue
                read += 1
                row = to_row(item, request.kind, request.cleaning.normalize, changes)
                if not cleaner.keep(row):
                    continue
                text = "\n".join(str(row[c]) for c in CONTENT_COLUMNS[request.kind])
                if bands:
                    pending_bands.append(band_hashes(text, bands, rows_per_band))
                buffer.append(row)
                buffered += len(text)
                if len(buffer) >= CHUNK_ROWS or buffered >= BATCH_CHARS:
                    flush()
        if buffer:
            flush()
        writer.close()
    except SourceError as error:
        writer.close()
        shutil.rmtree(staging, ignore_errors=True)
        raise ShardError(f"shard {shard.index} ({shard.name}): {error}") from error
    except DataValidationError as error:  # row numbers count from the shard's first kept row
        writer.close()
        shutil.rmtree(staging, ignore_errors=True)
        raise DataValidationError(f"shard {shard.index} ({shard.name}): {error}", error.failures) from error
    except BaseException:
        writer.close()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    kept = sum(len(k) for k in keys)
    np.save(staging / "keys.npy", np.concatenate(keys) if keys else np.empty((0, 2), dtype=np.uint64))
    if bands:
        np.save(staging / "bands.npy", np.concatenate(band_rows) if band_rows else np.empty((0, bands), np.uint64))
    summary = {
        "shard": shard.index,
        "rows_read": read,
        "rows_kept": kept,
        "bands": bands,
        "removed": [[step, count, first] for step, count, first in cleaner.removed],
        "changed": [changes.rows, changes.first],
        "skipped": [skipped, first_skipped],
        "fingerprints": fingerprints,
        "peak_rss_mib": round(peak_rss_mib(), 1),  # of the process that ran it, over every shard it ran so far
    }
    (staging / DONE).write_text(json.dumps(summary, indent=1) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return summary


def _run_shard_job(args: tuple[bytes, Shard, str]) -> dict[str, Any]:
    """run_shard in a worker process (the request travels serialised)."""
    raw, shard, work_dir = args
    return run_shard(dataset_pb2.DatasetRequest.FromString(raw), shard, Path(work_dir))


def run_shards(
    request: dataset_pb2.DatasetRequest, plan: ShardPlan, work_dir: Path, workers: int
) -> list[dict[str, Any]]:
    """Every shard, `workers` at a time in processes of their own (in this process with 1). The first failure is
    raised once the others have ended, so every shard that could finish keeps its work for the rerun."""
    import multiprocessing

    from tqdm import tqdm

    jobs = [(request.SerializeToString(), shard, str(work_dir)) for shard in plan.shards]
    results: list[dict[str, Any]] = []
    failures: list[Exception] = []
    progress = tqdm(total=len(jobs), desc="shards", unit="shard")
    if workers <= 1:
        for job in jobs:
            try:
                results.append(_run_shard_job(job))
            except Exception as error:  # the other shards still run, so their work is there for the rerun
                failures.append(error)
            progress.update()
    else:
        bounded_allocation()  # and the spawned workers inherit ARROW_POOL
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_run_shard_job, job) for job in jobs]
            for future in futures:
                future.add_done_callback(lambda _: progress.update())
            for future in futures:  # in plan order: the failure raised is the first shard's that failed
                try:
                    results.append(future.result())
                except Exception as error:  # every shard finishes or fails before the first failure is raised
                    failures.append(error)
    progress.close()
    if failures:
        raise failures[0]
    return results


# ------------------------------------------------------------------------------------------------ global steps


@dataclass
class Dedup:
    """What the global steps decided: per shard, the rows removed as exact and as near duplicates, and the repeat
    number of each kept repeat (when exact deduplication is off: the n-th copy's id gets "~n")."""

    exact: dict[int, np.ndarray]
    near: dict[int, np.ndarray]
    repeats: dict[int, tuple[np.ndarray, np.ndarray]]


def _bucketed(parts: Iterator[tuple[int, np.ndarray]], buckets: int, folder: Path, dtype: Any) -> list[Path]:
    """Spreads records (a structured array per shard, its first field the hash) over `buckets` files by hash."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"bucket-{b:05d}.bin" for b in range(buckets)]
    handles = [open(p, "wb") for p in paths]  # noqa: SIM115
    try:
        for _, records in parts:
            which = records[dtype.names[0]] % np.uint64(buckets)
            for b in np.unique(which):
                handles[int(b)].write(records[which == b].tobytes())
    finally:
        for handle in handles:
            handle.close()
    return paths


def deduplicate(
    request: dataset_pb2.DatasetRequest,
    plan: ShardPlan,
    folders: list[Path],
    kept: list[int],
    scratch: Path,
    bands: int = 0,
) -> Dedup:
    """The exact and near duplicates over all shards (see the module docstring): `folders` are the shards' finished
    folders in plan order, `kept` their row counts, `bands` the LSH bands their band hashes were cut into; bucket
    files go under `scratch`, removed at the end."""
    total = sum(kept)
    buckets = max(1, -(-total // BUCKET_ROWS))
    shutil.rmtree(scratch, ignore_errors=True)
    exact_type = np.dtype([("k0", "<u8"), ("k1", "<u8"), ("shard", "<u4"), ("row", "<u4")])

    def exact_records() -> Iterator[tuple[int, np.ndarray]]:
        for shard in plan.shards:
            keys = np.load(folders[shard.index] / "keys.npy")
            records = np.empty(len(keys), dtype=exact_type)
            records["k0"], records["k1"] = keys[:, 0], keys[:, 1]
            records["shard"], records["row"] = shard.index, np.arange(len(keys), dtype=np.uint32)
            yield shard.index, records

    copies: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    for path in _bucketed(exact_records(), buckets, scratch / "exact", exact_type):
        records = np.fromfile(path, dtype=exact_type)
        if not len(records):
            continue
        records = records[np.lexsort((records["row"], records["shard"], records["k1"], records["k0"]))]
        same = (records["k0"][1:] == records["k0"][:-1]) & (records["k1"][1:] == records["k1"][:-1])
        starts = np.flatnonzero(np.concatenate(([True], ~same)))
        rank = np.arange(len(records)) - np.repeat(starts, np.diff(np.append(starts, len(records)))) + 1
        later = rank > 1
        for shard in np.unique(records["shard"][later]):
            mine = later & (records["shard"] == shard)
            copies.setdefault(int(shard), []).append((records["row"][mine], rank[mine]))
        path.unlink()
    merged = {
        s: (np.concatenate([r for r, _ in parts]), np.concatenate([n for _, n in parts])) for s, parts in copies.items()
    }
    exact = {s: np.sort(rows) for s, (rows, _) in merged.items()} if request.cleaning.deduplicate_exact else {}
    repeats = {} if request.cleaning.deduplicate_exact else merged
    if request.cleaning.near_duplicate_threshold and not bands:
        raise ValueError("deduplicate: near_duplicate_threshold is set but the shards hold no band hashes")
    near = _near_duplicates(plan, folders, exact, bands, buckets, scratch) if bands else {}
    shutil.rmtree(scratch, ignore_errors=True)
    return Dedup(exact, near, repeats)


def _near_duplicates(
    plan: ShardPlan, folders: list[Path], exact: dict[int, np.ndarray], bands: int, buckets: int, scratch: Path
) -> dict[int, np.ndarray]:
    """Rows sharing an LSH band with an earlier row, cluster by cluster: each cluster keeps its first row."""
    band_type = np.dtype([("hash", "<u8"), ("node", "<u8")])
    parent: dict[int, int] = {}

    def find(node: int) -> int:
        root = node
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(node, node) != root:
            parent[node], node = root, parent[node]
        return root

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)  # the root is the cluster's first row in source order

    for band in range(bands):

        def band_records(band: int = band) -> Iterator[tuple[int, np.ndarray]]:
            for shard in plan.shards:
                hashes = np.load(folders[shard.index] / "bands.npy", mmap_mode="r")
                rows = np.arange(len(hashes), dtype=np.uint64)
                keep = np.ones(len(hashes), dtype=bool)
                keep[exact.get(shard.index, np.empty(0, dtype=np.uint32))] = False
                records = np.empty(int(keep.sum()), dtype=band_type)
                records["hash"] = hashes[keep, band]
                records["node"] = (np.uint64(shard.index) << np.uint64(32)) | rows[keep]
                yield shard.index, records

        for path in _bucketed(band_records(), buckets, scratch / f"band-{band}", band_type):
            records = np.fromfile(path, dtype=band_type)
            path.unlink()
            if len(records) < 2:
                continue
            records = records[np.lexsort((records["node"], records["hash"]))]
            same = records["hash"][1:] == records["hash"][:-1]
            for i in np.flatnonzero(same):
                union(int(records["node"][i]), int(records["node"][i + 1]))
    removed: dict[int, list[int]] = {}
    for node in list(parent):
        if find(node) != node:
            removed.setdefault(node >> 32, []).append(node & 0xFFFFFFFF)
    return {s: np.array(sorted(rows), dtype=np.uint32) for s, rows in removed.items()}


# ------------------------------------------------------------------------------------------------ the whole


def _first_source(folders: list[Path], plan: ShardPlan, removed: dict[int, np.ndarray]) -> str:
    """The `source` of the first removed row in source order."""
    import pyarrow.parquet as pq

    for shard in plan.shards:
        rows = removed.get(shard.index)
        if rows is not None and len(rows):
            parquet = pq.ParquetFile(folders[shard.index] / "rows.parquet")  # pq.read_table imports pandas
            row = int(rows.min())
            for group in range(parquet.num_row_groups):  # only the row group that holds the row
                size = parquet.metadata.row_group(group).num_rows
                if row < size:
                    return str(parquet.read_row_group(group, columns=["source"]).column("source")[row].as_py())
                row -= size
    return ""


def _kept_chunks(plan: ShardPlan, folders: list[Path], dedup: Dedup) -> Iterator[Any]:
    """Every shard's rows without its duplicates, repeats renamed "<id>~<n>", as Arrow tables in source order."""
    import pyarrow.parquet as pq

    for shard in plan.shards:
        parquet = pq.ParquetFile(folders[shard.index] / "rows.parquet")
        dropped = np.concatenate(
            [dedup.exact.get(shard.index, np.empty(0, np.uint32)), dedup.near.get(shard.index, np.empty(0, np.uint32))]
        )
        renamed = dict(
            zip(*(a.tolist() for a in dedup.repeats.get(shard.index, (np.empty(0), np.empty(0)))), strict=True)
        )
        offset = 0
        for group in range(parquet.num_row_groups):  # a worker's batch each (~1 MiB); iter_batches reads far ahead
            table = parquet.read_row_group(group)
            rows = np.arange(offset, offset + table.num_rows)
            offset += table.num_rows
            if renamed:
                ids = table.column("id").to_pylist()
                for i, row in enumerate(rows.tolist()):
                    if row in renamed:
                        ids[i] = f"{ids[i]}~{renamed[row]}"
                table = table.set_column(0, "id", arrow_strings(ids))
            if len(dropped):
                table = arrow_rows(table, ~np.isin(rows, dropped))
            if table.num_rows:
                yield table


def build_sharded(
    request: dataset_pb2.DatasetRequest, out_dir: Path, work_dir: Path, shards: int, workers: int = 1
) -> tuple[dataset_pb2.DatasetManifest, dict[str, Any]]:
    """The dataset of `request` in `shards` shards on `workers` processes, through `work_dir` (kept for a rerun until
    the dataset is written, then removed). Returns what `build.prepare` returns."""
    if Path(out_dir).exists() and any(Path(out_dir).iterdir()):
        raise FileExistsError(f"{out_dir}: exists and is not empty; nothing was overwritten")
    bounded_allocation()
    started = time.perf_counter()
    plan = plan_shards(request, shards)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "plan.json").write_text(plan_json(plan))
    planned = time.perf_counter()
    run_shards(request, plan, work_dir, workers)
    ran = time.perf_counter()
    manifest, report = merge_shards(
        request, plan, [work_dir / shard.name for shard in plan.shards], out_dir, work_dir / "dedup"
    )
    shutil.rmtree(work_dir, ignore_errors=True)
    report["seconds"] = {"plan": planned - started, "shards": ran - planned, **report["seconds"]}
    return manifest, report


def merge_shards(
    request: dataset_pb2.DatasetRequest, plan: ShardPlan, folders: list[Path], out_dir: Path, scratch: Path
) -> tuple[dataset_pb2.DatasetManifest, dict[str, Any]]:
    """The finished shard folders (in plan order) deduplicated across each other and prepared into `out_dir`."""
    bounded_allocation()
    started = time.perf_counter()
    done = [json.loads((folder / DONE).read_text()) for folder in folders]
    bands = {int(d.get("bands", 0)) for d in done}
    if len(bands) > 1:
        raise ValueError(f"merge: the shards were cut into different LSH bands {sorted(bands)}; rerun them")
    dedup = deduplicate(request, plan, folders, [d["rows_kept"] for d in done], scratch, bands.pop() if bands else 0)
    manifest = _summary(request, plan, folders, done, dedup)
    kept = sum(d["rows_kept"] for d in done) - sum(len(r) for r in (*dedup.exact.values(), *dedup.near.values()))
    if kept == 0:
        skipped = [d["skipped"] for d in done]
        removed = [(c.step, c.rows_removed, c.first_row) for c in manifest.cleaning if c.step in STEPS]
        raise no_rows_error(
            request.name, sum(d["rows_read"] for d in done), sum(s[0] for s in skipped),
            next((s[1] for s in skipped if s[0]), ""), removed,
        )  # fmt: skip
    deduplicated = time.perf_counter()
    chunks = _progress(_kept_chunks(plan, folders, dedup), kept)
    manifest, report = prepare(request, chunks, manifest, out_dir, validated_rows=True)
    report["seconds"] = {"deduplicate": deduplicated - started, "prepare": time.perf_counter() - deduplicated}
    report["shards"] = [
        {k: d.get(k) for k in ("shard", "rows_read", "rows_kept", "peak_rss_mib")} for d in done
    ]  # what each shard read and kept, and its worker's peak memory: what sizing pods for a corpus needs
    return manifest, report


def _progress(chunks: Iterator[Any], rows: int) -> Iterator[Any]:
    from tqdm import tqdm

    with tqdm(total=rows, desc="merge", unit="row", unit_scale=True) as bar:
        for chunk in chunks:
            yield chunk
            bar.update(chunk.num_rows)


def plan_json(plan: ShardPlan) -> str:
    return json.dumps({"shards": [asdict(s) for s in plan.shards], "fingerprints": plan.fingerprints}, indent=1)


def plan_from_json(text: str) -> ShardPlan:
    data = json.loads(text)
    shards = [Shard(s["index"], s["name"], [Piece(**p) for p in s["pieces"]]) for s in data["shards"]]
    return ShardPlan(shards, data["fingerprints"])


def shard_json(shard: Shard) -> str:
    return json.dumps(asdict(shard), sort_keys=True)


def shard_from_json(text: str) -> Shard:
    data = json.loads(text)
    return Shard(data["index"], data["name"], [Piece(**p) for p in data["pieces"]])


def _summary(
    request: dataset_pb2.DatasetRequest, plan: ShardPlan, folders: list[Path], done: list[dict[str, Any]], dedup: Dedup
) -> dataset_pb2.DatasetManifest:
    """What acquisition knows, as the one-process build reports it: source fingerprints in reading order, then each
    cleaning step's count and first row."""
    fingerprints: list[str] = []
    for index, hashes in enumerate(plan.fingerprints):
        if hashes is not None:
            fingerprints += hashes
        else:
            fingerprints += [
                f for d in done for f in d["fingerprints"] if plan.shards[d["shard"]].pieces[0].source == index
            ]
    manifest = dataset_pb2.DatasetManifest(source_fingerprints=fingerprints)

    def first(pairs: list[list[Any]]) -> str:
        return next((p[1] for p in pairs if p[0]), "")

    if any(source.format == "python_docstrings" for source in request.sources):
        skipped = [d["skipped"] for d in done]
        manifest.cleaning.add(step=PYTHON_SKIP_STEP, rows_removed=sum(s[0] for s in skipped), first_row=first(skipped))
    if request.cleaning.normalize:
        changed = [d["changed"] for d in done]
        manifest.cleaning.add(
            step="strip_control_characters", rows_changed=sum(c[0] for c in changed), first_row=first(changed)
        )
    steps = [step for step, _, _ in done[0]["removed"]] if done else []
    for position, step in enumerate(steps):
        counts = [[d["removed"][position][1], d["removed"][position][2]] for d in done]
        manifest.cleaning.add(step=step, rows_removed=sum(c[0] for c in counts), first_row=first(counts))
    if request.cleaning.deduplicate_exact:
        manifest.cleaning.add(
            step="deduplicate_exact",
            rows_removed=sum(len(r) for r in dedup.exact.values()),
            first_row=_first_source(folders, plan, dedup.exact),
        )
    if request.cleaning.near_duplicate_threshold:
        manifest.cleaning.add(
            step="deduplicate_near",
            rows_removed=sum(len(r) for r in dedup.near.values()),
            first_row=_first_source(folders, plan, dedup.near),
        )
    return manifest


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)))
