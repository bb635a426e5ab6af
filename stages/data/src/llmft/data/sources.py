"""Reading records from every kind of source, as streams: local files and globs, http(s) URLs, git repositories at
a pinned commit, Hugging Face datasets, and installed Python distributions. A record is a dict of raw fields plus the
place it came from ("file.jsonl:12"); `normalize.py` turns records into rows of a dataset kind.

Records are yielded one at a time: JSONL and CSV line by line, Parquet by record batch, a text file as one record;
nothing holds a whole corpus in memory. On request (`blocks`), JSONL with a string `text` field comes as TextBlocks:
whole lines parsed by Arrow in one call, where Arrow reads them exactly as the line reader would. Each source
appends the content fingerprints of what it read (file bytes, resolved commits, dataset fingerprints) to a list the
caller owns; the list is complete once the stream is exhausted. A record over MAX_RECORD_BYTES (a 10 MB line or
text file, say) fails naming its file and row."""

from __future__ import annotations

import ast
import csv
import fnmatch
import glob
import hashlib
import importlib.metadata
import inspect
import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from llmft.core.files import DuplicateKeyError, loads_json
from llmft.core.fingerprint import PREFIX, fingerprint_text
from llmft.proto.data.v1 import dataset_pb2

TEXT_SUFFIXES = {".txt", ".md", ".rst", ".py", ".pyi", ".toml", ".yaml", ".yml", ".cfg", ".ini", ".sh", ".proto"}
PACKAGE_DEFAULT_INCLUDE = ["*.py", "*.md", "*.rst", "*.txt"]
# What `python_docstrings` reads of a folder, a repository or a package: its Python files.
PYTHON_SUFFIXES = {".py", ".pyi"}
FORMATS = {"auto", "text", "jsonl", "csv", "parquet", "alpaca", "sharegpt", "python_docstrings"}
# One record (a text file, a JSONL line, a CSV or Parquet row) may not be larger than this.
MAX_RECORD_BYTES = 4 * 1024 * 1024
# A JSON array file is parsed whole (JSONL streams); cap it.
MAX_JSON_ARRAY_BYTES = 256 * 1024 * 1024
MAX_DOWNLOAD_BYTES = 16 * 1024 * 1024 * 1024
_CHUNK = 1 << 20


class SourceError(ValueError):
    """A source that cannot be read; the message names the file, URL or repository and, where it applies, the row."""


@dataclass
class Record:
    fields: dict[str, Any]
    origin: str


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


def _decode(data: bytes, origin: str, first_line: int = 1, at_start: bool = False) -> str:
    """UTF-8 text; `at_start`: the bytes open a file, where a byte-order mark (what spreadsheet programs write as
    "CSV UTF-8") is dropped."""
    try:
        text = data.decode("utf-8")
        return text.removeprefix("\ufeff") if at_start else text
    except UnicodeDecodeError as error:
        line = first_line + data[: error.start].count(b"\n")
        raise SourceError(f"{origin}:{line}: not valid UTF-8 (byte offset {error.start}: {error.reason})") from error


def _check_size(size: int, origin: str) -> None:
    if size > MAX_RECORD_BYTES:
        raise SourceError(
            f"{origin}: one record of {size:,} bytes is over the {MAX_RECORD_BYTES:,}-byte limit for a row; "
            "split it or drop it before ingestion"
        )


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return PREFIX + digest.hexdigest()


def _json_object(item: Any, origin: str, unit: str) -> Record:
    if not isinstance(item, dict):
        raise SourceError(f"{origin}: {unit} is a JSON {type(item).__name__}, expected an object")
    return Record(item, origin)


def _jsonl_records(path: Path, origin: str, digest: Any) -> Iterator[Record]:
    with open(path, "rb") as handle:
        head = handle.read(64).lstrip()
        handle.seek(0)
        if head.startswith(b"["):
            data = handle.read(MAX_JSON_ARRAY_BYTES + 1)
            if len(data) > MAX_JSON_ARRAY_BYTES:
                raise SourceError(f"{origin}: a JSON array file over {MAX_JSON_ARRAY_BYTES:,} bytes; use JSONL")
            digest.update(data)
            try:
                items = loads_json(_decode(data, origin, at_start=True), origin)
            except json.JSONDecodeError as error:
                raise SourceError(f"{origin}:{error.lineno}: malformed JSON: {error.msg}") from error
            except DuplicateKeyError as error:
                raise SourceError(str(error)) from error
            for number, item in enumerate(items, start=1):
                yield _json_object(item, f"{origin}:{number}", "item")
            return
        yield from json_lines(handle, origin, digest)


