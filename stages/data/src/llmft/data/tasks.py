"""The data stage's Flyte face.

Two ways to build a dataset, giving the same manifest:
- `acquire_<kind>` then `prepare_<kind>`: acquire reads, normalises and cleans the sources and hands the rows on as a
  `pandera.typing.DataFrame[<Kind>Row]`, so the flytekit pandera plugin validates them as they leave acquire and again
  as they enter prepare (with a pandera report Deck each time); prepare splits, counts and writes the Parquet folder
  with a report Deck. For datasets that fit in a task's memory: chat, preference and prompt data, modest corpora.
- `build`: the same steps streamed in one task (validation by the same pandera models, chunk by chunk), for corpora
  beyond memory.
- `plan_dataset_shards`, `clean_shard` (a map_task over the shards, each its own cache entry) and
  `merge_dataset_shards` (llmft.data.shards): the same dataset in shards, deduplicated across all of them, for corpora
  beyond one task; llmft.orchestration.corpus composes them.

Caching: acquire and build always run (a local file or a git branch can change under the same request). Acquire
hands prepare the request without its sources and rows hashed by content, so prepare, and everything downstream
(datasets hash by their manifest fingerprint), hits the cache whenever content and configuration are unchanged,
whatever path they came from. The bodies only call llmft.data.build."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NamedTuple

import pandas as pd
from flytekit import Resources, current_context, task
from flytekit.core.hash import HashMethod
from flytekit.types.directory import FlyteDirectory
from pandera.typing import DataFrame

from llmft.core import fingerprint as fp
from llmft.data import __version__
from llmft.data.build import acquire_frame, build_dataset, cleaning_lines, config_of, frame_chunks, prepare
from llmft.data.build import config_problems as config_problems  # the pipeline's config check asks it up front
from llmft.data.report import failures_html, report_html
from llmft.data.schemas import ChatRow, DataValidationError, PreferenceRow, PromptRow, RawTextRow
from llmft.data.shards import (
    ARROW_POOL,
    merge_shards,
    plan_from_json,
    plan_json,
    plan_shards,
    run_shard,
    shard_from_json,
    shard_json,
)
from llmft.data.sources import source_problems as source_problems  # and this, of each source
from llmft.flyte.decks import publish
from llmft.flyte.images import stage_cache_version, stage_image
from llmft.flyte.types import DatasetDir
from llmft.proto.data.v1.dataset_pb2 import DatasetManifest, DatasetRequest

PACKAGES = ["datasets", "datasketch", "flytekitplugins-pandera", "langid", "pandera", "tqdm"]
IMAGE = stage_image("llmft-data", __version__, PACKAGES, ["git"])
CACHE_VERSION = stage_cache_version("llmft-data", __version__, PACKAGES)
RESOURCES = Resources(cpu="2", mem="4Gi")


def frame_hash(frame: pd.DataFrame) -> str:
    """Content hash of rows: their ids are content hashes (paths in `source` do not count)."""
    return fp.fingerprint_text("\n".join(frame["id"]))


class Prepared(NamedTuple):
    manifest: DatasetManifest
    data: DatasetDir


def _out_dir(name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix="llmft-data-", dir=current_context().working_directory)) / name


def _publish_and_pack(manifest: DatasetManifest, report: dict, out: Path) -> Prepared:
    publish(f"Dataset {manifest.name}", report_html(manifest, report))
    return Prepared(manifest=manifest, data=FlyteDirectory(path=str(out)))


def _prepare(config: DatasetRequest, rows: pd.DataFrame, acquisition: DatasetManifest) -> Prepared:
    out = _out_dir(config.name)
    try:
        manifest, report = prepare(config, frame_chunks(rows), acquisition, out)
    except DataValidationError as error:
        publish("Validation failures", failures_html(error))
        raise
    return _publish_and_pack(manifest, report, out)


RawTextRows = Annotated[DataFrame[RawTextRow], HashMethod(frame_hash)]
ChatRows = Annotated[DataFrame[ChatRow], HashMethod(frame_hash)]
PreferenceRows = Annotated[DataFrame[PreferenceRow], HashMethod(frame_hash)]
PromptRows = Annotated[DataFrame[PromptRow], HashMethod(frame_hash)]


class AcquiredRawText(NamedTuple):
    config: DatasetRequest
    rows: RawTextRows
    acquisition: DatasetManifest


class AcquiredChat(NamedTuple):
    config: DatasetRequest
    rows: ChatRows
    acquisition: DatasetManifest


class AcquiredPreference(NamedTuple):
    config: DatasetRequest
    rows: PreferenceRows
    acquisition: DatasetManifest


class AcquiredPrompt(NamedTuple):
    config: DatasetRequest
    rows: PromptRows
    acquisition: DatasetManifest


def _acquired(request: DatasetRequest) -> tuple[DatasetRequest, pd.DataFrame, DatasetManifest]:
    """The acquire tasks' body; what cleaning removed also goes to the task's log (stderr), with its first row."""
    frame, summary = acquire_frame(request)
    for line in cleaning_lines(summary):
        print(line, file=sys.stderr)
    return config_of(request), frame, summary


@task(container_image=IMAGE, requests=RESOURCES, enable_deck=True)
def acquire_raw_text(request: DatasetRequest) -> AcquiredRawText:
    return AcquiredRawText(*_acquired(request))


@task(container_image=IMAGE, requests=RESOURCES, enable_deck=True)
def acquire_chat(request: DatasetRequest) -> AcquiredChat:
    return AcquiredChat(*_acquired(request))


@task(container_image=IMAGE, requests=RESOURCES, enable_deck=True)
def acquire_preference(request: DatasetRequest) -> AcquiredPreference:
    return AcquiredPreference(*_acquired(request))


@task(container_image=IMAGE, requests=RESOURCES, enable_deck=True)
def acquire_prompt(request: DatasetRequest) -> AcquiredPrompt:
    return AcquiredPrompt(*_acquired(request))


@task(container_image=IMAGE, requests=RESOURCES, cache=True, cache_version=CACHE_VERSION, enable_deck=True)
def prepare_raw_text(config: DatasetRequest, rows: RawTextRows, acquisition: DatasetManifest) -> Prepared:
    return _prepare(config, rows, acquisition)


@task(container_image=IMAGE, requests=RESOURCES, cache=True, cache_version=CACHE_VERSION, enable_deck=True)
def prepare_chat(config: DatasetRequest, rows: ChatRows, acquisition: DatasetManifest) -> Prepared:
    return _prepare(config, rows, acquisition)


@task(container_image=IMAGE, requests=RESOURCES, cache=True, cache_version=CACHE_VERSION, enable_deck=True)
def prepare_preference(config: DatasetRequest, rows: PreferenceRows, acquisition: DatasetManifest) -> Prepared:
    return _prepare(config, rows, acquisition)


@task(container_image=IMAGE, requests=RESOURCES, cache=True, cache_version=CACHE_VERSION, enable_deck=True)
def prepare_prompt(config: DatasetRequest, rows: PromptRows, acquisition: DatasetManifest) -> Prepared:
    return _prepare(config, rows, acquisition)


def _built(out: Path, make: Callable[[], tuple[DatasetManifest, dict]]) -> Prepared:
    """A whole build's ending: validation failures as a Deck, what cleaning removed on stderr, the report Deck."""
    try:
        manifest, report = make()
    except DataValidationError as error:
        publish("Validation failures", failures_html(error))
        raise
    for line in cleaning_lines(manifest):
        print(line, file=sys.stderr)
    return _publish_and_pack(manifest, report, out)


