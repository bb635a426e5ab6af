"""Serving under load: 64 clients x 50 streamed chat requests through each endpoint, every server in its own process
on the same model, prompts, greedy decoding and token budget:

1. llmft's OpenAI-compatible endpoint (`llmft serve openai`), through the official `openai` client;
2. llmft's gRPC service (`llmft serve grpc`), GenerateStream;
3. the baseline a user would pick instead: transformers' own OpenAI-compatible server with continuous batching
   (`transformers serve --continuous-batching`), through the same `openai` client and the same requests as arm 1.

Per arm: requests/s, tokens/s, time to the first streamed piece (p50, p99), whole-request latency (p50, p99), errors,
the server's peak RSS while it served (sampled every 0.2 s) against its RSS when idle before, and whether it still
answers afterwards. The arms alternate in each repeat; every server stays up for the whole run (the CPU seconds each
idle server used while the others ran are recorded too).

    .venv/bin/python bench/serve_load.py                     # tiny Llama, 3 repeats, 64 clients x 50 requests
    .venv/bin/python bench/serve_load.py --clients 16 --requests 20 --repeats 1   # a quick look

Writes bench/serve_load.json with the CPU it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from machine import machine

HERE = Path(__file__).resolve().parent
ARMS = ("llmft_openai", "llmft_grpc", "transformers_serve_cb")
GOALS = {"errors": 0, "openai_vs_transformers_serve_tokens_per_s": 1.0}


def spread(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def prompts(count: int) -> list[str]:
    return [f"Question {i}: what is {i % 17} plus {(i * 7) % 13}?" + " Explain." * (i % 4) for i in range(count)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """One endpoint's server process and how to stream one answer from it."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], ready: Callable[[], bool]) -> None:
        self.name = name
        self.log = open(servers_log(name), "w")  # noqa: SIM115
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=self.log, text=True)
        deadline = time.monotonic() + 600
        while not ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start; see {self.log.name}")
            time.sleep(0.5)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def openai_stream(base_url: str, model: str, max_tokens: int) -> Callable[[str], tuple[float, int]]:
    """Streams one answer through the official client: (time to the first piece, completion tokens by the usage
    chunk)."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=300)

    def ask(question: str) -> tuple[float, int]:
        started = time.perf_counter()
        first, tokens = 0.0, 0
        stream = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": question}],
            max_tokens=max_tokens,
            temperature=0.0,
            stream=True,
            stream_options={"include_usage": True},
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                first = first or time.perf_counter() - started
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
        if not tokens:
            raise RuntimeError("no usage chunk: the answer's tokens are unknown")
        return first, tokens

    return ask


def grpc_stream(port: int, max_tokens: int) -> Callable[[str], tuple[float, int]]:
    import grpc

    from llmft.proto.serve.v1 import serve_pb2 as S
    from llmft.proto.serve.v1 import serve_pb2_grpc

    stub = serve_pb2_grpc.InferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))

    def ask(question: str) -> tuple[float, int]:
        started = time.perf_counter()
        first, tokens = 0.0, 0
        request = S.GenerateStreamRequest(
            messages=[S.ChatMessage(role="user", content=question)],
            generation=S.GenerationConfig(max_new_tokens=max_tokens),
        )
        for piece in stub.GenerateStream(request, timeout=300):
            if piece.text_delta:
                first = first or time.perf_counter() - started
            tokens = piece.usage.completion_tokens or tokens
        return first, tokens

    return ask


def load(ask: Callable[[str], tuple[float, int]], pid: int, clients: int, requests: int) -> dict[str, Any]:
    """`clients` threads, each sending `requests` requests one after another."""
    questions = prompts(clients * requests)
    ttft: list[float] = []
    latency: list[float] = []
    tokens = 0
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    idle_rss = rss_mib(pid)
    peak = [idle_rss]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.2):
            peak.append(rss_mib(pid))

    def client(number: int) -> None:
        nonlocal tokens
        for i in range(requests):
            started = time.perf_counter()
            try:
                first, count = ask(questions[number * requests + i])
            except Exception as error:  # counted and reported, not raised: the load goes on
                with lock:
                    errors[type(error).__name__] += 1
                continue
            with lock:
                ttft.append(first)
                latency.append(time.perf_counter() - started)
                tokens += count

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    seconds = time.perf_counter() - started
    sampling.set()
    sampler.join()
    return {
        "requests_per_s": len(latency) / seconds,
        "tokens_per_s": tokens / seconds,
        "ttft_p50_s": percentile(ttft, 0.50) if ttft else float("nan"),
        "ttft_p99_s": percentile(ttft, 0.99) if ttft else float("nan"),
        "latency_p50_s": percentile(latency, 0.50) if latency else float("nan"),
        "latency_p99_s": percentile(latency, 0.99) if latency else float("nan"),
        "errors": float(sum(errors.values())),
        "idle_rss_mib": idle_rss,
        "peak_rss_mib": max(peak),
        "error_kinds": dict(errors),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="llmft/tiny-llama")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests", type=int, default=50, help="requests per client")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "serve_load.json")
    args = parser.parse_args()

    from llmft.core.models import resolve_model_dir

    model_dir = str(resolve_model_dir(args.preset).directory)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "HF_HUB_OFFLINE": "1"}
    bounds = ["--max-batch", str(args.clients), "--max-queue", str(args.clients * 4)]
    ports = {arm: free_port() for arm in ARMS}
    servers: dict[str, Server] = {}
    asks: dict[str, Callable[[str], tuple[float, int]]] = {}
    try:
        servers["llmft_openai"] = Server(
            "llmft_openai",
            [sys.executable, "-m", "llmft.serve", "openai", "--model", model_dir, "--port", str(ports["llmft_openai"]),
             *bounds],
            env, lambda: http_ok(f"http://127.0.0.1:{ports['llmft_openai']}/health"),
        )  # fmt: skip
        asks["llmft_openai"] = openai_stream(
            f"http://127.0.0.1:{ports['llmft_openai']}/v1", model_dir, args.max_new_tokens
        )

        def grpc_ready() -> bool:
            log = Path(servers_log("llmft_grpc"))
            return log.exists() and "listening on" in log.read_text()

        servers["llmft_grpc"] = Server(
            "llmft_grpc",
            [sys.executable, "-m", "llmft.serve", "grpc", "--model", model_dir, "--port", str(ports["llmft_grpc"]),
             *bounds],
            env, grpc_ready,
        )  # fmt: skip
        asks["llmft_grpc"] = grpc_stream(ports["llmft_grpc"], args.max_new_tokens)
        transformers_cli = str(Path(sys.executable).with_name("transformers"))
        servers["transformers_serve_cb"] = Server(
            "transformers_serve_cb",
            [transformers_cli, "serve", "--continuous-batching", "--device", "cpu", "--host", "127.0.0.1", "--port",
             str(ports["transformers_serve_cb"]), model_dir],
            env, lambda: http_ok(f"http://127.0.0.1:{ports['transformers_serve_cb']}/health"),
        )  # fmt: skip
        asks["transformers_serve_cb"] = openai_stream(
            f"http://127.0.0.1:{ports['transformers_serve_cb']}/v1", model_dir, args.max_new_tokens
        )
        for arm in ARMS:  # warm up (transformers' first continuous-batching request sets up its cache)
            asks[arm]("warm up")
        runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
        idle_cpu: dict[str, float] = dict.fromkeys(ARMS, 0.0)
        for r in range(args.repeats):
            order = ARMS if r % 2 == 0 else tuple(reversed(ARMS))
            for arm in order:
                others = {o: cpu_seconds(servers[o].process.pid) for o in ARMS if o != arm}
                print(f"repeat {r + 1}/{args.repeats}: {arm}", flush=True)
                runs[arm].append(load(asks[arm], servers[arm].process.pid, args.clients, args.requests))
                for o, before in others.items():
                    idle_cpu[o] += cpu_seconds(servers[o].process.pid) - before
        up = {
            "llmft_openai": http_ok(f"http://127.0.0.1:{ports['llmft_openai']}/health"),
            "llmft_grpc": asks["llmft_grpc"]("still there?")[1] > 0,
            "transformers_serve_cb": http_ok(f"http://127.0.0.1:{ports['transformers_serve_cb']}/health"),
        }
    finally:
        for server in servers.values():
            server.stop()

    keys = [k for k in runs[ARMS[0]][0] if k != "error_kinds"]
    arms: dict[str, dict[str, Any]] = {
        arm: {
            **{k: spread([run[k] for run in runs[arm]]) for k in keys},
            "error_kinds": [run["error_kinds"] for run in runs[arm]],
            "up_afterwards": up[arm],
            "idle_cpu_seconds_during_other_arms": idle_cpu[arm],
        }
        for arm in ARMS
    }
    command = "python bench/serve_load.py " + " ".join(sys.argv[1:])
    print(f"\n{command}   ({args.preset}, {machine()['cpu']}, {args.clients} clients x {args.requests} streamed "
          f"requests of {args.max_new_tokens} tokens, {args.repeats} repeats; median (min..max))")  # fmt: skip
    names = {
        "llmft_openai": "llmft openai",
        "llmft_grpc": "llmft grpc",
        "transformers_serve_cb": "baseline: tf serve cb",
    }
    print(f"  {'':<16}" + "".join(f"{names[a]:>32}" for a in ARMS))
    for key in keys:
        cells = "".join(
            f"{arms[a][key]['median']:.3f} ({arms[a][key]['min']:.3f}..{arms[a][key]['max']:.3f})".rjust(32)
            for a in ARMS
        )
        print(f"  {key:<16}{cells}")
    print(f"  {'up afterwards':<16}" + "".join(f"{str(up[a]):>32}" for a in ARMS))
    ratio = arms["llmft_openai"]["tokens_per_s"]["median"] / arms["transformers_serve_cb"]["tokens_per_s"]["median"]
    errors = sum(arms[a]["errors"]["max"] for a in ("llmft_openai", "llmft_grpc"))
    print(f"  openai_vs_transformers_serve_tokens_per_s {ratio:.2f}x (goal >= 1.0x); llmft errors {errors:.0f}")
    result = {
        "openai_vs_transformers_serve_tokens_per_s": ratio,
        "errors": errors,
        "arms": arms,
        "goals": GOALS,
        "preset": args.preset,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "out"},
        **machine(),
        "command": command,
    }
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0 if errors == 0 and ratio >= GOALS["openai_vs_transformers_serve_tokens_per_s"] else 1


def servers_log(name: str) -> str:
    return str(Path(os.environ.get("TMPDIR", "/tmp")) / f"llmft-serve-load-{name}.log")


if __name__ == "__main__":
    sys.exit(main())
