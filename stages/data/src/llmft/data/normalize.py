"""Turning raw records into rows of a dataset kind: raw text, chat (messages; alpaca and sharegpt records are
converted), preference pairs and prompts. A record that lacks a field, or has one of the wrong type, fails with its
origin (file and row) and the field's name."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass
from typing import Any

from llmft.data.kinds import CONTROL_CHARACTERS, has_control_characters
from llmft.data.sources import Record, SourceError
from llmft.proto.data.v1 import dataset_pb2

K = dataset_pb2

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def _field(record: Record, name: str, kinds: tuple[type, ...] = (str,)) -> Any:
    if name not in record.fields:
        present = ", ".join(sorted(record.fields)) or "none"
        raise SourceError(f"{record.origin}: missing field {name!r} (fields present: {present})")
    value = record.fields[name]
    if value is None:
        raise SourceError(f"{record.origin}: field {name!r} is null, expected text")
    if not isinstance(value, kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise SourceError(f"{record.origin}: field {name!r} is {type(value).__name__}, expected {expected}")
    return value


def _messages_from_record(record: Record) -> list[dict[str, str]]:
    fields = record.fields
    if "messages" in fields:
        value = fields["messages"]
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as error:
                raise SourceError(f"{record.origin}: field 'messages' is not JSON: {error.msg}") from error
        if not isinstance(value, list):
            raise SourceError(f"{record.origin}: field 'messages' is {type(value).__name__}, expected a list")
        turns = []
        for position, turn in enumerate(value):
            if not isinstance(turn, dict):
                raise SourceError(f"{record.origin}: field 'messages[{position}]' is not an object")
            _text(turn.get("content", ""), f"{record.origin}: field 'messages[{position}].content'")
            turns.append({k: turn.get(k) for k in ("role", "content")} if set(turn) >= {"role", "content"} else turn)
        return turns
    if "conversations" in fields:  # sharegpt
        value = fields["conversations"]
        if not isinstance(value, list):
            raise SourceError(f"{record.origin}: field 'conversations' is {type(value).__name__}, expected a list")
        turns = []
        for position, turn in enumerate(value):
            if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
                raise SourceError(f"{record.origin}: field 'conversations[{position}]' needs 'from' and 'value'")
            _text(turn["value"], f"{record.origin}: field 'conversations[{position}].value'")
            role = SHAREGPT_ROLES.get(str(turn["from"]).lower())
            if role is None:
                raise SourceError(
                    f"{record.origin}: field 'conversations[{position}].from' is {turn['from']!r}; "
                    f"one of {', '.join(sorted(SHAREGPT_ROLES))}"
                )
            turns.append({"role": role, "content": turn["value"]})
        return turns
    if "instruction" in fields:  # alpaca
        instruction = _field(record, "instruction")
        extra = fields.get("input") or ""
        if not isinstance(extra, str):
            raise SourceError(f"{record.origin}: field 'input' is {type(extra).__name__}, expected str")
        output = _field(record, "output")
        prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        turns = [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
        if isinstance(fields.get("system"), str) and fields["system"].strip():
            turns.insert(0, {"role": "system", "content": fields["system"]})
        return turns
    present = ", ".join(sorted(fields)) or "none"
    raise SourceError(
        f"{record.origin}: missing field 'messages' (or alpaca 'instruction'/'output', or sharegpt 'conversations'); "
        f"fields present: {present}"
    )


def _text(value: Any, where: str) -> None:
    if value is None:
        raise SourceError(f"{where} is null, expected text")
    if not isinstance(value, str):
        raise SourceError(f"{where} is {type(value).__name__} ({str(value)[:40]!r}), expected text")


@dataclass
class Changes:
    """Rows whose text normalisation changed beyond whitespace (control characters removed), and the first one."""

    rows: int = 0
    first: str = ""

    def note(self, origin: str) -> None:
        self.rows += 1
        self.first = self.first or origin


def normalized(text: str) -> tuple[str, bool]:
    """`normalize_text`'s result, and whether it removed control characters."""
    text = unicodedata.normalize("NFC", text)
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            text = text.replace("\r", "\n")
    removed = has_control_characters(text)
    if removed:
        text = CONTROL_CHARACTERS.sub("", text)
    return "\n".join(map(str.rstrip, text.split("\n"))).strip("\n"), removed


def normalize_text(text: str) -> str:
    """Unicode NFC, \\r\\n -> \\n, no control characters but tab and newline, no trailing whitespace on lines, no
    leading/trailing blank lines."""
    return normalized(text)[0]


def to_row(record: Record, kind: int, normalize: bool, changes: Changes | None = None) -> dict[str, Any]:
    """One record as a row of `kind`, with its content id. With `normalize`, a row that had control characters
    removed is noted in `changes`."""
    had_controls = False

    def clean(text: str) -> str:
        nonlocal had_controls
        if not normalize:
            return text
        text, removed = normalized(text)
        had_controls = had_controls or removed
        return text

    if kind == K.DATASET_KIND_RAW_TEXT:
        content: dict[str, Any] = {"text": clean(_field(record, "text"))}
    elif kind == K.DATASET_KIND_CHAT:
        turns = _messages_from_record(record)
        for turn in turns:
            if isinstance(turn.get("content"), str):
                turn["content"] = clean(turn["content"])
        content = {"messages": json.dumps(turns, ensure_ascii=False)}
    elif kind == K.DATASET_KIND_PREFERENCE:
        content = {name: clean(_field(record, name)) for name in ("prompt", "chosen", "rejected")}
    elif kind == K.DATASET_KIND_PROMPT:
        content = {"prompt": clean(_field(record, "prompt"))}
    else:
        raise SourceError(f"kind: {kind} is not a dataset kind")
    if had_controls and changes is not None:
        changes.note(record.origin)
    for name, value in content.items():
        check_unicode(value, f"{record.origin}: field {name!r}")
    return {"id": content_id(content), "source": record.origin, **content}


def check_unicode(text: str, where: str) -> None:
    """Refuses text that cannot be written as UTF-8: an unpaired surrogate, which a JSON escape such as \\ud800
    without its pair decodes to."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise SourceError(
            f"{where} is not valid Unicode: an unpaired surrogate U+{ord(text[error.start]):04X} at offset "
            f"{error.start} (JSON escapes of surrogates must come in pairs)"
        ) from error


def content_id(content: dict[str, Any]) -> str:
    """A row's id: the hash of its content (kept repeats get "~2", "~3", ... appended while streaming)."""
    digest = hashlib.sha256()
    for name in sorted(content):
        digest.update(name.encode() + b"\x1f" + content[name].encode("utf-8", "surrogatepass") + b"\x1e")
    return digest.hexdigest()[:32]


_TEXT_ID = hashlib.sha256(b"text\x1f")


def text_id(text: str) -> str:
    """`content_id({"text": text})` for text that is valid UTF-8, hashing one string instead of a dict's."""
    digest = _TEXT_ID.copy()
    digest.update(text.encode())
    digest.update(b"\x1e")
    return digest.hexdigest()[:32]
