"""The dependency rules of docs/ARCHITECTURE.md as code, read from the import statements: a second guard beside the
Pants rules in the root BUILD file. `violations(root)` walks the source tree and names every import that breaks a
rule."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

FLYTE_ROOTS = {"flytekit", "flytekitplugins"}
FLYTE_LIBRARY = "llmft.flyte"
# What orchestration may import besides the contracts, the stages' Flyte faces and the Flyte library: the standard
# library, flytekit, the config's reader (PyYAML, protobuf's JSON mapping), and of llmft.core only the request checks
# and fingerprints that the config check and the report use.
ORCHESTRATION_ALLOWED_ROOTS = {*sys.stdlib_module_names, "flytekit", "flyteidl", "yaml"}
ORCHESTRATION_CORE = ("llmft.core.chat_templates", "llmft.core.recipe", "llmft.core.fingerprint", "llmft.core.files")


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


def _within(modules: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(module + "." for module in modules)


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
            elif module in ORCHESTRATION_CORE or module.startswith(_within(ORCHESTRATION_CORE)):
                continue
            elif head not in ORCHESTRATION_ALLOWED_ROOTS and not module.startswith("google.protobuf"):
                report(path, line, f"orchestration imports {module}; it holds no training, data or serving logic")
    return found


def _module_name(path: Path, source_root: Path) -> str:
    parts = list(path.relative_to(source_root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(path: Path, known: set[str]) -> set[str]:
    """The modules of `known` that `path` imports, at its top or inside a function (a lazy import still makes a
    cycle: it only hides it from the interpreter). `from a.b import c` imports a.b.c when that is a module, else a.b."""
    found: set[str] = set()
    for _, name in imports(path):
        candidates = [name, name.rsplit(".", 1)[0]] if "." in name else [name]
        for candidate in candidates:
            if candidate in known:
                found.add(candidate)
                break
    return found


def package_roots(root: Path) -> dict[str, Path]:
    """Each wheel's source root, by the folder it lives in."""
    roots = {f"libs/{p.name}": p / "src" for p in sorted((root / "libs").iterdir()) if (p / "src").is_dir()}
    roots.update({f"stages/{p.name}": p / "src" for p in sorted((root / "stages").iterdir()) if (p / "src").is_dir()})
    if (root / "orchestration" / "src").is_dir():
        roots["orchestration"] = root / "orchestration" / "src"
    return roots


def import_cycles(root: Path) -> list[str]:
    """Import cycles among the modules of each package ("No import cycles inside a package either", DESIGN.md), each
    as `package: a -> b -> a`, starting at its smallest module."""
    found: list[str] = []
    for package, source_root in package_roots(Path(root)).items():
        paths = {_module_name(p, source_root): p for p in sorted(source_root.rglob("*.py"))}
        graph = {module: sorted(_imported_modules(path, set(paths)) - {module}) for module, path in paths.items()}
        cycles = _cycles(graph)
        found += [f"{package}: {' -> '.join([*cycle, cycle[0]])}" for cycle in sorted(cycles)]
    return found


def _cycles(graph: dict[str, list[str]]) -> list[tuple[str, ...]]:
    """A cycle for each back edge a depth-first walk meets (a graph without any has no cycle), from its smallest
    module."""
    cycles: set[tuple[str, ...]] = set()
    done: set[str] = set()

    def walk(module: str, trail: list[str]) -> None:
        for imported in graph[module]:
            if imported in trail:
                cycle = trail[trail.index(imported) :]
                start = cycle.index(min(cycle))
                cycles.add(tuple(cycle[start:] + cycle[:start]))
            elif imported not in done:
                walk(imported, [*trail, imported])
        done.add(module)

    for module in graph:
        if module not in done:
            walk(module, [module])
    return sorted(cycles)
