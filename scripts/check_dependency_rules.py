"""Shows that Pants catches each kind of forbidden import: writes probe files that break (and keep) the dependency rules
of the root BUILD file, runs `pants lint --only=dependency-rules` on them, and checks that exactly the forbidden
imports are reported. The probes are removed afterwards, whatever happens. Exits non-zero naming each difference.

    python scripts/check_dependency_rules.py        (from the repository root; CI runs it after `pants lint`)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE_STAGE = "zz_probe"

# probe file -> its source, and the dependencies Pants must deny (the rest of its imports are allowed).
PROBES: dict[str, tuple[str, set[str]]] = {
    # A stage's core: another stage, flytekit, the Flyte library are denied; the core library and contracts are not.
    f"stages/{PROBE_STAGE}/src/llmft/{PROBE_STAGE}/core.py": (
        "import flytekit\n"
        "from llmft.core.fingerprint import fingerprint_text\n"
        "from llmft.flyte.types import DatasetDir\n"
        "from llmft.proto.data.v1 import dataset_pb2\n"
        "from llmft.train_cpt.packing import pack_blocks\n",
        {
            "3rdparty/python:reqs#flytekit",
            "libs/flyte/src/llmft/flyte/types.py:lib",
            "stages/train_cpt/src/llmft/train_cpt/packing.py:lib",
        },
    ),
    # A stage's Flyte face: the Flyte library and its own core are allowed, another stage is not.
    f"stages/{PROBE_STAGE}/src/llmft/{PROBE_STAGE}/tasks.py": (
        "from flytekit import task\n"
        f"from llmft.{PROBE_STAGE}.core import fingerprint_text\n"
        "from llmft.flyte.types import DatasetDir\n"
        "from llmft.train_sft.tasks import train\n",
        {"stages/train_sft/src/llmft/train_sft/tasks.py:lib"},
    ),
    # A stage's tests: its own stage and the fixtures are allowed, another stage is not.
    f"stages/{PROBE_STAGE}/tests/test_probe.py": (
        f"from llmft.{PROBE_STAGE}.core import fingerprint_text\n"
        "from llmft.testing import write_text_dataset\n"
        "from llmft.data.build import build_dataset\n",
        {"stages/data/src/llmft/data/build.py:lib"},
    ),
    # The core library: flytekit, the Flyte library and the stages are denied.
    "libs/core/src/llmft/core/zz_probe.py": (
        "import flytekitplugins.kfpytorch\n"
        "from llmft.flyte.decks import publish\n"
        "from llmft.serve.batch import shard\n"
        "import torch\n",
        {
            "3rdparty/python:reqs#flytekitplugins-kfpytorch",
            "libs/flyte/src/llmft/flyte/decks.py:lib",
            "stages/serve/src/llmft/serve/batch.py:lib",
        },
    ),
    # The Flyte library: a stage is denied.
    "libs/flyte/src/llmft/flyte/zz_probe.py": (
        "from llmft.core.training import read_artifact\nfrom llmft.rlhf.tasks import dpo\n",
        {"stages/rlhf/src/llmft/rlhf/tasks.py:lib"},
    ),
    # Orchestration: stages' cores and any logic library are denied; tasks modules and flytekit are allowed.
    "orchestration/src/llmft/orchestration/zz_probe.py": (
        "from flytekit import workflow\n"
        "from llmft.data.tasks import build\n"
        "from llmft.data.build import build_dataset\n"
        "from llmft.core.datasets import read_manifest\n"
        "import torch\n",
        {
            "stages/data/src/llmft/data/build.py:lib",
            "libs/core/src/llmft/core/datasets.py:lib",
            "3rdparty/python:reqs#torch",
        },
    ),
}
PROBE_BUILDS = {
    f"stages/{PROBE_STAGE}/src/BUILD": 'python_sources(name="lib", sources=["llmft/**/*.py"])\n',
    f"stages/{PROBE_STAGE}/tests/BUILD": 'python_tests(name="tests")\n',
}
DENIAL = re.compile(r"^\s+\S+ (?P<origin>\S+) -> \S+ (?P<dependency>\S+)$")


def denied(output: str) -> set[tuple[str, str]]:
    """(origin file, dependency address) of every denial Pants printed."""
    found = set()
    for line in output.splitlines():
        match = DENIAL.match(line)
        if match:
            origin = match["origin"].split(":")[0]
            dependency = match["dependency"]
            if ":../" in dependency:  # a file target: "dir/file.py:../../lib" -> "dir/file.py:lib"
                dependency = dependency.split(":")[0] + ":" + dependency.rsplit("/", 1)[1]
            found.add((origin, dependency))
    return found


def main() -> int:
    written = []
    try:
        for path, text in {**PROBE_BUILDS, **{p: t for p, (t, _) in PROBES.items()}}.items():
            target = ROOT / path
            if target.exists():
                raise SystemExit(f"{path}: exists already; a probe would overwrite it")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            written.append(target)
        run = subprocess.run(
            [str(ROOT / "pants"), "lint", "--only=dependency-rules", *PROBES],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    finally:
        for target in written:
            target.unlink(missing_ok=True)
        shutil.rmtree(ROOT / "stages" / PROBE_STAGE, ignore_errors=True)
    output = run.stdout + run.stderr
    expected = {(origin, dep) for origin, (_, deps) in PROBES.items() for dep in deps}
    found = denied(output)
    problems = [f"not caught: {origin} -> {dep}" for origin, dep in sorted(expected - found)]
    problems += [f"denied but allowed by the rules: {origin} -> {dep}" for origin, dep in sorted(found - expected)]
    if run.returncode == 0:
        problems.append("pants lint passed with forbidden imports in the probes")
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print(output[-4000:], file=sys.stderr)
        return 1
    print(f"dependency rules: pants lint caught all {len(expected)} forbidden imports of {len(PROBES)} probes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
