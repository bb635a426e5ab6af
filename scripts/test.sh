#!/usr/bin/env bash
# Everything CI checks, from a fresh machine: bootstraps Pants (./pants) and buf, then
#   headless Chromium from Debian's packages, for the Space's browser test;
#   pants tailor --check, lint (black, ruff, the BUILD files' dependency rules), check (mypy), test;
#   a probe for each kind of forbidden import, which `pants lint` must catch;
#   pants package (a wheel per package);
#   buf lint and, against the previous commit, buf breaking;
#   the wheels alone, in a clean venv: `llmft --help`, `pyflyte package --copy none` compiles every workflow with each
#   task on its stage's image, and `pyflyte run` runs the skeleton workflow (scripts/wheels_venv.sh);
#   nothing was written outside ignored folders.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
step() { printf '\n=== %s (%s)\n' "$1" "$(date +%T)"; }

step "headless Chromium for the Space's browser test (Debian's chromium and chromium-driver)"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  sudo=""; [[ "$(id -u)" == 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi
chromium --version

step "pants: tailor --check, lint, check, test"
# Test artifacts (the Space's screenshots) go here.
export LLMFT_TEST_ARTIFACTS="$PWD/dist/test-artifacts"
# One torch/OpenMP thread per test process: Pants runs a test process per core, and OpenMP workers spinning for cores
# another test holds made the whole run 2.5x slower (test_rlhf_ppo: 55 s alone, 631 s in a full run; 71 s with this).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
./pants tailor --check lint check test ::

step "pants lint catches each kind of forbidden import"
python3 scripts/check_dependency_rules.py

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

step "the wheels alone: llmft --help, pyflyte package, the skeleton workflow"
bash scripts/wheels_venv.sh

step "no stray files"
stray="$(git status --porcelain --untracked-files=all | grep '^??' || true)"
if [[ -n "$stray" ]]; then
  printf 'files left behind outside ignored folders:\n%s\n' "$stray" >&2
  exit 1
fi

step "all checks passed"
