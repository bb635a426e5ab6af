"""Row schemas of the four dataset kinds, as pandera models. The same models validate rows in the plain CLI
(`validate_rows`) and at Flyte task boundaries (the flytekit pandera plugin reads `pandera.typing.DataFrame[Model]`).

Every kind has `id` (a content hash, unique) and `source` (where the row came from: file and line or record).
Chat conversations are stored as JSON text in `messages` ([{"role": ..., "content": ...}, ...]) so Parquet, pandas and
the Deck renderer all handle them as plain strings."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from llmft.data.kinds import CONTENT_COLUMNS as CONTENT_COLUMNS
from llmft.data.kinds import CONTROL_CHARACTERS as CONTROL_CHARACTERS
from llmft.data.kinds import ROLES as ROLES
from llmft.data.kinds import SCHEMA_VERSIONS as SCHEMA_VERSIONS
from llmft.data.kinds import DataValidationError as DataValidationError
from llmft.data.kinds import all_free_of_controls, all_valid_unicode, free_of_controls, non_blank, valid_unicode
from llmft.data.kinds import control_problem as control_problem
from llmft.data.kinds import conversation_problem as conversation_problem
from llmft.data.kinds import has_control_characters as has_control_characters
from llmft.data.kinds import kind_name as kind_name
from llmft.proto.data.v1 import dataset_pb2


def _no_controls(series: Series[str]) -> Series[bool]:
    if all_free_of_controls(series.tolist()):
        return pd.Series(True, index=series.index)
    return series.map(free_of_controls)


def _non_blank(series: Series[str]) -> Series[bool]:
    return series.map(non_blank)


def _valid_unicode(series: Series[str]) -> Series[bool]:
    if all_valid_unicode(series.tolist()):
        return pd.Series(True, index=series.index)
    return series.map(valid_unicode)


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
