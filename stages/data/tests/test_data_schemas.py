"""`kinds.screen` (the pandas-free check a sharded worker runs on each batch) against the pandera schemas it stands in
for: every check of every schema makes it refuse a batch, and on random batches it accepts exactly what pandera
accepts."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest

from llmft.data.kinds import CONTENT_COLUMNS, DataValidationError, kind_name, screen
from llmft.data.schemas import schema_for, validate_rows
from llmft.proto.data.v1 import dataset_pb2 as D

KINDS = [D.DATASET_KIND_RAW_TEXT, D.DATASET_KIND_CHAT, D.DATASET_KIND_PREFERENCE, D.DATASET_KIND_PROMPT]
Rows = list[dict[str, Any]]


def conversation(question: str, answer: str) -> str:
    return json.dumps([{"role": "user", "content": question}, {"role": "assistant", "content": answer}])


def valid_rows(kind: int, count: int = 4) -> Rows:
    rows = []
    for i in range(count):
        contents: dict[int, dict[str, str]] = {
            D.DATASET_KIND_RAW_TEXT: {"text": f"Document {i}.\n\tIndented line."},
            D.DATASET_KIND_CHAT: {"messages": conversation(f"Question {i}?", f"Answer {i}.")},
            D.DATASET_KIND_PREFERENCE: {"prompt": f"What is {i} + 1?", "chosen": f"{i + 1}", "rejected": f"{i + 2}"},
            D.DATASET_KIND_PROMPT: {"prompt": f"Prompt {i}: é"},
        }
        content = contents[kind]
        rows.append({"id": f"{i:032x}", "source": f"data.jsonl:{i + 1}", **content})
    return rows


def frame_of(rows: Rows) -> pd.DataFrame:
    try:
        return pd.DataFrame(rows)
    except UnicodeEncodeError:  # pandas' Arrow strings refuse lone surrogates; an object column holds them
        return pd.DataFrame(rows, dtype=object)


def pandera_accepts(rows: Rows, kind: int, unique_ids: bool = True) -> bool:
    try:
        validate_rows(frame_of(rows), kind, unique_ids)
    except DataValidationError:
        return False
    return True


def pandera_checks_failed(rows: Rows, kind: int) -> set[tuple[str, str]]:
    with pytest.raises(DataValidationError) as raised:
        validate_rows(frame_of(rows), kind)
    error: Any = raised.value
    return {(row["field"], row["check"]) for row in error.failures}


def declared_checks(kind: int) -> set[tuple[str, str]]:
    """Every check the kind's schema makes, as (field, check) in the form failure reports name them."""
    schema = schema_for(kind).to_schema()
    checks = {(schema.name, "column_in_schema"), (schema.name, "column_in_dataframe")}
    for name, column in schema.columns.items():
        checks |= {(name, "dtype"), (name, "not_nullable")}
        checks |= {(name, check.error or check.name) for check in column.checks}
        if column.unique:
            checks.add((name, "field_uniqueness"))
    for check in schema.checks:
        checks.add(("chosen, rejected", check.error or check.name))
    return checks


