#!/usr/bin/env bash
# Runs the whole pipeline offline on the built-in tiny model: the skeleton workflow under flytekit's local executor
# (data -> CPT -> SFT), ending with a table of held-out loss before and after each stage. The full log goes to
# runs/pipeline.log.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/venv.sh
mkdir -p runs
export FLYTE_SDK_LOGGING_LEVEL="${FLYTE_SDK_LOGGING_LEVEL:-30}"
# Cached outputs point into per-run /tmp folders; a fresh cache keeps a rerun from finding deleted ones.
.venv/bin/pyflyte local-cache clear >/dev/null 2>&1 || true
.venv/bin/pyflyte run orchestration/src/llmft/orchestration/skeleton.py skeleton "$@" 2>&1 | tee runs/pipeline.log
status=${PIPESTATUS[0]}
if [[ $status -eq 0 ]]; then
  printf '\nPipeline finished (log: runs/pipeline.log). Held-out loss:\n'
  sed -n '/^stage  *held-out loss before/,/held-out loss after training is/p' runs/pipeline.log | tail -n 4
fi
exit "$status"
