"""The Generator and its continuous-batching engine, in process: answers, sampling, streaming, stop strings, request
checks, batching of concurrent requests, cancellation, deadlines and the bounded queue."""

import math
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from llmft.proto.serve.v1 import serve_pb2 as S
from llmft.serve import engine as E
from llmft.serve.generator import Generator, RequestError


@pytest.fixture(scope="module")
def generator(model_dir: Path) -> Iterator[Generator]:
    generator = Generator(model_dir, max_batch=8, max_queue=64)
    yield generator
    generator.close()


def chat(text: str, **generation: object) -> S.GenerateRequest:
    return S.GenerateRequest(
        messages=[S.ChatMessage(role="user", content=text)],
        generation=S.GenerationConfig(**generation),  # type: ignore[arg-type]
    )


def reference_greedy(generator: Generator, request: S.GenerateRequest) -> list[int]:
    """transformers' own generate on the prompt alone: what continuous batching must reproduce."""
    import torch

    ids = torch.tensor([generator.prompt_ids(request)])
    output = generator.model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=request.generation.max_new_tokens,
        do_sample=False,
        pad_token_id=generator.tokenizer.pad_token_id,
    )
    return list(output[0, ids.shape[1] :].tolist())


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


def test_sampling_follows_seed_and_temperature(generator: Generator) -> None:
    def sample(seed: int, temperature: float) -> str:
        return generator.generate(chat("Hello", max_new_tokens=16, temperature=temperature, seed=seed)).text

    greedy = generator.generate(chat("Hello", max_new_tokens=16)).text
    # Same seed, same answer; other seeds, other answers (ignoring the seed would make these all equal).
    assert sample(7, 1.5) == sample(7, 1.5)
    assert len({sample(seed, 1.5) for seed in (1, 2, 3, 4)}) >= 3
    # Temperature matters: near zero it is greedy, high it is not (ignoring it would give the same text for both).
    assert sample(7, 1e-4) == greedy
    assert sample(7, 1.5) != greedy


def test_concurrent_requests_share_forward_passes_and_match_transformers_generate(generator: Generator) -> None:
    requests = [chat(f"Question {i}: " + "why " * (i % 5), max_new_tokens=6 + i) for i in range(12)]
    expected = [reference_greedy(generator, r) for r in requests]
    before = generator.engine.stats()
    results: list[list[int]] = [[] for _ in requests]

    def ask(i: int) -> None:
        time.sleep(0.005 * i)  # requests join a running batch at different steps
        results[i] = list(generator.start(requests[i]))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = generator.engine.stats()
    assert results == expected
    # Shared passes: fewer decoding steps than decoded rows, and batches wider than one.
    assert after.rows_decoded - before.rows_decoded > 2 * (after.steps - before.steps)
    assert after.largest_batch > 1


def test_stream_concatenates_to_the_unary_answer(generator: Generator) -> None:
    unary = generator.generate(chat("Tell me about tasks", max_new_tokens=16))
    pieces = list(generator.stream(chat("Tell me about tasks", max_new_tokens=16)))
    assert len(pieces) > 2
    assert "".join(p.text_delta for p in pieces) == unary.text
    assert pieces[-1].finish_reason == unary.finish_reason
    assert pieces[-1].usage == unary.usage


