"""Continued pre-training on a raw-text dataset folder (written by llmft.data).

Examples:
  llmft train-cpt --data runs/corpus --out runs/cpt --max-steps 100
  llmft train-cpt --config stages/train_cpt/examples/lora.yaml --data runs/corpus --out runs/cpt-lora
"""

from __future__ import annotations

import sys

from llmft.core.cli import run_training_cli
from llmft.train_cpt.train import train_cpt


def main(argv: list[str] | None = None) -> int:
    return run_training_cli(argv, "llmft train-cpt", __doc__ or "", train_cpt)


if __name__ == "__main__":
    sys.exit(main())
