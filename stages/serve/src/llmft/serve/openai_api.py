"""The OpenAI-compatible face of a Generator, beside the gRPC one and on the same continuous-batching engine:
`POST /v1/chat/completions` (a whole answer, or server-sent events with `"stream": true`), `GET /v1/models`,
`GET /v1/models/{id}`, and `GET /health` for orchestrators. Most clients, evaluation harnesses and chat UIs speak this
protocol (https://platform.openai.com/docs/api-reference/chat).

Fields: model, messages (text content, as a string or text parts; the `developer` role is the system role),
max_completion_tokens or max_tokens, temperature, top_p, stop, seed, n (1), stream, stream_options.include_usage; and,
as vLLM does, top_k and repetition_penalty. A field the server does not implement is refused by name, not ignored, and
so is a non-zero frequency or presence penalty. Omitted sampling fields take the model's generation_config; an omitted
token budget is the room left in the model's positions (at most the service's limit).

Errors are the protocol's error objects, `{"error": {"message", "type", "param", "code"}}`: 400 for a bad field (param
names it), 401 for a missing or wrong bearer token, 404 for another model or an unknown path, 429 when the engine's
queue is full, 503 while the server shuts down, 504 when the server's request timeout passes. A client that goes away
cancels its generation at the next decoding step, streaming or not."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException

from llmft.proto.serve.v1 import serve_pb2 as S
from llmft.serve.engine import DEADLINE, EngineBusy, EngineClosed, Handle
from llmft.serve.generator import MAX_NEW_TOKENS_LIMIT, Generator, Interrupted, RequestError

# Extra worker threads beyond the engine's capacity, so a request is parsed and refused while the engine is full.
SPARE_THREADS = 8
FINISH_REASONS = {S.FINISH_REASON_STOP: "stop", S.FINISH_REASON_LENGTH: "length"}


class APIError(Exception):
    """An error the client gets as the protocol's error object with `status`."""

    def __init__(self, status: int, message: str, kind: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def bad_request(param: str | None, message: str) -> APIError:
    return APIError(400, message, "invalid_request_error", param)


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The request body; pydantic's checks give the 400s that name a field."""

    model_config = ConfigDict(extra="forbid")
    model: str
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS_LIMIT)
    max_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS_LIMIT)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0)
    repetition_penalty: float | None = Field(None, gt=0.0)
    stop: str | list[str] | None = None
    # 1 or more: the engine reads 0 as "no seed" (a fresh one), which an explicit 0 must not silently become.
    seed: int | None = Field(None, ge=1, le=2**63 - 1)
    n: int = Field(1, ge=1, le=1)
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    stream: bool = False
    stream_options: StreamOptions | None = None


