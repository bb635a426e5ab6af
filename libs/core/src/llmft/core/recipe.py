"""The one mapping from a TrainingRecipe (proto) onto transformers TrainingArguments, peft, bitsandbytes and
deepspeed. Every training stage (CPT, SFT, reward model, PPO, DPO) builds its trainer from these functions, so a recipe
means the same thing everywhere. An absent field means "the default below"; `resolve_recipe` fills them in, and
`validate_recipe` rejects what cannot run before any model is loaded. proto3 cannot tell an absent number from an
explicit 0, so a request read from a file is checked first (`explicit_zero_problems`): an explicit 0 where 0 would
silently become a non-zero default is an error naming the field."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from llmft.core.allocator import keep_freed_memory
from llmft.core.errors import RecipeError
from llmft.core.precision import resolve_precision
from llmft.proto.training.v1 import training_pb2

T = training_pb2


DEFAULTS = T.TrainingRecipe(
    method=T.TRAINING_METHOD_FULL,
    lora=T.LoraConfig(rank=8, alpha=16.0, dropout=0.0),
    precision=T.PRECISION_AUTO,
    optimizer=T.OPTIMIZER_ADAMW,
    zero=T.ZeroConfig(stage=0),
    schedule=T.Schedule(
        learning_rate=5e-4,
        lr_scheduler="cosine",
        warmup_ratio=0.0,
        weight_decay=0.0,
        epochs=1.0,
        per_device_batch_size=8,
        gradient_accumulation_steps=1,
        max_grad_norm=1.0,
    ),
    max_length=1024,  # trl's SFTConfig default: real conversations fit, and packing pays (bench/README.md)
    packing=True,
    seed=0,
    checkpoint=T.CheckpointConfig(save_steps=0, save_total_limit=2),
    eval=T.EvalConfig(eval_steps=0, max_eval_samples=0),
)

LR_SCHEDULERS = {"cosine", "linear", "constant", "constant_with_warmup"}
OPTIMIZERS = {
    T.OPTIMIZER_ADAMW: "adamw_torch",
    T.OPTIMIZER_ADAMW_8BIT: "adamw_bnb_8bit",
    T.OPTIMIZER_PAGED_ADAMW_8BIT: "paged_adamw_8bit",
}


def _fill(target: Any, defaults: Any) -> None:
    """Sets every zero-valued scalar of `target` to the value in `defaults`, recursing into sub-messages."""
    for field in defaults.DESCRIPTOR.fields:
        if field.is_repeated:
            continue
        default_value = getattr(defaults, field.name)
        if field.message_type is not None:
            _fill(getattr(target, field.name), default_value)
        elif not getattr(target, field.name):
            setattr(target, field.name, default_value)


# Recipe fields whose 0 cannot mean what it says: an absent field reads as 0 and takes its default. What to do instead
# when 0 was meant.
NON_ZERO = {
    "lora.rank": "give a rank > 0",
    "lora.alpha": "give an alpha > 0",
    "schedule.learning_rate": "give a learning rate > 0",
    "schedule.max_steps": "give steps > 0",
    "schedule.epochs": "give epochs > 0, or schedule.max_steps",
    "schedule.per_device_batch_size": "give a batch size > 0",
    "schedule.gradient_accumulation_steps": "give 1 for no accumulation",
    "schedule.max_grad_norm": "gradient clipping cannot be switched off; give a large norm (e.g. 1e9) for none",
    "max_length": "give a length in tokens > 0",
    "checkpoint.save_total_limit": "give how many checkpoints to keep (> 0)",
}


def _default_of(path: str) -> str:
    """What an absent field means, in words."""
    if path == "schedule.max_steps":
        return "training for schedule.epochs"
    value: Any = DEFAULTS
    for part in path.split("."):
        value = getattr(value, part)
    return f"the default {value:g}"


def _is_zero(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        return float(value) == 0
    except (TypeError, ValueError):
        return False


# Fields of the RLHF stage's messages whose 0 reads as absent and takes the stage's default (llmft.rlhf): what to do
# instead when 0 was meant. Keyed by message, so they are found wherever the message sits in a request.
RLHF_NON_ZERO = {
    "llmft.proto.rlhf.v1.PpoConfig": {
        "kl_coef": "for (almost) no KL penalty give a tiny coefficient such as 1e-9",
        "temperature": "PPO samples its rollouts, and 0 cannot be sampled at; give a temperature > 0",
        "cliprange": "give a clip range > 0",
        "vf_coef": "give a value-loss weight > 0",
        "num_ppo_epochs": "give epochs > 0",
        "response_length": "give a length in tokens > 0",
        "num_mini_batches": "give 1 for no split",
    },
    "llmft.proto.rlhf.v1.DpoConfig": {"beta": "give a beta > 0"},
    "llmft.proto.rlhf.v1.PolicyEvaluationRequest": {
        "temperature": "the comparison samples its answers, and 0 cannot be sampled at; give a temperature > 0",
        "max_new_tokens": "give tokens > 0",
    },
}


def _value_at(data: dict, path: str) -> Any:
    """The value at a dotted field path of a request read from YAML/JSON (proto or JSON field names), or None."""
    value: Any = data
    for part in path.split("."):
        camel = part.split("_")[0] + "".join(word.title() for word in part.split("_")[1:])
        value = value.get(part, value.get(camel)) if isinstance(value, dict) else None
    return value


def explicit_zero_problems(data: Any, descriptor: Any, where: str = "") -> list[str]:
    """The explicit zeros of NON_ZERO fields in every TrainingRecipe, and of RLHF_NON_ZERO fields in every RLHF
    message, inside `data`, a request as read from YAML/JSON for the message `descriptor`; each problem names the
    field's path."""
    if not isinstance(data, dict):
        return []
    problems = []
    if descriptor.full_name == T.TrainingRecipe.DESCRIPTOR.full_name:
        for path, advice in NON_ZERO.items():
            value = _value_at(data, path)
            if value is not None and _is_zero(value):
                problems.append(
                    f"{where}{path}: an explicit 0 is not allowed: it would silently mean {_default_of(path)}; "
                    f"{advice}, or leave the field out"
                )
        return problems
    for path, advice in RLHF_NON_ZERO.get(descriptor.full_name, {}).items():
        value = _value_at(data, path)
        if value is not None and _is_zero(value):
            problems.append(
                f"{where}{path}: an explicit 0 is not allowed: 0 reads as an absent field and would silently mean "
                f"the stage's default; {advice}, or leave the field out"
            )
    for field in descriptor.fields:
        if field.message_type is None:
            continue
        for key in dict.fromkeys((field.name, field.json_name)):
            if key not in data:
                continue
            values = data[key] if field.is_repeated and isinstance(data[key], list) else [data[key]]
            for index, value in enumerate(values):
                suffix = f"[{index}]" if field.is_repeated else ""
                problems += explicit_zero_problems(value, field.message_type, f"{where}{field.name}{suffix}.")
    return problems


