"""The dataset report shown in the data stage's Deck (and written by the CLI with --report): counts per split,
rows removed by each cleaning step, length histograms and sample rows."""

from __future__ import annotations

from typing import Any

from llmft.core import decks
from llmft.data.kinds import DataValidationError, kind_name
from llmft.proto.data.v1 import dataset_pb2


def report_html(manifest: dataset_pb2.DatasetManifest, report: dict[str, Any]) -> str:
    counts = decks.table(
        [
            {
                "split": s.name,
                "rows": s.rows,
                "characters": s.characters,
                "tokens": s.tokens,
                "rows over max_tokens": s.rows_over_max_tokens,
            }
            for s in manifest.splits
        ],
        title=f"{manifest.name}: {kind_name(manifest.kind)} ({manifest.schema_version}), {manifest.fingerprint}",
    )
    removed = decks.table(
        [
            {"step": step, "rows removed": removed, "rows changed": changed, "first row": first}
            for step, removed, changed, first in report["removed"]
        ]
        or [{"step": "(none)", "rows removed": 0}],
        title="Cleaning",
    )
    sections = [counts, removed]
    shards = report.get("shards") or []
    if shards:  # a sharded build: what each shard read, and the memory of the workers that ran them
        peaks = [s["peak_rss_mib"] for s in shards if s.get("peak_rss_mib") is not None]
        sections.append(
            decks.table(
                [
                    {
                        "shards": len(shards),
                        "rows read": sum(s["rows_read"] for s in shards),
                        "rows kept by the per-row steps": sum(s["rows_kept"] for s in shards),
                        "most rows in one shard": max(s["rows_read"] for s in shards),
                        "largest worker peak RSS (MiB)": max(peaks) if peaks else "",
                        **{f"{step} (s)": round(seconds, 1) for step, seconds in report.get("seconds", {}).items()},
                    }
                ],
                title="Shards",
            )
        )
        if len(shards) > 1:
            sections.append(decks.histogram([s["rows_read"] for s in shards], "rows read per shard", "rows"))
    sampled = {name: (shown, rows) for name, (shown, rows) in report.get("sampled", {}).items() if shown < rows}
    if sampled:
        sections.append(
            decks.table(
                [
                    {"split": name, "rows in the histograms": shown, "rows": rows}
                    for name, (shown, rows) in sampled.items()
                ],
                title="The histograms below show a uniform sample of each split's rows",
            )
        )

    def of(name: str) -> str:
        return " (sample)" if name in sampled else ""

    for name, lengths in report["lengths"].items():
        if lengths:
            sections.append(decks.histogram(lengths, f"{name}: characters per row{of(name)}", "characters"))
    for name, tokens in report["tokens"].items():
        if tokens:
            sections.append(decks.histogram(tokens, f"{name}: tokens per row{of(name)}", "tokens"))
    for name, samples in report["samples"].items():
        if samples:
            sections.append(decks.table(samples, title=f"{name}: sample rows"))
    return decks.page(*sections)


def failures_html(error: DataValidationError, limit: int = 500) -> str:
    """The Deck of a dataset that failed validation: every failing row, field and check."""
    shown = error.failures[:limit]
    more = f" (first {limit} of {len(error.failures)})" if len(error.failures) > limit else ""
    return decks.table(shown, columns=["source", "row", "field", "check", "detail"], title=f"Validation failures{more}")
