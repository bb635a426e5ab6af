"""What every training stage does around its trainer, in one place: evaluate before, train (resuming from the latest
checkpoint when there is one), evaluate after, save the model as the recipe says (merged weights or a LoRA adapter,
with the tokenizer and chat template), and describe it as a ModelArtifact with fingerprint and provenance."""

from __future__ import annotations

import contextlib
import copy
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from llmft.core import chat_templates
from llmft.core import fingerprint as fp
from llmft.core.models import model_family, tokenizer_fingerprint, weights_fingerprint
from llmft.core.parameters import count_parameters
from llmft.proto.training.v1 import training_pb2

T = training_pb2
ARTIFACT_FILE = "llmft_artifact.json"
# TensorBoard event files of the training run, in a model folder (transformers' and the Hub's convention: the Hub
# shows a model repo's runs/ as its training metrics). Not part of the model's fingerprint: they hold wall times.
LOGS_DIR = "runs"


def eval_metrics(metrics: dict[str, float], tokens: int, perplexity: bool = True) -> T.EvalMetrics:
    """Held-out loss; with `perplexity`, its exponential (a language model's loss per token; for a preference loss it
    means nothing and stays 0)."""
    loss = float(metrics["eval_loss"])
    return T.EvalMetrics(loss=loss, perplexity=math.exp(min(loss, 50.0)) if perplexity else 0.0, tokens=tokens)


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest complete `checkpoint-<step>` folder (one with trainer_state.json), or None."""
    candidates = []
    for path in Path(checkpoint_dir).glob("checkpoint-*"):
        suffix = path.name.split("-", 1)[1]
        if suffix.isdigit() and (path / "trainer_state.json").is_file():
            candidates.append((int(suffix), path))
    return max(candidates)[1] if candidates else None


def copy_checkpoints(source: Path, checkpoint_dir: Path) -> Path | None:
    """Copies complete `checkpoint-<step>` folders from `source` (e.g. a restored Flyte checkpoint) into
    `checkpoint_dir`, each by an atomic rename, so several ranks may do it at once. Returns the latest one there."""
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    for folder in sorted(Path(source).glob("checkpoint-*")):
        target = checkpoint_dir / folder.name
        if target.exists() or not (folder / "trainer_state.json").is_file():
            continue
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=checkpoint_dir))
        shutil.copytree(folder, staging, dirs_exist_ok=True)
        try:
            staging.rename(target)
        except OSError:  # another rank got there first: its copy is complete
            shutil.rmtree(staging, ignore_errors=True)
    return latest_checkpoint(checkpoint_dir)


RUN_SECONDS = "run_seconds"


def run_clock() -> Any:
    """A Trainer callback that writes the run's training seconds so far into each logged step (so a checkpoint keeps
    them) and, in a resumed attempt, continues from the checkpoint's: `seconds()` is then the time of the steps that
    made the final model, across every attempt. At the start it says which optimizer kernel trains (on stderr)."""
    from transformers import TrainerCallback

    class RunClock(TrainerCallback):  # type: ignore[misc]
        before = 0.0
        started = time.perf_counter()

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            restored = [e[RUN_SECONDS] for e in state.log_history if RUN_SECONDS in e]
            self.before = float(restored[-1]) if restored else 0.0
            self.started = time.perf_counter()
            if state.is_world_process_zero and kwargs.get("optimizer") is not None:
                print(f"llmft: optimizer {optimizer_chain(kwargs['optimizer'])}", file=sys.stderr)

        def seconds(self) -> float:
            return self.before + time.perf_counter() - self.started

        def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.log_history:
                state.log_history[-1][RUN_SECONDS] = self.seconds()

    return RunClock()


def optimizer_chain(optimizer: Any) -> str:
    """The optimizer's class and the classes it wraps, with their packages ("accelerate.AcceleratedOptimizer >
    bitsandbytes.AdamW"), so a run shows which kernel updates the weights."""
    names: list[str] = []
    while optimizer is not None and len(names) < 5:
        # deepspeed's ZeRO optimizers say what they keep on the CPU
        offloaded = [
            what
            for what, flags in (
                ("optimizer states", ("offload_optimizer", "cpu_offload")),
                ("parameters", ("offload_param",)),
            )
            if any(getattr(optimizer, flag, False) is True for flag in flags)
        ]
        where = f" ({' and '.join(offloaded)} offloaded to the CPU)" if offloaded else ""
        where += " (paged)" if getattr(optimizer, "is_paged", False) is True else ""  # bitsandbytes
        kind = type(optimizer)
        names.append(f"{kind.__module__.split('.')[0]}.{kind.__name__}{where}")
        optimizer = getattr(optimizer, "optimizer", None)
    return " > ".join(names)


