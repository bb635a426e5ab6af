"""The command line every training stage shares: a TrainingRequest from a YAML/JSON file (proto field names; a file
holding only a recipe is accepted) with flag overrides, a dataset folder in, a model folder out. Errors in the request,
recipe or data print one line naming the field and exit with status 2, leaving no output folder."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format

from llmft.core.datasets import DatasetKindError
from llmft.core.files import DuplicateKeyError, load_yaml, unknown_key_problems
from llmft.core.models import ModelNotFoundError
from llmft.core.recipe import RecipeError, explicit_zero_problems
from llmft.core.staging import check_output_folder, make_staging_dir
from llmft.proto.training.v1 import training_pb2

USER_ERRORS = (RecipeError, DatasetKindError, ModelNotFoundError, FileNotFoundError, FileExistsError, ValueError)


def load_training_request(path: Path) -> training_pb2.TrainingRequest:
    try:
        data = load_yaml(path) or {}
    except DuplicateKeyError as error:
        raise RecipeError(str(error)) from error
    except (OSError, yaml.YAMLError) as error:
        raise RecipeError(f"{path}: cannot read: {error}") from error
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: expected a mapping of TrainingRequest fields")
    request = training_pb2.TrainingRequest()
    known = {f.name for f in training_pb2.TrainingRequest.DESCRIPTOR.fields}
    if not set(data) & known:
        data = {"recipe": data}
    data.setdefault("recipe", {}).setdefault("packing", True)
    problems = unknown_key_problems(data, training_pb2.TrainingRequest.DESCRIPTOR)
    problems += explicit_zero_problems(data, training_pb2.TrainingRequest.DESCRIPTOR)
    if problems:
        raise RecipeError(f"{path}: " + "; ".join(problems))
    try:
        json_format.ParseDict(data, request)
    except json_format.ParseError as error:
        raise RecipeError(f"{path}: {error}") from error
    return request


def training_parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", type=Path, help="TrainingRequest (or TrainingRecipe) as YAML/JSON; see examples/")
    p.add_argument("--data", type=Path, required=True, help="dataset folder written by llmft.data")
    p.add_argument("--out", type=Path, required=True, help="model folder to write (must not exist or be empty)")
    p.add_argument(
        "--base-model",
        help="preset (llmft/tiny-llama, llmft/small-llama, smollm2-135m-instruct), local folder, .gguf file or Hub id",
    )
    p.add_argument("--base-model-dir", type=Path, help="an upstream llmft model folder to start from")
    p.add_argument("--checkpoint-dir", type=Path, help="where checkpoints go; a run finding one there resumes")
    p.add_argument("--max-steps", type=int, help="override recipe.schedule.max_steps")
    p.add_argument("--report", type=Path, help="also write the HTML training report here")
    return p


DEFAULT_BASE_MODEL = "llmft/tiny-llama"


def apply_model_and_steps(request: Any, args: argparse.Namespace) -> None:
    """The command line's --base-model and --max-steps over a request's (any request message with `base_model` and
    `recipe`); the built-in tiny preset when neither the request nor --base-model-dir names a base."""
    if args.base_model:
        request.base_model = args.base_model
    if not request.base_model and not args.base_model_dir:
        request.base_model = DEFAULT_BASE_MODEL
    if args.max_steps is not None:
        if args.max_steps <= 0:
            raise RecipeError(f"--max-steps: must be > 0, got {args.max_steps}; leave it out to train for the epochs")
        request.recipe.schedule.max_steps = args.max_steps


def request_from_args(args: argparse.Namespace) -> training_pb2.TrainingRequest:
    request = load_training_request(args.config) if args.config else training_pb2.TrainingRequest()
    request.recipe.packing = request.recipe.packing if args.config else True
    apply_model_and_steps(request, args)
    return request


@contextmanager
def staged_output(out: Path) -> Iterator[Path]:
    """A command's output folder, written in a staging folder beside `out` and moved into place only when the
    command succeeds, so a failed or killed run leaves no half-written `out`. Refuses a non-empty `out`; removes the
    leftovers of earlier killed runs first (saying so on stderr); an llmft artifact in the output gets `out` as its
    uri."""
    from llmft.core.training import relocate_artifact, replace_dir

    out = Path(out)
    check_output_folder(out)
    staging = make_staging_dir(out)
    try:
        staged = staging / "output"
        yield staged
        if staged.exists():
            replace_dir(staged, out)
            relocate_artifact(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def run_training_cli(argv: Sequence[str] | None, prog: str, description: str, train: Callable[..., Any]) -> int:
    """Parses arguments, trains into a staging folder next to --out and moves it into place on success."""
    from llmft.core.distributed import under_launcher
    from llmft.core.training import read_artifact

    args = training_parser(prog, description).parse_args(argv)
    out: Path = args.out
    try:
        request = request_from_args(args)
        with staged_output(out) as staged:
            result = train(
                request,
                args.data,
                staged,
                base_model_dir=args.base_model_dir,
                checkpoint_dir=args.checkpoint_dir,
                distributed=under_launcher(),
            )
    except USER_ERRORS as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    artifact = read_artifact(out) or result.artifact
    if args.report and result.report_html:
        args.report.write_text(result.report_html, encoding="utf-8")
    if artifact.fingerprint:
        m = artifact.metrics
        print(
            f"held-out loss {m.eval_before.loss:.4f} -> {m.eval_after.loss:.4f} "
            f"(perplexity {m.eval_before.perplexity:.1f} -> {m.eval_after.perplexity:.1f}); "
            f"{m.steps} steps, {m.tokens_per_second:.0f} tokens/s; model in {out}"
        )
        print(json_format.MessageToJson(artifact, sort_keys=True))
    return 0
