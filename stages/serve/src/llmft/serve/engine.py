"""Continuous batching: one thread owns the model and decodes every admitted sequence together, one token per forward
pass, while requests join and leave between passes.

A request waits in a bounded queue (a full queue refuses it at once) until a slot is free. Admission runs the new
prompts' prefill as one left-padded batch and merges their key/value cache into the running batch. Each decoding step
then feeds every running sequence's last token at once. Between steps the engine drops sequences that finished (an
end token, their token budget, a stop string), were cancelled, or passed their deadline, so a slot is freed within
one step. Sampling is per request: temperature, top-p, top-k, repetition penalty and a seeded generator of its own.

Models whose cache is not a plain per-layer key/value cache (sliding-window layers) cannot have rows merged; for them
the engine admits new sequences only when the batch is empty (dynamic batching)."""

from __future__ import annotations

import collections
import inspect
import logging
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from llmft.serve.detokenize import IncrementalText, first_stop

log = logging.getLogger(__name__)

# Why a sequence ended.
STOP, LENGTH, CANCELLED, DEADLINE, ERROR = "stop", "length", "cancelled", "deadline", "error"


class EngineBusy(RuntimeError):
    """The waiting queue is full; the caller should retry later."""


class RequestTooLarge(ValueError):
    """A request whose prompt and token budget alone exceed the engine's token bound: it could never run."""


class EngineClosed(RuntimeError):
    """The engine was shut down."""


@dataclass(frozen=True)
class Sampling:
    """How one request picks its tokens. temperature 0 is greedy; seed 0 draws a fresh seed."""

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()


@dataclass
class Sequence:
    prompt: list[int]
    sampling: Sampling
    deadline: float | None
    generator: Any
    events: queue.SimpleQueue[tuple[str, Any]] = field(default_factory=queue.SimpleQueue)
    tokens: list[int] = field(default_factory=list)
    cancelled: threading.Event = field(default_factory=threading.Event)
    submitted_at: float = field(default_factory=time.monotonic)
    admitted_at: float = 0.0
    finished_at: float = 0.0
    reason: str = ""
    text: IncrementalText | None = None  # the answer's text as it grows, for stop strings


class Handle:
    """The caller's side of one request: iterate for token ids as they are decoded; `reason` says why it ended."""

    def __init__(self, sequence: Sequence, wake: Callable[[], None]) -> None:
        self._sequence = sequence
        self._wake = wake

    def __iter__(self) -> Iterator[int]:
        while True:
            kind, value = self._sequence.events.get()
            if kind == "token":
                yield value
            elif kind == "error":
                raise value
            else:
                return

    def cancel(self) -> None:
        """Stops generation at the next step and frees the slot; safe to call at any time, also after the end."""
        if not self._sequence.reason:
            self._sequence.cancelled.set()
            self._wake()

    @property
    def reason(self) -> str:
        return self._sequence.reason

    @property
    def prompt_tokens(self) -> int:
        return len(self._sequence.prompt)

    @property
    def decoded_tokens(self) -> int:
        """Tokens the engine has decoded so far; the iterator may not have delivered them all yet."""
        return len(self._sequence.tokens)

    @property
    def queued_seconds(self) -> float:
        s = self._sequence
        return max(0.0, (s.admitted_at or s.finished_at) - s.submitted_at)

    @property
    def generation_seconds(self) -> float:
        s = self._sequence
        return max(0.0, s.finished_at - s.admitted_at) if s.admitted_at else 0.0


@dataclass
class EngineStats:
    waiting: int
    running: int
    finished: dict[str, int]
    steps: int
    largest_batch: int
    rows_decoded: int


