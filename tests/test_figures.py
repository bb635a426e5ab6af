"""A figure a README or CHANGELOG quotes from a benchmark is written as a link to the bench JSON it comes from, the
key path after '#': `[1.60x](../../bench/train_throughput.json#packing_speedup_default)`. This checks that every such
figure equals the JSON's value at the precision the text gives it, so a rerun benchmark cannot leave a stale figure
behind: rerun, and the text must follow.

How a figure's text reads: its first number, with thousands separators ("1,930"), and "k" for thousands ("21.6k");
a figure with "%" quotes a fraction (0.615 is "61.5%"). A key path steps into objects by name and into lists by
index (`pipeline.runs.0.wall_seconds`), a name with spaces or punctuation percent-encoded as in any URL
(`profile.shares.other%20ops`); a trailing `/60` divides (seconds quoted in minutes).

A measured figure that is not such a link is reported too (`unlinked_figures`): a number with the unit of a speed or
quality measurement (a ratio like "1.6x", a percentage, a rate "/s", seconds, minutes). A bare number in a table
whose unit is in the column's heading is not seen: such tables link each cell. Not measurements, and not
reported: a goal or target ("goal 1.2x"), a setting written as code (`` `monitor_interval=0.1` ``), a product
("4 x parameters")."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = sorted(
    p
    for pattern in ("README.md", "*/README.md", "*/*/README.md", "*/CHANGELOG.md", "*/*/CHANGELOG.md")
    for p in ROOT.glob(pattern)
    if not {"runs", "dist", "node_modules", ".venv"} & set(p.relative_to(ROOT).parts)
)
LINK = re.compile(r"\[(?P<text>[^\]]+)\]\((?P<path>[^)#\s]+\.json)#(?P<key>[^)\s]+)\)")
NUMBER = re.compile(r"(?P<number>-?\d[\d,]*(?:\.\d+)?)\s?(?P<unit>k\b|%)?")
_VALUE = r"~?\d[\d,]*(?:\.\d+)?(?:(?:-|\.\.)\d[\d,]*(?:\.\d+)?)?"
FIGURE = re.compile(
    r"(?<![\w.\-/#])" + _VALUE + r"(?:x\b|\s?%|k?\s(?:tokens|tok|rows|requests|samples|GFLOP|TFLOP)/s\b|\s?s/step\b"
    r"|\s(?:min|minutes|seconds|s|ms)\b)"
)
GOAL = re.compile(r"\b(?:goals?|targets?)(?: of| is| was|:)?\s+(?:at (?:least|most)\s+|≤\s*|>=?\s*)?" + _VALUE + r"\S*")
CODE = re.compile(r"`[^`]*`")


class FigureError(ValueError):
    pass


def value_at(data: Any, key: str) -> float:
    """The number at a dotted key path of a JSON document (`a.b.0.c`, optionally `/60` at the end)."""
    key, _, divisor = key.partition("/")
    value = data
    for part in (unquote(name) for name in key.split(".")):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise FigureError(f"no key {part!r} (path {key!r})")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FigureError(f"{key!r} is {value!r}, not a number")
    return value / float(divisor) if divisor else float(value)


def quoted(text: str) -> tuple[Decimal, str]:
    """The first number of a figure's text (thousands separators dropped, "k" applied) and its unit ("%", "k", "")."""
    match = NUMBER.search(text)
    if match is None:
        raise FigureError(f"the link text {text!r} holds no number")
    return Decimal(match.group("number").replace(",", "")), match.group("unit") or ""


def matches(text: str, value: float) -> bool:
    """Whether the figure `text` is `value` rounded to the text's precision."""
    number, unit = quoted(text)
    if unit == "%":
        value *= 100
    elif unit == "k":
        value /= 1000
    places = -number.as_tuple().exponent if number.as_tuple().exponent < 0 else 0  # type: ignore[operator]
    return Decimal(repr(round(value, places))).quantize(Decimal(1).scaleb(-places)) == number.quantize(
        Decimal(1).scaleb(-places)
    )


def problems_of(document: Path) -> list[str]:
    problems = []
    loaded: dict[Path, Any] = {}
    for number, line in enumerate(document.read_text().splitlines(), 1):
        for link in LINK.finditer(line):
            where = f"{document.relative_to(ROOT)}:{number}: [{link['text']}]({link['path']}#{link['key']})"
            source = (document.parent / link["path"]).resolve()
            try:
                if source not in loaded:
                    if not source.is_file():
                        raise FigureError(f"{link['path']} does not exist")
                    loaded[source] = json.loads(source.read_text())
                value = value_at(loaded[source], link["key"])
                if not matches(link["text"], value):
                    raise FigureError(f"the JSON says {value!r}")
            except FigureError as error:
                problems.append(f"{where}: {error}")
    return problems


