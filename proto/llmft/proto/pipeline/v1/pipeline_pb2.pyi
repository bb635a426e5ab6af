from llmft.proto.common.v1 import provenance_pb2 as _provenance_pb2
from llmft.proto.data.v1 import dataset_pb2 as _dataset_pb2
from llmft.proto.rlhf.v1 import rlhf_pb2 as _rlhf_pb2
from llmft.proto.serve.v1 import serve_pb2 as _serve_pb2
from llmft.proto.training.v1 import training_pb2 as _training_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PipelineRequest(_message.Message):
    __slots__ = ("name", "base_model", "corpus", "chat", "preferences", "cpt", "sft", "reward_model", "ppo", "dpo", "evaluation", "publish", "space", "chat_template", "data_resources", "serve_resources")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    CORPUS_FIELD_NUMBER: _ClassVar[int]
    CHAT_FIELD_NUMBER: _ClassVar[int]
    PREFERENCES_FIELD_NUMBER: _ClassVar[int]
    CPT_FIELD_NUMBER: _ClassVar[int]
    SFT_FIELD_NUMBER: _ClassVar[int]
    REWARD_MODEL_FIELD_NUMBER: _ClassVar[int]
    PPO_FIELD_NUMBER: _ClassVar[int]
    DPO_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    CHAT_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    DATA_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    SERVE_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    name: str
    base_model: str
    corpus: _dataset_pb2.DatasetRequest
    chat: _dataset_pb2.DatasetRequest
    preferences: _dataset_pb2.DatasetRequest
    cpt: _training_pb2.TrainingRequest
    sft: _training_pb2.TrainingRequest
    reward_model: _rlhf_pb2.RewardModelRequest
    ppo: _rlhf_pb2.PpoRequest
    dpo: _rlhf_pb2.DpoRequest
    evaluation: PipelineEvaluation
    publish: _serve_pb2.PublishRequest
    space: SpaceRequest
    chat_template: str
    data_resources: _provenance_pb2.ComputeResources
    serve_resources: _provenance_pb2.ComputeResources
    def __init__(self, name: _Optional[str] = ..., base_model: _Optional[str] = ..., corpus: _Optional[_Union[_dataset_pb2.DatasetRequest, _Mapping]] = ..., chat: _Optional[_Union[_dataset_pb2.DatasetRequest, _Mapping]] = ..., preferences: _Optional[_Union[_dataset_pb2.DatasetRequest, _Mapping]] = ..., cpt: _Optional[_Union[_training_pb2.TrainingRequest, _Mapping]] = ..., sft: _Optional[_Union[_training_pb2.TrainingRequest, _Mapping]] = ..., reward_model: _Optional[_Union[_rlhf_pb2.RewardModelRequest, _Mapping]] = ..., ppo: _Optional[_Union[_rlhf_pb2.PpoRequest, _Mapping]] = ..., dpo: _Optional[_Union[_rlhf_pb2.DpoRequest, _Mapping]] = ..., evaluation: _Optional[_Union[PipelineEvaluation, _Mapping]] = ..., publish: _Optional[_Union[_serve_pb2.PublishRequest, _Mapping]] = ..., space: _Optional[_Union[SpaceRequest, _Mapping]] = ..., chat_template: _Optional[str] = ..., data_resources: _Optional[_Union[_provenance_pb2.ComputeResources, _Mapping]] = ..., serve_resources: _Optional[_Union[_provenance_pb2.ComputeResources, _Mapping]] = ...) -> None: ...

class PipelineEvaluation(_message.Message):
    __slots__ = ("answers", "policies", "candidate", "baseline", "gate", "selection", "resources")
    ANSWERS_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    GATE_FIELD_NUMBER: _ClassVar[int]
    SELECTION_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    answers: _serve_pb2.AnswerEvaluationRequest
    policies: _rlhf_pb2.PolicyEvaluationRequest
    candidate: str
    baseline: str
    gate: _containers.RepeatedCompositeFieldContainer[GateMetric]
    selection: Selection
    resources: _provenance_pb2.ComputeResources
    def __init__(self, answers: _Optional[_Union[_serve_pb2.AnswerEvaluationRequest, _Mapping]] = ..., policies: _Optional[_Union[_rlhf_pb2.PolicyEvaluationRequest, _Mapping]] = ..., candidate: _Optional[str] = ..., baseline: _Optional[str] = ..., gate: _Optional[_Iterable[_Union[GateMetric, _Mapping]]] = ..., selection: _Optional[_Union[Selection, _Mapping]] = ..., resources: _Optional[_Union[_provenance_pb2.ComputeResources, _Mapping]] = ...) -> None: ...

