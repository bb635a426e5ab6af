"""A dataset prepared in shards on Flyte: the sources planned into shards of about equal bytes, each shard read and
cleaned by one instance of a cached map task, then one task deduplicates across every shard (exact, then MinHash
clusters, from bucket files) and writes the dataset with its Deck. A stopped run started again redoes only the shards
that had not finished or whose files changed (their cache entries are missing). llmft.data.shards has the steps.

    python -c "from llmft.orchestration.corpus import sharded_dataset; ..."   # typed: a DatasetRequest message
"""

from __future__ import annotations

from functools import partial

from flytekit import map_task, workflow

from llmft.data.tasks import Prepared, clean_shard, merge_dataset_shards, plan_dataset_shards
from llmft.proto.data.v1.dataset_pb2 import DatasetRequest


@workflow
def sharded_dataset(request: DatasetRequest, shards: int = 4) -> Prepared:
    planned = plan_dataset_shards(request=request, shards=shards)
    folders = map_task(partial(clean_shard, request=request))(shard=planned.shards)
    return merge_dataset_shards(request=request, plan=planned.plan, folders=folders)