def with_defaults(recipe: T.TrainingRecipe) -> T.TrainingRecipe:
    """A copy of `recipe` with every unset (zero) scalar set to its default, PRECISION_AUTO left as it is (resolving
    it looks at this machine's device); booleans keep their value."""
    filled = T.TrainingRecipe()
    filled.CopyFrom(recipe)
    _fill(filled, DEFAULTS)
    filled.packing = recipe.packing
    return filled


def resolve_recipe(recipe: T.TrainingRecipe) -> T.TrainingRecipe:
    """A copy of `recipe` with every unset (zero) scalar set to its default, and PRECISION_AUTO resolved to what this
    device trains fastest in (llmft.core.precision). Booleans keep their value: proto3 cannot
    tell an unset bool from false, so `packing` defaults to true only where a request is read from a file
    (`llmft.core.cli.load_training_request`) and stays as given in a message built in code."""
    resolved = with_defaults(recipe)
    resolved.precision = resolve_precision(resolved.precision)
    return resolved


def validate_recipe(recipe: T.TrainingRecipe, *, max_positions: int | None = None, distributed: bool = False) -> None:
    """Raises RecipeError, naming each field, for a recipe that cannot run. Call it on a resolved recipe, before any
    weights are loaded."""
    problems = recipe_problems(recipe, max_positions=max_positions, distributed=distributed)
    if problems:
        raise RecipeError("; ".join(problems))