def _param(location: tuple[int | str, ...]) -> str:
    """pydantic's location as the field path our other errors use: messages[0].content."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("str", "list[TextPart]") or part.startswith(("function-", "literal[")):
            continue  # the branch of a union pydantic tried, not a field
        else:
            path += f".{part}" if path else str(part)
    return path


def parse_request(raw: bytes) -> ChatCompletionRequest:
    try:
        body = json.loads(raw or b"null")
    except ValueError as error:
        raise bad_request(None, f"request body: not valid JSON ({error})") from error
    if not isinstance(body, dict):
        raise bad_request(None, "request body: must be a JSON object")
    try:
        request = ChatCompletionRequest.model_validate(body)
    except ValidationError as error:
        # A bad value in a union (content as a string or as parts) fails each branch: the deepest failure is the one
        # that names the field.
        first = max(error.errors(), key=lambda e: len(e["loc"]))
        param = _param(tuple(first["loc"]))
        if first["type"] == "extra_forbidden":
            raise bad_request(param, f"{param}: not a field this server implements") from error
        if param == "n":
            raise bad_request("n", "n: this server returns one choice per request") from error
        raise bad_request(param, f"{param}: {first['msg']}") from error
    for name in ("frequency_penalty", "presence_penalty"):
        if getattr(request, name):
            raise bad_request(name, f"{name}: not supported by this server; use repetition_penalty")
    if request.stream_options and not request.stream:
        raise bad_request("stream_options", "stream_options: only with stream: true")
    if request.max_tokens and request.max_completion_tokens and request.max_tokens != request.max_completion_tokens:
        raise bad_request("max_tokens", "max_tokens: give it or max_completion_tokens, or both with the same value")
    return request


def generate_request(request: ChatCompletionRequest, generator: Generator) -> S.GenerateRequest:
    """The request in the service's own terms: omitted sampling fields take the model's generation_config, an omitted
    token budget is the room left in the model's positions."""
    messages = [
        S.ChatMessage(
            role="system" if m.role == "developer" else m.role,
            content=m.content if isinstance(m.content, str) else "\n".join(p.text for p in m.content),
        )
        for m in request.messages
    ]
    defaults = generator.model.generation_config
    temperature = request.temperature
    if temperature is None:
        temperature = float(defaults.temperature or 1.0) if getattr(defaults, "do_sample", False) else 0.0
    stop = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
    generation = S.GenerationConfig(
        max_new_tokens=request.max_completion_tokens or request.max_tokens or 0,
        temperature=temperature,
        top_p=request.top_p or 0.0,
        top_k=request.top_k or 0,
        repetition_penalty=request.repetition_penalty or 0.0,
        seed=request.seed or 0,
        stop=stop,
    )
    generate = S.GenerateRequest(messages=messages, generation=generation)
    if not generation.max_new_tokens:
        try:
            prompt = len(generator.prompt_ids(generate))
        except RequestError as error:
            raise _request_error(error) from error
        room = generator.max_positions - prompt if generator.max_positions else MAX_NEW_TOKENS_LIMIT
        generate.generation.max_new_tokens = max(1, min(room, MAX_NEW_TOKENS_LIMIT))
    return generate


def _request_error(error: RequestError) -> APIError:
    message = str(error)
    field, _, rest = message.partition(": ")
    # The Generator's field names, as this protocol calls them.
    param = field.removeprefix("generation.").replace("max_new_tokens", "max_tokens")
    return bad_request(param, f"{param}: {rest}" if rest else message)


def _error(error: Exception) -> APIError:
    """The engine's and the Generator's errors as the protocol's."""
    if isinstance(error, APIError):
        return error
    if isinstance(error, RequestError):
        return _request_error(error)
    if isinstance(error, EngineBusy):
        return APIError(429, f"server busy: {error}; retry later", "rate_limit_error", code="rate_limit_exceeded")
    if isinstance(error, EngineClosed):
        return APIError(503, "the server is shutting down", "server_error", code="unavailable")
    if isinstance(error, Interrupted):
        if error.reason == DEADLINE:
            return APIError(504, "generation passed the server's request timeout", "timeout_error", code="timeout")
        return APIError(499, "generation cancelled", "cancelled", code="cancelled")
    raise error


@dataclass(frozen=True)
class OpenAIOptions:
    """Where the endpoint listens and what it serves. With a token, every path but /health needs
    `Authorization: Bearer <token>` (the client's api_key). request_timeout: seconds a generation may take, 0 for no
    limit."""

    host: str = "127.0.0.1"
    port: int = 8000
    model_name: str = ""
    max_batch: int = 16
    max_queue: int = 64
    max_batch_tokens: int = 0
    token: str = ""
    request_timeout: float = 0.0


