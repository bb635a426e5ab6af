from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from llmft.core.models import resolve_model_dir
from llmft.proto.serve.v1 import serve_pb2 as S
from llmft.proto.serve.v1 import serve_pb2_grpc
from llmft.serve.__main__ import main
from llmft.serve.batch import run_batch, shard
from llmft.serve.generator import Generator, RequestError
from llmft.serve.server import SERVICE_NAME, build_server
from llmft.testing import write_prompt_dataset


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import os

    os.environ["LLMFT_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    return resolve_model_dir("llmft/tiny-llama").directory


@pytest.fixture(scope="module")
def generator(model_dir: Path) -> Generator:
    return Generator(model_dir)


def chat(text: str, **generation: object) -> S.GenerateRequest:
    return S.GenerateRequest(
        messages=[S.ChatMessage(role="user", content=text)],
        generation=S.GenerationConfig(**generation),  # type: ignore[arg-type]
    )


def test_greedy_answers_are_reproducible_and_length_limited(generator: Generator) -> None:
    first = generator.generate(chat("What is Flyte?", max_new_tokens=12))
    second = generator.generate(chat("What is Flyte?", max_new_tokens=12))
    assert first.text == second.text
    assert first.usage.completion_tokens <= 12
    assert first.usage.prompt_tokens > 5
    # The same prompt with room to spare says whether 12 tokens cut the answer short.
    longer = generator.generate(chat("What is Flyte?", max_new_tokens=200))
    assert longer.text.startswith(first.text)
    expected = S.FINISH_REASON_LENGTH if longer.usage.completion_tokens > 12 else S.FINISH_REASON_STOP
    assert first.finish_reason == expected
    assert first.model_fingerprint == generator.fingerprint


def test_seeded_sampling_is_reproducible(generator: Generator) -> None:
    one = generator.generate(chat("Hello", max_new_tokens=10, temperature=1.0, seed=7))
    two = generator.generate(chat("Hello", max_new_tokens=10, temperature=1.0, seed=7))
    assert one.text == two.text


def test_stream_concatenates_to_the_unary_answer(generator: Generator) -> None:
    unary = generator.generate(chat("Tell me about tasks", max_new_tokens=16))
    pieces = list(generator.stream(chat("Tell me about tasks", max_new_tokens=16)))
    assert "".join(p.text_delta for p in pieces) == unary.text
    assert pieces[-1].finish_reason == unary.finish_reason
    assert pieces[-1].usage == unary.usage


def test_stop_strings_end_the_answer(generator: Generator) -> None:
    full = generator.generate(chat("x", max_new_tokens=20)).text
    assert len(full) > 3
    stop = full[2:4]
    cut = generator.generate(chat("x", max_new_tokens=20, stop=[stop]))
    assert cut.text == full[: full.find(stop)]
    assert cut.finish_reason == S.FINISH_REASON_STOP
    streamed = "".join(p.text_delta for p in generator.stream(chat("x", max_new_tokens=20, stop=[stop])))
    assert streamed == cut.text


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (S.GenerateRequest(), "messages, prompt"),
        (S.GenerateRequest(prompt="a", messages=[S.ChatMessage(role="user", content="b")]), "messages, prompt"),
        (S.GenerateRequest(messages=[S.ChatMessage(role="robot", content="b")]), r"messages\[0\].role"),
        (S.GenerateRequest(messages=[S.ChatMessage(role="user", content=" ")]), r"messages\[0\].content"),
        (S.GenerateRequest(prompt="a", generation=S.GenerationConfig(top_p=2)), "generation.top_p"),
    ],
)
def test_bad_requests_name_the_field(generator: Generator, request_: S.GenerateRequest, field: str) -> None:
    with pytest.raises(RequestError, match=field):
        generator.generate(request_)


@pytest.fixture(scope="module")
def channel(model_dir: Path) -> Iterator[grpc.Channel]:
    server, port = build_server(model_dir)
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        yield ch
    server.stop(grace=None)


def test_grpc_health_unary_streaming_and_errors(channel: grpc.Channel, generator: Generator) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE_NAME):
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    stub = serve_pb2_grpc.InferenceServiceStub(channel)
    response = stub.Generate(chat("What is Flyte?", max_new_tokens=8), timeout=30)
    assert response.text == generator.generate(chat("What is Flyte?", max_new_tokens=8)).text
    stream = list(
        stub.GenerateStream(
            S.GenerateStreamRequest(prompt="def main(", generation=S.GenerationConfig(max_new_tokens=8)), timeout=30
        )
    )
    assert stream[-1].usage.completion_tokens > 0
    info = stub.GetModelInfo(S.GetModelInfoRequest(), timeout=10)
    assert info.model_family == "llama" and info.has_chat_template and info.max_positions == 1024
    with pytest.raises(grpc.RpcError) as error:
        stub.Generate(S.GenerateRequest(), timeout=10)
    call: Any = error.value  # a grpc.RpcError that is also a grpc.Call
    assert call.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "messages, prompt" in call.details()


def test_shards_cover_every_prompt_once(tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame({"id": [str(i) for i in range(10)], "prompt": ["p"] * 10})
    parts = shard(frame, 3)
    assert [len(p) for p in parts] == [4, 3, 3]
    assert [i for p in parts for i in p["id"]] == list(frame["id"])
    assert len(shard(frame.iloc[:2], 5)) == 2


def test_batch_inference_answers_every_prompt(model_dir: Path, tmp_path: Path) -> None:
    data = write_prompt_dataset(tmp_path / "prompts", rows=7)
    request = S.BatchInferenceRequest(shards=3, batch_size=2, generation=S.GenerationConfig(max_new_tokens=6))
    table, result = run_batch(model_dir, data, request)
    assert len(table) == 7 == result.prompts
    assert result.completion_tokens == table["completion_tokens"].sum() > 0
    generator = Generator(model_dir)
    single = generator.generate(chat(table["prompt"][0], max_new_tokens=6))
    assert table["answer"][0] == single.text  # left padding does not change a greedy answer
    out = tmp_path / "answers.parquet"
    assert (
        main(
            [
                "batch",
                "--model",
                str(model_dir),
                "--data",
                str(data),
                "--out",
                str(out),
                "--shards",
                "2",
                "--max-new-tokens",
                "4",
            ]
        )
        == 0
    )
    assert out.is_file()
    assert main(["batch", "--model", str(model_dir), "--data", str(data), "--out", str(out)]) == 2
