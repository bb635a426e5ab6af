"""`python -m llmft.orchestration run --config my.yaml`: the whole pipeline of a config on this machine (flytekit's
local executor), with its outputs under runs/<name>/ and the paths printed at the end (llmft.orchestration.local.main).
A rerun reuses every cached step whose inputs and code are unchanged."""

from llmft.orchestration.local import main
from llmft.orchestration.pipeline import pipeline_workflow

if __name__ == "__main__":
    raise SystemExit(main(pipeline_workflow))
