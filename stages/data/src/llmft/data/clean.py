"""Cleaning and splitting rows: length and pattern filters, exact deduplication, and a deterministic train/eval split
by content hash, so adding rows never moves existing rows between splits. Each step reports how many rows it
removed."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmft.data.sources import SourceError
from llmft.proto.data.v1 import dataset_pb2


@dataclass
class CleaningResult:
    rows: list[dict[str, Any]]
    removed: list[tuple[str, int]] = field(default_factory=list)


def row_text(row: dict[str, Any], columns: tuple[str, ...]) -> str:
    return "\n".join(str(row[c]) for c in columns)


def clean_rows(
    rows: list[dict[str, Any]], columns: tuple[str, ...], config: dataset_pb2.CleaningConfig
) -> CleaningResult:
    steps: list[tuple[str, Callable[[dict[str, Any]], bool]]] = []
    if config.max_chars:
        for row in rows:
            length = len(row_text(row, columns))
            if length > config.max_chars:
                raise SourceError(
                    f"{row['source']}: row is {length} characters, over cleaning.max_chars={config.max_chars}"
                )
    if config.min_chars:
        steps.append(("min_chars", lambda row: len(row_text(row, columns).strip()) >= config.min_chars))
    if config.drop_patterns:
        try:
            patterns = [re.compile(p) for p in config.drop_patterns]
        except re.error as error:
            raise SourceError(f"cleaning.drop_patterns: invalid regular expression: {error}") from error
        steps.append(("drop_patterns", lambda row: not any(p.search(row_text(row, columns)) for p in patterns)))
    # Blank documents (empty files, whitespace-only records) carry nothing to learn: drop them. Chat turns are
    # checked turn by turn by the schema instead, where an empty turn is an error.
    steps.insert(0, ("drop_blank", lambda row: bool(row_text(row, columns).strip())))
    result = CleaningResult(rows=list(rows))
    for name, keep in steps:
        before = len(result.rows)
        result.rows = [row for row in result.rows if keep(row)]
        result.removed.append((name, before - len(result.rows)))
    if config.deduplicate_exact:
        seen: set[str] = set()
        kept = []
        for row in result.rows:
            content = row["id"].split("~", 1)[0]
            if content not in seen:
                seen.add(content)
                kept.append(row)
        result.removed.append(("deduplicate_exact", len(result.rows) - len(kept)))
        result.rows = kept
    return result


def split_of(row_id: str, config: dataset_pb2.SplitConfig) -> str:
    """ "eval" for a stable `eval_fraction` of ids (by hash of seed and id), else "train"."""
    digest = hashlib.sha256(f"{config.seed}:{row_id}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    return "eval" if position < config.eval_fraction else "train"
