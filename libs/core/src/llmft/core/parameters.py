"""Counting a model's parameters, in a module of its own: the presets' listing and the training report both count,
and neither may import the other."""

from __future__ import annotations

from typing import Any


def count_parameters(model: Any) -> tuple[int, int]:
    """(all parameters, trainable parameters)."""
    total = trainable = 0
    for parameter in model.parameters():
        n = parameter.numel()
        # 4-bit bitsandbytes weights pack two values per byte.
        if parameter.__class__.__name__ == "Params4bit":
            n *= 2
        total += n
        if parameter.requires_grad:
            trainable += n
    return total, trainable