def test_stop_strings_end_the_answer(generator: Generator) -> None:
    full = generator.generate(chat("x", max_new_tokens=20))
    assert len(full.text) > 3
    stop = full.text[2:4]
    cut = generator.generate(chat("x", max_new_tokens=20, stop=[stop]))
    assert cut.text == full.text[: full.text.find(stop)]
    assert cut.finish_reason == S.FINISH_REASON_STOP
    assert cut.usage.completion_tokens < full.usage.completion_tokens  # the engine stopped decoding there
    streamed = "".join(p.text_delta for p in generator.stream(chat("x", max_new_tokens=20, stop=[stop])))
    assert streamed == cut.text


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (S.GenerateRequest(), "messages, prompt"),
        (S.GenerateRequest(prompt="a", messages=[S.ChatMessage(role="user", content="b")]), "messages, prompt"),
        (S.GenerateRequest(prompt=" \n\t "), "prompt: whitespace"),
        (S.GenerateRequest(messages=[S.ChatMessage(role="robot", content="b")]), r"messages\[0\].role"),
        (S.GenerateRequest(messages=[S.ChatMessage(role="user", content=" ")]), r"messages\[0\].content"),
        (S.GenerateRequest(prompt="a", generation=S.GenerationConfig(top_p=2)), "generation.top_p"),
        (S.GenerateRequest(prompt="a", generation=S.GenerationConfig(top_p=math.nan)), "generation.top_p"),
        (S.GenerateRequest(prompt="a", generation=S.GenerationConfig(temperature=math.nan)), "generation.temperature"),
        (S.GenerateRequest(prompt="a", generation=S.GenerationConfig(temperature=math.inf)), "generation.temperature"),
        (S.GenerateRequest(prompt="a", generation=S.GenerationConfig(temperature=-1)), "generation.temperature"),
        (
            S.GenerateRequest(prompt="a", generation=S.GenerationConfig(repetition_penalty=-0.5)),
            "generation.repetition_penalty",
        ),
        (
            S.GenerateRequest(prompt="a", generation=S.GenerationConfig(repetition_penalty=math.nan)),
            "generation.repetition_penalty",
        ),
        (S.GenerateRequest(prompt="a", generation=S.GenerationConfig(max_new_tokens=10**6)), "max_new_tokens"),
        (S.GenerateRequest(prompt="a", generation=S.GenerationConfig(stop=["ok", ""])), r"generation.stop\[1\]"),
        (S.GenerateRequest(prompt="word " * 1200), "prompt: .* no room"),
    ],
)
def test_bad_requests_name_the_field(generator: Generator, request_: S.GenerateRequest, field: str) -> None:
    with pytest.raises(RequestError, match=field):
        generator.generate(request_)


def test_repetition_penalty_changes_the_answer(generator: Generator) -> None:
    plain = generator.generate(chat("count count count", max_new_tokens=24))
    penalised = generator.generate(chat("count count count", max_new_tokens=24, repetition_penalty=5.0))
    assert penalised.text != plain.text


@pytest.fixture
def one_slot(model_dir: Path) -> Iterator[Generator]:
    generator = Generator(model_dir, max_batch=1, max_queue=1)
    yield generator
    generator.close()


def test_cancel_stops_within_one_step_and_frees_the_slot(one_slot: Generator) -> None:
    long = one_slot.start(chat("go on", max_new_tokens=900))
    tokens = iter(long)
    for _ in range(3):
        next(tokens)
    # The engine runs ahead of the reader: what it decoded before the cancel is still delivered.
    long.cancel()
    decoded_at_cancel = long.decoded_tokens  # read after the cancel, so a step the GIL let through is counted
    rest = list(tokens)
    assert long.decoded_tokens <= decoded_at_cancel + 1  # at most the step already under way
    assert 3 + len(rest) == long.decoded_tokens  # every decoded token reaches the reader
    assert long.reason == E.CANCELLED
    # The only slot is free again: a new request is answered at once.
    started = time.monotonic()
    assert one_slot.generate(chat("hi", max_new_tokens=4)).usage.completion_tokens > 0
    assert time.monotonic() - started < 5
    assert one_slot.engine.stats().finished[E.CANCELLED] == 1


def test_deadline_ends_generation_and_queued_requests(one_slot: Generator) -> None:
    request = chat("go on", max_new_tokens=900)
    started = time.monotonic()
    handle = one_slot.start(request, deadline=started + 0.2)
    queued = one_slot.start(request, deadline=time.monotonic() + 0.1)  # waits behind it for the one slot
    tokens = list(handle)
    ended = time.monotonic()
    assert handle.reason == E.DEADLINE and 0 < len(tokens) < 900
    assert list(queued) == [] and queued.reason == E.DEADLINE
    assert ended - started < 0.2 + 1.0  # the deadline plus one step, with room for a slow machine
    assert one_slot.engine.stats().running == 0


def test_a_full_queue_refuses_at_once(one_slot: Generator) -> None:
    running = one_slot.start(chat("go on", max_new_tokens=900))
    waiting = one_slot.start(chat("go on", max_new_tokens=900))
    with pytest.raises(E.EngineBusy, match="queue"):
        one_slot.start(chat("one more", max_new_tokens=4))
    running.cancel()
    waiting.cancel()
    list(running), list(waiting)
    assert one_slot.generate(chat("now", max_new_tokens=2)).usage.completion_tokens > 0


