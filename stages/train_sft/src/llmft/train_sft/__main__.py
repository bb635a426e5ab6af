"""Supervised fine-tuning (assistant-only loss) on a chat dataset folder (written by llmft.data).

Examples:
  python -m llmft.train_sft --data runs/chat --base-model-dir runs/cpt --out runs/sft --max-steps 100
  python -m llmft.train_sft --config stages/train_sft/examples/lora.yaml --data runs/chat --out runs/sft-lora
"""

from __future__ import annotations

import sys

from llmft.core.cli import run_training_cli
from llmft.train_sft.train import train_sft


def main(argv: list[str] | None = None) -> int:
    return run_training_cli(argv, "python -m llmft.train_sft", __doc__ or "", train_sft)


if __name__ == "__main__":
    sys.exit(main())
