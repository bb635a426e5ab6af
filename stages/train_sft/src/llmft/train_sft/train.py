"""Supervised fine-tuning, read top to bottom: check the request, data and chat template, load the base model and
tokenizer, evaluate held-out assistant-token loss, train with trl's SFTTrainer (assistant-only loss; padding-free
packing with position ids restarting per conversation, so attention never crosses examples), evaluate again, sample
answers to held-out prompts before and after, save the model and describe it."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmft.core import chat_templates
from llmft.core.datasets import read_manifest, read_split, require_kind
from llmft.core.generation import generate_answers
from llmft.core.lm_loss import install_for_recipe
from llmft.core.recipe import RecipeError, load_model_for_training, resolve_recipe, training_arguments
from llmft.core.training import load_base, save_and_describe, train_and_evaluate, training_report_html
from llmft.proto.data.v1 import dataset_pb2
from llmft.proto.training.v1 import training_pb2
from llmft.train_sft import STAGE, __version__
from llmft.train_sft.attention import restore_sdpa, use_packed_attention

SAMPLE_PROMPTS = 3


def conversation(messages: str | list[dict[str, str]]) -> list[dict[str, str]]:
    """A chat row's `messages` (JSON text in Parquet) as a list of {role, content}."""
    return json.loads(messages) if isinstance(messages, str) else list(messages)


@dataclass
class SftResult:
    artifact: training_pb2.ModelArtifact
    report_html: str
    samples: list[dict[str, str]]


def assistant_tokens(tokenizer: Any, conversations: list[list[dict[str, str]]], max_length: int) -> int:
    total = 0
    for messages in conversations:
        encoded = tokenizer.apply_chat_template(
            messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        total += sum(encoded["assistant_masks"][:max_length])
    return total


def sft_trainer(
    recipe: training_pb2.TrainingRecipe,
    model: Any,
    tokenizer: Any,
    train_conversations: list[list[dict[str, str]]],
    eval_conversations: list[list[dict[str, str]]],
    work: Path,
    callbacks: list[Any] | None = None,
) -> Any:
    """trl's SFTTrainer as the recipe says: chat template, loss on assistant tokens only, and with packing,
    best-fit-decreasing packing of whole conversations into rows whose position ids restart per conversation (trl
    calls the model with use_cache=False, so transformers masks attention per conversation). With flash-attention the
    rows are flattened padding-free (trl's default); otherwise they stay rows (RowPackedCollator) and sdpa runs per
    conversation (llmft.train_sft.attention)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        **training_arguments(recipe, work),
        max_length=recipe.max_length,
        packing=recipe.packing,
        packing_strategy="bfd",
        padding_free=recipe.packing,
        assistant_only_loss=True,
        loss_type="chunked_nll",
        dataset_num_proc=None,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list([{"messages": m} for m in train_conversations]),
        eval_dataset=Dataset.from_list([{"messages": m} for m in eval_conversations]),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    # trl has patched the model for its chunked loss; llmft's fused one replaces it (no recomputation, matmuls in the
    # autocast dtype) and reports the same token statistics. Under ZeRO-3 trl's stays: it gathers the head's weight.
    install_for_recipe(trainer.model, recipe.zero.stage)
    if recipe.packing and not is_flash_attention(model):
        trainer.data_collator = RowPackedCollator(pad_token_id=tokenizer.pad_token_id)
        use_packed_attention(trainer.model)
    return trainer


def is_flash_attention(model: Any) -> bool:
    return "flash" in str(getattr(model.config, "_attn_implementation", ""))


class RowPackedCollator:
    """Batches of packed rows for attention without variable-length kernels (sdpa, eager: CPUs, most GPUs without
    flash-attention). trl's padding-free collator flattens the whole batch into one row, which flash-attention splits
    by sequence but sdpa computes as one (batch x length)^2 block-masked attention: 8x the work at batch 8. This keeps
    the rows (each one max_length of packed conversations), restarts position ids per conversation and leaves out the
    attention mask, so transformers masks attention per conversation within each row (and llmft's packed sdpa
    attends within each conversation only, skipping the masked blocks)."""

    def __init__(self, pad_token_id: int) -> None:
        from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

        self.collate = DataCollatorForLanguageModeling(pad_token_id=pad_token_id, return_position_ids=True)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collate(examples)
        del batch["attention_mask"]
        # As trl's padding-free batches: the first token of each conversation (position 0) predicts nothing, and
        # row padding (position 0 as well) carries no loss.
        batch["labels"][batch["position_ids"] == 0] = -100
        return dict(batch)


def train_sft(
    request: training_pb2.TrainingRequest,
    data_dir: Path,
    out_dir: Path,
    base_model_dir: Path | None = None,
    checkpoint_dir: Path | None = None,
    distributed: bool = False,
    callbacks: list[Any] | None = None,
) -> SftResult:
    recipe = resolve_recipe(request.recipe)
    manifest = read_manifest(data_dir)
    require_kind(manifest, dataset_pb2.DATASET_KIND_CHAT, STAGE)
    base = load_base(
        request.base_model,
        request.base_model_revision,
        base_model_dir,
        recipe,
        distributed,
        chat=chat_templates.MARKERS,
    )
    tokenizer = base.tokenizer

    train_conversations = [conversation(m) for m in read_split(data_dir, "train")["messages"]]
    eval_conversations = [conversation(m) for m in read_split(data_dir, "eval")["messages"]]
    if recipe.eval.max_eval_samples:
        eval_conversations = eval_conversations[: recipe.eval.max_eval_samples]
    if not train_conversations:
        raise RecipeError(f"dataset {manifest.name!r}: its train split is empty")
    if not eval_conversations:
        raise RecipeError(f"dataset {manifest.name!r}: its eval split is empty; held-out loss needs one")
    eval_tokens = assistant_tokens(tokenizer, eval_conversations, recipe.max_length)

    model = load_model_for_training(base.directory, recipe)
    samples_from = eval_conversations[:SAMPLE_PROMPTS]
    answers_before = generate_answers(model, tokenizer, samples_from)

    work = Path(checkpoint_dir) if checkpoint_dir else Path(tempfile.mkdtemp(prefix="llmft-sft-"))
    trainer = sft_trainer(recipe, model, tokenizer, train_conversations, eval_conversations, work, callbacks)
    metrics = train_and_evaluate(trainer, eval_tokens)
    restore_sdpa(trainer.model)
    answers_after = generate_answers(trainer.model, tokenizer, samples_from)
    samples = [
        {"prompt": m[-2]["content"] if len(m) > 1 else "", "reference": m[-1]["content"], "before": b, "after": a}
        for m, b, a in zip(samples_from, answers_before, answers_after, strict=True)
    ]
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
    report = training_report_html(
        f"SFT {request.run_name or manifest.name}", metrics, trainer.state.log_history, samples
    )
    return SftResult(artifact, report, samples)
