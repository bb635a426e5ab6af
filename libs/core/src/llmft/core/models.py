"""Loading base models and tokenizers. Anywhere a base model is named, a built-in preset, a packaged real model
(`smollm2-135m-instruct`), a local GGUF file, a local Hugging Face directory or a Hub id work the same way:
`resolve_model_dir` turns the name into a local directory (materialising a preset, converting a GGUF file once into the
cache, or downloading a Hub snapshot), and everything after that reads the directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmft.core import gguf_models, presets
from llmft.core.fingerprint import fingerprint_directory

# Files that make up a tokenizer (chat template included); their content is the tokenizer's fingerprint.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
)

# LoRA targets per architecture family: attention and MLP projections.
LORA_TARGETS: dict[str, list[str]] = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
}


class ModelNotFoundError(ValueError):
    """The named base model is neither a preset, a local model directory or GGUF file, nor reachable on the Hub."""


def known_names() -> list[str]:
    """The base models that need no path or Hub id: the random-init presets and the packaged real models."""
    return sorted([*presets.PRESETS, *gguf_models.PACKAGED])


@dataclass(frozen=True)
class ResolvedModel:
    """A base model as a local directory, with the name it was asked for."""

    name: str
    directory: Path


def looks_local(name_or_path: str) -> bool:
    """A name that can only be a path on this machine (resolve_model_dir never asks the Hub for it)."""
    return (
        name_or_path.startswith((".", "/", "~"))
        or name_or_path.count("/") > 1
        or gguf_models.is_gguf_path(name_or_path)
    )


def model_name_problem(name_or_path: str) -> str:
    """Why `name_or_path` can name no model anywhere, or "": a name that is not a preset, a packaged model or a local
    path must be a Hub repo id, by huggingface_hub's own validator (checked without asking the Hub)."""
    if not name_or_path or presets.is_preset(name_or_path) or gguf_models.is_packaged(name_or_path):
        return ""
    if looks_local(name_or_path) or Path(name_or_path).expanduser().exists():
        return ""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name_or_path)
    except HFValidationError as error:
        return (
            f"{name_or_path!r} is neither a built-in model ({', '.join(known_names())}), a local path, nor a Hub repo "
            f"id: {error}"
        )
    return ""


def missing_model_problem(name_or_path: str) -> str:
    """Why `name_or_path` names no model on this machine, or "": a local path (a folder or a GGUF file) that is not
    there. Presets, packaged models and Hub ids are resolved when the run needs them (a packaged model is fetched from
    the package index)."""
    if not name_or_path or presets.is_preset(name_or_path) or gguf_models.is_packaged(name_or_path):
        return ""
    if looks_local(name_or_path) and not Path(name_or_path).expanduser().exists():
        return f"{name_or_path!r} does not exist on this machine"
    return ""


def resolve_model_dir(name_or_path: str, revision: str = "") -> ResolvedModel:
    if not name_or_path:
        raise ModelNotFoundError("base_model: empty; give a preset name, a local directory or a Hub id")
    if presets.is_preset(name_or_path):
        return ResolvedModel(name_or_path, presets.materialize_preset(name_or_path))
    local = Path(name_or_path).expanduser()
    if gguf_models.is_packaged(name_or_path) or gguf_models.is_gguf_path(name_or_path):
        try:
            if gguf_models.is_packaged(name_or_path):
                return ResolvedModel(name_or_path, gguf_models.materialize_packaged(name_or_path))
            return ResolvedModel(name_or_path, gguf_models.convert_gguf(local))
        except gguf_models.GGUFError as error:
            raise ModelNotFoundError(f"base_model: {error}") from error
    if local.exists():
        if not (local / "config.json").is_file() and not (local / "adapter_config.json").is_file():
            raise ModelNotFoundError(f"base_model: {local} has neither config.json nor adapter_config.json")
        return ResolvedModel(name_or_path, local.resolve())
    if looks_local(name_or_path):
        raise ModelNotFoundError(f"base_model: local path {name_or_path} does not exist")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        snapshot = snapshot_download(repo_id=name_or_path, revision=revision or None)
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as error:
        raise ModelNotFoundError(
            f"base_model: {name_or_path!r} is not a built-in model ({', '.join(known_names())}), "
            f"not a local directory or GGUF file, and could not be fetched from the Hub: {error}"
        ) from error
    return ResolvedModel(name_or_path, Path(snapshot))


def resolve_tokenizer_dir(name_or_path: str, field: str = "tokenizer") -> Path:
    """A tokenizer as a local directory: a folder holding tokenizer files alone, or any model a base_model may name."""
    local = Path(name_or_path).expanduser()
    if local.is_dir() and any((local / name).is_file() for name in TOKENIZER_FILES):
        return local.resolve()
    try:
        return resolve_model_dir(name_or_path).directory
    except ModelNotFoundError as error:
        raise ModelNotFoundError(str(error).replace("base_model:", f"{field}:", 1)) from error


def load_tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_frozen_model(model_dir: Path, auto_class: Any = None) -> Any:
    """A model folder as full fp32 weights in eval mode, for inference and scoring. A peft adapter folder has its base
    loaded and the adapter merged in. `auto_class` defaults to AutoModelForCausalLM."""
    import torch

    from llmft.core.allocator import keep_freed_memory

    if not torch.cuda.is_available():
        keep_freed_memory()  # generation's per-step tensors reuse freed memory instead of faulting in fresh pages
    if auto_class is None:
        from transformers import AutoModelForCausalLM

        auto_class = AutoModelForCausalLM
    model_dir = Path(model_dir)
    if (model_dir / "adapter_config.json").is_file() and not (model_dir / "config.json").is_file():
        import peft

        peft_class = {
            "AutoModelForCausalLM": peft.AutoPeftModelForCausalLM,
            "AutoModelForSequenceClassification": peft.AutoPeftModelForSequenceClassification,
        }[auto_class.__name__]
        model = peft_class.from_pretrained(model_dir, dtype=torch.float32).merge_and_unload()
    else:
        model = auto_class.from_pretrained(model_dir, dtype=torch.float32)
    return model.eval()


def tokenizer_fingerprint(model_dir: Path) -> str:
    present = [name for name in TOKENIZER_FILES if (Path(model_dir) / name).is_file()]
    if not present:
        raise FileNotFoundError(f"{model_dir} holds no tokenizer files ({', '.join(TOKENIZER_FILES)})")
    return fingerprint_directory(Path(model_dir), include=present)


def weights_fingerprint(model_dir: Path) -> str:
    """Fingerprint of the model's config and weights (not the tokenizer); for a folder converted from a GGUF file,
    also of that file's bytes (its sha256, in llmft_source.json)."""
    model_dir = Path(model_dir)
    described = {"config.json", "adapter_config.json", gguf_models.SOURCE_FILE}
    names = [
        p.relative_to(model_dir).as_posix()
        for p in model_dir.iterdir()
        if p.is_file() and (p.suffix in {".safetensors", ".bin"} or p.name in described)
    ]
    return fingerprint_directory(model_dir, include=names)


def model_family(config: Any) -> str:
    return str(getattr(config, "model_type", "unknown"))


def default_lora_targets(config: Any) -> list[str]:
    family = model_family(config)
    if family not in LORA_TARGETS:
        raise ValueError(
            f"lora.target_modules: no default for model family {family!r}; name the modules to adapt "
            f"(known families: {', '.join(sorted(LORA_TARGETS))})"
        )
    return list(LORA_TARGETS[family])
