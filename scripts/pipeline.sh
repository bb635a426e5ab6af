#!/usr/bin/env bash
# Runs the whole pipeline offline on the built-in tiny model, from the demo config: data -> CPT -> SFT -> reward model
# -> DPO -> held-out evaluation -> gate -> publish (a dry run into runs/demo/hub) and the Space folder, under
# flytekit's local executor. Outputs go to runs/demo/ (model, space, decks, report), the full log to
# runs/pipeline.log. A second run reuses every cached step (blobs under runs/.flyte). Extra arguments go to
# `python -m llmft.orchestration run`, e.g. --config my.yaml.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/venv.sh
mkdir -p runs
export FLYTE_SDK_LOGGING_LEVEL="${FLYTE_SDK_LOGGING_LEVEL:-30}"
config=orchestration/src/llmft/orchestration/examples/demo.yaml
.venv/bin/python -m llmft.orchestration run --config "$config" "$@" 2>&1 | tee runs/pipeline.log
exit "${PIPESTATUS[0]}"
