"""The data stage's Flyte face. `acquire_<kind>` reads and normalises the sources into a pandera-typed DataFrame, so
the flytekit pandera plugin validates the rows as they leave it and again as `prepare_<kind>` receives them;
`prepare_<kind>` cleans, splits and writes the Parquet folder and the manifest. The bodies only call llmft.data.build.

Caching: acquire always runs (a local file or a git branch can change under the same request); its rows carry a
content hash, so prepare, and everything downstream, hits the cache whenever the content is unchanged. Acquisition
hands prepare a partial DatasetManifest (source fingerprints, rows removed by each cleaning step)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, NamedTuple

import pandas as pd
from flytekit import Deck, ImageSpec, Resources, current_context, task
from flytekit.core.hash import HashMethod
from flytekit.types.directory import FlyteDirectory
from pandera.typing import DataFrame

from llmft.core import fingerprint as fp
from llmft.core.flyte import DatasetDir
from llmft.core.images import image_packages, registry
from llmft.data import STAGE, __version__
from llmft.data.build import AcquiredRows, acquire, prepare
from llmft.data.report import report_html
from llmft.data.schemas import ChatRow, PreferenceRow, PromptRow, RawTextRow
from llmft.proto.data.v1.dataset_pb2 import DatasetManifest, DatasetRequest

IMAGE = ImageSpec(
    name="llmft-data",
    registry=registry(),
    python_version="3.11",
    packages=image_packages(
        "pandera",
        "flytekitplugins-pandera",
        "flytekitplugins-deck-standard",
        "transformers",
        "tokenizers",
        "datasets",
        "huggingface_hub",
    ),
    apt_packages=["git"],
)
CACHE_VERSION = fp.cache_version(STAGE, __version__)
RESOURCES = Resources(cpu="2", mem="4Gi")


def frame_hash(frame: pd.DataFrame) -> str:
    """Content hash of acquired rows: their ids are content hashes, so this changes exactly when the content does."""
    return fp.fingerprint_text("\n".join(frame["id"]) + "\n" + "\n".join(frame["source"]))


class Prepared(NamedTuple):
    manifest: DatasetManifest
    data: DatasetDir


def _acquire(request: DatasetRequest) -> tuple[pd.DataFrame, DatasetManifest]:
    acquired = acquire(request)
    return acquired.frame, acquired.summary()


def _prepare(request: DatasetRequest, rows: pd.DataFrame, acquisition: DatasetManifest) -> Prepared:
    out = Path(tempfile.mkdtemp(prefix="llmft-data-", dir=current_context().working_directory)) / request.name
    manifest, report = prepare(request, AcquiredRows.from_summary(rows, acquisition), out)
    Deck(f"Dataset {request.name}", report_html(manifest, report))
    return Prepared(manifest=manifest, data=FlyteDirectory(path=str(out)))


RawTextRows = Annotated[DataFrame[RawTextRow], HashMethod(frame_hash)]
ChatRows = Annotated[DataFrame[ChatRow], HashMethod(frame_hash)]
PreferenceRows = Annotated[DataFrame[PreferenceRow], HashMethod(frame_hash)]
PromptRows = Annotated[DataFrame[PromptRow], HashMethod(frame_hash)]


class AcquiredRawText(NamedTuple):
    rows: RawTextRows
    acquisition: DatasetManifest


class AcquiredChat(NamedTuple):
    rows: ChatRows
    acquisition: DatasetManifest


class AcquiredPreference(NamedTuple):
    rows: PreferenceRows
    acquisition: DatasetManifest


class AcquiredPrompt(NamedTuple):
    rows: PromptRows
    acquisition: DatasetManifest


@task(container_image=IMAGE, requests=RESOURCES, enable_deck=True)
def acquire_raw_text(request: DatasetRequest) -> AcquiredRawText:
    return AcquiredRawText(*_acquire(request))


@task(container_image=IMAGE, requests=RESOURCES, enable_deck=True)
def acquire_chat(request: DatasetRequest) -> AcquiredChat:
    return AcquiredChat(*_acquire(request))


@task(container_image=IMAGE, requests=RESOURCES, enable_deck=True)
def acquire_preference(request: DatasetRequest) -> AcquiredPreference:
    return AcquiredPreference(*_acquire(request))


@task(container_image=IMAGE, requests=RESOURCES, enable_deck=True)
def acquire_prompt(request: DatasetRequest) -> AcquiredPrompt:
    return AcquiredPrompt(*_acquire(request))


@task(container_image=IMAGE, requests=RESOURCES, cache=True, cache_version=CACHE_VERSION, enable_deck=True)
def prepare_raw_text(request: DatasetRequest, rows: RawTextRows, acquisition: DatasetManifest) -> Prepared:
    return _prepare(request, rows, acquisition)


@task(container_image=IMAGE, requests=RESOURCES, cache=True, cache_version=CACHE_VERSION, enable_deck=True)
def prepare_chat(request: DatasetRequest, rows: ChatRows, acquisition: DatasetManifest) -> Prepared:
    return _prepare(request, rows, acquisition)


@task(container_image=IMAGE, requests=RESOURCES, cache=True, cache_version=CACHE_VERSION, enable_deck=True)
def prepare_preference(request: DatasetRequest, rows: PreferenceRows, acquisition: DatasetManifest) -> Prepared:
    return _prepare(request, rows, acquisition)


@task(container_image=IMAGE, requests=RESOURCES, cache=True, cache_version=CACHE_VERSION, enable_deck=True)
def prepare_prompt(request: DatasetRequest, rows: PromptRows, acquisition: DatasetManifest) -> Prepared:
    return _prepare(request, rows, acquisition)