def unlinked_figures(document: Path) -> list[str]:
    """Measured figures written without a link to the bench JSON they come from."""
    found = []
    for number, line in enumerate(document.read_text().splitlines(), 1):
        text = GOAL.sub(" ", CODE.sub(" ", LINK.sub(" ", line)))
        for figure in FIGURE.finditer(text):
            found.append(f"{document.relative_to(ROOT)}:{number}: {figure.group(0)!r} in {line.strip()[:100]!r}")
    return found


def test_no_measured_figure_goes_unlinked() -> None:
    """Every speed or quality figure in a README or CHANGELOG is a link to its bench JSON (checked above), or goes."""
    found = [figure for document in DOCUMENTS for figure in unlinked_figures(document)]
    assert not found, "figures without a link to the bench JSON they come from:\n" + "\n".join(found)


def test_an_unlinked_figure_is_found_and_goals_settings_and_links_are_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    doc = tmp_path / "README.md"
    doc.write_text(
        "linked: [1.60x](bench.json#speedup) at [61.5%](bench.json#mfu); goal 1.2x, the goal of 60% and target 5x\n"
        "settings: `every 0.1 s`, 4 x parameters x tokens/s, 8 x 512-token rows, v0.5.0, step 20, 2 cores\n"
        "measured: 1.84x faster, 94.5% right, 1,506 tokens/s, 18.0 minutes, 0.16 s, 1.58-1.84x, ~450 tok/s\n"
    )
    found = unlinked_figures(doc)
    assert [f.split(": ", 1)[1].split(" in ")[0] for f in found] == [
        "'1.84x'", "'94.5%'", "'1,506 tokens/s'", "'18.0 minutes'", "'0.16 s'", "'1.58-1.84x'",
        "'~450 tok/s'",
    ]  # fmt: skip
    assert all(f.startswith("README.md:3: ") for f in found)


def test_every_figure_quoted_from_a_bench_json_equals_it() -> None:
    problems = [problem for document in DOCUMENTS for problem in problems_of(document)]
    assert not problems, "figures that disagree with their bench JSON:\n" + "\n".join(problems)


def test_the_documents_quote_bench_figures() -> None:
    """The check reads the project's documents and finds quoted figures in them (a glob gone wrong finds none)."""
    assert ROOT / "README.md" in DOCUMENTS and ROOT / "stages" / "train_sft" / "README.md" in DOCUMENTS
    quoting = [d for d in DOCUMENTS if any(LINK.search(line) for line in d.read_text().splitlines())]
    assert len(quoting) >= 3, quoting


@pytest.mark.parametrize(
    ("text", "value", "right"),
    [
        ("1.60x", 1.6005944062726092, True),
        ("1.61x", 1.6005944062726092, False),
        ("1,606 tokens/s", 1606.386794980825, True),
        ("1,607 tokens/s", 1606.386794980825, False),
        ("61.5%", 0.6153796648719716, True),
        ("61.6%", 0.6153796648719716, False),
        ("21.6k rows/s", 21612.0, True),
        ("39k rows/s", 21612.0, False),
        ("18.0 minutes", 1079.53 / 60, True),
    ],
)
def test_a_figure_matches_at_its_own_precision(text: str, value: float, right: bool) -> None:
    assert matches(text, value) is right


def test_a_stale_or_broken_reference_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    (tmp_path / "bench.json").write_text(
        json.dumps({"speedup": 1.6, "runs": [{"s": 90.0}], "name": "x", "shares": {"other ops (all)": 0.017}})
    )
    doc = tmp_path / "README.md"
    doc.write_text(
        "fine: [1.60x](bench.json#speedup), [1.5 minutes](bench.json#runs.0.s/60), "
        "[1.7%](bench.json#shares.other%20ops%20%28all%29)\n"
        "stale: [1.84x](bench.json#speedup)\n"
        "gone: [2x](bench.json#nothing) and [3x](missing.json#speedup), text: [x](bench.json#name)\n"
    )
    problems = problems_of(doc)
    assert len(problems) == 4, problems
    assert problems[0].startswith("README.md:2: [1.84x]") and "the JSON says 1.6" in problems[0]
    assert "no key 'nothing'" in problems[1] and "missing.json does not exist" in problems[2]
    assert "'name' is 'x', not a number" in problems[3]
