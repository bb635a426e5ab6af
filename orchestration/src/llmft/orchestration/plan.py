"""What a run of a config will do on this machine, before it does it: `python -m llmft.orchestration run --config F
--check`. After the config check, the pipeline is compiled as the run compiles it, and its steps are walked in order:

- a cached step whose inputs are known is looked up in flytekit's local cache with the key the run will use (task
  name, cache version, inputs): "cached" or "runs";
- a step that is never cached runs in every run; the light ones whose outputs decide later keys (reading the
  sources, resolving the base model, the gate's verdict) are run here, in a temporary folder, so that the steps
  after them can be looked up too;
- a step whose input comes from a step that runs cannot be looked up before that step has run: "after <step>" (it is
  served from the cache only when that step makes the same outputs again);
- the gate's branch: publishing, or holding back, when the verdict is known.

Nothing is trained or evaluated (cached steps are never run here), nothing is written under the runs folder, and the
local cache is only read."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flytekit.core.context_manager import ExecutionState, FlyteContextManager
from flytekit.core.local_cache import LocalTaskCache
from flytekit.core.type_engine import TypeEngine, UnionTransformer
from flytekit.core.workflow import WorkflowBase
from flytekit.models.literals import BindingData, Literal, LiteralCollection, LiteralMap

from llmft.orchestration.config import present
from llmft.orchestration.sandbox import missing_blobs, persistent_sandbox
from llmft.proto.pipeline.v1.pipeline_pb2 import PipelineRequest

# What a user calls each task's step.
STEPS = {
    "data.tasks.acquire_raw_text": "read corpus sources",
    "data.tasks.prepare_raw_text": "prepare corpus",
    "data.tasks.acquire_chat": "read chat sources",
    "data.tasks.prepare_chat": "prepare chat",
    "data.tasks.acquire_preference": "read preference sources",
    "data.tasks.prepare_preference": "prepare preferences",
    "train_cpt.tasks.train": "cpt",
    "train_sft.tasks.train": "sft",
    "rlhf.tasks.reward_model": "reward_model",
    "rlhf.tasks.ppo": "ppo",
    "rlhf.tasks.dpo": "dpo",
    "serve.tasks.model_folder": "base model folder",
    "serve.tasks.evaluate_answers": "held-out answers",
    "rlhf.tasks.evaluate": "policy comparison",
    "orchestration.gate.gate": "gate",
    "orchestration.gate.model_answers": "answers shown",
    "serve.tasks.space_folder": "Space folder",
    "serve.tasks.publish_model": "publish",
    "orchestration.gate.held_back": "hold back",
    "orchestration.report.pipeline_report": "report",
}
# Never cached, light, no side effect, and their outputs key later steps: the plan runs them (in a temporary folder).
LOOKAHEAD = {
    "data.tasks.acquire_raw_text",
    "data.tasks.acquire_chat",
    "data.tasks.acquire_preference",
    "serve.tasks.model_folder",
    "orchestration.gate.gate",
    "orchestration.gate.model_answers",
}

HIT, RUNS, LOST, AFTER, EVERY, READ, SKIPPED, IF_PASSED, IF_HELD = (
    "cached",
    "runs",
    "runs again",
    "after",
    "runs every time",
    "read now",
    "skipped",
    "if the gate passes",
    "if the gate holds back",
)


@dataclass
class Step:
    """One task of the run: what it is, whether it will come from the cache, what it asks the cluster for."""

    task: str  # without "llmft."
    cache: str  # one of HIT, RUNS, LOST, AFTER, EVERY, READ, SKIPPED, IF_PASSED, IF_HELD
    requests: str
    after: list[str] = field(default_factory=list)  # for AFTER: the steps whose outputs it waits for
    launch: str = ""  # training: nodes x processes

    @property
    def name(self) -> str:
        return STEPS.get(self.task, self.task)

    @property
    def status(self) -> str:
        """The plan's words for it: what a user reads, and what the run must then do."""
        if self.cache == AFTER:
            makes = "they make" if len(self.after) > 1 else "it makes"
            return f"after {', '.join(self.after)}: cached only if {makes} the same outputs again"
        return {
            HIT: "from the cache",
            RUNS: "runs: not in the cache",
            LOST: "runs: its cached outputs are gone",
            EVERY: "runs: never cached",
            READ: "runs: never cached (read now for this plan)",
            SKIPPED: "skipped: the gate decides the other way",
            IF_PASSED: "runs if the gate passes",
            IF_HELD: "runs if the gate holds publishing back",
        }[self.cache]

    @property
    def will_run(self) -> bool | None:
        """True or False where the plan knows, None where it depends on a step before it."""
        if self.cache in (HIT, SKIPPED):
            return False
        if self.cache in (AFTER, IF_PASSED, IF_HELD):
            return None
        return True


