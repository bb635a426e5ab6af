"""Batch inference over a prompt dataset: split the prompts into shards (each answered by one map task on a cluster),
answer a shard in left-padded batches, and merge the shards' answers into one table with a BatchInferenceResult."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from llmft.core import fingerprint as fp
from llmft.core.datasets import read_manifest, read_split, require_kind
from llmft.proto.data.v1 import dataset_pb2
from llmft.proto.serve.v1 import serve_pb2
from llmft.serve import STAGE, __version__
from llmft.serve.generator import Generator, RequestError

ANSWER_COLUMNS = ["id", "prompt", "answer", "finish_reason", "completion_tokens", "seconds"]


def check_batch_request(request: serve_pb2.BatchInferenceRequest) -> None:
    if request.shards == 0:
        raise RequestError("shards: must be >= 1")
    if request.batch_size == 0:
        raise RequestError("batch_size: must be >= 1")


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


def answer_shard(generator: Generator, prompts: Any, request: serve_pb2.BatchInferenceRequest) -> Any:
    """Answers every prompt (as a one-turn chat when the model has a chat template, else as raw text)."""
    import pandas as pd
    import torch

    from llmft.core.generation import chat_prompt_ids

    tokenizer, model = generator.tokenizer, generator.model
    chat = bool(getattr(tokenizer, "chat_template", None))
    rows = []
    for start in range(0, len(prompts), request.batch_size):
        part = prompts.iloc[start : start + request.batch_size]
        encoded = [
            chat_prompt_ids(tokenizer, [{"role": "user", "content": p}])
            if chat
            else tokenizer(p, add_special_tokens=False)["input_ids"]
            for p in part["prompt"]
        ]
        width = max(len(e) for e in encoded)
        input_ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(e)) + e for e in encoded])
        attention = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
        kwargs = generator._generate_kwargs(request.generation, width)
        started = time.perf_counter()
        with torch.no_grad():
            generator._seed(request.generation)
            output = model.generate(input_ids=input_ids, attention_mask=attention, **kwargs)
        seconds = time.perf_counter() - started
        for row, generated in zip(part.itertuples(), output[:, width:].tolist(), strict=True):
            pad = tokenizer.pad_token_id
            while generated and generated[-1] == pad:
                generated.pop()
            answer = generator._finish(generated, request.generation, kwargs["max_new_tokens"], 0)
            rows.append(
                {
                    "id": row.id,
                    "prompt": row.prompt,
                    "answer": answer.text,
                    "finish_reason": serve_pb2.FinishReason.Name(answer.finish_reason),
                    "completion_tokens": answer.completion_tokens,
                    "seconds": seconds / len(part),
                }
            )
    return pd.DataFrame(rows, columns=ANSWER_COLUMNS)


def merge(
    answers: list[Any], request: serve_pb2.BatchInferenceRequest, model_fingerprint: str, dataset_fingerprint: str
) -> tuple[Any, serve_pb2.BatchInferenceResult]:
    import pandas as pd

    table = pd.concat(answers, ignore_index=True) if answers else pd.DataFrame(columns=ANSWER_COLUMNS)
    tokens = int(table["completion_tokens"].sum())
    seconds = float(table["seconds"].sum())
    content = fp.fingerprint_text("\n".join(f"{i}\t{a}" for i, a in zip(table["id"], table["answer"], strict=True)))
    result = serve_pb2.BatchInferenceResult(
        prompts=len(table),
        completion_tokens=tokens,
        tokens_per_second=tokens / seconds if seconds > 0 else 0.0,
        fingerprint=content,
        provenance=fp.provenance(STAGE, __version__, request, [model_fingerprint, dataset_fingerprint]),
    )
    return table, result


def run_batch(
    model_dir: Path, data_dir: Path, request: serve_pb2.BatchInferenceRequest, split: str = "train"
) -> tuple[Any, serve_pb2.BatchInferenceResult]:
    """All shards in this process (the CLI); the Flyte workflow maps answer_shard over the shards instead."""
    check_batch_request(request)
    prompts = load_prompts(data_dir, split)
    generator = Generator(model_dir)
    answers = [answer_shard(generator, part, request) for part in shard(prompts, request.shards)]
    return merge(answers, request, generator.fingerprint, read_manifest(data_dir).fingerprint)
