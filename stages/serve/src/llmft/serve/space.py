"""Writing the Gradio chat app as a Hugging Face Space folder: app.py (llmft.serve.space_app, verbatim),
space_config.json (which model, or which gRPC service, and the sampling defaults), requirements.txt pinned to the
versions this stage runs with, and README.md whose front matter is the Space's configuration (`sdk: gradio`,
`app_file`, `models`). For the gRPC backend the folder also carries the generated llmft.proto modules it imports."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import yaml

from llmft.core.files import load_json
from llmft.serve import __version__

APP_SOURCE = Path(__file__).with_name("space_app.py")
CONFIG_FILE = "space_config.json"  # what space_app.py reads beside itself
# The generated modules the gRPC backend imports, as paths inside the llmft.proto package.
PROTO_MODULES = ("serve/v1/serve_pb2.py", "serve/v1/serve_pb2_grpc.py", "common/v1/provenance_pb2.py")


@dataclass
class SpaceSettings:
    """What the Space answers with and how.

    model: a Hub model id for a published Space, or a local folder for a local launch.
    model_repo_id: the Hub model the README's front matter links (defaults to `model` when that is a Hub id).
    grpc_target: host:port of an llmft InferenceService; the app then calls it instead of loading the model."""

    model: str = ""
    model_repo_id: str = ""
    grpc_target: str = ""
    title: str = "llmft chat"
    description: str = ""
    max_new_tokens: int = 256
    temperature: float = 0.0
    examples: list[str] = field(default_factory=list)


def _pin(package: str) -> str:
    """`package==<version>` at the version this stage runs with, without a local label: the Hub builds a Space with
    plain pip from PyPI, which has `torch==2.13.0` but not this machine's `2.13.0+cpu`."""
    return f"{package}=={metadata.version(package).split('+')[0]}"


def requirements(settings: SpaceSettings, adapter: bool) -> list[str]:
    if settings.grpc_target:
        return [_pin("gradio"), _pin("grpcio"), _pin("protobuf")]
    packages = ["gradio", "transformers", "torch", "huggingface_hub", "safetensors"] + (["peft"] if adapter else [])
    return [_pin(p) for p in packages]


def front_matter(settings: SpaceSettings) -> dict[str, object]:
    """The Space's configuration block (https://huggingface.co/docs/hub/spaces-config-reference)."""
    config: dict[str, object] = {
        "title": settings.title[:30],
        "emoji": "💬",
        "colorFrom": "indigo",
        "colorTo": "blue",
        "sdk": "gradio",
        "sdk_version": metadata.version("gradio"),
        "app_file": "app.py",
        # The Python the pins were tested with (the Hub's default is older).
        "python_version": f"{sys.version_info.major}.{sys.version_info.minor}",
        "pinned": False,
        # The Hub allows 60 characters; the (markdown) description goes into the README body and the app instead.
        "short_description": f"Chat with {settings.model_repo_id or 'an llmft model'}"[:60],
        "tags": ["llmft", "chat"],
    }
    if settings.model_repo_id:
        config["models"] = [settings.model_repo_id]
    return config


def readme(settings: SpaceSettings) -> str:
    matter = yaml.safe_dump(front_matter(settings), sort_keys=False, allow_unicode=True)
    backend = (
        f"It calls the llmft gRPC service at `{settings.grpc_target}`."
        if settings.grpc_target
        else f"It runs `{settings.model_repo_id or settings.model}` in the Space with transformers."
    )
    return (
        f"---\n{matter}---\n\n# {settings.title}\n\n{settings.description}\n\n{backend} Answers stream as they are "
        f"generated (greedy when the temperature is 0).\n\nWritten by llmft-serve {__version__}. Run it locally with "
        "`pip install -r requirements.txt && python app.py`; `LLMFT_MODEL` and `LLMFT_GRPC_TARGET` override "
        "space_config.json.\n"
    )


def load_local_model(space_dir: Path, model_dir: Path) -> Path:
    """Points a written Space folder at a model folder on this machine (a local launch of a run's model, `python
    app.py` there): its space_config.json's `model` becomes `model_dir`, replaced whole. Returns the config file."""
    config_file = Path(space_dir) / CONFIG_FILE
    config = load_json(config_file)
    config["model"] = str(Path(model_dir).resolve())
    staging = config_file.with_name(f".{CONFIG_FILE}.new")
    staging.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    staging.replace(config_file)
    return config_file


def write_space(out_dir: Path, settings: SpaceSettings, adapter: bool = False) -> Path:
    """Writes the Space folder `out_dir` (which must not exist or be empty), whole or not at all."""
    from llmft import proto

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir}: exists and is not empty; nothing was overwritten")
    if not settings.model and not settings.grpc_target:
        raise ValueError("space: give a model (Hub id or folder) or a grpc_target")
    if not settings.model_repo_id and settings.model and not Path(settings.model).exists():
        settings.model_repo_id = settings.model
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        shutil.copyfile(APP_SOURCE, staging / "app.py")
        config = {
            "model": settings.model,
            "grpc_target": settings.grpc_target,
            "title": settings.title,
            "description": settings.description,
            "max_new_tokens": settings.max_new_tokens,
            "temperature": settings.temperature,
            "examples": settings.examples,
        }
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        (staging / "requirements.txt").write_text("\n".join(requirements(settings, adapter)) + "\n", encoding="utf-8")
        (staging / "README.md").write_text(readme(settings), encoding="utf-8")
        if settings.grpc_target:
            root = Path(proto.__file__).parent
            for module in PROTO_MODULES:
                target = staging / "llmft" / "proto" / module
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(root / module, target)
            for folder in [p for p in (staging / "llmft" / "proto").rglob("*") if p.is_dir()] + [
                staging / "llmft" / "proto"
            ]:
                (folder / "__init__.py").touch()
        if out_dir.exists():
            out_dir.rmdir()
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir
