"""Row schemas of the four dataset kinds, as pandera models. The same models validate rows in the plain CLI
(`validate_rows`) and at Flyte task boundaries (the flytekit pandera plugin reads `pandera.typing.DataFrame[Model]`).

Every kind has `id` (a content hash, unique) and `source` (where the row came from: file and line or record).
Chat conversations are stored as JSON text in `messages` ([{"role": ..., "content": ...}, ...]) so Parquet, pandas and
the Deck renderer all handle them as plain strings."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from llmft.data.kinds import CONTENT_COLUMNS as CONTENT_COLUMNS
from llmft.data.kinds import CONTROL_CHARACTERS as CONTROL_CHARACTERS
from llmft.data.kinds import SCHEMA_VERSIONS as SCHEMA_VERSIONS
from llmft.data.kinds import DataValidationError as DataValidationError
from llmft.data.kinds import control_problem as control_problem
from llmft.data.kinds import has_control_characters as has_control_characters
from llmft.data.kinds import kind_name as kind_name
from llmft.proto.data.v1 import dataset_pb2

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


def _all_text(series: Series[str]) -> str | None:
    """The column's values joined by newlines when every one is a string, else None: one pass of a C-level check over
    the whole column answers for every row at once when no row fails (the common case); only a failing column is
    checked row by row."""
    values = series.tolist()
    return "\n".join(values) if all(type(value) is str for value in values) else None


def _no_controls(series: Series[str]) -> Series[bool]:
    text = _all_text(series)
    if text is not None and not has_control_characters(text):
        return pd.Series(True, index=series.index)
    return series.map(lambda value: not isinstance(value, str) or CONTROL_CHARACTERS.search(value) is None)


def _non_blank(series: Series[str]) -> Series[bool]:
    return series.map(lambda value: isinstance(value, str) and bool(value.strip()))


def _valid_unicode(series: Series[str]) -> Series[bool]:
    # Lone surrogates (from undecodable bytes read with errors="surrogateescape") cannot be written as UTF-8.
    def ok(value: object) -> bool:
        try:
            if not isinstance(value, str):
                return False
            value.encode("utf-8")
            return True
        except UnicodeEncodeError:
            return False

    text = _all_text(series)
    if text is not None and ok(text):
        return pd.Series(True, index=series.index)
    return series.map(ok)


class _Row(pa.DataFrameModel):
    id: Series[str] = pa.Field(unique=True, str_length={"min_value": 1})
    source: Series[str] = pa.Field()

    class Config:
        strict = True
        coerce = False


class RawTextRow(_Row):
    """One document for continued pre-training."""

    text: Series[str] = pa.Field()

    @pa.check("text", name="non_blank", error="text is empty or blank")
    def text_non_blank(cls, series: Series[str]) -> Series[bool]:
        return _non_blank(series)

    @pa.check("text", name="valid_utf8", error="text is not valid UTF-8")
    def text_utf8(cls, series: Series[str]) -> Series[bool]:
        return _valid_unicode(series)

    @pa.check("text", name="no_control_characters", error="text holds control characters")
    def text_no_controls(cls, series: Series[str]) -> Series[bool]:
        return _no_controls(series)


class ChatRow(_Row):
    """One conversation for supervised fine-tuning."""

    messages: Series[str] = pa.Field()

    @pa.check("messages", name="conversation", error="messages is not a valid conversation")
    def messages_valid(cls, series: Series[str]) -> Series[bool]:
        return series.map(lambda value: conversation_problem(value) is None)

    @pa.check("messages", name="valid_utf8", error="messages is not valid UTF-8")
    def messages_utf8(cls, series: Series[str]) -> Series[bool]:
        return _valid_unicode(series)


class PreferenceRow(_Row):
    """A prompt with a preferred and a rejected answer, for reward models and DPO."""

    prompt: Series[str] = pa.Field()
    chosen: Series[str] = pa.Field()
    rejected: Series[str] = pa.Field()

    @pa.check("prompt", "chosen", "rejected", name="non_blank", error="empty or blank")
    def fields_non_blank(cls, series: Series[str]) -> Series[bool]:
        return _non_blank(series)

    @pa.check("prompt", "chosen", "rejected", name="valid_utf8", error="not valid UTF-8")
    def fields_utf8(cls, series: Series[str]) -> Series[bool]:
        return _valid_unicode(series)

    @pa.check("prompt", "chosen", "rejected", name="no_control_characters", error="holds control characters")
    def fields_no_controls(cls, series: Series[str]) -> Series[bool]:
        return _no_controls(series)

    @pa.dataframe_check(name="chosen_differs", error="chosen equals rejected")
    def chosen_differs(cls, frame: pd.DataFrame) -> Series[bool]:
        return frame["chosen"].str.strip() != frame["rejected"].str.strip()


class PromptRow(_Row):
    """A prompt for PPO rollouts and batch inference."""

    prompt: Series[str] = pa.Field()

    @pa.check("prompt", name="non_blank", error="prompt is empty or blank")
    def prompt_non_blank(cls, series: Series[str]) -> Series[bool]:
        return _non_blank(series)

    @pa.check("prompt", name="valid_utf8", error="prompt is not valid UTF-8")
    def prompt_utf8(cls, series: Series[str]) -> Series[bool]:
        return _valid_unicode(series)

    @pa.check("prompt", name="no_control_characters", error="prompt holds control characters")
    def prompt_no_controls(cls, series: Series[str]) -> Series[bool]:
        return _no_controls(series)


SCHEMAS: dict[int, type[_Row]] = {
    dataset_pb2.DATASET_KIND_RAW_TEXT: RawTextRow,
    dataset_pb2.DATASET_KIND_CHAT: ChatRow,
    dataset_pb2.DATASET_KIND_PREFERENCE: PreferenceRow,
    dataset_pb2.DATASET_KIND_PROMPT: PromptRow,
}


def schema_for(kind: int) -> type[_Row]:
    if kind not in SCHEMAS:
        raise ValueError(f"kind: {kind_name(kind) if kind in dataset_pb2.DatasetKind.values() else kind} has no schema")
    return SCHEMAS[kind]


CHOSEN_EQUALS_REJECTED = "chosen equals rejected"


def failure_cases(error: pa.errors.SchemaErrors) -> pd.DataFrame:
    """pandera's failure cases, with a row-wide check (chosen equals rejected) reported once per row, against the two
    fields it compares, not against every column of the row."""
    cases = error.failure_cases
    row_wide = cases["check"].astype(str) == CHOSEN_EQUALS_REJECTED
    pairs = cases[row_wide & (cases["column"] == "chosen")].assign(column="chosen, rejected")
    return pd.concat([cases[~row_wide], pairs], ignore_index=True)


def _detail(frame: pd.DataFrame, index: Any, column: str) -> str:
    if index not in frame.index:
        return ""
    if column == "messages":
        return conversation_problem(frame.loc[index, "messages"]) or ""
    if column in frame.columns and isinstance(frame.loc[index, column], str):
        return control_problem(frame.loc[index, column])
    return ""


def failure_rows(frame: pd.DataFrame, error: pa.errors.SchemaErrors) -> list[dict[str, Any]]:
    rows = []
    for _, case in failure_cases(error).iterrows():
        index = case.get("index")
        known = index is not None and not pd.isna(index) and index in frame.index
        column = case.get("column") or "<dataframe>"
        detail = _detail(frame, index, column) if known else ""
        rows.append(
            {
                "source": frame.loc[index, "source"] if known and "source" in frame.columns else "",
                "row": int(index) if known else "",
                "field": column,
                "check": str(case.get("check")),
                "detail": detail,
            }
        )
    return rows


def describe_failures(frame: pd.DataFrame, error: pa.errors.SchemaErrors, limit: int = 20) -> str:
    cases = failure_cases(error)
    lines = []
    for _, case in cases.head(limit).iterrows():
        index = case.get("index")
        where = ""
        if index is not None and not pd.isna(index) and index in frame.index and "source" in frame.columns:
            where = f"{frame.loc[index, 'source']} (row {index})"
        elif index is not None and not pd.isna(index):
            where = f"row {index}"
        column = case.get("column") or "<dataframe>"
        check = case.get("check")
        known = index is not None and not pd.isna(index)
        detail = _detail(frame, index, column) if known else ""
        detail = f": {detail}" if detail else ""
        lines.append(f"{where or 'schema'}: field {column!r} failed {check}{detail}".strip())
    more = len(cases) - limit
    if more > 0:
        lines.append(f"... and {more} more failures")
    return "\n".join(lines)


def validate_rows(frame: pd.DataFrame, kind: int, unique_ids: bool = True) -> pd.DataFrame:
    """Validates every row (lazily, so all failures are reported at once); raises DataValidationError. Without
    `unique_ids`, ids may repeat within the frame: a shard's rows before deduplication, whose ids the merge checks
    across the whole dataset."""
    schema: Any = schema_for(kind)
    if not unique_ids:
        schema = schema.to_schema().update_column("id", unique=False)
    try:
        return schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as error:
        raise DataValidationError(
            f"{len(failure_cases(error))} {kind_name(kind)} schema failure(s):\n{describe_failures(frame, error)}",
            failure_rows(frame, error),
        ) from error