def _short(name: str) -> str:
    return name.removeprefix("llmft.")


def _requests(node: Any) -> str:
    """The CPU, memory and GPUs the node asks for: its overrides (the config's resources), else the task's own."""
    own = getattr(node.flyte_entity, "resources", None)
    given: dict[str, str] = {}
    if own is not None and own.requests is not None:
        given = {k: v for k, v in (("cpu", own.requests.cpu), ("memory", own.requests.mem), ("gpu", own.requests.gpu))
                 if v}  # fmt: skip
    override = node._resources  # flytekit's Node keeps with_overrides(requests=...) here
    if override is not None:
        names = {0: "", 1: "cpu", 2: "gpu", 3: "memory", 4: "storage", 5: "ephemeral storage"}
        for entry in override.requests:
            if names.get(entry.name):
                given[names[entry.name]] = str(entry.value)
    extended = node._extended_resources  # with_overrides(accelerator=...)
    if extended is not None and extended.HasField("gpu_accelerator"):
        given["accelerator"] = extended.gpu_accelerator.device
    return ", ".join(f"{k} {v}" for k, v in given.items())


def _launch(node: Any) -> str:
    config = getattr(node.flyte_entity, "task_config", None)
    nodes, processes = getattr(config, "nnodes", None), getattr(config, "nproc_per_node", None)
    if nodes is None:
        return ""
    return f"{nodes} node(s) x {processes} process(es)"


class _Unknown(Exception):
    """An input that only a step which has not run yet can give."""

    def __init__(self, after: set[str]) -> None:
        self.after = after


def _literal(data: BindingData, outputs: dict[str, LiteralMap | None], names: dict[str, str]) -> Literal:
    if data.scalar is not None:
        return Literal(scalar=data.scalar)
    if data.collection is not None:
        return Literal(collection=LiteralCollection([_literal(d, outputs, names) for d in data.collection.bindings]))
    if data.map is not None:
        waiting: set[str] = set()
        literals = {}
        for key, item in data.map.bindings.items():
            try:
                literals[key] = _literal(item, outputs, names)
            except _Unknown as unknown:
                waiting |= unknown.after
        if waiting:
            raise _Unknown(waiting)
        return Literal(map=LiteralMap(literals))
    if data.promise is not None:
        source = outputs.get(data.promise.node_id)
        if source is None or data.promise.attr_path:
            raise _Unknown({names.get(data.promise.node_id, data.promise.node_id)})
        return source.literals[data.promise.var]
    raise _Unknown({"an input the plan cannot read"})


def _defaulted(node: Any, var: str, literal: Literal) -> bool:
    """Whether the compiled binding of `var` is the task's default filled in: compiling binds every default, while a
    local run passes only the inputs the workflow gives (so a default left out is not part of its cache key)."""
    defaults = node.flyte_entity.python_interface.inputs_with_defaults
    if var not in defaults:
        return False
    python_type, default = defaults[var]
    if default is None and not UnionTransformer.is_optional_type(python_type):  # flytekit's test for "no default"
        return False
    ctx = FlyteContextManager.current_context()
    expected = node.flyte_entity.interface.inputs[var].type
    given = TypeEngine.to_literal(ctx, default, python_type, expected)
    return bool(given.to_flyte_idl() == literal.to_flyte_idl())


def _inputs(node: Any, outputs: dict[str, LiteralMap | None], names: dict[str, str]) -> LiteralMap:
    """The inputs the run will hand the node's task (the literals its cache key is made of)."""
    waiting: set[str] = set()
    literals = {}
    for binding in node.bindings:
        try:
            literal = _literal(binding.binding, outputs, names)
        except _Unknown as unknown:
            waiting |= unknown.after
            continue
        if binding.binding.scalar is None or not _defaulted(node, binding.var, literal):
            literals[binding.var] = literal
    if waiting:
        raise _Unknown(waiting)
    return LiteralMap(literals)


def _cached(task: Any, inputs: LiteralMap) -> LiteralMap | None:
    """The outputs the run would take from the local cache for these inputs, or None; only reads the cache."""
    return LocalTaskCache.get(task.name, task.metadata.cache_version, inputs, task.metadata.cache_ignore_input_vars)


@contextlib.contextmanager
def _scratch() -> Iterator[None]:
    """A local workflow execution whose tasks work in a temporary folder (removed after the plan)."""
    with tempfile.TemporaryDirectory(prefix="llmft-plan-") as folder, persistent_sandbox(Path(folder)):
        ctx = FlyteContextManager.current_context()
        state = ctx.new_execution_state().with_params(mode=ExecutionState.Mode.LOCAL_WORKFLOW_EXECUTION)
        with FlyteContextManager.with_context(ctx.with_execution_state(state)):
            yield


