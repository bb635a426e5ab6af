from pathlib import Path

import pytest

from llmft.core.cli import load_training_request
from llmft.core.training import read_artifact
from llmft.proto.training.v1 import training_pb2 as T
from llmft.testing import write_chat_dataset, write_text_dataset
from llmft.train_sft.__main__ import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMFT_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("name", ["full.yaml", "lora.yaml", "qlora.yaml", "zero2.yaml"])
def test_example_recipes_parse_and_open_with_their_command(name: str) -> None:
    path = EXAMPLES / name
    command = "torchrun --nproc_per_node=2 -m llmft.train_sft" if name == "zero2.yaml" else "llmft train-sft"
    assert path.read_text().startswith(f"# {command} --config stages/train_sft/examples/{name}")
    request = load_training_request(path)
    assert request.base_model == "llmft/tiny-llama"
    assert request.recipe.method != T.TRAINING_METHOD_UNSPECIFIED


def test_cli_trains_from_an_example_and_refuses_the_wrong_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_chat_dataset(tmp_path / "data", train_rows=40, eval_rows=4)
    code = main(
        ["--config", str(EXAMPLES / "lora.yaml"), "--data", str(data), "--out", str(tmp_path / "m"), "--max-steps", "2"]
    )
    assert code == 0
    artifact = read_artifact(tmp_path / "m")
    assert artifact is not None and artifact.metrics.steps == 2
    assert artifact.format == T.ARTIFACT_FORMAT_MERGED  # lora.yaml merges the adapter
    chat = write_text_dataset(tmp_path / "chat", train_docs=10)
    capsys.readouterr()
    assert main(["--data", str(chat), "--out", str(tmp_path / "bad"), "--max-steps", "1"]) == 2
    assert "DATASET_KIND_RAW_TEXT" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
