"""The serving stage's Flyte face: batch inference (split prompts into shards named by content, answer one shard,
merge the answers with a BatchInferenceResult and a Deck; llmft.orchestration maps `answer` over the shards), the
Space folder of the chat app, and publishing to the Hub. Bodies only unpack, call the stage's core and pack."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, NamedTuple

import pandas as pd
from flytekit import Resources, Secret, current_context, task
from flytekit.core.hash import HashMethod
from flytekit.types.directory import FlyteDirectory
from flytekit.types.file import FlyteFile

from llmft.core import fingerprint as fp
from llmft.core.datasets import read_manifest
from llmft.core.models import missing_model_problem as missing_model_problem  # the config check asks it of each model
from llmft.core.models import model_name_problem as model_name_problem  # and this
from llmft.core.models import resolve_model_dir
from llmft.core.training import model_fingerprint
from llmft.flyte.decks import publish, task_deck_fields
from llmft.flyte.images import stage_cache_version, stage_image
from llmft.flyte.types import ModelDir, download_dataset
from llmft.proto.data.v1.dataset_pb2 import DatasetManifest
from llmft.proto.serve.v1.serve_pb2 import (
    AnswerEvaluation,
    AnswerEvaluationRequest,
    BatchInferenceRequest,
    BatchInferenceResult,
    GenerationConfig,
    ModelAnswers,
    PublishRequest,
    PublishResult,
)
from llmft.proto.training.v1.training_pb2 import ModelArtifact
from llmft.serve import __version__
from llmft.serve import publish as hub
from llmft.serve.batch import answer_shard, check_batch_request, load_prompts, merge, report_html, write_shards
from llmft.serve.evaluation import evaluate_answers as evaluate_held_out_answers
from llmft.serve.generator import Generator
from llmft.serve.publish import repo_id_problems as repo_id_problems  # the config check asks it up front
from llmft.serve.space import SpaceSettings, load_local_model, write_space

PACKAGES = [
    "fastapi",
    "gradio",
    "grpcio",
    "grpcio-health-checking",
    "grpcio-reflection",
    "pydantic",
    "starlette",
    "tqdm",
    "uvicorn",
]
IMAGE = stage_image("llmft-serve", __version__, PACKAGES)
CACHE_VERSION = stage_cache_version("llmft-serve", __version__, PACKAGES)


class BatchAnswers(NamedTuple):
    result: BatchInferenceResult
    answers: pd.DataFrame


def _file_hash(file: FlyteFile) -> str:
    return fp.fingerprint_file(Path(file.path))


# A shard crosses the task boundary hashed on its content, so cache keys do not depend on where it was written.
ShardFile = Annotated[FlyteFile, HashMethod(_file_hash)]


@task(container_image=IMAGE, requests=Resources(cpu="1", mem="2Gi"))
def split_prompts(request: BatchInferenceRequest, dataset: DatasetManifest, data: FlyteDirectory) -> list[ShardFile]:
    check_batch_request(request)
    prompts = load_prompts(download_dataset(dataset, data))
    folder = Path(tempfile.mkdtemp(prefix="llmft-shards-", dir=current_context().working_directory))
    return [ShardFile(path=str(path)) for path in write_shards(prompts, request.shards, folder)]


@task(container_image=IMAGE, requests=Resources(cpu="2", mem="4Gi"), cache=True, cache_version=CACHE_VERSION, retries=2)
def answer(shard_file: FlyteFile, model: ModelDir, request: BatchInferenceRequest) -> pd.DataFrame:
    """One shard's answers. Cached on the shard's content, the model's fingerprint and the request, so a rerun of a
    stopped batch answers only the shards that had not finished."""
    local = Path(shard_file.download())
    generator = Generator(Path(model.download()), max_batch=request.batch_size, max_queue=1 << 20)
    try:
        return answer_shard(generator, pd.read_parquet(local), request, local.stem)
    finally:
        generator.close()


@task(container_image=IMAGE, requests=Resources(cpu="1", mem="1Gi"))
def batch_request(
    shards: int, batch_size: int, max_new_tokens: int, temperature: float, seed: int
) -> BatchInferenceRequest:
    """The request from plain values (what `pyflyte run` can pass), checked before any shard is written."""
    request = BatchInferenceRequest(
        shards=shards,
        batch_size=batch_size,
        generation=GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed),
    )
    check_batch_request(request)
    return request


@task(container_image=IMAGE, requests=Resources(cpu="1", mem="1Gi"))
def prompt_manifest(prompts: FlyteDirectory) -> DatasetManifest:
    """The manifest of a prompt dataset folder written by `llmft data`."""
    return read_manifest(Path(prompts.download()))


@task(container_image=IMAGE, requests=Resources(cpu="1", mem="2Gi"), enable_deck=True, deck_fields=task_deck_fields())
def merge_answers(
    answers: list[pd.DataFrame], request: BatchInferenceRequest, dataset: DatasetManifest, model: ModelDir
) -> BatchAnswers:
    table, result = merge(answers, request, model_fingerprint(Path(model.download())), dataset.fingerprint)
    publish("Batch inference", report_html(table, result))
    return BatchAnswers(result=result, answers=table)


# The Hub token, as a Flyte secret (group "huggingface", key "token"); HF_TOKEN in the environment also works.
HF_TOKEN_SECRET = Secret(group="huggingface", key="token")


def _hub_token() -> str:
    try:
        token = current_context().secrets.get(HF_TOKEN_SECRET.group, HF_TOKEN_SECRET.key)
    except ValueError:  # no such secret mounted
        token = ""
    return str(token or hub.token_from_environment(os.environ))


@task(
    container_image=IMAGE,
    requests=Resources(cpu="2", mem="4Gi"),
    cache=True,
    cache_version=CACHE_VERSION,
    retries=1,
    enable_deck=True,
    deck_fields=task_deck_fields(),
)
def evaluate_answers(
    request: AnswerEvaluationRequest, dataset: DatasetManifest, data: FlyteDirectory, models: dict[str, ModelDir]
) -> AnswerEvaluation:
    """Every model (name -> folder) answers the chat dataset's held-out questions greedily; first-sentence and exact
    matches with the references, and examples, as a Deck."""
    result = evaluate_held_out_answers(
        request, download_dataset(dataset, data), {name: Path(folder.download()) for name, folder in models.items()}
    )
    publish("Held-out answers", result.report_html)
    return result.evaluation


@task(container_image=IMAGE, requests=Resources(cpu="1", mem="4Gi"))
def model_folder(model: str) -> ModelDir:
    """A model named by preset, Hub id or path, as a folder the other tasks take (the base model a pipeline compares
    its candidate with). Not cached: a Hub id can move to a new revision under the same name."""
    return FlyteDirectory(path=str(resolve_model_dir(model).directory))


def space_settings(title: str, answers: ModelAnswers) -> SpaceSettings:
    """The Space's title, and as its description the held-out answer figure with examples (when evaluated)."""
    return SpaceSettings(
        title=title or SpaceSettings.title,
        description=hub.answers_markdown(answers) if answers.examples else "",
        examples=[example.question for example in answers.examples],
    )


