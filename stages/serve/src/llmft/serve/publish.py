"""Publishing a trained model to the Hugging Face Hub: the model folder (weights or adapter, tokenizer, generation
config, llmft's artifact record) with a model card to a model repo, and the Gradio chat app (llmft.serve.space) that
answers with it to a Space repo.

The card carries the metrics, the datasets and the lineage: every stage's name, version and input fingerprints, and
the execution that made it. The token comes from the caller (the environment's HF_TOKEN, or a Flyte secret in the
task) and goes to huggingface_hub only: it is never printed, logged or written. A dry run (`PublishRequest.local_dir`)
writes exactly the files that would go up, and contacts nothing."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from llmft.core import fingerprint as fp
from llmft.core.training import ARTIFACT_FILE, model_fingerprint, read_artifact
from llmft.proto.common.v1 import provenance_pb2
from llmft.proto.data.v1 import dataset_pb2
from llmft.proto.serve.v1 import serve_pb2
from llmft.proto.training.v1 import training_pb2
from llmft.serve import STAGE, __version__
from llmft.serve.space import SpaceSettings, write_space

log = logging.getLogger(__name__)
TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
# Files of a model folder that stay behind: training state and scratch.
SKIPPED = ("checkpoint-", "optimizer", "scheduler", "rng_state", "trainer_state", "training_args")


class PublishError(ValueError):
    """A publish request that cannot be carried out; the message names the field."""


def token_from_environment(environ: Mapping[str, str] = os.environ) -> str:
    return next((environ[name] for name in TOKEN_VARIABLES if environ.get(name)), "")


def repo_id_problems(request: serve_pb2.PublishRequest) -> list[str]:
    """What is wrong with the request's Hub repo ids, each naming its field, by huggingface_hub's own validator: the
    pipeline's config check asks this before anything runs, publishing again before it uploads."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    problems = []
    for name in ("model_repo_id", "space_repo_id"):
        value = getattr(request, name)
        if name == "model_repo_id" and not value:
            problems.append("model_repo_id: empty; give the Hub repo to publish to, e.g. org/tiny-llama-sft")
        elif value:
            try:
                validate_repo_id(value)
            except HFValidationError as error:
                problems.append(f"{name}: {value!r} is not a Hub repo id: {error}")
                continue
            if "/" not in value:
                problems.append(f"{name}: {value!r} needs its owner, e.g. org/{value}")
    return problems


def check_publish_request(request: serve_pb2.PublishRequest, token: str) -> None:
    problems = repo_id_problems(request)
    if problems:
        raise PublishError("; ".join(problems))
    if not request.local_dir and not token:
        raise PublishError(
            f"token: none found; set {TOKEN_VARIABLES[0]} (or the Flyte secret) or give local_dir for a dry run"
        )


def _hub_id(name: str) -> bool:
    """A Hub model id (owner/name), not an llmft preset, a lineage string or a path."""
    return (
        name.count("/") == 1 and "+" not in name and "@" not in name and not name.startswith((".", "/", "~", "llmft/"))
    )


