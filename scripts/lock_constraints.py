"""Prints pip constraints (name==version) for every package pinned in the Pants lockfile, so a plain pip venv
(scripts/venv.sh) gets exactly the versions Pants tests with."""

from __future__ import annotations

import json
import sys
from pathlib import Path

LOCK = Path(__file__).resolve().parents[1] / "3rdparty/python/default.lock"


def constraints(lock: Path = LOCK) -> list[str]:
    # The lockfile opens with a header of // comment lines (Pants metadata), then the pex lock as JSON.
    text = "\n".join(line for line in lock.read_text().splitlines() if not line.startswith("//"))
    data = json.loads(text)
    pins = set()
    for resolve in data["locked_resolves"]:
        for requirement in resolve["locked_requirements"]:
            pins.add(f"{requirement['project_name']}=={requirement['version']}")
    return sorted(pins)


if __name__ == "__main__":
    sys.stdout.write("\n".join(constraints()) + "\n")
