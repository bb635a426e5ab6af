"""The serving stage's Flyte face: the tasks of batch inference (split prompts into shards, answer one shard, merge the
answers with a BatchInferenceResult); llmft.orchestration maps `answer` over the shards. Bodies only unpack, call
llmft.serve.batch and pack."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import NamedTuple

import pandas as pd
from flytekit import Resources, current_context, task
from flytekit.types.directory import FlyteDirectory
from flytekit.types.file import FlyteFile

from llmft.core import fingerprint as fp
from llmft.core.training import model_fingerprint
from llmft.flyte.images import stage_image
from llmft.flyte.types import download_dataset
from llmft.proto.data.v1.dataset_pb2 import DatasetManifest
from llmft.proto.serve.v1.serve_pb2 import BatchInferenceRequest, BatchInferenceResult
from llmft.serve import STAGE, __version__
from llmft.serve.batch import answer_shard, check_batch_request, load_prompts, merge, shard
from llmft.serve.generator import Generator

IMAGE = stage_image("llmft-serve", __version__, ["grpcio", "grpcio-health-checking", "grpcio-reflection"])
CACHE_VERSION = fp.cache_version(STAGE, __version__)


class BatchAnswers(NamedTuple):
    result: BatchInferenceResult
    answers: pd.DataFrame


@task(container_image=IMAGE, requests=Resources(cpu="1", mem="2Gi"))
def split_prompts(request: BatchInferenceRequest, dataset: DatasetManifest, data: FlyteDirectory) -> list[FlyteFile]:
    check_batch_request(request)
    prompts = load_prompts(download_dataset(dataset, data))
    folder = Path(tempfile.mkdtemp(prefix="llmft-shards-", dir=current_context().working_directory))
    out = []
    for number, part in enumerate(shard(prompts, request.shards)):
        path = folder / f"shard-{number:05d}.parquet"
        part.to_parquet(path, index=False)
        out.append(FlyteFile(path=str(path)))
    return out


@task(container_image=IMAGE, requests=Resources(cpu="2", mem="4Gi"), cache=True, cache_version=CACHE_VERSION, retries=2)
def answer(shard_file: FlyteFile, model: FlyteDirectory, request: BatchInferenceRequest) -> pd.DataFrame:
    prompts = pd.read_parquet(shard_file.download())
    return answer_shard(Generator(Path(model.download())), prompts, request)


@task(container_image=IMAGE, requests=Resources(cpu="1", mem="2Gi"))
def merge_answers(
    answers: list[pd.DataFrame], request: BatchInferenceRequest, dataset: DatasetManifest, model: FlyteDirectory
) -> BatchAnswers:
    table, result = merge(answers, request, model_fingerprint(Path(model.download())), dataset.fingerprint)
    return BatchAnswers(result=result, answers=table)