def json_lines(lines: Iterable[bytes], origin: str, digest: Any, first: int = 1) -> Iterator[Record]:
    """One record per JSON line; `first` is the first line's number in its file. Blank lines are skipped."""
    for number, line in enumerate(lines, start=first):
        if digest is not None:
            digest.update(line)
        if not line.strip():
            continue
        _check_size(len(line), f"{origin}:{number}")
        try:
            item = loads_json(_decode(line, origin, number, at_start=number == 1), origin, first_line=number)
        except json.JSONDecodeError as error:
            raise SourceError(f"{origin}:{number}: malformed JSON: {error.msg} (column {error.colno})") from error
        except DuplicateKeyError as error:
            raise SourceError(str(error)) from error
        yield _json_object(item, f"{origin}:{number}", "line")


@dataclass
class TextBlock:
    """Consecutive lines of a JSONL file, every one an object with a string `text`, parsed by Arrow in one call: the
    raw text of line `first + i` is `text[i]` (not normalised). What `file_records(..., blocks=True)` yields where
    Arrow read a block exactly as the line-by-line path would have."""

    origin: str
    first: int
    text: Any  # pyarrow.StringArray


@dataclass
class Skipped:
    """A file skipped, not refused: Python source that does not parse, read as `python_docstrings` (a repository's
    Python 2 files or code templates). The acquisition counts it where the user sees it."""

    origin: str  # file and line of the error
    reason: str


PYTHON_SKIP_STEP = "skip_unparsable_python"


def _split_lines(block: bytes) -> list[bytes]:
    """`block` cut after each b"\n", as iterating over a file does (bytes.splitlines also cuts at \r, \v, ...)."""
    lines = [line + b"\n" for line in block.split(b"\n")]
    lines[-1] = lines[-1][:-1]
    return lines if lines[-1] else lines[:-1]


def _arrow_text(block: bytes, lines: int) -> Any:
    """The `text` of each line of `block` parsed by Arrow, or None where the block is not plainly one object with a
    string `text` per line (blank lines, a byte-order mark, a missing, null or non-string `text`, malformed JSON,
    invalid UTF-8 or lone surrogates): the line-by-line path reads such a block and names what is wrong."""
    import pyarrow as pa
    import pyarrow.json as pj

    if b"\xef\xbb\xbf" in block:  # Arrow drops a byte-order mark anywhere; JSON allows none inside a file
        return None
    options = pj.ParseOptions(explicit_schema=pa.schema([("text", pa.string())]), unexpected_field_behavior="ignore")
    try:
        text = pj.read_json(pa.BufferReader(block), parse_options=options).column("text").combine_chunks()
        text.validate(full=True)
    except (pa.ArrowException, ValueError):  # ArrowInvalid is a ValueError
        return None
    # Arrow skips blank lines, which the line path skips too but counts: then the line numbers would not match.
    return text if len(text) == lines and text.null_count == 0 else None


def _line_count(block: bytes) -> int:
    return block.count(b"\n") + (not block.endswith(b"\n"))


def _jsonl_blocks(path: Path, origin: str, digest: Any) -> Iterator[Record | TextBlock]:
    """JSONL read in blocks of whole lines (at most MAX_RECORD_BYTES each, so no line in a block is over the limit):
    a block Arrow parses plainly is one TextBlock; any other block is read line by line, with the same errors and line
    numbers as `_jsonl_records`."""
    with open(path, "rb") as handle:
        if handle.read(64).lstrip().startswith(b"["):
            yield from _jsonl_records(path, origin, digest)
            return
        handle.seek(0)
        first, rest = 1, b""
        while True:
            block = rest + handle.read(MAX_RECORD_BYTES - len(rest))
            if not block:
                return
            cut = block.rfind(b"\n") + 1
            if cut == 0 and len(block) == MAX_RECORD_BYTES:  # one line over the limit: the line path says so
                yield from json_lines(_split_lines(block + handle.readline()), origin, digest, first)
                return
            block, rest = (block[:cut], block[cut:]) if cut else (block, b"")
            digest.update(block)
            lines = _line_count(block)
            text = _arrow_text(block, lines)
            if text is None:
                yield from json_lines(_split_lines(block), origin, None, first)
            else:
                yield TextBlock(origin, first, text)
            first += lines