def model_card(
    artifact: training_pb2.ModelArtifact,
    request: serve_pb2.PublishRequest,
    datasets: Iterable[dataset_pb2.DatasetManifest] = (),
    upstream: Iterable[training_pb2.ModelArtifact] = (),
    metrics: Mapping[str, float] | None = None,
    execution_id: str = "",
    answers: serve_pb2.ModelAnswers | None = None,
) -> str:
    """The README.md of the model repo: Hub metadata, then metrics, held-out answers, datasets and lineage (every
    stage's version, inputs, held-out loss and training time) as tables."""
    from huggingface_hub import ModelCard, ModelCardData

    datasets, upstream = list(datasets), list(upstream)
    adapter = artifact.format == training_pb2.ARTIFACT_FORMAT_ADAPTER
    data = ModelCardData(
        library_name="peft" if adapter else "transformers",
        pipeline_tag="text-generation",
        tags=["llmft", artifact.provenance.stage or "llmft"],
        base_model=artifact.base_model if _hub_id(artifact.base_model) else None,
    )
    m = artifact.metrics
    rows = {
        "held-out loss before": m.eval_before.loss,
        "held-out loss after": m.eval_after.loss,
        "held-out perplexity after": m.eval_after.perplexity,
        "train loss": m.train_loss,
        "steps": m.steps,
        "train tokens": m.train_tokens,
        **dict(metrics or {}),
    }
    metric_lines = "\n".join(f"| {k} | {v:.4g} |" for k, v in rows.items() if v)
    dataset_lines = "\n".join(
        f"| {d.name} | {dataset_pb2.DatasetKind.Name(d.kind)} | "
        f"{sum(s.rows for s in d.splits)} | `{d.fingerprint}` |"
        for d in datasets
    )
    chain = upstream + [artifact]
    lineage_lines = "\n".join(
        f"| {a.provenance.stage} {a.provenance.stage_version} | {a.base_model} | `{a.fingerprint}` | "
        f"{', '.join(f'`{i}`' for i in a.provenance.input_fingerprints)} | "
        f"{a.metrics.eval_after.loss:.4g} | {a.metrics.train_seconds:.1f} |"
        for a in chain
    )
    held_out = f"## Held-out answers\n\n{answers_markdown(answers)}\n\n" if answers and answers.examples else ""
    body = f"""# {request.model_repo_id}

A causal language model fine-tuned with llmft from `{artifact.base_model}`
({artifact.model_family}, {artifact.parameters:,} parameters, {"a LoRA adapter" if adapter else "full weights"}).

## Use

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{request.model_repo_id}")
model = AutoModelForCausalLM.from_pretrained("{request.model_repo_id}")
```

## Metrics

| metric | value |
|---|---|
{metric_lines}

{held_out}## Datasets

| name | kind | rows | fingerprint |
|---|---|---|---|
{dataset_lines}

## Lineage

| stage | from | model fingerprint | input fingerprints | held-out loss | train seconds |
|---|---|---|---|---|---|
{lineage_lines}

Tokenizer fingerprint `{artifact.tokenizer_fingerprint}`; published by llmft.serve {__version__}
{f"in execution `{execution_id}`" if execution_id else "outside a Flyte execution"}.
"""
    return str(ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n" + body))


def answers_markdown(answers: serve_pb2.ModelAnswers) -> str:
    """The held-out answer figure and its examples, for the card and the Space's README."""
    lines = [summary_sentence(answers), ""]
    for example in answers.examples:
        verdict = "matches" if example.first_sentence_matches else "differs"
        lines += [
            f"- **Q:** {example.question}",
            f"  - reference: {_one_line(example.reference)}",
            f"  - answer ({verdict}): {_one_line(example.answer)}",
        ]
    return "\n".join(lines)


def summary_sentence(answers: serve_pb2.ModelAnswers) -> str:
    return (
        f"On held-out questions, the first sentence of {answers.first_sentence_match:.0%} of this model's greedy "
        f"answers equals the reference's first sentence ({answers.exact_match:.0%} of answers match in full)."
    )


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def stage_model(model_dir: Path, card: str, out: Path) -> Path:
    """The model folder as it goes up: its files less training state, with the card as README.md."""
    out.mkdir(parents=True)
    for path in sorted(Path(model_dir).rglob("*")):
        relative = path.relative_to(model_dir)
        if path.is_dir() or any(part.startswith(".") for part in relative.parts):
            continue
        if relative.parts[0].startswith(SKIPPED) or relative.name == "README.md":
            continue
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    (out / "README.md").write_text(card, encoding="utf-8")
    return out


def publish(
    model_dir: Path,
    request: serve_pb2.PublishRequest,
    token: str,
    datasets: Iterable[dataset_pb2.DatasetManifest] = (),
    upstream: Iterable[training_pb2.ModelArtifact] = (),
    metrics: Mapping[str, float] | None = None,
    execution_id: str = "",
    space: SpaceSettings | None = None,
    answers: serve_pb2.ModelAnswers | None = None,
) -> serve_pb2.PublishResult:
    """Uploads the model (and the Space, when `space_repo_id` is set), or writes them under `local_dir`."""
    check_publish_request(request, token)
    model_dir = Path(model_dir)
    artifact = read_artifact(model_dir)
    if artifact is None:
        raise PublishError(f"model: {model_dir} has no {ARTIFACT_FILE}; publish a folder written by an llmft stage")
    datasets = list(datasets)
    card = model_card(artifact, request, datasets, upstream, metrics, execution_id, answers)
    adapter = artifact.format == training_pb2.ARTIFACT_FORMAT_ADAPTER
    fingerprint = model_fingerprint(model_dir)
    provenance = fp.provenance(STAGE, __version__, request, [fingerprint] + [d.fingerprint for d in datasets])
    with tempfile.TemporaryDirectory(prefix="llmft-publish-") as scratch:
        staged_model = stage_model(model_dir, card, Path(scratch) / "model")
        staged_space = None
        if request.space_repo_id:
            settings = space or SpaceSettings()
            settings.model, settings.model_repo_id = request.model_repo_id, request.model_repo_id
            settings.grpc_target = ""
            staged_space = write_space(Path(scratch) / "space", settings, adapter=adapter)
        if request.local_dir:
            return _write_dry_run(Path(request.local_dir), staged_model, staged_space, provenance)
        return _upload(request, token, staged_model, staged_space, provenance, fingerprint)


DRY_RUN_FOLDERS = ("model", "space")


def _write_dry_run(
    out: Path, model: Path, space: Path | None, provenance: provenance_pb2.Provenance
) -> serve_pb2.PublishResult:
    # A folder that holds an earlier dry run (only model/ and space/) is replaced whole, as a second upload makes a
    # new commit; any other content is the user's and is never overwritten.
    others = sorted(p.name for p in out.iterdir() if p.name not in DRY_RUN_FOLDERS) if out.is_dir() else []
    if others or (out.exists() and not out.is_dir()):
        raise FileExistsError(
            f"local_dir: {out} holds other files than an earlier dry run ({', '.join(others) or out.name}); "
            "nothing was overwritten"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    shutil.copytree(model, staging / "model")
    if space is not None:
        shutil.copytree(space, staging / "space")
    if out.exists():
        earlier = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        out.rename(earlier / out.name)
        staging.rename(out)
        shutil.rmtree(earlier)
    else:
        staging.rename(out)
    log.info("publish: dry run, wrote %s", out)
    return serve_pb2.PublishResult(
        model_url=(out / "model").resolve().as_uri(),
        space_url=(out / "space").resolve().as_uri() if space is not None else "",
        provenance=provenance,
    )


def _upload(
    request: serve_pb2.PublishRequest,
    token: str,
    model: Path,
    space: Path | None,
    provenance: provenance_pb2.Provenance,
    fingerprint: str,
) -> serve_pb2.PublishResult:
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    message = request.commit_message or f"llmft: model {fingerprint.removeprefix('sha256:')[:12]}"
    model_url = api.create_repo(request.model_repo_id, private=request.private, exist_ok=True)
    # A publish replaces what the repo held: files of an earlier model or Space that this one lacks go in the same
    # commit (huggingface_hub keeps .gitattributes).
    model_commit = api.upload_folder(
        repo_id=request.model_repo_id, folder_path=model, commit_message=message, delete_patterns="*"
    )
    log.info("publish: model %s at commit %s", model_url, model_commit.oid)
    result = serve_pb2.PublishResult(model_url=str(model_url), model_commit=model_commit.oid, provenance=provenance)
    if space is not None:
        space_url = api.create_repo(
            request.space_repo_id, repo_type="space", space_sdk="gradio", private=request.private, exist_ok=True
        )
        space_commit = api.upload_folder(
            repo_id=request.space_repo_id,
            repo_type="space",
            folder_path=space,
            commit_message=message,
            delete_patterns="*",
        )
        log.info("publish: Space %s at commit %s", space_url, space_commit.oid)
        result.space_url, result.space_commit = str(space_url), space_commit.oid
    return result


def result_html(result: serve_pb2.PublishResult) -> str:
    """The Deck of a publish: where the model and the Space went, at which commits."""
    from llmft.core import decks

    rows = [{"repo": "model", "url": result.model_url, "commit": result.model_commit}]
    if result.space_url:
        rows.append({"repo": "space", "url": result.space_url, "commit": result.space_commit})
    return decks.page(decks.table(rows, title="Published"))
