"""Building a dataset from a DatasetRequest, read top to bottom, as a stream of row chunks:

1. acquire: read every source record by record, normalise each into a row of the kind, clean (Cleaner), and hand
   the surviving rows on in chunks (DataFrames; Arrow tables where raw-text JSONL was read in Arrow blocks, see
   `reads_blocks`: the same rows, without a Python dict per record);
2. prepare: validate each chunk against the kind's pandera schema, split each row into train or eval, count
   characters and tokens, write the chunk to the split's Parquet file, and fingerprint; and check that every id is
   unique across the whole dataset (`UniqueIds`, bucket files on disk), which the per-chunk schema cannot.

Nothing holds the whole dataset's rows: memory is the chunk, the report's bounded samples, and what grows with the
corpus: the exact-duplicate index (a key per row) and the near-duplicate LSH index (llmft.data.shards moves both to
bucket files on disk). The CLI streams acquire straight into prepare; the Flyte tasks hand the cleaned rows
across a task boundary as a pandera-typed DataFrame (or stream in one task, for corpora beyond memory). Every path
gives the same manifest for the same input."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmft.core import chat_templates
from llmft.core import fingerprint as fp
from llmft.core.datasets import SPLITS, DatasetWriter
from llmft.data import STAGE, __version__
from llmft.data.clean import Cleaner, split_of
from llmft.data.kinds import CONTENT_COLUMNS, SCHEMA_VERSIONS, DataValidationError, kind_name
from llmft.data.normalize import Changes, normalized, text_id, to_row
from llmft.data.sources import PYTHON_SKIP_STEP, Skipped, SourceError, TextBlock, read_source
from llmft.proto.data.v1 import dataset_pb2

if TYPE_CHECKING:
    import pandas as pd

CHUNK_ROWS = 8192
# Rows per split whose lengths the report's histograms show (a uniform sample beyond that).
REPORT_SAMPLE = 100_000
SAMPLES_PER_SPLIT = 5
RAW_TEXT = dataset_pb2.DATASET_KIND_RAW_TEXT


class DatasetRequestError(ValueError):
    """A DatasetRequest that cannot run; the message names the field."""


def config_problems(request: dataset_pb2.DatasetRequest) -> list[str]:
    """Every reason, naming its field, why a request cannot run, its sources aside: the pipeline's config check asks
    this of each dataset section before anything runs."""
    import re

    problems = []
    if not request.name:
        problems.append("name: empty")
    if request.kind not in CONTENT_COLUMNS:
        problems.append(f"kind: {request.kind} is unset or unknown; one of {list(SCHEMA_VERSIONS)}")
    if not 0 <= request.split.eval_fraction < 1:
        problems.append(f"split.eval_fraction: must be in [0, 1), got {request.split.eval_fraction}")
    cleaning = request.cleaning
    if not 0 <= cleaning.near_duplicate_threshold <= 1:
        threshold = cleaning.near_duplicate_threshold
        problems.append(f"cleaning.near_duplicate_threshold: must be in (0, 1] (0 disables), got {threshold}")
    if cleaning.max_chars and cleaning.min_chars > cleaning.max_chars:
        problems.append(f"cleaning.min_chars: {cleaning.min_chars} is above max_chars {cleaning.max_chars}")
    for index, pattern in enumerate(cleaning.drop_patterns):
        try:
            re.compile(pattern)
        except re.error as error:
            problems.append(f"cleaning.drop_patterns[{index}]: invalid regular expression {pattern!r}: {error}")
    return problems


def check_config(request: dataset_pb2.DatasetRequest) -> None:
    """Checks everything but the sources (prepare sees the request without them)."""
    problems = config_problems(request)
    if problems:
        raise DatasetRequestError("; ".join(problems))


def check_request(request: dataset_pb2.DatasetRequest) -> None:
    """Everything, the sources as this machine sees them included (every problem at once, before any is read)."""
    from llmft.data.sources import source_problems

    problems = config_problems(request)
    if not request.sources:
        problems.append("sources: empty; give at least one source")
    for index, source in enumerate(request.sources):
        problems += [f"sources[{index}].{p}" for p in source_problems(source, here=True)]
    if problems:
        raise DatasetRequestError("; ".join(problems))


def columns_of(kind: int) -> list[str]:
    return ["id", "source", *CONTENT_COLUMNS[kind]]


def _string_schema(columns: list[str]) -> Any:
    import pyarrow as pa

    return pa.schema([(name, pa.string()) for name in columns])


def string_table(table: Any, schema: Any) -> Any:
    """`table`'s columns of `schema`, cast to it only where they differ (a cast imports pyarrow.compute)."""
    table = table.select(schema.names)
    return table if table.schema.equals(schema) else table.cast(schema)


