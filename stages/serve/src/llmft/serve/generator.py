"""A loaded model that answers GenerateRequests: chat messages through the model's chat template (or a raw prompt),
sampling settings from the request over the model's generation_config, stop strings, and streaming of the answer as
it is decoded. One generation at a time per model (a lock), so concurrent gRPC calls queue instead of thrashing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmft.core.models import load_tokenizer, model_family
from llmft.core.training import model_fingerprint, read_artifact
from llmft.proto.serve.v1 import serve_pb2

S = serve_pb2
ROLES = {"system", "user", "assistant"}
DEFAULT_MAX_NEW_TOKENS = 128
MAX_NEW_TOKENS_LIMIT = 4096


class RequestError(ValueError):
    """A request that cannot be answered; the message names the field."""


@dataclass
class Answer:
    text: str
    finish_reason: S.FinishReason
    prompt_tokens: int
    completion_tokens: int


def load_model(model_dir: Path) -> Any:
    """A causal LM from a folder holding merged weights or a peft adapter (whose base is loaded first)."""
    import torch

    model_dir = Path(model_dir)
    if (model_dir / "adapter_config.json").is_file():
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return model.eval()


def check_request(request: Any) -> None:
    if bool(request.messages) == bool(request.prompt):
        raise RequestError("messages, prompt: give exactly one of them")
    for position, message in enumerate(request.messages):
        if message.role not in ROLES:
            raise RequestError(f"messages[{position}].role: {message.role!r} is not one of {sorted(ROLES)}")
        if not message.content.strip():
            raise RequestError(f"messages[{position}].content: empty")
    g = request.generation
    if g.max_new_tokens > MAX_NEW_TOKENS_LIMIT:
        raise RequestError(f"generation.max_new_tokens: {g.max_new_tokens} is over the limit {MAX_NEW_TOKENS_LIMIT}")
    if g.temperature < 0:
        raise RequestError(f"generation.temperature: must be >= 0, got {g.temperature}")
    if not 0 <= g.top_p <= 1:
        raise RequestError(f"generation.top_p: must be in [0, 1], got {g.top_p}")


class Generator:
    def __init__(self, model_dir: Path) -> None:
        self.model_dir = Path(model_dir)
        self.tokenizer = load_tokenizer(self.model_dir)
        self.model = load_model(self.model_dir)
        artifact = read_artifact(self.model_dir)
        self.fingerprint = model_fingerprint(self.model_dir)
        self.base_model = artifact.base_model if artifact else str(self.model_dir)
        self._lock = threading.Lock()

    def info(self) -> S.GetModelInfoResponse:
        config = self.model.config
        return S.GetModelInfoResponse(
            model_fingerprint=self.fingerprint,
            base_model=self.base_model,
            model_family=model_family(config),
            max_positions=int(getattr(config, "max_position_embeddings", 0) or 0),
            has_chat_template=bool(getattr(self.tokenizer, "chat_template", None)),
        )

    def prompt_ids(self, request: Any) -> list[int]:
        check_request(request)
        if request.prompt:
            return list(self.tokenizer(request.prompt, add_special_tokens=False)["input_ids"])
        if not getattr(self.tokenizer, "chat_template", None):
            raise RequestError("messages: this model's tokenizer has no chat template; send a raw prompt")
        from llmft.core.generation import chat_prompt_ids

        return chat_prompt_ids(self.tokenizer, [{"role": m.role, "content": m.content} for m in request.messages])

    def _generate_kwargs(self, generation: Any, prompt_length: int) -> dict[str, Any]:
        max_positions = int(getattr(self.model.config, "max_position_embeddings", 0) or 0)
        max_new = generation.max_new_tokens or DEFAULT_MAX_NEW_TOKENS
        if max_positions and prompt_length >= max_positions:
            raise RequestError(f"prompt: {prompt_length} tokens leave no room in the model's {max_positions} positions")
        if max_positions:
            max_new = min(max_new, max_positions - prompt_length)
        kwargs: dict[str, Any] = {"max_new_tokens": max_new, "pad_token_id": self.tokenizer.pad_token_id}
        if generation.temperature > 0:
            kwargs.update(do_sample=True, temperature=generation.temperature)
            if generation.top_p:
                kwargs["top_p"] = generation.top_p
            if generation.top_k:
                kwargs["top_k"] = generation.top_k
        else:
            kwargs["do_sample"] = False
        if generation.repetition_penalty:
            kwargs["repetition_penalty"] = generation.repetition_penalty
        return kwargs

    def _seed(self, generation: Any) -> None:
        import torch

        if generation.temperature > 0:
            torch.manual_seed(int(generation.seed))

    def generate(self, request: Any) -> S.GenerateResponse:
        answer = self.answer(request)
        return S.GenerateResponse(
            text=answer.text,
            finish_reason=answer.finish_reason,
            usage=S.Usage(prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens),
            model_fingerprint=self.fingerprint,
        )

    def answer(self, request: Any) -> Answer:
        import torch

        ids = self.prompt_ids(request)
        kwargs = self._generate_kwargs(request.generation, len(ids))
        with self._lock, torch.no_grad():
            self._seed(request.generation)
            input_ids = torch.tensor([ids])
            output = self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kwargs)
        new = output[0, len(ids) :].tolist()
        return self._finish(new, request.generation, kwargs["max_new_tokens"], len(ids))

    def _finish(self, new: list[int], generation: Any, max_new: int, prompt_tokens: int) -> Answer:
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        ended = bool(new) and new[-1] in eos_ids
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        reason = S.FINISH_REASON_STOP if ended or len(new) < max_new else S.FINISH_REASON_LENGTH
        cut = _cut_at_stop(text, list(generation.stop))
        if cut is not None:
            text, reason = cut, S.FINISH_REASON_STOP
        return Answer(text, reason, prompt_tokens, len(new))

    def stream(self, request: Any) -> Iterator[S.GenerateStreamResponse]:
        """Yields text pieces as they are decoded; the last message carries finish_reason and usage."""
        import torch
        from transformers import TextIteratorStreamer

        ids = self.prompt_ids(request)
        kwargs = self._generate_kwargs(request.generation, len(ids))
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                with torch.no_grad():
                    self._seed(request.generation)
                    input_ids = torch.tensor([ids])
                    result["output"] = self.model.generate(
                        input_ids=input_ids, attention_mask=torch.ones_like(input_ids), streamer=streamer, **kwargs
                    )
            except BaseException as error:  # surfaced to the caller after the stream ends
                result["error"] = error
                streamer.end()

        stops = list(request.generation.stop)
        with self._lock:
            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            sent = ""
            stopped = False
            for piece in streamer:
                if stopped:
                    continue
                candidate = sent + piece
                cut = _cut_at_stop(candidate, stops)
                if cut is not None:
                    if cut[len(sent) :]:
                        yield S.GenerateStreamResponse(text_delta=cut[len(sent) :])
                    sent, stopped = cut, True
                    continue
                # Hold back a tail that could be the start of a stop string.
                safe = len(candidate) - _partial_stop(candidate, stops)
                if safe > len(sent):
                    yield S.GenerateStreamResponse(text_delta=candidate[len(sent) : safe])
                    sent = candidate[:safe]
            worker.join()
        if "error" in result:
            raise result["error"]
        new = result["output"][0, len(ids) :].tolist()
        final = self._finish(new, request.generation, kwargs["max_new_tokens"], len(ids))
        if len(final.text) > len(sent):
            yield S.GenerateStreamResponse(text_delta=final.text[len(sent) :])
        yield S.GenerateStreamResponse(
            finish_reason=final.finish_reason,
            usage=S.Usage(prompt_tokens=final.prompt_tokens, completion_tokens=final.completion_tokens),
        )


def _cut_at_stop(text: str, stops: list[str]) -> str | None:
    positions = [text.find(s) for s in stops if s and s in text]
    return text[: min(positions)] if positions else None


def _partial_stop(text: str, stops: list[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of a stop string."""
    longest = 0
    for stop in stops:
        for n in range(1, len(stop)):
            if text.endswith(stop[:n]):
                longest = max(longest, n)
    return longest
