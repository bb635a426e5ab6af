"""Continued pre-training, read top to bottom: check the request and data, load the base model and tokenizer, turn
the corpus into sequences, evaluate, train, evaluate again, save the model and describe it."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmft.core.datasets import read_manifest, read_split, require_kind
from llmft.core.lm_loss import install_for_recipe
from llmft.core.recipe import RecipeError, load_model_for_training, resolve_recipe, training_arguments
from llmft.core.training import load_base, save_and_describe, train_and_evaluate, training_report_html
from llmft.proto.data.v1 import dataset_pb2
from llmft.proto.training.v1 import training_pb2
from llmft.train_cpt import STAGE, __version__
from llmft.train_cpt.packing import pack_blocks, pad_documents


@dataclass
class CptResult:
    artifact: training_pb2.ModelArtifact
    report_html: str
    log_history: list[dict[str, Any]]


def sequences(texts: list[str], tokenizer: Any, recipe: training_pb2.TrainingRecipe) -> list[dict[str, list[int]]]:
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    if recipe.packing:
        blocks = pack_blocks(encoded, recipe.max_length, tokenizer.eos_token_id)
        return [{"input_ids": b, "attention_mask": [1] * len(b), "labels": list(b)} for b in blocks]
    return pad_documents(encoded, recipe.max_length, tokenizer.eos_token_id, tokenizer.pad_token_id)


def train_cpt(
    request: training_pb2.TrainingRequest,
    data_dir: Path,
    out_dir: Path,
    base_model_dir: Path | None = None,
    checkpoint_dir: Path | None = None,
    distributed: bool = False,
    callbacks: list[Any] | None = None,
) -> CptResult:
    """Trains on the raw-text dataset in `data_dir`; writes the model to `out_dir`. `base_model_dir` (an upstream
    stage's model folder) takes precedence over request.base_model. Checkpoints go to `checkpoint_dir`, and a run
    finding one there resumes from it. `callbacks` are transformers TrainerCallbacks (e.g. Flyte checkpointing)."""
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments, default_data_collator

    recipe = resolve_recipe(request.recipe)
    manifest = read_manifest(data_dir)
    require_kind(manifest, dataset_pb2.DATASET_KIND_RAW_TEXT, STAGE)
    base = load_base(request.base_model, request.base_model_revision, base_model_dir, recipe, distributed)

    train_rows = sequences(list(read_split(data_dir, "train")["text"]), base.tokenizer, recipe)
    eval_rows = sequences(list(read_split(data_dir, "eval")["text"]), base.tokenizer, recipe)
    if recipe.eval.max_eval_samples:
        eval_rows = eval_rows[: recipe.eval.max_eval_samples]
    if not train_rows:
        raise RecipeError(
            f"dataset {manifest.name!r}: its train split has too few tokens for one {recipe.max_length}-token "
            "sequence; lower recipe.max_length"
        )
    if not eval_rows:
        raise RecipeError(
            f"dataset {manifest.name!r}: its eval split is empty or has too few tokens for one "
            f"{recipe.max_length}-token sequence; lower recipe.max_length or hold out more rows (split.eval_fraction)"
        )
    eval_tokens = sum(sum(1 for t in row["labels"] if t != -100) for row in eval_rows)

    model = load_model_for_training(base.directory, recipe)
    work = Path(checkpoint_dir) if checkpoint_dir else Path(tempfile.mkdtemp(prefix="llmft-cpt-"))
    trainer = Trainer(
        model=model,
        args=TrainingArguments(**training_arguments(recipe, work), prediction_loss_only=True),
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows),
        data_collator=default_data_collator,
        processing_class=base.tokenizer,
        callbacks=callbacks,
    )
    install_for_recipe(trainer.model, recipe.zero.stage)
    metrics = train_and_evaluate(trainer, eval_tokens)
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
    report = training_report_html(f"CPT {request.run_name or manifest.name}", metrics, trainer.state.log_history)
    return CptResult(artifact, report, trainer.state.log_history)
