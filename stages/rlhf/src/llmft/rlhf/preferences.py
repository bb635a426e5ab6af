"""Preference pairs as trl expects them: conversational (the prompt a user turn, each answer an assistant turn), so
the model's chat template renders them exactly as at SFT time and in serving."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmft.core.datasets import read_manifest, read_split, require_kind
from llmft.core.recipe import RecipeError
from llmft.proto.data.v1 import dataset_pb2


def conversational_pairs(frame: Any) -> list[dict[str, list[dict[str, str]]]]:
    return [
        {
            "prompt": [{"role": "user", "content": row.prompt}],
            "chosen": [{"role": "assistant", "content": row.chosen}],
            "rejected": [{"role": "assistant", "content": row.rejected}],
        }
        for row in frame.itertuples()
    ]


def load_pairs(data_dir: Path, stage: str, max_eval: int = 0) -> tuple[Any, list[dict], list[dict]]:
    manifest = read_manifest(data_dir)
    require_kind(manifest, dataset_pb2.DATASET_KIND_PREFERENCE, stage)
    train = conversational_pairs(read_split(data_dir, "train"))
    evaluation = conversational_pairs(read_split(data_dir, "eval"))
    if max_eval:
        evaluation = evaluation[:max_eval]
    if not train:
        raise RecipeError(f"dataset {manifest.name!r}: its train split is empty")
    if not evaluation:
        raise RecipeError(f"dataset {manifest.name!r}: its eval split is empty; held-out accuracy needs one")
    return manifest, train, evaluation
