"""Batch inference over a prompt dataset.

The prompts are split into shards, each named by the fingerprint of its rows, so the same prompts make the same shard
files on every run (the cache key of a shard's answers on Flyte, and the name of its answers on disk for the CLI).
Each shard is answered on the continuous-batching engine, its prompts submitted shortest first so that sequences of
similar length decode together. The shards' answers are merged into one table (id, prompt, output, finish_reason,
prompt_tokens, completion_tokens, latency_seconds: from admission to the last token; shard and shard_seconds: the
shard that answered the row and its wall time) with a BatchInferenceResult. A CLI run keeps each finished shard's
answers beside its output, so a run that is stopped and started again answers only the shards it had not finished."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from llmft.core import fingerprint as fp
from llmft.core.datasets import read_manifest, read_split, require_kind
from llmft.proto.data.v1 import dataset_pb2
from llmft.proto.serve.v1 import serve_pb2
from llmft.serve import STAGE, __version__
from llmft.serve.generator import Generator, RequestError, check_generation

log = logging.getLogger(__name__)
ANSWER_COLUMNS = [
    "id",
    "prompt",
    "output",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "latency_seconds",
    "shard",
    "shard_seconds",
]


def check_batch_request(request: serve_pb2.BatchInferenceRequest) -> None:
    if request.shards == 0:
        raise RequestError("shards: must be >= 1")
    if request.batch_size == 0:
        raise RequestError("batch_size: must be >= 1")
    check_generation(request.generation)


def load_prompts(data_dir: Path, split: str = "train") -> Any:
    """The prompt rows (id, prompt) of a prompt dataset's split."""
    manifest = read_manifest(data_dir)
    require_kind(manifest, dataset_pb2.DATASET_KIND_PROMPT, STAGE)
    frame = read_split(data_dir, split)[["id", "prompt"]]
    if frame.empty:
        raise RequestError(f"dataset {manifest.name!r}: split {split!r} has no prompts")
    return frame


def shard(frame: Any, shards: int) -> list[Any]:
    """Contiguous, near-equal shards; never an empty one."""
    shards = max(1, min(shards, len(frame)))
    size, extra = divmod(len(frame), shards)
    out, start = [], 0
    for i in range(shards):
        end = start + size + (1 if i < extra else 0)
        out.append(frame.iloc[start:end].reset_index(drop=True))
        start = end
    return out


def shard_name(prompts: Any) -> str:
    """A shard's file name from its rows' content: the same prompts always make the same name."""
    digest = fp.fingerprint_json([[str(i), str(p)] for i, p in zip(prompts["id"], prompts["prompt"], strict=True)])
    return f"shard-{digest.removeprefix('sha256:')[:16]}.parquet"


