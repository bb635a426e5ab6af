#!/usr/bin/env bash
# Everything CI checks, from a fresh machine: bootstraps Pants (./pants) and buf, then
#   pants tailor --check, lint (black, ruff), check (mypy), test and package (a wheel per package);
#   buf lint and, against the previous commit, buf breaking;
#   the generated protobuf code matches a fresh generation;
#   pyflyte package compiles every workflow with each task's image, resources and retries.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
step() { printf '\n=== %s (%s)\n' "$1" "$(date +%T)"; }

step "pants: tailor --check, lint, check, test"
./pants tailor --check lint check test ::

step "pants: package (one wheel per package)"
./pants package ::
ls dist/*.whl

step "buf lint / breaking"
buf_dir="${XDG_CACHE_HOME:-$HOME/.cache}/llmft-buf"
buf="$buf_dir/node_modules/.bin/buf"
[[ -x "$buf" ]] || npm install --silent --no-audit --no-fund --prefix "$buf_dir" @bufbuild/buf@1.75.0
"$buf" lint proto
if git rev-parse --verify -q HEAD~1 >/dev/null && git cat-file -e HEAD~1:proto/buf.yaml 2>/dev/null; then
  "$buf" breaking proto --against '.git#ref=HEAD~1,subdir=proto'
else
  echo "buf breaking: no earlier commit with proto/ to compare against"
fi

step "venv for pyflyte and the CLIs"
bash scripts/venv.sh

step "generated protobuf code is up to date"
.venv/bin/python proto/generate.py --check

step "pyflyte package: every workflow compiles for a cluster"
mkdir -p dist
(cd orchestration/src && ../../.venv/bin/pyflyte --pkgs llmft.orchestration package \
  --image ghcr.io/llmft/llmft:ci --output ../../dist/flyte-package.tgz --force)
.venv/bin/python scripts/check_flyte_package.py dist/flyte-package.tgz

step "all checks passed"
