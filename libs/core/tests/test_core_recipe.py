from pathlib import Path

import pytest

from llmft.core import recipe as R
from llmft.core.cli import load_training_request
from llmft.core.models import resolve_model_dir
from llmft.proto.training.v1 import training_pb2 as T


def resolved(**fields: object) -> T.TrainingRecipe:
    return R.resolve_recipe(T.TrainingRecipe(**fields))  # type: ignore[arg-type]


def test_unset_fields_take_the_defaults_and_set_fields_stay() -> None:
    recipe = resolved(max_length=128, schedule=T.Schedule(learning_rate=1e-3))
    assert recipe.max_length == 128
    assert recipe.schedule.learning_rate == 1e-3
    assert recipe.schedule.per_device_batch_size == R.DEFAULTS.schedule.per_device_batch_size
    assert recipe.method == T.TRAINING_METHOD_FULL
    assert recipe.optimizer == T.OPTIMIZER_ADAMW


def test_a_recipe_file_loads_with_field_names_and_enum_names(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        "method: TRAINING_METHOD_LORA\nlora: {rank: 4, alpha: 8}\nprecision: PRECISION_BF16\n"
        "schedule: {max_steps: 5}\n"
    )
    recipe = R.resolve_recipe(load_training_request(path).recipe)
    assert recipe.method == T.TRAINING_METHOD_LORA
    assert recipe.lora.rank == 4
    assert recipe.packing is True
    path.write_text("method: TRAINING_METHOD_LORA\nlora: {rnak: 4}\n")
    with pytest.raises(R.RecipeError, match="rnak"):
        load_training_request(path)


@pytest.mark.parametrize(
    ("yaml_text", "field", "default"),
    [
        ("lora: {rank: 0}", "recipe.lora.rank", "the default 8"),
        ("max_length: 0", "recipe.max_length", "the default 1024"),
        ("schedule: {per_device_batch_size: 0}", "recipe.schedule.per_device_batch_size", "the default 8"),
        ("schedule: {max_steps: 0}", "recipe.schedule.max_steps", "training for schedule.epochs"),
        ("schedule: {epochs: 0.0}", "recipe.schedule.epochs", "the default 1"),
        ("schedule: {learning_rate: 0}", "recipe.schedule.learning_rate", "the default 0.0005"),
        ("schedule: {gradientAccumulationSteps: 0}", "recipe.schedule.gradient_accumulation_steps", "the default 1"),
        ("schedule: {max_grad_norm: 0}", "recipe.schedule.max_grad_norm", "the default 1"),
        ("checkpoint: {save_total_limit: 0}", "recipe.checkpoint.save_total_limit", "the default 2"),
    ],
)
def test_an_explicit_zero_in_a_recipe_file_is_an_error_naming_the_field(
    tmp_path: Path, yaml_text: str, field: str, default: str
) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(f"recipe: {{{yaml_text}}}\n")
    with pytest.raises(
        R.RecipeError, match=rf"r.yaml: {field}: an explicit 0 is not allowed: it would silently mean {default};"
    ):
        load_training_request(path)
    # The same field left out takes its default; a recipe-only file is checked the same way.
    path.write_text(f"{yaml_text}\n")
    with pytest.raises(R.RecipeError, match=field):
        load_training_request(path)


def test_zeros_that_mean_what_they_say_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        "recipe: {seed: 0, schedule: {warmup_ratio: 0, weight_decay: 0}, lora: {dropout: 0},"
        " checkpoint: {save_steps: 0}, eval: {eval_steps: 0, max_eval_samples: 0}}\n"
    )
    recipe = R.resolve_recipe(load_training_request(path).recipe)
    assert (recipe.schedule.warmup_ratio, recipe.checkpoint.save_steps, recipe.eval.max_eval_samples) == (0, 0, 0)


def test_every_nested_recipe_of_a_request_is_checked() -> None:
    from llmft.proto.pipeline.v1 import pipeline_pb2 as P

    data = {"sft": {"recipe": {"max_length": 0}}, "dpo": {"recipe": {"lora": {"rank": "0"}}}}
    assert [p.split(":")[0] for p in R.explicit_zero_problems(data, P.PipelineRequest.DESCRIPTOR)] == [
        "sft.recipe.max_length",
        "dpo.recipe.lora.rank",
    ]