# Arrow data built and read through their buffers: `pa.array()` asks pyarrow's pandas shim whether its input is a
# pandas object, which imports pandas (~50 MiB resident), and `Table.filter`/`Table.cast` and the compute functions
# import pyarrow.compute (~8 MiB), in a process that only moves Arrow batches (the sharded merge).


def arrow_rows(table: Any, keep: Any) -> Any:
    """The rows of `table` where the numpy booleans `keep` are true, as zero-copy slices of its runs of kept rows."""
    import numpy as np
    import pyarrow as pa

    keep = np.asarray(keep, dtype=bool)
    if len(keep) != table.num_rows:
        raise ValueError(f"arrow_rows: {len(keep)} flags for {table.num_rows} rows")
    if keep.all():
        return table
    edges = np.flatnonzero(np.diff(np.concatenate(([0], keep.view(np.int8), [0]))))
    runs = [table.slice(int(start), int(stop - start)) for start, stop in zip(edges[0::2], edges[1::2], strict=True)]
    return pa.concat_tables(runs) if runs else table.slice(0, 0)


def utf8_lengths(chunked: Any) -> Any:
    """The length in characters (code points) of each string of a null-free Arrow string (chunked) array, as numpy
    int64, read from its buffers: the bytes of each string that do not continue a UTF-8 sequence."""
    import numpy as np

    counts = [np.empty(0, np.int64)]
    for chunk in getattr(chunked, "chunks", [chunked]):
        if chunk.null_count:
            raise ValueError("utf8_lengths: the array has nulls")
        if not len(chunk):
            continue
        _, offsets_buffer, data = chunk.buffers()  # a slice's buffers are its parent's: read only its own bytes
        offsets = np.frombuffer(offsets_buffer, dtype=np.int32, count=len(chunk) + 1, offset=chunk.offset * 4)
        first, last = int(offsets[0]), int(offsets[-1])
        if last == first or np.frombuffer(data, np.uint8, last - first, first).max() < 0x80:  # ASCII: bytes
            counts.append(np.diff(offsets).astype(np.int64))
            continue
        starts = np.zeros(last - first + 1, dtype=np.int32)  # offsets are int32: so is every count
        np.cumsum(np.frombuffer(data, np.uint8, last - first, first) & 0xC0 != 0x80, out=starts[1:])
        counts.append((starts[offsets[1:] - first] - starts[offsets[:-1] - first]).astype(np.int64))
    return np.concatenate(counts)


def arrow_strings(values: list[str]) -> Any:
    """A string Arrow array of `values`."""
    import numpy as np
    import pyarrow as pa

    encoded = [value.encode("utf-8") for value in values]  # a lone surrogate fails here, as Arrow would
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(value) for value in encoded], out=offsets[1:])
    return pa.Array.from_buffers(
        pa.string(), len(encoded), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    )


def config_of(request: dataset_pb2.DatasetRequest) -> dataset_pb2.DatasetRequest:
    """The request without its sources: what, besides content, decides the dataset. Sources enter the fingerprint
    through what was read, never through paths or URLs."""
    config = dataset_pb2.DatasetRequest()
    config.CopyFrom(request)
    del config.sources[:]
    return config


def reads_blocks(request: dataset_pb2.DatasetRequest) -> bool:
    """Whether raw-text JSONL is read in Arrow blocks (sources.TextBlock): for normalised raw text whose cleaning is
    per row and cheap (blank rows, max_chars, exact duplicates). Either way a row goes through the same
    normalisation, cleaner and content id, so both reads give the same dataset."""
    cleaning = request.cleaning
    return (
        request.kind == dataset_pb2.DATASET_KIND_RAW_TEXT
        and cleaning.normalize
        and not (cleaning.min_chars or cleaning.drop_patterns or cleaning.languages)
        and not cleaning.near_duplicate_threshold
    )


