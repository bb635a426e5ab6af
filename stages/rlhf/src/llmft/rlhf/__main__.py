"""Learning from preference pairs (a dataset folder of kind preference, written by llmft.data).

Commands:
  reward   train a reward model (scalar head, Bradley-Terry loss); config: a RewardModelRequest
  dpo      optimise a policy with DPO; config: a DpoRequest

Examples:
  llmft rlhf reward --data runs/prefs --base-model-dir runs/sft --out runs/reward --max-steps 50
  llmft rlhf dpo --config stages/rlhf/examples/dpo.yaml --data runs/prefs \\
      --base-model-dir runs/sft --out runs/dpo
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import TypeVar

import yaml
from google.protobuf import json_format
from google.protobuf.message import Message

from llmft.core.cli import USER_ERRORS, apply_model_and_steps
from llmft.core.distributed import under_launcher
from llmft.core.recipe import RecipeError
from llmft.core.training import replace_dir
from llmft.proto.rlhf.v1 import rlhf_pb2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="llmft rlhf", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("command", choices=["reward", "dpo"])
    p.add_argument("--config", type=Path, help="RewardModelRequest or DpoRequest as YAML/JSON (proto field names)")
    p.add_argument("--data", type=Path, required=True, help="preference dataset folder")
    p.add_argument("--out", type=Path, required=True, help="model folder to write (must not exist or be empty)")
    p.add_argument("--base-model", default="", help="preset, local folder or Hub id (default llmft/tiny-llama)")
    p.add_argument("--base-model-dir", type=Path, help="an upstream llmft model folder (e.g. the SFT model)")
    p.add_argument("--checkpoint-dir", type=Path, help="where checkpoints go; a run finding one there resumes")
    p.add_argument("--max-steps", type=int, help="override recipe.schedule.max_steps")
    return p


RequestT = TypeVar("RequestT", rlhf_pb2.RewardModelRequest, rlhf_pb2.DpoRequest)


def load(path: Path | None, message: RequestT) -> RequestT:
    """The request from `path` (YAML/JSON), or an empty one; preference pairs train unpacked unless the file says so."""
    if path is None:
        return message
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        json_format.ParseDict(data, message)
    except (OSError, yaml.YAMLError, json_format.ParseError) as error:
        raise RecipeError(f"{path}: {error}") from error
    return message


def main(argv: list[str] | None = None) -> int:
    from llmft.rlhf.dpo import train_dpo
    from llmft.rlhf.reward import train_reward_model

    args = parser().parse_args(argv)
    try:
        if args.out.exists() and any(args.out.iterdir()):
            raise FileExistsError(f"{args.out}: output folder exists and is not empty; nothing was overwritten")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{args.out.name}-", dir=args.out.parent) as tmp:
            model_dir = Path(tmp) / "model"
            options = dict(base_model_dir=args.base_model_dir, checkpoint_dir=args.checkpoint_dir)
            report: Message
            if args.command == "reward":
                reward_request = load(args.config, rlhf_pb2.RewardModelRequest())
                apply_model_and_steps(reward_request, args)
                report = train_reward_model(
                    reward_request, args.data, model_dir, **options, distributed=under_launcher()
                ).report
            else:
                dpo_request = load(args.config, rlhf_pb2.DpoRequest())
                apply_model_and_steps(dpo_request, args)
                report = train_dpo(dpo_request, args.data, model_dir, **options, distributed=under_launcher()).report
            if model_dir.exists():
                replace_dir(model_dir, args.out)
    except USER_ERRORS as error:
        print(f"llmft rlhf {args.command}: error: {error}", file=sys.stderr)
        return 2
    print(json_format.MessageToJson(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
