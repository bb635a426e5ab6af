"""Serving speed of llmft.serve on one machine, each arm against its baseline in the same run:

1. batch inference: a shard answered by llmft's continuous-batching engine (prompts submitted shortest first)
   against transformers' own continuous batching (`generate_batch`, its paged cache) and against one-prompt-at-a-time
   transformers `generate`, on the same prompt ids (greedy, the same token budget, the same end-of-turn tokens);
   tokens/s, the arms alternating in each repeat, and how many answers each arm gives token for token like llmft's;
2. the gRPC service (`llmft serve grpc` in its own process) under 16 concurrent clients against the same requests
   sent one after another; requests/s and tokens/s, with p50 and p99 latency;
3. the Space (`python app.py` in a folder `llmft serve space` wrote, the model in process): time to the first
   streamed piece of an answer, against the time to the whole answer, measured on the same requests.

    .venv/bin/python bench/serve_throughput.py                     # tiny Llama, 3 repeats per arm
    .venv/bin/python bench/serve_throughput.py --preset llmft/small-llama --repeats 5
    .venv/bin/python bench/serve_throughput.py --preset smollm2-135m-instruct --arms batch   # the real model

Each arm runs `--repeats` times; the table shows the median and the spread (min..max). Writes
bench/serve_throughput.json (`batch_speedup`, `grpc_concurrency_speedup`, latencies) with the CPU it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from machine import machine

HERE = Path(__file__).resolve().parent
GOALS = {"batch_speedup": 5.0, "grpc_concurrency_speedup": 3.0, "engine_vs_transformers_cb": 1.0}


def spread(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def prompts(count: int) -> list[str]:
    return [f"Question {i}: what is {i % 17} plus {(i * 7) % 13}?" + " Explain." * (i % 4) for i in range(count)]


def repeat(arm: Callable[[], dict[str, float]], times: int) -> dict[str, dict[str, Any]]:
    runs = [arm() for _ in range(times)]
    return {key: spread([r[key] for r in runs]) for key in runs[0]}


# ---------------------------------------------------------------------------------------------------- batch


def bench_batch(model_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd
    import torch

    from llmft.proto.serve.v1 import serve_pb2 as S
    from llmft.serve.batch import answer_shard
    from llmft.serve.generator import Generator

    questions = prompts(args.batch_prompts)
    frame = pd.DataFrame({"id": [str(i) for i in range(len(questions))], "prompt": questions})
    request = S.BatchInferenceRequest(
        shards=1, batch_size=args.batch_size, generation=S.GenerationConfig(max_new_tokens=args.max_new_tokens)
    )
    generator = Generator(model_dir, max_batch=args.batch_size, max_queue=len(questions))
    encoded = [
        generator.prompt_ids(S.GenerateRequest(messages=[S.ChatMessage(role="user", content=q)])) for q in questions
    ]

    def engine_arm() -> dict[str, float]:
        started = time.perf_counter()
        table = answer_shard(generator, frame, request)
        seconds = time.perf_counter() - started
        return {"tokens_per_s": float(table["completion_tokens"].sum()) / seconds, "seconds": seconds}

    from transformers import GenerationConfig

    stops = sorted(generator.engine.eos)
    answers: dict[str, list[list[int]]] = {}

    def engine_answers() -> list[list[int]]:
        return [list(generator.engine.submit(ids, generator.sampling(request.generation))) for ids in encoded]

    def cb_arm() -> dict[str, float]:
        config = GenerationConfig(
            max_new_tokens=args.max_new_tokens,
            do_sample=False,
            eos_token_id=stops,
            pad_token_id=generator.tokenizer.pad_token_id,
        )
        started = time.perf_counter()
        with torch.inference_mode():
            out = generator.model.generate_batch(encoded, generation_config=config, persistent_manager=True)
        seconds = time.perf_counter() - started
        ordered = [out[key] for key in sorted(out, key=lambda k: int(k.rsplit("_", 1)[-1]))]
        answers["cb"] = [list(o.generated_tokens) for o in ordered]
        tokens = sum(len(o.generated_tokens) for o in ordered)
        return {"tokens_per_s": tokens / seconds, "seconds": seconds}

    def generate_arm() -> dict[str, float]:
        tokens, started = 0, time.perf_counter()
        with torch.inference_mode():
            for ids in encoded:
                input_ids = torch.tensor([ids])
                out = generator.model.generate(
                    input_ids=input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    max_new_tokens=args.max_new_tokens,
                    do_sample=False,
                    pad_token_id=generator.tokenizer.pad_token_id,
                )
                tokens += out.shape[1] - len(ids)
        seconds = time.perf_counter() - started
        return {"tokens_per_s": tokens / seconds, "seconds": seconds}

    try:
        engine_arm()  # warm up every path once
        cb_arm()
        generate_arm()
        answers["engine"] = engine_answers()
        runs: dict[str, list[dict[str, float]]] = {"engine": [], "cb": [], "generate": []}
        for _ in range(args.repeats):  # the arms alternate, so a slow spell of the machine hits them alike
            runs["engine"].append(engine_arm())
            runs["cb"].append(cb_arm())
            runs["generate"].append(generate_arm())
    finally:
        generator.close()
    engine, cb, baseline = ({k: spread([r[k] for r in runs[arm]]) for k in runs[arm][0]} for arm in runs)
    same = sum(a == b for a, b in zip(answers["engine"], answers["cb"], strict=True))
    return {
        "llmft_batch": engine,
        "transformers_continuous_batching": cb,
        "transformers_generate_one_at_a_time": baseline,
        "batch_speedup": engine["tokens_per_s"]["median"] / baseline["tokens_per_s"]["median"],
        "engine_vs_transformers_cb": engine["tokens_per_s"]["median"] / cb["tokens_per_s"]["median"],
        "answers_equal_to_transformers_cb": same,
        "prompts": len(questions),
        "batch_size": args.batch_size,
    }


# ---------------------------------------------------------------------------------------------------- gRPC


def bench_grpc(model_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    from llmft.proto.serve.v1 import serve_pb2 as S
    from llmft.proto.serve.v1 import serve_pb2_grpc

    server = subprocess.Popen(
        [sys.executable, "-m", "llmft.serve", "grpc", "--model", str(model_dir), "--port", "0",
         "--max-batch", str(args.clients), "--max-queue", str(args.clients * 4)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        listening = re.search(r"listening on [\d.]+:(\d+)", server.stdout.readline())
        assert listening, "the server did not start"
        port = int(listening.group(1))
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = serve_pb2_grpc.InferenceServiceStub(channel)
        questions = prompts(args.grpc_requests)

        def call(question: str) -> tuple[float, int]:
            started = time.perf_counter()
            response = stub.Generate(
                S.GenerateRequest(
                    messages=[S.ChatMessage(role="user", content=question)],
                    generation=S.GenerationConfig(max_new_tokens=args.max_new_tokens),
                ),
                timeout=300,
            )
            return time.perf_counter() - started, response.usage.completion_tokens

        def arm(clients: int) -> Callable[[], dict[str, float]]:
            def run() -> dict[str, float]:
                started = time.perf_counter()
                with ThreadPoolExecutor(clients) as pool:
                    results = list(pool.map(call, questions))
                seconds = time.perf_counter() - started
                latencies = sorted(r[0] for r in results)
                return {
                    "requests_per_s": len(results) / seconds,
                    "tokens_per_s": sum(r[1] for r in results) / seconds,
                    "p50_latency_s": latencies[len(latencies) // 2],
                    "p99_latency_s": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
                }

            return run

        call("warm up")
        concurrent, sequential = repeat(arm(args.clients), args.repeats), repeat(arm(1), args.repeats)
        channel.close()
    finally:
        server.terminate()
        server.wait(timeout=60)
    return {
        f"concurrent_{args.clients}_clients": concurrent,
        "sequential": sequential,
        "grpc_concurrency_speedup": concurrent["requests_per_s"]["median"] / sequential["requests_per_s"]["median"],
        "requests_per_arm": args.grpc_requests,
        "clients": args.clients,
    }


# ---------------------------------------------------------------------------------------------------- Space


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_space(model_dir: Path, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from gradio_client import Client

    from llmft.serve.space import SpaceSettings, write_space

    space = write_space(root / "space", SpaceSettings(model=str(model_dir), max_new_tokens=args.max_new_tokens))
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    app = subprocess.Popen(
        [sys.executable, "app.py"], cwd=space, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or app.poll() is not None:
                    raise RuntimeError("the Space did not start") from None
                time.sleep(0.5)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        questions = prompts(args.space_requests)

        def one(question: str) -> tuple[float, float]:
            first: list[float] = []
            started = time.perf_counter()
            job = client.submit(question, api_name="/respond")
            for output in job:
                if output and not first:
                    first.append(time.perf_counter() - started)
            job.result()
            return (first[0] if first else time.perf_counter() - started), time.perf_counter() - started

        one("warm up")

        def arm() -> dict[str, float]:
            results = [one(q) for q in questions]
            return {
                "time_to_first_token_s": statistics.median(r[0] for r in results),
                "time_to_whole_answer_s": statistics.median(r[1] for r in results),
            }

        measured = repeat(arm, args.repeats)
    finally:
        app.terminate()
        app.wait(timeout=60)
    return {"space": measured, "requests_per_arm": args.space_requests}


# ---------------------------------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="llmft/tiny-llama")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-prompts", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--grpc-requests", type=int, default=64)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--space-requests", type=int, default=8)
    parser.add_argument("--arms", default="batch,grpc,space", help="which arms to run (the real model: batch)")
    parser.add_argument("--out", type=Path, default=None, help="default bench/serve_throughput[_<preset>].json")
    args = parser.parse_args()

    from llmft.core.models import resolve_model_dir

    arms = set(args.arms.split(","))
    if not arms or arms - {"batch", "grpc", "space"}:
        parser.error(f"--arms: {args.arms!r}; give some of batch, grpc, space")
    out = args.out or HERE / (
        "serve_throughput.json"
        if args.preset == "llmft/tiny-llama"
        else f"serve_throughput_{args.preset.split('/')[-1]}.json"
    )
    model_dir = resolve_model_dir(args.preset).directory
    with tempfile.TemporaryDirectory(prefix="llmft-serve-bench-") as tmp:
        batch = bench_batch(model_dir, args) if "batch" in arms else None
        grpc_ = bench_grpc(model_dir, args) if "grpc" in arms else None
        space = bench_space(model_dir, args, Path(tmp)) if "space" in arms else None

    def row(name: str, figures: dict[str, Any], key: str) -> None:
        f = figures[key]
        print(f"  {name:<48}{f['median']:>12.3f}{f['min']:>12.3f}{f['max']:>12.3f}")

    command = "python bench/serve_throughput.py " + " ".join(sys.argv[1:])
    print(f"\n{command}   ({args.preset}, {machine()['cpu']}, {args.repeats} repeats)")
    print(f"  {'arm':<48}{'median':>12}{'min':>12}{'max':>12}")
    result: dict[str, Any] = {}
    if batch is not None:
        print("batch inference, tokens/s")
        row(f"llmft batch (engine, {args.batch_size} slots)", batch["llmft_batch"], "tokens_per_s")
        row("baseline: transformers continuous batching", batch["transformers_continuous_batching"], "tokens_per_s")
        row(
            "baseline: transformers generate, one at a time",
            batch["transformers_generate_one_at_a_time"],
            "tokens_per_s",
        )
        print(f"  batch_speedup {batch['batch_speedup']:.2f}x (goal >= {GOALS['batch_speedup']:.0f}x)")
        print(
            f"  engine_vs_transformers_cb {batch['engine_vs_transformers_cb']:.2f}x "
            f"(goal >= {GOALS['engine_vs_transformers_cb']:.1f}x); answers equal token for token: "
            f"{batch['answers_equal_to_transformers_cb']} of {batch['prompts']}"
        )
        result.update(
            batch_speedup=batch["batch_speedup"],
            engine_vs_transformers_cb=batch["engine_vs_transformers_cb"],
            batch=batch,
        )
    if grpc_ is not None:
        concurrent = grpc_[f"concurrent_{args.clients}_clients"]
        print("gRPC, requests/s and latency (s)")
        row(f"{args.clients} concurrent clients: requests/s", concurrent, "requests_per_s")
        row("baseline: sequential requests: requests/s", grpc_["sequential"], "requests_per_s")
        row(f"{args.clients} concurrent clients: p50 latency", concurrent, "p50_latency_s")
        row(f"{args.clients} concurrent clients: p99 latency", concurrent, "p99_latency_s")
        row("sequential: p50 latency", grpc_["sequential"], "p50_latency_s")
        row("sequential: p99 latency", grpc_["sequential"], "p99_latency_s")
        print(
            f"  grpc_concurrency_speedup {grpc_['grpc_concurrency_speedup']:.2f}x "
            f"(goal >= {GOALS['grpc_concurrency_speedup']:.0f}x)"
        )
        result.update(
            grpc_concurrency_speedup=grpc_["grpc_concurrency_speedup"],
            grpc_p50_latency_s=concurrent["p50_latency_s"]["median"],
            grpc_p99_latency_s=concurrent["p99_latency_s"]["median"],
            grpc_sequential_p50_latency_s=grpc_["sequential"]["p50_latency_s"]["median"],
            grpc_sequential_p99_latency_s=grpc_["sequential"]["p99_latency_s"]["median"],
            grpc=grpc_,
        )
    if space is not None:
        print("Space (app.py, model in process), seconds")
        row("time to first token", space["space"], "time_to_first_token_s")
        row("baseline: time to the whole answer", space["space"], "time_to_whole_answer_s")
        result.update(
            space_time_to_first_token_s=space["space"]["time_to_first_token_s"]["median"],
            space_time_to_whole_answer_s=space["space"]["time_to_whole_answer_s"]["median"],
            space=space,
        )
    goals = {k: goal for k, goal in GOALS.items() if k in result}
    result.update(
        goals=goals,
        preset=args.preset,
        settings={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "out"},
        **machine(),
        command=command,
    )
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0 if all(result[k] >= goal for k, goal in goals.items()) else 1


if __name__ == "__main__":
    sys.exit(main())