def no_rows_error(
    name: str, rows_read: int, skipped_files: int, first_skipped: str, removed: list[tuple[str, int, str]]
) -> SourceError:
    """Why a dataset has no rows: its sources hold none, or cleaning removed them all (naming each step's count)."""
    if rows_read == 0:
        skipped = f": {skipped_files} Python file(s) do not parse, the first {first_skipped}" if skipped_files else ""
        return SourceError(f"{name}: the sources hold no rows{skipped}")
    steps = "; ".join(f"{step} removed {count} (the first: {first})" for step, count, first in removed if count)
    return SourceError(f"{name}: cleaning left none of the {rows_read} rows read: {steps}")


class Acquisition:
    """The cleaned rows of a request as a stream of chunks (DataFrames, or Arrow tables of rows read in Arrow blocks).
    `summary()` (source fingerprints, rows removed by each cleaning step) is complete once `chunks()` is exhausted."""

    def __init__(self, request: dataset_pb2.DatasetRequest, chunk_rows: int = CHUNK_ROWS) -> None:
        check_request(request)
        self.request = request
        self.chunk_rows = chunk_rows
        self.source_fingerprints: list[str] = []
        self.cleaner = Cleaner(CONTENT_COLUMNS[request.kind], request.cleaning)
        self.changes = Changes()
        self.rows_read = 0
        self.repeats: dict[str, int] = {}
        self.skipped_files = 0
        self.first_skipped = ""

    def _kept(self, row: dict[str, Any]) -> bool:
        """Cleans a row; a kept repeat of the same content (deduplication off) gets its own id: "<hash>~2", ..."""
        if not self.cleaner.keep(row):
            return False
        if self.request.cleaning.deduplicate_exact:  # every kept row is its content's first: nothing to count
            return True
        seen = self.repeats.get(row["id"], 0) + 1
        self.repeats[row["id"]] = seen
        if seen > 1:
            row["id"] = f"{row['id']}~{seen}"
        return True

    def _block_rows(self, block: TextBlock) -> Any:
        """The kept rows of a block of raw text lines, as an Arrow table: each line through the same normalisation,
        content id and cleaner as a record."""
        import pyarrow as pa

        ids, sources, texts = [], [], []
        for number, raw in enumerate(block.text.to_pylist(), start=block.first):
            self.rows_read += 1
            text, removed = normalized(raw)
            source = f"{block.origin}:{number}"
            if removed:
                self.changes.note(source)
            row = {"id": text_id(text), "source": source, "text": text}
            if self._kept(row):
                ids.append(row["id"])
                sources.append(source)
                texts.append(text)
        return pa.table({"id": ids, "source": sources, "text": texts}, schema=_string_schema(columns_of(RAW_TEXT)))

    def rows(self) -> Iterator[dict[str, Any] | Any]:
        """Kept rows as dicts, and kept rows of Arrow blocks as tables, in source order."""
        kind, normalize = self.request.kind, self.request.cleaning.normalize
        blocks = reads_blocks(self.request)
        for position, source in enumerate(self.request.sources):
            try:
                for item in read_source(source, self.source_fingerprints, blocks=blocks):
                    if isinstance(item, TextBlock):
                        yield self._block_rows(item)
                        continue
                    if isinstance(item, Skipped):
                        self.skipped_files += 1
                        self.first_skipped = self.first_skipped or f"{item.origin} ({item.reason})"
                        continue
                    self.rows_read += 1
                    row = to_row(item, kind, normalize, self.changes)
                    if self._kept(row):
                        yield row
            except SourceError as error:
                raise SourceError(f"sources[{position}]: {error}") from error

    def chunks(self) -> Iterator[pd.DataFrame | Any]:
        """Chunks in source order: a DataFrame of rows read one by one, or an Arrow table of rows read in blocks, each
        of at least `chunk_rows` rows unless the stream ends or switches between the two reads."""
        import pandas as pd
        import pyarrow as pa

        columns = columns_of(self.request.kind)
        buffer: list[dict[str, Any]] = []
        tables: list[Any] = []
        kept = 0

        def flush() -> Iterator[pd.DataFrame | Any]:
            nonlocal buffer, tables, kept
            if buffer:
                kept += len(buffer)
                yield pd.DataFrame(buffer, columns=columns)
            if tables:
                table = pa.concat_tables(tables)
                kept += table.num_rows
                if table.num_rows:
                    yield table
            buffer, tables = [], []

        for item in self.rows():
            if isinstance(item, dict):
                if tables:
                    yield from flush()
                buffer.append(item)
                full = len(buffer) >= self.chunk_rows
            else:
                if buffer:
                    yield from flush()
                tables.append(item)
                full = sum(t.num_rows for t in tables) >= self.chunk_rows
            if full:
                yield from flush()
        pending = len(buffer) + sum(t.num_rows for t in tables)
        if kept + pending == 0:
            raise no_rows_error(
                self.request.name, self.rows_read, self.skipped_files, self.first_skipped, self.cleaner.removed
            )
        yield from flush()

    def summary(self) -> dataset_pb2.DatasetManifest:
        """The part of the manifest acquisition knows, to hand to `prepare` (across a task boundary if need be)."""
        manifest = dataset_pb2.DatasetManifest(source_fingerprints=self.source_fingerprints)
        if any(source.format == "python_docstrings" for source in self.request.sources):
            manifest.cleaning.add(step=PYTHON_SKIP_STEP, rows_removed=self.skipped_files, first_row=self.first_skipped)
        if self.request.cleaning.normalize:
            manifest.cleaning.add(
                step="strip_control_characters", rows_changed=self.changes.rows, first_row=self.changes.first
            )
        for step, removed, first in self.cleaner.removed:
            manifest.cleaning.add(step=step, rows_removed=removed, first_row=first)
        return manifest


