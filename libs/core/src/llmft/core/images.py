"""Pinned third-party versions for the stages' ImageSpecs. Each stage's tasks module builds its own ImageSpec from the
packages it needs; the pins here match 3rdparty/python/requirements.txt (a test checks), so an image and the
lockfile never disagree."""

from __future__ import annotations

import os

PINS: dict[str, str] = {
    "torch": "2.13.0",
    "transformers": "5.24.0",
    "tokenizers": "0.23.3",
    "peft": "0.21.2",
    "trl": "1.12.0",
    "accelerate": "1.15.0",
    "datasets": "5.2.0",
    "deepspeed": "0.19.8",
    "bitsandbytes": "0.50.2",
    "flytekit": "1.16.31",
    "flytekitplugins-kfpytorch": "1.16.31",
    "flytekitplugins-pandera": "1.16.31",
    "flytekitplugins-deck-standard": "1.16.31",
    "pandera": "0.35.0",
    "grpcio": "1.85.3",
    "grpcio-health-checking": "1.85.1",
    "grpcio-reflection": "1.85.1",
    "protobuf": "7.36.2",
    "gradio": "6.31.0",
    "huggingface_hub": "2.4.0",
}

# Everything every stage needs: the contracts, the shared library's own needs, the Flyte runtime.
BASE_PACKAGES = ("flytekit", "protobuf", "pandas", "pyarrow", "pyyaml", "matplotlib")

REGISTRY_ENV = "LLMFT_IMAGE_REGISTRY"
DEFAULT_REGISTRY = "ghcr.io/llmft"


def pinned(*names: str) -> list[str]:
    """pip requirement strings, pinned where PINS knows the package."""
    return [f"{name}=={PINS[name]}" if name in PINS else name for name in names]


def image_packages(*names: str) -> list[str]:
    """The base packages plus a stage's own, pinned and de-duplicated in order."""
    seen: dict[str, None] = {}
    for name in (*BASE_PACKAGES, *names):
        seen.setdefault(name, None)
    return pinned(*seen)


def registry() -> str:
    """Registry the images are pushed to. It needs a dot or a port (ghcr.io/..., localhost:30000): flytekit treats
    a bare name as Docker Hub and queries it at compile time."""
    return os.environ.get(REGISTRY_ENV, DEFAULT_REGISTRY)
