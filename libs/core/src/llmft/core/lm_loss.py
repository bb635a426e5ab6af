"""Fused linear cross-entropy for causal LM training: the LM head and the loss in one pass over the labelled tokens.

A causal LM's last step, `logits = hidden @ lm_head.T` followed by cross-entropy, is the costliest part of training a
small model with a real vocabulary (8,192 x 384 for the 20M preset is 15% of its weights, and the logits tensor,
batch x length x vocab in fp32, is the largest activation). `fused_linear_cross_entropy` computes it the way
Liger-Kernel's FusedLinearCrossEntropy does, on any device:

- only labelled tokens (label != -100) go through the head: padding, prompts and the first token of each packed
  conversation cost nothing;
- chunks of tokens: at most `chunk_size x vocab` logits exist at once;
- the gradients of the hidden states and of the head weight are computed in the forward, while each chunk's
  softmax is at hand, so the backward only scales them: three matmuls per chunk (logits, input gradient, weight
  gradient) and no recomputation;
- matmuls in the autocast dtype (bf16 under bf16 autocast, as `nn.Linear` would), softmax, loss and the weight
  gradient accumulate in fp32.

It also returns the number of tokens whose label has the highest logit and the summed entropy of the predicted
distributions, the figures trl's SFTTrainer logs for its `chunked_nll` loss.

`install_fused_lm_loss(model)` patches a transformers causal LM (or the model inside a peft wrapper) so that calls
with `labels` run the decoder, then this loss; calls without labels (generation, logits for evaluation) are unchanged.
"""

from __future__ import annotations

import inspect
import types
from dataclasses import dataclass
from typing import Any

import torch
from transformers.modeling_outputs import CausalLMOutputWithPast

IGNORE_INDEX = -100
DEFAULT_CHUNK_SIZE = 512


@dataclass
class FusedLMOutput(CausalLMOutputWithPast):
    """A CausalLMOutputWithPast without logits and with the token statistics trl's chunked loss reports."""

    num_correct_tokens: torch.Tensor | None = None
    entropy_sum: torch.Tensor | None = None
    num_valid_tokens: torch.Tensor | None = None


def _compute_dtype(hidden: torch.Tensor) -> torch.dtype:
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return hidden.dtype


class _FusedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        labels: torch.Tensor,
        normalizer: torch.Tensor,
        compute_dtype: torch.dtype,
        chunk_size: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = hidden.shape[0]
        needs_hidden_grad, needs_weight_grad = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        w = weight.to(compute_dtype)
        h_all = hidden.to(compute_dtype)
        grad_hidden = torch.empty_like(hidden) if needs_hidden_grad else None
        grad_weight = (
            torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if needs_weight_grad else None
        )
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        correct = torch.zeros((), dtype=torch.float32, device=hidden.device)
        entropy = torch.zeros((), dtype=torch.float32, device=hidden.device)
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, rows, chunk_size):
                h = h_all[start : start + chunk_size]
                y = labels[start : start + chunk_size]
                logits = (h @ w.t()).float()
                logits -= logits.amax(dim=-1, keepdim=True)  # shifted: the largest logit is 0
                target = logits.gather(1, y[:, None]).squeeze(1)
                probs = logits.exp()
                total = probs.sum(dim=-1)
                log_total = total.log()
                probs /= total[:, None]
                loss += (log_total - target).sum()
                correct += (target >= 0).sum()
                entropy += (log_total - (probs * logits).sum(dim=-1)).sum()
                if needs_hidden_grad or needs_weight_grad:
                    probs[torch.arange(probs.shape[0], device=probs.device), y] -= 1.0  # d loss / d logits
                    grad_logits = probs.to(compute_dtype)
                    if grad_hidden is not None:
                        grad_hidden[start : start + chunk_size] = grad_logits @ w
                    if grad_weight is not None:
                        grad_weight += (grad_logits.t() @ h).float()
        ctx.save_for_backward(
            grad_hidden if grad_hidden is not None else torch.empty(0),
            grad_weight if grad_weight is not None else torch.empty(0),
            normalizer,
        )
        ctx.weight_dtype = weight.dtype
        return loss / normalizer, correct, entropy

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor, *_: Any) -> tuple[Any, ...]:  # type: ignore[override]
        grad_hidden, grad_weight, normalizer = ctx.saved_tensors
        scale = grad_loss / normalizer
        hidden_out = (grad_hidden * scale).to(grad_hidden.dtype) if ctx.needs_input_grad[0] else None
        weight_out = (grad_weight * scale).to(ctx.weight_dtype) if ctx.needs_input_grad[1] else None
        return hidden_out, weight_out, None, None, None, None


