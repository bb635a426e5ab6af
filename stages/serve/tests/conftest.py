"""Fixtures shared by the serving stage's tests."""

import os
from pathlib import Path

import pytest

from llmft.core.models import resolve_model_dir


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny preset, materialised in a cache of this test session's own."""
    os.environ["LLMFT_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    return resolve_model_dir("llmft/tiny-llama").directory
