"""Which precision this device trains fastest in. bf16 is the big lever where the hardware has it (a GPU with bf16,
a CPU with AMX or avx512_bf16: several times fp32's matmul rate) and a trap where it does not: on an AVX2-only CPU
bf16 is emulated and measured 7x slower than fp32. So `PRECISION_AUTO` (the default) picks bf16 only where the device
runs it natively, and an explicit bf16 on a device that emulates it gets a warning with the cost measured there."""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path

from llmft.proto.training.v1 import training_pb2

T = training_pb2
logger = logging.getLogger(__name__)

# CPU flags of native bf16 arithmetic (/proc/cpuinfo).
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.cache
def cpu_flags() -> frozenset[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16() -> tuple[bool, str]:
    """Whether this device computes bf16 natively, and the evidence in words."""
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        supported = bool(torch.cuda.is_bf16_supported(including_emulation=False))
        return supported, f"GPU {name} {'has' if supported else 'lacks'} bf16 support"
    present = [flag for flag in NATIVE_BF16_FLAGS if flag in cpu_flags()]
    if present:
        return True, f"the CPU has {', '.join(present)}"
    return False, f"the CPU has none of {', '.join(NATIVE_BF16_FLAGS)}"


def resolve_precision(precision: T.Precision) -> T.Precision:
    """PRECISION_AUTO (or unset) becomes bf16 where the device runs it natively and fp32 elsewhere; an explicit choice
    stays, with a warning when it is bf16 on a device that emulates it."""
    native, why = native_bf16()
    if precision in (T.PRECISION_AUTO, T.PRECISION_UNSPECIFIED):
        chosen = T.PRECISION_BF16 if native else T.PRECISION_FP32
        logger.info("precision auto: %s (%s)", T.Precision.Name(chosen), why)
        return chosen
    if precision == T.PRECISION_BF16 and not native:
        warn_emulated_bf16(why)
    return precision


@functools.cache
def warn_emulated_bf16(why: str) -> None:
    """Measures what bf16 costs here (once per process) and warns."""
    fp32, bf16 = matmul_gflops("float32"), matmul_gflops("bfloat16")
    logger.warning(
        "recipe.precision: PRECISION_BF16 on a device without native bf16 (%s): bf16 matmul measured %.0f GFLOP/s "
        "against %.0f for fp32 here, so training runs about %.1fx %s than in fp32. PRECISION_AUTO picks the faster.",
        why,
        bf16,
        fp32,
        max(fp32 / bf16, bf16 / fp32),
        "slower" if bf16 < fp32 else "faster",
    )


def matmul_gflops(dtype: str, size: int = 512, seconds: float = 0.2) -> float:
    """A square matmul's rate in `dtype` on the CPU (or the current GPU), over about `seconds`."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    a = torch.randn(size, size, device=device).to(getattr(torch, dtype))
    b = torch.randn(size, size, device=device).to(getattr(torch, dtype))
    torch.matmul(a, b)  # warm-up: kernels, caches
    runs, started = 0, time.perf_counter()
    while True:
        torch.matmul(a, b)
        runs += 1
        if device == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return 2 * size**3 * runs / elapsed / 1e9
