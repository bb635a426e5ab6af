from llmft.proto.common.v1 import provenance_pb2 as _provenance_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DatasetKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATASET_KIND_UNSPECIFIED: _ClassVar[DatasetKind]
    DATASET_KIND_RAW_TEXT: _ClassVar[DatasetKind]
    DATASET_KIND_CHAT: _ClassVar[DatasetKind]
    DATASET_KIND_PREFERENCE: _ClassVar[DatasetKind]
    DATASET_KIND_PROMPT: _ClassVar[DatasetKind]
DATASET_KIND_UNSPECIFIED: DatasetKind
DATASET_KIND_RAW_TEXT: DatasetKind
DATASET_KIND_CHAT: DatasetKind
DATASET_KIND_PREFERENCE: DatasetKind
DATASET_KIND_PROMPT: DatasetKind

class LocalSource(_message.Message):
    __slots__ = ("patterns",)
    PATTERNS_FIELD_NUMBER: _ClassVar[int]
    patterns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, patterns: _Optional[_Iterable[str]] = ...) -> None: ...

class UrlSource(_message.Message):
    __slots__ = ("urls",)
    URLS_FIELD_NUMBER: _ClassVar[int]
    urls: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, urls: _Optional[_Iterable[str]] = ...) -> None: ...

class GitSource(_message.Message):
    __slots__ = ("repository", "revision", "include")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_FIELD_NUMBER: _ClassVar[int]
    repository: str
    revision: str
    include: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, repository: _Optional[str] = ..., revision: _Optional[str] = ..., include: _Optional[_Iterable[str]] = ...) -> None: ...

class HubDatasetSource(_message.Message):
    __slots__ = ("dataset_id", "config_name", "split", "revision")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_NAME_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    config_name: str
    split: str
    revision: str
    def __init__(self, dataset_id: _Optional[str] = ..., config_name: _Optional[str] = ..., split: _Optional[str] = ..., revision: _Optional[str] = ...) -> None: ...

class PythonPackageSource(_message.Message):
    __slots__ = ("packages", "include")
    PACKAGES_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_FIELD_NUMBER: _ClassVar[int]
    packages: _containers.RepeatedScalarFieldContainer[str]
    include: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, packages: _Optional[_Iterable[str]] = ..., include: _Optional[_Iterable[str]] = ...) -> None: ...

class DatasetSource(_message.Message):
    __slots__ = ("local", "url", "git", "hub", "python_package", "format")
    LOCAL_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    GIT_FIELD_NUMBER: _ClassVar[int]
    HUB_FIELD_NUMBER: _ClassVar[int]
    PYTHON_PACKAGE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    local: LocalSource
    url: UrlSource
    git: GitSource
    hub: HubDatasetSource
    python_package: PythonPackageSource
    format: str
    def __init__(self, local: _Optional[_Union[LocalSource, _Mapping]] = ..., url: _Optional[_Union[UrlSource, _Mapping]] = ..., git: _Optional[_Union[GitSource, _Mapping]] = ..., hub: _Optional[_Union[HubDatasetSource, _Mapping]] = ..., python_package: _Optional[_Union[PythonPackageSource, _Mapping]] = ..., format: _Optional[str] = ...) -> None: ...

class CleaningConfig(_message.Message):
    __slots__ = ("normalize", "deduplicate_exact", "near_duplicate_threshold", "min_chars", "max_chars", "drop_patterns", "languages")
    NORMALIZE_FIELD_NUMBER: _ClassVar[int]
    DEDUPLICATE_EXACT_FIELD_NUMBER: _ClassVar[int]
    NEAR_DUPLICATE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MIN_CHARS_FIELD_NUMBER: _ClassVar[int]
    MAX_CHARS_FIELD_NUMBER: _ClassVar[int]
    DROP_PATTERNS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGES_FIELD_NUMBER: _ClassVar[int]
    normalize: bool
    deduplicate_exact: bool
    near_duplicate_threshold: float
    min_chars: int
    max_chars: int
    drop_patterns: _containers.RepeatedScalarFieldContainer[str]
    languages: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, normalize: _Optional[bool] = ..., deduplicate_exact: _Optional[bool] = ..., near_duplicate_threshold: _Optional[float] = ..., min_chars: _Optional[int] = ..., max_chars: _Optional[int] = ..., drop_patterns: _Optional[_Iterable[str]] = ..., languages: _Optional[_Iterable[str]] = ...) -> None: ...