def test_explicit_zeros_of_the_rlhf_settings_are_refused_wherever_they_sit() -> None:
    """kl_coef 0 and temperature 0 would silently become trl's 0.05 and the stage's 0.7; a 0 that means 0 (no
    missing-EOS penalty, every held-out prompt) stays allowed."""
    from llmft.proto.pipeline.v1 import pipeline_pb2 as P
    from llmft.proto.rlhf.v1 import rlhf_pb2

    data = {
        "ppo": {"ppo": {"klCoef": 0, "temperature": 0.0, "missing_eos_penalty": 0, "eval_prompts": 0}},
        "dpo": {"dpo": {"beta": "0", "sft_weight": 0}},
        "evaluation": {"policies": {"temperature": 0, "prompts": 0, "seed": 0}},
    }
    problems = R.explicit_zero_problems(data, P.PipelineRequest.DESCRIPTOR)
    assert sorted(p.split(":")[0] for p in problems) == [
        "dpo.dpo.beta",
        "evaluation.policies.temperature",
        "ppo.ppo.kl_coef",
        "ppo.ppo.temperature",
    ]
    assert "tiny coefficient such as 1e-9" in problems[[p.split(":")[0] for p in problems].index("ppo.ppo.kl_coef")]
    standalone = R.explicit_zero_problems({"ppo": {"kl_coef": 0.0}}, rlhf_pb2.PpoRequest.DESCRIPTOR)
    assert [p.split(":")[0] for p in standalone] == ["ppo.kl_coef"]
    assert R.explicit_zero_problems({"ppo": {"kl_coef": 0.01, "temperature": 1}}, rlhf_pb2.PpoRequest.DESCRIPTOR) == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_length": 4096}, "recipe.max_length: 4096 is beyond the model's 1024 positions"),
        ({"zero": T.ZeroConfig(stage=2, offload_parameters=True)}, "recipe.zero.offload_parameters"),
        ({"zero": T.ZeroConfig(stage=3, offload_parameters=True)}, "needs a launcher"),
        ({"schedule": T.Schedule(lr_scheduler="exotic")}, "recipe.schedule.lr_scheduler"),
        ({"zero": T.ZeroConfig(stage=2), "optimizer": T.OPTIMIZER_ADAMW_8BIT}, "recipe.optimizer"),
    ],
)
def test_bad_recipes_fail_naming_the_field(fields: dict, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    with pytest.raises(R.RecipeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        R.validate_recipe(resolved(**fields), max_positions=1024)


def test_the_default_length_tells_a_shorter_model_what_to_set() -> None:
    assert resolved().max_length == 1024
    R.validate_recipe(resolved(), max_positions=1024)
    with pytest.raises(R.RecipeError, match=r"recipe.max_length: 1024 is beyond the model's 512 .*at most 512"):
        R.validate_recipe(resolved(), max_positions=512)
    R.validate_recipe(resolved(max_length=512), max_positions=512)


def test_training_arguments_follow_the_recipe(tmp_path: Path) -> None:
    recipe = resolved(
        precision=T.PRECISION_BF16,
        optimizer=T.OPTIMIZER_PAGED_ADAMW_8BIT,
        schedule=T.Schedule(max_steps=7, per_device_batch_size=3, gradient_accumulation_steps=2),
        checkpoint=T.CheckpointConfig(save_steps=5),
    )
    args = R.training_arguments(recipe, tmp_path)
    assert args["bf16"] is True
    assert args["optim"] == "paged_adamw_8bit"
    assert args["max_steps"] == 7
    assert args["per_device_train_batch_size"] == 3
    assert args["gradient_accumulation_steps"] == 2
    assert args["save_strategy"] == "steps" and args["save_steps"] == 5
    assert "deepspeed" not in args


def test_deepspeed_config_is_generated_from_zero_settings() -> None:
    config = R.deepspeed_config(resolved(zero=T.ZeroConfig(stage=3, offload_optimizer=True, offload_parameters=True)))
    assert config is not None
    zero = config["zero_optimization"]
    assert zero["stage"] == 3
    assert zero["offload_optimizer"]["device"] == "cpu"
    assert zero["offload_param"]["device"] == "cpu"
    assert R.deepspeed_config(resolved()) is None


def test_lora_on_modules_the_model_lacks_fails_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMFT_CACHE", str(tmp_path))
    model_dir = resolve_model_dir("llmft/tiny-llama").directory
    bad = resolved(method=T.TRAINING_METHOD_LORA, lora=T.LoraConfig(rank=4, target_modules=["query_key_value"]))
    with pytest.raises(R.RecipeError, match="query_key_value"):
        R.load_model_for_training(model_dir, bad)
    not_linear = resolved(method=T.TRAINING_METHOD_LORA, lora=T.LoraConfig(rank=4, target_modules=["input_layernorm"]))
    with pytest.raises(R.RecipeError, match="not linear layers"):
        R.load_model_for_training(model_dir, not_linear)
    good = resolved(method=T.TRAINING_METHOD_LORA, lora=T.LoraConfig(rank=4))
    model = R.load_model_for_training(model_dir, good)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert 0 < trainable < sum(p.numel() for p in model.parameters()) / 5


def test_bf16_lora_keeps_a_bf16_base_computes_adapters_in_bf16_and_saves_the_merge_in_fp32(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from safetensors.torch import load_file

    from llmft.core.models import load_tokenizer
    from llmft.core.training import save_model

    monkeypatch.setenv("LLMFT_CACHE", str(tmp_path / "cache"))
    model_dir = resolve_model_dir("llmft/tiny-llama").directory
    recipe = resolved(
        method=T.TRAINING_METHOD_LORA, lora=T.LoraConfig(rank=4, alpha=8, merge=True), precision=T.PRECISION_BF16
    )
    model = R.load_model_for_training(model_dir, recipe)
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    assert frozen == {torch.bfloat16} and {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    layer = model.get_base_model().model.layers[0].self_attn.q_proj
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not layer.cast_input_dtype_enabled  # autocast computes the adapter in bf16: no fp32 copy of x
    assert layer.cast_input_dtype_enabled  # outside autocast the input is cast to the adapter's fp32
    ids = torch.tensor([[5, 100, 200, 7]])
    with torch.no_grad():
        model(input_ids=ids)  # outside autocast: the dtypes still meet
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(input_ids=ids)
    for module in model.modules():  # a trained adapter
        if hasattr(module, "lora_B") and "default" in module.lora_B:
            torch.nn.init.normal_(module.lora_B["default"].weight, std=0.02)
    delta = (layer.lora_B["default"].weight @ layer.lora_A["default"].weight) * layer.scaling["default"]
    save_model(model, load_tokenizer(model_dir), recipe, tmp_path / "out")
    saved = load_file(str(tmp_path / "out" / "model.safetensors"))
    base = load_file(str(model_dir / "model.safetensors"))
    name = "model.layers.0.self_attn.q_proj.weight"
    assert saved[name].dtype == torch.float32
    # The fp32 base plus the adapter, not the bf16-rounded base plus the adapter.
    assert torch.allclose(saved[name], base[name] + delta.detach(), atol=1e-6)
    assert not torch.allclose(saved[name], base[name].bfloat16().float() + delta.detach(), atol=1e-6)


def test_a_qlora_adapter_merges_into_the_full_precision_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from safetensors.torch import load_file

    from llmft.core.models import load_tokenizer
    from llmft.core.training import save_model

    monkeypatch.setenv("LLMFT_CACHE", str(tmp_path / "cache"))
    model_dir = resolve_model_dir("llmft/tiny-llama").directory
    recipe = resolved(
        method=T.TRAINING_METHOD_QLORA, lora=T.LoraConfig(rank=4, alpha=8, merge=True), precision=T.PRECISION_FP32
    )
    R.validate_recipe(recipe)
    model = R.load_model_for_training(model_dir, recipe)
    layer = model.get_base_model().model.layers[1].mlp.up_proj
    assert type(layer.base_layer).__name__ == "Linear4bit"
    torch.nn.init.normal_(layer.lora_B["default"].weight, std=0.02)
    delta = (layer.lora_B["default"].weight @ layer.lora_A["default"].weight) * layer.scaling["default"]
    save_model(model, load_tokenizer(model_dir), recipe, tmp_path / "out")
    assert not (tmp_path / "out" / "adapter_config.json").exists()
    saved = load_file(str(tmp_path / "out" / "model.safetensors"))
    base = load_file(str(model_dir / "model.safetensors"))
    name = "model.layers.1.mlp.up_proj.weight"
    assert saved[name].dtype == torch.float32
    assert torch.allclose(saved[name], base[name] + delta.detach(), atol=1e-6)  # the fp32 base, not its NF4 rounding
