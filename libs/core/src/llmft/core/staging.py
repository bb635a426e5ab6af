"""Staging folders: a command writes its output folder in a hidden folder beside it and moves it into place only when
it succeeds, so a failed or killed run leaves no half-written output. A staging folder names the process writing it
(host and pid), so the next run into the same output can tell a killed run's leftover from a live run's, and removes
the leftovers, saying so on stderr."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

OWNER_FILE = ".llmft-owner"
# A staging folder without an owner file (an older llmft's) is a leftover once it is this old.
UNOWNED_STALE_SECONDS = 600


def check_output_folder(out: Path) -> None:
    """Refuses an `out` that is a file or a non-empty folder: nothing is ever overwritten."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: is a file, not an output folder; nothing was overwritten")
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: output folder exists and is not empty; nothing was overwritten")


def _owner_alive(staging: Path) -> bool:
    try:
        owner = json.loads((staging / OWNER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return time.time() - staging.stat().st_mtime < UNOWNED_STALE_SECONDS
    if owner.get("host") != socket.gethostname():
        return True  # another machine's process: it cannot be checked from here
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, TypeError, ValueError):
        return True
    return True


def remove_stale_staging(out: Path) -> list[Path]:
    """Removes the staging folders of earlier runs into `out` whose process is gone (killed runs), saying so on
    stderr; returns them."""
    removed = []
    for staging in sorted(Path(out).parent.glob(f".{Path(out).name}-*")):
        if staging.is_dir() and not _owner_alive(staging):
            shutil.rmtree(staging, ignore_errors=True)
            print(f"removed {staging}: the staging folder of an earlier run that did not finish", file=sys.stderr)
            removed.append(staging)
    return removed


def make_staging_dir(out: Path) -> Path:
    """A new staging folder beside `out`, owned by this process, after removing killed runs' leftovers."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    owner = {"host": socket.gethostname(), "pid": os.getpid()}
    (staging / OWNER_FILE).write_text(json.dumps(owner), encoding="utf-8")
    return staging
