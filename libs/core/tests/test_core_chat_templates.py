"""The shipped chat templates on tokenizers in each family's real format (llmft.testing_tokenizers): each renders the
family's own format, its assistant-token mask covers exactly the answers and their end-of-turn token, serving's
generation prompt is a token prefix of the trained conversation, and choosing or supplying a template fails clearly."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from llmft.core import precision
from llmft.core.chat_templates import MARKERS, REQUIRED, ChatTemplateError, apply_chat_template
from llmft.proto.training.v1 import training_pb2 as T
from llmft.testing_tokenizers import FAMILIES, HUB_TEMPLATES, write_family_tokenizer

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris is the capital of France."},
    {"role": "user", "content": "And 1 plus 2?"},
    {"role": "assistant", "content": "1 plus 2 is 3."},
]

RENDERED = {
    "chatml": "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
    "<|im_start|>assistant\nParis is the capital of France.<|im_end|>\n<|im_start|>user\nAnd 1 plus 2?<|im_end|>\n"
    "<|im_start|>assistant\n1 plus 2 is 3.<|im_end|>\n",
    "llama-2": "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nWhat is the capital of France? [/INST] Paris is the capital "
    "of France. </s><s>[INST] And 1 plus 2? [/INST] 1 plus 2 is 3. </s>",
    "llama-3": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>"
    "user<|end_header_id|>\n\nWhat is the capital of France?<|eot_id|><|start_header_id|>assistant<|end_header_id|>"
    "\n\nParis is the capital of France.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnd 1 plus 2?"
    "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n1 plus 2 is 3.<|eot_id|>",
    "redpajama-incite": "Be brief.\n<human>: What is the capital of France?\n<bot>: Paris is the capital of France."
    "<|endoftext|>\n<human>: And 1 plus 2?\n<bot>: 1 plus 2 is 3.<|endoftext|>\n",
}

# The assistant's tokens, decoded: both answers with their end-of-turn token, nothing of the prompts.
ANSWERS = {
    "chatml": "Paris is the capital of France.<|im_end|>1 plus 2 is 3.<|im_end|>",
    "llama-2": "Paris is the capital of France. </s> 1 plus 2 is 3. </s>",
    "llama-3": "Paris is the capital of France.<|eot_id|>1 plus 2 is 3.<|eot_id|>",
    "redpajama-incite": " Paris is the capital of France.<|endoftext|> 1 plus 2 is 3.<|endoftext|>",
}


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tokenizers")
    return {family: write_family_tokenizer(family, root / family) for family in FAMILIES}


def load(folder: Path) -> Any:
    return AutoTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_renders_its_format_and_masks_exactly_the_answers(family: str, tokenizers: dict) -> None:
    tokenizer = load(tokenizers[family])
    assert apply_chat_template(tokenizer, family, family, field="recipe.chat_template", need=MARKERS) == family
    assert tokenizer.apply_chat_template(CONVERSATION, tokenize=False) == RENDERED[family]

    encoded = tokenizer.apply_chat_template(
        CONVERSATION, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = encoded["input_ids"], encoded["assistant_masks"]
    assert tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if m]) == ANSWERS[family]
    prompts = tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if not m])
    assert "Paris" not in prompts and "is 3" not in prompts and "France?" in prompts

    # What a server sends the model for the last answer is exactly the trained conversation's prefix, token for token.
    prompt = tokenizer.apply_chat_template(
        CONVERSATION[:-1], tokenize=True, add_generation_prompt=True, return_dict=True
    )["input_ids"]
    assert ids[: len(prompt)] == prompt and mask[len(prompt) - 1] == 0 and mask[len(prompt)] == 1


@pytest.mark.parametrize("family", sorted(HUB_TEMPLATES))
def test_the_shipped_template_renders_as_the_hub_template_of_its_family(family: str, tokenizers: dict) -> None:
    tokenizer = load(tokenizers[family])
    hub = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    apply_chat_template(tokenizer, family, family, field="recipe.chat_template", need=MARKERS)
    assert tokenizer.apply_chat_template(CONVERSATION, tokenize=False) == hub


@pytest.mark.parametrize("family", FAMILIES)
def test_a_hub_tokenizer_without_markers_is_refused_with_the_family_to_choose(family: str, tokenizers: dict) -> None:
    tokenizer = load(tokenizers[family])
    reason = "has no chat template" if family not in HUB_TEMPLATES else "no {% generation %} markers"
    with pytest.raises(ChatTemplateError, match="recipe.chat_template") as error:
        apply_chat_template(tokenizer, "", "meta/base", field="recipe.chat_template", need=MARKERS)
    assert reason in str(error.value) and f"look like {family!r}" in str(error.value)


def test_the_tokenizers_own_template_serves_where_markers_are_not_needed(tokenizers: dict) -> None:
    tokenizer = load(tokenizers["llama-3"])
    assert apply_chat_template(tokenizer, "", "m", field="recipe.chat_template", need=REQUIRED) == ""
    assert tokenizer.chat_template == HUB_TEMPLATES["llama-3"]
    with pytest.raises(ChatTemplateError, match="has no chat template"):
        apply_chat_template(load(tokenizers["redpajama-incite"]), "", "m", field="f", need=REQUIRED)


def test_a_family_whose_special_tokens_the_tokenizer_lacks_is_refused(tokenizers: dict) -> None:
    with pytest.raises(ChatTemplateError, match=r"'llama-3' needs the special tokens .*<\|eot_id\|>"):
        apply_chat_template(
            load(tokenizers["redpajama-incite"]), "llama-3", "m", field="recipe.chat_template", need=MARKERS
        )
    with pytest.raises(ChatTemplateError, match=r"'chatml' needs the special tokens \['<\|im_start\|>', '<\|im_end"):
        apply_chat_template(load(tokenizers["llama-2"]), "chatml", "m", field="recipe.chat_template", need=MARKERS)


def test_a_supplied_template_needs_markers_and_must_render(tokenizers: dict) -> None:
    tokenizer = load(tokenizers["redpajama-incite"])
    with pytest.raises(ChatTemplateError, match="neither a shipped template"):
        apply_chat_template(tokenizer, "vicuna", "m", field="recipe.chat_template", need=MARKERS)
    with pytest.raises(ChatTemplateError, match="no {% generation %}"):
        apply_chat_template(tokenizer, "{{ messages[0]['content'] }}", "m", field="recipe.chat_template", need=MARKERS)
    with pytest.raises(ChatTemplateError, match="does not render"):
        apply_chat_template(
            tokenizer, "{% generation %}{{ messages[0].x.y }}{% endgeneration %}", "m", field="f", need=MARKERS
        )
    assert tokenizer.chat_template is None  # a refused template is not left on the tokenizer

    custom = (
        "{% for m in messages %}{% if m['role'] == 'assistant' %}"
        "A: {% generation %}{{ m['content'] }}{{ eos_token }}{% endgeneration %}"
        "{% else %}Q: {{ m['content'] }}\n{% endif %}{% endfor %}"
    )
    assert apply_chat_template(tokenizer, custom, "m", field="recipe.chat_template", need=MARKERS) == "custom"
    encoded = tokenizer.apply_chat_template(
        CONVERSATION[1:3], tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    answer = [i for i, m in zip(encoded["input_ids"], encoded["assistant_masks"], strict=True) if m]
    # The token straddling the span's start (" Paris", after "A:") belongs to the answer.
    assert tokenizer.decode(answer) == " Paris is the capital of France.<|endoftext|>"


def test_auto_precision_is_bf16_only_where_the_cpu_has_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for flags, expected in (
        ({"avx2", "avx512f"}, T.PRECISION_FP32),
        ({"avx2", "avx512f", "avx512_bf16"}, T.PRECISION_BF16),
        ({"avx2", "amx_bf16", "amx_tile"}, T.PRECISION_BF16),
    ):
        monkeypatch.setattr(precision, "cpu_flags", lambda flags=flags: frozenset(flags))
        assert precision.resolve_precision(T.PRECISION_AUTO) == expected, flags
        assert precision.resolve_precision(T.PRECISION_UNSPECIFIED) == expected, flags
        assert precision.resolve_precision(T.PRECISION_FP32) == T.PRECISION_FP32


def test_explicit_bf16_on_an_emulating_cpu_warns_with_the_measured_cost(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2"}))
    precision.warn_emulated_bf16.cache_clear()
    with caplog.at_level(logging.WARNING, logger="llmft.core.precision"):
        assert precision.resolve_precision(T.PRECISION_BF16) == T.PRECISION_BF16
    (record,) = (r for r in caplog.records if "PRECISION_BF16" in r.getMessage())
    assert "none of amx_bf16, avx512_bf16" in record.getMessage()
    assert "GFLOP/s" in record.getMessage() and "PRECISION_AUTO" in record.getMessage()

    caplog.clear()
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    with caplog.at_level(logging.WARNING, logger="llmft.core.precision"):
        precision.resolve_precision(T.PRECISION_BF16)
    assert not caplog.records
