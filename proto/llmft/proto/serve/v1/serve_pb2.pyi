from llmft.proto.common.v1 import provenance_pb2 as _provenance_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FinishReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FINISH_REASON_UNSPECIFIED: _ClassVar[FinishReason]
    FINISH_REASON_STOP: _ClassVar[FinishReason]
    FINISH_REASON_LENGTH: _ClassVar[FinishReason]
FINISH_REASON_UNSPECIFIED: FinishReason
FINISH_REASON_STOP: FinishReason
FINISH_REASON_LENGTH: FinishReason

class ChatMessage(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class GenerationConfig(_message.Message):
    __slots__ = ("max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed", "stop")
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    REPETITION_PENALTY_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    max_new_tokens: int
    temperature: float
    top_p: float
    top_k: int
    repetition_penalty: float
    seed: int
    stop: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, max_new_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., top_k: _Optional[int] = ..., repetition_penalty: _Optional[float] = ..., seed: _Optional[int] = ..., stop: _Optional[_Iterable[str]] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("prompt_tokens", "completion_tokens")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    completion_tokens: int
    def __init__(self, prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("messages", "prompt", "generation")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    prompt: str
    generation: GenerationConfig
    def __init__(self, messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., prompt: _Optional[str] = ..., generation: _Optional[_Union[GenerationConfig, _Mapping]] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("text", "finish_reason", "usage", "model_fingerprint")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    text: str
    finish_reason: FinishReason
    usage: Usage
    model_fingerprint: str
    def __init__(self, text: _Optional[str] = ..., finish_reason: _Optional[_Union[FinishReason, str]] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., model_fingerprint: _Optional[str] = ...) -> None: ...

class GenerateStreamRequest(_message.Message):
    __slots__ = ("messages", "prompt", "generation")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    prompt: str
    generation: GenerationConfig
    def __init__(self, messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., prompt: _Optional[str] = ..., generation: _Optional[_Union[GenerationConfig, _Mapping]] = ...) -> None: ...

class GenerateStreamResponse(_message.Message):
    __slots__ = ("text_delta", "finish_reason", "usage")
    TEXT_DELTA_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    text_delta: str
    finish_reason: FinishReason
    usage: Usage
    def __init__(self, text_delta: _Optional[str] = ..., finish_reason: _Optional[_Union[FinishReason, str]] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetModelInfoResponse(_message.Message):
    __slots__ = ("model_fingerprint", "base_model", "model_family", "max_positions", "has_chat_template")
    MODEL_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_FAMILY_FIELD_NUMBER: _ClassVar[int]
    MAX_POSITIONS_FIELD_NUMBER: _ClassVar[int]
    HAS_CHAT_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    model_fingerprint: str
    base_model: str
    model_family: str
    max_positions: int
    has_chat_template: bool
    def __init__(self, model_fingerprint: _Optional[str] = ..., base_model: _Optional[str] = ..., model_family: _Optional[str] = ..., max_positions: _Optional[int] = ..., has_chat_template: _Optional[bool] = ...) -> None: ...

class BatchInferenceRequest(_message.Message):
    __slots__ = ("generation", "shards", "batch_size", "resources")
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    generation: GenerationConfig
    shards: int
    batch_size: int
    resources: _provenance_pb2.ComputeResources
    def __init__(self, generation: _Optional[_Union[GenerationConfig, _Mapping]] = ..., shards: _Optional[int] = ..., batch_size: _Optional[int] = ..., resources: _Optional[_Union[_provenance_pb2.ComputeResources, _Mapping]] = ...) -> None: ...

class BatchInferenceResult(_message.Message):
    __slots__ = ("prompts", "completion_tokens", "tokens_per_second", "fingerprint", "provenance")
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    prompts: int
    completion_tokens: int
    tokens_per_second: float
    fingerprint: str
    provenance: _provenance_pb2.Provenance
    def __init__(self, prompts: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., tokens_per_second: _Optional[float] = ..., fingerprint: _Optional[str] = ..., provenance: _Optional[_Union[_provenance_pb2.Provenance, _Mapping]] = ...) -> None: ...

class PublishRequest(_message.Message):
    __slots__ = ("model_repo_id", "space_repo_id", "private", "commit_message", "local_dir")
    MODEL_REPO_ID_FIELD_NUMBER: _ClassVar[int]
    SPACE_REPO_ID_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_FIELD_NUMBER: _ClassVar[int]
    COMMIT_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LOCAL_DIR_FIELD_NUMBER: _ClassVar[int]
    model_repo_id: str
    space_repo_id: str
    private: bool
    commit_message: str
    local_dir: str
    def __init__(self, model_repo_id: _Optional[str] = ..., space_repo_id: _Optional[str] = ..., private: _Optional[bool] = ..., commit_message: _Optional[str] = ..., local_dir: _Optional[str] = ...) -> None: ...

class PublishResult(_message.Message):
    __slots__ = ("model_url", "space_url", "model_commit", "space_commit", "provenance")
    MODEL_URL_FIELD_NUMBER: _ClassVar[int]
    SPACE_URL_FIELD_NUMBER: _ClassVar[int]
    MODEL_COMMIT_FIELD_NUMBER: _ClassVar[int]
    SPACE_COMMIT_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    model_url: str
    space_url: str
    model_commit: str
    space_commit: str
    provenance: _provenance_pb2.Provenance
    def __init__(self, model_url: _Optional[str] = ..., space_url: _Optional[str] = ..., model_commit: _Optional[str] = ..., space_commit: _Optional[str] = ..., provenance: _Optional[_Union[_provenance_pb2.Provenance, _Mapping]] = ...) -> None: ...

class AnswerEvaluationRequest(_message.Message):
    __slots__ = ("questions", "max_new_tokens", "batch_size", "examples", "general_questions")
    QUESTIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    GENERAL_QUESTIONS_FIELD_NUMBER: _ClassVar[int]
    questions: int
    max_new_tokens: int
    batch_size: int
    examples: int
    general_questions: bool
    def __init__(self, questions: _Optional[int] = ..., max_new_tokens: _Optional[int] = ..., batch_size: _Optional[int] = ..., examples: _Optional[int] = ..., general_questions: _Optional[bool] = ...) -> None: ...

class AnswerExample(_message.Message):
    __slots__ = ("question", "reference", "answer", "first_sentence_matches")
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    FIRST_SENTENCE_MATCHES_FIELD_NUMBER: _ClassVar[int]
    question: str
    reference: str
    answer: str
    first_sentence_matches: bool
    def __init__(self, question: _Optional[str] = ..., reference: _Optional[str] = ..., answer: _Optional[str] = ..., first_sentence_matches: _Optional[bool] = ...) -> None: ...

class ModelAnswers(_message.Message):
    __slots__ = ("name", "model_fingerprint", "first_sentence_match", "exact_match", "mean_answer_tokens", "examples", "general_match", "general_right")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    FIRST_SENTENCE_MATCH_FIELD_NUMBER: _ClassVar[int]
    EXACT_MATCH_FIELD_NUMBER: _ClassVar[int]
    MEAN_ANSWER_TOKENS_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    GENERAL_MATCH_FIELD_NUMBER: _ClassVar[int]
    GENERAL_RIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    model_fingerprint: str
    first_sentence_match: float
    exact_match: float
    mean_answer_tokens: float
    examples: _containers.RepeatedCompositeFieldContainer[AnswerExample]
    general_match: float
    general_right: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, name: _Optional[str] = ..., model_fingerprint: _Optional[str] = ..., first_sentence_match: _Optional[float] = ..., exact_match: _Optional[float] = ..., mean_answer_tokens: _Optional[float] = ..., examples: _Optional[_Iterable[_Union[AnswerExample, _Mapping]]] = ..., general_match: _Optional[float] = ..., general_right: _Optional[_Iterable[bool]] = ...) -> None: ...

class AnswerEvaluation(_message.Message):
    __slots__ = ("models", "questions", "dataset_fingerprint", "general_questions")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    QUESTIONS_FIELD_NUMBER: _ClassVar[int]
    DATASET_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    GENERAL_QUESTIONS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelAnswers]
    questions: int
    dataset_fingerprint: str
    general_questions: int
    def __init__(self, models: _Optional[_Iterable[_Union[ModelAnswers, _Mapping]]] = ..., questions: _Optional[int] = ..., dataset_fingerprint: _Optional[str] = ..., general_questions: _Optional[int] = ...) -> None: ...