def normalised(failed: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """pandera names a dtype failure by the dtype: dtype('string[pyarrow]')."""
    return {(field, "dtype" if check.startswith("dtype(") else check) for field, check in failed}


def set_field(index: int, name: str, value: Any) -> Callable[[Rows], None]:
    def mutate(rows: Rows) -> None:
        rows[index][name] = value

    return mutate


def drop_field(name: str, everywhere: bool = False) -> Callable[[Rows], None]:
    def mutate(rows: Rows) -> None:
        for row in rows if everywhere else rows[1:2]:
            del row[name]

    return mutate


def same_id(rows: Rows) -> None:
    rows[2]["id"] = rows[0]["id"]


BAD_CONVERSATIONS = [
    "not json",
    "[]",
    json.dumps([{"role": "system", "content": "Be brief."}]),
    json.dumps([{"role": "user", "content": "Hi?"}]),
    json.dumps([{"role": "assistant", "content": "Hi."}, {"role": "user", "content": "Hi?"}]),
    json.dumps([{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": " "}]),
    json.dumps([{"role": "user", "content": "Hi\x07?"}, {"role": "assistant", "content": "Hi."}]),
    json.dumps([{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hi.", "name": "x"}]),
    json.dumps([{"role": "user", "content": "Hi?"}, {"role": "bot", "content": "Hi."}]),
]


def failure_modes(kind: int) -> list[tuple[str, Callable[[Rows], None]]]:
    modes: list[tuple[str, Callable[[Rows], None]]] = [
        ("an extra column", set_field(1, "extra", "x")),
        ("a column missing from every row", drop_field("source", everywhere=True)),
        ("a field missing from one row", drop_field("source")),
        ("an empty id", set_field(0, "id", "")),
        ("a repeated id", same_id),
    ]
    for name in ("id", "source", *CONTENT_COLUMNS[kind]):
        modes.append((f"a null {name}", set_field(1, name, None)))
        modes.append((f"a number for {name}", set_field(2, name, 3)))
    for name in CONTENT_COLUMNS[kind]:
        modes.append((f"a lone surrogate in {name}", set_field(3, name, "bad \udc80 bytes")))
        if kind == D.DATASET_KIND_CHAT:
            modes += [(f"messages {value!r}", set_field(1, name, value)) for value in BAD_CONVERSATIONS]
        else:
            modes.append((f"a blank {name}", set_field(1, name, " \n\t")))
            modes.append((f"a control character in {name}", set_field(2, name, "bell \x07 here")))
            modes.append((f"a C1 control character in {name}", set_field(2, name, "next \x85 line")))
    if kind == D.DATASET_KIND_PREFERENCE:
        modes.append(("chosen equal to rejected but for spaces", set_field(0, "rejected", " 1 ")))
    return modes


@pytest.mark.parametrize("kind", KINDS, ids=kind_name)
def test_every_check_of_the_schema_makes_the_screen_refuse_a_batch(kind: int) -> None:
    rows = valid_rows(kind)
    assert screen(rows, kind) and pandera_accepts(rows, kind)
    failed: set[tuple[str, str]] = set()
    for mode, mutate in failure_modes(kind):
        rows = valid_rows(kind)
        mutate(rows)
        assert not screen(rows, kind), f"the screen accepted {mode}"
        failed |= pandera_checks_failed(rows, kind)
    # The failure modes above reach every check the schema declares, so a check added to a schema without the screen
    # learning it fails here.
    assert declared_checks(kind) <= normalised(failed), declared_checks(kind) - normalised(failed)


@pytest.mark.parametrize("kind", KINDS, ids=kind_name)
def test_repeated_ids_pass_both_when_the_merge_checks_them(kind: int) -> None:
    rows = valid_rows(kind)
    same_id(rows)
    assert screen(rows, kind, unique_ids=False) and pandera_accepts(rows, kind, unique_ids=False)
    assert not screen(rows, kind) and not pandera_accepts(rows, kind)


ALPHABET = ["a", "b", " ", "\n", "\t", "\x01", "\x7f", "\x85", "\xa0", "é", "\u2028"]


def random_text(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 3)))


def random_messages(rng: random.Random) -> str:
    roles = ["system", "user", "assistant", "tool"]
    turns: list[Any] = [{"role": rng.choice(roles), "content": random_text(rng)} for _ in range(rng.randint(0, 4))]
    if turns and rng.random() < 0.1:
        turns[-1] = {"role": "assistant", "content": rng.choice([None, 3, ["a"]])}
    return json.dumps(turns)


@pytest.mark.parametrize("kind", KINDS, ids=kind_name)
def test_on_random_batches_the_screen_accepts_exactly_what_pandera_accepts(kind: int) -> None:
    rng = random.Random(kind)
    accepted = 0
    for _ in range(300):
        rows = valid_rows(kind, count=3)
        for row in rows:
            for name in CONTENT_COLUMNS[kind]:
                if rng.random() < 0.3:
                    row[name] = random_messages(rng) if kind == D.DATASET_KIND_CHAT else random_text(rng)
        verdict = screen(rows, kind)
        assert verdict == pandera_accepts(rows, kind), rows
        accepted += verdict
    assert 30 < accepted < 270  # both verdicts were exercised
