"""Publishing to the Hub with the real huggingface_hub client against a local stand-in of the Hub's HTTP API
(llmft.testing_hub, reached through HF_ENDPOINT): a dry run writes exactly what an upload sends; the model, its card
and the Space land in their repos; the token is sent to the Hub and appears nowhere else; the published model can
then be served by its Hub id."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llmft.core.training import build_artifact, model_fingerprint
from llmft.proto.training.v1 import training_pb2 as T
from llmft.testing import write_prompt_dataset
from llmft.testing_hub import LocalHub

TOKEN = "hf_llmftTestToken0123456789abcdefXYZ"
MODEL_REPO, SPACE_REPO = "llmft-tester/tiny-chat-model", "llmft-tester/tiny-chat"


@pytest.fixture(scope="module")
def sft_model(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny preset as an SFT stage would leave it: weights, tokenizer and an artifact record."""
    from transformers import AutoModelForCausalLM

    base = model_dir
    out = tmp_path_factory.mktemp("sft") / "model"
    shutil.copytree(base, out)
    (out / "checkpoint-2").mkdir()  # training state that must stay behind
    (out / "checkpoint-2" / "optimizer.pt").write_bytes(b"state")
    metrics = T.TrainingMetrics(
        eval_before=T.EvalMetrics(loss=4.5, perplexity=90.0),
        eval_after=T.EvalMetrics(loss=2.25, perplexity=9.5),
        steps=8,
    )
    build_artifact(
        model=AutoModelForCausalLM.from_pretrained(out),
        out_dir=out,
        fmt=T.ARTIFACT_FORMAT_MERGED,
        base_name="llmft/tiny-llama",
        base_dir=base,
        request=T.TrainingRequest(),
        stage="llmft.train_sft",
        stage_version="0.3.0",
        input_fingerprints=["sha256:chatdata"],
        metrics=metrics,
        chat_template="",
        precision=T.PRECISION_FP32,
    )
    return out


