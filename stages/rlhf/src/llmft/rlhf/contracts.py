"""Contracts between the models of a preference-learning run, checked from their folders before any weights load:
the policy is a causal language model, the reward model a sequence classifier with one output, and the policy, its
reference and the reward model share one tokenizer (vocabulary, special tokens and chat template), and by default one
model family. A reward model that reads other token ids scores nonsense and training goes on regardless (trl #1674,
#1979), so a mismatch is an error that lists every difference. Two families that happen to share a tokenizer are still
refused unless the request allows it (`allow_mixed_families`): the tokenizer check then still applies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmft.core.files import load_json

SPECIAL_TOKENS = ("bos_token", "eos_token", "pad_token", "unk_token")


class ContractError(ValueError):
    """Models that cannot work together; the message names the folders and every difference."""


def _config(model_dir: Path) -> dict[str, Any]:
    """config.json of a model folder, or for a peft adapter folder, its base's config with the adapter's task."""
    model_dir = Path(model_dir)
    config_file = model_dir / "config.json"
    if config_file.is_file():
        return dict(load_json(config_file))
    adapter_file = model_dir / "adapter_config.json"
    if adapter_file.is_file():
        adapter = load_json(adapter_file)
        base = Path(str(adapter.get("base_model_name_or_path", "")))
        config = _config(base) if (base / "config.json").is_file() else {}
        config["peft_task_type"] = adapter.get("task_type", "")
        return config
    raise ContractError(f"{model_dir}: neither config.json nor adapter_config.json; not a model folder")


def check_causal_lm(model_dir: Path, role: str) -> None:
    """The folder holds a causal language model (an architecture ending in ForCausalLM, or a CAUSAL_LM adapter)."""
    config = _config(model_dir)
    architectures = list(config.get("architectures") or [])
    if config.get("peft_task_type") == "CAUSAL_LM" or any(a.endswith("ForCausalLM") for a in architectures):
        return
    raise ContractError(
        f"{role} {model_dir}: is {architectures or 'an unknown architecture'}, not a causal language model "
        "(an architecture ending in ForCausalLM); give the SFT model folder"
    )


def check_reward_model(model_dir: Path, role: str = "reward model") -> None:
    """The folder holds a sequence classifier with exactly one output: a scalar reward."""
    config = _config(model_dir)
    architectures = list(config.get("architectures") or [])
    if not (
        config.get("peft_task_type") == "SEQ_CLS" or any(a.endswith("ForSequenceClassification") for a in architectures)
    ):
        raise ContractError(
            f"{role} {model_dir}: is {architectures or 'an unknown architecture'}, not a sequence classifier "
            "(an architecture ending in ForSequenceClassification); give the folder `llmft rlhf reward` wrote"
        )
    labels = len(config.get("id2label") or {}) or int(config.get("num_labels", 0) or 0)
    if labels != 1:
        raise ContractError(f"{role} {model_dir}: has {labels} outputs; a reward model has exactly one (num_labels=1)")


def model_family(model_dir: Path) -> str:
    """The folder's model_type ("llama", "gpt_neox", ...), or its adapter's base's; "" when its config names none."""
    return str(_config(model_dir).get("model_type") or "")


def check_same_family(policy_dir: Path, reward_dir: Path, allow_mixed: bool, role: str = "policy") -> None:
    """The policy and the reward model are one family (model_type), unless `allow_mixed`."""
    policy_family, reward_family = model_family(policy_dir), model_family(reward_dir)
    if policy_family == reward_family or allow_mixed:
        return
    raise ContractError(
        f"the {role} ({policy_dir}) is a {policy_family or 'model of no named family'} and the reward model "
        f"({reward_dir}) a {reward_family or 'model of no named family'}: a reward model of another family was not "
        "trained on the policy's answers as its own base reads them. Train the reward model from the policy's base "
        "(llmft rlhf reward --base-model-dir <the SFT model>), or set allow_mixed_families: true in the request "
        "(--allow-mixed-families) to pair them anyway; their tokenizers must still be one"
    )


def tokenizer_differences(first: Any, second: Any) -> list[str]:
    """What differs between two tokenizers that must agree token for token: vocabulary, special tokens, chat
    template. Empty when they agree."""
    differences = []
    vocab_a, vocab_b = first.get_vocab(), second.get_vocab()
    if vocab_a != vocab_b:
        only_a = sorted(set(vocab_a) - set(vocab_b))
        only_b = sorted(set(vocab_b) - set(vocab_a))
        moved = sorted(t for t in set(vocab_a) & set(vocab_b) if vocab_a[t] != vocab_b[t])
        detail = [f"sizes {len(vocab_a)} and {len(vocab_b)}"]
        if only_a:
            detail.append(f"{len(only_a)} tokens only in the first (e.g. {only_a[:5]})")
        if only_b:
            detail.append(f"{len(only_b)} tokens only in the second (e.g. {only_b[:5]})")
        if moved:
            detail.append(f"{len(moved)} tokens with other ids (e.g. {moved[:5]})")
        differences.append("vocabulary: " + "; ".join(detail))
    for name in SPECIAL_TOKENS:
        token_a, token_b = getattr(first, name, None), getattr(second, name, None)
        id_a, id_b = getattr(first, f"{name}_id", None), getattr(second, f"{name}_id", None)
        if (token_a, id_a) != (token_b, id_b):
            differences.append(f"{name}: {token_a!r} (id {id_a}) and {token_b!r} (id {id_b})")
    extra_a = sorted(map(str, getattr(first, "additional_special_tokens", None) or []))
    extra_b = sorted(map(str, getattr(second, "additional_special_tokens", None) or []))
    if extra_a != extra_b:
        differences.append(f"additional special tokens: {extra_a} and {extra_b}")
    template_a, template_b = first.chat_template or "", second.chat_template or ""
    if template_a != template_b:
        if not template_a or not template_b:
            differences.append("chat template: only one of them has one")
        else:
            at = next(
                (i for i, (a, b) in enumerate(zip(template_a, template_b, strict=False)) if a != b),
                min(map(len, (template_a, template_b))),
            )
            first_part, second_part = template_a[at : at + 30], template_b[at : at + 30]
            differences.append(f"chat template: differs from character {at} ({first_part!r} and {second_part!r})")
    return differences


def check_shared_tokenizer(tokenizers: dict[str, tuple[Path, Any]]) -> None:
    """Every tokenizer agrees with the first one's (the policy's). `tokenizers` maps a role to its folder and
    tokenizer. Raises ContractError listing every difference of every disagreeing model."""
    items = list(tokenizers.items())
    (first_role, (first_dir, first)), rest = items[0], items[1:]
    problems = []
    for role, (folder, tokenizer) in rest:
        differences = tokenizer_differences(first, tokenizer)
        if differences:
            problems.append(
                f"the {role} ({folder}) and the {first_role} ({first_dir}) have different tokenizers:\n  - "
                + "\n  - ".join(differences)
            )
    if problems:
        raise ContractError(
            "\n".join(problems) + "\nThey must share one tokenizer: train the reward model from the policy's base "
            "(llmft rlhf reward --base-model-dir <the SFT model>)"
        )