def recipe_problems(
    recipe: T.TrainingRecipe, *, max_positions: int | None = None, distributed: bool = False
) -> list[str]:
    """Every reason, naming its field, why a recipe (with defaults filled: `with_defaults` or `resolve_recipe`)
    cannot run; the pipeline's config check asks this of each stage before anything runs."""
    problems: list[str] = []
    s = recipe.schedule
    if recipe.method == T.TRAINING_METHOD_UNSPECIFIED:
        problems.append("recipe.method: unset")
    if s.learning_rate <= 0:
        problems.append(f"recipe.schedule.learning_rate: must be > 0, got {s.learning_rate}")
    if s.lr_scheduler not in LR_SCHEDULERS:
        problems.append(f"recipe.schedule.lr_scheduler: {s.lr_scheduler!r} is not one of {sorted(LR_SCHEDULERS)}")
    if not 0 <= s.warmup_ratio < 1:
        problems.append(f"recipe.schedule.warmup_ratio: must be in [0, 1), got {s.warmup_ratio}")
    if s.max_steps == 0 and s.epochs <= 0:
        problems.append("recipe.schedule: set max_steps or epochs > 0")
    if s.per_device_batch_size == 0:
        problems.append("recipe.schedule.per_device_batch_size: must be > 0")
    if recipe.max_length < 8:
        problems.append(f"recipe.max_length: must be >= 8, got {recipe.max_length}")
    if max_positions is not None and recipe.max_length > max_positions:
        problems.append(
            f"recipe.max_length: {recipe.max_length} is beyond the model's {max_positions} positions "
            f"(max_position_embeddings); set it to at most {max_positions} (left out, it is {DEFAULTS.max_length})"
        )
    if recipe.optimizer not in OPTIMIZERS:
        problems.append(f"recipe.optimizer: unsupported value {recipe.optimizer}")
    if recipe.method in (T.TRAINING_METHOD_LORA, T.TRAINING_METHOD_QLORA):
        if not 0 <= recipe.lora.dropout < 1:
            problems.append(f"recipe.lora.dropout: must be in [0, 1), got {recipe.lora.dropout}")
    z = recipe.zero
    if z.stage > 3:
        problems.append(f"recipe.zero.stage: must be 0-3, got {z.stage}")
    if z.offload_parameters and z.stage != 3:
        problems.append("recipe.zero.offload_parameters: needs zero.stage 3")
    if (z.offload_optimizer or z.offload_parameters) and z.stage == 0:
        problems.append("recipe.zero.offload_optimizer: needs zero.stage >= 1")
    if z.stage == 3 and recipe.method == T.TRAINING_METHOD_QLORA:
        problems.append("recipe.zero.stage: ZeRO-3 cannot partition bitsandbytes 4-bit weights; use stage 0-2")
    if z.stage > 0 and recipe.optimizer != T.OPTIMIZER_ADAMW:
        problems.append("recipe.optimizer: ZeRO brings its own optimizer; use OPTIMIZER_ADAMW with zero.stage > 0")
    if z.stage > 0 and not distributed and "LOCAL_RANK" not in os.environ:
        problems.append(
            f"recipe.zero.stage: ZeRO-{z.stage} needs a launcher (torchrun, deepspeed or a Flyte Elastic task); "
            "none is set up (LOCAL_RANK is unset)"
        )
    return problems


def uses_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


def training_arguments(recipe: T.TrainingRecipe, output_dir: Path, *, report_to: str = "tensorboard") -> dict[str, Any]:
    """Keyword arguments for transformers TrainingArguments (and trl's configs, which extend it). Logs go to
    TensorBoard under `output_dir`/runs/ (one folder per attempt); the saved model folder gets a copy."""
    s = recipe.schedule
    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir),
        learning_rate=s.learning_rate,
        lr_scheduler_type=s.lr_scheduler,
        # transformers 5 reads a float below 1 as a fraction of the total steps.
        warmup_steps=s.warmup_ratio,
        weight_decay=s.weight_decay,
        per_device_train_batch_size=s.per_device_batch_size,
        per_device_eval_batch_size=s.per_device_batch_size,
        gradient_accumulation_steps=s.gradient_accumulation_steps,
        max_grad_norm=s.max_grad_norm,
        num_train_epochs=s.epochs if s.max_steps == 0 else 1.0,
        max_steps=s.max_steps if s.max_steps > 0 else -1,
        seed=int(recipe.seed),
        data_seed=int(recipe.seed),
        optim=OPTIMIZERS[recipe.optimizer],
        bf16=recipe.precision == T.PRECISION_BF16,
        use_cpu=uses_cpu(),
        logging_steps=1,
        logging_first_step=True,
        report_to=report_to,
        save_strategy="steps" if recipe.checkpoint.save_steps else "no",
        save_steps=recipe.checkpoint.save_steps or 500,
        save_total_limit=recipe.checkpoint.save_total_limit or None,
        eval_strategy="steps" if recipe.eval.eval_steps else "no",
        eval_steps=recipe.eval.eval_steps or None,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=False,
        ddp_find_unused_parameters=False,
        activation_checkpointing=False,
        include_num_input_tokens_seen="non_padding",
    )
    ds = deepspeed_config(recipe)
    if ds is not None:
        kwargs["deepspeed"] = ds
    return kwargs


def deepspeed_config(recipe: T.TrainingRecipe) -> dict[str, Any] | None:
    """The deepspeed config the recipe implies ("auto" values are filled in by the HF integration)."""
    z = recipe.zero
    if z.stage == 0:
        return None
    zero: dict[str, Any] = {"stage": z.stage, "overlap_comm": False, "contiguous_gradients": True}
    if z.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": False}
    if z.offload_parameters:
        zero["offload_param"] = {"device": "cpu", "pin_memory": False}
    if z.stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "zero_optimization": zero,
        "optimizer": {
            "type": "AdamW",
            "params": {"lr": "auto", "weight_decay": "auto", "betas": "auto", "eps": "auto"},
        },
        "zero_allow_untested_optimizer": True,
        "wall_clock_breakdown": False,
    }


