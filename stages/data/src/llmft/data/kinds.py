"""What the dataset kinds are, without pandera or pandas: their content columns and schema versions, control
characters, and the validation error. The processes that only move rows (the shards' merge) import this, not the
schemas, and stay light."""

from __future__ import annotations

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


def control_problem(text: str) -> str:
    match = CONTROL_CHARACTERS.search(text)
    if match is None:
        return ""
    return f"control character U+{ord(match.group()):04X} at offset {match.start()}; cleaning.normalize removes them"


class DataValidationError(ValueError):
    """Rows that break their kind's schema; the message names each bad row's source, index and field, and
    `failures` holds them as rows (source, row, field, check, detail) for reports."""

    def __init__(self, message: str, failures: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.failures = failures

    def __reduce__(self) -> tuple[Any, ...]:  # crosses from a shard's worker process to the parent whole
        return (type(self), (str(self), self.failures))
