"""The README's recipe reference lists every TrainingRecipe field, with the default `llmft.core.recipe` really
applies, and marks exactly the fields whose explicit 0 a recipe file refuses."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from llmft.core.recipe import DEFAULTS, NON_ZERO
from llmft.proto.training.v1 import training_pb2 as T

README = Path(__file__).resolve().parents[1] / "README.md"


def field_paths(descriptor: Any, prefix: str = "") -> list[str]:
    paths = []
    for field in descriptor.fields:
        if field.message_type is not None and not field.is_repeated:
            paths += field_paths(field.message_type, f"{prefix}{field.name}.")
        else:
            paths.append(prefix + field.name)
    return paths


def reference() -> dict[str, str]:
    """field -> default column of the README's table."""
    text = README.read_text(encoding="utf-8").split("## Training recipes", 1)[1].split("\n## ", 1)[0]
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^\| `([a-z_.]+)` \| ([^|]+) \|", text, re.M)}


def test_every_recipe_field_is_in_the_readme_with_its_default() -> None:
    table = reference()
    assert sorted(table) == sorted(field_paths(T.TrainingRecipe.DESCRIPTOR))
    for path, default_text in table.items():
        value: Any = DEFAULTS
        for part in path.split("."):
            value = getattr(value, part)
        if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool)):
            if path in T.TrainingRecipe.DESCRIPTOR.fields_by_name and path in ("method", "precision", "optimizer"):
                continue
            if path == "schedule.max_steps":
                continue  # 0: trains for the epochs
            number = re.match(r"[0-9.e-]+", default_text)
            assert number and float(number.group(0)) == value, (path, default_text, value)
    for name in ("method", "precision", "optimizer"):
        enum = T.TrainingRecipe.DESCRIPTOR.fields_by_name[name].enum_type
        assert enum is not None
        assert table[name] == f"`{enum.values_by_number[getattr(DEFAULTS, name)].name}`"


def test_the_fields_marked_0_refused_are_those_a_recipe_file_refuses() -> None:
    table = reference()
    assert sorted(p for p, d in table.items() if "0 refused" in d) == sorted(NON_ZERO)
