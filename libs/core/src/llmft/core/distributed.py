"""Facts about the process group a training stage runs in (torchrun, deepspeed or Flyte's Elastic launcher)."""

from __future__ import annotations

import os


def under_launcher() -> bool:
    """True inside a torch elastic / deepspeed worker (the launcher sets LOCAL_RANK)."""
    return "LOCAL_RANK" in os.environ


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))
