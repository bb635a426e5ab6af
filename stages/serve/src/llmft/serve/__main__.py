"""Serving a model folder written by an llmft training stage.

Commands:
  grpc     run the gRPC InferenceService (Generate, GenerateStream, GetModelInfo) with health checks and reflection
  openai   run an OpenAI-compatible endpoint (/v1/chat/completions, streaming or not; /v1/models) on the same engine
  batch    answer every prompt of a prompt dataset folder, write the answers as Parquet
  publish  push the model with its card, and its chat Space, to the Hugging Face Hub (token: HF_TOKEN)
  space    write the Gradio chat app as a Hugging Face Space folder (app.py, requirements.txt, README.md)
  ask      answer one question on the command line (a quick check of a model)

Examples:
  llmft serve grpc --model runs/sft --port 50051
  llmft serve openai --model runs/sft --port 8000    # then: OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="-")
  llmft serve batch --model runs/sft --data runs/prompts --out runs/answers.parquet --shards 4
  llmft serve space --model org/tiny-llama-sft --out runs/space
  HF_TOKEN=... llmft serve publish --model runs/sft --model-repo-id org/tiny-llama-sft --space-repo-id org/tiny-chat
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
    _engine_arguments(grpc_p, port=50051)
    grpc_p.add_argument("--tls-cert", type=Path, help="PEM certificate chain: serve TLS only")
    grpc_p.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    openai_p = sub.add_parser("openai", help="run an OpenAI-compatible endpoint (/v1/chat/completions, /v1/models)")
    _engine_arguments(openai_p, port=8000)
    openai_p.add_argument(
        "--served-model-name",
        default="",
        help="the model's id in /v1/models and the `model` requests must name (default: --model as given)",
    )
    openai_p.add_argument(
        "--request-timeout",
        type=float,
        default=0.0,
        help="seconds a generation may take before it is stopped with 504 (0: no limit; a client's own timeout, "
        "which closes its connection, also stops it)",
    )
    batch_p = sub.add_parser("batch", help="answer a prompt dataset")
    batch_p.add_argument("--model", required=True, help="model folder, built-in preset, .gguf file, or Hub id")
    batch_p.add_argument("--data", type=Path, required=True, help="prompt dataset folder (kind prompt)")
    batch_p.add_argument("--split", default="train", choices=["train", "eval"])
    batch_p.add_argument("--out", type=Path, required=True, help="answers .parquet to write (must not exist)")
    batch_p.add_argument(
        "--work-dir",
        type=Path,
        help="shards and finished shards' answers (default: <out>.shards beside --out); a rerun with the same folder "
        "answers only the unfinished shards; removed once --out is written",
    )
    batch_p.add_argument("--shards", type=int, default=4)
    batch_p.add_argument("--batch-size", type=int, default=16, help="sequences decoded together")
    batch_p.add_argument("--max-new-tokens", type=int, default=64)
    batch_p.add_argument("--temperature", type=float, default=0.0)
    batch_p.add_argument("--seed", type=int, default=0, help="seed of sampling (with --temperature > 0)")
    space_p = sub.add_parser("space", help="write the Gradio chat app as a Hugging Face Space folder")
    space_p.add_argument("--out", type=Path, required=True, help="Space folder to write (must not exist)")
    backend = space_p.add_mutually_exclusive_group(required=True)
    backend.add_argument("--model", help="Hub id of the published model, or a local folder for a local launch")
    backend.add_argument("--grpc-target", help="host:port of an llmft gRPC service the app calls instead")
    space_p.add_argument("--model-repo-id", default="", help="Hub model linked in the front matter (default: --model)")
    space_p.add_argument("--title", default="llmft chat")
    space_p.add_argument("--description", default="")
    space_p.add_argument("--max-new-tokens", type=int, default=256)
    space_p.add_argument("--temperature", type=float, default=0.0)
    pub_p = sub.add_parser("publish", help="push a model, its card and its chat Space to the Hugging Face Hub")
    pub_p.add_argument("--model", type=Path, required=True, help="model folder written by an llmft stage")
    pub_p.add_argument("--model-repo-id", required=True, help="Hub model repo, e.g. org/tiny-llama-sft")
    pub_p.add_argument("--space-repo-id", default="", help="Hub Space repo for the chat app (default: no Space)")
    pub_p.add_argument("--private", action="store_true")
    pub_p.add_argument("--commit-message", default="")
    pub_p.add_argument("--dry-run", type=Path, help="write what would be uploaded to this folder; contact nothing")
    pub_p.add_argument("--dataset", type=Path, action="append", default=[], help="a dataset folder the model saw")
    pub_p.add_argument("--execution-id", default="", help="the run that made the model, for the card's lineage")
    pub_p.add_argument("--title", default="", help="the Space's title")
    ask_p = sub.add_parser("ask", help="answer one question")
    ask_p.add_argument("--model", required=True, help="model folder, built-in preset, .gguf file, or Hub id")
    ask_p.add_argument("--max-new-tokens", type=int, default=64)
    ask_p.add_argument("question")
    return p


def _engine_arguments(p: argparse.ArgumentParser, port: int) -> None:
    """The model, address, engine bounds and token of a serving command (gRPC and OpenAI alike)."""
    p.add_argument(
        "--model", required=True, help="model folder, built-in preset, .gguf file, or Hub id of a published model"
    )
    p.add_argument("--revision", default="", help="Hub revision (branch, tag or commit) of a Hub id")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=port, help="0 picks a free port (printed on start)")
    p.add_argument("--max-batch", type=int, default=16, help="sequences decoded together")
    p.add_argument("--max-queue", type=int, default=64, help="requests waiting for a slot; more are refused")
    p.add_argument(
        "--max-batch-tokens",
        type=int,
        default=0,
        help="token positions the running batch may hold (each request reserves its prompt and max_new_tokens); a "
        "request that does not fit waits, one larger than this is refused; 0: only --max-batch bounds the batch",
    )
    p.add_argument(
        "--token-env",
        default="LLMFT_SERVE_TOKEN",
        help="environment variable holding the bearer token callers must send; unset means no authentication",
    )


def model_folder(name: str, revision: str = "") -> Path:
    """The local folder of --model (a folder, a preset or a Hub id); the error names --model, not base_model."""
    from llmft.core.models import ModelNotFoundError, resolve_model_dir

    try:
        return resolve_model_dir(name, revision).directory
    except ModelNotFoundError as error:
        raise ModelNotFoundError(str(error).replace("base_model:", "--model:", 1)) from error


def run_grpc(args: argparse.Namespace) -> None:
    """Serves until SIGINT or SIGTERM, then drains calls in flight."""
    import os
    import signal
    import threading

    from llmft.serve.server import ServerOptions, build_server

    options = ServerOptions(
        host=args.host,
        port=args.port,
        max_batch=args.max_batch,
        max_queue=args.max_queue,
        max_batch_tokens=args.max_batch_tokens,
        token=os.environ.get(args.token_env, ""),
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )
    model_dir = model_folder(args.model, args.revision)
    running = build_server(model_dir, options)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    security = ("TLS" if options.tls_cert else "plaintext") + (", bearer token" if options.token else ", no token")
    print(
        f"llmft serve: InferenceService listening on {args.host}:{running.port} ({security}; model {args.model}, "
        f"fingerprint {running.generator.fingerprint}; {options.max_batch} slots, queue {options.max_queue})",
        flush=True,
    )
    stop.wait()
    print("llmft serve: shutting down", flush=True)
    running.stop()


def run_openai(args: argparse.Namespace) -> None:
    """Serves until SIGINT or SIGTERM, then lets requests in flight end (5 s at most) and closes the engine."""
    import os
    import signal

    from llmft.serve.generator import Generator
    from llmft.serve.openai_api import OpenAIOptions, bind, server_for

    options = OpenAIOptions(
        host=args.host,
        port=args.port,
        model_name=args.served_model_name or args.model,
        max_batch=args.max_batch,
        max_queue=args.max_queue,
        max_batch_tokens=args.max_batch_tokens,
        token=os.environ.get(args.token_env, ""),
        request_timeout=args.request_timeout,
    )
    if options.request_timeout < 0:
        raise ValueError(f"--request-timeout: must be >= 0, got {options.request_timeout}")
    generator = Generator(
        model_folder(args.model, args.revision),
        max_batch=options.max_batch,
        max_queue=options.max_queue,
        max_batch_tokens=options.max_batch_tokens,
    )
    try:
        sock = bind(options.host, options.port)
        server, completions = server_for(generator, options)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: setattr(server, "should_exit", True))
        host = f"[{args.host}]" if ":" in args.host else args.host
        print(
            f"llmft serve: OpenAI-compatible API on http://{host}:{sock.getsockname()[1]}/v1 (model "
            f"{options.model_name!r}, fingerprint {generator.fingerprint}; "
            f"{'bearer token' if options.token else 'no token'}; {options.max_batch} slots, queue {options.max_queue})",
            flush=True,
        )
        server.run(sockets=[sock])
        print("llmft serve: shutting down", flush=True)
        completions.close()
    finally:
        generator.close()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "grpc":
            run_grpc(args)
        elif args.command == "openai":
            run_openai(args)
        elif args.command == "batch":
            import shutil

            from llmft.serve.batch import run_batch

            if args.out.exists():
                raise FileExistsError(f"{args.out}: exists; nothing was overwritten")
            request = serve_pb2.BatchInferenceRequest(
                shards=args.shards,
                batch_size=args.batch_size,
                generation=serve_pb2.GenerationConfig(
                    max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed
                ),
            )
            work_dir = args.work_dir or args.out.with_name(f"{args.out.stem}.shards")
            model_dir = model_folder(args.model)
            table, result = run_batch(model_dir, args.data, request, work_dir, args.split)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.out.with_name(f".{args.out.name}.tmp")
            table.to_parquet(tmp, index=False)
            tmp.rename(args.out)
            shutil.rmtree(work_dir)
            print(json_format.MessageToJson(result, sort_keys=True))
            print(f"llmft serve batch: {len(table)} answers in {args.out}", file=sys.stderr)
        elif args.command == "publish":
            from llmft.core.datasets import read_manifest
            from llmft.serve.publish import publish, token_from_environment
            from llmft.serve.space import SpaceSettings

            publish_request = serve_pb2.PublishRequest(
                model_repo_id=args.model_repo_id,
                space_repo_id=args.space_repo_id,
                private=args.private,
                commit_message=args.commit_message,
                local_dir=str(args.dry_run or ""),
            )
            published = publish(
                args.model,
                publish_request,
                token_from_environment(),
                datasets=[read_manifest(d) for d in args.dataset],
                execution_id=args.execution_id,
                space=SpaceSettings(title=args.title or args.model_repo_id.split("/")[-1]),
            )
            print(json_format.MessageToJson(published, sort_keys=True))
        elif args.command == "space":
            from llmft.serve.space import SpaceSettings, write_space

            settings = SpaceSettings(
                model=args.model or "",
                model_repo_id=args.model_repo_id,
                grpc_target=args.grpc_target or "",
                title=args.title,
                description=args.description,
                max_new_tokens=args.max_new_tokens,
                temperature=args.temperature,
            )
            adapter = bool(args.model) and (Path(args.model) / "adapter_config.json").is_file()
            out = write_space(args.out, settings, adapter=adapter)
            print(f"llmft serve space: wrote {out}; start it with: cd {out} && python app.py")
        else:
            from llmft.serve.generator import Generator

            generator = Generator(model_folder(args.model), max_batch=1, max_queue=0)
            try:
                response = generator.generate(
                    serve_pb2.GenerateRequest(
                        messages=[serve_pb2.ChatMessage(role="user", content=args.question)],
                        generation=serve_pb2.GenerationConfig(max_new_tokens=args.max_new_tokens),
                    )
                )
            finally:
                generator.close()
            print(response.text)
    except USER_ERRORS as error:
        print(f"llmft serve {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
