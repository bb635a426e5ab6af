"""Batch inference: a prompt dataset split into shards named by their content, each answered by one instance of a
cached map task, then merged into one table with a Deck. A stopped run started again answers only the shards that had
not finished (their cache entries are missing).

    pyflyte run --raw-output-data-prefix runs/blobs orchestration/src/llmft/orchestration/batch.py batch \\
        --model runs/sft --prompts runs/prompts --shards 4 --max_new_tokens 64
"""

from __future__ import annotations

from functools import partial

from flytekit import map_task, workflow
from flytekit.types.directory import FlyteDirectory

from llmft.proto.data.v1.dataset_pb2 import DatasetManifest
from llmft.proto.serve.v1.serve_pb2 import BatchInferenceRequest
from llmft.serve.tasks import BatchAnswers, answer, batch_request, merge_answers, prompt_manifest, split_prompts


@workflow
def batch_inference(
    request: BatchInferenceRequest, dataset: DatasetManifest, data: FlyteDirectory, model: FlyteDirectory
) -> BatchAnswers:
    """The typed form, for workflows that already hold the messages."""
    shards = split_prompts(request=request, dataset=dataset, data=data)
    answers = map_task(partial(answer, model=model, request=request))(shard_file=shards)
    return merge_answers(answers=answers, request=request, dataset=dataset, model=model)


@workflow
def batch(
    model: FlyteDirectory,
    prompts: FlyteDirectory,
    shards: int = 4,
    batch_size: int = 16,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    seed: int = 0,
) -> BatchAnswers:
    """The form a user starts with `pyflyte run`: a model folder and a prompt dataset folder (`llmft data`)."""
    request = batch_request(
        shards=shards, batch_size=batch_size, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed
    )
    return batch_inference(request=request, dataset=prompt_manifest(prompts=prompts), data=prompts, model=model)
