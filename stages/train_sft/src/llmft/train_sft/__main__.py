"""Supervised fine-tuning (assistant-only loss) on a chat dataset folder (written by llmft.data).

Examples:
  llmft train-sft --data runs/chat --base-model-dir runs/cpt --out runs/sft --max-steps 100
  llmft train-sft --config stages/train_sft/examples/lora.yaml --data runs/chat --out runs/sft-lora
"""

from __future__ import annotations

import sys

from llmft.core.cli import run_training_cli
from llmft.train_sft.train import train_sft


def main(argv: list[str] | None = None) -> int:
    return run_training_cli(argv, "llmft train-sft", __doc__ or "", train_sft)


if __name__ == "__main__":
    sys.exit(main())
