"""Strict YAML and JSON: a key given twice in one mapping is an error naming the file, the line and the key, where
PyYAML and json would keep the last value without a word."""

import json
from pathlib import Path

import pytest
import yaml

from llmft.core.cli import load_training_request
from llmft.core.files import DuplicateKeyError, load_json, load_yaml, loads_json
from llmft.core.recipe import RecipeError

NESTED = """\
recipe:
  schedule:
    max_steps: 40
    learning_rate: 0.001
    max_steps: 400
"""


def test_a_key_given_twice_in_yaml_names_the_file_the_line_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "request.yaml"
    path.write_text(NESTED)
    assert yaml.safe_load(NESTED)["recipe"]["schedule"]["max_steps"] == 400  # what PyYAML alone does
    with pytest.raises(DuplicateKeyError, match=rf"^{path}:5: key 'max_steps' given twice \(first on line 3\)$"):
        load_yaml(path)


def test_yaml_allows_one_key_per_mapping_and_overriding_a_merged_key(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("a: {x: 1}\nb: {x: 2}\nbase: &base {lr: 1, steps: 2}\nsft:\n  <<: *base\n  lr: 3\n")
    assert load_yaml(path) == {
        "a": {"x": 1},
        "b": {"x": 2},
        "base": {"lr": 1, "steps": 2},
        "sft": {"lr": 3, "steps": 2},
    }


def test_a_key_given_twice_in_json_names_its_line(tmp_path: Path) -> None:
    text = '{"a": {"b": 1,\n  "c": [{"b": 2}, {"b": 3}],\n  "d": "say \\"b\\": 4",\n  "b": 5}}'
    assert json.loads(text)["a"]["b"] == 5
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(DuplicateKeyError, match=rf"^{path}:4: key 'b' given twice in one object$"):
        load_json(path)
    assert load_json_ok(tmp_path) == {"a": {"b": 1}, "c": {"b": 2}}


def load_json_ok(tmp_path: Path) -> object:
    path = tmp_path / "ok.json"
    path.write_text('{"a": {"b": 1}, "c": {"b": 2}}')
    return load_json(path)


def test_a_json_line_counts_from_its_place_in_the_file() -> None:
    with pytest.raises(DuplicateKeyError, match=r"^data.jsonl:7: key 'text' given twice"):
        loads_json('{"text": "a", "id": 1, "text": "b"}', "data.jsonl", first_line=7)


def test_a_training_request_file_with_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "request.yaml"
    path.write_text(NESTED)
    with pytest.raises(RecipeError, match=rf"{path}:5: key 'max_steps' given twice"):
        load_training_request(path)
    path.write_text(NESTED.replace("    max_steps: 400\n", ""))
    assert load_training_request(path).recipe.schedule.max_steps == 40


def test_a_training_request_names_each_unknown_key_with_the_closest_field(tmp_path: Path) -> None:
    path = tmp_path / "request.yaml"
    path.write_text("recipe:\n  schedule: {max_step: 4}\n  lora: {rnak: 8}\nbase_modle: x\n")
    with pytest.raises(RecipeError) as error:
        load_training_request(path)
    assert str(error.value) == (
        f"{path}: recipe.schedule.max_step: unknown field of Schedule; did you mean 'max_steps'?; "
        "recipe.lora.rnak: unknown field of LoraConfig; did you mean 'rank'?; "
        "base_modle: unknown field of TrainingRequest; did you mean 'base_model'?"
    )
