"""Raw-text JSONL is read in Arrow blocks (llmft.data.sources.TextBlock) where Arrow parses a block exactly as the
line-by-line reader would; every other block is read line by line. Both reads must give the same dataset, byte for
byte, and the same errors, naming the same file and line."""

from __future__ import annotations

import json
import random
import re
import unicodedata
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from llmft.core.datasets import read_manifest, read_split
from llmft.data import build, sources
from llmft.data.build import build_dataset
from llmft.data.normalize import content_id, normalized, text_id
from llmft.data.schemas import DataValidationError
from llmft.data.sources import SourceError
from llmft.proto.data.v1 import dataset_pb2 as D

BLOCK = 512  # bytes per block in these tests (MAX_RECORD_BYTES), so a small corpus spans many blocks


def line(text: Any, **extra: Any) -> bytes:
    return (json.dumps({"text": text, **extra}) + "\n").encode()


def corpus(tmp_path: Path) -> tuple[list[Path], list[str | None]]:
    """Lines that exercise every normalisation and cleaning step, and blocks that Arrow cannot read plainly; and the
    first file's texts by line (None: no record)."""
    rng = random.Random(0)
    words = ["flyte", "task", "  ", "\t", "\r\n", "\n", "\r", "é", "e\u0301", "\u0007", "\x7f", "\u0085", " "]
    texts: list[str | None] = ["".join(rng.choice(words) for _ in range(rng.randint(1, 14))) for _ in range(300)]
    texts[10] = "   \r\n\t "  # blank after normalisation
    texts[20] = texts[30] = "the same document"  # an exact duplicate
    texts[40] = "an extra field"
    lines = [line(text) for text in texts]
    lines[40] = line(texts[40], meta={"n": 1})  # other fields are ignored
    lines[50] = b"\n"  # a blank line: skipped, but it counts for the line numbers after it
    lines[60] = b"   \r\n"  # a whitespace-only line
    texts[50] = texts[60] = None
    first = tmp_path / "a.jsonl"
    first.write_bytes(b"".join(lines))
    second = tmp_path / "b.jsonl"  # a byte-order mark, and no newline at the end
    second.write_bytes(b"\xef\xbb\xbf" + line("opens with a mark") + line("second") + b'{"text": "last, no newline"}')
    return [first, second], texts


def first_removed(texts: list[str | None]) -> tuple[int, int]:
    """The line numbers of the first blank row and of the first repeat, by the normalisation's definition."""
    blank = repeat = 0
    seen: set[str] = set()
    for number, text in enumerate(texts, start=1):
        if text is None:
            continue
        clean = reference_normalized(text)[0]
        if not clean.strip():
            blank = blank or number
        elif clean in seen:
            repeat = repeat or number
        seen.add(clean)
    return blank, repeat


def request(files: list[Path], dedup: bool = True) -> D.DatasetRequest:
    return D.DatasetRequest(
        name="blocks",
        kind=D.DATASET_KIND_RAW_TEXT,
        sources=[D.DatasetSource(local=D.LocalSource(patterns=[str(f) for f in files]))],
        cleaning=D.CleaningConfig(normalize=True, deduplicate_exact=dedup),
        split=D.SplitConfig(eval_fraction=0.2, seed=3),
    )


