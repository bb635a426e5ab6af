"""Batch inference: a prompt dataset split into shards, each answered by one instance of a map task, then merged.

    pyflyte run orchestration/src/llmft/orchestration/batch.py batch_inference --help
"""

from __future__ import annotations

from functools import partial

from flytekit import map_task, workflow
from flytekit.types.directory import FlyteDirectory

from llmft.proto.data.v1.dataset_pb2 import DatasetManifest
from llmft.proto.serve.v1.serve_pb2 import BatchInferenceRequest
from llmft.serve.tasks import BatchAnswers, answer, merge_answers, split_prompts


@workflow
def batch_inference(
    request: BatchInferenceRequest, dataset: DatasetManifest, data: FlyteDirectory, model: FlyteDirectory
) -> BatchAnswers:
    shards = split_prompts(request=request, dataset=dataset, data=data)
    answers = map_task(partial(answer, model=model, request=request))(shard_file=shards)
    return merge_answers(answers=answers, request=request, dataset=dataset, model=model)
