"""Every stage's image, rendered with flytekit's default builder (the Dockerfile and the files it copies, no Docker
daemon): it installs that stage's wheel at its version, the llmft libraries' wheels, and exactly the third-party
packages those wheels declare, at the lockfile's versions. No image carries another stage's wheel.

The wheels are the ones `pants package` builds (this test's runtime_package_dependencies); their own metadata says
what they need."""

from __future__ import annotations

import importlib
import re
import shutil
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "3rdparty/python/default.lock"
LIBRARIES = ("llmft-proto", "llmft-core", "llmft-flyte")
# Each stage's distribution and the module whose IMAGE its tasks run on.
IMAGES = {
    "llmft-data": "llmft.data.tasks",
    "llmft-train-cpt": "llmft.train_cpt.tasks",
    "llmft-train-sft": "llmft.train_sft.tasks",
    "llmft-rlhf": "llmft.rlhf.tasks",
    "llmft-serve": "llmft.serve.tasks",
    "llmft-orchestration": "llmft.orchestration.image",
}
STAGES = ("llmft-data", "llmft-train-cpt", "llmft-train-sft", "llmft-rlhf", "llmft-serve")
# The pipeline's own tasks (the dynamic workflow imports every stage's tasks module) run on every wheel.
CARRIED = {"llmft-orchestration": STAGES}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions() -> dict[str, str]:
    """The lockfile's version of each package, without a local label: the lock holds torch's CPU build
    (2.13.0+cpu), an image pins 2.13.0 so a GPU node gets the CUDA build of the same release."""
    import json

    text = "\n".join(line for line in LOCK.read_text().splitlines() if not line.startswith("//"))
    return {
        normalized(r["project_name"]): r["version"].split("+")[0]
        for resolve in json.loads(text)["locked_resolves"]
        for r in resolve["locked_requirements"]
    }


def built_wheels() -> dict[str, Path]:
    """Distribution name -> wheel, from this test's sandbox (Pants) or dist/ (a plain pytest after `pants package`)."""
    found: dict[str, Path] = {}
    for folder in (Path.cwd(), ROOT / "dist"):
        for wheel in folder.rglob("llmft_*-py3-none-any.whl"):
            found.setdefault(normalized(wheel.name.split("-")[0]), wheel)
    if not found:
        pytest.fail("no llmft wheels found: build them with `./pants package ::`")
    return found


def requires(wheel: Path) -> set[str]:
    """The names of the distributions a wheel declares (Requires-Dist), normalized."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode().splitlines()
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:")]
    return {normalized(re.split(r"[ (<>=!~;\[]", name)[0]) for name in names}


@pytest.fixture(scope="module")
def wheels() -> dict[str, Path]:
    return built_wheels()


@pytest.fixture
def build_root(tmp_path: Path, wheels: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where `pyflyte package` would run: the wheels under dist/."""
    (tmp_path / "dist").mkdir()
    for wheel in wheels.values():
        shutil.copy(wheel, tmp_path / "dist" / wheel.name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("distribution", sorted(IMAGES))
def test_image_installs_its_wheels_and_exactly_their_pinned_requirements(
    distribution: str, wheels: dict[str, Path], build_root: Path, tmp_path: Path
) -> None:
    from flytekit.image_spec.default_builder import create_docker_context

    image = importlib.import_module(IMAGES[distribution]).IMAGE
    context = tmp_path / "context"
    context.mkdir()
    create_docker_context(image, context)

    expected = {distribution, *LIBRARIES, *CARRIED.get(distribution, ())}
    shipped = {wheel.name for wheel in (context / "dist").iterdir()}
    assert shipped == {wheels[name].name for name in expected}
    dockerfile = (context / "Dockerfile").read_text()
    install = next(line for line in dockerfile.splitlines() if "uv pip install --no-deps" in line)
    assert sorted(re.findall(r"/root/dist/(\S+\.whl)", install)) == sorted(shipped)
    for wheel in shipped:
        assert f"COPY --chown=flytekit dist/{wheel} /root/dist/" in dockerfile

    declared = set().union(*(requires(wheels[name]) for name in expected))
    third_party = {name for name in declared if not name.startswith("llmft-")}
    needed = {name for name in declared if name.startswith("llmft-")}
    assert needed <= expected, f"the wheels need {needed - expected}, which the image lacks"
    pins = dict(line.split("==") for line in (context / "requirements_uv.txt").read_text().split())
    assert {normalized(name) for name in pins} == third_party
    locked = locked_versions()
    assert {normalized(name): version for name, version in pins.items()} == {name: locked[name] for name in third_party}


def test_no_stage_image_carries_another_stage(wheels: dict[str, Path], build_root: Path) -> None:
    for distribution in STAGES:
        image = importlib.import_module(IMAGES[distribution]).IMAGE
        names = {Path(path).name for path in image.copy}
        others = {wheels[other].name for other in STAGES if other != distribution}
        assert not names & others, f"{distribution}'s image carries {names & others}"
        assert wheels[distribution].name in names


def test_a_stage_wheel_installs_at_the_stage_version(wheels: dict[str, Path]) -> None:
    for distribution, module in IMAGES.items():
        version = importlib.import_module(module.rsplit(".", 1)[0]).__version__
        assert wheels[distribution].name == f"{distribution.replace('-', '_')}-{version}-py3-none-any.whl"


def test_image_dist_folder_must_be_relative(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmft.flyte.images import dist_dir

    monkeypatch.setenv("LLMFT_DIST_DIR", "/abs/dist")
    with pytest.raises(ValueError, match="LLMFT_DIST_DIR: '/abs/dist' must be a relative path"):
        dist_dir()


def test_no_wheel_declares_flyte_in_core_or_stubs_and_test_tools_anywhere(wheels: dict[str, Path]) -> None:
    for name, wheel in wheels.items():
        declared = requires(wheel)
        assert not {d for d in declared if d.startswith("types-") or d in {"pytest", "mypy", "mypy-protobuf"}}, name
    for library in ("llmft-proto", "llmft-core"):
        assert not {d for d in requires(wheels[library]) if d.startswith("flytekit")}, library