def test_a_failure_as_a_request_joins_the_batch_ends_it_and_the_batch_and_the_engine_goes_on(
    generator: Generator,
) -> None:
    engine = generator.engine
    before = engine.stats().finished.get(E.ERROR, 0)
    running = generator.start(chat("go on", max_new_tokens=400))
    tokens = iter(running)
    next(tokens)  # decoding: the next request joins a running batch

    def broken(*args: object) -> None:
        raise RuntimeError("the caches could not be merged")

    def outcome(handle: Iterable[int]) -> BaseException | None:
        """How reading the handle ends, within a minute (a request that never ends is the bug this catches)."""
        ended: list[BaseException | None] = []

        def read() -> None:
            try:
                list(handle)
                ended.append(None)
            except Exception as error:
                ended.append(error)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout=60)
        assert ended, "the request never ended"
        return ended[0]

    engine._merge = broken  # type: ignore[method-assign,assignment]
    try:
        joining = generator.start(chat("join", max_new_tokens=40))
        assert "could not be merged" in str(outcome(joining))  # ends with the error instead of waiting forever
        assert "could not be merged" in str(outcome(tokens))  # the batch it may have half joined fails too
    finally:
        del engine._merge
    assert joining.reason == running.reason == E.ERROR
    assert engine.stats().finished[E.ERROR] == before + 2 and engine.stats().running == 0
    assert engine._in_flight == 0  # no slot leaked: both counted as ended, once each
    assert generator.generate(chat("still here?", max_new_tokens=3)).usage.completion_tokens > 0


def test_the_prefill_asks_the_model_for_the_last_position_only(generator: Generator) -> None:
    assert generator.engine._last_logits_only == {"logits_to_keep": 1}
    calls: list[int] = []
    model = generator.engine.model
    hook = model.register_forward_hook(lambda module, args, kwargs_out: calls.append(kwargs_out.logits.shape[1]))
    try:
        generator.generate(chat("a question with several tokens in its prompt", max_new_tokens=2))
    finally:
        hook.remove()
    assert calls and set(calls) == {1}  # prefill and decode steps alike: one position of logits


def test_incremental_text_equals_the_whole_decode_a_window_at_a_time(generator: Generator) -> None:
    from llmft.serve.detokenize import IncrementalText

    tokenizer = generator.tokenizer
    words = "Größe, naïve café — 東京 🙂🚀 and the rest of a sentence that goes on. " * 3
    ids = tokenizer.encode(words, add_special_tokens=False)
    decoded: list[int] = []

    def decode(tokens: list[int]) -> str:
        decoded.append(len(tokens))
        return str(tokenizer.decode(tokens, skip_special_tokens=True))

    text = IncrementalText(decode)
    deltas = [text.add(token) for token in ids]
    assert text.text == tokenizer.decode(ids, skip_special_tokens=True) and "".join(deltas) == text.text
    assert not any("\ufffd" in d for d in deltas)  # a character split across tokens waits for its last byte
    assert max(decoded) <= 8 and sum(decoded) <= 8 * len(ids)  # windows, not the whole text each time


def test_stop_strings_and_streaming_decode_linearly_not_the_whole_answer_each_token(
    generator: Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[int] = []
    decode = generator.tokenizer.decode

    def counting(tokens: list[int], **kwargs: object) -> str:
        decoded.append(len(tokens))
        return str(decode(tokens, **kwargs))

    monkeypatch.setattr(generator.tokenizer, "decode", counting)
    request = chat("go on", max_new_tokens=300, stop=["\u2603never\u2603"])  # a stop string that never comes
    pieces = list(generator.stream(request))
    tokens = pieces[-1].usage.completion_tokens
    assert tokens == 300
    # The engine's stop check and the stream each decode windows; the final answer is decoded whole once or twice.
    # Decoding the whole answer at every token, as before, is 300 * 301 / 2 = 45,150 tokens for each of the two.
    assert sum(decoded) < 20 * tokens, sum(decoded)


def test_the_token_bound_admits_only_what_fits_in_arrival_order_and_refuses_what_never_can(model_dir: Path) -> None:
    request = chat("the same question for all", max_new_tokens=8)
    probe = Generator(model_dir, max_batch=1, max_queue=0)
    size = len(probe.prompt_ids(request)) + 8
    expected = reference_greedy(probe, request)
    probe.close()
    bounded = Generator(model_dir, max_batch=8, max_queue=16, max_batch_tokens=2 * size)  # two requests fit
    try:
        handles = [bounded.start(request) for _ in range(6)]
        assert [list(h) for h in handles] == [expected] * 6  # all answered, in full
        stats = bounded.engine.stats()
        assert stats.largest_batch == 2  # eight slots, but the tokens of two
        with pytest.raises(RequestError, match=f"exceed the engine's token bound of {2 * size}"):
            bounded.start(chat("the same question for all", max_new_tokens=2 * size))
    finally:
        bounded.close()
