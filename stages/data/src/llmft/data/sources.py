"""Reading records from every kind of source: local files and globs, http(s) URLs, git repositories at a pinned
commit, Hugging Face datasets, and installed Python distributions. A record is a dict of raw fields plus the place it
came from ("file.jsonl:12"); `normalize.py` turns records into rows of a dataset kind. Every source also yields a
content fingerprint (file bytes, resolved commit), never a path."""

from __future__ import annotations

import ast
import csv
import fnmatch
import glob
import hashlib
import importlib.metadata
import inspect
import io
import json
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmft.core.fingerprint import fingerprint_bytes, fingerprint_text
from llmft.proto.data.v1 import dataset_pb2

TEXT_SUFFIXES = {".txt", ".md", ".rst", ".py", ".pyi", ".toml", ".yaml", ".yml", ".cfg", ".ini", ".sh", ".proto"}
PACKAGE_DEFAULT_INCLUDE = ["*.py", "*.md", "*.rst", "*.txt"]
FORMATS = {"auto", "text", "jsonl", "csv", "parquet", "alpaca", "sharegpt", "python_docstrings"}
MAX_FILE_BYTES = 512 * 1024 * 1024


class SourceError(ValueError):
    """A source that cannot be read; the message names the file, URL or repository and, where it applies, the row."""


@dataclass
class Record:
    fields: dict[str, Any]
    origin: str


@dataclass
class SourceData:
    """What one source produced: its records and the fingerprints of the content they came from."""

    records: list[Record] = field(default_factory=list)
    fingerprints: list[str] = field(default_factory=list)


def _format_of(path: str, requested: str) -> str:
    if requested and requested != "auto":
        return requested
    suffix = Path(urllib.parse.urlparse(path).path).suffix.lower()
    if suffix in {".jsonl", ".json", ".ndjson"}:
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    if suffix == ".parquet":
        return "parquet"
    return "text"


def _decode(data: bytes, origin: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise SourceError(f"{origin}:{line}: not valid UTF-8 (byte offset {error.start}: {error.reason})") from error


def records_from_bytes(data: bytes, origin: str, fmt: str) -> list[Record]:
    """Parses one file's bytes in format `fmt` ("text", "jsonl", "csv", "parquet", "alpaca", "sharegpt",
    "python_docstrings")."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(io.BytesIO(data))
        except Exception as error:  # pyarrow raises several unrelated types for corrupt files
            raise SourceError(f"{origin}: not a readable Parquet file: {error}") from error
        return [Record(row, f"{origin}:{i + 1}") for i, row in enumerate(table.to_pylist())]
    text = _decode(data, origin)
    if fmt == "text":
        return [Record({"text": text}, origin)]
    if fmt == "python_docstrings":
        return docstring_conversations(text, origin)
    if fmt in {"jsonl", "alpaca", "sharegpt"}:
        stripped = text.lstrip()
        if stripped.startswith("["):
            try:
                items = json.loads(text)
            except json.JSONDecodeError as error:
                raise SourceError(f"{origin}:{error.lineno}: malformed JSON: {error.msg}") from error
            pairs = [(i + 1, item) for i, item in enumerate(items)]
            unit = "item"
        else:
            pairs = []
            for number, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    pairs.append((number, json.loads(line)))
                except json.JSONDecodeError as error:
                    raise SourceError(
                        f"{origin}:{number}: malformed JSON: {error.msg} (column {error.colno})"
                    ) from error
            unit = "line"
        records = []
        for number, item in pairs:
            if not isinstance(item, dict):
                raise SourceError(f"{origin}:{number}: {unit} is a JSON {type(item).__name__}, expected an object")
            records.append(Record(item, f"{origin}:{number}"))
        return records
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        return [Record(dict(row), f"{origin}:{i + 2}") for i, row in enumerate(reader)]
    raise SourceError(f"{origin}: unknown format {fmt!r}; one of {', '.join(sorted(FORMATS))}")


def docstring_conversations(code: str, origin: str) -> list[Record]:
    """Derives chat conversations from Python source: for each public, documented function or class, a user asks
    what it does and the assistant answers with its docstring's summary and its signature."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    module = origin.rsplit(":", 1)[0].removesuffix(".py").replace("/", ".").removesuffix(".__init__")
    records: list[Record] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            if child.name.startswith("_"):
                continue
            name = f"{prefix}{child.name}"
            doc = ast.get_docstring(child)
            if doc:
                summary = inspect.cleandoc(doc).split("\n\n", 1)[0].strip()
                if len(summary) >= 20:
                    if isinstance(child, ast.ClassDef):
                        kind, signature = "class", f"class {child.name}"
                    else:
                        kind = "function" if not prefix else "method"
                        signature = f"def {child.name}({ast.unparse(child.args)})"
                    answer = f"`{name}` is a {kind} in `{module}`. {summary}\n\nSignature: `{signature}`"
                    question = f"What does `{name}` in `{module}` do?"
                    records.append(
                        Record(
                            {
                                "messages": [
                                    {"role": "user", "content": question},
                                    {"role": "assistant", "content": answer},
                                ]
                            },
                            f"{origin}:{child.lineno}",
                        )
                    )
            if isinstance(child, ast.ClassDef):
                visit(child, f"{name}.")

    visit(tree, "")
    return records


def _read_file(path: Path, origin: str) -> bytes:
    try:
        size = path.stat().st_size
    except FileNotFoundError as error:
        raise SourceError(f"{origin}: file not found") from error
    if size > MAX_FILE_BYTES:
        raise SourceError(f"{origin}: {size} bytes is over the {MAX_FILE_BYTES}-byte limit for one file")
    return path.read_bytes()


def _expand_local(pattern: str) -> list[Path]:
    path = Path(pattern).expanduser()
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and not any(s.startswith(".") for s in p.parts))
    if path.is_file():
        return [path]
    if glob.has_magic(pattern):
        return sorted(Path(p) for p in glob.glob(os.path.expanduser(pattern), recursive=True) if Path(p).is_file())
    raise SourceError(f"{pattern}: file not found")


