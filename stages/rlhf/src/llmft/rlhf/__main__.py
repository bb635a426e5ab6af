"""Learning from preference pairs (a dataset folder of kind preference, written by llmft.data).

Commands:
  reward     train a reward model (scalar head, Bradley-Terry loss); config: a RewardModelRequest
  ppo        optimise a policy against a reward model with PPO; config: a PpoRequest
  dpo        optimise a policy with DPO; config: a DpoRequest
  evaluate   compare policies with their reference on held-out prompts; config: a PolicyEvaluationRequest
  demo-data  write the synthetic demo data (arithmetic questions): --kind chat or preference

Examples:
  llmft rlhf demo-data --kind preference --out runs/prefs
  llmft rlhf reward --data runs/prefs --base-model-dir runs/sft --out runs/reward --max-steps 50
  llmft rlhf ppo --config stages/rlhf/examples/ppo.yaml --data runs/prefs \\
      --base-model-dir runs/sft --reward-model-dir runs/reward --out runs/ppo
  llmft rlhf dpo --config stages/rlhf/examples/dpo.yaml --data runs/prefs \\
      --base-model-dir runs/sft --out runs/dpo
  llmft rlhf evaluate --data runs/prefs --base-model-dir runs/sft --reward-model-dir runs/reward \\
      --policy ppo=runs/ppo --policy dpo=runs/dpo --out runs/evaluation
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TypeVar

import yaml
from google.protobuf import json_format
from google.protobuf.message import Message

from llmft.core.cli import USER_ERRORS, apply_model_and_steps, staged_output
from llmft.core.distributed import under_launcher
from llmft.core.files import DuplicateKeyError, load_yaml, unknown_key_problems
from llmft.core.recipe import RecipeError, explicit_zero_problems
from llmft.core.training import read_artifact
from llmft.proto.rlhf.v1 import rlhf_pb2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="llmft rlhf", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("command", choices=sorted(REQUESTS) + ["demo-data"])
    p.add_argument("--config", type=Path, help="the command's request as YAML/JSON (proto field names)")
    p.add_argument("--data", type=Path, help="preference dataset folder (PPO and evaluate: or a prompt dataset)")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="folder to write (a model; evaluate: its report); must not exist or be empty",
    )
    p.add_argument(
        "--base-model",
        default="",
        help="preset, local folder, .gguf file or Hub id (default llmft/tiny-llama; evaluate: the reference)",
    )
    p.add_argument(
        "--base-model-dir", type=Path, help="an upstream llmft model folder: the SFT model (evaluate: the reference)"
    )
    p.add_argument("--reward-model-dir", type=Path, help="ppo, evaluate: the reward model folder")
    p.add_argument(
        "--allow-mixed-families",
        action="store_true",
        help="ppo, evaluate: pair policies and a reward model of different families that share one tokenizer",
    )
    p.add_argument("--policy", action="append", default=[], help="evaluate: NAME=FOLDER of a policy to compare")
    p.add_argument("--kind", choices=["chat", "preference"], default="preference", help="demo-data: which dataset")
    p.add_argument("--seed", type=int, default=0, help="demo-data: the seed")
    p.add_argument(
        "--pairs-per-question",
        type=int,
        choices=[1, 2, 3],
        default=3,
        help="demo-data: preference pairs per question, each with a wrong answer of another kind (default 3)",
    )
    p.add_argument("--checkpoint-dir", type=Path, help="where checkpoints go; a run finding one there resumes")
    p.add_argument("--max-steps", type=int, help="override recipe.schedule.max_steps")
    return p


REQUESTS = {
    "reward": rlhf_pb2.RewardModelRequest,
    "ppo": rlhf_pb2.PpoRequest,
    "dpo": rlhf_pb2.DpoRequest,
    "evaluate": rlhf_pb2.PolicyEvaluationRequest,
}
RequestT = TypeVar("RequestT", bound=Message)


def load(path: Path | None, message: RequestT) -> RequestT:
    """The request from `path` (YAML/JSON), or an empty one; preference pairs train unpacked unless the file says so."""
    if path is None:
        return message
    try:
        data = load_yaml(path) or {}
        unknown = unknown_key_problems(data, message.DESCRIPTOR)
        if unknown:
            raise RecipeError(f"{path}: " + "; ".join(unknown))
        json_format.ParseDict(data, message)
    except DuplicateKeyError as error:
        raise RecipeError(str(error)) from error
    except (OSError, yaml.YAMLError, json_format.ParseError) as error:
        raise RecipeError(f"{path}: {error}") from error
    problems = explicit_zero_problems(data, message.DESCRIPTOR)
    if problems:
        raise RecipeError(f"{path}: " + "; ".join(problems))
    return message


def policies(values: list[str]) -> dict[str, Path]:
    named = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep or not name or not folder:
            raise RecipeError(f"--policy {value!r}: expected NAME=FOLDER, e.g. ppo=runs/ppo")
        if name in named or name == "sft":
            raise RecipeError(f"--policy {value!r}: the name {name!r} is taken; each policy needs its own name")
        named[name] = Path(folder)
    return named


def run(args: argparse.Namespace, out: Path) -> Message:
    """Runs one command, writing into `out` (a fresh folder); returns its report."""
    from llmft.rlhf.dpo import train_dpo
    from llmft.rlhf.evaluation import evaluate_policies
    from llmft.rlhf.ppo import train_ppo
    from llmft.rlhf.reward import train_reward_model

    if args.command == "demo-data":
        from llmft.rlhf.demo import write_demo_dataset

        return write_demo_dataset(out, args.kind, seed=args.seed, pairs_per_question=args.pairs_per_question)
    if args.data is None:
        raise RecipeError(f"--data: llmft rlhf {args.command} needs a dataset folder")
    request = load(args.config, REQUESTS[args.command]())
    if args.allow_mixed_families:
        if args.command not in ("ppo", "evaluate"):
            raise RecipeError(f"--allow-mixed-families: llmft rlhf {args.command} pairs no policy with a reward model")
        request.allow_mixed_families = True
    if args.command == "evaluate":
        if args.base_model:
            request.reference_model = args.base_model
        result = evaluate_policies(
            request, args.data, policies(args.policy), args.base_model_dir, args.reward_model_dir
        )
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.html").write_text(result.report_html, encoding="utf-8")
        (out / "comparison.json").write_text(json_format.MessageToJson(result.comparison, sort_keys=True) + "\n")
        return result.comparison
    apply_model_and_steps(request, args)
    options = dict(base_model_dir=args.base_model_dir, checkpoint_dir=args.checkpoint_dir, distributed=under_launcher())
    if args.command == "reward":
        return train_reward_model(request, args.data, out, **options).report
    if args.command == "ppo":
        return train_ppo(request, args.data, out, reward_model_dir=args.reward_model_dir, **options).report
    return train_dpo(request, args.data, out, **options).report


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        with staged_output(args.out) as staged:
            report = run(args, staged)
        artifact = read_artifact(args.out)
        for field in ("reward_model", "policy"):  # the report's artifact is the moved folder's
            if artifact is not None and field in report.DESCRIPTOR.fields_by_name:
                getattr(report, field).CopyFrom(artifact)
    except USER_ERRORS as error:
        print(f"llmft rlhf {args.command}: error: {error}", file=sys.stderr)
        return 2
    print(json_format.MessageToJson(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
