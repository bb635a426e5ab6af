"""Each package states its version in three places that must agree: the python_distribution in its BUILD file, its
`__version__`, and the newest entry of its CHANGELOG. Image pins agree with the lockfile's requirements."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PACKAGES = {
    "llmft-proto": (ROOT / "proto", None),
    "llmft-core": (ROOT / "libs/core", "llmft/core"),
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


def test_image_pins_match_the_requirements() -> None:
    from llmft.core.images import PINS

    requirements = {}
    for line in (ROOT / "3rdparty/python/requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            requirements[name.strip().lower().replace("_", "-")] = version.strip()
    for name, version in PINS.items():
        assert requirements.get(name.lower().replace("_", "-")) == version, name
