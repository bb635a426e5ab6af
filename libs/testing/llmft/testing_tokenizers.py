"""Tokenizers in the real formats of the model families llmft supports, built offline: the same tokenizer classes,
special tokens, tokenizer_config fields and shipped chat templates (without {% generation %} markers, or none) as the
Hub's LLaMA-2-chat, Llama-3-Instruct, RedPajama-INCITE and ChatML (Qwen2) tokenizers, with a small BPE vocabulary
trained on local text. A base model folder pairs one with random tiny weights of the family's architecture."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

FAMILIES = ("llama-2", "llama-3", "redpajama-incite", "chatml")

# The chat templates the Hub tokenizers ship (Meta's Llama-2-chat and Llama-3-Instruct, Qwen2's ChatML), formatted
# as those repositories have them: no {% generation %} markers. RedPajama-INCITE ships none.
HUB_TEMPLATES = {
    "llama-2": (
        "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
        "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
        "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
        "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
        "{% if loop.index0 == 0 and system_message != false %}"
        "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
        "{% else %}{% set content = message['content'] %}{% endif %}"
        "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
        "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}"
        "{% endfor %}"
    ),
    "llama-3": (
        "{% set loop_messages = messages %}{% for message in loop_messages %}"
        "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
        "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
        "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
    ),
    "chatml": (
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
        "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    ),
}

CORPUS = (
    "The quick brown fox jumps over the lazy dog. Flyte runs tasks in containers; a workflow chains them.\n"
    "What is the capital of France? Paris is the capital of France. Answer the question in one sentence.\n"
    "Return the cache of a flyte task. A deck shows plots. Retry the task when it fails. 1 2 3 4 5 6 7 8 9 10\n"
    "def add(a, b):\n    return a + b\n# comments say why. Classes, functions and modules have docstrings.\n"
)


def _train_bpe(special: list[str], byte_level: bool, vocab_size: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if byte_level:
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:  # SentencePiece-style BPE with byte fallback, as LLaMA-2's tokenizer.json
        tokenizer = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
        tokenizer.decoder = decoders.Sequence(
            [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
        )
        alphabet = list(string.printable)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, initial_alphabet=alphabet)
    tokenizer.train_from_iterator([CORPUS] * 4, trainer=trainer)
    if byte_level:
        return tokenizer
    # SentencePiece's layout: the special tokens, then the 256 byte tokens <0x00>..<0xFF> that byte fallback spells
    # unknown characters with, then the learnt pieces.
    data = json.loads(tokenizer.to_str())
    learnt = sorted(data["model"]["vocab"].items(), key=lambda item: item[1])
    vocab = {token: index for index, token in enumerate(special)}
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    for token, _ in learnt:
        vocab.setdefault(token, len(vocab))
    data["model"]["vocab"] = vocab
    for added in data["added_tokens"]:
        added["id"] = vocab[added["content"]]
    return Tokenizer.from_str(json.dumps(data))


def write_family_tokenizer(family: str, out_dir: Path) -> Path:
    """Writes tokenizer.json, tokenizer_config.json and special_tokens_map.json in `family`'s Hub format."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any]
    if family == "llama-2":
        tokenizer = _train_bpe(["<unk>", "<s>", "</s>"], byte_level=False, vocab_size=600)
        config = {
            "tokenizer_class": "LlamaTokenizer",
            "bos_token": "<s>",
            "eos_token": "</s>",
            "unk_token": "<unk>",
            "pad_token": None,
            "add_bos_token": True,
            "add_eos_token": False,
            "legacy": False,
            "clean_up_tokenization_spaces": False,
            "model_max_length": 4096,
        }
    elif family == "llama-3":
        special = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
        tokenizer = _train_bpe(special, byte_level=True, vocab_size=700)
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": "<|begin_of_text|>",
            "eos_token": "<|eot_id|>",
            "clean_up_tokenization_spaces": True,
            "model_input_names": ["input_ids", "attention_mask"],
            "model_max_length": 8192,
        }
    elif family == "redpajama-incite":
        tokenizer = _train_bpe(["<|endoftext|>", "<|padding|>"], byte_level=True, vocab_size=700)
        config = {
            "tokenizer_class": "GPTNeoXTokenizer",
            "bos_token": "<|endoftext|>",
            "eos_token": "<|endoftext|>",
            "unk_token": "<|endoftext|>",
            "add_prefix_space": False,
            "model_max_length": 2048,
        }
    elif family == "chatml":
        tokenizer = _train_bpe(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], byte_level=True, vocab_size=700)
        config = {
            "tokenizer_class": "Qwen2Tokenizer",
            "bos_token": None,
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
            "unk_token": None,
            "errors": "replace",
            "model_max_length": 32768,
        }
    else:
        raise ValueError(f"unknown family {family!r}; one of {FAMILIES}")
    if family in HUB_TEMPLATES:
        config["chat_template"] = HUB_TEMPLATES[family]
    tokenizer.save(str(out_dir / "tokenizer.json"))
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    special_map = {k: config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token") if config.get(k)}
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2), encoding="utf-8")
    return out_dir


def write_family_model(family: str, out_dir: Path, seed: int = 0) -> Path:
    """A base model folder: `family`'s tokenizer and random weights of a tiny model of its architecture (Llama for
    LLaMA-2/3 and ChatML, GPT-NeoX for RedPajama-INCITE)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPTNeoXConfig, LlamaConfig

    write_family_tokenizer(family, out_dir)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    vocab = len(tokenizer)
    common = dict(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = (
        GPTNeoXConfig(**common, use_parallel_residual=True)
        if family == "redpajama-incite"
        else LlamaConfig(**common, num_key_value_heads=2, tie_word_embeddings=True)
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(out_dir, safe_serialization=True)
    return out_dir
