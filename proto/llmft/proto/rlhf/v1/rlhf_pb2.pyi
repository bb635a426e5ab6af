from llmft.proto.common.v1 import provenance_pb2 as _provenance_pb2
from llmft.proto.training.v1 import training_pb2 as _training_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RewardModelRequest(_message.Message):
    __slots__ = ("base_model", "recipe", "distributed", "resources", "run_name")
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    DISTRIBUTED_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    RUN_NAME_FIELD_NUMBER: _ClassVar[int]
    base_model: str
    recipe: _training_pb2.TrainingRecipe
    distributed: _training_pb2.DistributedConfig
    resources: _provenance_pb2.ComputeResources
    run_name: str
    def __init__(self, base_model: _Optional[str] = ..., recipe: _Optional[_Union[_training_pb2.TrainingRecipe, _Mapping]] = ..., distributed: _Optional[_Union[_training_pb2.DistributedConfig, _Mapping]] = ..., resources: _Optional[_Union[_provenance_pb2.ComputeResources, _Mapping]] = ..., run_name: _Optional[str] = ...) -> None: ...

class RewardModelReport(_message.Message):
    __slots__ = ("reward_model", "eval_accuracy_before", "eval_accuracy_after", "eval_margin", "eval_pairs", "train_pairs", "pairs_over_max_length")
    REWARD_MODEL_FIELD_NUMBER: _ClassVar[int]
    EVAL_ACCURACY_BEFORE_FIELD_NUMBER: _ClassVar[int]
    EVAL_ACCURACY_AFTER_FIELD_NUMBER: _ClassVar[int]
    EVAL_MARGIN_FIELD_NUMBER: _ClassVar[int]
    EVAL_PAIRS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_PAIRS_FIELD_NUMBER: _ClassVar[int]
    PAIRS_OVER_MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    reward_model: _training_pb2.ModelArtifact
    eval_accuracy_before: float
    eval_accuracy_after: float
    eval_margin: float
    eval_pairs: int
    train_pairs: int
    pairs_over_max_length: int
    def __init__(self, reward_model: _Optional[_Union[_training_pb2.ModelArtifact, _Mapping]] = ..., eval_accuracy_before: _Optional[float] = ..., eval_accuracy_after: _Optional[float] = ..., eval_margin: _Optional[float] = ..., eval_pairs: _Optional[int] = ..., train_pairs: _Optional[int] = ..., pairs_over_max_length: _Optional[int] = ...) -> None: ...

class PpoConfig(_message.Message):
    __slots__ = ("total_episodes", "num_ppo_epochs", "response_length", "kl_coef", "cliprange", "vf_coef", "temperature", "kl_estimator", "missing_eos_penalty", "num_mini_batches", "eval_prompts")
    TOTAL_EPISODES_FIELD_NUMBER: _ClassVar[int]
    NUM_PPO_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    KL_COEF_FIELD_NUMBER: _ClassVar[int]
    CLIPRANGE_FIELD_NUMBER: _ClassVar[int]
    VF_COEF_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    KL_ESTIMATOR_FIELD_NUMBER: _ClassVar[int]
    MISSING_EOS_PENALTY_FIELD_NUMBER: _ClassVar[int]
    NUM_MINI_BATCHES_FIELD_NUMBER: _ClassVar[int]
    EVAL_PROMPTS_FIELD_NUMBER: _ClassVar[int]
    total_episodes: int
    num_ppo_epochs: int
    response_length: int
    kl_coef: float
    cliprange: float
    vf_coef: float
    temperature: float
    kl_estimator: str
    missing_eos_penalty: float
    num_mini_batches: int
    eval_prompts: int
    def __init__(self, total_episodes: _Optional[int] = ..., num_ppo_epochs: _Optional[int] = ..., response_length: _Optional[int] = ..., kl_coef: _Optional[float] = ..., cliprange: _Optional[float] = ..., vf_coef: _Optional[float] = ..., temperature: _Optional[float] = ..., kl_estimator: _Optional[str] = ..., missing_eos_penalty: _Optional[float] = ..., num_mini_batches: _Optional[int] = ..., eval_prompts: _Optional[int] = ...) -> None: ...