class Reservoir:
    """A uniform sample of at most `size` values of a stream (Vitter's algorithm R, seeded): the report's length
    histograms hold this, not a value per row, so their memory does not grow with the corpus."""

    def __init__(self, size: int | None = None, seed: int = 0) -> None:
        import random

        self.size = REPORT_SAMPLE if size is None else size
        self.seen = 0
        self.values: list[int] = []
        self._random = random.Random(seed)

    def extend(self, values: Iterable[int]) -> None:
        for value in values:
            self.seen += 1
            if len(self.values) < self.size:
                self.values.append(value)
            else:
                slot = self._random.randrange(self.seen)
                if slot < self.size:
                    self.values[slot] = value


class UniqueIds:
    """Whether every id of a dataset is unique, in bounded memory: pandera's `unique` sees one chunk, this sees them
    all. Each id's 128-bit hash and row number go to one of `buckets` files under `folder` by hash; `repeats()` then
    loads and sorts one bucket at a time (24 bytes a row: ~37 MiB a bucket at 100M rows)."""

    RECORD = [("k0", "<u8"), ("k1", "<u8"), ("row", "<u8")]

    def __init__(self, folder: Path, buckets: int = 64) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.paths = [folder / f"ids-{b:03d}.bin" for b in range(buckets)]
        self.handles = [open(path, "wb") for path in self.paths]  # noqa: SIM115

    def add(self, ids: list[str], first_row: int) -> None:
        """The ids of rows first_row, first_row + 1, ... (rows numbered from the dataset's start)."""
        import numpy as np

        digests = b"".join(hashlib.blake2b(i.encode("utf-8", "surrogatepass"), digest_size=16).digest() for i in ids)
        keys = np.frombuffer(digests, dtype=np.uint64).reshape(-1, 2)
        records = np.empty(len(ids), dtype=self.RECORD)
        records["k0"], records["k1"] = keys[:, 0], keys[:, 1]
        records["row"] = np.arange(first_row, first_row + len(ids), dtype=np.uint64)
        which = records["k0"] % np.uint64(len(self.paths))
        for bucket in np.unique(which):
            self.handles[int(bucket)].write(records[which == bucket].tobytes())

    def repeats(self, limit: int = 20) -> tuple[int, list[tuple[int, int]]]:
        """(how many rows repeat an earlier row's id, the first `limit` as (earlier row, row)); the files go."""
        import numpy as np

        for handle in self.handles:
            handle.close()
        count = 0
        pairs: list[tuple[int, int]] = []
        for path in self.paths:
            records = np.fromfile(path, dtype=self.RECORD)
            path.unlink()
            if len(records) < 2:
                continue
            records = records[np.lexsort((records["row"], records["k1"], records["k0"]))]
            same = (records["k0"][1:] == records["k0"][:-1]) & (records["k1"][1:] == records["k1"][:-1])
            count += int(same.sum())
            for i in np.flatnonzero(same)[: max(0, limit - len(pairs))]:
                pairs.append((int(records["row"][i]), int(records["row"][i + 1])))
        return count, sorted(pairs, key=lambda pair: pair[1])

    def __enter__(self) -> UniqueIds:
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.close()
        for path in self.paths:
            path.unlink(missing_ok=True)