def _csv_records(path: Path, origin: str, digest: Any) -> Iterator[Record]:
    def lines() -> Iterator[str]:
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                digest.update(raw)
                _check_size(len(raw), f"{origin}:{number}")
                yield _decode(raw, origin, number, at_start=number == 1)

    reader = csv.DictReader(lines())
    for row in reader:
        where = f"{origin}:{reader.line_num}"
        extra = row.pop(None, None) or []  # type: ignore[call-overload]  # DictReader's key of surplus values
        missing = [name for name, value in row.items() if value is None]
        if extra or missing:
            header = list(reader.fieldnames or [])
            raise SourceError(
                f"{where}: {len(header) - len(missing) + len(extra)} values for the {len(header)} columns of the "
                f"header ({', '.join(header)}); a value, a comma or a closing quote is missing or extra"
            )
        yield Record(dict(row), where)


def _parquet_records(path: Path, origin: str) -> Iterator[Record]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        number = 0
        for batch in parquet.iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                number += 1
                yield Record(row, f"{origin}:{number}")
    except (OSError, ValueError) as error:  # pyarrow.ArrowInvalid is a ValueError, ArrowIOError an OSError
        raise SourceError(f"{origin}: not a readable Parquet file: {error}") from error


def file_records(
    path: Path,
    origin: str,
    fmt: str,
    fingerprints: list[str],
    allow_empty: bool = True,
    blocks: bool = False,
    module: str = "",
) -> Iterator[Record | TextBlock | Skipped]:
    """Streams one file's records in format `fmt`; appends the file's content fingerprint once it is read. An empty
    file is an error unless `allow_empty` (a package's or repository's files, where an empty `__init__.py` is the
    norm: its blank row is dropped and counted by cleaning). With `blocks`, JSONL comes as TextBlocks where Arrow
    reads it plainly (raw text with a `text` field: the data stage's fast path), as records elsewhere.
    `python_docstrings` names the code's module `module`, else the name Python imports the file by (`module_name`)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError as error:
        raise SourceError(f"{origin}: file not found") from error
    if size == 0 and not allow_empty:
        raise SourceError(f"{origin}: the file is empty; remove it or leave it out of the source")
    if fmt == "parquet":
        yield from _parquet_records(path, origin)
        fingerprints.append(_hash_file(path))
        return
    if fmt in {"jsonl", "alpaca", "sharegpt", "csv"}:
        digest = hashlib.sha256()
        if fmt == "jsonl" and blocks:
            yield from _jsonl_blocks(path, origin, digest)
        else:
            yield from (_csv_records if fmt == "csv" else _jsonl_records)(path, origin, digest)
        fingerprints.append(PREFIX + digest.hexdigest())
        return
    if fmt not in {"text", "python_docstrings"}:
        raise SourceError(f"{origin}: unknown format {fmt!r}; one of {', '.join(sorted(FORMATS))}")
    _check_size(size, origin)
    data = path.read_bytes()
    if b"\x00" in data:
        raise SourceError(
            f"{origin}: holds NUL bytes (the first at byte {data.index(0)}): a binary file, not {fmt}; "
            "leave it out of the source"
        )
    fingerprints.append(PREFIX + hashlib.sha256(data).hexdigest())
    text = _decode(data, origin, at_start=True)
    if fmt == "text":
        yield Record({"text": text}, origin)
    else:
        yield from docstring_conversations(text, origin, module or module_name(path, base=path.parent))


def wrong_first_sentence(name: str, kind: str, module: str) -> str:
    """The first sentence of a rejected answer: the symbol's kind or its module gets wrong (chosen by a hash of the
    name, so the same source gives the same pairs)."""
    parent = module.rsplit(".", 1)[0]
    if parent != module and hashlib.sha256(name.encode()).digest()[0] % 2:
        return f"`{name}` is a {kind} in `{parent}`."
    wrong = {"class": "function", "function": "class", "method": "class"}[kind]
    return f"`{name}` is a {wrong} in `{module}`."


def module_name(path: Path, base: Path | None = None, top: Path | None = None) -> str:
    """The dotted name Python imports the file at `path` by, whatever folder the tree sits in:
    - below a folder named `src` at or under `base` (the folder the source was given as), its path from there: the
      src layout, whose namespace packages need no `__init__.py` (`src/mylib/core/x.py` is `mylib.core.x`);
    - else its stem under every enclosing package (a folder with an `__init__.py`; the walk stops below `top`).
    A package's `__init__.py` is the package."""
    path = path.resolve()
    if base is not None:
        base = base.resolve()
        for folder in path.parents:  # the nearest first, up to base
            if folder != base and base not in folder.parents:
                break
            if folder.name == "src":
                return dotted(path.relative_to(folder).as_posix())
            if folder == base:
                break
    top = top.resolve() if top is not None else None
    parts = [] if path.stem == "__init__" else [path.stem]
    folder = path.parent
    while (folder / "__init__.py").is_file() and folder.name and folder != top:
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts) or path.stem


