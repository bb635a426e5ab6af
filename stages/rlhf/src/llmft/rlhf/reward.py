"""Reward-model training, read top to bottom: check data and recipe, load the base as a sequence classifier with one
output (the reward), measure held-out pairwise accuracy, train with trl's RewardTrainer (Bradley-Terry loss) on the
shared training path (held-out loss before and after inside `train`, checkpoints and resume), measure again, save and
describe the model."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmft.core import chat_templates, decks
from llmft.core.recipe import load_model_for_training, resolve_recipe, training_arguments
from llmft.core.training import load_base, save_and_describe, train_and_evaluate, training_report_html
from llmft.proto.rlhf.v1 import rlhf_pb2
from llmft.rlhf import STAGE, __version__
from llmft.rlhf.preferences import (
    PreferenceDataError,
    check_prompt_lengths,
    end_of_turn_id,
    load_pairs,
    scored_ids,
)

log = logging.getLogger(__name__)


@dataclass
class RewardResult:
    report: rlhf_pb2.RewardModelReport
    report_html: str


def score(model: Any, tokenizer: Any, pairs: list[dict], max_length: int) -> tuple[list[float], list[float]]:
    """Rewards of the chosen and rejected answer of each pair, read where training and use read them (`scored_ids`)."""
    import torch

    model.eval()
    stop = end_of_turn_id(tokenizer)
    chosen: list[float] = []
    rejected: list[float] = []
    with torch.no_grad():
        for pair in pairs:
            for answer, out in ((pair["chosen"], chosen), (pair["rejected"], rejected)):
                ids = scored_ids(tokenizer, pair["prompt"], answer, stop)[:max_length]
                out.append(float(model(input_ids=torch.tensor([ids], device=model.device)).logits[0, 0]))
    model.train()
    return chosen, rejected


def tokenized_pairs(pairs: list[dict], tokenizer: Any, max_length: int, where: str) -> tuple[list[dict], list[int]]:
    """Each pair as the token ids of its chosen and rejected conversation (`scored_ids`), the form trl's
    RewardTrainer takes as already processed, and the row numbers of the pairs left out: longer than `max_length`
    (the trainer would drop them without a word; they are counted in the report and logged)."""
    stop = end_of_turn_id(tokenizer)
    rows, over = [], []
    for number, pair in enumerate(pairs):
        chosen, rejected = (scored_ids(tokenizer, pair["prompt"], pair[side], stop) for side in ("chosen", "rejected"))
        if max(len(chosen), len(rejected)) > max_length:
            over.append(number)
        else:
            rows.append({"chosen_ids": chosen, "rejected_ids": rejected})
    if over:
        log.warning(
            "%s: %d of %d pairs are longer than recipe.max_length %d with the chat template (first: row %d); they are "
            "left out of training and of the held-out loss",
            where,
            len(over),
            len(pairs),
            max_length,
            over[0],
        )
    if not rows:
        raise PreferenceDataError(
            f"{where}: every pair is longer than recipe.max_length {max_length} with the chat template; raise it"
        )
    return rows, over


def accuracy(chosen: list[float], rejected: list[float]) -> float:
    return sum(c > r for c, r in zip(chosen, rejected, strict=True)) / max(len(chosen), 1)


def train_reward_model(
    request: rlhf_pb2.RewardModelRequest,
    data_dir: Path,
    out_dir: Path,
    base_model_dir: Path | None = None,
    checkpoint_dir: Path | None = None,
    distributed: bool = False,
    callbacks: list[Any] | None = None,
) -> RewardResult:
    """Trains a reward model on the preference pairs in `data_dir` from the base in `base_model_dir` (or the
    request's `base_model`). A `checkpoint_dir` holding checkpoints of an earlier attempt resumes from the latest."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    recipe = resolve_recipe(request.recipe)
    manifest, train_pairs, eval_pairs = load_pairs(data_dir, STAGE, recipe.eval.max_eval_samples)
    base = load_base(request.base_model, "", base_model_dir, recipe, distributed, chat=chat_templates.REQUIRED)
    tokenizer = base.tokenizer
    tokenized, over = {}, 0
    for split, pairs in (("train", train_pairs), ("eval", eval_pairs)):
        where = f"{data_dir}/{split}.parquet"
        check_prompt_lengths(pairs, tokenizer, recipe.max_length, where)
        tokenized[split], left_out = tokenized_pairs(pairs, tokenizer, recipe.max_length, where)
        over += len(left_out)

    model = load_model_for_training(
        base.directory, recipe, AutoModelForSequenceClassification, num_labels=1, pad_token_id=tokenizer.pad_token_id
    )
    before = accuracy(*score(model, tokenizer, eval_pairs, recipe.max_length))
    work = Path(checkpoint_dir) if checkpoint_dir else Path(tempfile.mkdtemp(prefix="llmft-rm-"))
    args = RewardConfig(**training_arguments(recipe, work), max_length=recipe.max_length, dataset_num_proc=None)
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(tokenized["train"]),
        eval_dataset=Dataset.from_list(tokenized["eval"]),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    metrics = train_and_evaluate(trainer, eval_tokens=0, perplexity=False)
    chosen, rejected = score(trainer.model, tokenizer, eval_pairs, recipe.max_length)
    after = accuracy(chosen, rejected)
    artifact = save_and_describe(
        trainer,
        base,
        recipe,
        out_dir,
        request=request,
        stage=STAGE,
        stage_version=__version__,
        dataset_fingerprint=manifest.fingerprint,
        metrics=metrics,
    )
    report = rlhf_pb2.RewardModelReport(
        reward_model=artifact,
        eval_accuracy_before=before,
        eval_accuracy_after=after,
        eval_margin=sum(c - r for c, r in zip(chosen, rejected, strict=True)) / len(chosen),
        eval_pairs=len(eval_pairs),
        train_pairs=len(tokenized["train"]),
        pairs_over_max_length=over,
    )
    html = training_report_html(f"Reward model {request.run_name or manifest.name}", metrics, trainer.state.log_history)
    html += decks.table(
        [
            {
                "trained on": report.train_pairs,
                "held out": report.eval_pairs,
                f"left out (over max_length {recipe.max_length})": over,
                "held-out accuracy before": before,
                "after": after,
            }
        ],
        title="Preference pairs",
    )
    return RewardResult(report, html)
