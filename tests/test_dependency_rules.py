from pathlib import Path

from architecture import import_cycles, violations

ROOT = Path(__file__).resolve().parents[1]


def test_the_repository_keeps_the_dependency_rules() -> None:
    assert violations(ROOT) == []


def test_no_package_has_an_import_cycle() -> None:
    assert import_cycles(ROOT) == []


def test_an_import_cycle_is_found_even_through_a_lazy_import(tmp_path: Path) -> None:
    core = tmp_path / "libs/core/src/llmft/core"
    write(core / "__init__.py", "")
    write(core / "a.py", "from llmft.core.b import thing\n")
    write(core / "b.py", "from llmft.core import c\n")
    write(core / "c.py", "def f():\n    from llmft.core.a import other\n")  # hidden from the interpreter, still a cycle
    write(core / "d.py", "from llmft.core import a, c\n")  # imports into the cycle, is not part of it
    flyte = tmp_path / "libs/flyte/src/llmft/flyte"
    write(flyte / "x.py", "import llmft.core.a\nfrom llmft.flyte.y import z\n")
    write(flyte / "y.py", "from llmft.core import a\n")  # another package's module: not this package's cycle
    write(tmp_path / "stages/alpha/src/llmft/alpha/p.py", "from llmft.alpha import q\n")
    write(tmp_path / "stages/alpha/src/llmft/alpha/q.py", "import llmft.alpha.p\n")
    assert import_cycles(tmp_path) == [
        "libs/core: llmft.core.a -> llmft.core.b -> llmft.core.c -> llmft.core.a",
        "stages/alpha: llmft.alpha.p -> llmft.alpha.q -> llmft.alpha.p",
    ]


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_each_kind_of_violation_is_caught(tmp_path: Path) -> None:
    for stage in ("alpha", "beta"):
        write(tmp_path / "stages" / stage / "src" / "llmft" / stage / "__init__.py", "")
    write(
        tmp_path / "stages/alpha/src/llmft/alpha/core.py",
        "from llmft.beta import thing\nimport flytekit\nfrom llmft.flyte.types import DatasetDir\n"
        "from llmft.core import fingerprint\n",
    )
    write(
        tmp_path / "stages/alpha/src/llmft/alpha/tasks.py",
        "import flytekit\nfrom llmft.core import x\nfrom llmft.flyte import images\nfrom llmft.beta.tasks import t\n",
    )
    write(tmp_path / "stages/alpha/tests/test_a.py", "import llmft.beta.core\nfrom llmft.testing import f\n")
    write(
        tmp_path / "libs/core/src/llmft/core/models.py",
        "from flytekit import task\nfrom llmft.alpha import y\nimport llmft.flyte.training\n",
    )
    write(
        tmp_path / "libs/flyte/src/llmft/flyte/types.py", "from flytekit import task\nfrom llmft.beta.core import z\n"
    )
    write(
        tmp_path / "libs/testing/llmft/testing.py", "from llmft.core import datasets\nfrom llmft.alpha.core import c\n"
    )
    write(
        tmp_path / "orchestration/src/llmft/orchestration/wf.py",
        "from flytekit import workflow\nfrom llmft.alpha.tasks import t\nfrom llmft.flyte.decks import s\n"
        "from llmft.alpha.core import c\nimport torch\nfrom llmft.core.datasets import read_manifest\n"
        "import yaml\nfrom llmft.core.fingerprint import short\nfrom google.protobuf import json_format\nimport os\n",
    )
    found = violations(tmp_path)
    assert found == [
        "stages/alpha/src/llmft/alpha/core.py:1: stage alpha imports another stage (llmft.beta.thing)",
        "stages/alpha/src/llmft/alpha/core.py:2: stage alpha's core imports flytekit; only its tasks module may",
        "stages/alpha/src/llmft/alpha/core.py:3: stage alpha's core imports llmft.flyte.types.DatasetDir; only its "
        "tasks module may",
        "stages/alpha/src/llmft/alpha/tasks.py:4: stage alpha imports another stage (llmft.beta.tasks.t)",
        "stages/alpha/tests/test_a.py:1: stage alpha imports another stage (llmft.beta.core)",
        "libs/core/src/llmft/core/models.py:1: llmft.core imports flytekit.task; it is pure ML, Flyte lives in "
        "llmft.flyte",
        "libs/core/src/llmft/core/models.py:2: llmft.core imports a stage or orchestration (llmft.alpha.y)",
        "libs/core/src/llmft/core/models.py:3: llmft.core imports llmft.flyte.training; it is pure ML, Flyte lives in "
        "llmft.flyte",
        "libs/flyte/src/llmft/flyte/types.py:2: llmft.flyte imports a stage or orchestration (llmft.beta.core.z)",
        "libs/testing/llmft/testing.py:2: the test fixtures import llmft.alpha.core.c; they build on llmft.core alone",
        "orchestration/src/llmft/orchestration/wf.py:4: orchestration imports llmft.alpha.core.c; only stages' "
        "tasks modules are allowed",
        "orchestration/src/llmft/orchestration/wf.py:5: orchestration imports torch; it holds no training, data or "
        "serving logic",
        "orchestration/src/llmft/orchestration/wf.py:6: orchestration imports llmft.core.datasets.read_manifest; it "
        "holds no training, data or serving logic",
    ]
