"""The body and launch of llmft's training tasks: an Elastic launch sized from the request, resource and accelerator
overrides, Trainer checkpoints mirrored into Flyte's checkpoint store from every node and restored on a retry, and the
task body every training stage shares (fetch inputs, restore, call the stage's core `train`, publish its Deck)."""

from __future__ import annotations

import copy
import importlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flytekit import current_context
from flytekit.core.base_task import TaskResolverMixin
from flytekit.types.directory import FlyteDirectory

from llmft.core.distributed import under_launcher, world_size
from llmft.core.training import copy_checkpoints, latest_checkpoint
from llmft.flyte.decks import publish
from llmft.flyte.types import TrainedModel, download_dataset
from llmft.proto.common.v1.provenance_pb2 import ComputeResources
from llmft.proto.data.v1.dataset_pb2 import DatasetManifest
from llmft.proto.training.v1.training_pb2 import DistributedConfig


def node_rank() -> int:
    return int(os.environ.get("GROUP_RANK", os.environ.get("NODE_RANK", "0")))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


# What torch elastic sets in a worker that makes transformers/accelerate start a process group and wrap the model.
LAUNCHER_VARIABLES = (
    "LOCAL_RANK",
    "RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
)


def leave_single_worker_launch(zero_stage: int) -> bool:
    """In the only worker of an Elastic launch (world size 1), forgets the launcher so the Trainer trains a plain
    process: a one-process DDP wrapper costs ~10% of the step on CPU (bucketed gradient copies) and buys nothing. Kept
    when ZeRO is on (deepspeed needs its process group even alone). Returns whether it left."""
    if not under_launcher() or world_size() != 1 or zero_stage > 0:
        return False
    for name in LAUNCHER_VARIABLES:
        os.environ.pop(name, None)
    return True


class FlyteCheckpoints:
    """A transformers TrainerCallback that mirrors every Trainer checkpoint into the task's Flyte checkpoint, so a
    retried task resumes where the failed attempt stopped. Unlike transformers' FlyteCallback (world rank 0 only), every
    node uploads its own files (ZeRO shards and RNG states of each rank) under `node-<rank>/`, after all of its ranks
    finished writing."""

    def __init__(self, checkpoint: Any = None) -> None:
        self.checkpoint = checkpoint if checkpoint is not None else current_context().checkpoint

    def __getattr__(self, name: str) -> Any:
        # TrainerCallback's other events: nothing to do.
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()
        if local_rank() != 0:
            return
        latest = latest_checkpoint(Path(args.output_dir))
        if latest is None:
            return
        with tempfile.TemporaryDirectory(prefix="llmft-flyte-checkpoint-") as staging:
            target = Path(staging) / f"node-{node_rank()}" / latest.name
            shutil.copytree(latest, target)
            self.checkpoint.save(Path(staging))


def restore_flyte_checkpoints(checkpoint_dir: Path, checkpoint: Any = None) -> Path | None:
    """Copies this node's checkpoints from the previous attempt's Flyte checkpoint (if any) into `checkpoint_dir`;
    returns the latest checkpoint there, which the Trainer resumes from."""
    checkpoint = checkpoint if checkpoint is not None else current_context().checkpoint
    if checkpoint is not None and checkpoint.prev_exists():
        restored = checkpoint.restore()
        if restored is not None:
            return copy_checkpoints(Path(restored) / f"node-{node_rank()}", checkpoint_dir)
    return latest_checkpoint(checkpoint_dir) if Path(checkpoint_dir).is_dir() else None


