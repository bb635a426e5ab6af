"""A loaded model that answers GenerateRequests: chat messages through the model's chat template (or a raw prompt),
sampling settings from the request over the model's generation_config, stop strings, and streaming of the answer as
it is decoded. Every request is checked field by field before it reaches the model, then runs on the model's
continuous-batching engine (llmft.serve.engine), so concurrent callers share forward passes."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmft.core.models import load_frozen_model, load_tokenizer, model_family
from llmft.core.training import model_fingerprint, read_artifact
from llmft.proto.serve.v1 import serve_pb2
from llmft.serve import engine as E
from llmft.serve.detokenize import IncrementalText, first_stop

S = serve_pb2
ROLES = {"system", "user", "assistant"}
DEFAULT_MAX_NEW_TOKENS = 128
MAX_NEW_TOKENS_LIMIT = 4096
MAX_TEMPERATURE = 10.0
MAX_REPETITION_PENALTY = 10.0
MAX_STOPS, MAX_STOP_CHARS = 16, 256
FINISH = {E.STOP: S.FINISH_REASON_STOP, E.LENGTH: S.FINISH_REASON_LENGTH}


class RequestError(ValueError):
    """A request that cannot be answered; the message names the field."""


class Interrupted(RuntimeError):
    """Generation ended before the answer did: the caller cancelled or the deadline passed (`reason`)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"generation {reason}")
        self.reason = reason


@dataclass
class Answer:
    text: str
    finish_reason: S.FinishReason
    prompt_tokens: int
    completion_tokens: int
    seconds: float


def _finite(value: float, name: str, low: float, high: float) -> None:
    if not math.isfinite(value) or not low <= value <= high:
        raise RequestError(f"{name}: must be a number in [{low:g}, {high:g}], got {value}")


def check_generation(g: S.GenerationConfig, prefix: str = "generation") -> None:
    """Every sampling field in range; zero means the default."""
    if g.max_new_tokens > MAX_NEW_TOKENS_LIMIT:
        raise RequestError(f"{prefix}.max_new_tokens: {g.max_new_tokens} is over the limit {MAX_NEW_TOKENS_LIMIT}")
    _finite(g.temperature, f"{prefix}.temperature", 0.0, MAX_TEMPERATURE)
    _finite(g.top_p, f"{prefix}.top_p", 0.0, 1.0)
    if g.repetition_penalty != 0:
        _finite(g.repetition_penalty, f"{prefix}.repetition_penalty", 1e-6, MAX_REPETITION_PENALTY)
    if len(g.stop) > MAX_STOPS:
        raise RequestError(f"{prefix}.stop: {len(g.stop)} stop strings, at most {MAX_STOPS}")
    for i, stop in enumerate(g.stop):
        if not stop or len(stop) > MAX_STOP_CHARS:
            raise RequestError(f"{prefix}.stop[{i}]: must have 1 to {MAX_STOP_CHARS} characters")


def check_request(request: Any) -> None:
    """A GenerateRequest or GenerateStreamRequest: the error names the first bad field."""
    if bool(request.messages) == bool(request.prompt):
        raise RequestError("messages, prompt: give exactly one of them")
    if request.prompt and not request.prompt.strip():
        raise RequestError("prompt: whitespace only")
    for position, message in enumerate(request.messages):
        if message.role not in ROLES:
            raise RequestError(f"messages[{position}].role: {message.role!r} is not one of {sorted(ROLES)}")
        if not message.content.strip():
            raise RequestError(f"messages[{position}].content: empty or whitespace only")
    check_generation(request.generation)


def answer_text(tokenizer: Any, tokens: list[int], stops: list[str]) -> tuple[str, bool]:
    """The decoded answer cut before the first stop string; whether a stop string cut it."""
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    positions = [text.find(s) for s in stops if s in text]
    return (text[: min(positions)], True) if positions else (text, False)


