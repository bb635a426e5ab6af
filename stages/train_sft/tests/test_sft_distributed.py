"""The SFT examples that only parsed before now run: ZeRO-2 over 2 processes (under torchrun, gloo), checked against
one process on the same global batch, and QLoRA (a 4-bit NF4 base, LoRA adapters, paged 8-bit AdamW)."""

from pathlib import Path

import pytest
import yaml

from llmft.core.training import read_artifact
from llmft.proto.training.v1 import training_pb2 as T
from llmft.testing import run_distributed, write_chat_dataset
from llmft.train_sft.__main__ import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMFT_CACHE", str(tmp_path / "cache"))


def test_the_zero2_example_trains_over_two_processes_as_one_process_does(tmp_path: Path) -> None:
    """ZeRO-2 with 2 x 4 packed rows per step against 1 process x 8 rows, in fp32: the same rows in each step (the
    4 steps stay inside the first epoch, whose batches are full on both processes; a last partial batch is padded
    differently across processes), and the loss averaged over the global batch's assistant tokens in both, so the
    weights agree to float rounding."""
    from safetensors.torch import load_file

    data = write_chat_dataset(tmp_path / "data", train_rows=600, eval_rows=8)
    config = yaml.safe_load((EXAMPLES / "zero2.yaml").read_text())
    config["recipe"]["precision"] = "PRECISION_FP32"  # one precision on every machine, for the comparison
    (tmp_path / "zero2.yaml").write_text(yaml.safe_dump(config))
    args = ["--data", str(data), "--max-steps", "4", "--checkpoint-dir"]
    output = run_distributed(
        "llmft.train_sft",
        ["--config", str(tmp_path / "zero2.yaml"), *args, str(tmp_path / "ckpt-2"), "--out", str(tmp_path / "zero2")],
    )
    assert "llmft: optimizer accelerate.DeepSpeedOptimizerWrapper > deepspeed.DeepSpeedZeroOptimizer >" in output
    zero2 = read_artifact(tmp_path / "zero2")
    assert zero2 is not None and zero2.metrics.steps == 4
    assert zero2.metrics.eval_after.loss < zero2.metrics.eval_before.loss

    config["recipe"]["zero"] = {"stage": 0}
    config["recipe"]["schedule"]["per_device_batch_size"] = 8
    (tmp_path / "single.yaml").write_text(yaml.safe_dump(config))
    assert (
        main(
            [
                "--config",
                str(tmp_path / "single.yaml"),
                *args,
                str(tmp_path / "ckpt-1"),
                "--out",
                str(tmp_path / "single"),
            ]
        )
        == 0
    )
    single = read_artifact(tmp_path / "single")
    assert single is not None
    reference = load_file(str(tmp_path / "single" / "model.safetensors"))
    weights = load_file(str(tmp_path / "zero2" / "model.safetensors"))
    difference = max(float((weights[k] - reference[k]).abs().max()) for k in reference)
    print("zero2 against one process: max weight difference", difference)
    assert difference < 1e-4
    assert zero2.metrics.eval_after.loss == pytest.approx(single.metrics.eval_after.loss, rel=1e-3)


def test_the_qlora_example_trains_an_adapter_on_a_4bit_base(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    data = write_chat_dataset(tmp_path / "data", train_rows=40, eval_rows=8)
    out = tmp_path / "qlora"
    assert (
        main(["--config", str(EXAMPLES / "qlora.yaml"), "--data", str(data), "--out", str(out), "--max-steps", "4"])
        == 0
    )
    assert "llmft: optimizer accelerate.AcceleratedOptimizer > bitsandbytes.AdamW (paged)" in capsys.readouterr().err
    artifact = read_artifact(out)
    assert artifact is not None and artifact.format == T.ARTIFACT_FORMAT_ADAPTER
    assert artifact.metrics.eval_after.loss < artifact.metrics.eval_before.loss
    assert artifact.trainable_parameters < artifact.parameters / 10
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["r"] == 16 and set(adapter["target_modules"]) >= {"q_proj", "v_proj", "down_proj"}
    assert not (out / "model.safetensors").exists()  # the 4-bit base is not saved: the adapter names it
