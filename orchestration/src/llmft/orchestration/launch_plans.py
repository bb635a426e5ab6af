"""Launch plans: the pipeline and batch inference as a cluster starts them, registered with the workflows
(`pyflyte register --pkgs llmft.orchestration`, or `pyflyte package` then `flytectl register files`).

- `demo`: the whole pipeline of the shipped demo config (examples/demo.yaml), its request bound in as the default
  input of `pipeline_request`: launch it as is, or with a request of your own.
- `demo_weekly`: the same on a schedule, every Monday at 03:00 UTC (a cron schedule; Flyte starts it once activated:
  `pyflyte register --activate-launchplans`, or `flytectl update launchplan --activate`). Each run retrains from the
  sources as they are that day; unchanged steps come from the cache.
- `batch_inference`: batch inference (the `batch` workflow, llmft.orchestration.batch) with its settings defaulted;
  a model folder and a prompt dataset folder are given at launch.
"""

from __future__ import annotations

from flytekit import CronSchedule, LaunchPlan

from llmft.orchestration.batch import batch
from llmft.orchestration.config import load_config
from llmft.orchestration.pipeline import EXAMPLES, pipeline_request

DEMO_REQUEST = load_config(EXAMPLES + "demo.yaml")
WEEKLY = "0 3 * * 1"  # minute hour day-of-month month day-of-week, UTC

PREFIX = "llmft.orchestration.launch_plans."  # each launch plan's name: this module's path and its variable

demo = LaunchPlan.get_or_create(pipeline_request, name=PREFIX + "demo", default_inputs={"request": DEMO_REQUEST})
demo_weekly = LaunchPlan.get_or_create(
    pipeline_request,
    name=PREFIX + "demo_weekly",
    default_inputs={"request": DEMO_REQUEST},
    schedule=CronSchedule(schedule=WEEKLY),
)
batch_inference = LaunchPlan.get_or_create(
    batch,
    name=PREFIX + "batch_inference",
    default_inputs={"shards": 8, "batch_size": 16, "max_new_tokens": 64, "temperature": 0.0, "seed": 0},
)
