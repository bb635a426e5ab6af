"""What the dataset kinds are, without pandera or pandas: their content columns and schema versions, control
characters, the predicates the schemas' checks apply to each value, `screen` (those checks on plain rows), and the
validation error. The processes that only move rows (the shards' merge) and the shard workers import this, not the
schemas, and stay light."""

from __future__ import annotations

import json
import re
from typing import Any

from llmft.proto.data.v1 import dataset_pb2

SCHEMA_VERSIONS: dict[int, str] = {
    dataset_pb2.DATASET_KIND_RAW_TEXT: "raw_text/1",
    dataset_pb2.DATASET_KIND_CHAT: "chat/1",
    dataset_pb2.DATASET_KIND_PREFERENCE: "preference/1",
    dataset_pb2.DATASET_KIND_PROMPT: "prompt/1",
}

CONTENT_COLUMNS: dict[int, tuple[str, ...]] = {
    dataset_pb2.DATASET_KIND_RAW_TEXT: ("text",),
    dataset_pb2.DATASET_KIND_CHAT: ("messages",),
    dataset_pb2.DATASET_KIND_PREFERENCE: ("prompt", "chosen", "rejected"),
    dataset_pb2.DATASET_KIND_PROMPT: ("prompt",),
}


def kind_name(kind: int) -> str:
    return str(dataset_pb2.DatasetKind.Name(kind))


# Control characters other than tab and newline (C0, DEL, C1): invisible, and noise to a tokenizer. cleaning.normalize
# removes them (and counts the rows); without it they are refused.
CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Every ASCII byte but the control characters: deleting these from an ASCII text leaves exactly its control
# characters, in one C pass instead of a regular-expression scan.
_ASCII_NOT_CONTROL = bytes(range(32, 127)) + b"\t\n"


def has_control_characters(text: str) -> bool:
    if text.isascii():
        return bool(text.encode("ascii").translate(None, _ASCII_NOT_CONTROL))
    return CONTROL_CHARACTERS.search(text) is not None


def joined(values: list[Any]) -> str | None:
    """The values joined by newlines when every one is a string, else None: one C-level pass over the joined text
    answers a check for every value at once when none fails (the common case); only a failing column is checked value
    by value."""
    return "\n".join(values) if all(type(value) is str for value in values) else None


def non_blank(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def valid_unicode(value: object) -> bool:
    """A string that can be written as UTF-8: not one with lone surrogates (from undecodable bytes read with
    errors="surrogateescape")."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def free_of_controls(value: object) -> bool:
    """No control characters (a value that is not text passes: the column's dtype check reports it)."""
    return not isinstance(value, str) or CONTROL_CHARACTERS.search(value) is None


def all_valid_unicode(values: list[Any]) -> bool:
    text = joined(values)
    return valid_unicode(text) if text is not None else all(map(valid_unicode, values))


def all_free_of_controls(values: list[Any]) -> bool:
    text = joined(values)
    return not has_control_characters(text) if text is not None else all(map(free_of_controls, values))


def control_problem(text: str) -> str:
    match = CONTROL_CHARACTERS.search(text)
    if match is None:
        return ""
    return f"control character U+{ord(match.group()):04X} at offset {match.start()}; cleaning.normalize removes them"


ROLES = ("system", "user", "assistant")


def conversation_problem(value: Any) -> str | None:
    """Why a `messages` value is not a valid conversation, or None. Rules: a JSON list of {role, content}; an optional
    system turn first; then user and assistant alternate, starting with user and ending with assistant; no empty
    content."""
    try:
        messages = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError as error:
        return f"not JSON: {error.msg}"
    if not isinstance(messages, list) or not messages:
        return "not a non-empty list of turns"
    turns = messages
    if isinstance(turns[0], dict) and turns[0].get("role") == "system":
        turns = turns[1:]
    if not turns:
        return "only a system turn"
    for position, turn in enumerate(messages):
        if not isinstance(turn, dict) or set(turn) - {"role", "content"} or "role" not in turn or "content" not in turn:
            return f"turn {position}: must be an object with exactly 'role' and 'content'"
        if turn["role"] not in ROLES:
            return f"turn {position}: role {turn['role']!r} is not one of {', '.join(ROLES)}"
        content = turn["content"]
        if content is None:
            return f"turn {position}: content is null, expected text"
        if not isinstance(content, str):
            return f"turn {position}: content is {type(content).__name__} ({str(content)[:40]!r}), expected text"
        if not content.strip():
            return f"turn {position}: empty content"
        if CONTROL_CHARACTERS.search(content):
            return f"turn {position}: {control_problem(content)}"
    offset = len(messages) - len(turns)
    for position, turn in enumerate(turns):
        expected = "user" if position % 2 == 0 else "assistant"
        if turn["role"] != expected:
            return f"turn {position + offset}: expected role {expected!r}, got {turn['role']!r} (roles must alternate)"
    if turns[-1]["role"] != "assistant":
        return "last turn must be the assistant's"
    return None


class DataValidationError(ValueError):
    """Rows that break their kind's schema; the message names each bad row's source, index and field, and
    `failures` holds them as rows (source, row, field, check, detail) for reports."""

    def __init__(self, message: str, failures: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.failures = failures

    def __reduce__(self) -> tuple[Any, ...]:  # crosses from a shard's worker process to the parent whole
        return (type(self), (str(self), self.failures))


def screen(rows: list[dict[str, Any]], kind: int, unique_ids: bool = True) -> bool:
    """Whether every row passes every check of its kind's pandera schema (schemas.py), answered on plain rows with the
    schema's own predicates: a sharded worker that finds its batch valid (the common case) need not import pandas and
    pandera (most of a worker's imports). False is not a report: such a batch goes through pandera, which names each
    failure. test_data_schemas.py checks that every check of every schema makes this False."""
    columns = ("id", "source", *CONTENT_COLUMNS[kind])
    if any(len(row) != len(columns) or any(name not in row for name in columns) for row in rows):
        return False  # strict: exactly the kind's columns
    values = {name: [row[name] for row in rows] for name in columns}
    if not all(type(value) is str for column in values.values() for value in column):
        return False  # the dtype is str
    if not all(values["id"]) or (unique_ids and len(set(values["id"])) != len(rows)):
        return False  # str_length >= 1; unique
    for name in CONTENT_COLUMNS[kind]:
        text = "\n".join(values[name])  # one pass over the column's text answers for every row
        if not valid_unicode(text):
            return False
        if kind == dataset_pb2.DATASET_KIND_CHAT:
            if any(conversation_problem(value) is not None for value in values[name]):
                return False
        elif has_control_characters(text) or not all(map(non_blank, values[name])):
            return False
    if kind == dataset_pb2.DATASET_KIND_PREFERENCE:
        return all(c.strip() != r.strip() for c, r in zip(values["chosen"], values["rejected"], strict=True))
    return True