def quantization_config(recipe: T.TrainingRecipe) -> Any:
    """bitsandbytes NF4 config for QLoRA, else None."""
    if recipe.method != T.TRAINING_METHOD_QLORA:
        return None
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16 if recipe.precision == T.PRECISION_BF16 else torch.float32,
    )


def lora_config(recipe: T.TrainingRecipe, model_config: Any, task_type: str = "CAUSAL_LM") -> Any:
    from peft import LoraConfig

    from llmft.core.models import default_lora_targets

    targets = list(recipe.lora.target_modules) or default_lora_targets(model_config)
    return LoraConfig(
        r=recipe.lora.rank,
        lora_alpha=recipe.lora.alpha,
        lora_dropout=recipe.lora.dropout,
        target_modules=targets,
        bias="none",
        task_type=task_type,
    )


def check_lora_targets(model: Any, targets: list[str]) -> None:
    """peft fails late and vaguely on targets the model lacks, or that bitsandbytes replaced: check them first."""
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in targets if t not in names]
    if missing:
        raise RecipeError(
            f"recipe.lora.target_modules: {missing} are not modules of this {model.config.model_type} model "
            f"(it has e.g. {sorted(n for n in names if n)[:12]})"
        )
    import torch

    linear_like = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) or module.__class__.__name__ in {"Linear4bit", "Linear8bitLt", "Conv1D"}
    }
    not_linear = [t for t in targets if t not in linear_like]
    if not_linear:
        raise RecipeError(
            f"recipe.lora.target_modules: {not_linear} are not linear layers; LoRA and QLoRA adapt linear layers only"
        )


class CastOutsideAutocast:
    """peft casts a LoRA layer's input to the adapter's dtype (fp32) before the adapter's matmuls, so under bf16
    autocast every adapted projection copies its activations to fp32 and back, and its adapter runs in fp32: about a
    sixth of a 135M model's LoRA step on a CPU (bench/README.md). As a LoRA layer's `cast_input_dtype_enabled`
    (peft's switch for it), this is false while autocast runs, which then computes the adapter in the autocast dtype
    from fp32 weights, as it does any nn.Linear, and true outside autocast (generation, evaluation by hand), where the
    dtypes must match."""

    def __bool__(self) -> bool:
        import torch

        return not any(torch.is_autocast_enabled(device) for device in ("cpu", "cuda"))


def base_dtype(recipe: T.TrainingRecipe) -> Any:
    """The dtype the base weights load in: bf16 for LoRA trained in bf16 (frozen weights that autocast would cast to
    bf16 at every matmul anyway; save_model merges into the fp32 base), fp32 otherwise (full training keeps fp32
    master weights; QLoRA's base is 4-bit)."""
    import torch

    if recipe.method == T.TRAINING_METHOD_LORA and recipe.precision == T.PRECISION_BF16:
        return torch.bfloat16
    return torch.float32


def load_model_for_training(model_dir: Path, recipe: T.TrainingRecipe, model_class: Any = None, **kwargs: Any) -> Any:
    """Loads the base with the recipe's quantisation and wraps it with LoRA when asked. Returns the trainable model."""
    from transformers import AutoModelForCausalLM, set_seed

    model_class = model_class or AutoModelForCausalLM
    if uses_cpu():
        keep_freed_memory()
    quant = quantization_config(recipe)
    # Weights the checkpoint lacks (a reward model's score head) and LoRA's A matrices are drawn here, before the
    # Trainer seeds anything: seeded by the recipe, so the same request trains the same model.
    set_seed(int(recipe.seed))
    model = model_class.from_pretrained(
        model_dir,
        dtype=base_dtype(recipe),
        quantization_config=quant,
        attn_implementation="sdpa",
        **kwargs,
    )
    if recipe.method == T.TRAINING_METHOD_FULL:
        return model
    from peft import get_peft_model, prepare_model_for_kbit_training

    task_type = (
        "SEQ_CLS"
        if getattr(model.config, "num_labels", 0) == 1 and "SequenceClassification" in type(model).__name__
        else "CAUSAL_LM"
    )
    config = lora_config(recipe, model.config, task_type=task_type)
    check_lora_targets(model, list(config.target_modules))
    if quant is not None:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model = get_peft_model(model, config)
    if recipe.precision == T.PRECISION_BF16:
        from peft.tuners.tuners_utils import BaseTunerLayer

        for module in model.modules():
            if isinstance(module, BaseTunerLayer):
                module.cast_input_dtype_enabled = CastOutsideAutocast()
    return model
