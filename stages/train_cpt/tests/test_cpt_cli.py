from pathlib import Path

import pytest

from llmft.core.cli import load_training_request
from llmft.core.training import read_artifact
from llmft.proto.training.v1 import training_pb2 as T
from llmft.testing import write_chat_dataset, write_text_dataset
from llmft.train_cpt.__main__ import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMFT_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("name", ["full.yaml", "lora.yaml", "qlora.yaml", "zero2.yaml"])
def test_example_recipes_parse_and_open_with_their_command(name: str) -> None:
    path = EXAMPLES / name
    command = "torchrun --nproc_per_node=2 -m llmft.train_cpt" if name == "zero2.yaml" else "llmft train-cpt"
    assert path.read_text().startswith(f"# {command} --config stages/train_cpt/examples/{name}")
    request = load_training_request(path)
    assert request.base_model == "llmft/tiny-llama"
    assert request.recipe.method != T.TRAINING_METHOD_UNSPECIFIED


def test_cli_trains_from_an_example_and_refuses_the_wrong_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_text_dataset(tmp_path / "data", train_docs=40)
    code = main(
        ["--config", str(EXAMPLES / "lora.yaml"), "--data", str(data), "--out", str(tmp_path / "m"), "--max-steps", "2"]
    )
    assert code == 0
    artifact = read_artifact(tmp_path / "m")
    assert artifact is not None and artifact.metrics.steps == 2
    assert artifact.format == T.ARTIFACT_FORMAT_MERGED  # lora.yaml merges the adapter
    chat = write_chat_dataset(tmp_path / "chat", train_rows=4, eval_rows=2)
    capsys.readouterr()
    assert main(["--data", str(chat), "--out", str(tmp_path / "bad"), "--max-steps", "1"]) == 2
    assert "DATASET_KIND_CHAT" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_the_artifact_names_the_final_folder_and_killed_runs_leftovers_are_removed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The uri in llmft_artifact.json and on stdout is --out itself (not the staging folder it was written in). The
    staging folder a killed run left (its process gone, or an older llmft's without an owner) is removed by the next
    run into the same --out, which says so; a live run's is kept."""
    import json
    import os
    import socket
    import subprocess
    import sys
    import time

    from llmft.core.staging import OWNER_FILE as STAGING_OWNER

    data = write_text_dataset(tmp_path / "data", train_docs=40)
    out = tmp_path / "runs" / "m"
    out.parent.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        host = socket.gethostname()
        for name, pid in ((".m-killed", dead.pid), (".m-running", live.pid)):
            (out.parent / name / "output").mkdir(parents=True)
            (out.parent / name / STAGING_OWNER).write_text(json.dumps({"host": host, "pid": pid}))
        (out.parent / ".m-old").mkdir()
        old = time.time() - 3600
        os.utime(out.parent / ".m-old", (old, old))

        capsys.readouterr()
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text("max_length: 64\n")  # the tiny dataset holds fewer than the default 1024 tokens of eval
        assert main(["--config", str(recipe), "--data", str(data), "--out", str(out), "--max-steps", "1"]) == 0
        captured = capsys.readouterr()
        assert sorted(p.name for p in out.parent.iterdir()) == [".m-running", "m"]
        assert f"removed {out.parent / '.m-killed'}" in captured.err and ".m-old" in captured.err
    finally:
        live.kill()
    artifact = read_artifact(out)
    assert artifact is not None and artifact.uri == str(out.resolve())
    printed = json.loads(captured.out[captured.out.rindex("\n{\n") :])  # the artifact, printed last
    assert printed["uri"] == str(out.resolve()) and Path(printed["uri"], "model.safetensors").is_file()


def test_an_out_path_that_is_a_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_text_dataset(tmp_path / "data", train_docs=10, eval_docs=2)
    (tmp_path / "taken").write_text("mine")
    assert main(["--data", str(data), "--out", str(tmp_path / "taken"), "--max-steps", "1"]) == 2
    assert "taken: is a file, not an output folder" in capsys.readouterr().err
    assert (tmp_path / "taken").read_text() == "mine"