def fused_linear_cross_entropy(
    hidden_states: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    num_items_in_batch: torch.Tensor | int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Next-token cross-entropy of `hidden_states @ weight.T` against `labels` (both batch x length; labels are not
    shifted, as transformers passes them), over tokens whose shifted label is not -100.

    The loss is the sum over those tokens divided by `num_items_in_batch` when given (the Trainer's count across
    gradient-accumulation steps and ranks), else their mean. Returns (loss, correct tokens, entropy sum, valid tokens).
    """
    hidden = hidden_states[..., :-1, :].reshape(-1, hidden_states.shape[-1])
    targets = labels[..., 1:].reshape(-1).to(hidden.device)
    valid = targets != IGNORE_INDEX
    index = valid.nonzero().squeeze(1)
    count = index.numel()
    if num_items_in_batch is None:
        normalizer = torch.tensor(float(max(count, 1)), device=hidden.device)
    else:
        normalizer = torch.as_tensor(num_items_in_batch, dtype=torch.float32, device=hidden.device)
    vocab = weight.shape[0]
    chosen = targets.index_select(0, index)
    if count and (int(chosen.min()) < 0 or int(chosen.max()) >= vocab):
        raise ValueError(f"labels must be -100 or token ids below the vocabulary size {vocab}")
    loss, correct, entropy = _FusedLinearCrossEntropy.apply(
        hidden.index_select(0, index), weight, chosen, normalizer, _compute_dtype(hidden), chunk_size
    )
    return loss, correct, entropy, torch.tensor(count, device=hidden.device)


def _causal_lm(model: Any) -> Any:
    """The transformers model under a peft wrapper (peft's LoRA layers live in its module tree)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def install_fused_lm_loss(model: Any, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Any:
    """Makes `model(..., labels=...)` compute its loss with `fused_linear_cross_entropy` and return a FusedLMOutput
    (logits=None). Refuses models whose output head is adapted by peft (its weight alone would drop the adapter) or
    carries a bias, softcapping or logit scaling. Returns the patched transformers model."""
    target = _causal_lm(model)
    head = target.get_output_embeddings()
    if type(head) is not torch.nn.Linear:
        raise ValueError(
            f"{type(target).__name__}: its output head is {type(head).__name__} (e.g. a LoRA-adapted lm_head); "
            "the fused loss needs a plain torch.nn.Linear"
        )
    if getattr(head, "bias", None) is not None:
        raise ValueError(f"{type(target).__name__}: output head has a bias; the fused loss does not add one")
    text_config = target.config.get_text_config()
    for name in ("final_logit_softcapping", "logit_scale", "output_multiplier"):
        if getattr(text_config, name, None) not in (None, 1.0):
            raise ValueError(f"{type(target).__name__}: {name} is set; the fused loss computes plain logits")

    original_forward = types.MethodType(type(target).forward, target)

    def forward(
        self: Any,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        **kwargs: Any,
    ) -> Any:
        if labels is None:
            return original_forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        kwargs.pop("use_cache", None)
        kwargs.pop("logits_to_keep", None)
        outputs = self.base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs)
        loss, correct, entropy, valid = fused_linear_cross_entropy(
            outputs.last_hidden_state,
            self.get_output_embeddings().weight,
            labels,
            num_items_in_batch=num_items_in_batch,
            chunk_size=chunk_size,
        )
        return FusedLMOutput(
            loss=loss,
            logits=None,
            hidden_states=outputs.hidden_states,
            num_correct_tokens=correct,
            entropy_sum=entropy,
            num_valid_tokens=valid,
        )

    # The original signature, so the Trainer sees **kwargs (and passes num_items_in_batch) and generate() validates
    # inputs as before.
    forward.__signature__ = inspect.signature(type(target).forward)  # type: ignore[attr-defined]
    target.forward = types.MethodType(forward, target)
    return target


def install_for_recipe(model: Any, zero_stage: int) -> bool:
    """Installs the fused loss unless ZeRO-3 partitions the weights (the head's weight is gathered only around the
    module's own forward, which the fused loss does not call); returns whether it did."""
    if zero_stage >= 3:
        return False
    install_fused_lm_loss(model)
    return True
