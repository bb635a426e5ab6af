"""Facts about the process group a training stage runs in (torchrun, deepspeed or Flyte's Elastic launcher)."""

from __future__ import annotations

import os


def under_launcher() -> bool:
    """True inside a torch elastic / deepspeed worker (the launcher sets LOCAL_RANK)."""
    return "LOCAL_RANK" in os.environ


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


# What torch elastic sets in a worker that makes transformers/accelerate start a process group and wrap the model.
LAUNCHER_VARIABLES = (
    "LOCAL_RANK",
    "RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
)


def leave_single_worker_launch(zero_stage: int) -> bool:
    """In the only worker of a launch (world size 1), forgets the launcher so the Trainer trains a plain process: a
    one-process DDP wrapper costs ~10% of the step on CPU (bucketed gradient copies) and buys nothing. Kept when
    ZeRO is on (deepspeed needs its process group even alone). Returns whether it left."""
    if not under_launcher() or world_size() != 1 or zero_stage > 0:
        return False
    for name in LAUNCHER_VARIABLES:
        os.environ.pop(name, None)
    return True
