"""Reading YAML and JSON strictly. PyYAML and the json module both keep the last of a key given twice in one mapping,
so a config with `max_steps` twice silently trains with whichever came last; here a repeated key is an error that
names the file, the line and the key. Every YAML or JSON file llmft reads goes through these."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


class DuplicateKeyError(ValueError):
    """A key given twice in one mapping; the message is "<origin>:<line>: key '<key>' given twice ..."."""


class _StrictLoader(yaml.SafeLoader):
    pass


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:  # the mapping's own keys: those a merge (<<) brings in may be overridden
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=deep)
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: construct_mapping refuses it with its own message
            break
        line = key_node.start_mark.line + 1
        if first is not None:
            raise DuplicateKeyError(f"{loader.name}:{line}: key {key!r} given twice (first on line {first})")
        seen[key] = line
    return dict(loader.construct_mapping(node, deep=deep))


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_yaml_text(text: str, origin: str) -> Any:
    """YAML (or JSON) text as Python data; `origin` names it in errors. Raises DuplicateKeyError, or yaml.YAMLError
    for text that is not YAML."""
    loader = _StrictLoader(text)
    loader.name = origin
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_yaml(path: str | Path) -> Any:
    """A YAML (or JSON) file as Python data. Raises OSError, UnicodeDecodeError, DuplicateKeyError or yaml.YAMLError."""
    return load_yaml_text(Path(path).read_text(encoding="utf-8"), str(path))


def loads_json(text: str | bytes, origin: str, first_line: int = 1) -> Any:
    """JSON text as Python data, refusing a key given twice in one object: the error names `origin`, the line (counted
    from `first_line`, for one line of a JSONL file) and the key. Raises json.JSONDecodeError for malformed text."""
    repeated = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeated
        result = dict(items)
        if len(result) != len(items):
            repeated = True
        return result

    data = json.loads(text, object_pairs_hook=pairs)
    if repeated:
        source = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
        line, key = _first_repeated_key(source)
        raise DuplicateKeyError(f"{origin}:{line + first_line - 1}: key {key!r} given twice in one object")
    return data


def load_json(path: str | Path) -> Any:
    """A JSON file as Python data (see loads_json)."""
    return loads_json(Path(path).read_text(encoding="utf-8"), str(path))


def _first_repeated_key(text: str) -> tuple[int, str]:
    """The line and the key of the first key that repeats within its object, in well-formed JSON text: a scan that
    tracks strings, objects and arrays (json's hook sees the pairs but not where they were)."""
    stack: list[set[str] | None] = []
    line, i, n = 1, 0, len(text)
    while i < n:
        char = text[i]
        if char == "\n":
            line += 1
        elif char == '"':
            end = i + 1
            while text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            after = end + 1
            while after < n and text[after] in " \t\r\n":
                after += 1
            if stack and stack[-1] is not None and after < n and text[after] == ":":
                key = json.loads(text[i : end + 1])
                if key in stack[-1]:  # type: ignore[operator]
                    return line, key
                stack[-1].add(key)  # type: ignore[union-attr]
            line += text.count("\n", i, end)
            i = end
        elif char == "{":
            stack.append(set())
        elif char == "[":
            stack.append(None)
        elif char in "}]":
            stack.pop()
        i += 1
    raise AssertionError("no repeated key found in text whose parse saw one")


def unknown_key_problems(data: Any, descriptor: Any, where: str = "") -> list[str]:
    """Every key of `data` (a request read from YAML/JSON for the protobuf message `descriptor`) that names no field,
    at any depth, each with its path and the closest field name ("did you mean"). protobuf's ParseDict stops at the
    first one and lists every field instead."""
    import difflib

    if not isinstance(data, dict) or descriptor.GetOptions().map_entry:
        return []
    fields = {}
    for field in descriptor.fields:
        fields[field.name] = field
        fields[field.json_name] = field
    problems = []
    for key, value in data.items():
        field = fields.get(key) if isinstance(key, str) else None
        if field is None:
            close = difflib.get_close_matches(str(key), [f.name for f in descriptor.fields], n=1, cutoff=0.6)
            hint = (
                f"; did you mean {close[0]!r}?"
                if close
                else f"; the fields are {', '.join(f.name for f in descriptor.fields)}"
            )
            problems.append(f"{where}{key}: unknown field of {descriptor.name}{hint}")
            continue
        if field.message_type is None or field.message_type.full_name.startswith("google.protobuf."):
            continue
        if field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            if value_field.message_type is not None and isinstance(value, dict):
                for name, item in value.items():
                    problems += unknown_key_problems(item, value_field.message_type, f"{where}{key}[{name!r}].")
            continue
        items = value if field.is_repeated and isinstance(value, list) else [value]
        for index, item in enumerate(items):
            suffix = f"[{index}]" if field.is_repeated else ""
            problems += unknown_key_problems(item, field.message_type, f"{where}{field.name}{suffix}.")
    return problems
