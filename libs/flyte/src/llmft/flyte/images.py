"""The stages' ImageSpecs. An image is the versioned stage: it installs the stage's wheel at its version, the llmft
wheels the stage depends on (contracts, core library, Flyte library), and exactly the third-party packages those
wheels declare, pinned to the lockfile's versions. A task then runs on a cluster from its image alone, with no source
roots and no fast registration.

The wheels are built by `pants package ::` into `dist/` (or the relative folder $LLMFT_DIST_DIR names); the image
build copies them in and installs them without dependencies (their dependencies are the pinned packages), so what
runs is what was tested. `tests/test_images.py` renders every stage's build context and checks it against the wheels'
own metadata."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

from llmft.core import __version__ as CORE_VERSION
from llmft.core import fingerprint as fp
from llmft.flyte import __version__ as FLYTE_VERSION

# The lockfile's versions (3rdparty/python/default.lock; tests/test_images.py checks) of every third-party package an
# llmft wheel declares.
PINS: dict[str, str] = {
    "accelerate": "1.15.0",
    "bitsandbytes": "0.50.2",
    "datasets": "5.2.0",
    "datasketch": "2.0.0",
    "deepspeed": "0.19.8",
    "fastapi": "0.165.0",
    "flyteidl": "1.16.8",
    "flytekit": "1.16.31",
    "flytekitplugins-kfpytorch": "1.16.31",
    "flytekitplugins-pandera": "1.16.31",
    "gguf": "0.19.0",
    "gradio": "6.31.0",
    "grpcio": "1.85.3",
    "grpcio-health-checking": "1.85.1",
    "grpcio-reflection": "1.85.1",
    "huggingface-hub": "2.4.0",
    "jinja2": "3.1.6",
    "langid": "1.1.6",
    "matplotlib": "3.11.2",
    "numpy": "2.4.6",
    "pandas": "3.1.1",
    "pandera": "0.35.0",
    "peft": "0.21.2",
    "protobuf": "7.36.2",
    "pydantic": "2.14.4",
    "pyarrow": "26.0.1",
    "pyyaml": "6.0.4",
    "safetensors": "0.8.0",
    "starlette": "1.10.0",
    "tensorboard": "2.21.0",
    "tokenizers": "0.23.3",
    "tqdm": "4.70.1",
    "torch": "2.13.0",
    "transformers": "5.24.0",
    "trl": "1.12.0",
    "uvicorn": "0.55.0",
}

# The llmft libraries every stage's wheel depends on, at their versions (tests/test_versions.py checks them against the
# BUILD files).
PROTO_VERSION = "0.9.0"
LIBRARIES: dict[str, str] = {"llmft-proto": PROTO_VERSION, "llmft-core": CORE_VERSION, "llmft-flyte": FLYTE_VERSION}
LIBRARY_IMPORTS = ("llmft.proto", "llmft.core", "llmft.flyte")  # their import packages, whose code keys every stage
# What the llmft libraries themselves declare: every image installs these.
LIBRARY_PACKAGES = (
    "flytekit",
    "flytekitplugins-kfpytorch",
    "gguf",
    "grpcio",
    "huggingface-hub",
    "jinja2",
    "matplotlib",
    "numpy",
    "pandas",
    "peft",
    "protobuf",
    "pyarrow",
    "pyyaml",
    "tensorboard",
    "tokenizers",
    "torch",
    "transformers",
)

REGISTRY_ENV = "LLMFT_IMAGE_REGISTRY"
DEFAULT_REGISTRY = "ghcr.io/llmft"
DIST_DIR_ENV = "LLMFT_DIST_DIR"
DEFAULT_DIST_DIR = "dist"
PYTHON_VERSION = "3.11"


def registry() -> str:
    """Registry the images are pushed to. It needs a dot or a port (ghcr.io/..., localhost:30000): flytekit treats
    a bare name as Docker Hub and queries it at compile time."""
    return os.environ.get(REGISTRY_ENV, DEFAULT_REGISTRY)


def dist_dir() -> str:
    """The folder, relative to where `pyflyte package/register` runs, that holds the llmft wheels (image builds copy
    only relative paths into their context)."""
    folder = os.environ.get(DIST_DIR_ENV, DEFAULT_DIST_DIR)
    if PurePosixPath(folder).is_absolute() or ".." in PurePosixPath(folder).parts:
        raise ValueError(f"{DIST_DIR_ENV}: {folder!r} must be a relative path inside the folder images are built from")
    return folder


def wheel_file(distribution: str, version: str) -> str:
    """The file name `pants package` gives a pure-Python distribution's wheel."""
    return f"{distribution.replace('-', '_')}-{version}-py3-none-any.whl"


def pinned(names: Sequence[str]) -> list[str]:
    """pip requirement strings at the lockfile's versions; a package without a pin is an error, not a float."""
    unknown = [name for name in names if name not in PINS]
    if unknown:
        raise KeyError(f"no pinned version for {unknown}: add the lockfile's version to llmft.flyte.images.PINS")
    return [f"{name}=={PINS[name]}" for name in names]


def image_packages(packages: Sequence[str]) -> list[str]:
    """The third-party packages an image holds: what the llmft libraries declare plus the stage's own."""
    return sorted(set(LIBRARY_PACKAGES) | set(packages))


def stage_cache_version(distribution: str, version: str, packages: Sequence[str]) -> str:
    """The cache_version of a stage's cached tasks, derived from exactly what its image holds: the stage's version,
    the llmft libraries' versions, the locked pins of its third-party packages, and the code itself (the syntax of
    every file of the stage's package, the contracts and the libraries: llmft.core.fingerprint.source_digest). Never
    a hand-bumped string: an edit to a function body without a release reruns the stage's tasks instead of serving
    stale outputs; a new release, a new lock of a package the stage uses, or a code edit gives a new version, and
    nothing else does (a comment or a reflowed line is not an edit)."""
    pins = dict(requirement.split("==") for requirement in pinned(image_packages(packages)))
    code = {package: fp.source_digest(package) for package in (import_package(distribution), *LIBRARY_IMPORTS)}
    return fp.cache_version(distribution, version, {**LIBRARIES, **pins}, code)


def import_package(distribution: str) -> str:
    """The import package of an llmft distribution: llmft-train-sft -> llmft.train_sft."""
    return "llmft." + distribution.removeprefix("llmft-").replace("-", "_")


def stage_image(
    distribution: str,
    version: str,
    packages: Sequence[str],
    apt_packages: Sequence[str] = (),
    with_wheels: dict[str, str] | None = None,
) -> Any:
    """The ImageSpec of one stage: its wheel `distribution` at `version`, the llmft libraries' wheels, and the
    third-party `packages` its wheel declares beyond the libraries' (pinned). `with_wheels` adds other llmft wheels
    (name -> version): the orchestration image, whose dynamic workflow imports every stage, holds them all."""
    from flytekit import ImageSpec

    versions = {distribution: version, **(with_wheels or {}), **LIBRARIES}
    wheels = [f"{dist_dir()}/{wheel_file(name, v)}" for name, v in versions.items()]
    names = image_packages(packages)
    return ImageSpec(
        name=distribution,
        registry=registry(),
        python_version=PYTHON_VERSION,
        packages=pinned(names),
        apt_packages=list(apt_packages) or None,
        copy=wheels,
        # COPY runs after the package install; the wheels go in afterwards, without dependencies: those are the pins.
        commands=["uv pip install --no-deps " + " ".join(f"/root/{wheel}" for wheel in wheels)],
    )