def read_local(source: dataset_pb2.LocalSource, fmt: str) -> SourceData:
    if not source.patterns:
        raise SourceError("local.patterns: empty; name at least one file, folder or glob")
    out = SourceData()
    for pattern in source.patterns:
        files = _expand_local(pattern)
        if not files:
            raise SourceError(f"{pattern}: the pattern matches no files")
        for path in files:
            data = _read_file(path, str(path))
            out.fingerprints.append(fingerprint_bytes(data))
            out.records.extend(records_from_bytes(data, str(path), _format_of(str(path), fmt)))
    return out


def read_urls(source: dataset_pb2.UrlSource, fmt: str, timeout: float = 30.0) -> SourceData:
    if not source.urls:
        raise SourceError("url.urls: empty")
    out = SourceData()
    for url in source.urls:
        scheme = urllib.parse.urlparse(url).scheme
        if scheme not in {"http", "https"}:
            raise SourceError(f"{url}: only http(s) URLs are read (got scheme {scheme!r})")
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                data = response.read(MAX_FILE_BYTES + 1)
        except urllib.error.HTTPError as error:
            raise SourceError(f"{url}: HTTP {error.code} {error.reason}") from error
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise SourceError(f"{url}: unreachable ({reason})") from error
        if len(data) > MAX_FILE_BYTES:
            raise SourceError(f"{url}: over the {MAX_FILE_BYTES}-byte limit for one file")
        out.fingerprints.append(fingerprint_bytes(data))
        out.records.extend(records_from_bytes(data, url, _format_of(url, fmt)))
    return out