class PpoRequest(_message.Message):
    __slots__ = ("recipe", "ppo", "resources", "run_name", "base_model", "reward_model", "distributed", "allow_mixed_families")
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    PPO_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    RUN_NAME_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    REWARD_MODEL_FIELD_NUMBER: _ClassVar[int]
    DISTRIBUTED_FIELD_NUMBER: _ClassVar[int]
    ALLOW_MIXED_FAMILIES_FIELD_NUMBER: _ClassVar[int]
    recipe: _training_pb2.TrainingRecipe
    ppo: PpoConfig
    resources: _provenance_pb2.ComputeResources
    run_name: str
    base_model: str
    reward_model: str
    distributed: _training_pb2.DistributedConfig
    allow_mixed_families: bool
    def __init__(self, recipe: _Optional[_Union[_training_pb2.TrainingRecipe, _Mapping]] = ..., ppo: _Optional[_Union[PpoConfig, _Mapping]] = ..., resources: _Optional[_Union[_provenance_pb2.ComputeResources, _Mapping]] = ..., run_name: _Optional[str] = ..., base_model: _Optional[str] = ..., reward_model: _Optional[str] = ..., distributed: _Optional[_Union[_training_pb2.DistributedConfig, _Mapping]] = ..., allow_mixed_families: _Optional[bool] = ...) -> None: ...

class PolicyEvaluation(_message.Message):
    __slots__ = ("name", "mean_reward", "kl_to_reference", "win_rate_over_reference", "reward_gain", "mean_answer_tokens", "fingerprint", "correct")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEAN_REWARD_FIELD_NUMBER: _ClassVar[int]
    KL_TO_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    WIN_RATE_OVER_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    REWARD_GAIN_FIELD_NUMBER: _ClassVar[int]
    MEAN_ANSWER_TOKENS_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    CORRECT_FIELD_NUMBER: _ClassVar[int]
    name: str
    mean_reward: float
    kl_to_reference: float
    win_rate_over_reference: float
    reward_gain: float
    mean_answer_tokens: float
    fingerprint: str
    correct: float
    def __init__(self, name: _Optional[str] = ..., mean_reward: _Optional[float] = ..., kl_to_reference: _Optional[float] = ..., win_rate_over_reference: _Optional[float] = ..., reward_gain: _Optional[float] = ..., mean_answer_tokens: _Optional[float] = ..., fingerprint: _Optional[str] = ..., correct: _Optional[float] = ...) -> None: ...

class PolicyComparison(_message.Message):
    __slots__ = ("policies", "prompts", "reward_scale", "reward_model_fingerprint", "reference_fingerprint", "dataset_fingerprint")
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    REWARD_SCALE_FIELD_NUMBER: _ClassVar[int]
    REWARD_MODEL_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    DATASET_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    policies: _containers.RepeatedCompositeFieldContainer[PolicyEvaluation]
    prompts: int
    reward_scale: float
    reward_model_fingerprint: str
    reference_fingerprint: str
    dataset_fingerprint: str
    def __init__(self, policies: _Optional[_Iterable[_Union[PolicyEvaluation, _Mapping]]] = ..., prompts: _Optional[int] = ..., reward_scale: _Optional[float] = ..., reward_model_fingerprint: _Optional[str] = ..., reference_fingerprint: _Optional[str] = ..., dataset_fingerprint: _Optional[str] = ...) -> None: ...

