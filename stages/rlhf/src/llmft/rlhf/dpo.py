"""DPO, read top to bottom: check data and recipe, load the policy (its frozen copy is the reference), measure the
held-out preference loss and accuracy of the implicit reward, train with trl's DPOTrainer, measure again, save and
describe the policy."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from llmft.core.recipe import RecipeError, load_model_for_training, resolve_recipe, training_arguments
from llmft.core.training import load_base, save_and_describe, training_report_html
from llmft.proto.rlhf.v1 import rlhf_pb2
from llmft.proto.training.v1 import training_pb2
from llmft.rlhf import STAGE, __version__
from llmft.rlhf.preferences import load_pairs

LOSS_TYPES = {"sigmoid", "ipo", "hinge", "robust"}


@dataclass
class DpoResult:
    report: rlhf_pb2.DpoReport
    report_html: str


def train_dpo(
    request: rlhf_pb2.DpoRequest,
    data_dir: Path,
    out_dir: Path,
    base_model_dir: Path | None = None,
    base_model: str = "",
    checkpoint_dir: Path | None = None,
    distributed: bool = False,
) -> DpoResult:
    """Optimises the policy in `base_model_dir` (or the named `base_model`) on the preference pairs in `data_dir`."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    recipe = resolve_recipe(request.recipe)
    beta = request.dpo.beta or 0.1
    loss_type = request.dpo.loss_type or "sigmoid"
    if loss_type not in LOSS_TYPES:
        raise RecipeError(f"dpo.loss_type: {loss_type!r} is not one of {sorted(LOSS_TYPES)}")
    manifest, train_pairs, eval_pairs = load_pairs(data_dir, STAGE, recipe.eval.max_eval_samples)
    base = load_base(
        base_model or ("" if base_model_dir else "llmft/tiny-llama"), "", base_model_dir, recipe, distributed
    )
    tokenizer = base.tokenizer

    model = load_model_for_training(base.directory, recipe)
    work = Path(checkpoint_dir) if checkpoint_dir else Path(tempfile.mkdtemp(prefix="llmft-dpo-"))
    args = DPOConfig(
        **training_arguments(recipe, work),
        max_length=recipe.max_length,
        beta=beta,
        loss_type=[loss_type],
        dataset_num_proc=None,
    )
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_pairs),
        eval_dataset=Dataset.from_list(eval_pairs),
        processing_class=tokenizer,
    )
    before = trainer.evaluate()
    result = trainer.train()
    after = trainer.evaluate()
    metrics = training_pb2.TrainingMetrics(
        eval_before=training_pb2.EvalMetrics(loss=before["eval_loss"]),
        eval_after=training_pb2.EvalMetrics(loss=after["eval_loss"]),
        train_loss=float(result.training_loss),
        steps=int(trainer.state.global_step),
    )
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
        eval_accuracy_before=before.get("eval_rewards/accuracies", 0.0),
        eval_accuracy_after=after.get("eval_rewards/accuracies", 0.0),
        eval_loss_before=before["eval_loss"],
        eval_loss_after=after["eval_loss"],
    )
    html = training_report_html(f"DPO {request.run_name or manifest.name}", metrics, trainer.state.log_history)
    return DpoResult(report, html)
