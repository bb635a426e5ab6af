"""Packed sdpa: attending per sequence gives the outputs and gradients of transformers' block-diagonal masked sdpa,
for Llama (grouped-query) and GPT-NeoX, with row padding; unpacked inputs take transformers' path unchanged."""

from pathlib import Path

import pytest
import torch

from llmft.train_sft import attention
from llmft.train_sft.attention import PACKED_SDPA, restore_sdpa, sequence_spans, use_packed_attention


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMFT_CACHE", str(tmp_path / "cache"))


def test_sequence_spans_split_where_positions_restart() -> None:
    assert sequence_spans([0, 1, 2, 0, 1, 0, 0, 0]) == [(0, 3), (3, 5), (5, 6), (6, 7), (7, 8)]
    assert sequence_spans([4, 5, 6]) == [(0, 3)]


def packed_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    lengths = [[9, 5, 1, 7], [12, 4], [20]]  # row 0 has a one-token sequence; rows end in padding
    width = 24
    ids, positions, labels = [], [], []
    for row in lengths:
        pos = [p for n in row for p in range(n)]
        pad = width - len(pos)
        ids.append(torch.cat([torch.randint(10, 8000, (len(pos),)), torch.zeros(pad, dtype=torch.long)]))
        positions.append(torch.tensor(pos + [0] * pad))
        label = ids[-1].clone()
        label[len(pos) :] = -100
        labels.append(label)
    return torch.stack(ids), torch.stack(positions), torch.stack(labels)


@pytest.mark.parametrize("kernel", ["matmul", "sdpa"])
@pytest.mark.parametrize("preset", ["llmft/tiny-llama", "llmft/tiny-neox"])
def test_packed_attention_matches_masked_sdpa_in_outputs_and_gradients(preset: str, kernel: str) -> None:
    """Both ways a sequence attends: explicit matmuls (short sequences on CPU) and sdpa's causal kernel."""
    from transformers import AutoModelForCausalLM

    from llmft.core.models import resolve_model_dir

    directory = resolve_model_dir(preset).directory
    masked = AutoModelForCausalLM.from_pretrained(directory, attn_implementation="sdpa")
    packed = AutoModelForCausalLM.from_pretrained(directory, attn_implementation="sdpa")
    assert use_packed_attention(packed)
    assert packed.config._attn_implementation == PACKED_SDPA
    ids, positions, labels = packed_batch()
    calls: list[dict[str, object]] = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def counting_sdpa(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append(kwargs)
        return sdpa(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting_sdpa)
        patch.setattr(attention, "MATH_BELOW", 64 if kernel == "matmul" else 0)
        got = packed(input_ids=ids, position_ids=positions, labels=labels, use_cache=False)
    expected = masked(input_ids=ids, position_ids=positions, labels=labels, use_cache=False)
    real = labels != -100
    assert torch.allclose(got.logits[real], expected.logits[real], atol=1e-4)
    # sdpa: one causal call per sequence of two or more tokens (6 of them) per layer, no mask; matmul: none.
    layers = masked.config.num_hidden_layers
    assert len(calls) == (6 * layers if kernel == "sdpa" else 0) and all(k["is_causal"] for k in calls)
    got.loss.backward()
    expected.loss.backward()
    for (name, a), b in zip(masked.named_parameters(), packed.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-4), name
    restore_sdpa(packed)
    assert packed.config._attn_implementation == "sdpa"


def test_unpacked_batches_and_generation_take_the_sdpa_path() -> None:
    from transformers import AutoModelForCausalLM

    from llmft.core.models import resolve_model_dir

    directory = resolve_model_dir("llmft/tiny-llama").directory
    plain = AutoModelForCausalLM.from_pretrained(directory, attn_implementation="sdpa")
    packed = AutoModelForCausalLM.from_pretrained(directory, attn_implementation="sdpa")
    use_packed_attention(packed)
    ids = torch.randint(10, 8000, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    with torch.no_grad():
        assert torch.equal(
            plain(input_ids=ids, attention_mask=mask).logits, packed(input_ids=ids, attention_mask=mask).logits
        )
    assert torch.equal(
        plain.generate(ids[:1, :4], max_new_tokens=5, do_sample=False),
        packed.generate(ids[:1, :4], max_new_tokens=5, do_sample=False),
    )


def test_only_sdpa_models_are_switched() -> None:
    from transformers import AutoModelForCausalLM

    from llmft.core.models import resolve_model_dir

    eager = AutoModelForCausalLM.from_pretrained(
        resolve_model_dir("llmft/tiny-llama").directory, attn_implementation="eager"
    )
    assert not use_packed_attention(eager)
    assert eager.config._attn_implementation == "eager"
