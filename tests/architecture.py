"""The dependency rules of docs/ARCHITECTURE.md as code, read from the import statements: a second guard beside the
Pants rules in the root BUILD file. `violations(root)` walks the source tree and names every import that breaks a
rule."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

FLYTE_ROOTS = {"flytekit", "flytekitplugins"}
FLYTE_LIBRARY = "llmft.flyte"
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


def _is_flyte(module: str) -> bool:
    return module.split(".")[0] in FLYTE_ROOTS or module == FLYTE_LIBRARY or module.startswith(FLYTE_LIBRARY + ".")


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
                    if folder == "src" and not is_face and _is_flyte(module):
                        report(path, line, f"stage {stage}'s core imports {module}; only its tasks module may")
    libraries = {"core": "llmft.core", "flyte": FLYTE_LIBRARY}
    for folder, name in libraries.items():
        for path in sorted((root / "libs" / folder / "src").rglob("*.py")):
            for line, module in imports(path):
                if _stage_of(module, stages) or module.startswith("llmft.orchestration"):
                    report(path, line, f"{name} imports a stage or orchestration ({module})")
                if name == "llmft.core" and _is_flyte(module):
                    report(path, line, f"llmft.core imports {module}; it is pure ML, Flyte lives in llmft.flyte")
    for path in sorted((root / "libs" / "testing").rglob("*.py")):
        for line, module in imports(path):
            if _stage_of(module, stages) or _is_flyte(module) or module.startswith("llmft.orchestration"):
                report(path, line, f"the test fixtures import {module}; they build on llmft.core alone")
    for path in sorted((root / "orchestration" / "src").rglob("*.py")):
        for line, module in imports(path):
            head = module.split(".")[0]
            owner = _stage_of(module, stages)
            if owner:
                if module.split(".")[2:3] != ["tasks"]:
                    report(path, line, f"orchestration imports {module}; only stages' tasks modules are allowed")
            elif module.startswith(("llmft.proto", "llmft.orchestration", FLYTE_LIBRARY)):
                continue
            elif head not in ORCHESTRATION_ALLOWED_ROOTS:
                report(path, line, f"orchestration imports {module}; it holds no logic of its own")
    return found