def run_train_loss(log_history: list[dict[str, Any]], key: str = "loss") -> float | None:
    """The mean training loss (`key` of the logged entries) over every step of the run, a resumed run's earlier
    attempt included (its steps come back with the checkpoint's log history; a step logged twice counts once). None
    when no step logged a loss."""
    losses = {int(e["step"]): float(e[key]) for e in log_history if key in e and "step" in e}
    return sum(losses.values()) / len(losses) if losses else None


def train_and_evaluate(
    trainer: Any, eval_tokens: int, resume: bool = True, perplexity: bool = True
) -> T.TrainingMetrics:
    """Held-out loss before and after training, and the training run between them. Resumes from the latest
    checkpoint in the trainer's output_dir when `resume` is set and one exists. `perplexity` is false for losses that
    are not a language model's (reward model, DPO).

    The "before" evaluation runs inside `train` (eval_on_start), so it uses the same engine as training: deepspeed
    refuses a ZeRO-1/2 evaluation before its engine exists. A resumed run takes it from the restored log history, and
    its train loss, tokens and seconds cover the whole run, not only the resumed steps."""
    trainer.args.eval_on_start = True
    checkpoint = latest_checkpoint(Path(trainer.args.output_dir)) if resume else None
    clock = run_clock()
    trainer.add_callback(clock)
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    seconds = clock.seconds()
    evaluations = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    if not evaluations:
        raise RuntimeError("training logged no evaluation; eval_on_start did not run")
    before = eval_metrics(evaluations[0], eval_tokens, perplexity)
    after = eval_metrics(trainer.evaluate(metric_key_prefix="eval"), eval_tokens, perplexity)
    tokens = int(getattr(trainer.state, "num_input_tokens_seen", 0) or 0)
    whole_run_loss = run_train_loss(trainer.state.log_history)
    return T.TrainingMetrics(
        eval_before=before,
        eval_after=after,
        train_loss=float(result.training_loss) if whole_run_loss is None else whole_run_loss,
        steps=int(trainer.state.global_step),
        train_tokens=tokens,
        tokens_per_second=tokens / seconds if seconds > 0 else 0.0,
        train_seconds=seconds,
    )


