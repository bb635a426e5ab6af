import os

import pytest

from llmft.flyte.training import (
    LAUNCHER_VARIABLES,
    launched,
    launched_task_resolver,
    leave_single_worker_launch,
    training_overrides,
)
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


def test_overrides_carry_the_requested_resources() -> None:
    overrides = training_overrides(ComputeResources(cpu="8", memory="32Gi", gpu=2, accelerator="nvidia-l4"))
    assert (overrides["requests"].cpu, overrides["requests"].mem, overrides["requests"].gpu) == ("8", "32Gi", 2)
    assert overrides["accelerator"].to_flyte_idl().device == "nvidia-l4"
    assert training_overrides(ComputeResources()) == {}
    with pytest.raises(ValueError, match="resources.accelerator: .nvidia-l4. needs resources.gpu >= 1"):
        training_overrides(ComputeResources(accelerator="nvidia-l4"))
    with pytest.raises(ValueError, match="serve_resources.accelerator: 'nvidia-l4' needs serve_resources.gpu >= 1"):
        training_overrides(ComputeResources(accelerator="nvidia-l4"), "serve_resources")


def test_a_launch_shape_is_its_own_task_that_a_container_finds_again() -> None:
    """Several nodes compile into a PyTorchJob; the container's resolver rebuilds the same task from the loader
    arguments; the module-level task is never changed."""
    from collections import OrderedDict

    from flytekit.configuration import ImageConfig, SerializationSettings
    from flytekit.tools.translator import get_serializable

    from llmft.train_sft.tasks import train

    assert launched(train, DistributedConfig(nnodes=1, nproc_per_node=1)) is train
    assert launched(train, DistributedConfig()) is train
    many = launched(train, DistributedConfig(nnodes=4, nproc_per_node=8))
    assert many is launched(train, DistributedConfig(nnodes=4, nproc_per_node=8))
    assert many.name == "llmft.train_sft.tasks.train_4x8" and many.task_type == "pytorch"
    assert (train.task_type, train.task_config.nnodes, train.task_config.nproc_per_node) == ("python-task", 1, 1)
    one_node = launched(train, DistributedConfig(nnodes=1, nproc_per_node=2))
    assert one_node.task_type == "python-task" and one_node.task_config.nproc_per_node == 2
    assert many.metadata.cache_version == train.metadata.cache_version and many.container_image == train.container_image

    settings = SerializationSettings(image_config=ImageConfig.auto_default_image())
    template = get_serializable(OrderedDict(), settings, many).template
    assert template.custom["workerReplicas"]["replicas"] == 4
    assert template.custom["elasticConfig"]["nprocPerNode"] == 8
    args = list(template.container.args)
    assert args[args.index("--resolver") + 1] == "llmft.flyte.training.launched_task_resolver"
    assert launched_task_resolver.load_task(args[args.index("--") + 1 :]) is many