def repeated_ids_error(count: int, pairs: list[tuple[int, int]]) -> DataValidationError:
    listed = "; ".join(f"row {row} repeats the id of row {earlier}" for earlier, row in pairs)
    more = f" (the first {len(pairs)})" if count > len(pairs) else ""
    failures = [
        {"source": "", "row": row, "field": "id", "check": "unique across the dataset", "detail": f"row {earlier}"}
        for earlier, row in pairs
    ]
    return DataValidationError(
        f"{count} row(s) repeat the id of an earlier row in another chunk{more}: {listed}", failures
    )


@dataclass
class SplitAccumulator:
    """Running statistics and content digest of one split."""

    name: str
    rows: int = 0
    characters: int = 0
    tokens: int = 0
    over_max: int = 0
    lengths: Reservoir = field(default_factory=Reservoir)
    token_counts: Reservoir = field(default_factory=Reservoir)
    samples: list[dict[str, Any]] = field(default_factory=list)
    digest: Any = field(default_factory=hashlib.sha256)


def _token_counts(part: Any, kind: int, tokenizer: Any) -> list[int]:
    """Tokens of each row of an Arrow table `part`: a chat's rendered conversation, else its content joined by
    newlines."""
    if kind == dataset_pb2.DATASET_KIND_CHAT:
        return [
            len(tokenizer.apply_chat_template(json.loads(m), tokenize=True, return_dict=True)["input_ids"])
            for m in part.column("messages").to_pylist()
        ]
    columns = [part.column(c).to_pylist() for c in CONTENT_COLUMNS[kind]]
    texts = ["\n".join(values) for values in zip(*columns, strict=True)]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def validated(chunk: pd.DataFrame | Any, kind: int, offset: int, unique_ids: bool = True) -> Any:
    """A chunk validated against the kind's pandera schema (row numbers count from `offset`), as an Arrow table of the
    kind's columns. Without `unique_ids`, ids may repeat within the chunk (see schemas.validate_rows)."""
    import pyarrow as pa

    from llmft.data.schemas import validate_rows

    frame = chunk.to_pandas() if isinstance(chunk, pa.Table) else chunk.reset_index(drop=True)
    frame.index = frame.index + offset
    validate_rows(frame, kind, unique_ids)
    schema = _string_schema(columns_of(kind))
    if isinstance(chunk, pa.Table):
        return string_table(chunk, schema)
    return pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)


def split_keys(table: Any, kind: int) -> list[str]:
    """What decides each row's split: the question it answers, so every row asking the same question lands in the
    same split, and datasets built from the same source with the same split config hold out the same questions
    whatever their kind (a held-out chat question is never a preference pair's training prompt):
    - chat: the first user turn's text;
    - preference and prompt: the prompt;
    - raw text: the document's id (the pieces of one long document, `<id>~<n>`, stay together)."""
    if kind == dataset_pb2.DATASET_KIND_CHAT:
        return ["prompt:" + first_user_turn(messages) for messages in table.column("messages").to_pylist()]
    if kind in (dataset_pb2.DATASET_KIND_PREFERENCE, dataset_pb2.DATASET_KIND_PROMPT):
        return ["prompt:" + prompt for prompt in table.column("prompt").to_pylist()]
    return [row_id.split("~", 1)[0] for row_id in table.column("id").to_pylist()]