class Engine:
    """Continuous batching over one causal LM. `submit` is thread-safe; the model is only touched by the engine's
    own thread."""

    def __init__(
        self,
        model: Any,
        eos_token_ids: set[int],
        pad_token_id: int,
        max_batch: int = 16,
        max_queue: int = 64,
        decode: Callable[[list[int]], str] | None = None,
        max_positions: int = 0,
        max_batch_tokens: int = 0,
    ) -> None:
        import torch

        if max_batch < 1:
            raise ValueError(f"max_batch: must be >= 1, got {max_batch}")
        if max_queue < 0:
            raise ValueError(f"max_queue: must be >= 0, got {max_queue}")
        self.model = model
        self.eos = set(eos_token_ids)
        self.pad = pad_token_id
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.decode = decode
        self.max_positions = max_positions
        # The running batch's cache holds at most this many token positions: each request reserves its prompt and its
        # max_new_tokens when admitted (0: only max_batch bounds it).
        if max_batch_tokens < 0:
            raise ValueError(f"max_batch_tokens: must be >= 0, got {max_batch_tokens}")
        self.max_batch_tokens = max_batch_tokens
        self._device = getattr(model, "device", torch.device("cpu"))
        self._waiting: collections.deque[Sequence] = collections.deque()
        self._lock = threading.Lock()
        self._wake_event = threading.Event()
        self._closed = False
        self._in_flight = 0  # submitted and not yet ended
        # The prefill needs the last position's logits only: models that can skip the others are asked to.
        accepts = inspect.signature(self.model.forward).parameters
        self._last_logits_only = {"logits_to_keep": 1} if "logits_to_keep" in accepts else {}
        # The running batch: rows aligned with the cache's batch dimension.
        self._rows: list[Sequence] = []
        self._cache: Any = None
        self._mask: Any = None  # [rows, cache length], 1 where a real token sits
        self._last: Any = None  # [rows], the sampled token not yet fed to the model
        self._mergeable: bool | None = None
        self._finished: collections.Counter[str] = collections.Counter()
        self._steps = 0
        self._largest_batch = 0
        self._rows_decoded = 0
        self._thread = threading.Thread(target=self._loop, name="llmft-engine", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ caller side

    def submit(self, prompt: list[int], sampling: Sampling, deadline: float | None = None) -> Handle:
        """Queues a request. `deadline` is a time.monotonic() value. Raises EngineBusy when the queue is full."""
        import torch

        if not prompt:
            raise ValueError("prompt: no tokens")
        if self.max_batch_tokens and len(prompt) + sampling.max_new_tokens > self.max_batch_tokens:
            raise RequestTooLarge(
                f"{len(prompt)} prompt tokens + max_new_tokens {sampling.max_new_tokens} exceed the engine's token "
                f"bound of {self.max_batch_tokens}; shorten the prompt or lower max_new_tokens"
            )
        generator = torch.Generator(device="cpu")
        generator.manual_seed(sampling.seed or int.from_bytes(os.urandom(8), "little") >> 1)
        sequence = Sequence(list(prompt), sampling, deadline, generator)
        with self._lock:
            if self._closed:
                raise EngineClosed("the engine is shut down")
            if self._in_flight >= self.max_batch + self.max_queue:
                raise EngineBusy(
                    f"{self._in_flight} requests in flight: {self.max_batch} slots and a queue of "
                    f"{self.max_queue} are full"
                )
            self._in_flight += 1
            self._waiting.append(sequence)
        self._wake_event.set()
        return Handle(sequence, self._wake_event.set)

    def stats(self) -> EngineStats:
        with self._lock:
            return EngineStats(
                waiting=len(self._waiting),
                running=len(self._rows),
                finished=dict(self._finished),
                steps=self._steps,
                largest_batch=self._largest_batch,
                rows_decoded=self._rows_decoded,
            )

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._wake_event.set()
        self._thread.join(timeout=60)

    # ------------------------------------------------------------------ engine thread

    def _loop(self) -> None:
        import torch

        with torch.inference_mode():
            while True:
                with self._lock:
                    closed = self._closed
                if closed:
                    self._fail_everything(EngineClosed("the engine is shut down"))
                    return
                try:
                    self._drop_finished_waiting()
                    self._admit()
                    if self._rows:
                        self._decode_step()
                    else:
                        self._wake_event.wait(timeout=0.5)
                        self._wake_event.clear()
                except Exception as error:  # a failed forward pass fails the running requests, not the server
                    log.exception("generation step failed")
                    self._fail_running(error)

    def _end(self, sequence: Sequence, reason: str, error: BaseException | None = None) -> None:
        if sequence.reason:  # ended already (a failure after it ended must not count it twice)
            return
        sequence.reason = reason
        sequence.finished_at = time.monotonic()
        with self._lock:
            self._finished[reason] += 1
            self._in_flight -= 1
        sequence.events.put(("error", error) if error is not None else ("end", reason))

    def _interrupted(self, sequence: Sequence, now: float) -> str:
        if sequence.cancelled.is_set():
            return CANCELLED
        if sequence.deadline is not None and now >= sequence.deadline:
            return DEADLINE
        return ""

    def _drop_finished_waiting(self) -> None:
        now = time.monotonic()
        with self._lock:
            keep: collections.deque[Sequence] = collections.deque()
            gone: list[Sequence] = []
            for sequence in self._waiting:
                reason = self._interrupted(sequence, now)
                (gone if reason else keep).append(sequence)
            self._waiting = keep
        for sequence in gone:
            self._end(sequence, self._interrupted(sequence, now))

    def _admit(self) -> None:
        import torch
        from transformers import DynamicCache

        free = self.max_batch - len(self._rows)
        if free <= 0 or (self._rows and self._mergeable is False):
            return
        budget = self.max_batch_tokens - sum(self._reserved(s) for s in self._rows) if self.max_batch_tokens else 0
        new: list[Sequence] = []
        with self._lock:
            # In arrival order; the first that does not fit waits for tokens to free up (no overtaking, no starving).
            while self._waiting and len(new) < free:
                if self.max_batch_tokens and self._reserved(self._waiting[0]) > budget:
                    break
                budget -= self._reserved(self._waiting[0])
                new.append(self._waiting.popleft())
        if not new:
            return
        now = time.monotonic()
        for sequence in new:
            sequence.admitted_at = now
        width = max(len(s.prompt) for s in new)
        input_ids = torch.tensor([[self.pad] * (width - len(s.prompt)) + s.prompt for s in new], device=self._device)
        mask = torch.tensor([[0] * (width - len(s.prompt)) + [1] * len(s.prompt) for s in new], device=self._device)
        cache = DynamicCache(config=self.model.config)
        try:
            logits = self.model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                cache=cache,
                use_cache=True,
                **self._last_logits_only,
            ).logits[:, -1, :]
            tokens = self._sample(logits, new)
        except Exception as error:
            log.exception("prefill failed")
            for sequence in new:
                self._end(sequence, ERROR, error)
            return
        try:
            if self._mergeable is None:
                self._mergeable = all(type(layer).__name__ == "DynamicLayer" for layer in cache.layers)
            keep = self._emit(new, tokens)
            if not keep:
                return
            index = torch.tensor(keep, device=self._device)
            cache.batch_select_indices(index)
            new_rows, mask, last = [new[i] for i in keep], mask[index], tokens[index]
            if not self._rows:
                self._rows, self._cache, self._mask, self._last = new_rows, cache, mask, last
            else:
                self._merge(new_rows, cache, mask, last)
            self._largest_batch = max(self._largest_batch, len(self._rows))
        except Exception as error:
            # The new requests end here, whatever step failed; the running batch may be half merged, so the loop
            # fails it too (every request ends once: _end ignores one that already has).
            for sequence in new:
                self._end(sequence, ERROR, error)
            raise

    @staticmethod
    def _reserved(sequence: Sequence) -> int:
        """The cache positions a sequence can come to hold: its prompt and its whole token budget."""
        return len(sequence.prompt) + sequence.sampling.max_new_tokens

    def _merge(self, rows: list[Sequence], cache: Any, mask: Any, last: Any) -> None:
        """Appends rows to the running batch, left-padding whichever cache is shorter."""
        import torch
        import torch.nn.functional as F

        old_len, new_len = self._mask.shape[1], mask.shape[1]
        length = max(old_len, new_len)
        for old_layer, new_layer in zip(self._cache.layers, cache.layers, strict=True):
            old_layer.keys = torch.cat(
                [F.pad(old_layer.keys, (0, 0, length - old_len, 0)), F.pad(new_layer.keys, (0, 0, length - new_len, 0))]
            )
            old_layer.values = torch.cat(
                [
                    F.pad(old_layer.values, (0, 0, length - old_len, 0)),
                    F.pad(new_layer.values, (0, 0, length - new_len, 0)),
                ]
            )
        self._mask = torch.cat([F.pad(self._mask, (length - old_len, 0)), F.pad(mask, (length - new_len, 0))])
        self._last = torch.cat([self._last, last])
        self._rows = self._rows + rows

    def _decode_step(self) -> None:
        import torch

        now = time.monotonic()
        keep = []
        for i, sequence in enumerate(self._rows):
            reason = self._interrupted(sequence, now)
            if reason:
                self._end(sequence, reason)
            else:
                keep.append(i)
        self._keep_rows(keep)
        if not self._rows:
            return
        self._mask = torch.cat([self._mask, torch.ones_like(self._mask[:, :1])], dim=1)
        logits = self.model(
            input_ids=self._last[:, None],
            attention_mask=self._mask,
            position_ids=self._mask.sum(-1, keepdim=True) - 1,
            cache=self._cache,
            use_cache=True,
        ).logits[:, -1, :]
        with self._lock:
            self._steps += 1
            self._rows_decoded += len(self._rows)
        tokens = self._sample(logits, self._rows)
        self._last = tokens
        self._keep_rows(self._emit(self._rows, tokens))

    def _keep_rows(self, keep: list[int]) -> None:
        """Drops the other rows from the batch and trims cache columns that no remaining row uses."""
        import torch

        if len(keep) == len(self._rows):
            return
        if not keep:
            self._rows, self._cache, self._mask, self._last = [], None, None, None
            return
        index = torch.tensor(keep, device=self._device)
        self._cache.batch_select_indices(index)
        self._rows = [self._rows[i] for i in keep]
        self._mask, self._last = self._mask[index], self._last[index]
        first = int(self._mask.any(dim=0).nonzero()[0])
        if first > 0:
            for layer in self._cache.layers:
                layer.keys = layer.keys[..., first:, :].contiguous()
                layer.values = layer.values[..., first:, :].contiguous()
            self._mask = self._mask[:, first:]

    def _emit(self, sequences: list[Sequence], tokens: Any) -> list[int]:
        """Hands each sequence its new token; returns the positions of the sequences that go on."""
        going_on = []
        for i, (sequence, token) in enumerate(zip(sequences, tokens.tolist(), strict=True)):
            sequence.tokens.append(token)
            sequence.events.put(("token", token))
            reason = self._finish_reason(sequence, token)
            if reason:
                self._end(sequence, reason)
            else:
                going_on.append(i)
        return going_on

    def _finish_reason(self, sequence: Sequence, token: int) -> str:
        if token in self.eos:
            return STOP
        if sequence.sampling.stop and self.decode is not None:
            if sequence.text is None:
                sequence.text = IncrementalText(self.decode)
            added = sequence.text.add(token)  # a window of tokens decoded, not the whole answer
            if added and first_stop(sequence.text.text, list(sequence.sampling.stop), len(added)) >= 0:
                return STOP
        if len(sequence.tokens) >= sequence.sampling.max_new_tokens:
            return LENGTH
        if self.max_positions and len(sequence.prompt) + len(sequence.tokens) >= self.max_positions:
            return LENGTH
        return ""

    def _sample(self, logits: Any, sequences: list[Sequence]) -> Any:
        """One token per row, each row with its own request's sampling settings and generator."""
        import torch

        logits = logits.float()
        for i, sequence in enumerate(sequences):
            penalty = sequence.sampling.repetition_penalty
            if penalty != 1.0:
                seen = torch.tensor(sorted(set(sequence.prompt + sequence.tokens)), device=logits.device)
                scores = logits[i, seen]
                logits[i, seen] = torch.where(scores < 0, scores * penalty, scores / penalty)
        tokens = logits.argmax(dim=-1)
        for i, sequence in enumerate(sequences):
            s = sequence.sampling
            if s.temperature <= 0:
                continue
            row = logits[i] / s.temperature
            if s.top_k and s.top_k < row.numel():
                kth = torch.topk(row, s.top_k).values[-1]
                row = row.masked_fill(row < kth, -math.inf)
            if 0 < s.top_p < 1:
                ordered, order = torch.sort(row, descending=True)
                cumulative = ordered.softmax(-1).cumsum(-1)
                # Keep the smallest prefix whose mass reaches top_p (always at least the most likely token).
                drop = cumulative - ordered.softmax(-1) >= s.top_p
                row = row.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), -math.inf)
            probs = row.softmax(-1)
            tokens[i] = torch.multinomial(probs, 1, generator=sequence.generator)[0]
        return tokens

    def _fail_running(self, error: BaseException) -> None:
        for sequence in self._rows:
            self._end(sequence, ERROR, error)
        self._rows, self._cache, self._mask, self._last = [], None, None, None

    def _fail_everything(self, error: BaseException) -> None:
        self._fail_running(error)
        with self._lock:
            waiting, self._waiting = list(self._waiting), collections.deque()
        for sequence in waiting:
            self._end(sequence, ERROR, error)
