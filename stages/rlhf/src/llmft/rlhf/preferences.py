"""Preference pairs as trl expects them: conversational (the prompt a user turn, each answer an assistant turn), so
the model's chat template renders them exactly as at SFT time and in serving. Checked at the stage's boundary before
any model loads: a pair must prefer one answer, and its prompt must leave room for an answer within max_length."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmft.core.datasets import read_manifest, read_split, require_kind
from llmft.core.generation import chat_prompt_ids
from llmft.core.recipe import RecipeError
from llmft.proto.data.v1 import dataset_pb2


class PreferenceDataError(ValueError):
    """A preference pair that cannot train; the message names the file, row and id."""


def check_distinct(frame: Any, where: Path) -> None:
    """Every pair prefers one answer over a different one (whitespace aside)."""
    for number, row in enumerate(frame.itertuples()):
        if str(row.chosen).strip() == str(row.rejected).strip():
            raise PreferenceDataError(
                f"{where}: row {number} (id {row.id}): chosen equals rejected; a pair must prefer one answer"
            )


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
    frames = {split: read_split(data_dir, split) for split in ("train", "eval")}
    for split, frame in frames.items():
        check_distinct(frame, Path(data_dir) / f"{split}.parquet")
    train = conversational_pairs(frames["train"])
    evaluation = conversational_pairs(frames["eval"])
    if max_eval:
        evaluation = evaluation[:max_eval]
    if not train:
        raise RecipeError(f"dataset {manifest.name!r}: its train split is empty")
    if not evaluation:
        raise RecipeError(f"dataset {manifest.name!r}: its eval split is empty; held-out accuracy needs one")
    return manifest, train, evaluation


def check_prompt_lengths(pairs: list[dict], tokenizer: Any, max_length: int, where: str) -> None:
    """Every prompt, rendered by the chat template up to the assistant's turn, leaves room for an answer within
    `max_length` tokens (a longer one would be cut before its answer, and its pair would teach nothing)."""
    for number, pair in enumerate(pairs):
        length = len(chat_prompt_ids(tokenizer, pair["prompt"]))
        if length >= max_length:
            raise PreferenceDataError(
                f"{where}: row {number}: the prompt is {length} tokens with the chat template, not below "
                f"recipe.max_length {max_length}; raise max_length or shorten the prompt"
            )


def end_of_turn_id(tokenizer: Any) -> int:
    """The token that ends an assistant turn in the chat template (ChatML's <|im_end|>, Llama 3's <|eot_id|>), found
    by rendering one; the tokenizer's eos token when the template ends turns with plain text."""
    prompt = chat_prompt_ids(tokenizer, [{"role": "user", "content": "a"}])
    whole = tokenizer.apply_chat_template(
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], tokenize=True, return_dict=True
    )["input_ids"]
    special = set(tokenizer.all_special_ids)
    for token in list(whole)[len(prompt) :]:
        if token in special:
            return int(token)
    return int(tokenizer.eos_token_id)


def scored_ids(tokenizer: Any, prompt: list[dict], answer: list[dict], stop_id: int) -> list[int]:
    """The token ids the reward model scores for `prompt` answered by `answer`: the conversation through the chat
    template, cut after the end-of-turn token that closes the answer. A sampled answer ends there (PPO and the
    held-out evaluation score prompt + answer up to the stop token), so the reward model is trained and read at the
    very position it is used at; a template's text after the end of turn (ChatML's newline) would otherwise be the
    scored position in training and never in use."""
    ids = list(tokenizer.apply_chat_template(prompt + answer, tokenize=True, return_dict=True)["input_ids"])
    start = len(chat_prompt_ids(tokenizer, prompt))
    for position in range(start, len(ids)):
        if ids[position] == stop_id:
            return ids[: position + 1]
    return ids


@dataclass
class Prompts:
    """The train and held-out prompts of a preference or prompt dataset, each once, with the held-out pairs when there
    are (every pair of each held-out prompt)."""

    manifest: dataset_pb2.DatasetManifest
    train: list[str]
    eval: list[str]
    eval_pairs: list[dict]


def load_prompts(data_dir: Path, limit: int = 0) -> Prompts:
    """Prompts of a preference dataset (the reward model's data, so the held-out pairs also give the reward scale) or
    of a prompt dataset. Held-out prompts come from the eval split; `limit` keeps the first ones."""
    manifest = read_manifest(data_dir)
    kinds = (dataset_pb2.DATASET_KIND_PREFERENCE, dataset_pb2.DATASET_KIND_PROMPT)
    if manifest.kind not in kinds:
        raise RecipeError(
            f"dataset {manifest.name!r} is {dataset_pb2.DatasetKind.Name(manifest.kind)}; PPO samples answers to the "
            "prompts of a DATASET_KIND_PREFERENCE or DATASET_KIND_PROMPT dataset"
        )
    train, held_out = read_split(data_dir, "train"), read_split(data_dir, "eval")
    # A prompt with several pairs (one right answer against several wrong ones) is sampled and evaluated once.
    eval_prompts = list(dict.fromkeys(str(p) for p in held_out["prompt"]))
    if limit:
        eval_prompts = eval_prompts[:limit]
    pairs: list[dict] = []
    if manifest.kind == dataset_pb2.DATASET_KIND_PREFERENCE:
        check_distinct(held_out, Path(data_dir) / "eval.parquet")
        kept = set(eval_prompts)
        pairs = [pair for pair, p in zip(conversational_pairs(held_out), held_out["prompt"], strict=True) if p in kept]
    prompts = Prompts(manifest, list(dict.fromkeys(str(p) for p in train["prompt"])), eval_prompts, pairs)
    if not prompts.train:
        raise RecipeError(f"dataset {manifest.name!r}: its train split has no prompts")
    if not prompts.eval:
        raise RecipeError(
            f"dataset {manifest.name!r}: its eval split has no prompts; the held-out evaluation needs some"
        )
    return prompts