@task(container_image=IMAGE, requests=Resources(cpu="2", mem="3Gi"), enable_deck=True)
def build(request: DatasetRequest) -> Prepared:
    out = _out_dir(request.name)
    return _built(out, lambda: build_dataset(request, out))


class PlannedShards(NamedTuple):
    plan: str  # the whole plan as JSON (shards and source fingerprints), for the merge
    shards: list[str]  # each shard as JSON, one map_task element each


@task(container_image=IMAGE, requests=Resources(cpu="1", mem="1Gi"))
def plan_dataset_shards(request: DatasetRequest, shards: int) -> PlannedShards:
    """The shards of about equal bytes; always runs (a file can change under the same request): it hashes every local
    file, and a shard's name and JSON carry those hashes, so each shard's cache entry follows its content."""
    plan = plan_shards(request, shards)
    return PlannedShards(plan=plan_json(plan), shards=[shard_json(shard) for shard in plan.shards])


@task(
    container_image=IMAGE,
    requests=Resources(cpu="1", mem="2Gi"),
    cache=True,
    cache_version=CACHE_VERSION,
    enable_deck=True,
    environment=ARROW_POOL,  # Arrow's pool from the process's start (shards.bounded_allocation)
)
def clean_shard(request: DatasetRequest, shard: str) -> FlyteDirectory:
    """One shard read, normalised, cleaned by the per-row steps and validated against the kind's schema (a map_task
    element, cached on the shard: a rerun redoes only the shards that failed or whose files changed). Rows that fail
    the schema fail the shard, with a Deck of every failing row, field and check."""
    spec = shard_from_json(shard)
    work = Path(tempfile.mkdtemp(prefix="llmft-shard-", dir=current_context().working_directory))
    try:
        run_shard(request, spec, work)
    except DataValidationError as error:
        publish("Validation failures", failures_html(error))
        raise
    return FlyteDirectory(path=str(work / spec.name))


@task(
    container_image=IMAGE,
    requests=RESOURCES,
    cache=True,
    cache_version=CACHE_VERSION,
    enable_deck=True,
    environment=ARROW_POOL,
)
def merge_dataset_shards(request: DatasetRequest, plan: str, folders: list[FlyteDirectory]) -> Prepared:
    """Exact and near duplicates across every shard, then validation, split, statistics and the manifest, with the
    report Deck."""
    out = _out_dir(request.name)
    scratch = Path(tempfile.mkdtemp(prefix="llmft-dedup-", dir=current_context().working_directory))
    local = [Path(f.download()) for f in folders]
    return _built(out, lambda: merge_shards(request, plan_from_json(plan), local, out, scratch))
