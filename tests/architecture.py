"""The dependency rules of shared/DESIGN.md as code: which llmft packages (and which of their modules) may import
what. `violations(root)` walks the source tree and names every import that breaks a rule."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

FLYTE_ROOTS = {"flytekit", "flytekitplugins"}
# What orchestration may import: the contracts, the stages' Flyte faces, flytekit, and plumbing from the stdlib.
ORCHESTRATION_ALLOWED_ROOTS = {"__future__", "typing", "functools", "flytekit"}


def imports(path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                # `from llmft.x import y` may name a module y: check the longer name too.
                yield node.lineno, f"{node.module}.{alias.name}"


def stage_names(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "stages").iterdir() if (p / "src" / "llmft" / p.name).is_dir())


def _stage_of(module: str, stages: list[str]) -> str | None:
    parts = module.split(".")
    if len(parts) >= 2 and parts[0] == "llmft" and parts[1] in stages:
        return parts[1]
    return None


def violations(root: Path) -> list[str]:
    root = Path(root)
    stages = stage_names(root)
    found: list[str] = []

    def report(path: Path, line: int, message: str) -> None:
        found.append(f"{path.relative_to(root)}:{line}: {message}")

    for stage in stages:
        for folder in ("src", "tests"):
            for path in sorted((root / "stages" / stage / folder).rglob("*.py")):
                is_face = path.name == "tasks.py" and folder == "src"
                for line, module in imports(path):
                    other = _stage_of(module, stages)
                    if other and other != stage:
                        report(path, line, f"stage {stage} imports another stage ({module})")
                    if module.startswith("llmft.orchestration"):
                        report(path, line, f"stage {stage} imports orchestration ({module})")
                    if folder == "src" and not is_face and module.split(".")[0] in FLYTE_ROOTS:
                        report(path, line, f"stage {stage}'s core imports {module}; only its tasks module may")
    for path in sorted((root / "libs" / "core" / "src").rglob("*.py")):
        for line, module in imports(path):
            if _stage_of(module, stages) or module.startswith("llmft.orchestration"):
                report(path, line, f"llmft.core imports a stage or orchestration ({module})")
            if module.split(".")[0] in FLYTE_ROOTS and path.name != "flyte.py":
                report(path, line, f"llmft.core imports {module} outside llmft/core/flyte.py")
    for path in sorted((root / "orchestration" / "src").rglob("*.py")):
        for line, module in imports(path):
            head = module.split(".")[0]
            owner = _stage_of(module, stages)
            if owner:
                if module.split(".")[2:3] != ["tasks"]:
                    report(path, line, f"orchestration imports {module}; only stages' tasks modules are allowed")
            elif module.startswith(("llmft.proto", "llmft.orchestration")):
                continue
            elif head not in ORCHESTRATION_ALLOWED_ROOTS:
                report(path, line, f"orchestration imports {module}; it holds no logic of its own")
    return found