def plan_steps(workflow: WorkflowBase) -> list[Step]:
    """The steps of a compiled pipeline, in order, each with what the run will do (see the module's docstring)."""
    workflow.compile()
    names = {node.id: STEPS.get(_short(node.flyte_entity.name), node.id) for node in workflow.nodes}
    outputs: dict[str, LiteralMap | None] = {}
    steps: list[Step] = []
    with _scratch():
        ctx = FlyteContextManager.current_context()
        for node in workflow.nodes:
            block = getattr(node.flyte_entity, "_ifelse_block", None)
            if block is not None:
                steps += _branch(node, block, outputs, names)
                continue
            task = node.flyte_entity
            step = Step(task=_short(task.name), cache=EVERY, requests=_requests(node), launch=_launch(node))
            steps.append(step)
            outputs[node.id] = None
            try:
                inputs = _inputs(node, outputs, names)
            except _Unknown as unknown:
                step.cache, step.after = AFTER, sorted(unknown.after)
                if not task.metadata.cache:
                    step.cache = EVERY
                continue
            if task.metadata.cache:
                found = _cached(task, inputs)
                if found is None:
                    step.cache = RUNS
                elif missing_blobs(found):
                    step.cache = LOST
                else:
                    step.cache, outputs[node.id] = HIT, found
            elif step.task in LOOKAHEAD:
                step.cache, outputs[node.id] = READ, task.sandbox_execute(ctx, inputs)
    return steps


def _branch(node: Any, block: Any, outputs: dict[str, LiteralMap | None], names: dict[str, str]) -> list[Step]:
    """The gate's conditional: the branch the verdict picks, the other skipped; both conditional when unknown."""
    verdict: bool | None = None
    if len(node.bindings) == 1:
        try:
            literal = _literal(node.bindings[0].binding, outputs, names)
            verdict = bool(literal.scalar.primitive.boolean)
        except _Unknown:
            pass
    branches = [(block.case.then_node, True), (block.else_node, False)]
    steps = []
    for inner, when in branches:
        if inner is None:
            continue
        if verdict is None:
            cache = IF_PASSED if when else IF_HELD
        else:
            cache = EVERY if verdict == when else SKIPPED
        steps.append(Step(task=_short(inner.flyte_entity.name), cache=cache, requests=_requests(inner)))
    outputs[node.id] = None
    return steps


def outputs_of(request: PipelineRequest, runs_dir: Path) -> dict[str, str]:
    """Where a local run of `request` puts what users look at."""
    run_dir = runs_dir / request.name
    where = {
        "model": str(run_dir / "model"),
        "space": str(run_dir / "space"),
        "decks": str(run_dir / "decks"),
        "report": str(run_dir / "report.html"),
    }
    if present(request, "publish"):
        publish = request.publish
        if publish.local_dir:
            where["hub"] = f"{Path(publish.local_dir).resolve()} (dry run: what the upload would send)"
        else:
            repos = [f"https://huggingface.co/{publish.model_repo_id}"]
            if publish.space_repo_id:
                repos.append(f"https://huggingface.co/spaces/{publish.space_repo_id}")
            where["hub"] = " and ".join(repos)
    return where


def plan_text(request: PipelineRequest, steps: list[Step], runs_dir: Path, config: Path) -> str:
    requests = [s.requests + (f", {s.launch}" if s.launch else "") for s in steps]
    widths = (max(len(s.name) for s in steps), max(len(s.task) for s in steps), max(map(len, requests)))
    lines = [f"{config}: checked, no problems. Plan of run {request.name!r} on this machine:", ""]
    lines.append(f"  {'step':<{widths[0]}}  {'task':<{widths[1]}}  {'requests':<{widths[2]}}  this run")
    for step, asked in zip(steps, requests, strict=True):
        lines.append(f"  {step.name:<{widths[0]}}  {step.task:<{widths[1]}}  {asked:<{widths[2]}}  {step.status}")
    cached = sum(s.cache == HIT for s in steps)
    missed = sum(s.cache in (RUNS, LOST) for s in steps)
    light = sum(s.cache in (EVERY, READ, IF_PASSED, IF_HELD) for s in steps)
    open_ = sum(s.cache == AFTER for s in steps)
    lines += [
        "",
        f"Cached steps: {cached} from the cache, {missed} run, {open_} depend on the steps before them. "
        f"{light} light step(s) are never cached (run every time, the gate's branch when it decides).",
    ]
    lines.append("Outputs:")
    lines += [f"  {what + ':':<8} {path}" for what, path in outputs_of(request, runs_dir).items()]
    return "\n".join(lines)
