"""Where llmft keeps what it makes once and reuses (materialised presets, converted GGUF models, fetched wheels):
`$LLMFT_CACHE`, else `~/.cache/llmft`."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("LLMFT_CACHE", Path.home() / ".cache" / "llmft"))