def _git(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SourceError(result.stderr.strip() or f"git {' '.join(args)} failed")
    return result.stdout.strip()


def read_git(source: dataset_pb2.GitSource, fmt: str) -> SourceData:
    if not source.repository:
        raise SourceError("git.repository: empty")
    if shutil.which("git") is None:
        raise SourceError("git.repository: the git executable is not installed")
    revision = source.revision or "HEAD"
    with tempfile.TemporaryDirectory(prefix="llmft-git-") as tmp:
        checkout = Path(tmp) / "repo"
        try:
            _git("clone", "--quiet", "--no-checkout", source.repository, str(checkout))
        except SourceError as error:
            raise SourceError(f"{source.repository}: cannot clone: {error}") from error
        try:
            commit = _git("rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}", cwd=checkout)
        except SourceError as error:
            raise SourceError(f"{source.repository}: revision {revision!r} does not exist") from error
        _git("-c", "advice.detachedHead=false", "checkout", "--quiet", commit, cwd=checkout)
        out = SourceData(fingerprints=[fingerprint_text(f"git:{commit}")])
        include = list(source.include)
        listed = _git("ls-files", "-z", cwd=checkout).split("\0")
        for rel in sorted(p for p in listed if p):
            if include:
                if not any(fnmatch.fnmatch(rel, pattern) for pattern in include):
                    continue
            elif Path(rel).suffix.lower() not in TEXT_SUFFIXES:
                continue
            origin = f"{source.repository}@{commit[:12]}:{rel}"
            data = _read_file(checkout / rel, origin)
            out.records.extend(records_from_bytes(data, origin, _format_of(rel, fmt)))
    if not out.records:
        raise SourceError(f"{source.repository}@{revision}: no files match {include or sorted(TEXT_SUFFIXES)}")
    return out


def read_hub(source: dataset_pb2.HubDatasetSource) -> SourceData:
    if not source.dataset_id:
        raise SourceError("hub.dataset_id: empty")
    import datasets

    try:
        loaded = datasets.load_dataset(
            source.dataset_id,
            source.config_name or None,
            split=source.split or "train",
            revision=source.revision or None,
        )
    except Exception as error:  # datasets raises many types (connection, file not found, config errors)
        raise SourceError(f"hub dataset {source.dataset_id!r}: cannot load: {error}") from error
    fingerprint = fingerprint_text(f"hf-datasets:{source.dataset_id}:{source.config_name}:{loaded._fingerprint}")
    records = [Record(dict(row), f"{source.dataset_id}[{source.split or 'train'}]:{i}") for i, row in enumerate(loaded)]
    return SourceData(records=records, fingerprints=[fingerprint])


def read_python_package(source: dataset_pb2.PythonPackageSource, fmt: str) -> SourceData:
    if not source.packages:
        raise SourceError("python_package.packages: empty")
    include = list(source.include) or PACKAGE_DEFAULT_INCLUDE
    out = SourceData()
    for name in source.packages:
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError as error:
            raise SourceError(f"python_package {name!r}: not installed") from error
        files = sorted(
            (f for f in distribution.files or [] if any(fnmatch.fnmatch(f.name, pattern) for pattern in include)),
            key=str,
        )
        digest = hashlib.sha256(f"{name}=={distribution.version}".encode())
        for file in files:
            if ".dist-info" in str(file) or "__pycache__" in str(file):
                continue
            path = Path(str(distribution.locate_file(file)))
            if not path.is_file():
                continue
            data = _read_file(path, str(file))
            digest.update(fingerprint_bytes(data).encode())
            chosen = fmt if fmt and fmt != "auto" else "text"
            out.records.extend(records_from_bytes(data, str(file), chosen))
        out.fingerprints.append("sha256:" + digest.hexdigest())
    return out


def read_source(source: dataset_pb2.DatasetSource) -> SourceData:
    fmt = source.format or "auto"
    if fmt not in FORMATS:
        raise SourceError(f"format: {fmt!r} is not one of {', '.join(sorted(FORMATS))}")
    which = source.WhichOneof("source")
    if which == "local":
        return read_local(source.local, fmt)
    if which == "url":
        return read_urls(source.url, fmt)
    if which == "git":
        return read_git(source.git, fmt)
    if which == "hub":
        return read_hub(source.hub)
    if which == "python_package":
        return read_python_package(source.python_package, fmt)
    raise SourceError("source: none of local, url, git, hub or python_package is set")


def iter_sources(sources: list[dataset_pb2.DatasetSource]) -> Iterator[SourceData]:
    for source in sources:
        yield read_source(source)