def write_shards(prompts: Any, shards: int, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for part in shard(prompts, shards):
        path = folder / shard_name(part)
        part.to_parquet(path, index=False)
        paths.append(path)
    return paths


def _encode(generator: Generator, prompt: str) -> list[int]:
    kind = "messages" if getattr(generator.tokenizer, "chat_template", None) else "prompt"
    request = (
        serve_pb2.GenerateRequest(messages=[serve_pb2.ChatMessage(role="user", content=prompt)])
        if kind == "messages"
        else serve_pb2.GenerateRequest(prompt=prompt)
    )
    return generator.prompt_ids(request)


def answer_shard(generator: Generator, prompts: Any, request: serve_pb2.BatchInferenceRequest, name: str = "") -> Any:
    """Answers every prompt (as a one-turn chat when the model has a chat template, else as raw text), submitted to
    the engine shortest first; the rows come back in the shard's order."""
    import pandas as pd

    check_batch_request(request)
    sampling = generator.sampling(request.generation)
    encoded = []
    for row in prompts.itertuples():
        try:
            encoded.append(_encode(generator, row.prompt))
        except RequestError as error:
            raise RequestError(f"prompt id {row.id!r}: {error}") from error
    started = time.perf_counter()
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    handles = {i: generator.engine.submit(encoded[i], sampling) for i in order}
    rows = []
    for i, row in enumerate(prompts.itertuples()):
        handle = handles[i]
        tokens = list(handle)
        answer = generator.finish(handle, tokens, list(request.generation.stop))
        rows.append(
            {
                "id": row.id,
                "prompt": row.prompt,
                "output": answer.text,
                "finish_reason": serve_pb2.FinishReason.Name(answer.finish_reason),
                "prompt_tokens": answer.prompt_tokens,
                "completion_tokens": answer.completion_tokens,
                "latency_seconds": answer.seconds,
                "shard": name,
            }
        )
    frame = pd.DataFrame(rows, columns=ANSWER_COLUMNS)
    frame["shard_seconds"] = time.perf_counter() - started
    return frame


def merge(
    answers: list[Any],
    request: serve_pb2.BatchInferenceRequest,
    model_fingerprint: str,
    dataset_fingerprint: str,
) -> tuple[Any, serve_pb2.BatchInferenceResult]:
    """One table from the shards' answers; tokens per second over the shards' summed wall time."""
    import pandas as pd

    table = pd.concat(answers, ignore_index=True) if answers else pd.DataFrame(columns=ANSWER_COLUMNS)
    tokens = int(table["completion_tokens"].sum())
    seconds = float(table.groupby("shard")["shard_seconds"].first().sum()) if len(table) else 0.0
    content = fp.fingerprint_json([[str(i), str(a)] for i, a in zip(table["id"], table["output"], strict=True)])
    result = serve_pb2.BatchInferenceResult(
        prompts=len(table),
        completion_tokens=tokens,
        tokens_per_second=tokens / seconds if seconds > 0 else 0.0,
        fingerprint=content,
        provenance=fp.provenance(STAGE, __version__, request, [model_fingerprint, dataset_fingerprint]),
    )
    return table, result


def answers_name(shard_file: Path, model_fingerprint: str, request: serve_pb2.BatchInferenceRequest) -> str:
    """The answers of one shard by one model under one generation config."""
    key = fp.fingerprint_json([model_fingerprint, fp.fingerprint_message(request.generation)])
    return f"{shard_file.stem}.answers-{key.removeprefix('sha256:')[:16]}.parquet"


def run_batch(
    model_dir: Path,
    data_dir: Path,
    request: serve_pb2.BatchInferenceRequest,
    work_dir: Path,
    split: str = "train",
) -> tuple[Any, serve_pb2.BatchInferenceResult]:
    """All shards in this process (the CLI; the Flyte workflow maps one task over the shards instead). `work_dir`
    keeps the shards and each finished shard's answers: run again with the same folder and only unfinished shards
    are answered."""
    import pandas as pd
    from tqdm import tqdm

    check_batch_request(request)
    prompts = load_prompts(data_dir, split)
    shard_files = write_shards(prompts, request.shards, work_dir)
    generator = Generator(model_dir, max_batch=request.batch_size, max_queue=len(prompts))
    try:
        answers, reused = [], 0
        for shard_file in tqdm(shard_files, desc="shards", unit="shard"):
            done = work_dir / answers_name(shard_file, generator.fingerprint, request)
            if done.is_file():
                frame = pd.read_parquet(done)
                reused += 1
            else:
                frame = answer_shard(generator, pd.read_parquet(shard_file), request, shard_file.stem)
                tmp = done.with_name(f".{done.name}.tmp")
                frame.to_parquet(tmp, index=False)
                tmp.rename(done)
            answers.append(frame)
        if reused:
            log.warning("batch: reused the answers of %d of %d shards from %s", reused, len(shard_files), work_dir)
        table, result = merge(answers, request, generator.fingerprint, read_manifest(data_dir).fingerprint)
    finally:
        generator.close()
    return table, result


def report_html(table: Any, result: serve_pb2.BatchInferenceResult) -> str:
    """The batch's Deck: totals, latency and length histograms, and sample answers."""
    from llmft.core import decks

    if not len(table):
        return ""
    totals = {
        "prompts": result.prompts,
        "completion tokens": result.completion_tokens,
        "tokens per second": result.tokens_per_second,
        "shards": table["shard"].nunique(),
        "median latency (s)": float(table["latency_seconds"].median()),
        "p99 latency (s)": float(table["latency_seconds"].quantile(0.99)),
        "stopped by length": int((table["finish_reason"] == "FINISH_REASON_LENGTH").sum()),
        "fingerprint": result.fingerprint,
    }
    return decks.page(
        decks.table([totals], title="Batch inference"),
        decks.histogram(list(table["latency_seconds"]), "Latency per prompt", "seconds"),
        decks.histogram(list(table["completion_tokens"]), "Answer length", "tokens"),
        decks.table(
            table.head(20)[["id", "prompt", "output", "finish_reason", "completion_tokens"]].to_dict("records"),
            title="First answers",
        ),
    )
