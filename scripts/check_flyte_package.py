"""Checks a `pyflyte package` archive: every llmft task is compiled with its stage's ImageSpec image (not the default
image) and runs from the code that image installs (`pyflyte-execute`, not fast registration), with CPU and memory
requests, a cache version derived from its stage's version where it caches, and retries on training tasks. Exits
non-zero naming each task that falls short."""

from __future__ import annotations

import re
import sys
import tarfile
from pathlib import Path

from flyteidl.admin import task_pb2

STAGE_IMAGES = {
    "llmft.data.": "llmft-data",
    "llmft.train_cpt.": "llmft-train-cpt",
    "llmft.train_sft.": "llmft-train-sft",
    "llmft.rlhf.": "llmft-rlhf",
    "llmft.serve.": "llmft-serve",
    "llmft.orchestration.": "llmft-orchestration",
}
# How a task runs the code its image installs; fast registration would run "pyflyte-fast-execute" instead.
IMAGE_ENTRYPOINTS = ("pyflyte-execute", "pyflyte-map-execute")
TRAINING = ("llmft.train_cpt.tasks.train", "llmft.train_sft.tasks.train", "llmft.rlhf.tasks.")
# Tasks that must be cached on a cluster: each shard of batch inference, and of a dataset prepared in shards, is its
# own cache entry there, so a stopped run redoes only its unfinished shards when started again.
CACHED = ("llmft.serve.tasks.answer", "llmft.data.tasks.clean_shard")
# Tasks that run the sharded data steps: Arrow's C++ code takes its pool from the environment when the process starts,
# and the pool that returns freed batches (llmft.data.shards.bounded_allocation) keeps their memory bounded.
ARROW_POOL = ("llmft.data.tasks.clean_shard", "llmft.data.tasks.merge_dataset_shards")
# llmft.flyte.images.stage_cache_version: <distribution>-<version>-<12 hex digits of the pinned dependencies>.
DERIVED_CACHE_VERSION = re.compile(r"^llmft-[a-z0-9-]+-\d+\.\d+\.\d+-[0-9a-f]{12}$")
# The workflows a user starts; each must be in the archive.
WORKFLOWS = (
    "llmft.orchestration.skeleton.skeleton",
    "llmft.orchestration.rlhf.rlhf",
    "llmft.orchestration.batch.",
    "llmft.orchestration.corpus.sharded_dataset",
    "llmft.orchestration.pipeline.configured",
    "llmft.orchestration.pipeline.pipeline",
    "llmft.orchestration.pipeline.pipeline_request",
    "llmft.orchestration.launch_plans.demo",
    "llmft.orchestration.launch_plans.demo_weekly",
    "llmft.orchestration.launch_plans.batch_inference",
)


def check(archive: Path) -> list[str]:
    problems: list[str] = []
    tasks = 0
    with tarfile.open(archive) as tar:
        names = [member.name for member in tar.getmembers()]
        for workflow in WORKFLOWS:
            if not any(workflow in name for name in names):
                problems.append(f"{archive}: no workflow {workflow}")
        for member in tar.getmembers():
            if not member.name.endswith(".pb"):
                continue
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            spec = task_pb2.TaskSpec()
            try:
                spec.ParseFromString(data)
            except Exception:
                continue
            template = spec.template
            name = template.id.name
            if not name.startswith("llmft.") or not template.HasField("container"):
                continue
            tasks += 1
            image = template.container.image
            expected = next((v for k, v in STAGE_IMAGES.items() if name.startswith(k)), None)
            if expected and f"/{expected}:" not in image:
                problems.append(f"{name}: image {image!r} is not the {expected} ImageSpec")
            args = list(template.container.args)
            if not args or args[0] not in IMAGE_ENTRYPOINTS:
                problems.append(f"{name}: runs {args[:1]}, not code from its image ({' or '.join(IMAGE_ENTRYPOINTS)})")
            requested = {r.name for r in template.container.resources.requests}
            if not {1, 3} <= requested:  # CPU = 1, MEMORY = 3 in flyteidl's ResourceName
                problems.append(f"{name}: no cpu and memory requests ({sorted(requested)})")
            version = template.metadata.discovery_version
            if template.metadata.discoverable and not DERIVED_CACHE_VERSION.match(version):
                problems.append(f"{name}: cache version {version!r} is not derived")
            if name in CACHED and not template.metadata.discoverable:
                problems.append(f"{name}: not cached")
            env = {pair.key: pair.value for pair in template.container.env}
            if name in ARROW_POOL and env.get("ARROW_DEFAULT_MEMORY_POOL") != "jemalloc":
                problems.append(f"{name}: no ARROW_DEFAULT_MEMORY_POOL=jemalloc in its environment")
            if name.startswith(TRAINING) and template.metadata.retries.retries < 1:
                problems.append(f"{name}: a training task without retries")
    if tasks == 0:
        problems.append(f"{archive}: holds no llmft tasks")
    for name in CACHED:
        if not any(name in member for member in names):
            problems.append(f"{archive}: no task {name}")
    return problems


if __name__ == "__main__":
    found = check(Path(sys.argv[1]))
    for line in found:
        print(line, file=sys.stderr)
    print(f"{sys.argv[1]}: {'OK' if not found else f'{len(found)} problem(s)'}")
    sys.exit(1 if found else 0)
