"""The gRPC face of a Generator: llmft.proto.serve.v1.InferenceService (Generate, GenerateStream, GetModelInfo), the
standard grpc.health.v1 health service (SERVING once the model is loaded) and server reflection."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from llmft.proto.serve.v1 import serve_pb2, serve_pb2_grpc
from llmft.serve.generator import Generator, RequestError

SERVICE_NAME = serve_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name


class InferenceService(serve_pb2_grpc.InferenceServiceServicer):
    def __init__(self, generator: Generator) -> None:
        self.generator = generator

    def Generate(self, request: serve_pb2.GenerateRequest, context: Any) -> serve_pb2.GenerateResponse:
        try:
            return self.generator.generate(request)
        except RequestError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
            raise  # unreachable: abort raises

    def GenerateStream(
        self, request: serve_pb2.GenerateStreamRequest, context: Any
    ) -> Iterator[serve_pb2.GenerateStreamResponse]:
        try:
            yield from self.generator.stream(request)
        except RequestError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))

    def GetModelInfo(self, request: serve_pb2.GetModelInfoRequest, context: Any) -> serve_pb2.GetModelInfoResponse:
        return self.generator.info()


def build_server(model_dir: Path, address: str = "127.0.0.1:0", workers: int = 4) -> tuple[grpc.Server, int]:
    """Loads the model, registers the services and binds `address`; returns the (not yet started) server and the
    bound port."""
    health_servicer = health.HealthServicer()
    health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    generator = Generator(model_dir)
    serve_pb2_grpc.add_InferenceServiceServicer_to_server(InferenceService(generator), server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind {address}")
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port