class Selection(_message.Message):
    __slots__ = ("contenders", "rank_by", "min_margin")
    CONTENDERS_FIELD_NUMBER: _ClassVar[int]
    RANK_BY_FIELD_NUMBER: _ClassVar[int]
    MIN_MARGIN_FIELD_NUMBER: _ClassVar[int]
    contenders: _containers.RepeatedScalarFieldContainer[str]
    rank_by: _containers.RepeatedScalarFieldContainer[str]
    min_margin: float
    def __init__(self, contenders: _Optional[_Iterable[str]] = ..., rank_by: _Optional[_Iterable[str]] = ..., min_margin: _Optional[float] = ...) -> None: ...

class GateMetric(_message.Message):
    __slots__ = ("metric", "min_improvement")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    MIN_IMPROVEMENT_FIELD_NUMBER: _ClassVar[int]
    metric: str
    min_improvement: float
    def __init__(self, metric: _Optional[str] = ..., min_improvement: _Optional[float] = ...) -> None: ...

class SpaceRequest(_message.Message):
    __slots__ = ("title",)
    TITLE_FIELD_NUMBER: _ClassVar[int]
    title: str
    def __init__(self, title: _Optional[str] = ...) -> None: ...

class GateCheck(_message.Message):
    __slots__ = ("metric", "candidate", "baseline", "min_improvement", "passed", "against")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    MIN_IMPROVEMENT_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    AGAINST_FIELD_NUMBER: _ClassVar[int]
    metric: str
    candidate: float
    baseline: float
    min_improvement: float
    passed: bool
    against: str
    def __init__(self, metric: _Optional[str] = ..., candidate: _Optional[float] = ..., baseline: _Optional[float] = ..., min_improvement: _Optional[float] = ..., passed: _Optional[bool] = ..., against: _Optional[str] = ...) -> None: ...

class Contender(_message.Message):
    __slots__ = ("name", "score", "metrics")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    name: str
    score: float
    metrics: _containers.ScalarMap[str, float]
    def __init__(self, name: _Optional[str] = ..., score: _Optional[float] = ..., metrics: _Optional[_Mapping[str, float]] = ...) -> None: ...

class GateDecision(_message.Message):
    __slots__ = ("passed", "candidate", "baseline", "checks", "reason", "ranking")
    PASSED_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RANKING_FIELD_NUMBER: _ClassVar[int]
    passed: bool
    candidate: str
    baseline: str
    checks: _containers.RepeatedCompositeFieldContainer[GateCheck]
    reason: str
    ranking: _containers.RepeatedCompositeFieldContainer[Contender]
    def __init__(self, passed: _Optional[bool] = ..., candidate: _Optional[str] = ..., baseline: _Optional[str] = ..., checks: _Optional[_Iterable[_Union[GateCheck, _Mapping]]] = ..., reason: _Optional[str] = ..., ranking: _Optional[_Iterable[_Union[Contender, _Mapping]]] = ...) -> None: ...

class StageRecord(_message.Message):
    __slots__ = ("name", "provenance", "output_fingerprint", "metrics", "seconds")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    provenance: _provenance_pb2.Provenance
    output_fingerprint: str
    metrics: _containers.ScalarMap[str, float]
    seconds: float
    def __init__(self, name: _Optional[str] = ..., provenance: _Optional[_Union[_provenance_pb2.Provenance, _Mapping]] = ..., output_fingerprint: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., seconds: _Optional[float] = ...) -> None: ...

class PipelineReport(_message.Message):
    __slots__ = ("name", "config_fingerprint", "stages", "answers", "policies", "gate", "publish", "candidate")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    ANSWERS_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    GATE_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    name: str
    config_fingerprint: str
    stages: _containers.RepeatedCompositeFieldContainer[StageRecord]
    answers: _serve_pb2.AnswerEvaluation
    policies: _rlhf_pb2.PolicyComparison
    gate: GateDecision
    publish: _serve_pb2.PublishResult
    candidate: str
    def __init__(self, name: _Optional[str] = ..., config_fingerprint: _Optional[str] = ..., stages: _Optional[_Iterable[_Union[StageRecord, _Mapping]]] = ..., answers: _Optional[_Union[_serve_pb2.AnswerEvaluation, _Mapping]] = ..., policies: _Optional[_Union[_rlhf_pb2.PolicyComparison, _Mapping]] = ..., gate: _Optional[_Union[GateDecision, _Mapping]] = ..., publish: _Optional[_Union[_serve_pb2.PublishResult, _Mapping]] = ..., candidate: _Optional[str] = ...) -> None: ...
