#!/usr/bin/env bash
# Runs the whole pipeline offline on the real model, SmolLM2-135M-Instruct (its PyPI wheel installed by venv.sh), from
# the smollm2 config: data -> SFT with LoRA -> reward model -> PPO and DPO -> held-out and general questions against
# the untouched model -> gate -> publish (a dry run into runs/smollm2/hub) and the Space folder, under flytekit's local
# executor. Outputs go to runs/smollm2/ (model, space, decks, report), the full log to runs/pipeline.log. A second run
# reuses every cached step (blobs under runs/.flyte). Extra arguments go to `python -m llmft.orchestration run`:
# `--config orchestration/src/llmft/orchestration/examples/demo.yaml` runs the tiny-model demo instead (a later
# --config wins).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/venv.sh
mkdir -p runs
export FLYTE_SDK_LOGGING_LEVEL="${FLYTE_SDK_LOGGING_LEVEL:-30}"
config=orchestration/src/llmft/orchestration/examples/smollm2.yaml
.venv/bin/python -m llmft.orchestration run --config "$config" "$@" 2>&1 | tee runs/pipeline.log
exit "${PIPESTATUS[0]}"
