"""HTML for Flyte Decks (and standalone reports): tables and matplotlib plots embedded as PNG. Pure functions that
return HTML strings; a stage's tasks module publishes them with flytekit's Deck, and its CLI can write them to files."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def table(rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None, title: str = "") -> str:
    rows = list(rows)
    columns = list(columns or (rows[0].keys() if rows else []))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(row.get(c, ''))}</td>" for c in columns) + "</tr>" for row in rows)
    caption = f"<h3>{html.escape(title)}</h3>" if title else ""
    return f'{caption}<table border="1" style="border-collapse:collapse"><tr>{head}</tr>{body}</table>'


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    if len(text) > 400:
        text = text[:400] + " ..."
    return (
        f"<pre style='margin:0;white-space:pre-wrap'>{html.escape(text)}</pre>" if "\n" in text else html.escape(text)
    )


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{encoded}"/>'


def histogram(values: Sequence[float], title: str, xlabel: str, bins: int = 40) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3))
    axis.hist(list(values), bins=bins, color="#4c72b0")
    axis.set_title(title)
    axis.set_xlabel(xlabel)
    axis.set_ylabel("rows")
    return _png(figure)


def line_plot(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str, xlabel: str, ylabel: str
) -> str:
    """One line per name: {name: (x values, y values)}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3))
    for name, (xs, ys) in series.items():
        axis.plot(list(xs), list(ys), label=name, marker="." if len(xs) < 50 else None)
    axis.set_title(title)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    if len(series) > 1:
        axis.legend()
    return _png(figure)


def page(*sections: str) -> str:
    return "\n".join(f"<section>{s}</section>" for s in sections)