def first_user_turn(messages: str) -> str:
    """The first user turn of a chat row's conversation (the conversation itself when it has none, e.g. a system
    turn and an assistant turn)."""
    turns = json.loads(messages)
    return next((str(t.get("content", "")) for t in turns if t.get("role") == "user"), messages)


def prepare(
    request: dataset_pb2.DatasetRequest,
    chunks: Iterable[pd.DataFrame],
    summary: Any,
    out_dir: Path,
    validated_rows: bool = False,
) -> tuple[dataset_pb2.DatasetManifest, dict[str, Any]]:
    """Validates, splits, counts and writes the row chunks into `out_dir` (train.parquet, eval.parquet,
    manifest.json). `summary` is a DatasetManifest, or a callable returning one once `chunks` is exhausted. With
    `validated_rows` the chunks are Arrow tables whose rows passed the kind's schema already (a shard's worker
    validated them), so pandera does not run again here; ids are checked unique across the dataset either way.
    Returns the manifest and a report (for the Deck). On any error nothing is left at `out_dir`."""
    check_config(request)
    kind = request.kind
    columns = CONTENT_COLUMNS[kind]
    tokenizer = None
    tokenizer_fingerprint = ""
    if request.tokenizer:
        from llmft.core.models import load_tokenizer, resolve_tokenizer_dir
        from llmft.core.models import tokenizer_fingerprint as tok_fp

        model_dir = resolve_tokenizer_dir(request.tokenizer)
        tokenizer = load_tokenizer(model_dir)
        tokenizer_fingerprint = tok_fp(model_dir)
        if kind == dataset_pb2.DATASET_KIND_CHAT or request.chat_template:
            need = chat_templates.REQUIRED if kind == dataset_pb2.DATASET_KIND_CHAT else chat_templates.OPTIONAL
            try:
                chat_templates.apply_chat_template(
                    tokenizer, request.chat_template, request.tokenizer, field="chat_template", need=need
                )
            except chat_templates.ChatTemplateError as error:
                raise DatasetRequestError(str(error)) from error
            if request.chat_template:  # the statistics' tokenizer is the files plus the chosen template
                tokenizer_fingerprint = fp.combine(tokenizer_fingerprint, fp.fingerprint_text(tokenizer.chat_template))

    import tempfile

    import numpy as np

    splits = {name: SplitAccumulator(name) for name in SPLITS}
    arrow_schema = _string_schema(columns_of(kind))
    offset = 0
    with (
        DatasetWriter(out_dir, columns_of(kind)) as writer,
        tempfile.TemporaryDirectory(prefix=".llmft-ids-", dir=Path(out_dir).parent) as scratch,
        UniqueIds(Path(scratch)) as unique,
    ):
        for chunk in chunks:
            table = string_table(chunk, arrow_schema) if validated_rows else validated(chunk, kind, offset)
            ids = table.column("id").to_pylist()
            unique.add(ids, offset)
            offset += table.num_rows
            assignment = [split_of(key, request.split) for key in split_keys(table, kind)]
            # Characters of the content columns joined by newlines, as row_text counts them.
            characters = sum(utf8_lengths(table.column(c)) for c in columns) + len(columns) - 1
            for name in SPLITS:
                mask = np.array([a == name for a in assignment], dtype=bool)
                part = arrow_rows(table, mask)
                if not part.num_rows:
                    continue
                acc = splits[name]
                lengths = characters[mask].tolist()
                acc.rows += part.num_rows
                acc.characters += sum(lengths)
                acc.lengths.extend(lengths)
                if tokenizer is not None:
                    counts = _token_counts(part, kind, tokenizer)
                    acc.tokens += sum(counts)
                    acc.token_counts.extend(counts)
                    if request.max_tokens:
                        acc.over_max += sum(1 for n in counts if n > request.max_tokens)
                part_ids = [row_id for row_id, keep in zip(ids, mask, strict=True) if keep]
                acc.digest.update("".join(f"{row_id}\n" for row_id in part_ids).encode("ascii"))
                if len(acc.samples) < SAMPLES_PER_SPLIT:
                    acc.samples.extend(part.slice(0, SAMPLES_PER_SPLIT - len(acc.samples)).to_pylist())
                writer.write(name, part)
        count, pairs = unique.repeats()
        if count:
            raise repeated_ids_error(count, pairs)
        known = summary() if callable(summary) else summary
        manifest = dataset_pb2.DatasetManifest(
            name=request.name,
            kind=kind,
            schema_version=SCHEMA_VERSIONS[kind],
            tokenizer_fingerprint=tokenizer_fingerprint,
            source_fingerprints=known.source_fingerprints,
            cleaning=known.cleaning,
        )
        for acc in splits.values():
            manifest.splits.add(
                name=acc.name,
                rows=acc.rows,
                characters=acc.characters,
                tokens=acc.tokens,
                rows_over_max_tokens=acc.over_max,
            )
        config = config_of(request)
        manifest.fingerprint = fp.combine(
            fp.fingerprint_message(config),
            manifest.schema_version,
            tokenizer_fingerprint,
            *(f"{acc.name}:{acc.digest.hexdigest()}" for acc in splits.values()),
        )
        manifest.provenance.CopyFrom(fp.provenance(STAGE, __version__, config, known.source_fingerprints))
        writer.finish(manifest)
    report = {
        "removed": [(c.step, c.rows_removed, c.rows_changed, c.first_row) for c in manifest.cleaning],
        "lengths": {name: acc.lengths.values for name, acc in splits.items()},
        "tokens": {name: acc.token_counts.values for name, acc in splits.items()},
        "sampled": {name: (len(acc.lengths.values), acc.lengths.seen) for name, acc in splits.items()},
        "samples": {name: acc.samples for name, acc in splits.items()},
    }
    return manifest, report


