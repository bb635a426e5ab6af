"""Content fingerprints and provenance. A fingerprint is "sha256:<hex>" over content, never over a path or a time,
so the same bytes under another path give the same fingerprint and caches keyed on it stay valid."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from llmft.proto.common.v1 import provenance_pb2

PREFIX = "sha256:"
_CHUNK = 1 << 20


def _finish(digest: Any) -> str:
    return PREFIX + digest.hexdigest()


def fingerprint_bytes(data: bytes) -> str:
    return _finish(hashlib.sha256(data))


def fingerprint_text(text: str) -> str:
    return fingerprint_bytes(text.encode("utf-8"))


def fingerprint_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return _finish(digest)


def fingerprint_directory(root: Path, include: Iterable[str] | None = None) -> str:
    """Hashes every file's relative path and content, in sorted order. `include` limits it to those file names."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"cannot fingerprint {root}: not a directory")
    wanted = set(include) if include is not None else None
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if wanted is not None and rel not in wanted:
            continue
        digest.update(rel.encode("utf-8") + b"\0")
        digest.update(fingerprint_file(path).encode("ascii") + b"\n")
    return _finish(digest)


def fingerprint_json(value: Any) -> str:
    """Fingerprint of a JSON-able value with sorted keys, so dict order does not matter."""
    return fingerprint_text(json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False))


def fingerprint_message(message: Message) -> str:
    """Fingerprint of a protobuf message's deterministic serialisation."""
    return fingerprint_bytes(message.SerializeToString(deterministic=True))


def combine(*fingerprints: str) -> str:
    """Fingerprint of an ordered list of fingerprints (e.g. config + inputs)."""
    return fingerprint_text("\n".join(fingerprints))


def short(fingerprint: str, length: int = 12) -> str:
    """The first hex digits, for folder names and log lines."""
    return fingerprint.removeprefix(PREFIX)[:length]


def provenance(stage: str, stage_version: str, config: Message, inputs: Iterable[str]) -> provenance_pb2.Provenance:
    return provenance_pb2.Provenance(
        stage=stage,
        stage_version=stage_version,
        config_fingerprint=fingerprint_message(config),
        input_fingerprints=list(inputs),
    )


def cache_version(stage: str, stage_version: str, dependencies: Mapping[str, str]) -> str:
    """A Flyte cache_version derived from what a stage's code is: its own version and the version of every package it
    runs with (the llmft libraries and the locked third-party pins). A release of the stage, of a library it uses or a
    new lock invalidates its cached outputs; inputs, which carry content fingerprints, key the rest. Readable prefix,
    hashed tail: `<stage>-<version>-<12 hex digits>`."""
    lines = [f"{stage}=={stage_version}", *(f"{name}=={dependencies[name]}" for name in sorted(dependencies))]
    digest = fingerprint_text("\n".join(lines))
    return f"{stage}-{stage_version}-{short(digest)}"
