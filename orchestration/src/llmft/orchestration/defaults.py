"""Default requests of the skeleton workflow: the offline demo. The corpus is the source and documentation of
flytekit itself (as the workshop trained on Flyte's own code), the chat data are questions about flytekit's documented
functions and classes answered from their docstrings, and the base model is the built-in tiny Llama preset."""

from __future__ import annotations

from llmft.proto.common.v1 import provenance_pb2 as C
from llmft.proto.data.v1 import dataset_pb2 as D
from llmft.proto.training.v1 import training_pb2 as T

BASE_MODEL = "llmft/tiny-llama"
CORPUS_PACKAGE = "flytekit"

CORPUS = D.DatasetRequest(
    name="flytekit-corpus",
    kind=D.DATASET_KIND_RAW_TEXT,
    sources=[D.DatasetSource(python_package=D.PythonPackageSource(packages=[CORPUS_PACKAGE]), format="text")],
    cleaning=D.CleaningConfig(normalize=True, deduplicate_exact=True, min_chars=64),
    split=D.SplitConfig(eval_fraction=0.1, seed=0),
    tokenizer=BASE_MODEL,
    max_tokens=256,
)

CHAT = D.DatasetRequest(
    name="flytekit-docstring-chat",
    kind=D.DATASET_KIND_CHAT,
    sources=[
        D.DatasetSource(python_package=D.PythonPackageSource(packages=[CORPUS_PACKAGE]), format="python_docstrings")
    ],
    cleaning=D.CleaningConfig(normalize=True, deduplicate_exact=True),
    split=D.SplitConfig(eval_fraction=0.1, seed=0),
    tokenizer=BASE_MODEL,
    max_tokens=256,
)

CPT = T.TrainingRequest(
    base_model=BASE_MODEL,
    run_name="skeleton-cpt",
    recipe=T.TrainingRecipe(
        method=T.TRAINING_METHOD_FULL,
        precision=T.PRECISION_FP32,
        optimizer=T.OPTIMIZER_ADAMW,
        max_length=256,
        packing=True,
        seed=0,
        schedule=T.Schedule(
            learning_rate=2e-3, lr_scheduler="cosine", warmup_ratio=0.05, max_steps=120, per_device_batch_size=8
        ),
        eval=T.EvalConfig(max_eval_samples=64),
    ),
    distributed=T.DistributedConfig(nnodes=1, nproc_per_node=1),
    resources=C.ComputeResources(cpu="2", memory="8Gi"),
)

SFT = T.TrainingRequest(
    base_model=BASE_MODEL,
    run_name="skeleton-sft",
    recipe=T.TrainingRecipe(
        method=T.TRAINING_METHOD_FULL,
        precision=T.PRECISION_FP32,
        optimizer=T.OPTIMIZER_ADAMW,
        max_length=256,
        packing=True,
        seed=0,
        schedule=T.Schedule(
            learning_rate=1e-3, lr_scheduler="cosine", warmup_ratio=0.05, max_steps=80, per_device_batch_size=8
        ),
        eval=T.EvalConfig(max_eval_samples=64),
    ),
    distributed=T.DistributedConfig(nnodes=1, nproc_per_node=1),
    resources=C.ComputeResources(cpu="2", memory="8Gi"),
)
