"""Default requests of the skeleton workflow: the offline demo. The corpus is the source and documentation of
flytekit itself (as the workshop trained on Flyte's own code), the chat data are questions about flytekit's documented
functions and classes answered from their docstrings, and the base model is the built-in tiny Llama preset."""

from __future__ import annotations

from llmft.proto.common.v1 import provenance_pb2 as C
from llmft.proto.data.v1 import dataset_pb2 as D
from llmft.proto.rlhf.v1 import rlhf_pb2 as R
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


# The RLHF demo (llmft.orchestration.rlhf): the synthetic arithmetic data of llmft.rlhf.demo, with the settings whose
# quality bench/rlhf_quality.py measures.
def _rlhf_recipe(steps: int, learning_rate: float, batch: int = 8) -> T.TrainingRecipe:
    return T.TrainingRecipe(
        method=T.TRAINING_METHOD_FULL,
        precision=T.PRECISION_FP32,
        optimizer=T.OPTIMIZER_ADAMW,
        max_length=64,
        packing=False,
        seed=0,
        schedule=T.Schedule(
            learning_rate=learning_rate, lr_scheduler="cosine", max_steps=steps, per_device_batch_size=batch
        ),
        checkpoint=T.CheckpointConfig(save_steps=10, save_total_limit=2),
    )


RLHF_RESOURCES = C.ComputeResources(cpu="2", memory="8Gi")
RLHF_LAUNCH = T.DistributedConfig(nnodes=1, nproc_per_node=1)
RLHF_SFT = T.TrainingRequest(
    base_model=BASE_MODEL,
    run_name="rlhf-sft",
    recipe=_rlhf_recipe(600, 1e-3),  # a competent SFT policy: the baseline a user would ship without preferences
    distributed=RLHF_LAUNCH,
    resources=RLHF_RESOURCES,
)
REWARD = R.RewardModelRequest(
    run_name="rlhf-reward", recipe=_rlhf_recipe(120, 1e-3), distributed=RLHF_LAUNCH, resources=RLHF_RESOURCES
)
PPO = R.PpoRequest(
    run_name="rlhf-ppo",
    recipe=_rlhf_recipe(30, 3e-4, batch=16),
    ppo=R.PpoConfig(response_length=16, temperature=0.7, kl_coef=0.05),
    distributed=RLHF_LAUNCH,
    resources=RLHF_RESOURCES,
)
DPO = R.DpoRequest(
    run_name="rlhf-dpo",
    recipe=_rlhf_recipe(60, 5e-4),
    dpo=R.DpoConfig(beta=0.1, loss_type="sigmoid", sft_weight=1.0),
    distributed=RLHF_LAUNCH,
    resources=RLHF_RESOURCES,
)
EVALUATION = R.PolicyEvaluationRequest(max_new_tokens=16, temperature=0.7, seed=0, max_length=64)
