"""Each package states its version in three places that must agree: the python_distribution in its BUILD file, its
`__version__`, and the newest entry of its CHANGELOG. The images name the libraries' wheels at those versions (their
pins are checked against the wheels and the lockfile by test_images.py)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PACKAGES = {
    "llmft-proto": (ROOT / "proto", None),
    "llmft-core": (ROOT / "libs/core", "llmft/core"),
    "llmft-flyte": (ROOT / "libs/flyte", "llmft/flyte"),
    "llmft-data": (ROOT / "stages/data", "llmft/data"),
    "llmft-train-cpt": (ROOT / "stages/train_cpt", "llmft/train_cpt"),
    "llmft-train-sft": (ROOT / "stages/train_sft", "llmft/train_sft"),
    "llmft-rlhf": (ROOT / "stages/rlhf", "llmft/rlhf"),
    "llmft-serve": (ROOT / "stages/serve", "llmft/serve"),
    "llmft-orchestration": (ROOT / "orchestration", "llmft/orchestration"),
}


def build_version(folder: Path, name: str) -> str:
    build = folder / "BUILD" if (folder / "BUILD").is_file() else folder / "src" / "BUILD"
    match = re.search(rf'python_artifact\(name="{name}", version="([^"]+)"\)', build.read_text())
    assert match, f"{build}: no python_artifact named {name}"
    return match.group(1)


def changelog_version(folder: Path) -> str:
    match = re.search(r"^## \[?(\d+\.\d+\.\d+)\]?", (folder / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert match, f"{folder}/CHANGELOG.md: no '## x.y.z' entry"
    return match.group(1)


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_versions_agree(name: str) -> None:
    folder, package = PACKAGES[name]
    version = build_version(folder, name)
    assert changelog_version(folder) == version
    if package:
        init = (folder / "src" / package / "__init__.py").read_text()
        assert re.search(rf'^__version__ = "{re.escape(version)}"$', init, re.MULTILINE), f"{package}: {version}"
    assert (folder / "README.md").is_file()


def test_images_name_the_libraries_at_their_versions() -> None:
    from llmft.flyte.images import LIBRARIES

    for name, version in LIBRARIES.items():
        folder, _ = PACKAGES[name]
        assert build_version(folder, name) == version, name
