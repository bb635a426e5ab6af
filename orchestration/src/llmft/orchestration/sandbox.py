"""The local executor's folders and cache, kept valid across runs.

flytekit's local executor keeps a task's FlyteDirectory outputs where the task wrote them (its working directory, a
fresh temp folder by default) and caches a pointer to them in ~/.flyte/local-cache. Temp folders go away, and a cache
entry pointing at nothing crashes the next run. So a local run here:
- gives tasks working directories under a persistent folder (`persistent_sandbox`), so cached blobs stay valid;
- drops the cache entries whose local blobs have disappeared (`prune_local_cache`) instead of clearing the cache, so
  they are recomputed and everything else still hits (a plan, llmft.orchestration.plan, tells them apart with
  `missing_blobs` and deletes nothing)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from flytekit.core.context_manager import ExecutionParameters, FlyteContextManager
from flytekit.core.data_persistence import FileAccessProvider
from flytekit.core.local_cache import LocalTaskCache
from flytekit.models.literals import Literal, LiteralMap


@contextlib.contextmanager
def persistent_sandbox(root: Path) -> Iterator[Path]:
    """Within it, local task executions work (and leave their FlyteDirectory/FlyteFile outputs) under `root/work`,
    and raw outputs (DataFrames between tasks) go under `root/raw`, instead of temp folders."""
    root = Path(root).resolve()
    (root / "work").mkdir(parents=True, exist_ok=True)
    ctx = FlyteContextManager.current_context()
    access = FileAccessProvider(local_sandbox_dir=str(root / "sandbox"), raw_output_prefix=str(root / "raw"))
    builder = ExecutionParameters.new_builder(ctx.user_space_params)
    # flytekit makes each task's folder with mkdtemp(prefix=<this>): "work/task-" gives work/task-XXXXXX.
    builder.working_dir = str(root / "work" / "task-")
    builder.raw_output_prefix = access.raw_output_prefix
    state = ctx.execution_state.with_params(user_space_params=builder.build())
    with FlyteContextManager.with_context(ctx.with_file_access(access).with_execution_state(state)):
        yield root


def _local_uris(literal: Literal) -> Iterator[str]:
    if literal.scalar is not None:
        if literal.scalar.blob is not None:
            yield literal.scalar.blob.uri
        if literal.scalar.structured_dataset is not None:
            yield literal.scalar.structured_dataset.uri
    if literal.collection is not None:
        for item in literal.collection.literals:
            yield from _local_uris(item)
    if literal.map is not None:
        for item in literal.map.literals.values():
            yield from _local_uris(item)


def _is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def missing_blobs(outputs: LiteralMap) -> list[str]:
    """Local blob paths the cached outputs point at that no longer exist."""
    uris = [uri for literal in outputs.literals.values() for uri in _local_uris(literal) if uri]
    return [uri for uri in uris if _is_local(uri) and not os.path.exists(uri.removeprefix("file://"))]


def prune_local_cache() -> list[str]:
    """Deletes the local cache entries whose blobs have disappeared, so those tasks run again instead of handing a
    dead path downstream; every other entry stays. Returns the deleted keys."""
    from flyteidl.core.literals_pb2 import LiteralMap as LiteralMapProto

    if not LocalTaskCache._initialized:
        LocalTaskCache.initialize()
    cache = LocalTaskCache._cache
    removed = []
    for key in list(cache.iterkeys()):
        value = cache.get(key)
        if isinstance(value, bytes):
            proto = LiteralMapProto()
            proto.ParseFromString(value)
            outputs = LiteralMap.from_flyte_idl(proto)
        elif isinstance(value, LiteralMap):
            outputs = value
        else:
            continue
        if missing_blobs(outputs):
            cache.delete(key)
            removed.append(str(key))
    return removed
