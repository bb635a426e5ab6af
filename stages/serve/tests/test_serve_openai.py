"""The OpenAI-compatible endpoint on 127.0.0.1, through the official `openai` client: /v1/models, whole and streamed
chat completions equal to the Generator's answers, sampling fields reaching the engine, the protocol's error objects
with 4xx codes for bad requests, bearer tokens, a full queue, the server's request timeout, clients that go away; and
the `llmft serve openai` command under 64 concurrent clients."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import openai
import pytest

from llmft.proto.serve.v1 import serve_pb2 as S
from llmft.serve import engine as E
from llmft.serve.openai_api import OpenAIOptions, RunningOpenAI, build_openai_server
from llmft.testing import rss_mib

TOKEN = "test-token-for-the-openai-endpoint"
NAME = "tiny-llama-chat"
QUESTION: list[Any] = [{"role": "user", "content": "What is Flyte?"}]


@pytest.fixture(scope="module")
def api(model_dir: Path) -> Iterator[RunningOpenAI]:
    running = build_openai_server(
        model_dir, OpenAIOptions(port=0, model_name=NAME, token=TOKEN, max_batch=4, max_queue=4)
    )
    yield running
    running.stop(grace=0)


def http(method: str, url: str, body: bytes | None = None, token: str = "") -> tuple[int, Any]:
    """A raw HTTP call (for what the openai client would never send): its status and its JSON body."""
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def refusal(call: Callable[[], object]) -> tuple[openai.APIStatusError, dict[str, Any]]:
    """The error a call was refused with, and its error object."""
    try:
        call()
    except openai.APIStatusError as error:
        return error, cast(dict[str, Any], error.body)
    raise AssertionError("the call was not refused")


def client(running: RunningOpenAI, api_key: str = TOKEN, **options: Any) -> openai.OpenAI:
    # No retries: a 429 or 5xx must reach the test, not be retried away.
    return openai.OpenAI(base_url=f"http://127.0.0.1:{running.port}/v1", api_key=api_key, max_retries=0, **options)


def direct(running: RunningOpenAI, **generation: Any) -> S.GenerateResponse:
    """The same question asked of the Generator itself, without HTTP."""
    request = S.GenerateRequest(
        messages=[S.ChatMessage(role="user", content=QUESTION[0]["content"])],
        generation=S.GenerationConfig(**generation),
    )
    return running.generator.generate(request)


def test_models_and_a_whole_answer_equal_to_the_generators(api: RunningOpenAI) -> None:
    c = client(api)
    assert [m.id for m in c.models.list().data] == [NAME]
    assert c.models.retrieve(NAME).owned_by == "llmft"
    completion = c.chat.completions.create(model=NAME, messages=QUESTION, max_tokens=12)
    expected = direct(api, max_new_tokens=12)
    assert completion.choices[0].message.content == expected.text and expected.text
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (
        expected.usage.prompt_tokens,
        12,
    )
    assert completion.usage.total_tokens == expected.usage.prompt_tokens + 12
    assert completion.system_fingerprint == api.generator.fingerprint
    # max_completion_tokens is the same budget under its newer name; the developer role is the system role.
    newer = c.chat.completions.create(model=NAME, messages=QUESTION, max_completion_tokens=12)
    assert newer.choices[0].message.content == expected.text
    with_developer = c.chat.completions.create(
        model=NAME,
        messages=[{"role": "developer", "content": "Answer briefly."}, *QUESTION],
        max_tokens=6,
    )
    system = S.ChatMessage(role="system", content="Answer briefly.")
    user = S.ChatMessage(role="user", content=QUESTION[0]["content"])
    system_request = S.GenerateRequest(messages=[system, user], generation=S.GenerationConfig(max_new_tokens=6))
    assert with_developer.choices[0].message.content == api.generator.generate(system_request).text


def test_a_stream_joins_to_the_whole_answer_and_ends_with_usage(api: RunningOpenAI) -> None:
    chunks = list(
        client(api).chat.completions.create(
            model=NAME,
            messages=QUESTION,
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len([p for p in pieces if p]) > 1  # streamed piece by piece, not in one chunk
    assert "".join(pieces) == direct(api, max_new_tokens=12).text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 12
    assert len({c.id for c in chunks}) == 1
    # Without include_usage, no usage chunk.
    plain = list(client(api).chat.completions.create(model=NAME, messages=QUESTION, max_tokens=4, stream=True))
    assert all(c.usage is None for c in plain) and plain[-1].choices[0].finish_reason == "length"


def test_stop_strings_seeds_and_extension_fields_reach_the_engine(api: RunningOpenAI) -> None:
    c = client(api)
    whole = direct(api, max_new_tokens=12).text
    stop = whole[5:9]  # from the middle of the greedy answer
    cut = c.chat.completions.create(model=NAME, messages=QUESTION, max_tokens=12, stop=stop)
    assert cut.choices[0].message.content == whole[: whole.index(stop)]
    assert cut.choices[0].finish_reason == "stop"

    def sampled(seed: int, **extra: Any) -> str:
        completion = c.chat.completions.create(
            model=NAME, messages=QUESTION, max_tokens=16, temperature=1.5, seed=seed, **extra
        )
        return completion.choices[0].message.content or ""

    assert sampled(7) == sampled(7) == direct(api, max_new_tokens=16, temperature=1.5, seed=7).text
    assert len({sampled(seed) for seed in range(1, 6)}) > 1
    # top_k and repetition_penalty (vLLM's extensions) reach the sampler: each changes the answer as the Generator's
    # own field does.
    penalised = c.chat.completions.create(
        model=NAME, messages=QUESTION, max_tokens=12, extra_body={"repetition_penalty": 3.0}
    )
    assert penalised.choices[0].message.content == direct(api, max_new_tokens=12, repetition_penalty=3.0).text
    assert penalised.choices[0].message.content != whole
    assert sampled(7, extra_body={"top_k": 1}) == direct(api, max_new_tokens=16).text  # top_k 1 is greedy


IMAGE: Any = [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
BAD_REQUESTS = [
    ({"temperature": 2.5}, 400, "temperature"),
    ({"top_p": 0}, 400, "top_p"),
    ({"max_tokens": 0}, 400, "max_tokens"),
    ({"max_tokens": 5000}, 400, "max_tokens"),
    ({"max_tokens": 4, "max_completion_tokens": 5}, 400, "max_tokens"),
    ({"n": 2}, 400, "n"),
    ({"seed": 0}, 400, "seed"),
    ({"frequency_penalty": 0.5}, 400, "frequency_penalty"),
    ({"presence_penalty": 1.0}, 400, "presence_penalty"),
    ({"stop": ["x"] * 17}, 400, "stop"),
    ({"stop": ["go", ""]}, 400, "stop[1]"),
    ({"messages": []}, 400, "messages"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, 400, "messages[0].role"),
    ({"messages": [{"role": "user", "content": "   "}]}, 400, "messages[0].content"),
    ({"messages": [{"role": "user", "content": IMAGE}]}, 400, "messages[0].content[0].type"),
    ({"messages": [{"role": "user", "content": "hi", "tool_calls": []}]}, 400, "messages[0].tool_calls"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, 400, "tools"),
    ({"logprobs": True}, 400, "logprobs"),
    ({"stream_options": {"include_usage": True}}, 400, "stream_options"),
    ({"model": "gpt-4o"}, 404, "model"),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "status", "param"), BAD_REQUESTS, ids=[b[2] + str(b[1]) for b in BAD_REQUESTS])
def test_bad_requests_get_the_protocols_error_objects(
    api: RunningOpenAI, fields: dict[str, Any], status: int, param: str
) -> None:
    body: dict[str, Any] = {"model": NAME, "messages": QUESTION, "max_tokens": 4, **fields}
    error, refused = refusal(lambda: client(api).chat.completions.create(**body))
    assert error.status_code == status
    assert refused["param"] == param, refused
    assert refused["type"] == "invalid_request_error"
    assert refused["message"].startswith(f"{param}: ")
    if param == "stream_options":
        return  # valid in a stream
    # The same refusal before a stream starts: a status code, not a 200 with an error inside.
    streamed, streamed_refused = refusal(lambda: list(client(api).chat.completions.create(**body, stream=True)))
    assert streamed.status_code == status and streamed_refused == refused


def test_bodies_paths_and_tokens_the_server_refuses(api: RunningOpenAI) -> None:
    base = f"http://127.0.0.1:{api.port}"
    completions = f"{base}/v1/chat/completions"
    for raw, needle in ((b"{not json", "not valid JSON"), (b"[1, 2]", "a JSON object")):
        status, body = http("POST", completions, raw, TOKEN)
        assert status == 400 and needle in body["error"]["message"]
    status, body = http("POST", completions, json.dumps({"messages": QUESTION}).encode(), TOKEN)
    assert status == 400 and body["error"]["param"] == "model"
    status, body = http("GET", f"{base}/v1/embeddings", token=TOKEN)
    assert status == 404 and body["error"]["type"] == "not_found_error"
    status, body = http("GET", completions, token=TOKEN)
    assert status == 405 and "error" in body
    with pytest.raises(openai.NotFoundError):
        client(api).models.retrieve("gpt-4o")
    denied, denied_body = refusal(lambda: client(api, api_key="wrong").models.list())
    assert isinstance(denied, openai.AuthenticationError)
    assert TOKEN not in str(denied_body) and denied_body["code"] == "invalid_api_key"
    status, body = http("POST", completions, json.dumps({"model": NAME, "messages": QUESTION}).encode())
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    assert http("GET", f"{base}/health") == (200, {"status": "ok"})  # probes need no token


@pytest.fixture()
def one_slot(model_dir: Path) -> Iterator[RunningOpenAI]:
    running = build_openai_server(model_dir, OpenAIOptions(port=0, model_name=NAME, max_batch=1, max_queue=0))
    yield running
    running.stop(grace=0)


def finished(running: RunningOpenAI, reason: str) -> int:
    return running.generator.engine.stats().finished.get(reason, 0)


def wait_for(condition: Any, seconds: float = 10.0) -> bool:
    until = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > until:
            return False
        time.sleep(0.02)
    return True


def test_a_full_engine_answers_429_and_clients_that_leave_free_their_slot(one_slot: RunningOpenAI) -> None:
    c = client(one_slot)
    long: dict[str, Any] = {"model": NAME, "messages": QUESTION, "max_tokens": 1000}
    stream = c.chat.completions.create(**long, stream=True)
    next(iter(stream)), next(iter(stream))
    busy, _ = refusal(lambda: c.chat.completions.create(model=NAME, messages=QUESTION, max_tokens=2))
    assert isinstance(busy, openai.RateLimitError)
    assert busy.response.headers["retry-after"] == "1" and "retry" in busy.message
    # The streaming client goes away: its generation stops within a step, and the slot takes the next request.
    stream.close()
    assert wait_for(lambda: finished(one_slot, E.CANCELLED) == 1)
    assert c.chat.completions.create(model=NAME, messages=QUESTION, max_tokens=2).choices[0].message.content
    # A client that gives up on a whole answer (its own timeout closes the connection) stops it too.
    with pytest.raises(openai.APITimeoutError):
        client(one_slot, timeout=0.3).chat.completions.create(**long)
    assert wait_for(lambda: finished(one_slot, E.CANCELLED) == 2)
    assert finished(one_slot, E.LENGTH) == 1  # only the short request ran to its budget


def test_the_servers_request_timeout_ends_a_generation_with_504(model_dir: Path) -> None:
    running = build_openai_server(model_dir, OpenAIOptions(port=0, model_name=NAME, request_timeout=0.05))
    try:
        c = client(running)
        late, late_body = refusal(lambda: c.chat.completions.create(model=NAME, messages=QUESTION, max_tokens=1000))
        assert late.status_code == 504 and late_body["code"] == "timeout"
        # A stream that passes it ends with the protocol's error event, which the client raises.
        with pytest.raises(openai.APIError, match="request timeout"):
            list(c.chat.completions.create(model=NAME, messages=QUESTION, max_tokens=1000, stream=True))
        assert finished(running, E.DEADLINE) == 2
    finally:
        running.stop(grace=0)


def test_cli_server_under_64_concurrent_clients(model_dir: Path, tmp_path: Path) -> None:
    """64 clients x 50 requests against `llmft serve openai`, a stream every 5th: every request answered, or given up by
    its client as it asked, no other error; server memory flat; SIGTERM lets it finish and exit 0."""
    clients, calls = 64, 50
    served = str(model_dir)
    process = subprocess.Popen(
        [sys.executable, "-m", "llmft.serve", "openai", "--model", str(model_dir), "--port", "0", "--max-batch", "32",
         "--max-queue", "64"],
        stdout=subprocess.PIPE, stderr=(tmp_path / "server.log").open("w"), text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "LLMFT_SERVE_TOKEN": TOKEN},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = re.search(r"(http://127\.0\.0\.1:\d+/v1)", line).group(1)  # type: ignore[union-attr]
        assert TOKEN not in line and "bearer token" in line
        shared = openai.OpenAI(base_url=url, api_key=TOKEN, max_retries=0)
        # Without --served-model-name, the model is called what --model said.
        assert [m.id for m in shared.models.list().data] == [served]
        outcomes: Counter[str] = Counter()
        lock = threading.Lock()
        rss = [rss_mib(process.pid)]
        shared.chat.completions.create(model=served, messages=QUESTION, max_tokens=4)
        rss.append(rss_mib(process.pid))

        def one_client(number: int) -> None:
            for call in range(calls):
                # Every 10th request has a client timeout too short to finish: the client leaves, the server stops.
                tight = call % 10 == number % 10
                messages: list[Any] = [{"role": "user", "content": f"client {number} call {call}"}]
                try:
                    if call % 5 == 2:
                        chunks = list(
                            shared.with_options(timeout=60).chat.completions.create(
                                model=served, messages=messages, max_tokens=3, stream=True
                            )
                        )
                        assert [c.choices[0].finish_reason for c in chunks][-1] in ("stop", "length")
                    else:
                        shared.with_options(timeout=0.02 if tight else 60).chat.completions.create(
                            model=served, messages=messages, max_tokens=200 if tight else 3
                        )
                    outcome = "ok"
                except openai.APITimeoutError:
                    outcome = "timeout"
                except Exception as error:  # counted, so that the assert below names it
                    outcome = f"{type(error).__name__}: {error}"
                with lock:
                    outcomes[("tight " if tight else "") + outcome] += 1
                if call % 10 == 0 and number == 0:
                    rss.append(rss_mib(process.pid))

        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(one_client, range(clients)))
        rss.append(rss_mib(process.pid))
        tight_calls = sum(1 for n in range(clients) for call in range(calls) if call % 10 == n % 10 and call % 5 != 2)
        assert outcomes["ok"] + outcomes["tight ok"] + outcomes["tight timeout"] == clients * calls, outcomes
        assert outcomes["tight timeout"] > tight_calls // 2, outcomes  # a 200-token answer takes longer than 20 ms
        assert max(rss) - rss[1] < 300, rss  # MiB: no growth with the number of requests served
        assert http("GET", url.replace("/v1", "/health")) == (200, {"status": "ok"})  # up after the load
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        assert "shutting down" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert TOKEN not in (tmp_path / "server.log").read_text()