class BlockCount:
    """Counts the TextBlocks an acquisition turned into rows."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.blocks = 0
        original = build.Acquisition._block_rows

        def counted(acquisition: build.Acquisition, block: sources.TextBlock) -> Any:
            self.blocks += 1
            return original(acquisition, block)

        monkeypatch.setattr(build.Acquisition, "_block_rows", counted)


def build_both(req: D.DatasetRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, BlockCount]:
    monkeypatch.setattr(sources, "MAX_RECORD_BYTES", BLOCK)
    count = BlockCount(monkeypatch)
    build_dataset(req, tmp_path / "blocks", chunk_rows=64)
    with monkeypatch.context() as line_by_line:
        line_by_line.setattr(build, "reads_blocks", lambda request: False)
        build_dataset(req, tmp_path / "lines", chunk_rows=64)
    return tmp_path / "blocks", tmp_path / "lines", count


@pytest.mark.parametrize("dedup", [True, False])
def test_blocks_and_lines_give_the_same_dataset(dedup: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files, texts = corpus(tmp_path)
    blocks, lines, count = build_both(request(files, dedup), tmp_path, monkeypatch)
    assert count.blocks > 10  # the block path ran, over many blocks
    for split in ("train", "eval"):
        ours, theirs = read_split(blocks, split), read_split(lines, split)
        assert len(ours) > 0
        pd.testing.assert_frame_equal(ours, theirs)
    assert read_manifest(blocks) == read_manifest(lines)
    manifest = read_manifest(blocks)
    steps = {s.step: (s.rows_removed, s.rows_changed, s.first_row) for s in manifest.cleaning}
    assert steps["drop_blank"][0] > 0 and steps["strip_control_characters"][1] > 0
    blank, repeat = first_removed(texts)
    assert steps["drop_blank"][2] == f"{files[0]}:{blank}"
    rows = pd.concat([read_split(blocks, s) for s in ("train", "eval")])
    assert f"{files[0]}:41" in set(rows["source"])  # the line after a blank line keeps its number
    assert f"{files[1]}:1" in set(rows["source"]) and f"{files[1]}:3" in set(rows["source"])
    if dedup:
        assert steps["deduplicate_exact"][2] == f"{files[0]}:{repeat}" and repeat <= 31
    else:
        assert rows["id"].str.endswith("~2").any()  # a kept repeat gets its own id on both paths


# A bad line, and what the error names (on both paths).
BAD = {
    "number": (line(5), r"b.jsonl:3: field 'text' is int, expected str"),
    "null": (line(None), r"b.jsonl:3: field 'text' is null, expected text"),
    "missing": (b'{"body": "x"}\n', r"b.jsonl:3: missing field 'text' \(fields present: body\)"),
    "malformed": (b'{"text": "x"\n', r"b.jsonl:3: malformed JSON"),
    "not_utf8": (b'{"text": "\xff"}\n', r"b.jsonl:3: not valid UTF-8"),
    "two_objects": (b'{"text": "x"} {"text": "y"}\n', r"b.jsonl:3: malformed JSON: Extra data"),
    "array": (b"[1, 2]\n", r"b.jsonl:3: line is a JSON list, expected an object"),
    "repeated_key": (b'{"text": "x", "text": "y"}\n', r"b.jsonl:3: key 'text' given twice in one object"),
    "mark_inside": (b"\xef\xbb\xbf" + line("x"), r"b.jsonl:3: malformed JSON"),
    "lone_surrogate": (b'{"text": "a \\ud800 b"}\n', r"b.jsonl:3: field 'text' is not valid Unicode: .*U\+D800"),
    "over_the_limit": (line("x" * BLOCK), r"b.jsonl:3: one record of 5\d\d bytes is over the 512-byte limit"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_line_is_named_the_same_on_both_paths(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad, message = BAD[case]
    path = tmp_path / "b.jsonl"
    path.write_bytes(line("one") + line("two") + bad + line("four"))
    monkeypatch.setattr(sources, "MAX_RECORD_BYTES", BLOCK)
    errors = []
    for blocks in (True, False):
        tried: list[int] = []
        with monkeypatch.context() as patch:
            patch.setattr(build, "reads_blocks", lambda request, blocks=blocks: blocks)
            arrow_text = sources._arrow_text
            patch.setattr(
                sources,
                "_arrow_text",
                lambda block, lines, tried=tried, arrow_text=arrow_text: tried.append(lines)
                or arrow_text(block, lines),
            )
            with pytest.raises((SourceError, DataValidationError)) as error:
                build_dataset(request([path]), tmp_path / f"out-{blocks}")
        # The block read tried Arrow on the block with the bad line (and fell back to lines); the line read did not.
        assert bool(tried) == blocks
        assert re.search(message, str(error.value)), str(error.value)
        assert not (tmp_path / f"out-{blocks}").exists()
        errors.append(str(error.value))
    assert errors[0] == errors[1]


def reference_normalized(text: str) -> tuple[str, bool]:
    """The normalisation's definition, written the plain way: NFC, line endings, control characters removed, no
    trailing whitespace on lines, no blank lines around."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text, removed = re.subn("[\x00-\x08\x0b-\x1f\x7f-\x9f]", "", text)
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n"), removed > 0


def test_normalisation_matches_its_definition() -> None:
    rng = random.Random(1)
    alphabet = ["a", " ", "\t", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x1f", "\x7f", "\x85", "\xa0", "e\u0301", "\u2003"]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16))) for _ in range(5000)]
    assert any(reference_normalized(t)[1] for t in texts) and not all(reference_normalized(t)[1] for t in texts)
    for text in texts:
        assert normalized(text) == reference_normalized(text), repr(text)


@pytest.mark.parametrize("text", ["", "a", "flyte task\nsecond line", "\u00e9t\u00e9 \u2003", "😀"])
def test_a_text_id_is_the_content_id_of_the_text(text: str) -> None:
    assert text_id(text) == content_id({"text": text})


def test_the_flyte_acquire_tasks_hand_on_the_same_frame(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files, _ = corpus(tmp_path)
    monkeypatch.setattr(sources, "MAX_RECORD_BYTES", BLOCK)
    count = BlockCount(monkeypatch)
    ours, our_summary = build.acquire_frame(request(files))
    assert count.blocks > 10
    monkeypatch.setattr(build, "reads_blocks", lambda request: False)
    theirs, their_summary = build.acquire_frame(request(files))
    pd.testing.assert_frame_equal(ours, theirs)
    assert our_summary == their_summary
