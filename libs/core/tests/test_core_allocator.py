"""Keeping freed memory: after `keep_freed_memory` large blocks come from the heap and, freed, stay there for the
next steps' blocks, where glibc's default maps a fresh block for each and unmaps it on free (checked in child
processes, whose allocator the test may change, by how the heap's end, the program break, moves)."""

import os
import platform
import subprocess
import sys

import pytest

from llmft.core import allocator

CHILD = """
import ctypes, sys
import torch
libc = ctypes.CDLL("libc.so.6")
libc.sbrk.restype = ctypes.c_void_p
if sys.argv[1] == "keep":
    from {module} import keep_freed_memory
    assert keep_freed_memory()
growth = []
for step in range(30):  # a training step's pattern: a large activation, a small tensor that outlives it
    before = libc.sbrk(0)
    x = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB, written
    kept = torch.ones(1000)
    del x
    growth.append(libc.sbrk(0) - before)
print(*growth)
""".replace(
    "{module}", allocator.__name__
)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_large_blocks_stay_in_the_heap_and_are_reused() -> None:
    def growth(mode: str) -> list[int]:
        # The child imports llmft from this process's import path (Pants' sandbox, or the venv).
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(os.path.abspath(p) for p in sys.path if p)}
        run = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True, env=env)
        return [int(n) for n in run.stdout.split()]

    block = 64 * 1024 * 1024
    kept = growth("keep")
    assert kept[0] > block // 2  # the heap serves the block
    assert sum(kept) < 12 * block and not any(kept[-10:])  # freed blocks are reused: the heap stops growing
    assert sum(growth("default")) < block // 2  # glibc's default: blocks mapped outside the heap, unmapped when freed
