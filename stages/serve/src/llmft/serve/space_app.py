"""A Gradio chat app (ChatInterface, streamed answers) for a model trained with llmft: the `app.py` of the Hugging Face
Space that `llmft serve space` writes. It needs only gradio, transformers and torch (plus peft for an adapter, grpcio
for the gRPC backend), so a Space runs it from its requirements.txt without llmft installed.

It answers in one of two ways:
- in process: loads the model (a local folder or a Hub id) with transformers and streams with TextIteratorStreamer;
- over gRPC: calls an llmft InferenceService (`llmft serve grpc`) and streams its GenerateStream replies.

Settings come from space_config.json beside this file, and these environment variables override them (a Space sets
them under Settings, Variables and secrets): LLMFT_MODEL, LLMFT_GRPC_TARGET, LLMFT_GRPC_TOKEN (a secret),
LLMFT_GRPC_ROOT_CERT (a PEM file), LLMFT_MAX_NEW_TOKENS, LLMFT_TEMPERATURE.

Generation stops when the visitor presses stop or leaves the page: Gradio closes the answer's generator, which stops
the model within a step (in process) or cancels the gRPC call; the Space's log notes each answer's tokens and whether it
was cut short.

Run it locally: `python app.py` in the Space folder (GRADIO_SERVER_PORT picks the port)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CONFIG_FILE = "space_config.json"


def load_settings(folder: Path = HERE) -> dict[str, Any]:
    path = folder / CONFIG_FILE
    settings: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    overrides = {
        "model": os.environ.get("LLMFT_MODEL"),
        "grpc_target": os.environ.get("LLMFT_GRPC_TARGET"),
        "grpc_root_cert": os.environ.get("LLMFT_GRPC_ROOT_CERT"),
        "max_new_tokens": os.environ.get("LLMFT_MAX_NEW_TOKENS"),
        "temperature": os.environ.get("LLMFT_TEMPERATURE"),
    }
    settings.update({key: value for key, value in overrides.items() if value})
    settings["max_new_tokens"] = int(settings.get("max_new_tokens") or 256)
    settings["temperature"] = float(settings.get("temperature") or 0.0)
    if not settings.get("model") and not settings.get("grpc_target"):
        raise SystemExit(f"{path}: no model and no grpc_target; set LLMFT_MODEL or LLMFT_GRPC_TARGET")
    return settings


def as_text(content: Any) -> str:
    """A chat message's content as text (Gradio gives a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text", ""))
    if isinstance(content, list | tuple):
        return "".join(as_text(part) for part in content)
    return ""


def conversation(message: str, history: list[dict[str, Any]]) -> list[dict[str, str]]:
    turns = [{"role": turn["role"], "content": as_text(turn.get("content"))} for turn in history]
    return [t for t in turns if t["role"] in ("system", "user", "assistant") and t["content"]] + [
        {"role": "user", "content": message}
    ]


class LocalModel:
    """The model in this process."""

    def __init__(self, model: str) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model)
        if Path(model, "adapter_config.json").is_file() or self._remote_adapter(model):
            from peft import AutoPeftModelForCausalLM

            self.model = AutoPeftModelForCausalLM.from_pretrained(model, dtype=torch.float32).merge_and_unload()
        else:
            self.model = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
        self.model.eval()
        self.lock = threading.Lock()  # one generation at a time: a Space has one small CPU

    @staticmethod
    def _remote_adapter(model: str) -> bool:
        if Path(model).exists():
            return False
        from huggingface_hub import file_exists

        return bool(file_exists(model, "adapter_config.json"))

    def stream(
        self, messages: list[dict[str, str]], max_new_tokens: int, temperature: float
    ) -> Generator[str, None, None]:
        """The answer's text pieces as they are generated. Closing this iterator early (the visitor pressed stop or
        left) stops the model at its next step, so the one CPU is free for the next visitor."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        encoded = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        )
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        sampling: dict[str, Any] = {"do_sample": False}
        if temperature > 0:
            sampling = {"do_sample": True, "temperature": temperature}
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        failure: list[BaseException] = []
        left = threading.Event()

        class Left(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), left.is_set(), dtype=torch.bool)

        def run() -> None:
            try:
                with self.lock, torch.no_grad():
                    output = self.model.generate(
                        **encoded,
                        streamer=streamer,
                        max_new_tokens=max_new_tokens,
                        pad_token_id=pad,
                        stopping_criteria=StoppingCriteriaList([Left()]),
                        **sampling,
                    )
                tokens = output.shape[-1] - encoded["input_ids"].shape[-1]
                cut = " (cut short: the visitor pressed stop or left)" if left.is_set() else ""
                print(f"llmft space: answered with {tokens} of at most {max_new_tokens} tokens{cut}", flush=True)
            except BaseException as error:  # shown to the user after the stream ends
                failure.append(error)
                streamer.end()

        threading.Thread(target=run, daemon=True).start()
        try:
            yield from streamer
        finally:
            left.set()
        if failure:
            raise failure[0]


class GrpcModel:
    """An llmft InferenceService."""

    def __init__(self, target: str, token: str = "", root_cert: str = "") -> None:
        import grpc

        sys.path.insert(0, str(HERE))  # the generated llmft.proto modules shipped in the Space folder
        from llmft.proto.serve.v1 import serve_pb2, serve_pb2_grpc

        self.messages = serve_pb2
        if root_cert:
            channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(Path(root_cert).read_bytes()))
        else:
            channel = grpc.insecure_channel(target)
        self.stub = serve_pb2_grpc.InferenceServiceStub(channel)
        self.metadata = [("authorization", f"Bearer {token}")] if token else []

    def stream(
        self, messages: list[dict[str, str]], max_new_tokens: int, temperature: float
    ) -> Generator[str, None, None]:
        S = self.messages
        request = S.GenerateStreamRequest(
            messages=[S.ChatMessage(role=m["role"], content=m["content"]) for m in messages],
            generation=S.GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature),
        )
        call = self.stub.GenerateStream(request, timeout=300, metadata=self.metadata)
        try:
            for piece in call:
                if piece.text_delta:
                    yield piece.text_delta
        finally:
            call.cancel()  # the visitor pressed stop or left: the service stops generating at its next step


def backend(settings: dict[str, Any]) -> LocalModel | GrpcModel:
    if settings.get("grpc_target"):
        return GrpcModel(
            settings["grpc_target"], os.environ.get("LLMFT_GRPC_TOKEN", ""), settings.get("grpc_root_cert") or ""
        )
    return LocalModel(settings["model"])


def build_demo(settings: dict[str, Any], model: LocalModel | GrpcModel) -> Any:
    import gradio as gr

    def respond(message: str, history: list[dict[str, Any]]) -> Iterator[str]:
        if not message.strip():
            yield "Type a message first."
            return
        answer = ""
        # Gradio closes this generator when the visitor presses stop or leaves; closing the model's stream with it
        # stops the generation.
        stream = model.stream(conversation(message, history), settings["max_new_tokens"], settings["temperature"])
        with contextlib.closing(stream) as pieces:
            for piece in pieces:
                answer += piece
                yield answer

    return gr.ChatInterface(
        respond,
        title=settings.get("title") or "llmft chat",
        description=settings.get("description") or None,
        examples=settings.get("examples") or None,
        cache_examples=False,
        api_name="respond",
    )


if __name__ == "__main__":
    settings = load_settings()
    build_demo(settings, backend(settings)).queue(default_concurrency_limit=4).launch()
