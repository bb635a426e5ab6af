"""Serving a model folder written by an llmft training stage.

Commands:
  grpc     run the gRPC InferenceService (Generate, GenerateStream, GetModelInfo) with health checks and reflection
  batch    answer every prompt of a prompt dataset folder, write the answers as Parquet
  ask      answer one question on the command line (a quick check of a model)

Examples:
  llmft serve grpc --model runs/sft --port 50051
  llmft serve batch --model runs/sft --data runs/prompts --out runs/answers.parquet --shards 4
  llmft serve ask --model runs/sft "What does flytekit.task do?"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from google.protobuf import json_format

from llmft.core.cli import USER_ERRORS
from llmft.proto.serve.v1 import serve_pb2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="llmft serve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    grpc_p = sub.add_parser("grpc", help="run the gRPC inference service")
    grpc_p.add_argument("--model", type=Path, required=True)
    grpc_p.add_argument("--host", default="127.0.0.1")
    grpc_p.add_argument("--port", type=int, default=50051)
    grpc_p.add_argument("--workers", type=int, default=4)
    batch_p = sub.add_parser("batch", help="answer a prompt dataset")
    batch_p.add_argument("--model", type=Path, required=True)
    batch_p.add_argument("--data", type=Path, required=True, help="prompt dataset folder (kind prompt)")
    batch_p.add_argument("--split", default="train", choices=["train", "eval"])
    batch_p.add_argument("--out", type=Path, required=True, help="answers .parquet to write (must not exist)")
    batch_p.add_argument("--shards", type=int, default=1)
    batch_p.add_argument("--batch-size", type=int, default=8)
    batch_p.add_argument("--max-new-tokens", type=int, default=64)
    batch_p.add_argument("--temperature", type=float, default=0.0)
    ask_p = sub.add_parser("ask", help="answer one question")
    ask_p.add_argument("--model", type=Path, required=True)
    ask_p.add_argument("--max-new-tokens", type=int, default=64)
    ask_p.add_argument("question")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "grpc":
            from llmft.serve.server import build_server

            server, port = build_server(args.model, f"{args.host}:{args.port}", args.workers)
            server.start()
            print(f"llmft.serve: InferenceService on {args.host}:{port} (model {args.model})", flush=True)
            server.wait_for_termination()
        elif args.command == "batch":
            from llmft.serve.batch import run_batch

            if args.out.exists():
                raise FileExistsError(f"{args.out}: exists; nothing was overwritten")
            request = serve_pb2.BatchInferenceRequest(
                shards=args.shards,
                batch_size=args.batch_size,
                generation=serve_pb2.GenerationConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature),
            )
            table, result = run_batch(args.model, args.data, request, args.split)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.out.with_name(f".{args.out.name}.tmp")
            table.to_parquet(tmp, index=False)
            tmp.rename(args.out)
            print(json_format.MessageToJson(result, sort_keys=True))
        else:
            from llmft.serve.generator import Generator

            response = Generator(args.model).generate(
                serve_pb2.GenerateRequest(
                    messages=[serve_pb2.ChatMessage(role="user", content=args.question)],
                    generation=serve_pb2.GenerationConfig(max_new_tokens=args.max_new_tokens),
                )
            )
            print(response.text)
    except USER_ERRORS as error:
        print(f"llmft serve {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
