"""Running workflows on this machine so that reruns hit the cache and users find the results: `python -m
llmft.orchestration run --config F [--check]`. A local run works in a persistent sandbox and prunes dead cache entries
first (llmft.orchestration.sandbox), notes where each task wrote its Deck (`DeckRecorder`) to copy them where a user
looks, and collects the run under runs/<name>/. `--check` prints the plan (llmft.orchestration.plan) instead."""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from llmft.orchestration.config import ConfigError, check_local_run, load_config
from llmft.orchestration.report import report_html, report_text
from llmft.orchestration.sandbox import persistent_sandbox, prune_local_cache
from llmft.proto.pipeline.v1.pipeline_pb2 import PipelineReport, PipelineRequest
from llmft.serve.tasks import space_for_local_model

_DECK_LINE = re.compile(r"(\S+) task creates flyte deck html to file://(\S+deck\.html)")


_DECK_TAB = re.compile(r'handleLinkClick\(this\)">([^<]+)')
# flytekit's own Deck tabs; a task's report is any other.
_FLYTEKIT_TABS = ("Timeline", "Source Code", "Dependencies", "Input", "Output", "Pandera Report")


def deck_title(html: str) -> str:
    """The title of the last report a task published in its Deck (flytekit's local Decks also carry the Decks of
    the tasks before it in the same run, in order), or ""."""
    titles = [t.strip() for t in _DECK_TAB.findall(html) if not t.strip().startswith(_FLYTEKIT_TABS)]
    return titles[-1] if titles else ""


class DeckRecorder(logging.Handler):
    """Collects, from flytekit's log line for each Deck a local task writes, a file name and the Deck's path. The log
    names a task by the last part of its name only (`train` for both CPT and SFT); such a name, once taken, is told
    apart by the task's report title (`train-sft`). The workflow's own Deck (flytekit calls it "local") is
    `workflow`."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.decks: dict[str, Path] = {}

    def emit(self, record: logging.LogRecord) -> None:
        match = _DECK_LINE.search(record.getMessage())
        if not match:
            return
        name, path = ("workflow" if match.group(1) == "local" else match.group(1)), Path(match.group(2))
        # The workflow's Deck is written again as it grows: the latest is the whole one.
        if name != "workflow" and name in self.decks and self.decks[name] != path and path.is_file():
            title = deck_title(path.read_text(encoding="utf-8"))
            name = f"{name}-{title}" if title else f"{name}-{len(self.decks)}"
        self.decks[re.sub(r"[^A-Za-z0-9_.-]+", "-", name).lower()] = path

    @contextlib.contextmanager
    def recording(self) -> Iterator[DeckRecorder]:
        from flytekit.loggers import logger

        level = logger.level
        quiet = [(handler, handler.level) for handler in logger.handlers]
        for handler in logger.handlers:  # keep the console as it was while this handler hears INFO
            handler.setLevel(max(handler.level, level) if handler.level else level)
        logger.addHandler(self)
        logger.setLevel(min(level, logging.INFO) if level else logging.INFO)
        try:
            yield self
        finally:
            logger.removeHandler(self)
            logger.setLevel(level)
            for handler, previous in quiet:
                handler.setLevel(previous)


def _replace_folder(source: Path, target: Path) -> None:
    """Copies `source` to `target` whole: into a sibling first, then renamed over the old one."""
    staging = target.with_name(f".{target.name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def collect_run(
    run_dir: Path, model: Path, space: Path, report: PipelineReport, decks: dict[str, Path]
) -> dict[str, Path]:
    """Puts a finished run where users look: `model/`, `space/` (its app loads `model/` unless the model was
    published to a Hub), `decks/<task>.html` (the Decks of the tasks that ran this time; a cache hit keeps the
    earlier run's), `report.json` and `report.html`. Returns what went where."""
    run_dir.mkdir(parents=True, exist_ok=True)
    _replace_folder(model, run_dir / "model")
    _replace_folder(space, run_dir / "space")
    # Unless the model is on the Hub (a dry run writes file:// URLs), the local launch serves the run's model.
    if not report.publish.model_url.startswith(("https://", "http://")):
        space_for_local_model(run_dir / "space", run_dir / "model")
    (run_dir / "decks").mkdir(exist_ok=True)
    for name, path in decks.items():
        if path.is_file():
            shutil.copyfile(path, run_dir / "decks" / f"{name}.html")
    (run_dir / "report.json").write_text(json_format.MessageToJson(report, indent=2) + "\n", encoding="utf-8")
    (run_dir / "report.html").write_text(report_html(report), encoding="utf-8")
    return {
        "model": run_dir / "model",
        "space": run_dir / "space",
        "decks": run_dir / "decks",
        "report": run_dir / "report.html",
    }


RUN_HELP = """The whole pipeline of a config on this machine (flytekit's local executor), with its outputs under
runs/<name>/ and the paths printed at the end. A rerun reuses every cached step whose inputs and code are unchanged."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m llmft.orchestration", description=RUN_HELP)
    commands = p.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the pipeline of a config file here")
    run.add_argument("--config", required=True, type=Path, help="a PipelineRequest as YAML (see examples/demo.yaml)")
    run.add_argument(
        "--runs-dir", type=Path, default=Path("runs"), help="where runs/<name>/ and the cached blobs go (runs/)"
    )
    run.add_argument(
        "--check",
        action="store_true",
        help="check the config and print the plan (each step: from the cache or runs, its requests; where the outputs "
        "go), then stop: nothing is trained and nothing written under --runs-dir",
    )
    return p


def run(config: Path, runs_dir: Path, build: Callable[[PipelineRequest], Any], check: bool = False) -> int:
    """Runs the pipeline `build(request)` makes from the config here; 2 for a bad config (nothing run or written).
    With `check`, prints the plan instead (llmft.orchestration.plan) and runs no stage."""
    try:
        request = load_config(config)
        check_local_run(request, config)
    except ConfigError as error:
        print(f"error: {error.listed()}", file=sys.stderr)
        return 2
    if request.publish.local_dir and not Path(request.publish.local_dir).is_absolute():
        request.publish.local_dir = str(Path(request.publish.local_dir).resolve())
    if check:
        from llmft.orchestration.plan import plan_steps, plan_text

        print(plan_text(request, plan_steps(build(request)), runs_dir, config))
        return 0
    run_dir = runs_dir / request.name
    started = time.perf_counter()
    with persistent_sandbox(runs_dir / ".flyte"):
        stale = prune_local_cache()
        if stale:
            print(f"{len(stale)} cached step(s) lost their outputs and will run again", flush=True)
        with DeckRecorder().recording() as decks:
            outputs = build(request)()
        paths = collect_run(
            run_dir, Path(outputs.model.download()), Path(outputs.space.download()), outputs.report, decks.decks
        )
    print(f"\n{report_text(outputs.report)}\n")
    print(f"Pipeline {request.name!r} finished in {time.perf_counter() - started:.0f} s.")
    for what, path in paths.items():
        print(f"  {what + ':':<8} {path}")
    if request.publish.local_dir and outputs.report.publish.model_url:
        print(f"  {'hub:':<8} {request.publish.local_dir} (dry run: what the upload would send)")
    print(f"Chat with the model locally: cd {paths['space']} && python app.py")
    return 0


def main(build: Callable[[PipelineRequest], Any], argv: list[str] | None = None) -> int:
    """`python -m llmft.orchestration run --config my.yaml [--runs-dir runs]`, with the workflow builder
    llmft.orchestration gives."""
    args = parser().parse_args(argv)
    return run(args.config, args.runs_dir, build, check=args.check)
