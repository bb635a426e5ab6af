"""The gRPC InferenceService on 127.0.0.1: health, reflection, unary and streaming calls, status codes for bad input,
a full queue, deadlines and cancellation, token authentication and TLS; and the `llmft serve grpc` command under load
from 64 concurrent clients."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from llmft.proto.serve.v1 import serve_pb2 as S
from llmft.proto.serve.v1 import serve_pb2_grpc
from llmft.serve import engine as E
from llmft.serve.server import SERVICE_NAME, RunningServer, ServerOptions, build_server
from llmft.testing import rss_mib


@pytest.fixture(scope="module")
def server(model_dir: Path) -> Iterator[RunningServer]:
    running = build_server(model_dir, ServerOptions(port=0, max_batch=8, max_queue=16))
    yield running
    running.stop(grace=None)


@pytest.fixture(scope="module")
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


def chat(text: str, **generation: object) -> S.GenerateRequest:
    return S.GenerateRequest(
        messages=[S.ChatMessage(role="user", content=text)],
        generation=S.GenerationConfig(**generation),  # type: ignore[arg-type]
    )


def status_of(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as error:
        result = call()
        if not isinstance(result, S.GenerateResponse):
            list(result)
    rpc: Any = error.value  # a grpc.RpcError that is also a grpc.Call
    return rpc.code(), rpc.details()


def test_health_reflection_unary_streaming_and_model_info(channel: grpc.Channel, server: RunningServer) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE_NAME):
        assert health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status == (
            health_pb2.HealthCheckResponse.SERVING
        )
    listed = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
    )
    names = {s.name for s in next(iter(listed)).list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names
    stub = serve_pb2_grpc.InferenceServiceStub(channel)
    response = stub.Generate(chat("What is Flyte?", max_new_tokens=8), timeout=30)
    assert response.text == server.generator.generate(chat("What is Flyte?", max_new_tokens=8)).text
    pieces = list(
        stub.GenerateStream(
            S.GenerateStreamRequest(prompt="def main(", generation=S.GenerationConfig(max_new_tokens=8)), timeout=30
        )
    )
    assert pieces[-1].usage.completion_tokens == 8 or pieces[-1].finish_reason == S.FINISH_REASON_STOP
    assert (
        "".join(p.text_delta for p in pieces)
        == server.generator.generate(
            S.GenerateRequest(prompt="def main(", generation=S.GenerationConfig(max_new_tokens=8))
        ).text
    )
    info = stub.GetModelInfo(S.GetModelInfoRequest(), timeout=10)
    assert info.model_family == "llama" and info.has_chat_template and info.max_positions == 1024
    assert info.model_fingerprint == response.model_fingerprint == server.generator.fingerprint


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (S.GenerateRequest(), "messages, prompt"),
        (S.GenerateRequest(prompt="  "), "prompt: whitespace"),
        (S.GenerateRequest(prompt="a", generation=S.GenerationConfig(temperature=float("nan"))), "temperature"),
        (S.GenerateRequest(prompt="a", generation=S.GenerationConfig(temperature=float("inf"))), "temperature"),
        (S.GenerateRequest(prompt="a", generation=S.GenerationConfig(repetition_penalty=-1)), "repetition_penalty"),
        (S.GenerateRequest(prompt="a", generation=S.GenerationConfig(top_p=float("nan"))), "top_p"),
    ],
)
def test_bad_fields_get_invalid_argument_on_both_calls(
    channel: grpc.Channel, request_: S.GenerateRequest, field: str
) -> None:
    stub = serve_pb2_grpc.InferenceServiceStub(channel)
    code, details = status_of(lambda: stub.Generate(request_, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and re.search(field, details)
    stream_request = S.GenerateStreamRequest.FromString(request_.SerializeToString())
    code, details = status_of(lambda: stub.GenerateStream(stream_request, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and re.search(field, details)


@pytest.mark.parametrize("payload", [b"\xff\xff\xff", b"\x12\x03\xff\xfe\xfd", b"\x0a\x05\x0a\x01"])
def test_undecodable_bytes_get_invalid_argument(channel: grpc.Channel, payload: bytes) -> None:
    for method in ("Generate", "GenerateStream"):
        raw = f"/{SERVICE_NAME}/{method}"
        call = channel.unary_unary(raw) if method == "Generate" else channel.unary_stream(raw)
        with pytest.raises(grpc.RpcError) as error:
            result = call(payload, timeout=10)
            list(result) if method == "GenerateStream" else None
        rpc: Any = error.value
        assert rpc.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, payload, rpc.details())
        assert "llmft.proto.serve.v1" in rpc.details()


@pytest.fixture
def one_slot(model_dir: Path) -> Iterator[RunningServer]:
    running = build_server(model_dir, ServerOptions(port=0, max_batch=1, max_queue=1))
    yield running
    running.stop(grace=None)


def test_expired_deadlines_and_disconnected_streams_free_the_slot(one_slot: RunningServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{one_slot.port}") as ch:
        stub = serve_pb2_grpc.InferenceServiceStub(ch)
        long = chat("go on", max_new_tokens=900)
        for _ in range(5):
            code, _ = status_of(lambda: stub.Generate(long, timeout=0.05))
            assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        # A stream whose client goes away after two pieces.
        stream = stub.GenerateStream(S.GenerateStreamRequest.FromString(long.SerializeToString()), timeout=60)
        next(stream), next(stream)
        stream.cancel()
        # With one slot, the next request could only run if every one of those stopped generating.
        started = time.monotonic()
        assert stub.Generate(chat("hi", max_new_tokens=4), timeout=5).usage.completion_tokens > 0
        assert time.monotonic() - started < 5
    # The engine ended all six early: by the deadline it was given, or by the call's end, whichever it saw first.
    finished = one_slot.generator.engine.stats().finished
    assert finished.get(E.DEADLINE, 0) + finished.get(E.CANCELLED, 0) == 6, finished


def test_a_full_server_answers_resource_exhausted(one_slot: RunningServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{one_slot.port}") as ch:
        stub = serve_pb2_grpc.InferenceServiceStub(ch)
        long = S.GenerateStreamRequest(prompt="go", generation=S.GenerationConfig(max_new_tokens=900))
        running = stub.GenerateStream(long, timeout=60)
        next(running)
        waiting = stub.GenerateStream(long, timeout=60)  # the one queue place
        time.sleep(0.2)
        code, details = status_of(lambda: stub.Generate(chat("hi", max_new_tokens=2), timeout=10))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "retry" in details
        running.cancel()
        waiting.cancel()
        time.sleep(0.2)
        assert stub.Generate(chat("hi", max_new_tokens=2), timeout=10).usage.completion_tokens > 0


def self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_token_authentication_over_tls(model_dir: Path, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    token = "s3cret-token-for-the-test"
    running = build_server(model_dir, ServerOptions(port=0, token=token, tls_cert=cert, tls_key=key))
    try:
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(f"localhost:{running.port}", credentials) as ch:
            stub = serve_pb2_grpc.InferenceServiceStub(ch)
            code, details = status_of(lambda: stub.Generate(chat("hi", max_new_tokens=2), timeout=10))
            assert code == grpc.StatusCode.UNAUTHENTICATED and token not in details
            wrong = [("authorization", "Bearer nope")]
            code, _ = status_of(lambda: stub.Generate(chat("hi", max_new_tokens=2), timeout=10, metadata=wrong))
            assert code == grpc.StatusCode.UNAUTHENTICATED
            right = [("authorization", f"Bearer {token}")]
            assert stub.Generate(chat("hi", max_new_tokens=2), timeout=10, metadata=right).usage.completion_tokens
            pieces = list(
                stub.GenerateStream(
                    S.GenerateStreamRequest(prompt="a b", generation=S.GenerationConfig(max_new_tokens=2)),
                    timeout=10,
                    metadata=right,
                )
            )
            assert pieces[-1].usage.completion_tokens > 0
            # Health checks need no token, so an orchestrator's probe works.
            health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
        # The TLS port refuses plaintext.
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as plain:
            code, _ = status_of(
                lambda: serve_pb2_grpc.InferenceServiceStub(plain).Generate(chat("hi"), timeout=5, metadata=right)
            )
            assert code == grpc.StatusCode.UNAVAILABLE
    finally:
        running.stop(grace=None)


def test_cli_server_under_64_concurrent_clients(model_dir: Path, tmp_path: Path) -> None:
    """64 clients x 200 calls against `llmft serve grpc`: every call answered or refused with a deadline as asked,
    no other error, server memory flat, and SIGTERM drains and exits 0."""
    clients, calls = 64, 200
    process = subprocess.Popen(
        [sys.executable, "-m", "llmft.serve", "grpc", "--model", str(model_dir), "--port", "0", "--max-batch", "32",
         "--max-queue", "64"],
        stdout=subprocess.PIPE, stderr=(tmp_path / "server.log").open("w"), text=True,
        # One torch thread: on a 2-core CI box running other tests, spinning OpenMP workers only slow everyone.
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        port = int(re.search(r"listening on 127\.0\.0\.1:(\d+)", line).group(1))  # type: ignore[union-attr]
        outcomes: Counter[str] = Counter()
        lateness: list[float] = []
        lock = threading.Lock()
        rss: list[float] = []
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = serve_pb2_grpc.InferenceServiceStub(ch)
            stub.Generate(chat("warm up", max_new_tokens=4), timeout=60)
            rss.append(rss_mib(process.pid))

            def client(number: int) -> None:
                for call in range(calls):
                    # Every 10th call has a deadline too short to finish: it must end on time, not hang.
                    tight = call % 10 == number % 10
                    timeout = 0.02 if tight else 60.0
                    started = time.monotonic()
                    try:
                        stub.Generate(chat(f"client {number} call {call}", max_new_tokens=2), timeout=timeout)
                        outcome = "ok"
                    except grpc.RpcError as error:
                        outcome = error.code().name  # type: ignore[attr-defined]
                    with lock:
                        outcomes[("tight " if tight else "") + outcome] += 1
                        if tight:
                            lateness.append(time.monotonic() - started - timeout)
                    if call % 50 == 0 and number == 0:
                        rss.append(rss_mib(process.pid))

            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(client, range(clients)))
            rss.append(rss_mib(process.pid))
        loose = clients * calls * 9 // 10
        assert outcomes["ok"] == loose, outcomes
        assert outcomes["tight ok"] + outcomes["tight DEADLINE_EXCEEDED"] == clients * calls - loose, outcomes
        assert max(lateness) < 2.0  # a tight call came back within its deadline plus scheduling noise
        assert max(rss) - rss[0] < 300, rss  # MiB: no growth with the number of calls served
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        assert "shutting down" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
