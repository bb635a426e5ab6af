from llmft.proto.common.v1 import provenance_pb2 as _provenance_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrainingMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAINING_METHOD_UNSPECIFIED: _ClassVar[TrainingMethod]
    TRAINING_METHOD_FULL: _ClassVar[TrainingMethod]
    TRAINING_METHOD_LORA: _ClassVar[TrainingMethod]
    TRAINING_METHOD_QLORA: _ClassVar[TrainingMethod]

class Precision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRECISION_UNSPECIFIED: _ClassVar[Precision]
    PRECISION_FP32: _ClassVar[Precision]
    PRECISION_BF16: _ClassVar[Precision]
    PRECISION_AUTO: _ClassVar[Precision]

class Optimizer(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPTIMIZER_UNSPECIFIED: _ClassVar[Optimizer]
    OPTIMIZER_ADAMW: _ClassVar[Optimizer]
    OPTIMIZER_ADAMW_8BIT: _ClassVar[Optimizer]
    OPTIMIZER_PAGED_ADAMW_8BIT: _ClassVar[Optimizer]

class ArtifactFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ARTIFACT_FORMAT_UNSPECIFIED: _ClassVar[ArtifactFormat]
    ARTIFACT_FORMAT_MERGED: _ClassVar[ArtifactFormat]
    ARTIFACT_FORMAT_ADAPTER: _ClassVar[ArtifactFormat]
TRAINING_METHOD_UNSPECIFIED: TrainingMethod
TRAINING_METHOD_FULL: TrainingMethod
TRAINING_METHOD_LORA: TrainingMethod
TRAINING_METHOD_QLORA: TrainingMethod
PRECISION_UNSPECIFIED: Precision
PRECISION_FP32: Precision
PRECISION_BF16: Precision
PRECISION_AUTO: Precision
OPTIMIZER_UNSPECIFIED: Optimizer
OPTIMIZER_ADAMW: Optimizer
OPTIMIZER_ADAMW_8BIT: Optimizer
OPTIMIZER_PAGED_ADAMW_8BIT: Optimizer
ARTIFACT_FORMAT_UNSPECIFIED: ArtifactFormat
ARTIFACT_FORMAT_MERGED: ArtifactFormat
ARTIFACT_FORMAT_ADAPTER: ArtifactFormat

class LoraConfig(_message.Message):
    __slots__ = ("rank", "alpha", "dropout", "target_modules", "merge")
    RANK_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    DROPOUT_FIELD_NUMBER: _ClassVar[int]
    TARGET_MODULES_FIELD_NUMBER: _ClassVar[int]
    MERGE_FIELD_NUMBER: _ClassVar[int]
    rank: int
    alpha: float
    dropout: float
    target_modules: _containers.RepeatedScalarFieldContainer[str]
    merge: bool
    def __init__(self, rank: _Optional[int] = ..., alpha: _Optional[float] = ..., dropout: _Optional[float] = ..., target_modules: _Optional[_Iterable[str]] = ..., merge: _Optional[bool] = ...) -> None: ...

class ZeroConfig(_message.Message):
    __slots__ = ("stage", "offload_optimizer", "offload_parameters")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    OFFLOAD_OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    OFFLOAD_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    stage: int
    offload_optimizer: bool
    offload_parameters: bool
    def __init__(self, stage: _Optional[int] = ..., offload_optimizer: _Optional[bool] = ..., offload_parameters: _Optional[bool] = ...) -> None: ...

class Schedule(_message.Message):
    __slots__ = ("learning_rate", "lr_scheduler", "warmup_ratio", "weight_decay", "max_steps", "epochs", "per_device_batch_size", "gradient_accumulation_steps", "max_grad_norm")
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    LR_SCHEDULER_FIELD_NUMBER: _ClassVar[int]
    WARMUP_RATIO_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    PER_DEVICE_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_ACCUMULATION_STEPS_FIELD_NUMBER: _ClassVar[int]
    MAX_GRAD_NORM_FIELD_NUMBER: _ClassVar[int]
    learning_rate: float
    lr_scheduler: str
    warmup_ratio: float
    weight_decay: float
    max_steps: int
    epochs: float
    per_device_batch_size: int
    gradient_accumulation_steps: int
    max_grad_norm: float
    def __init__(self, learning_rate: _Optional[float] = ..., lr_scheduler: _Optional[str] = ..., warmup_ratio: _Optional[float] = ..., weight_decay: _Optional[float] = ..., max_steps: _Optional[int] = ..., epochs: _Optional[float] = ..., per_device_batch_size: _Optional[int] = ..., gradient_accumulation_steps: _Optional[int] = ..., max_grad_norm: _Optional[float] = ...) -> None: ...

class CheckpointConfig(_message.Message):
    __slots__ = ("save_steps", "save_total_limit")
    SAVE_STEPS_FIELD_NUMBER: _ClassVar[int]
    SAVE_TOTAL_LIMIT_FIELD_NUMBER: _ClassVar[int]
    save_steps: int
    save_total_limit: int
    def __init__(self, save_steps: _Optional[int] = ..., save_total_limit: _Optional[int] = ...) -> None: ...

class EvalConfig(_message.Message):
    __slots__ = ("eval_steps", "max_eval_samples")
    EVAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    MAX_EVAL_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    eval_steps: int
    max_eval_samples: int
    def __init__(self, eval_steps: _Optional[int] = ..., max_eval_samples: _Optional[int] = ...) -> None: ...

class TrainingRecipe(_message.Message):
    __slots__ = ("method", "lora", "precision", "optimizer", "zero", "schedule", "max_length", "packing", "seed", "checkpoint", "eval", "chat_template")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    LORA_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    ZERO_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    PACKING_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    EVAL_FIELD_NUMBER: _ClassVar[int]
    CHAT_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    method: TrainingMethod
    lora: LoraConfig
    precision: Precision
    optimizer: Optimizer
    zero: ZeroConfig
    schedule: Schedule
    max_length: int
    packing: bool
    seed: int
    checkpoint: CheckpointConfig
    eval: EvalConfig
    chat_template: str
    def __init__(self, method: _Optional[_Union[TrainingMethod, str]] = ..., lora: _Optional[_Union[LoraConfig, _Mapping]] = ..., precision: _Optional[_Union[Precision, str]] = ..., optimizer: _Optional[_Union[Optimizer, str]] = ..., zero: _Optional[_Union[ZeroConfig, _Mapping]] = ..., schedule: _Optional[_Union[Schedule, _Mapping]] = ..., max_length: _Optional[int] = ..., packing: _Optional[bool] = ..., seed: _Optional[int] = ..., checkpoint: _Optional[_Union[CheckpointConfig, _Mapping]] = ..., eval: _Optional[_Union[EvalConfig, _Mapping]] = ..., chat_template: _Optional[str] = ...) -> None: ...

class DistributedConfig(_message.Message):
    __slots__ = ("nnodes", "nproc_per_node")
    NNODES_FIELD_NUMBER: _ClassVar[int]
    NPROC_PER_NODE_FIELD_NUMBER: _ClassVar[int]
    nnodes: int
    nproc_per_node: int
    def __init__(self, nnodes: _Optional[int] = ..., nproc_per_node: _Optional[int] = ...) -> None: ...

class TrainingRequest(_message.Message):
    __slots__ = ("base_model", "base_model_revision", "recipe", "distributed", "resources", "run_name")
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_REVISION_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    DISTRIBUTED_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    RUN_NAME_FIELD_NUMBER: _ClassVar[int]
    base_model: str
    base_model_revision: str
    recipe: TrainingRecipe
    distributed: DistributedConfig
    resources: _provenance_pb2.ComputeResources
    run_name: str
    def __init__(self, base_model: _Optional[str] = ..., base_model_revision: _Optional[str] = ..., recipe: _Optional[_Union[TrainingRecipe, _Mapping]] = ..., distributed: _Optional[_Union[DistributedConfig, _Mapping]] = ..., resources: _Optional[_Union[_provenance_pb2.ComputeResources, _Mapping]] = ..., run_name: _Optional[str] = ...) -> None: ...

class EvalMetrics(_message.Message):
    __slots__ = ("loss", "perplexity", "tokens")
    LOSS_FIELD_NUMBER: _ClassVar[int]
    PERPLEXITY_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    loss: float
    perplexity: float
    tokens: int
    def __init__(self, loss: _Optional[float] = ..., perplexity: _Optional[float] = ..., tokens: _Optional[int] = ...) -> None: ...

class TrainingMetrics(_message.Message):
    __slots__ = ("eval_before", "eval_after", "train_loss", "steps", "train_tokens", "tokens_per_second", "train_seconds")
    EVAL_BEFORE_FIELD_NUMBER: _ClassVar[int]
    EVAL_AFTER_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    TRAIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    eval_before: EvalMetrics
    eval_after: EvalMetrics
    train_loss: float
    steps: int
    train_tokens: int
    tokens_per_second: float
    train_seconds: float
    def __init__(self, eval_before: _Optional[_Union[EvalMetrics, _Mapping]] = ..., eval_after: _Optional[_Union[EvalMetrics, _Mapping]] = ..., train_loss: _Optional[float] = ..., steps: _Optional[int] = ..., train_tokens: _Optional[int] = ..., tokens_per_second: _Optional[float] = ..., train_seconds: _Optional[float] = ...) -> None: ...

class ModelArtifact(_message.Message):
    __slots__ = ("uri", "base_model", "base_model_fingerprint", "format", "model_family", "tokenizer_fingerprint", "fingerprint", "metrics", "parameters", "trainable_parameters", "provenance", "chat_template", "precision")
    URI_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FAMILY_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    TRAINABLE_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    CHAT_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    uri: str
    base_model: str
    base_model_fingerprint: str
    format: ArtifactFormat
    model_family: str
    tokenizer_fingerprint: str
    fingerprint: str
    metrics: TrainingMetrics
    parameters: int
    trainable_parameters: int
    provenance: _provenance_pb2.Provenance
    chat_template: str
    precision: Precision
    def __init__(self, uri: _Optional[str] = ..., base_model: _Optional[str] = ..., base_model_fingerprint: _Optional[str] = ..., format: _Optional[_Union[ArtifactFormat, str]] = ..., model_family: _Optional[str] = ..., tokenizer_fingerprint: _Optional[str] = ..., fingerprint: _Optional[str] = ..., metrics: _Optional[_Union[TrainingMetrics, _Mapping]] = ..., parameters: _Optional[int] = ..., trainable_parameters: _Optional[int] = ..., provenance: _Optional[_Union[_provenance_pb2.Provenance, _Mapping]] = ..., chat_template: _Optional[str] = ..., precision: _Optional[_Union[Precision, str]] = ...) -> None: ...