def dotted(relative: str) -> str:
    """The module of a file given by its path relative to an import root: `pkg/core/x.py` (or a stub, `x.pyi`) ->
    `pkg.core.x`; `pkg/__init__.py` -> `pkg`."""
    path = PurePosixPath(relative)
    parts = [*path.parent.parts] if path.stem == "__init__" else [*path.parent.parts, path.stem]
    return ".".join(part for part in parts if part not in {"", ".", "/"})


def docstring_conversations(code: str, origin: str, module: str) -> Iterator[Record | Skipped]:
    """Derives records from the Python source of module `module`: for each public, documented function or class, a
    user asks what it does and the assistant answers with its docstring's summary and its signature. As a chat dataset
    that is the conversation; as a preference dataset the answer is chosen over the same answer whose first sentence
    names the wrong kind or module; as a prompt dataset it is the question. Code that does not parse is Skipped."""
    try:
        tree = ast.parse(code)
    except SyntaxError as error:
        yield Skipped(f"{origin}:{error.lineno}" if error.lineno else origin, error.msg)
        return

    def visit(node: ast.AST, prefix: str) -> Iterator[Record]:
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
                    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
                    rejected = answer.replace(
                        f"`{name}` is a {kind} in `{module}`.", wrong_first_sentence(name, kind, module), 1
                    )
                    # One record serves every kind: a chat conversation, a preference pair, a prompt.
                    fields = {"messages": messages, "prompt": question, "chosen": answer, "rejected": rejected}
                    yield Record(fields, f"{origin}:{child.lineno}")
            if isinstance(child, ast.ClassDef):
                yield from visit(child, f"{name}.")

    yield from visit(tree, "")


def _expand_local(pattern: str) -> list[Path]:
    path = Path(pattern).expanduser()
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and not any(s.startswith(".") for s in p.parts))
    if path.is_file():
        return [path]
    if glob.has_magic(pattern):
        return sorted(Path(p) for p in glob.glob(os.path.expanduser(pattern), recursive=True) if Path(p).is_file())
    raise SourceError(f"{pattern}: file not found")


def _pattern_base(pattern: str) -> Path:
    """The folder a local pattern names: the folder itself, a file's folder, or a glob's part before its first
    wildcard."""
    path = Path(pattern).expanduser()
    if path.is_dir():
        return path
    if path.is_file():
        return path.parent
    fixed = []
    for part in path.parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


@dataclass(frozen=True)
class LocalFile:
    """A file a local source reads, in the format it is read as."""

    path: Path
    fmt: str
    module: str  # python_docstrings: the module the code is imported as
    allow_empty: bool  # an empty __init__.py marks a package; an empty data file is a mistake


def local_files(source: dataset_pb2.LocalSource, fmt: str) -> Iterator[LocalFile]:
    """The files of a local source, in the order it reads them."""
    if not source.patterns:
        raise SourceError("local.patterns: empty; name at least one file, folder or glob")
    for pattern in source.patterns:
        files = _expand_local(pattern)
        if not files:
            raise SourceError(f"{pattern}: the pattern matches no files")
        if fmt == "python_docstrings":
            files = [path for path in files if path.suffix.lower() in PYTHON_SUFFIXES]
            if not files:
                raise SourceError(
                    f"{pattern}: the pattern matches no Python files ({', '.join(sorted(PYTHON_SUFFIXES))})"
                )
        base = _pattern_base(pattern)
        for path in files:
            chosen = _format_of(str(path), fmt)
            docstrings = chosen == "python_docstrings"
            yield LocalFile(path, chosen, module_name(path, base=base) if docstrings else "", docstrings)