def _partial_stop(text: str, stops: list[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of a stop string."""
    longest = 0
    for stop in stops:
        for n in range(1, len(stop)):
            if text.endswith(stop[:n]):
                longest = max(longest, n)
    return longest


class Generator:
    """A model folder behind a continuous-batching engine. `max_batch` sequences decode together; up to `max_queue`
    more wait for a slot, and beyond that `E.EngineBusy` is raised."""

    def __init__(self, model_dir: Path, max_batch: int = 16, max_queue: int = 64, max_batch_tokens: int = 0) -> None:
        self.model_dir = Path(model_dir)
        self.tokenizer = load_tokenizer(self.model_dir)
        self.model = load_frozen_model(self.model_dir)
        artifact = read_artifact(self.model_dir)
        self.fingerprint = model_fingerprint(self.model_dir)
        self.base_model = artifact.base_model if artifact else str(self.model_dir)
        config = self.model.config
        self.max_positions = int(getattr(config, "max_position_embeddings", 0) or 0)
        eos = self.model.generation_config.eos_token_id
        eos_ids = {int(i) for i in (eos if isinstance(eos, list) else [eos]) if i is not None}
        if self.tokenizer.eos_token_id is not None:
            eos_ids.add(int(self.tokenizer.eos_token_id))
        self.engine = E.Engine(
            self.model,
            eos_token_ids=eos_ids,
            pad_token_id=int(self.tokenizer.pad_token_id),
            max_batch=max_batch,
            max_queue=max_queue,
            decode=lambda tokens: self.tokenizer.decode(tokens, skip_special_tokens=True),
            max_positions=self.max_positions,
            max_batch_tokens=max_batch_tokens,
        )

    def close(self) -> None:
        self.engine.close()

    def info(self) -> S.GetModelInfoResponse:
        return S.GetModelInfoResponse(
            model_fingerprint=self.fingerprint,
            base_model=self.base_model,
            model_family=model_family(self.model.config),
            max_positions=self.max_positions,
            has_chat_template=bool(getattr(self.tokenizer, "chat_template", None)),
        )

    def prompt_ids(self, request: Any) -> list[int]:
        check_request(request)
        if request.prompt:
            ids = list(self.tokenizer(request.prompt, add_special_tokens=False)["input_ids"])
        elif not getattr(self.tokenizer, "chat_template", None):
            raise RequestError("messages: this model's tokenizer has no chat template; send a raw prompt")
        else:
            from llmft.core.generation import chat_prompt_ids

            ids = chat_prompt_ids(self.tokenizer, [{"role": m.role, "content": m.content} for m in request.messages])
        field = "prompt" if request.prompt else "messages"
        if not ids:
            raise RequestError(f"{field}: encodes to no tokens")
        if self.max_positions and len(ids) >= self.max_positions:
            raise RequestError(
                f"{field}: {len(ids)} tokens leave no room in the model's {self.max_positions} positions"
            )
        return ids

    def sampling(self, generation: S.GenerationConfig) -> E.Sampling:
        """The request's settings over the model's generation_config defaults (the request is already checked)."""
        defaults = self.model.generation_config
        temperature = generation.temperature
        return E.Sampling(
            max_new_tokens=generation.max_new_tokens or DEFAULT_MAX_NEW_TOKENS,
            temperature=temperature,
            top_p=generation.top_p or float(getattr(defaults, "top_p", None) or 1.0),
            top_k=generation.top_k,
            repetition_penalty=generation.repetition_penalty
            or float(getattr(defaults, "repetition_penalty", None) or 1.0),
            seed=generation.seed,
            stop=tuple(generation.stop),
        )

    def start(self, request: Any, deadline: float | None = None) -> E.Handle:
        """Checks the request and queues it; `deadline` is a time.monotonic() value."""
        try:
            return self.engine.submit(self.prompt_ids(request), self.sampling(request.generation), deadline)
        except E.RequestTooLarge as error:
            raise RequestError(str(error)) from error

    def finish(self, handle: E.Handle, tokens: list[int], stops: list[str]) -> Answer:
        if handle.reason not in FINISH:
            raise Interrupted(handle.reason)
        text, cut = answer_text(self.tokenizer, tokens, stops)
        reason = S.FINISH_REASON_STOP if cut else FINISH[handle.reason]
        return Answer(text, reason, handle.prompt_tokens, len(tokens), handle.generation_seconds)

    def collect(self, handle: E.Handle, request: Any) -> Answer:
        """The whole answer of a started request; leaving early (an exception, a closed caller) cancels it."""
        try:
            tokens = list(handle)
        finally:
            handle.cancel()
        return self.finish(handle, tokens, list(request.generation.stop))

    def answer(self, request: Any, deadline: float | None = None) -> Answer:
        return self.collect(self.start(request, deadline), request)

    def generate(self, request: Any, deadline: float | None = None) -> S.GenerateResponse:
        return self.response(self.answer(request, deadline))

    def response(self, answer: Answer) -> S.GenerateResponse:
        return S.GenerateResponse(
            text=answer.text,
            finish_reason=answer.finish_reason,
            usage=S.Usage(prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens),
            model_fingerprint=self.fingerprint,
        )

    def stream(self, request: Any, deadline: float | None = None) -> Iterator[S.GenerateStreamResponse]:
        """Yields text pieces as they are decoded; the last message carries finish_reason and usage."""
        return self.pieces(self.start(request, deadline), request)

    def pieces(self, handle: E.Handle, request: Any) -> Iterator[S.GenerateStreamResponse]:
        """The pieces of a started request. Closing the iterator early cancels the generation."""
        stops = list(request.generation.stop)
        tokens: list[int] = []
        sent = ""
        # The text grows by decoding a window of tokens at a time (llmft.serve.detokenize), not the whole answer at
        # every token; an incomplete character waits for the token that completes it.
        text = IncrementalText(lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True))
        cut = False
        try:
            for token in handle:
                tokens.append(token)
                added = text.add(token)
                if cut or not added:
                    continue
                shown = text.text
                at = first_stop(shown, stops, len(added))
                cut = at >= 0
                shown = shown[:at] if cut else shown
                # Hold back a tail that could be the start of a stop string.
                safe = len(shown) if cut else len(shown) - _partial_stop(shown, stops)
                if safe > len(sent):
                    yield S.GenerateStreamResponse(text_delta=shown[len(sent) : safe])
                    sent = shown[:safe]
        finally:
            handle.cancel()
        final = self.finish(handle, tokens, stops)
        if final.text.startswith(sent) and len(final.text) > len(sent):
            yield S.GenerateStreamResponse(text_delta=final.text[len(sent) :])
        yield S.GenerateStreamResponse(
            finish_reason=final.finish_reason,
            usage=S.Usage(prompt_tokens=final.prompt_tokens, completion_tokens=final.completion_tokens),
        )
