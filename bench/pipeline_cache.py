"""The whole pipeline of the offline demo config: a first run (empty Flyte cache) against a rerun with nothing changed
(every cached step hits), each as a user starts it (`python -m llmft.orchestration run --config ...`, a fresh
process, imports included). Each repeat starts from an empty cache and runs/ folder.

    .venv/bin/python bench/pipeline_cache.py                  # 2 repeats of both arms (a first run is minutes)
    .venv/bin/python bench/pipeline_cache.py --repeats 3

Reported (medians, min..max over repeats):
- cached_rerun_ratio: rerun seconds / first-run seconds (goal: at most 0.05);
- demo_first_sentence_match: the served model's share of held-out answers whose first sentence equals the
  reference's (goal: at least 0.60), with every evaluated model's figure beside it;
- the stages' own training seconds from the run's report.
Writes bench/pipeline_cache.json with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import machine

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEMO = ROOT / "orchestration" / "src" / "llmft" / "orchestration" / "examples" / "demo.yaml"
GOALS = {"cached_rerun_ratio": 0.05, "demo_first_sentence_match": 0.60}


def timed_run(config: Path, root: Path) -> float:
    env = {**os.environ, "HOME": str(root / "home"), "LLMFT_CACHE": str(root / "llmft-cache")}
    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "llmft.orchestration", "run", "--config", str(config), "--runs-dir", str(root / "runs")],
        env=env, cwd=root, capture_output=True, text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        sys.exit(f"pipeline failed ({run.returncode}):\n{run.stderr[-4000:]}")
    return seconds


def repeat(config: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="llmft-bench-pipeline-") as scratch:
        root = Path(scratch)
        first = timed_run(config, root)
        rerun = timed_run(config, root)
        name = next((root / "runs").glob("*/report.json"))
        report = json.loads(name.read_text())
    models = {m["name"]: m.get("firstSentenceMatch", 0.0) for m in report["answers"].get("models", [])}
    return {
        "first_run_seconds": first,
        "rerun_seconds": rerun,
        "cached_rerun_ratio": rerun / first,
        "candidate": report.get("candidate", ""),
        "first_sentence_match": models,
        "demo_first_sentence_match": models.get(report.get("candidate", ""), 0.0),
        "questions": report["answers"].get("questions", 0),
        "stage_seconds": {s["name"]: s.get("seconds", 0.0) for s in report["stages"] if s.get("seconds")},
        "gate": report["gate"].get("reason", ""),
    }


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--config", type=Path, default=DEMO)
    parser.add_argument("--out", type=Path, default=HERE / "pipeline_cache.json")
    args = parser.parse_args()
    runs = []
    for i in range(args.repeats):
        runs.append(repeat(args.config))
        print(f"repeat {i + 1}: first {runs[-1]['first_run_seconds']:.0f} s, rerun {runs[-1]['rerun_seconds']:.1f} s",
              flush=True)  # fmt: skip
    summary = {key: spread([r[key] for r in runs]) for key in
               ("first_run_seconds", "rerun_seconds", "cached_rerun_ratio", "demo_first_sentence_match")}  # fmt: skip
    print(f"\n{'metric':<28} {'median':>10} {'min..max':>20} {'goal':>8}")
    for key, value in summary.items():
        goal = GOALS.get(key)
        goal_text = "" if goal is None else (f"<= {goal}" if key == "cached_rerun_ratio" else f">= {goal}")
        print(f"{key:<28} {value['median']:>10.3f} {value['min']:>9.3f}..{value['max']:<9.3f} {goal_text:>8}")
    print(
        f"baseline of the ratio: the first run, same config, same machine, same repeat "
        f"(served model: {runs[0]['candidate']}; every model evaluated: {runs[0]['first_sentence_match']})"
    )
    result = {
        "config": str(args.config.relative_to(ROOT) if args.config.is_relative_to(ROOT) else args.config),
        "repeats": args.repeats,
        "machine": machine(),
        "cached_rerun_ratio": summary["cached_rerun_ratio"]["median"],
        "demo_first_sentence_match": summary["demo_first_sentence_match"]["median"],
        "goals": GOALS,
        "summary": summary,
        "runs": runs,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