def elastic(nproc_per_node: int = 1, nnodes: int = 1) -> Any:
    """The Elastic launch of llmft's training tasks: `nnodes` nodes of `nproc_per_node` torch elastic workers. One node
    runs in a plain pod; several become a PyTorchJob (kubeflow training operator) with that many workers. A single
    worker is forked from the task's process, which skips re-importing torch and transformers: on a 1-minute CPU run
    the task then costs well under a second more than a bare script instead of ~8 s (bench/train_throughput.py).
    Several workers are spawned: forked gloo workers hung in our tests. The agent checks its workers every 0.1 s,
    torch's own default: with flytekit's 5 s a finished run waited 2.5 s on average for the agent to notice, and
    with 1 s a 2-step run's task cost ~1.05 s more than a bare script against ~0.74 s at 0.1 s."""
    from flytekitplugins.kfpytorch import Elastic

    start_method = "fork" if nproc_per_node == 1 and nnodes == 1 else "spawn"
    return Elastic(
        nnodes=nnodes,
        nproc_per_node=nproc_per_node,
        increase_shared_mem=False,
        start_method=start_method,
        monitor_interval=MONITOR_INTERVAL_S,
    )


MONITOR_INTERVAL_S = 0.1  # seconds; torch's LaunchConfig default


def launch_shape(distributed: DistributedConfig) -> tuple[int, int]:
    """(nodes, processes per node) of a request's launch; 0 means 1."""
    return max(distributed.nnodes, 1), max(distributed.nproc_per_node, 1)


class LaunchedTaskResolver(TaskResolverMixin):
    """Finds a training task built for a launch shape when its container starts: the loader arguments name the
    module-level task it was built from and the shape, and `load_task` builds the same variant again. flytekit's
    default resolver can only find module-level tasks, and a task's Elastic shape (pod or PyTorchJob, node count,
    processes per node) is fixed when the task object is made, so each shape a config asks for is its own task."""

    def __init__(self) -> None:
        # task name -> (the variant, the module-level task it was built from, nodes, processes per node)
        self._built: dict[str, tuple[Any, Any, int, int]] = {}

    @property
    def location(self) -> str:
        return f"{__name__}.launched_task_resolver"

    def name(self) -> str:
        return "LaunchedTaskResolver"

    def loader_args(self, settings: Any, t: Any) -> list[str]:
        _, base, nnodes, nproc = self._built[t.name]
        function = base.task_function
        return [
            "task-module",
            function.__module__,
            "task-name",
            function.__name__,
            "nnodes",
            str(nnodes),
            "nproc-per-node",
            str(nproc),
        ]

    def load_task(self, loader_args: list[str]) -> Any:
        args = dict(zip(loader_args[::2], loader_args[1::2], strict=True))
        base = getattr(importlib.import_module(args["task-module"]), args["task-name"])
        return launched(base, DistributedConfig(nnodes=int(args["nnodes"]), nproc_per_node=int(args["nproc-per-node"])))

    def get_all_tasks(self) -> list[Any]:
        return [task for task, _, _, _ in self._built.values()]


launched_task_resolver = LaunchedTaskResolver()


def launched(base: Any, distributed: DistributedConfig) -> Any:
    """The training task `base` (a module-level Elastic task of one node and one process) with the launch a request's
    `distributed` asks for: itself for 1x1, else a task named `<base>_<nodes>x<procs>` with everything else of `base`
    (image, resources, cache, retries, Decks) and the Elastic config of that shape. Several nodes compile into a
    PyTorchJob of that many workers. Built once per shape; a cluster's container finds it through
    `launched_task_resolver`."""
    nnodes, nproc = launch_shape(distributed)
    if (nnodes, nproc) == (1, 1):
        return base
    name = f"{base.name}_{nnodes}x{nproc}"
    built = launched_task_resolver._built
    if name in built:
        return built[name][0]
    # A shallow copy keeps every option of `base`; what makes the shape is replaced below, as the Elastic plugin's
    # constructor would set it.
    variant = copy.copy(base)
    variant._task_config = elastic(nproc, nnodes)
    variant._task_type = "python-task" if nnodes == 1 else "pytorch"
    variant.min_nodes = variant.max_nodes = nnodes
    variant._name = name
    variant.set_resolver(launched_task_resolver)
    variant.set_command_fn(variant.get_default_command)  # the copied one is bound to `base`
    built[name] = (variant, base, nnodes, nproc)
    return variant


