"""GGUF files written offline with the `gguf` package's writer, as llama.cpp's converter writes them (its metadata
keys, tensor names, the query/key row permutation of Llama, a byte-level BPE vocabulary with its merges and control
tokens, the chat template), from a Hugging Face Llama folder such as the tiny preset. Tests read them back through
transformers' real GGUF loader. Options write what that loader cannot read: another architecture, a tensor type the
gguf package cannot dequantise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# llama.cpp's tensor names for a Llama block's weights (transformers' names after `model.layers.N.`).
BLOCK_TENSORS = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
CONTROL, NORMAL = 3, 1  # llama.cpp's token types


def _permute(weights: Any, heads: int) -> Any:
    """llama.cpp's row order for a Llama query/key projection (transformers' loader reverses it)."""
    return (
        weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def write_llama_gguf(
    model_dir: Path,
    out: Path,
    *,
    tensor_type: str = "F32",
    architecture: str = "llama",
    name: str = "tiny llama",
    raw_tensor: tuple[str, str] | None = None,
) -> Path:
    """Writes the Llama model of `model_dir` (weights, tokenizer.json, chat template) as the GGUF file `out`.
    `tensor_type`: F32, F16 or a type the gguf package quantises (Q8_0, ...) for the 2-D weights (norms stay F32, as
    llama.cpp keeps them). `architecture` is what general.architecture says (the keys stay llama's). `raw_tensor`
    (name, type) writes that tensor as zero bytes of `type` instead, for types the gguf package cannot produce."""
    import numpy as np
    import torch
    from gguf import GGMLQuantizationType, GGUFWriter, quants
    from safetensors.torch import load_file
    from transformers import AutoConfig

    model_dir = Path(model_dir)
    config = AutoConfig.from_pretrained(model_dir)
    state = {k: v.to(torch.float32).numpy() for k, v in load_file(str(model_dir / "model.safetensors")).items()}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(str(out), architecture)
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_vocab_size(config.vocab_size)
    _add_tokenizer(writer, model_dir)

    tensors = {
        "token_embd.weight": state["model.embed_tokens.weight"],
        "output_norm.weight": state["model.norm.weight"],
    }
    if not config.tie_word_embeddings:
        tensors["output.weight"] = state["lm_head.weight"]
    for layer in range(config.num_hidden_layers):
        for hf_name, gguf_name in BLOCK_TENSORS.items():
            weights = state[f"model.layers.{layer}.{hf_name}.weight"]
            if gguf_name == "attn_q":
                weights = _permute(weights, config.num_attention_heads)
            elif gguf_name == "attn_k":
                weights = _permute(weights, config.num_key_value_heads)
            tensors[f"blk.{layer}.{gguf_name}.weight"] = weights
    qtype = GGMLQuantizationType[tensor_type]
    for tensor_name, weights in tensors.items():
        if raw_tensor and tensor_name == raw_tensor[0]:
            raw = GGMLQuantizationType[raw_tensor[1]]
            shape = quants.quant_shape_to_byte_shape(weights.shape, raw)
            writer.add_tensor(tensor_name, np.zeros(shape, dtype=np.uint8), raw_shape=shape, raw_dtype=raw)
        elif weights.ndim == 1 or qtype == GGMLQuantizationType.F32:
            writer.add_tensor(tensor_name, weights.astype(np.float32))
        elif qtype == GGMLQuantizationType.F16:
            writer.add_tensor(tensor_name, weights.astype(np.float16))
        else:
            data = quants.quantize(weights.astype(np.float32), qtype)
            writer.add_tensor(tensor_name, data, raw_shape=data.shape, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(out)


def _add_tokenizer(writer: Any, model_dir: Path) -> None:
    """A byte-level BPE tokenizer.json as llama.cpp stores it: tokens in id order, their types, the merges, the
    special token ids and the chat template."""
    data = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    vocab: dict[str, int] = dict(data["model"]["vocab"])
    special = {entry["content"]: entry["id"] for entry in data.get("added_tokens", [])}
    vocab.update(special)
    tokens = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    config = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([CONTROL if token in special else NORMAL for token in tokens])
    writer.add_token_merges(merges)
    for key, add in (
        ("bos_token", writer.add_bos_token_id),
        ("eos_token", writer.add_eos_token_id),
        ("pad_token", writer.add_pad_token_id),
    ):
        if config.get(key):
            add(vocab[config[key]])
    template = model_dir / "chat_template.jinja"
    if template.is_file():
        writer.add_chat_template(template.read_text(encoding="utf-8"))
