from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class Provenance(_message.Message):
    __slots__ = ("stage", "stage_version", "config_fingerprint", "input_fingerprints")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    STAGE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    INPUT_FINGERPRINTS_FIELD_NUMBER: _ClassVar[int]
    stage: str
    stage_version: str
    config_fingerprint: str
    input_fingerprints: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, stage: _Optional[str] = ..., stage_version: _Optional[str] = ..., config_fingerprint: _Optional[str] = ..., input_fingerprints: _Optional[_Iterable[str]] = ...) -> None: ...

class ComputeResources(_message.Message):
    __slots__ = ("cpu", "memory", "gpu", "accelerator")
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    ACCELERATOR_FIELD_NUMBER: _ClassVar[int]
    cpu: str
    memory: str
    gpu: int
    accelerator: str
    def __init__(self, cpu: _Optional[str] = ..., memory: _Optional[str] = ..., gpu: _Optional[int] = ..., accelerator: _Optional[str] = ...) -> None: ...
