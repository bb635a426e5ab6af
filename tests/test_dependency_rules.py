from pathlib import Path

from architecture import violations

ROOT = Path(__file__).resolve().parents[1]


def test_the_repository_keeps_the_dependency_rules() -> None:
    assert violations(ROOT) == []


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_each_kind_of_violation_is_caught(tmp_path: Path) -> None:
    for stage in ("alpha", "beta"):
        write(tmp_path / "stages" / stage / "src" / "llmft" / stage / "__init__.py", "")
    write(tmp_path / "stages/alpha/src/llmft/alpha/core.py", "from llmft.beta import thing\nimport flytekit\n")
    write(tmp_path / "stages/alpha/src/llmft/alpha/tasks.py", "import flytekit\nfrom llmft.core import x\n")
    write(tmp_path / "stages/alpha/tests/test_a.py", "import llmft.beta.core\n")
    write(tmp_path / "libs/core/src/llmft/core/models.py", "from flytekit import task\nfrom llmft.alpha import y\n")
    write(tmp_path / "libs/core/src/llmft/core/flyte.py", "from flytekit import task\n")
    write(
        tmp_path / "orchestration/src/llmft/orchestration/wf.py",
        "from flytekit import workflow\nfrom llmft.alpha.tasks import t\n"
        "from llmft.alpha.core import c\nimport torch\n",
    )
    found = violations(tmp_path)
    assert found == [
        "stages/alpha/src/llmft/alpha/core.py:1: stage alpha imports another stage (llmft.beta.thing)",
        "stages/alpha/src/llmft/alpha/core.py:2: stage alpha's core imports flytekit; only its tasks module may",
        "stages/alpha/tests/test_a.py:1: stage alpha imports another stage (llmft.beta.core)",
        "libs/core/src/llmft/core/models.py:1: llmft.core imports flytekit.task outside llmft/core/flyte.py",
        "libs/core/src/llmft/core/models.py:2: llmft.core imports a stage or orchestration (llmft.alpha.y)",
        "orchestration/src/llmft/orchestration/wf.py:3: orchestration imports llmft.alpha.core.c; only stages' "
        "tasks modules are allowed",
        "orchestration/src/llmft/orchestration/wf.py:4: orchestration imports torch; it holds no logic of its own",
    ]