def save_model(model: Any, tokenizer: Any, recipe: T.TrainingRecipe, out_dir: Path) -> T.ArtifactFormat:
    """Saves weights (merged or adapter, as the recipe says) and the tokenizer in Hugging Face format.
    Returns the ArtifactFormat."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fmt = T.ARTIFACT_FORMAT_MERGED
    if recipe.method in (T.TRAINING_METHOD_LORA, T.TRAINING_METHOD_QLORA):
        if recipe.lora.merge:
            model = merged_in_full_precision(model)
        else:
            fmt = T.ARTIFACT_FORMAT_ADAPTER
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return fmt


def merged_in_full_precision(model: Any) -> Any:
    """peft's merge_and_unload, into fp32 weights: a LoRA model whose frozen base was loaded in bf16 (bf16 training,
    llmft.core.recipe.base_dtype) or in 4-bit (QLoRA) merges its adapters into the base's fp32 weights, read again
    from the base's folder, so the saved model keeps the base's precision, not its bf16 or NF4 rounding."""
    import torch

    base = model.get_base_model()
    if all(p.dtype == torch.float32 for p in base.parameters()):
        return model.merge_and_unload()
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    config = model.peft_config[model.active_adapter]
    model_config = copy.deepcopy(base.config)  # the task head's settings (num_labels, ...), without the 4-bit load
    if hasattr(model_config, "quantization_config"):
        del model_config.quantization_config
    full = type(base).from_pretrained(config.base_model_name_or_path, config=model_config, dtype=torch.float32)
    full = get_peft_model(full, config)
    set_peft_model_state_dict(full, get_peft_model_state_dict(model))
    return full.merge_and_unload()


def write_message(path: Path, message: Message) -> None:
    Path(path).write_text(json_format.MessageToJson(message, sort_keys=True) + "\n", encoding="utf-8")


def relocate_artifact(model_dir: Path) -> T.ModelArtifact | None:
    """After a model folder moved into place: its artifact's uri becomes the folder's final path."""
    artifact = read_artifact(model_dir)
    if artifact is not None:
        artifact.uri = str(Path(model_dir).resolve())
        write_message(Path(model_dir) / ARTIFACT_FILE, artifact)
    return artifact


def read_artifact(model_dir: Path) -> T.ModelArtifact | None:
    path = Path(model_dir) / ARTIFACT_FILE
    if not path.is_file():
        return None
    return json_format.Parse(path.read_text(encoding="utf-8"), T.ModelArtifact())


@dataclass
class BaseModel:
    """The model a stage starts from, checked against the recipe, with its tokenizer (carrying the chat template the
    recipe chose) and what the artifact records of that template."""

    name: str
    directory: Path
    tokenizer: Any
    chat_template: str = ""


def load_base(
    name: str,
    revision: str,
    upstream_dir: Path | None,
    recipe: T.TrainingRecipe,
    distributed: bool,
    chat: str = chat_templates.OPTIONAL,
) -> BaseModel:
    """Resolves the base (an upstream model folder wins over a name), then validates the recipe against its config
    and puts the recipe's chat template on the tokenizer, before any weights load: errors name the recipe field.
    `chat` is what the stage needs of the template (llmft.core.chat_templates: OPTIONAL, REQUIRED, MARKERS)."""
    from transformers import AutoConfig

    from llmft.core.models import load_tokenizer, resolve_model_dir
    from llmft.core.recipe import validate_recipe

    resolved = resolve_model_dir(str(upstream_dir) if upstream_dir else name, revision)
    config = AutoConfig.from_pretrained(resolved.directory)
    validate_recipe(recipe, max_positions=getattr(config, "max_position_embeddings", None), distributed=distributed)
    label = base_label(name or str(resolved.directory), resolved.directory)
    tokenizer = load_tokenizer(resolved.directory)
    applied = chat_templates.apply_chat_template(
        tokenizer, recipe.chat_template, label, field="recipe.chat_template", need=chat
    )
    if not applied:  # the tokenizer keeps its template: an upstream llmft model says which one that is
        upstream = read_artifact(resolved.directory)
        applied = upstream.chat_template if upstream else ""
    return BaseModel(label, resolved.directory, tokenizer, applied)


def save_and_describe(
    trainer: Any,
    base: BaseModel,
    recipe: T.TrainingRecipe,
    out_dir: Path,
    *,
    request: Message,
    stage: str,
    stage_version: str,
    dataset_fingerprint: str,
    metrics: T.TrainingMetrics,
) -> T.ModelArtifact:
    """On the main process: saves the trained model as the recipe says and writes its ModelArtifact. Other ranks of a
    distributed run save nothing and get an empty artifact. Under ZeRO-3 every rank first gathers the partitioned
    weights (a collective), so the main process saves and counts whole tensors, not its empty partitions."""
    with full_parameters(trainer.model, recipe.zero.stage):
        if not trainer.is_world_process_zero():
            return T.ModelArtifact()
        fmt = save_model(trainer.model, base.tokenizer, recipe, out_dir)
        copy_training_logs(Path(trainer.args.output_dir), out_dir)
        return build_artifact(
            model=trainer.model,
            out_dir=out_dir,
            fmt=fmt,
            base_name=base.name,
            base_dir=base.directory,
            request=request,
            stage=stage,
            stage_version=stage_version,
            input_fingerprints=[dataset_fingerprint],
            metrics=metrics,
            chat_template=base.chat_template,
            precision=recipe.precision,
        )


def full_parameters(model: Any, zero_stage: int) -> Any:
    """A context in which every rank holds the model's whole weights: under ZeRO-3 deepspeed gathers the partitions
    (every rank must enter it); otherwise nothing to do."""
    if zero_stage != 3:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None)


def copy_training_logs(work_dir: Path, out_dir: Path) -> None:
    """Copies the run's TensorBoard logs (every attempt's, a resumed run's included) into the model folder's runs/."""
    logs = Path(work_dir) / LOGS_DIR
    if logs.is_dir():
        shutil.copytree(logs, Path(out_dir) / LOGS_DIR, dirs_exist_ok=True)


def content_fingerprint(model_dir: Path) -> str:
    """Fingerprint of what a model folder holds for inference: everything but its training logs and its description
    (which holds this fingerprint)."""
    model_dir = Path(model_dir)
    files = [
        p.relative_to(model_dir).as_posix()
        for p in model_dir.rglob("*")
        if p.is_file() and p.relative_to(model_dir).parts[0] not in (LOGS_DIR, ARTIFACT_FILE)
    ]
    return fp.fingerprint_directory(model_dir, include=files)


def model_fingerprint(model_dir: Path) -> str:
    """The fingerprint of a model folder: its artifact's when an llmft stage wrote it, else its content's."""
    artifact = read_artifact(model_dir)
    return artifact.fingerprint if artifact else content_fingerprint(Path(model_dir))


def build_artifact(
    *,
    model: Any,
    out_dir: Path,
    fmt: T.ArtifactFormat,
    base_name: str,
    base_dir: Path,
    request: Message,
    stage: str,
    stage_version: str,
    input_fingerprints: Iterable[str],
    metrics: T.TrainingMetrics,
    chat_template: str,
    precision: T.Precision,
) -> T.ModelArtifact:
    """Describes a saved model directory and writes the description into it (llmft_artifact.json)."""
    total, trainable = count_parameters(model)
    base_model_fp = weights_fingerprint(base_dir)
    artifact = T.ModelArtifact(
        uri=str(out_dir),
        base_model=base_name,
        base_model_fingerprint=base_model_fp,
        format=fmt,
        model_family=model_family(model.config),
        tokenizer_fingerprint=tokenizer_fingerprint(out_dir),
        fingerprint=content_fingerprint(Path(out_dir)),
        metrics=metrics,
        parameters=total,
        trainable_parameters=trainable,
        provenance=fp.provenance(stage, stage_version, request, [base_model_fp, *input_fingerprints]),
        chat_template=chat_template,
        precision=precision,
    )
    write_message(Path(out_dir) / ARTIFACT_FILE, artifact)
    return artifact


def base_label(name: str, model_dir: Path) -> str:
    """How an artifact names its base: the preset/Hub id/path, or for an upstream llmft model, its lineage
    ("llmft/tiny-llama+llmft.train_cpt@1a2b3c4d5e6f")."""
    upstream = read_artifact(model_dir)
    if upstream is None:
        return name
    return f"{upstream.base_model}+{upstream.provenance.stage}@{fp.short(upstream.fingerprint)}"


def log_history_series(log_history: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    points = [(float(e["step"]), float(e[key])) for e in log_history if key in e and "step" in e]
    return [p[0] for p in points], [p[1] for p in points]


def training_report_html(
    title: str,
    metrics: T.TrainingMetrics,
    log_history: list[dict[str, Any]],
    samples: list[dict[str, str]] | None = None,
) -> str:
    """Deck page of a training run: loss, learning-rate and grad-norm curves, the eval table, sample generations."""
    from llmft.core import decks

    sections = [
        decks.table(
            [
                {"": "held-out loss", "before": metrics.eval_before.loss, "after": metrics.eval_after.loss},
                {"": "perplexity", "before": metrics.eval_before.perplexity, "after": metrics.eval_after.perplexity},
            ],
            title=title,
        ),
        decks.table(
            [
                {
                    "steps": metrics.steps,
                    "train loss": metrics.train_loss,
                    "tokens": metrics.train_tokens,
                    "tokens/s": metrics.tokens_per_second,
                    "seconds": metrics.train_seconds,
                }
            ],
        ),
    ]
    loss = log_history_series(log_history, "loss")
    eval_loss = log_history_series(log_history, "eval_loss")
    if loss[0]:
        sections.append(decks.line_plot({"train": loss, "eval": eval_loss}, "loss", "step", "loss"))
    for key, label in (("learning_rate", "learning rate"), ("grad_norm", "gradient norm")):
        series = log_history_series(log_history, key)
        if series[0]:
            sections.append(decks.line_plot({label: series}, label, "step", label))
    if samples:
        sections.append(decks.table(samples, title="sample generations"))
    return decks.page(*sections)


def replace_dir(src: Path, dst: Path) -> None:
    """Moves a finished output folder into place, refusing to overwrite a non-empty one."""
    dst = Path(dst)
    if dst.exists() and any(dst.iterdir()):
        raise FileExistsError(f"{dst}: output folder exists and is not empty; nothing was overwritten")
    if dst.exists():
        dst.rmdir()
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(src), str(dst))
