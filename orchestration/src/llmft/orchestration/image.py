"""The image every task of the pipeline's own runs on (the dynamic workflow, the config check, the gate, the report):
every llmft wheel, since the dynamic workflow imports every stage's tasks module to build the stages a config names."""

from __future__ import annotations

from flytekit import Resources

from llmft.data import tasks as data_tasks
from llmft.flyte.images import stage_image
from llmft.orchestration import __version__
from llmft.rlhf import tasks as rlhf
from llmft.serve import tasks as serve
from llmft.train_cpt import tasks as cpt
from llmft.train_sft import tasks as sft

PACKAGES = ("flyteidl",)  # what this package's own wheel declares beyond the libraries' (the local runner reads it)

IMAGE = stage_image(
    "llmft-orchestration",
    __version__,
    sorted({*PACKAGES, *data_tasks.PACKAGES, *cpt.PACKAGES, *sft.PACKAGES, *rlhf.PACKAGES, *serve.PACKAGES}),
    with_wheels={
        "llmft-data": data_tasks.__version__,
        "llmft-train-cpt": cpt.__version__,
        "llmft-train-sft": sft.__version__,
        "llmft-rlhf": rlhf.__version__,
        "llmft-serve": serve.__version__,
    },
)
SMALL = Resources(cpu="500m", mem="512Mi")  # the pipeline's own tasks read and write messages only
