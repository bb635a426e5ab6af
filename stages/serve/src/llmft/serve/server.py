"""The gRPC face of a Generator: llmft.proto.serve.v1.InferenceService (Generate, GenerateStream, GetModelInfo), the
standard grpc.health.v1 health service and server reflection.

Status codes: a request that cannot be decoded or has a bad field gets INVALID_ARGUMENT naming the field; a full
engine queue gets RESOURCE_EXHAUSTED; a missing or wrong token gets UNAUTHENTICATED. The call's deadline and its
cancellation reach the engine, which stops that generation within one decoding step. Health checks need no token, so
orchestrators can probe the server; everything else does when a token is set."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from llmft.proto.serve.v1 import serve_pb2 as S
from llmft.serve.engine import DEADLINE, EngineBusy, EngineClosed
from llmft.serve.generator import Generator, Interrupted, RequestError

log = logging.getLogger(__name__)
SERVICE_NAME = S.DESCRIPTOR.services_by_name["InferenceService"].full_name
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
# Extra threads beyond the engine's capacity, so health checks and model info answer while the engine is full.
SPARE_THREADS = 8


@dataclass(frozen=True)
class ServerOptions:
    """Where and how the service listens. With a token, every call but health checks must carry
    `authorization: Bearer <token>`; with a certificate and key, the port speaks TLS only."""

    host: str = "127.0.0.1"
    port: int = 50051
    max_batch: int = 16
    max_queue: int = 64
    max_batch_tokens: int = 0
    token: str = ""
    tls_cert: Path | None = None
    tls_key: Path | None = None


def _deadline(context: Any) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def _parse(message_class: type[Message], raw: bytes, context: Any) -> Any:
    try:
        return message_class.FromString(raw)
    except DecodeError as error:
        context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, f"request: not a valid {message_class.DESCRIPTOR.full_name}: {error}"
        )


class InferenceService:
    """The RPC bodies. Requests arrive as bytes and are parsed here, so that undecodable bytes get INVALID_ARGUMENT
    rather than grpc's INTERNAL."""

    def __init__(self, generator: Generator) -> None:
        self.generator = generator

    def _fail(self, error: Exception, context: Any) -> None:
        if isinstance(error, RequestError):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        if isinstance(error, EngineBusy):
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"server busy: {error}; retry later")
        if isinstance(error, Interrupted):
            code = grpc.StatusCode.DEADLINE_EXCEEDED if error.reason == DEADLINE else grpc.StatusCode.CANCELLED
            context.abort(code, str(error))
        if isinstance(error, EngineClosed):
            context.abort(grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
        raise error

    def _start(self, request: Any, context: Any) -> Any:
        handle = self.generator.start(request, _deadline(context))
        # The callback runs when the call ends for any reason: a client that cancels or goes away frees its slot at
        # the next decoding step instead of generating on.
        context.add_callback(handle.cancel)
        return handle

    def generate(self, raw: bytes, context: Any) -> S.GenerateResponse:
        request = _parse(S.GenerateRequest, raw, context)
        try:
            return self.generator.response(self.generator.collect(self._start(request, context), request))
        except (RequestError, EngineBusy, Interrupted, EngineClosed) as error:
            self._fail(error, context)
            raise  # unreachable: abort raises

    def generate_stream(self, raw: bytes, context: Any) -> Iterator[S.GenerateStreamResponse]:
        request = _parse(S.GenerateStreamRequest, raw, context)
        try:
            yield from self.generator.pieces(self._start(request, context), request)
        except (RequestError, EngineBusy, Interrupted, EngineClosed) as error:
            self._fail(error, context)

    def model_info(self, raw: bytes, context: Any) -> S.GetModelInfoResponse:
        _parse(S.GetModelInfoRequest, raw, context)
        return self.generator.info()

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "Generate": grpc.unary_unary_rpc_method_handler(
                    self.generate, response_serializer=S.GenerateResponse.SerializeToString
                ),
                "GenerateStream": grpc.unary_stream_rpc_method_handler(
                    self.generate_stream, response_serializer=S.GenerateStreamResponse.SerializeToString
                ),
                "GetModelInfo": grpc.unary_unary_rpc_method_handler(
                    self.model_info, response_serializer=S.GetModelInfoResponse.SerializeToString
                ),
            },
        )


class TokenAuth(grpc.ServerInterceptor):
    """Refuses calls without `authorization: Bearer <token>`; health checks pass without one."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation: Callable[..., Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None or details.method.startswith(f"/{HEALTH_SERVICE}/"):
            return handler
        given = dict(details.invocation_metadata or ()).get("authorization", "")
        if hmac.compare_digest(str(given).encode(), self._expected):
            return handler

        def deny(request: Any, context: Any) -> Any:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "authorization: missing or wrong bearer token")

        kind = (
            ("unary_unary", grpc.unary_unary_rpc_method_handler),
            ("unary_stream", grpc.unary_stream_rpc_method_handler),
            ("stream_unary", grpc.stream_unary_rpc_method_handler),
            ("stream_stream", grpc.stream_stream_rpc_method_handler),
        )
        for name, make in kind:
            if getattr(handler, name):
                return make(
                    deny,
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
        return handler


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    generator: Generator
    health: health.HealthServicer

    def stop(self, grace: float | None = 5.0) -> None:
        """Reports NOT_SERVING, lets calls in flight finish within `grace` seconds, then shuts the engine down."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        self.generator.close()


def serve(generator: Generator, options: ServerOptions) -> RunningServer:
    """Registers the services on a new server, binds it and starts it."""
    capacity = generator.engine.max_batch + generator.engine.max_queue + SPARE_THREADS
    interceptors = [TokenAuth(options.token)] if options.token else []
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=capacity, thread_name_prefix="llmft-grpc"),
        interceptors=interceptors,
        maximum_concurrent_rpcs=capacity,
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_generic_rpc_handlers((InferenceService(generator).handler(),))
    reflection.enable_server_reflection((SERVICE_NAME, HEALTH_SERVICE, reflection.SERVICE_NAME), server)
    address = f"{options.host}:{options.port}"
    if options.tls_cert or options.tls_key:
        if not (options.tls_cert and options.tls_key):
            raise ValueError("tls: give both a certificate and its private key")
        credentials = grpc.ssl_server_credentials(
            [(Path(options.tls_key).read_bytes(), Path(options.tls_cert).read_bytes())]
        )
        port = server.add_secure_port(address, credentials)
    else:
        if options.token and options.host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("the token travels in cleartext to %s: give a TLS certificate and key", options.host)
        port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind {address}")
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, port, generator, health_servicer)


def build_server(model_dir: Path, options: ServerOptions | None = None) -> RunningServer:
    """Loads the model folder and serves it."""
    options = options or ServerOptions(port=0)
    return serve(
        Generator(
            model_dir,
            max_batch=options.max_batch,
            max_queue=options.max_queue,
            max_batch_tokens=options.max_batch_tokens,
        ),
        options,
    )
