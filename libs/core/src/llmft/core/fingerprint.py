"""Content fingerprints and provenance. A fingerprint is "sha256:<hex>" over content, never over a path or a time,
so the same bytes under another path give the same fingerprint and caches keyed on it stay valid."""

from __future__ import annotations

import functools
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


# Every file of a package counts, code or not (a preset's tokenizer and shipped configs change what it does), except
# compiled bytecode.
_SKIPPED_SUFFIXES = (".pyc", ".pyo")


def _code_digest(path: Path) -> str:
    """A Python file's code, not its text: the digest of its syntax tree, so a comment, a blank line or a reflowed
    call gives the same digest and an edit to any statement, name or literal (a function body) gives another."""
    import ast

    source = path.read_bytes()
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as error:
        raise ValueError(f"{path}: cannot fingerprint code that does not parse: {error}") from error
    return fingerprint_text(ast.dump(tree, annotate_fields=False, include_attributes=False))


def source_digest(package: str) -> str:
    """The digest of an installed or source-tree package's code: every file under its folders (sorted by relative
    path; Python files by their syntax tree, other files by their bytes; `__pycache__` left out). The same files give
    the same digest wherever they sit (a source checkout, a wheel installed in an image)."""
    import importlib

    try:
        locations = tuple(str(location) for location in importlib.import_module(package).__path__)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"cannot fingerprint the code of {package!r}: not an importable package ({error})") from error
    return _folders_digest(locations)


@functools.cache
def _folders_digest(locations: tuple[str, ...]) -> str:
    """`source_digest` of a package's folders, once per process (every stage's tasks module asks for the libraries')."""
    digest = hashlib.sha256()
    for root in sorted(Path(location) for location in locations):
        files = (p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.relative_to(root).parts)
        for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
            if path.suffix in _SKIPPED_SUFFIXES:
                continue
            rel = path.relative_to(root).as_posix()
            content = _code_digest(path) if path.suffix == ".py" else fingerprint_file(path)
            digest.update(f"{rel}\0{content}\n".encode())
    return _finish(digest)


def cache_version(
    stage: str, stage_version: str, dependencies: Mapping[str, str], code: Mapping[str, str] | None = None
) -> str:
    """A Flyte cache_version derived from what a stage's code is: its own version, the version of every package it
    runs with (the llmft libraries and the locked third-party pins) and `code`, the `source_digest` of each llmft
    package it runs (the stage's own, the contracts, the libraries). A release, a new lock, or an edit to any function
    body of that code invalidates its cached outputs; a comment does not. Inputs, which carry content fingerprints,
    key the rest. Readable prefix, hashed tail: `<stage>-<version>-<12 hex digits>`."""
    code = code or {}
    lines = [
        f"{stage}=={stage_version}",
        *(f"{name}=={dependencies[name]}" for name in sorted(dependencies)),
        *(f"{package} {code[package]}" for package in sorted(code)),
    ]
    digest = fingerprint_text("\n".join(lines))
    return f"{stage}-{stage_version}-{short(digest)}"