def llmft_serve(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`llmft serve ...` in a fresh process, so huggingface_hub reads HF_ENDPOINT at import as it would for a user."""
    return subprocess.run(
        [sys.executable, "-m", "llmft.serve", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def environment(hub: LocalHub, home: Path, token: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(home), HF_HUB_VERBOSITY="debug", HF_HUB_DISABLE_TELEMETRY="1")
    env["HF_HUB_DISABLE_XET"] = "1"  # the local Hub speaks LFS, not Xet (llmft.testing_hub)
    if token:
        env["HF_TOKEN"] = token
    return env


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_publish_dry_run_upload_and_serving_the_published_model(sft_model: Path, tmp_path: Path) -> None:
    data = write_prompt_dataset(tmp_path / "prompts", rows=4)
    common = ["publish", "--model", str(sft_model), "--model-repo-id", MODEL_REPO, "--space-repo-id", SPACE_REPO,
              "--dataset", str(data), "--execution-id", "exec-42", "--title", "tiny chat"]  # fmt: skip
    with LocalHub(TOKEN) as hub:
        # Without a token and without a dry run: a clear error, nothing sent.
        refused = llmft_serve(common, environment(hub, tmp_path / "home"))
        assert refused.returncode == 2 and "HF_TOKEN" in refused.stderr
        # The dry run contacts nothing and writes the two folders.
        dry = tmp_path / "dry"
        done = llmft_serve([*common, "--dry-run", str(dry)], environment(hub, tmp_path / "home"))
        assert done.returncode == 0, done.stderr
        assert hub.requests == []
        assert not (dry / "model" / "checkpoint-2").exists()
        card = (dry / "model" / "README.md").read_text(encoding="utf-8")
        meta = yaml.safe_load(card.split("---")[1])
        assert meta["library_name"] == "transformers" and "llmft" in meta["tags"]
        for fact in ("2.25", "llmft.train_sft 0.3.0", "sha256:chatdata", "exec-42", json.loads(
            (sft_model / "llmft_artifact.json").read_text())["fingerprint"], "DATASET_KIND_PROMPT"):  # fmt: skip
            assert fact in card, fact
        front = yaml.safe_load((dry / "space" / "README.md").read_text(encoding="utf-8").split("---")[1])
        assert front["sdk"] == "gradio" and front["app_file"] == "app.py" and front["models"] == [MODEL_REPO]
        assert json.loads((dry / "space" / "space_config.json").read_text())["model"] == MODEL_REPO

        # The upload sends exactly the dry run's files.
        home = tmp_path / "home"
        pushed = llmft_serve(common, environment(hub, home, TOKEN))
        assert pushed.returncode == 0, pushed.stderr
        result = json.loads(pushed.stdout[pushed.stdout.index("{") :])
        assert hub.files("model", MODEL_REPO) == tree(dry / "model")
        assert hub.files("space", SPACE_REPO) == tree(dry / "space")
        # The weights took the LFS path that real safetensors take (batch, PUT, commit by oid); the card went inline.
        assert hub.repos[("model", MODEL_REPO)].lfs_paths == {
            p for p in tree(dry / "model") if p.endswith(".safetensors")
        }
        assert hub.repos[("model", MODEL_REPO)].lfs_paths and any(r.method == "PUT" for r in hub.requests)
        assert hub.repos[("space", SPACE_REPO)].sdk == "gradio"
        assert result["modelUrl"].endswith(MODEL_REPO) and result["spaceUrl"].endswith(SPACE_REPO)
        assert result["modelCommit"] == hub.repos[("model", MODEL_REPO)].head[0]
        writes = [r for r in hub.requests if r.method == "POST"]
        assert writes and all(r.authorised for r in writes)
        # Publishing again is a new commit on the same repos, which then hold what this publish sent and nothing
        # else: a file of an earlier publish that this one lacks is deleted in the same commit.
        for kind, repo in (("model", MODEL_REPO), ("space", SPACE_REPO)):
            oid, files = hub.repos[(kind, repo)].head
            hub.repos[(kind, repo)].commits.append((oid + "-stale", "an earlier model", {**files, "old/x.bin": b"0"}))
        again = llmft_serve([*common, "--commit-message", "second"], environment(hub, home, TOKEN))
        assert again.returncode == 0, again.stderr
        assert len(hub.repos[("model", MODEL_REPO)].commits) == 3
        assert hub.files("model", MODEL_REPO) == tree(dry / "model")
        assert hub.files("space", SPACE_REPO) == tree(dry / "space")

        # The token went to the Hub and nowhere else: not the output (debug logging on), not a file.
        assert TOKEN not in pushed.stdout + pushed.stderr + again.stdout + again.stderr
        for folder in (dry, home, tmp_path / "prompts"):
            for path in folder.rglob("*"):
                assert not path.is_file() or TOKEN.encode() not in path.read_bytes(), path
        for kind, repo in (("model", MODEL_REPO), ("space", SPACE_REPO)):
            assert all(TOKEN.encode() not in content for content in hub.files(kind, repo).values())

        # The published model serves by its Hub id: the gRPC service downloads it and answers with the same weights.
        server = subprocess.Popen(
            [sys.executable, "-m", "llmft.serve", "grpc", "--model", MODEL_REPO, "--port", "0"],
            env=environment(hub, tmp_path / "serving-home"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert server.stdout is not None
            line = server.stdout.readline()
            failure = server.stderr.read() if server.poll() is not None and server.stderr else ""
            assert re.search(r"listening on 127\.0\.0\.1:\d+", line), line + failure
            assert model_fingerprint(sft_model) in line
            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=60) == 0
        finally:
            if server.poll() is None:
                server.kill()


def test_a_dry_run_replaces_an_earlier_dry_run_but_nothing_else(sft_model: Path, tmp_path: Path) -> None:
    """A pipeline run twice publishes twice: the second dry run replaces the first (as a second upload makes a new
    commit); a folder holding anything else is left alone."""
    from llmft.proto.serve.v1.serve_pb2 import PublishRequest
    from llmft.serve.publish import publish

    out = tmp_path / "hub"
    request = PublishRequest(model_repo_id=MODEL_REPO, space_repo_id=SPACE_REPO, local_dir=str(out))
    publish(sft_model, request, token="")
    (out / "model" / "stale.txt").write_text("from the first run")
    second = publish(sft_model, request, token="", execution_id="second")
    assert not (out / "model" / "stale.txt").exists() and "second" in (out / "model" / "README.md").read_text()
    assert second.model_url == (out / "model").resolve().as_uri()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub"]  # no staging folders left behind
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"holds other files than an earlier dry run \(notes.txt\)"):
        publish(sft_model, request, token="")
    assert (out / "notes.txt").read_text() == "mine" and (out / "model" / "README.md").is_file()


def test_publish_refuses_bad_repo_ids_before_anything_is_written(sft_model: Path, tmp_path: Path) -> None:
    with LocalHub(TOKEN) as hub:
        for bad in ("no-owner", "a/b/c", "bad id/x"):
            run = llmft_serve(
                ["publish", "--model", str(sft_model), "--model-repo-id", bad, "--dry-run", str(tmp_path / "dry")],
                environment(hub, tmp_path / "home", TOKEN),
            )
            assert run.returncode == 2 and "model_repo_id" in run.stderr, run.stderr
        assert not (tmp_path / "dry").exists() and hub.requests == []


TASK_SCRIPT = """
import sys
from pathlib import Path

from flytekit.types.directory import FlyteDirectory

from llmft.proto.serve.v1.serve_pb2 import AnswerExample, ModelAnswers, PublishRequest
from llmft.serve.tasks import publish_model, space_folder

model, out = sys.argv[1], Path(sys.argv[2])
answers = ModelAnswers(
    first_sentence_match=0.5,
    examples=[AnswerExample(question="What is 2 + 3?", reference="5.", answer="5.", first_sentence_matches=True)],
)
space = space_folder(model=FlyteDirectory(model), model_repo_id=sys.argv[3], title="tiny chat", answers=answers)
out.write_text(str(Path(space.download()) / "README.md"))
result = publish_model(
    model=FlyteDirectory(model),
    request=PublishRequest(model_repo_id=sys.argv[3], space_repo_id=sys.argv[4]),
    datasets=[],
    upstream=[],
    answers=answers,
    title="tiny chat",
)
print(result.model_commit)
"""


def test_publish_task_takes_the_token_from_a_flyte_secret(sft_model: Path, tmp_path: Path) -> None:
    """The Flyte tasks: the Space folder for a model, and publishing with the token from the secret group
    "huggingface", key "token" (flytekit reads it from _FSEC_HUGGINGFACE_TOKEN locally); no HF_TOKEN is set."""
    with LocalHub(TOKEN) as hub:
        env = environment(hub, tmp_path / "home")
        env.update(_FSEC_HUGGINGFACE_TOKEN=TOKEN, FLYTE_SDK_LOGGING_LEVEL="10")
        # A local cache of its own (~/.flyte/local-cache): an earlier run's entry would point at a temp folder that
        # has since gone, and the task would not run at all.
        env["HOME"] = str(tmp_path / "home")
        # The script runs from tmp_path: give it this process's import path, made absolute.
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(entry) for entry in sys.path if entry)
        readme = tmp_path / "space-readme-path"
        run = subprocess.run(
            [sys.executable, "-c", TASK_SCRIPT, str(sft_model), str(readme), MODEL_REPO, SPACE_REPO],
            env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        assert run.stdout.strip().splitlines()[-1] == hub.repos[("model", MODEL_REPO)].head[0]
        assert "app.py" in hub.files("space", SPACE_REPO)
        front = yaml.safe_load(Path(readme.read_text()).read_text(encoding="utf-8").split("---")[1])
        assert front["models"] == [MODEL_REPO] and front["sdk"] == "gradio"
        assert TOKEN not in run.stdout + run.stderr  # flytekit's debug logging included
        logs = "".join(line.strip() for line in (run.stdout + run.stderr).splitlines())  # rich wraps log lines
        decks = re.findall(r"file://(\S+?deck\.html)", logs)
        assert any(MODEL_REPO in Path(deck).read_text(encoding="utf-8") for deck in decks)  # the publish Deck
        for deck in decks:
            assert TOKEN not in Path(deck).read_text(encoding="utf-8")
        for path in tmp_path.rglob("*"):
            assert not path.is_file() or TOKEN.encode() not in path.read_bytes(), path
