"""The fused linear cross-entropy gives the loss, gradients and token statistics of logits followed by
cross-entropy, in fp32 and under bf16 autocast, and a patched model trains the same as the unpatched one."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from llmft.core.lm_loss import FusedLMOutput, fused_linear_cross_entropy, install_fused_lm_loss


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMFT_CACHE", str(tmp_path / "cache"))


def reference(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    logits = (hidden @ weight.t())[:, :-1]
    vocab = weight.shape[0]
    targets = labels[:, 1:]
    loss = F.cross_entropy(logits.float().reshape(-1, vocab), targets.reshape(-1))
    with torch.no_grad():
        log_p = logits.float().log_softmax(-1)
        mask = targets != -100
        entropy = (-(log_p.exp() * log_p).sum(-1) * mask).sum()
        correct = ((logits.argmax(-1) == targets) & mask).sum()
    return loss, correct, entropy, mask.sum()


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("chunk_size", [5, 4096])
def test_loss_gradients_and_statistics_match_logits_then_cross_entropy(bf16: bool, chunk_size: int) -> None:
    torch.manual_seed(0)
    hidden = torch.randn(3, 17, 32, requires_grad=True)
    weight = torch.randn(101, 32, requires_grad=True)
    labels = torch.randint(0, 101, (3, 17))
    labels[0, :5] = -100
    labels[2, 10:] = -100
    # Make one prediction certainly right, so the accuracy count is exercised.
    with torch.no_grad():
        weight[labels[1, 3]] = hidden[1, 2]
    tolerance = 2e-2 if bf16 else 1e-5
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss, correct, entropy, valid = fused_linear_cross_entropy(hidden, weight, labels, chunk_size=chunk_size)
    loss.backward()
    grad_hidden, grad_weight = hidden.grad, weight.grad
    hidden.grad, weight.grad = None, None
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        ref_loss, ref_correct, ref_entropy, ref_valid = reference(hidden, weight, labels)
    ref_loss.backward()
    assert loss.item() == pytest.approx(ref_loss.item(), rel=tolerance)
    assert torch.allclose(grad_hidden, hidden.grad, atol=tolerance)
    assert torch.allclose(grad_weight, weight.grad, atol=tolerance)
    assert int(valid) == int(ref_valid) == 37
    assert int(correct) == int(ref_correct) >= 1
    assert entropy.item() == pytest.approx(ref_entropy.item(), rel=tolerance)


def test_num_items_in_batch_divides_the_sum_and_a_frozen_head_gets_no_gradient() -> None:
    torch.manual_seed(1)
    hidden = torch.randn(2, 9, 16, requires_grad=True)
    weight = torch.randn(50, 16)  # frozen: requires_grad False
    labels = torch.randint(0, 50, (2, 9))
    mean, *_ = fused_linear_cross_entropy(hidden, weight, labels)
    summed, *_ = fused_linear_cross_entropy(hidden, weight, labels, num_items_in_batch=1)
    halved, *_ = fused_linear_cross_entropy(hidden, weight, labels, num_items_in_batch=torch.tensor(32))
    assert summed.item() == pytest.approx(mean.item() * 16, rel=1e-6)
    assert halved.item() == pytest.approx(mean.item() / 2, rel=1e-6)
    halved.backward()
    assert hidden.grad is not None and weight.grad is None


def test_out_of_vocabulary_labels_are_refused() -> None:
    hidden = torch.randn(1, 4, 8)
    with pytest.raises(ValueError, match="vocabulary size 10"):
        fused_linear_cross_entropy(hidden, torch.randn(10, 8), torch.tensor([[1, 2, 10, 3]]))


def test_patched_model_trains_like_the_original_and_generates_unchanged() -> None:
    from transformers import AutoModelForCausalLM

    from llmft.core.models import resolve_model_dir

    directory = resolve_model_dir("llmft/tiny-llama").directory
    original = AutoModelForCausalLM.from_pretrained(directory)
    patched = install_fused_lm_loss(AutoModelForCausalLM.from_pretrained(directory))
    torch.manual_seed(0)
    ids = torch.randint(10, 8000, (2, 24))
    labels = ids.clone()
    labels[:, :6] = -100
    expected = original(input_ids=ids, labels=labels)
    got = patched(input_ids=ids, labels=labels)
    assert isinstance(got, FusedLMOutput) and got.logits is None
    assert got.loss.item() == pytest.approx(expected.loss.item(), rel=1e-5)
    expected.loss.backward()
    got.loss.backward()
    for (name, a), b in zip(original.named_parameters(), patched.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-5), name
    with torch.no_grad():  # without labels: the model's own forward and logits
        assert torch.equal(original(input_ids=ids).logits, patched(input_ids=ids).logits)
    prompt = ids[:1, :5]
    assert torch.equal(
        original.generate(prompt, max_new_tokens=4, do_sample=False),
        patched.generate(prompt, max_new_tokens=4, do_sample=False),
    )


def test_a_lora_adapted_output_head_is_refused() -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from llmft.core.models import resolve_model_dir

    model = AutoModelForCausalLM.from_pretrained(resolve_model_dir("llmft/tiny-llama").directory)
    adapted = get_peft_model(model, LoraConfig(r=2, target_modules=["lm_head", "q_proj"]))
    with pytest.raises(ValueError, match="plain torch.nn.Linear"):
        install_fused_lm_loss(adapted)
