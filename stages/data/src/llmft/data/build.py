"""Building a dataset from a DatasetRequest, read top to bottom: acquire (read sources, normalise to the kind's rows,
clean), then prepare (validate, split, count tokens, write Parquet, fingerprint). The CLI runs both in one process; the
Flyte tasks run them as two tasks with the validated rows between them, so both give the same manifest."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from llmft.core import fingerprint as fp
from llmft.core.datasets import SPLITS, write_dataset
from llmft.data import STAGE, __version__
from llmft.data.clean import clean_rows, split_of
from llmft.data.normalize import to_row, unique_ids
from llmft.data.schemas import CONTENT_COLUMNS, SCHEMA_VERSIONS, kind_name, validate_rows
from llmft.data.sources import SourceError, read_source
from llmft.proto.data.v1 import dataset_pb2


class DatasetRequestError(ValueError):
    """A DatasetRequest that cannot run; the message names the field."""


@dataclass
class AcquiredRows:
    """Cleaned rows, with the fingerprints of the sources they came from and the rows each cleaning step removed."""

    frame: pd.DataFrame
    source_fingerprints: list[str] = field(default_factory=list)
    removed: list[tuple[str, int]] = field(default_factory=list)

    def summary(self) -> dataset_pb2.DatasetManifest:
        """The part of the manifest acquisition knows (sources and cleaning), to hand to `prepare` across a task
        boundary."""
        manifest = dataset_pb2.DatasetManifest(source_fingerprints=self.source_fingerprints)
        for step, removed in self.removed:
            manifest.cleaning.add(step=step, rows_removed=removed)
        return manifest

    @classmethod
    def from_summary(cls, frame: pd.DataFrame, summary: dataset_pb2.DatasetManifest) -> AcquiredRows:
        return cls(
            frame=frame,
            source_fingerprints=list(summary.source_fingerprints),
            removed=[(c.step, c.rows_removed) for c in summary.cleaning],
        )


def check_request(request: dataset_pb2.DatasetRequest) -> None:
    if not request.name:
        raise DatasetRequestError("name: empty")
    if request.kind not in CONTENT_COLUMNS:
        raise DatasetRequestError(f"kind: {request.kind} is unset or unknown; one of {list(SCHEMA_VERSIONS)}")
    if not request.sources:
        raise DatasetRequestError("sources: empty; give at least one source")
    if not 0 <= request.split.eval_fraction < 1:
        raise DatasetRequestError(f"split.eval_fraction: must be in [0, 1), got {request.split.eval_fraction}")


def empty_frame(kind: int) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=str) for c in ("id", "source", *CONTENT_COLUMNS[kind])})


def acquire(request: dataset_pb2.DatasetRequest) -> AcquiredRows:
    """Reads every source, normalises its records to rows of the requested kind and cleans them."""
    check_request(request)
    rows: list[dict[str, Any]] = []
    fingerprints: list[str] = []
    for position, source in enumerate(request.sources):
        try:
            data = read_source(source)
        except SourceError as error:
            raise SourceError(f"sources[{position}]: {error}") from error
        fingerprints.extend(data.fingerprints)
        rows.extend(to_row(record, request.kind, request.cleaning.normalize) for record in data.records)
    if not rows:
        raise SourceError(f"{request.name}: the sources hold no rows")
    unique_ids(rows)
    columns = CONTENT_COLUMNS[request.kind]
    cleaned = clean_rows(rows, columns, request.cleaning)
    if not cleaned.rows:
        raise SourceError(f"{request.name}: no rows left after cleaning ({dict(cleaned.removed)})")
    frame = pd.DataFrame(cleaned.rows, columns=["id", "source", *columns])
    return AcquiredRows(frame=frame, source_fingerprints=fingerprints, removed=cleaned.removed)


def _token_counts(frame: pd.DataFrame, kind: int, tokenizer: Any) -> list[int]:
    if frame.empty:
        return []
    if kind == dataset_pb2.DATASET_KIND_CHAT:
        return [
            len(tokenizer.apply_chat_template(json.loads(m), tokenize=True, return_dict=True)["input_ids"])
            for m in frame["messages"]
        ]
    columns = CONTENT_COLUMNS[kind]
    texts = ["\n".join(str(row[c]) for c in columns) for _, row in frame.iterrows()]
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [len(ids) for ids in encoded]


def prepare(
    request: dataset_pb2.DatasetRequest, acquired: AcquiredRows, out_dir: Path
) -> tuple[dataset_pb2.DatasetManifest, dict[str, Any]]:
    """Validates, splits and writes the rows to `out_dir` (train.parquet, eval.parquet, manifest.json).
    Returns the manifest and a report (for the Deck). Nothing is written unless every row is valid."""
    check_request(request)
    columns = CONTENT_COLUMNS[request.kind]
    frame = validate_rows(acquired.frame.reset_index(drop=True), request.kind)

    frame["split"] = [split_of(row_id, request.split) for row_id in frame["id"]]
    splits = {name: frame[frame["split"] == name].drop(columns="split").reset_index(drop=True) for name in SPLITS}

    tokenizer = None
    tokenizer_fingerprint = ""
    if request.tokenizer:
        from llmft.core.models import load_tokenizer, resolve_model_dir
        from llmft.core.models import tokenizer_fingerprint as tok_fp

        model_dir = resolve_model_dir(request.tokenizer).directory
        tokenizer = load_tokenizer(model_dir)
        tokenizer_fingerprint = tok_fp(model_dir)

    manifest = dataset_pb2.DatasetManifest(
        name=request.name,
        kind=request.kind,
        schema_version=SCHEMA_VERSIONS[request.kind],
        tokenizer_fingerprint=tokenizer_fingerprint,
        source_fingerprints=acquired.source_fingerprints,
    )
    report: dict[str, Any] = {"lengths": {}, "tokens": {}, "samples": {}, "removed": acquired.removed}
    content_digests = []
    for name in SPLITS:
        part = splits[name]
        lengths = [len("\n".join(str(row[c]) for c in columns)) for _, row in part.iterrows()]
        tokens = _token_counts(part, request.kind, tokenizer) if tokenizer is not None else []
        stats = manifest.splits.add(name=name, rows=len(part), characters=sum(lengths), tokens=sum(tokens))
        if request.max_tokens:
            stats.rows_over_max_tokens = sum(1 for t in tokens if t > request.max_tokens)
        report["lengths"][name] = lengths
        report["tokens"][name] = tokens
        report["samples"][name] = part.head(5).to_dict("records")
        content_digests.append(fp.fingerprint_text(name + "\n" + "\n".join(part["id"])))
    for step, removed in acquired.removed:
        manifest.cleaning.add(step=step, rows_removed=removed)

    config = dataset_pb2.DatasetRequest()
    config.CopyFrom(request)
    del config.sources[:]  # sources enter through their content fingerprints, not their paths
    config.name = ""
    manifest.fingerprint = fp.combine(
        fp.fingerprint_message(config), manifest.schema_version, tokenizer_fingerprint, *content_digests
    )
    manifest.provenance.CopyFrom(fp.provenance(STAGE, __version__, config, acquired.source_fingerprints))

    write_dataset(out_dir, splits, manifest)
    return manifest, report


def build_dataset(
    request: dataset_pb2.DatasetRequest, out_dir: Path
) -> tuple[dataset_pb2.DatasetManifest, dict[str, Any]]:
    return prepare(request, acquire(request), out_dir)


def describe(manifest: dataset_pb2.DatasetManifest) -> str:
    parts = [f"{s.name}: {s.rows} rows, {s.tokens} tokens" for s in manifest.splits]
    return f"{manifest.name} ({kind_name(manifest.kind)}, {fp.short(manifest.fingerprint)}): " + "; ".join(parts)
