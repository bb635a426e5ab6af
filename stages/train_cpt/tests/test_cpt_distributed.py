"""Every training method and precision, without and with ZeRO-2 (2 local processes under torchrun, gloo); DDP,
ZeRO-1, ZeRO-2, ZeRO-3 and CPU offload of the optimizer and of the parameters, each checked against a single-process
run of the same global batch."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from llmft.core.training import read_artifact
from llmft.proto.training.v1 import training_pb2 as T
from llmft.testing import run_distributed, write_text_dataset
from llmft.train_cpt.__main__ import main

METHODS = ["TRAINING_METHOD_FULL", "TRAINING_METHOD_LORA", "TRAINING_METHOD_QLORA"]
PRECISIONS = ["PRECISION_FP32", "PRECISION_BF16"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import os

    os.environ["LLMFT_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    return write_text_dataset(tmp_path_factory.mktemp("data") / "corpus", train_docs=120)


def config(
    path: Path,
    method: str,
    precision: str,
    zero: int,
    batch: int = 4,
    steps: int = 4,
    offload_optimizer: bool = False,
    offload_parameters: bool = False,
) -> Path:
    recipe = {
        "method": method,
        "precision": precision,
        "zero": {"stage": zero, "offload_optimizer": offload_optimizer, "offload_parameters": offload_parameters},
        "lora": {"rank": 4, "alpha": 8},
        "max_length": 64,
        "packing": True,
        "seed": 0,
        "schedule": {"learning_rate": 0.003, "max_steps": steps, "per_device_batch_size": batch},
    }
    path.write_text(yaml.safe_dump({"base_model": "llmft/tiny-llama", "recipe": recipe}))
    return path


def train(tmp_path: Path, data: Path, name: str, processes: int, expect: str = "", **recipe: Any) -> T.ModelArtifact:
    """Trains with the CLI (under torchrun for 2 processes); `expect`: what its stderr must say of the optimizer."""
    args = [
        "--config",
        str(config(tmp_path / f"{name}.yaml", **recipe)),
        "--data",
        str(data),
        "--out",
        str(tmp_path / name),
    ]
    if processes == 1:
        assert main(args) == 0
    else:
        output = run_distributed("llmft.train_cpt", args, nproc=processes)
        assert f"llmft: optimizer {expect}" in output, output[-3000:]
    artifact = read_artifact(tmp_path / name)
    assert artifact is not None
    return artifact


# One run per method and precision, each with or without ZeRO-2 across 2 processes: every method meets ZeRO once and
# bf16 once. (FULL in fp32 runs below, single and under every ZeRO stage.)
PATHS = [
    ("TRAINING_METHOD_FULL", "PRECISION_BF16", 0),
    ("TRAINING_METHOD_LORA", "PRECISION_FP32", 0),
    ("TRAINING_METHOD_LORA", "PRECISION_BF16", 2),
    ("TRAINING_METHOD_QLORA", "PRECISION_FP32", 0),
    ("TRAINING_METHOD_QLORA", "PRECISION_BF16", 2),
]


@pytest.mark.parametrize(("method", "precision", "zero"), PATHS)
def test_every_method_and_precision_trains_with_and_without_zero(
    tmp_path: Path, data: Path, method: str, precision: str, zero: int
) -> None:
    optimizer = "accelerate.DeepSpeedOptimizerWrapper > deepspeed.DeepSpeedZeroOptimizer > "
    artifact = train(tmp_path, data, "m", 2 if zero else 1, optimizer, method=method, precision=precision, zero=zero)
    assert artifact.metrics.steps == 4
    assert artifact.metrics.eval_after.loss < artifact.metrics.eval_before.loss
    assert artifact.precision == T.Precision.Value(precision)
    expected = T.ARTIFACT_FORMAT_MERGED if method == "TRAINING_METHOD_FULL" else T.ARTIFACT_FORMAT_ADAPTER
    assert artifact.format == expected


def max_difference(folder: Path, reference: dict) -> float:
    from safetensors.torch import load_file

    weights = load_file(str(folder / "model.safetensors"))
    assert sorted(weights) == sorted(reference)
    return max(float((weights[k].float() - reference[k]).abs().max()) for k in reference)


def test_ddp_and_every_zero_stage_match_a_single_process_run(tmp_path: Path, data: Path) -> None:
    """DDP and ZeRO-1/2/3 over 2 processes x 4 sequences take the same steps as 1 process x 8: the same updates, so
    the weights agree to float rounding (< 1e-4). Held-out loss agrees closely; HF averages per-batch losses and
    shards (padding the last batch) differently across 2 processes, so not to the last digit."""
    from safetensors.torch import load_file

    common: dict[str, Any] = dict(method="TRAINING_METHOD_FULL", precision="PRECISION_FP32", steps=6)
    single = train(tmp_path, data, "single", 1, zero=0, batch=8, **common)
    reference = load_file(str(tmp_path / "single" / "model.safetensors"))
    for name, zero, optimizer in (
        ("ddp", 0, "accelerate.AcceleratedOptimizer > torch.AdamW"),
        ("zero1", 1, "accelerate.DeepSpeedOptimizerWrapper > deepspeed.DeepSpeedZeroOptimizer > deepspeed.FusedAdam"),
        ("zero2", 2, "accelerate.DeepSpeedOptimizerWrapper > deepspeed.DeepSpeedZeroOptimizer > deepspeed.FusedAdam"),
        (
            "zero3",
            3,
            "accelerate.DeepSpeedOptimizerWrapper > deepspeed.DeepSpeedZeroOptimizer_Stage3 > deepspeed.FusedAdam",
        ),
    ):
        artifact = train(tmp_path, data, name, 2, optimizer, zero=zero, batch=4, **common)
        assert artifact.metrics.steps == 6, name
        assert artifact.metrics.eval_after.loss == pytest.approx(single.metrics.eval_after.loss, rel=1e-3), name
        assert max_difference(tmp_path / name, reference) < 1e-4, name


def test_cpu_offload_of_the_optimizer_and_of_the_parameters_matches_a_single_process_run(
    tmp_path: Path, data: Path
) -> None:
    """ZeRO-2 with the optimizer offloaded (deepspeed's CPU Adam) and ZeRO-3 with the parameters offloaded too.
    DeepSpeedCPUAdam is a different AdamW kernel (vectorised, its own order of operations), so the weights agree with
    torch's AdamW to 1e-3 after 6 steps at lr 3e-3, not to float rounding."""
    from safetensors.torch import load_file

    common: dict[str, Any] = dict(method="TRAINING_METHOD_FULL", precision="PRECISION_FP32", steps=6)
    single = train(tmp_path, data, "single", 1, zero=0, batch=8, **common)
    reference = load_file(str(tmp_path / "single" / "model.safetensors"))
    for name, zero, parameters, optimizer in (
        (
            "offload-optimizer",
            2,
            False,
            "deepspeed.DeepSpeedZeroOptimizer (optimizer states offloaded to the CPU) > deepspeed.DeepSpeedCPUAdam",
        ),
        (
            "offload-parameters",
            3,
            True,
            "deepspeed.DeepSpeedZeroOptimizer_Stage3 (optimizer states and parameters offloaded to the CPU) > "
            "deepspeed.DeepSpeedCPUAdam",
        ),
    ):
        artifact = train(
            tmp_path,
            data,
            name,
            2,
            "accelerate.DeepSpeedOptimizerWrapper > " + optimizer,
            zero=zero,
            batch=4,
            offload_optimizer=True,
            offload_parameters=parameters,
            **common,
        )
        assert artifact.metrics.eval_after.loss == pytest.approx(single.metrics.eval_after.loss, rel=1e-2), name
        assert max_difference(tmp_path / name, reference) < 1e-3, name