@task(container_image=IMAGE, requests=Resources(cpu="1", mem="2Gi"), cache=True, cache_version=CACHE_VERSION)
def space_folder(model: ModelDir, model_repo_id: str, title: str, answers: ModelAnswers) -> FlyteDirectory:
    """The chat app as a Space folder for `model`: it loads `model_repo_id` from the Hub when given, else the model
    folder itself (a local launch). `answers` (possibly empty) describes the model to visitors."""
    local = Path(model.download())
    out = Path(tempfile.mkdtemp(prefix="llmft-space-", dir=current_context().working_directory)) / "space"
    settings = space_settings(title, answers)
    settings.model, settings.model_repo_id = model_repo_id or str(local), model_repo_id
    return FlyteDirectory(path=str(write_space(out, settings, adapter=(local / "adapter_config.json").is_file())))


def space_for_local_model(space: Path, model: Path) -> Path:
    """A Space folder that a task wrote, pointed at `model` on this machine (what a local run's runner does with the
    copy it keeps): the stage owns the Space's config format."""
    return load_local_model(space, model)


@task(
    container_image=IMAGE,
    requests=Resources(cpu="1", mem="4Gi"),
    secret_requests=[HF_TOKEN_SECRET],
    enable_deck=True,
    deck_fields=task_deck_fields(),
)
def publish_model(
    model: ModelDir,
    request: PublishRequest,
    datasets: list[DatasetManifest],
    upstream: list[ModelArtifact],
    answers: ModelAnswers,
    title: str,
) -> PublishResult:
    """Pushes the model with its card (and the Space when `space_repo_id` is set); the token never leaves the
    process except to the Hub. `answers` (possibly empty) goes into the card and the Space's description."""
    execution = current_context().execution_id
    result = hub.publish(
        Path(model.download()),
        request,
        _hub_token(),
        datasets=datasets,
        upstream=upstream,
        metrics={"held-out first-sentence match": answers.first_sentence_match} if answers.examples else None,
        execution_id=execution.name if execution else "",
        space=space_settings(title, answers),
        answers=answers,
    )
    publish("Published", hub.result_html(result))
    return result
