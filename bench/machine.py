"""What a benchmark ran on, for its JSON: the CPU model and the flags that decide what bf16 costs on it (AMX,
avx512_bf16, AVX2 only), the cores, and the Python and torch versions. Figures from machines of one kind differ by
several times, so every benchmark records this beside its numbers."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")


def machine() -> dict[str, Any]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    try:
        import torch

        torch_version = str(torch.__version__)
    except ImportError:
        torch_version = ""
    return {
        "cpu": model,
        "cpu_flags": [flag for flag in FLAGS if flag in flags],
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "torch": torch_version,
    }