class ChatCompletions:
    """The endpoint bodies, in the protocol's terms, around one Generator."""

    def __init__(self, generator: Generator, options: OpenAIOptions) -> None:
        self.generator = generator
        self.options = options
        self.model_name = options.model_name or str(generator.model_dir)
        config = generator.model_dir / "config.json"
        # The model's "created" is when its folder was written.
        self.created = int(config.stat().st_mtime if config.is_file() else time.time())
        capacity = generator.engine.max_batch + generator.engine.max_queue
        # Each request holds a thread while its answer is generated: as many as the engine admits, and spares.
        self.pool = ThreadPoolExecutor(max_workers=2 * capacity + SPARE_THREADS, thread_name_prefix="llmft-openai")

    def model_card(self) -> dict[str, Any]:
        return {"id": self.model_name, "object": "model", "created": self.created, "owned_by": "llmft"}

    def check_model(self, name: str) -> None:
        if name != self.model_name:
            raise APIError(
                404,
                f"model: {name!r} is not served here; this server serves {self.model_name!r}",
                "invalid_request_error",
                "model",
                "model_not_found",
            )

    async def start(self, request: ChatCompletionRequest) -> tuple[S.GenerateRequest, Handle]:
        self.check_model(request.model)
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self.options.request_timeout if self.options.request_timeout else None

        def start() -> tuple[S.GenerateRequest, Handle]:
            generate = generate_request(request, self.generator)
            return generate, self.generator.start(generate, deadline)

        try:
            return await loop.run_in_executor(self.pool, start)
        except (RequestError, EngineBusy, EngineClosed) as error:
            raise _error(error) from error

    def _chunk(self, completion_id: str, created: int, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": self.model_name,
            "system_fingerprint": self.generator.fingerprint,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    async def complete(self, request: ChatCompletionRequest, receive: Any) -> dict[str, Any]:
        """The whole answer. `receive` is the connection's ASGI receive, read once the body is in: its next message is
        `http.disconnect`, and a client that goes away while it waits cancels the generation at once."""
        generate, handle = await self.start(request)
        loop = asyncio.get_running_loop()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            handle.cancel()

        watcher = asyncio.ensure_future(watch())
        try:
            result = await loop.run_in_executor(self.pool, self.generator.collect, handle, generate)
        except (Interrupted, EngineClosed) as error:
            raise _error(error) from error
        finally:
            watcher.cancel()
            handle.cancel()
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            "system_fingerprint": self.generator.fingerprint,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.text},
                    "logprobs": None,
                    "finish_reason": FINISH_REASONS[result.finish_reason],
                }
            ],
            "usage": _usage(result.prompt_tokens, result.completion_tokens),
        }

    async def stream(self, request: ChatCompletionRequest) -> AsyncIterator[bytes]:
        """Server-sent events: a role chunk, a chunk per text piece, the finish chunk, the usage chunk when asked for,
        then `[DONE]`. The request is started before the first byte, so refusals still get their status code; closing
        the iterator (the client went away) cancels the generation."""
        generate, handle = await self.start(request)
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        include_usage = bool(request.stream_options and request.stream_options.include_usage)

        async def events() -> AsyncIterator[bytes]:
            try:
                yield _event(self._chunk(completion_id, created, {"role": "assistant", "content": ""}, None))
                async for piece in _in_thread(self.pool, self.generator.pieces(handle, generate)):
                    if piece.text_delta:
                        yield _event(self._chunk(completion_id, created, {"content": piece.text_delta}, None))
                    if piece.finish_reason:
                        finish = FINISH_REASONS[piece.finish_reason]
                        yield _event(self._chunk(completion_id, created, {}, finish))
                        if include_usage:
                            usage = _usage(piece.usage.prompt_tokens, piece.usage.completion_tokens)
                            yield _event(
                                {**self._chunk(completion_id, created, {}, None), "choices": [], "usage": usage}
                            )
            except (Interrupted, EngineClosed) as error:
                yield _event(_error(error).body())
            finally:
                handle.cancel()
            yield b"data: [DONE]\n\n"

        return events()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _event(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


async def _in_thread(pool: ThreadPoolExecutor, iterator: Iterator[Any]) -> AsyncIterator[Any]:
    """The items of a blocking iterator, pulled on a worker thread and handed to the event loop as they come."""
    loop = asyncio.get_running_loop()
    items: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def put(kind: str, value: Any) -> None:
        try:
            loop.call_soon_threadsafe(items.put_nowait, (kind, value))
        except RuntimeError:  # the loop is gone: the server stopped
            pass

    def pump() -> None:
        try:
            for item in iterator:
                put("item", item)
            put("end", None)
        except BaseException as error:  # handed to the reader, which raises it
            put("error", error)

    loop.run_in_executor(pool, pump)
    while True:
        kind, value = await items.get()
        if kind == "end":
            return
        if kind == "error":
            raise value
        yield value


def build_app(completions: ChatCompletions) -> FastAPI:
    """The ASGI app: FastAPI routes whose bodies are read and checked here, so every error has the protocol's
    shape."""
    app = FastAPI(title="llmft OpenAI-compatible API", docs_url=None, redoc_url=None, openapi_url=None)
    expected = f"Bearer {completions.options.token}".encode()

    @app.exception_handler(APIError)
    async def api_error(_: Request, error: APIError) -> JSONResponse:
        headers = {"Retry-After": "1"} if error.status == 429 else None
        return JSONResponse(error.body(), status_code=error.status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        kind = "not_found_error" if error.status_code == 404 else "invalid_request_error"
        message = f"{request.method} {request.url.path}: {error.detail}"
        return JSONResponse(APIError(error.status_code, message, kind).body(), status_code=error.status_code)

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Any) -> Any:
        if completions.options.token and request.url.path != "/health":
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                error = APIError(
                    401, "authorization: missing or wrong bearer token", "invalid_request_error", code="invalid_api_key"
                )
                return JSONResponse(error.body(), status_code=401)
        return await call_next(request)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [completions.model_card()]}

    @app.get("/v1/models/{name:path}")
    async def model(name: str) -> dict[str, Any]:
        completions.check_model(name)
        return completions.model_card()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        body = parse_request(await request.body())
        if body.stream:
            return StreamingResponse(
                await completions.stream(body),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return await completions.complete(body, request.receive)

    return app


@dataclass
class RunningOpenAI:
    """A server started by `serve_openai`, on a thread of its own."""

    server: Server
    thread: threading.Thread
    port: int
    completions: ChatCompletions

    @property
    def generator(self) -> Generator:
        return self.completions.generator

    def stop(self, grace: float = 5.0) -> None:
        """Stops accepting connections, lets requests in flight end within `grace` seconds, then closes the engine."""
        self.server.should_exit = True
        self.thread.join(timeout=grace + 5)
        self.completions.close()
        self.generator.close()


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


class Server(uvicorn.Server):
    """uvicorn's server without its signal handling, which re-raises SIGTERM once it has shut down (so the process
    ends by the signal): whoever runs it sets `should_exit` from handlers of its own."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def server_for(generator: Generator, options: OpenAIOptions) -> tuple[Server, ChatCompletions]:
    completions = ChatCompletions(generator, options)
    config = uvicorn.Config(
        build_app(completions), log_level="warning", access_log=False, timeout_graceful_shutdown=5, lifespan="off"
    )
    return Server(config), completions


def serve_openai(generator: Generator, options: OpenAIOptions) -> RunningOpenAI:
    """Binds and serves on a background thread (tests, notebooks); `llmft serve openai` serves on its main thread."""
    sock = bind(options.host, options.port)
    server, completions = server_for(generator, options)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="llmft-openai", daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.01)
    if not server.started:
        raise OSError(f"cannot serve on {options.host}:{options.port}")
    return RunningOpenAI(server, thread, sock.getsockname()[1], completions)


def build_openai_server(model_dir: Path, options: OpenAIOptions | None = None) -> RunningOpenAI:
    """Loads the model folder and serves it."""
    options = options or OpenAIOptions(port=0)
    generator = Generator(
        model_dir, max_batch=options.max_batch, max_queue=options.max_queue, max_batch_tokens=options.max_batch_tokens
    )
    return serve_openai(generator, options)
