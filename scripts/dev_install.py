"""Makes the development venv (scripts/venv.sh) see every llmft package as installed from source: one `.pth` line per
source root, and per package a `.dist-info` with the name, version and entry points its BUILD file's
python_distribution declares (so `llmft <stage>` and importlib.metadata work as with the wheels), plus the console
scripts. The BUILD files stay the one place that states them.

    python scripts/dev_install.py <site-packages> <bin>
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PTH = "llmft-sources.pth"
MARKER = "llmft-dev-source"


def literal(node: ast.expr) -> object:
    return ast.literal_eval(node)


def distributions(root: Path = ROOT) -> list[dict[str, object]]:
    """name, version, source root and entry points of every python_distribution in the repository's BUILD files."""
    found = []
    for build in sorted(root.glob("**/BUILD")):
        if any(part.startswith(".") or part in {"dist", "node_modules"} for part in build.relative_to(root).parts):
            continue
        for node in ast.walk(ast.parse(build.read_text(), filename=str(build))):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "python_distribution"):
                continue
            fields = {k.arg: k.value for k in node.keywords}
            artifact = fields["provides"]
            assert isinstance(artifact, ast.Call)
            meta = {k.arg: literal(k.value) for k in artifact.keywords}
            found.append(
                {
                    "name": meta["name"],
                    "version": meta["version"],
                    "source_root": build.parent,
                    "entry_points": literal(fields["entry_points"]) if "entry_points" in fields else {},
                }
            )
    return found


def install(site: Path, bin_dir: Path, root: Path = ROOT) -> list[str]:
    for old in site.glob("*.dist-info"):
        if (old / "INSTALLER").is_file() and (old / "INSTALLER").read_text().strip() == MARKER:
            for file in old.iterdir():
                file.unlink()
            old.rmdir()
    roots = []
    names = []
    for dist in distributions(root):
        name, version = str(dist["name"]), str(dist["version"])
        roots.append(str(dist["source_root"]))
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "INSTALLER").write_text(MARKER + "\n")
        groups = dist["entry_points"]
        assert isinstance(groups, dict)
        lines = []
        for group, points in groups.items():
            lines.append(f"[{group}]")
            lines += [f"{key} = {value}" for key, value in points.items()]
            if group == "console_scripts":
                for script, target in points.items():
                    module, function = target.split(":")
                    path = bin_dir / script
                    path.write_text(
                        f"#!{sys.executable}\nimport sys\nfrom {module} import {function}\n" f"sys.exit({function}())\n"
                    )
                    path.chmod(0o755)
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        names.append(f"{name} {version}")
    # Source roots: each package's, plus the test fixtures (benchmarks use them; no wheel ships them).
    roots.append(str(root / "libs" / "testing"))
    (site / PTH).write_text("\n".join(sorted(roots)) + "\n")
    return names


if __name__ == "__main__":
    for line in install(Path(sys.argv[1]), Path(sys.argv[2])):
        print(f"dev install: {line}", file=sys.stderr)
