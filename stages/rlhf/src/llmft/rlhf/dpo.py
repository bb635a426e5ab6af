"""DPO, read top to bottom: check data and recipe, load the policy (its frozen copy is the reference), train with trl's
DPOTrainer on the shared training path (held-out preference loss and implicit-reward accuracy before and after inside
`train`, checkpoints and resume), save and describe the policy."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmft.core import chat_templates
from llmft.core.recipe import RecipeError, load_model_for_training, resolve_recipe, training_arguments
from llmft.core.training import load_base, save_and_describe, train_and_evaluate, training_report_html
from llmft.proto.rlhf.v1 import rlhf_pb2
from llmft.rlhf import STAGE, __version__
from llmft.rlhf.preferences import check_prompt_lengths, load_pairs

LOSS_TYPES = {"sigmoid", "ipo", "hinge", "robust"}


@dataclass
class DpoResult:
    report: rlhf_pb2.DpoReport
    report_html: str


def resolve_dpo(config: rlhf_pb2.DpoConfig) -> rlhf_pb2.DpoConfig:
    """A copy with every unset field at its default (beta 0.1, sigmoid loss); errors name the field."""
    resolved = rlhf_pb2.DpoConfig()
    resolved.CopyFrom(config)
    resolved.beta = resolved.beta or 0.1
    resolved.loss_type = resolved.loss_type or "sigmoid"
    if resolved.loss_type not in LOSS_TYPES:
        raise RecipeError(f"dpo.loss_type: {resolved.loss_type!r} is not one of {sorted(LOSS_TYPES)}")
    for name in ("beta", "sft_weight"):
        value = getattr(resolved, name)
        if not value == value or value < 0 or value == float("inf"):  # NaN, negative, infinite
            raise RecipeError(f"dpo.{name}: {value} is not a finite number >= 0")
    return resolved


def train_dpo(
    request: rlhf_pb2.DpoRequest,
    data_dir: Path,
    out_dir: Path,
    base_model_dir: Path | None = None,
    checkpoint_dir: Path | None = None,
    distributed: bool = False,
    callbacks: list[Any] | None = None,
) -> DpoResult:
    """Optimises the policy in `base_model_dir` (or the request's `base_model`) on the preference pairs in
    `data_dir`. A `checkpoint_dir` holding checkpoints of an earlier attempt resumes from the latest."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    recipe = resolve_recipe(request.recipe)
    config = resolve_dpo(request.dpo)
    beta, loss_type, sft_weight = config.beta, config.loss_type, config.sft_weight
    losses = (
        dict(loss_type=[loss_type, "sft"], loss_weights=[1.0, sft_weight])
        if sft_weight
        else dict(loss_type=[loss_type])
    )
    manifest, train_pairs, eval_pairs = load_pairs(data_dir, STAGE, recipe.eval.max_eval_samples)
    if not request.base_model and base_model_dir is None:
        raise RecipeError("base_model: empty and no upstream policy folder given; name the policy to optimise")
    base = load_base(request.base_model, "", base_model_dir, recipe, distributed, chat=chat_templates.REQUIRED)
    tokenizer = base.tokenizer
    for split, pairs in (("train", train_pairs), ("eval", eval_pairs)):
        check_prompt_lengths(pairs, tokenizer, recipe.max_length, f"{data_dir}/{split}.parquet")

    model = load_model_for_training(base.directory, recipe)
    work = Path(checkpoint_dir) if checkpoint_dir else Path(tempfile.mkdtemp(prefix="llmft-dpo-"))
    args = DPOConfig(
        **training_arguments(recipe, work),
        max_length=recipe.max_length,
        beta=beta,
        **losses,
        dataset_num_proc=None,
    )
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_pairs),
        eval_dataset=Dataset.from_list(eval_pairs),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    metrics = train_and_evaluate(trainer, eval_tokens=0, perplexity=False)
    evaluations = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    before, after = evaluations[0], evaluations[-1]
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
    report = rlhf_pb2.DpoReport(
        policy=artifact,
        eval_accuracy_before=before["eval_rewards/accuracies"],
        eval_accuracy_after=after["eval_rewards/accuracies"],
        eval_loss_before=metrics.eval_before.loss,
        eval_loss_after=metrics.eval_after.loss,
    )
    html = training_report_html(f"DPO {request.run_name or manifest.name}", metrics, trainer.state.log_history)
    return DpoResult(report, html)
