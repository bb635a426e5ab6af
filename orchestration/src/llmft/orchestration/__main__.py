"""`python -m llmft.orchestration run --config my.yaml`: the whole pipeline of a config on this machine (flytekit's
local executor), with its outputs under runs/<name>/ and the paths printed at the end. A rerun reuses every cached
step whose inputs and code are unchanged."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from llmft.flyte.config import ConfigError, check_local_run, load_config
from llmft.flyte.local import DeckRecorder, collect_run, persistent_sandbox, prune_local_cache
from llmft.flyte.pipeline import report_text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m llmft.orchestration", description=__doc__)
    commands = p.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the pipeline of a config file here")
    run.add_argument("--config", required=True, type=Path, help="a PipelineRequest as YAML (see examples/demo.yaml)")
    run.add_argument(
        "--runs-dir", type=Path, default=Path("runs"), help="where runs/<name>/ and the cached blobs go (runs/)"
    )
    return p


def run(config: Path, runs_dir: Path) -> int:
    try:
        request = load_config(config)
        check_local_run(request)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if request.publish.local_dir and not Path(request.publish.local_dir).is_absolute():
        request.publish.local_dir = str(Path(request.publish.local_dir).resolve())
    from llmft.orchestration.pipeline import pipeline_workflow

    run_dir = runs_dir / request.name
    started = time.perf_counter()
    with persistent_sandbox(runs_dir / ".flyte"):
        stale = prune_local_cache()
        if stale:
            print(f"{len(stale)} cached step(s) lost their outputs and will run again", flush=True)
        with DeckRecorder().recording() as decks:
            outputs = pipeline_workflow(request)()
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


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run(args.config, args.runs_dir)


if __name__ == "__main__":
    sys.exit(main())