def training_overrides(resources: ComputeResources, where: str = "resources") -> dict[str, Any]:
    """`with_overrides` arguments for a task from a request's resources (a training stage's, or the pipeline's
    evaluation's): CPU, memory and GPU requests and the accelerator (recorded in the compiled workflow). Empty
    resources override nothing. A training task's launch shape is the task itself (`launched`). `where` names the
    field in errors (`data_resources`, `evaluation.resources`)."""
    from flytekit import Resources
    from flytekit.extras.accelerators import GPUAccelerator

    overrides: dict[str, Any] = {}
    if resources.cpu or resources.memory or resources.gpu:
        overrides["requests"] = Resources(
            cpu=resources.cpu or None, mem=resources.memory or None, gpu=resources.gpu or None
        )
    if resources.accelerator:
        if not resources.gpu:
            raise ValueError(f"{where}.accelerator: {resources.accelerator!r} needs {where}.gpu >= 1")
        overrides["accelerator"] = GPUAccelerator(resources.accelerator)
    return overrides


# Fields of a training request that name or place a run but do not change what it computes: the task's cache key
# leaves them out (the request it gets has them cleared; the run name comes as `run_name`, an input the cache ignores),
# so renaming a run or giving it more CPUs is a full cache hit.
COSMETIC_FIELDS = ("run_name", "resources")
CACHE_IGNORED_INPUTS = ("run_name",)  # every training task's `cache_ignore_input_vars`


def cache_keyed(request: Any) -> Any:
    """A copy of a training request without its COSMETIC_FIELDS: what its task is given and keyed on."""
    keyed = type(request)()
    keyed.CopyFrom(request)
    for name in COSMETIC_FIELDS:
        keyed.ClearField(name)
    return keyed


def training_node(base: Any, request: Any) -> Any:
    """The workflow node calling function of a training request: `training_node(train, request)(request=..., ...)`
    runs `base` launched as `request.distributed` asks, with `request.resources` as the node's resources, given the
    request without its cosmetic fields and its run name as `run_name` (neither keys the cache)."""

    def call(**inputs: Any) -> Any:
        given = inputs.pop("request")
        node = launched(base, request.distributed)(request=cache_keyed(given), run_name=given.run_name, **inputs)
        return node.with_overrides(**training_overrides(request.resources))

    return call


def run_training(
    train: Callable[..., Any],
    request: Any,
    dataset: DatasetManifest,
    data: FlyteDirectory,
    base_model: FlyteDirectory | None,
    deck_title: str,
    run_name: str = "",
) -> tuple[Any, FlyteDirectory]:
    """The body every training task shares: fetch the inputs, restore checkpoints of a previous attempt, run the
    stage's `train` core function in the task's working directory (checkpoints mirrored into Flyte's checkpoint
    store as they are written), publish its report as a Deck. Returns the core's result and the model folder."""
    data_dir = download_dataset(dataset, data)
    base_dir = Path(base_model.download()) if base_model is not None else None
    work = Path(current_context().working_directory)
    restore_flyte_checkpoints(work / "checkpoints")
    leave_single_worker_launch(request.recipe.zero.stage)
    if run_name:  # given apart from the request so that it does not key the cache (`training_node`)
        named = type(request)()
        named.CopyFrom(request)
        named.run_name = run_name
        request = named
    result = train(
        request,
        data_dir,
        work / "model",
        base_dir,
        checkpoint_dir=work / "checkpoints",
        distributed=under_launcher(),
        callbacks=[FlyteCheckpoints()],
    )
    publish(deck_title, result.report_html)
    return result, FlyteDirectory(path=str(work / "model"))


def train_in_task(
    train: Callable[..., Any],
    request: Any,
    dataset: DatasetManifest,
    data: FlyteDirectory,
    base_model: FlyteDirectory | None,
    deck_title: str,
    run_name: str = "",
) -> TrainedModel:
    """`run_training` for a stage whose core returns a ModelArtifact (CPT, SFT): artifact and folder."""
    result, model = run_training(train, request, dataset, data, base_model, deck_title, run_name)
    return TrainedModel(artifact=result.artifact, model=model)