class PpoReport(_message.Message):
    __slots__ = ("policy", "mean_reward_before", "mean_reward_after", "kl", "episodes", "evaluation")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    MEAN_REWARD_BEFORE_FIELD_NUMBER: _ClassVar[int]
    MEAN_REWARD_AFTER_FIELD_NUMBER: _ClassVar[int]
    KL_FIELD_NUMBER: _ClassVar[int]
    EPISODES_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    policy: _training_pb2.ModelArtifact
    mean_reward_before: float
    mean_reward_after: float
    kl: float
    episodes: int
    evaluation: PolicyComparison
    def __init__(self, policy: _Optional[_Union[_training_pb2.ModelArtifact, _Mapping]] = ..., mean_reward_before: _Optional[float] = ..., mean_reward_after: _Optional[float] = ..., kl: _Optional[float] = ..., episodes: _Optional[int] = ..., evaluation: _Optional[_Union[PolicyComparison, _Mapping]] = ...) -> None: ...

class DpoConfig(_message.Message):
    __slots__ = ("beta", "loss_type", "sft_weight")
    BETA_FIELD_NUMBER: _ClassVar[int]
    LOSS_TYPE_FIELD_NUMBER: _ClassVar[int]
    SFT_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    beta: float
    loss_type: str
    sft_weight: float
    def __init__(self, beta: _Optional[float] = ..., loss_type: _Optional[str] = ..., sft_weight: _Optional[float] = ...) -> None: ...

class DpoRequest(_message.Message):
    __slots__ = ("recipe", "dpo", "resources", "run_name", "base_model", "distributed")
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    DPO_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    RUN_NAME_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    DISTRIBUTED_FIELD_NUMBER: _ClassVar[int]
    recipe: _training_pb2.TrainingRecipe
    dpo: DpoConfig
    resources: _provenance_pb2.ComputeResources
    run_name: str
    base_model: str
    distributed: _training_pb2.DistributedConfig
    def __init__(self, recipe: _Optional[_Union[_training_pb2.TrainingRecipe, _Mapping]] = ..., dpo: _Optional[_Union[DpoConfig, _Mapping]] = ..., resources: _Optional[_Union[_provenance_pb2.ComputeResources, _Mapping]] = ..., run_name: _Optional[str] = ..., base_model: _Optional[str] = ..., distributed: _Optional[_Union[_training_pb2.DistributedConfig, _Mapping]] = ...) -> None: ...

class DpoReport(_message.Message):
    __slots__ = ("policy", "eval_accuracy_before", "eval_accuracy_after", "eval_loss_before", "eval_loss_after")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    EVAL_ACCURACY_BEFORE_FIELD_NUMBER: _ClassVar[int]
    EVAL_ACCURACY_AFTER_FIELD_NUMBER: _ClassVar[int]
    EVAL_LOSS_BEFORE_FIELD_NUMBER: _ClassVar[int]
    EVAL_LOSS_AFTER_FIELD_NUMBER: _ClassVar[int]
    policy: _training_pb2.ModelArtifact
    eval_accuracy_before: float
    eval_accuracy_after: float
    eval_loss_before: float
    eval_loss_after: float
    def __init__(self, policy: _Optional[_Union[_training_pb2.ModelArtifact, _Mapping]] = ..., eval_accuracy_before: _Optional[float] = ..., eval_accuracy_after: _Optional[float] = ..., eval_loss_before: _Optional[float] = ..., eval_loss_after: _Optional[float] = ...) -> None: ...

class PolicyEvaluationRequest(_message.Message):
    __slots__ = ("max_new_tokens", "temperature", "prompts", "seed", "reference_model", "reward_model", "max_length", "allow_mixed_families")
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_MODEL_FIELD_NUMBER: _ClassVar[int]
    REWARD_MODEL_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    ALLOW_MIXED_FAMILIES_FIELD_NUMBER: _ClassVar[int]
    max_new_tokens: int
    temperature: float
    prompts: int
    seed: int
    reference_model: str
    reward_model: str
    max_length: int
    allow_mixed_families: bool
    def __init__(self, max_new_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., prompts: _Optional[int] = ..., seed: _Optional[int] = ..., reference_model: _Optional[str] = ..., reward_model: _Optional[str] = ..., max_length: _Optional[int] = ..., allow_mixed_families: _Optional[bool] = ...) -> None: ...
