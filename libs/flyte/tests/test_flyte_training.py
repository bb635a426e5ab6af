import os

import pytest

from llmft.flyte.training import LAUNCHER_VARIABLES, leave_single_worker_launch, training_overrides
from llmft.proto.common.v1.provenance_pb2 import ComputeResources
from llmft.proto.training.v1.training_pb2 import DistributedConfig


@pytest.fixture
def single_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in LAUNCHER_VARIABLES:
        monkeypatch.setenv(name, "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("MASTER_PORT", "29500")


def test_a_single_worker_forgets_the_launcher_unless_zero_needs_it(single_worker: None) -> None:
    assert not leave_single_worker_launch(zero_stage=2)
    assert os.environ["LOCAL_RANK"] == "0"
    assert leave_single_worker_launch(zero_stage=0)
    assert not [name for name in LAUNCHER_VARIABLES if name in os.environ]


def test_several_workers_keep_the_launcher(single_worker: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not leave_single_worker_launch(zero_stage=0)
    assert os.environ["WORLD_SIZE"] == "2"


def test_overrides_carry_the_request_and_refuse_what_cannot_run() -> None:
    overrides = training_overrides(
        ComputeResources(cpu="8", memory="32Gi", gpu=2, accelerator="nvidia-l4"),
        DistributedConfig(nnodes=1, nproc_per_node=2),
    )
    assert (overrides["requests"].cpu, overrides["requests"].mem, overrides["requests"].gpu) == ("8", "32Gi", 2)
    assert overrides["accelerator"].to_flyte_idl().device == "nvidia-l4"
    assert overrides["task_config"].nproc_per_node == 2
    assert training_overrides(ComputeResources(), DistributedConfig()) == {}
    with pytest.raises(ValueError, match="resources.accelerator: 'nvidia-l4' needs resources.gpu >= 1"):
        training_overrides(ComputeResources(accelerator="nvidia-l4"), DistributedConfig())
    with pytest.raises(ValueError, match="distributed.nnodes: 2 nodes need a training task defined with"):
        training_overrides(ComputeResources(), DistributedConfig(nnodes=2))