def build_dataset(
    request: dataset_pb2.DatasetRequest, out_dir: Path, chunk_rows: int = CHUNK_ROWS
) -> tuple[dataset_pb2.DatasetManifest, dict[str, Any]]:
    """Acquire streamed straight into prepare: the CLI's path, and the Flyte streaming task's."""
    acquisition = Acquisition(request, chunk_rows)
    return prepare(request, acquisition.chunks(), acquisition.summary, out_dir)


def acquire_frame(request: dataset_pb2.DatasetRequest) -> tuple[pd.DataFrame, dataset_pb2.DatasetManifest]:
    """All cleaned rows as one DataFrame with the acquisition summary: what the Flyte acquire tasks hand on."""
    import pandas as pd

    acquisition = Acquisition(request)
    frames = [c if isinstance(c, pd.DataFrame) else c.to_pandas() for c in acquisition.chunks()]
    frame = pd.concat(frames, ignore_index=True)
    return frame, acquisition.summary()


def frame_chunks(frame: pd.DataFrame, chunk_rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    for start in range(0, max(len(frame), 1), chunk_rows):
        yield frame.iloc[start : start + chunk_rows]


def cleaning_lines(manifest: dataset_pb2.DatasetManifest) -> list[str]:
    """What cleaning removed or changed, one line per step that did anything, naming the first row: what a command
    prints on stderr, so nothing is dropped where the user does not look."""
    lines = []
    for step in manifest.cleaning:
        if step.rows_removed and step.step == PYTHON_SKIP_STEP:  # counts files
            lines.append(f"cleaning: {step.step} skipped {step.rows_removed} file(s), the first {step.first_row}")
        elif step.rows_removed:
            lines.append(f"cleaning: {step.step} removed {step.rows_removed} row(s), the first from {step.first_row}")
        if step.rows_changed:
            lines.append(f"cleaning: {step.step} changed {step.rows_changed} row(s), the first from {step.first_row}")
    return lines


def describe(manifest: dataset_pb2.DatasetManifest) -> str:
    parts = [f"{s.name}: {s.rows} rows, {s.tokens} tokens" for s in manifest.splits]
    return f"{manifest.name} ({kind_name(manifest.kind)}, {fp.short(manifest.fingerprint)}): " + "; ".join(parts)
