#!/usr/bin/env bash
# Proves the wheels are complete: creates a clean virtualenv (build/wheels-venv) with no source roots on its path,
# installs the llmft wheels `pants package ::` wrote into dist/, and lets pip resolve exactly what they declare, at the
# lockfile's versions (constraints). Then, from that venv and an empty working directory:
#   - `llmft --help` lists every stage;
#   - `pyflyte package --copy none` compiles every workflow, each task on its stage's image (no fast registration:
#     tasks run from the code their image installs), checked by scripts/check_flyte_package.py;
#   - `pyflyte run` runs the skeleton workflow (data -> CPT -> SFT), package data such as the shipped tokenizer
#     included.
# Usage: bash scripts/wheels_venv.sh     (after ./pants package ::)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"
python="${LLMFT_PYTHON:-python3.11}"
command -v "$python" >/dev/null || python="$(pyenv root 2>/dev/null)/versions/3.11.7/bin/python3.11"
venv="$root/build/wheels-venv"
shopt -s nullglob
wheels=(dist/llmft_*-py3-none-any.whl)
if [[ ${#wheels[@]} -eq 0 ]]; then
  echo "wheels venv: no llmft wheels in dist/; run ./pants package :: first" >&2
  exit 1
fi

rm -rf "$venv"
"$python" -m venv "$venv"
"$python" scripts/lock_constraints.py > "$venv/constraints.txt"
# torch first, alone: its CPU wheel comes from the machine's find-links folder (pip config); a plain resolve would
# pull the multi-GB CUDA build.
"$venv/bin/pip" install -q "torch==$(grep '^torch==' "$venv/constraints.txt" | cut -d= -f3 | cut -d+ -f1)"
"$venv/bin/pip" install -q "${wheels[@]}" -c <(grep -v '^torch==' "$venv/constraints.txt")
"$venv/bin/pip" check
# The pure-ML library alone pulls in no Flyte: what pip would install for llmft-core (with llmft-proto, its only
# llmft requirement) into an empty environment.
"$venv/bin/pip" install -q --dry-run --ignore-installed --report "$venv/core-only.json" \
  dist/llmft_core-*.whl dist/llmft_proto-*.whl -c "$venv/constraints.txt"
"$venv/bin/python" - "$venv/core-only.json" <<'PY'
import json
import sys

names = sorted(item["metadata"]["name"].lower() for item in json.load(open(sys.argv[1]))["install"])
flyte = [name for name in names if name.startswith("flyte")]
if flyte or "llmft-core" not in names:
    sys.exit(f"wheels venv: installing llmft-core alone would install {flyte or names}")
print(f"llmft-core alone installs {len(names)} distributions, none of them Flyte's")
PY

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cd "$work"
# Every part of the llmft namespace must come from the venv's site-packages, none from a source root.
"$venv/bin/python" - "$site" <<'PY'
import sys

import llmft

site = sys.argv[1]
outside = [path for path in llmft.__path__ if not path.startswith(site)]
if outside:
    sys.exit(f"wheels venv: llmft is importable from outside the installed wheels: {outside}")
PY

echo "--- llmft --help"
help="$("$venv/bin/llmft" --help)"
echo "$help"
for stage in data train-cpt train-sft rlhf serve; do
  grep -q "^  $stage " <<<"$help" || { echo "wheels venv: llmft --help does not list $stage" >&2; exit 1; }
done

echo "--- pyflyte package --copy none (tasks run from their images)"
# Image builds copy the wheels from dist/ relative to where packaging runs.
(cd "$root" && "$venv/bin/pyflyte" --pkgs llmft.orchestration package --copy none \
  --image ghcr.io/llmft/llmft:ci --output dist/flyte-package.tgz --force)
"$venv/bin/python" "$root/scripts/check_flyte_package.py" "$root/dist/flyte-package.tgz"

echo "--- pyflyte run skeleton (from the installed wheels)"
export HOME="$work/home" LLMFT_CACHE="$work/llmft-cache" FLYTE_SDK_LOGGING_LEVEL=30
mkdir -p "$HOME"
"$venv/bin/pyflyte" run "$site/llmft/orchestration/skeleton.py" skeleton | tee "$work/skeleton.log"
grep -q "SFT held-out loss after training is lower" "$work/skeleton.log" || {
  echo "wheels venv: the skeleton did not end with a lower SFT held-out loss" >&2
  exit 1
}
leftover="$(find "$work" -maxdepth 1 -mindepth 1 ! -name home ! -name llmft-cache ! -name skeleton.log)"
if [[ -n "$leftover" ]]; then
  echo "wheels venv: the skeleton wrote into its working directory: $leftover" >&2
  exit 1
fi
echo "wheels venv: OK"