def read_local(
    source: dataset_pb2.LocalSource, fmt: str, fingerprints: list[str], blocks: bool = False
) -> Iterator[Record | TextBlock | Skipped]:
    for file in local_files(source, fmt):
        yield from file_records(
            file.path, str(file.path), file.fmt, fingerprints, allow_empty=file.allow_empty, blocks=blocks,
            module=file.module,
        )  # fmt: skip


def _download(url: str, target: Path, timeout: float) -> None:
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in {"http", "https"}:
        raise SourceError(f"{url}: only http(s) URLs are read (got scheme {scheme!r})")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(target, "wb") as out:
            written = 0
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                written += len(chunk)
                if written > MAX_DOWNLOAD_BYTES:
                    raise SourceError(f"{url}: over the {MAX_DOWNLOAD_BYTES:,}-byte download limit")
                out.write(chunk)
    except urllib.error.HTTPError as error:
        raise SourceError(f"{url}: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise SourceError(f"{url}: unreachable ({reason})") from error


def read_urls(
    source: dataset_pb2.UrlSource, fmt: str, fingerprints: list[str], timeout: float = 30.0, blocks: bool = False
) -> Iterator[Record | TextBlock | Skipped]:
    if not source.urls:
        raise SourceError("url.urls: empty")
    for url in source.urls:
        with tempfile.TemporaryDirectory(prefix="llmft-url-") as tmp:
            target = Path(tmp) / "download"
            _download(url, target, timeout)
            # One file from a URL has no package around it: its module is its file's name.
            name = PurePosixPath(urllib.parse.urlparse(url).path)
            module = name.parent.name if name.stem == "__init__" and name.parent.name else name.stem
            yield from file_records(target, url, _format_of(url, fmt), fingerprints, blocks=blocks, module=module)


def _git(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SourceError(result.stderr.strip() or f"git {' '.join(args)} failed")
    return result.stdout.strip()


def _looks_like_repository(repository: str, with_path: bool = False) -> bool:
    """A URL (https://, ssh://, git://, file://; `with_path`: with a path after the host), an scp-like address
    (git@host:path) or a local path."""
    parsed = urllib.parse.urlparse(repository)
    url = parsed.scheme in {"http", "https", "ssh", "git", "file"} and "://" in repository
    if url and with_path and parsed.path in {"", "/"}:
        return False
    scp_like = re.fullmatch(r"[\w.-]+@[\w.-]+:[^\s]+", repository) is not None
    path = repository.startswith(("/", "./", "../", "~")) or Path(repository).expanduser().exists()
    return not repository.startswith("-") and (url or scp_like or path)


def split_git_spec(spec: str) -> tuple[str, str]:
    """`REPO[@REVISION]` as (repository, revision). The last `@` starts a revision when what follows has no `:` (git
    refuses one in a ref name) and what precedes is a repository with a path: so `git@host:org/r.git`,
    `git@host:r.git` and `https://user@host/org/r` have no revision, while `https://host/org/r@feature/x` and
    `git@host:org/r.git@v1.2` do."""
    repository, at, revision = spec.rpartition("@")
    if at and revision and ":" not in revision and _looks_like_repository(repository, with_path=True):
        return repository, revision
    return spec, ""


def check_git_repository(repository: str) -> None:
    """A repository must look like a URL (https://, ssh://, git://, file://), an scp-like address (git@host:path) or a
    local path: anything else, an option-like "-..." above all, is refused before git sees it."""
    if not repository:
        raise SourceError("git.repository: empty")
    if not _looks_like_repository(repository):
        raise SourceError(
            f"git.repository: {repository!r} is neither a URL (https://, ssh://, git://, file://), an address like "
            "git@host:org/repo.git, nor a local path"
        )


def _checkout(repository: str, revision: str, checkout: Path) -> str:
    """Checks out the commit `revision` names into `checkout` and returns its id. A branch, a tag, HEAD or a full
    commit id is fetched alone, without history (`git fetch --depth 1`); anything else (an abbreviated id, `main~2`)
    needs the history to resolve, so the repository is cloned whole."""
    _git("init", "--quiet", str(checkout))
    try:
        _git("fetch", "--quiet", "--depth", "1", "--", repository, revision, cwd=checkout)
        commit = _git("rev-parse", "--verify", "--quiet", "FETCH_HEAD^{commit}", cwd=checkout)
    except SourceError:
        shutil.rmtree(checkout)
        try:
            _git("clone", "--quiet", "--no-checkout", "--", repository, str(checkout))
        except SourceError as error:
            raise SourceError(f"{repository}: cannot clone: {error}") from error
        try:
            commit = _git("rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}", cwd=checkout)
        except SourceError as error:
            raise SourceError(f"{repository}: revision {revision!r} does not exist") from error
    _git("-c", "advice.detachedHead=false", "checkout", "--quiet", commit, cwd=checkout)
    return commit


def read_git(
    source: dataset_pb2.GitSource, fmt: str, fingerprints: list[str]
) -> Iterator[Record | TextBlock | Skipped]:
    check_git_repository(source.repository)
    if shutil.which("git") is None:
        raise SourceError("git.repository: the git executable is not installed")
    revision = source.revision or "HEAD"
    if revision.startswith("-"):
        raise SourceError(f"git.revision: {revision!r} is not a branch, tag or commit")
    include = list(source.include)
    suffixes = PYTHON_SUFFIXES if fmt == "python_docstrings" else TEXT_SUFFIXES
    with tempfile.TemporaryDirectory(prefix="llmft-git-") as tmp:
        checkout = Path(tmp) / "repo"
        commit = _checkout(source.repository, revision, checkout)
        fingerprints.append(fingerprint_text(f"git:{commit}:{sorted(include)}:{fmt}"))
        matched = 0
        for rel in sorted(p for p in _git("ls-files", "-z", cwd=checkout).split("\0") if p):
            if include:
                if not any(fnmatch.fnmatch(rel, pattern) for pattern in include):
                    continue
            elif Path(rel).suffix.lower() not in suffixes:
                continue
            matched += 1
            origin = f"{source.repository}@{commit[:12]}:{rel}"
            # The commit already fingerprints these files: their own fingerprints are not needed.
            module = module_name(checkout / rel, base=checkout, top=checkout) if fmt == "python_docstrings" else ""
            yield from file_records(checkout / rel, origin, _format_of(rel, fmt), [], module=module)
        if not matched:
            raise SourceError(f"{source.repository}@{revision}: no files match {include or sorted(suffixes)}")


def _hub_pin(source: dataset_pb2.HubDatasetSource, split: str) -> tuple[str, str]:
    """(fingerprint, revision to read) of a Hub dataset source. A local dataset folder is fingerprinted by its files'
    bytes; a Hub dataset by the commit its revision resolves to now, which is then what is read, so the rows and the
    fingerprint cannot come from two different commits."""
    local = Path(source.dataset_id).expanduser()
    if local.is_dir():
        digest = hashlib.sha256()
        for path in sorted(p for p in local.rglob("*") if p.is_file() and ".git" not in p.relative_to(local).parts):
            digest.update(f"{path.relative_to(local).as_posix()}\0{_hash_file(path)}\n".encode())
        return fingerprint_text(f"hf-datasets-folder:{digest.hexdigest()}:{source.config_name}:{split}"), ""
    from huggingface_hub import HfApi

    commit = HfApi().dataset_info(source.dataset_id, revision=source.revision or None).sha
    if not commit:
        raise SourceError(f"hub dataset {source.dataset_id!r}: the Hub named no commit for {source.revision or 'main'}")
    return fingerprint_text(f"hf-datasets:{source.dataset_id}@{commit}:{source.config_name}:{split}"), commit


def read_hub(source: dataset_pb2.HubDatasetSource, fingerprints: list[str]) -> Iterator[Record]:
    """The rows of a Hugging Face dataset (on the Hub, or a local dataset folder), streamed (`datasets` streaming):
    row by row as its files are read, never loaded whole nor written to the datasets cache."""
    if not source.dataset_id:
        raise SourceError("hub.dataset_id: empty")
    import datasets

    split = source.split or "train"
    try:
        fingerprint, commit = _hub_pin(source, split)
        loaded = datasets.load_dataset(
            source.dataset_id, source.config_name or None, split=split, revision=commit or None, streaming=True
        )
    except SourceError:
        raise
    except Exception as error:  # huggingface_hub and datasets raise many types (connection, not found, config)
        raise SourceError(f"hub dataset {source.dataset_id!r}: cannot load: {error}") from error
    fingerprints.append(fingerprint)
    number = 0  # the row being read, numbered from 0 as the dataset's rows are
    try:
        for row in loaded:
            yield Record(dict(row), f"{source.dataset_id}[{split}]:{number}")
            number += 1
    except Exception as error:  # a file that cannot be read or parsed surfaces while streaming
        raise SourceError(f"{source.dataset_id}[{split}]:{number}: cannot read: {error}") from error


def read_python_package(
    source: dataset_pb2.PythonPackageSource, fmt: str, fingerprints: list[str]
) -> Iterator[Record | TextBlock | Skipped]:
    if not source.packages:
        raise SourceError("python_package.packages: empty")
    chosen = fmt if fmt and fmt != "auto" else "text"
    default = [f"*{suffix}" for suffix in sorted(PYTHON_SUFFIXES)] if chosen == "python_docstrings" else None
    include = list(source.include) or default or PACKAGE_DEFAULT_INCLUDE
    for name in source.packages:
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError as error:
            raise SourceError(f"python_package {name!r}: not installed") from error
        files = sorted(
            (f for f in distribution.files or [] if any(fnmatch.fnmatch(f.name, pattern) for pattern in include)),
            key=str,
        )
        read: list[str] = []
        for file in files:
            rel = str(file)
            if rel.startswith("..") or ".dist-info" in rel or "__pycache__" in rel:
                continue
            path = Path(str(distribution.locate_file(file)))
            if path.is_file():  # rel is relative to site-packages: the import root
                yield from file_records(path, rel, chosen, read, module=dotted(rel))
        fingerprints.append(fingerprint_text(f"{name}=={distribution.version}\n" + "\n".join(read)))


def source_problems(source: dataset_pb2.DatasetSource, here: bool = False) -> list[str]:
    """Every reason, naming its field, why reading `source` would fail at once: no kind of source, an unknown format,
    nothing named, a repository or URL of the wrong shape. With `here`, also what must exist on this machine (a local
    run): local files a pattern matches, installed Python distributions, a local git repository. Nothing is read."""
    fmt = source.format or "auto"
    problems = [] if fmt in FORMATS else [f"format: {fmt!r} is not one of {', '.join(sorted(FORMATS))}"]
    which = source.WhichOneof("source")
    if which is None:
        problems.append("source: none of local, url, git, hub or python_package is set")
    elif which == "local":
        if not source.local.patterns:
            problems.append("local.patterns: empty; name at least one file, folder or glob")
        for index, pattern in enumerate(source.local.patterns if here else ()):
            try:
                found = _expand_local(pattern)
            except SourceError:
                found = []
            if not found:
                problems.append(f"local.patterns[{index}]: {pattern!r} matches no file on this machine")
    elif which == "url":
        if not source.url.urls:
            problems.append("url.urls: empty")
        for index, url in enumerate(source.url.urls):
            if urllib.parse.urlparse(url).scheme not in ("http", "https"):
                problems.append(f"url.urls[{index}]: {url!r} is not an http(s) URL")
    elif which == "git":
        try:
            check_git_repository(source.git.repository)
        except SourceError as error:
            problems.append(str(error))
        repository = source.git.repository
        if here and repository.startswith(("/", "./", "../", "~")) and not Path(repository).expanduser().exists():
            problems.append(f"git.repository: {repository!r} does not exist on this machine")
    elif which == "hub":
        if not source.hub.dataset_id:
            problems.append("hub.dataset_id: empty")
    elif which == "python_package":
        if not source.python_package.packages:
            problems.append("python_package.packages: empty")
        for index, name in enumerate(source.python_package.packages if here else ()):
            try:
                importlib.metadata.distribution(name)
            except importlib.metadata.PackageNotFoundError:
                problems.append(f"python_package.packages[{index}]: {name!r} is not installed on this machine")
    return problems


def read_source(
    source: dataset_pb2.DatasetSource, fingerprints: list[str], blocks: bool = False
) -> Iterator[Record | TextBlock | Skipped]:
    """The source's records; with `blocks`, local and downloaded JSONL also as TextBlocks (see `file_records`)."""
    fmt = source.format or "auto"
    if fmt not in FORMATS:
        raise SourceError(f"format: {fmt!r} is not one of {', '.join(sorted(FORMATS))}")
    which = source.WhichOneof("source")
    if which == "local":
        return read_local(source.local, fmt, fingerprints, blocks)
    if which == "url":
        return read_urls(source.url, fmt, fingerprints, blocks=blocks)
    if which == "git":
        return read_git(source.git, fmt, fingerprints)
    if which == "hub":
        return read_hub(source.hub, fingerprints)
    if which == "python_package":
        return read_python_package(source.python_package, fmt, fingerprints)
    raise SourceError("source: none of local, url, git, hub or python_package is set")