class SplitConfig(_message.Message):
    __slots__ = ("eval_fraction", "seed")
    EVAL_FRACTION_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    eval_fraction: float
    seed: int
    def __init__(self, eval_fraction: _Optional[float] = ..., seed: _Optional[int] = ...) -> None: ...

class DatasetRequest(_message.Message):
    __slots__ = ("name", "kind", "sources", "cleaning", "split", "tokenizer", "max_tokens", "chat_template")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    CLEANING_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CHAT_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: DatasetKind
    sources: _containers.RepeatedCompositeFieldContainer[DatasetSource]
    cleaning: CleaningConfig
    split: SplitConfig
    tokenizer: str
    max_tokens: int
    chat_template: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[DatasetKind, str]] = ..., sources: _Optional[_Iterable[_Union[DatasetSource, _Mapping]]] = ..., cleaning: _Optional[_Union[CleaningConfig, _Mapping]] = ..., split: _Optional[_Union[SplitConfig, _Mapping]] = ..., tokenizer: _Optional[str] = ..., max_tokens: _Optional[int] = ..., chat_template: _Optional[str] = ...) -> None: ...

class SplitStats(_message.Message):
    __slots__ = ("name", "rows", "characters", "tokens", "rows_over_max_tokens")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    ROWS_OVER_MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    name: str
    rows: int
    characters: int
    tokens: int
    rows_over_max_tokens: int
    def __init__(self, name: _Optional[str] = ..., rows: _Optional[int] = ..., characters: _Optional[int] = ..., tokens: _Optional[int] = ..., rows_over_max_tokens: _Optional[int] = ...) -> None: ...

class CleaningStepReport(_message.Message):
    __slots__ = ("step", "rows_removed", "first_row", "rows_changed")
    STEP_FIELD_NUMBER: _ClassVar[int]
    ROWS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    FIRST_ROW_FIELD_NUMBER: _ClassVar[int]
    ROWS_CHANGED_FIELD_NUMBER: _ClassVar[int]
    step: str
    rows_removed: int
    first_row: str
    rows_changed: int
    def __init__(self, step: _Optional[str] = ..., rows_removed: _Optional[int] = ..., first_row: _Optional[str] = ..., rows_changed: _Optional[int] = ...) -> None: ...

class DatasetManifest(_message.Message):
    __slots__ = ("name", "kind", "fingerprint", "schema_version", "splits", "cleaning", "tokenizer_fingerprint", "provenance", "source_fingerprints")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    SPLITS_FIELD_NUMBER: _ClassVar[int]
    CLEANING_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FINGERPRINTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: DatasetKind
    fingerprint: str
    schema_version: str
    splits: _containers.RepeatedCompositeFieldContainer[SplitStats]
    cleaning: _containers.RepeatedCompositeFieldContainer[CleaningStepReport]
    tokenizer_fingerprint: str
    provenance: _provenance_pb2.Provenance
    source_fingerprints: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[DatasetKind, str]] = ..., fingerprint: _Optional[str] = ..., schema_version: _Optional[str] = ..., splits: _Optional[_Iterable[_Union[SplitStats, _Mapping]]] = ..., cleaning: _Optional[_Iterable[_Union[CleaningStepReport, _Mapping]]] = ..., tokenizer_fingerprint: _Optional[str] = ..., provenance: _Optional[_Union[_provenance_pb2.Provenance, _Mapping]] = ..., source_fingerprints: _Optional[_Iterable[str]] = ...) -> None: ...
