"""The whole pipeline, built from a user's config (a PipelineRequest): data → CPT → SFT → reward model → PPO and/or
DPO → held-out evaluation → a gate (a Flyte conditional) → publish, plus the Space folder and a provenance report.
A stage runs when its section is in the config; each training task is built for the launch the config asks for (one
pod, or a PyTorchJob of `distributed.nnodes` workers) with its resources and accelerator, and the evaluation tasks
with `evaluation.resources`.

Run it (offline demo):
    python -m llmft.orchestration run --config orchestration/src/llmft/orchestration/examples/demo.yaml
    pyflyte run orchestration/src/llmft/orchestration/pipeline.py pipeline \\
        --config orchestration/src/llmft/orchestration/examples/demo.yaml
Compile it for a cluster with a config of your own:
    LLMFT_PIPELINE_CONFIG=my.yaml pyflyte package --image ghcr.io/llmft/llmft-flyte:latest \\
        -m llmft.orchestration.pipeline
"""

from __future__ import annotations

from typing import Any, NamedTuple

from flytekit import conditional, dynamic, task, workflow
from flytekit.core.workflow import WorkflowBase
from flytekit.types.directory import FlyteDirectory
from flytekit.types.file import FlyteFile

from llmft.data import tasks as data_tasks
from llmft.flyte.training import training_node, training_overrides
from llmft.orchestration import gate, report
from llmft.orchestration.config import (
    BEST,
    candidate,
    checked_request,
    configured_request,
    lineage,
    load_config,
    present,
    upstream,
)
from llmft.orchestration.image import IMAGE, SMALL
from llmft.proto.pipeline.v1.pipeline_pb2 import GateDecision, PipelineReport, PipelineRequest
from llmft.proto.rlhf.v1.rlhf_pb2 import PolicyComparison
from llmft.proto.serve.v1.serve_pb2 import AnswerEvaluation, PublishResult
from llmft.rlhf import tasks as rlhf
from llmft.serve import tasks as serve
from llmft.train_cpt import tasks as cpt
from llmft.train_sft import tasks as sft

# The shipped configs (package data); pipeline.py's own folder, without importing a path library.
EXAMPLES = __file__.removesuffix("pipeline.py") + "examples/"
DATA_TASKS = {
    "corpus": (data_tasks.acquire_raw_text, data_tasks.prepare_raw_text),
    "chat": (data_tasks.acquire_chat, data_tasks.prepare_chat),
    "preferences": (data_tasks.acquire_preference, data_tasks.prepare_preference),
}


class PipelineOutputs(NamedTuple):
    model: FlyteDirectory
    space: FlyteDirectory
    report: PipelineReport


def pipeline_workflow(request: PipelineRequest) -> WorkflowBase:
    """The pipeline of a complete, checked request (llmft.orchestration.config.load_config), its requests bound in."""
    chosen = candidate(request)

    # Resources of the tasks outside the training stages come from the config too (none keys a cache).
    data_overrides = training_overrides(request.data_resources, "data_resources")
    serve_overrides = training_overrides(request.serve_resources, "serve_resources")

    @workflow
    def configured() -> PipelineOutputs:
        datasets: dict[str, Any] = {}
        for section, (acquire, prepare) in DATA_TASKS.items():
            if present(request, section):
                rows = acquire(request=getattr(request, section)).with_overrides(**data_overrides)
                datasets[section] = prepare(
                    config=rows.config, rows=rows.rows, acquisition=rows.acquisition
                ).with_overrides(**data_overrides)

        trained: dict[str, Any] = {}  # stage -> its task's outputs (.artifact, .model)

        def start_from(argument: str, section: str) -> dict[str, Any]:
            """`{argument: model folder}` of the stage `section` starts from, or {} (its request's base_model)."""
            earlier = upstream(request, section)
            return {argument: trained[earlier].model} if earlier else {}

        if present(request, "cpt"):
            corpus = datasets["corpus"]
            trained["cpt"] = training_node(cpt.train, request.cpt)(
                request=request.cpt, dataset=corpus.manifest, data=corpus.data
            )
        if present(request, "sft"):
            chat = datasets["chat"]
            trained["sft"] = training_node(sft.train, request.sft)(
                request=request.sft, dataset=chat.manifest, data=chat.data, **start_from("base_model", "sft")
            )
        prefs: Any = datasets.get("preferences")  # present whenever a stage below needs it (checked in the config)
        if present(request, "reward_model"):
            trained["reward_model"] = training_node(rlhf.reward_model, request.reward_model)(
                request=request.reward_model,
                dataset=prefs.manifest,
                data=prefs.data,
                **start_from("base_model", "reward_model"),
            )
        if present(request, "ppo"):
            reward = {"reward_model": trained["reward_model"].model} if "reward_model" in trained else {}
            trained["ppo"] = training_node(rlhf.ppo, request.ppo)(
                request=request.ppo,
                dataset=prefs.manifest,
                data=prefs.data,
                **reward,
                **start_from("policy", "ppo"),
            )
        if present(request, "dpo"):
            trained["dpo"] = training_node(rlhf.dpo, request.dpo)(
                request=request.dpo, dataset=prefs.manifest, data=prefs.data, **start_from("policy", "dpo")
            )
        evaluation = request.evaluation
        # The models that may be published: the contenders the gate picks among (candidate "best"), or the one.
        candidates = list(evaluation.selection.contenders) if chosen == BEST else [chosen]
        answers: Any = AnswerEvaluation()
        policies: Any = PolicyComparison()
        if present(request, "evaluation") and evaluation.HasField("answers"):
            baseline = evaluation.baseline or "base"
            # The candidate, its baseline and every chat policy trained (the report shows what each stage bought).
            compared = {s: trained[s].model for s in ("sft", "ppo", "dpo", *candidates) if s in trained}
            compared[baseline] = (
                trained[baseline].model
                if baseline in trained
                else serve.model_folder(model=request.base_model).with_overrides(**serve_overrides)
            )
            chat = datasets["chat"]
            answers = serve.evaluate_answers(
                request=evaluation.answers, dataset=chat.manifest, data=chat.data, models=compared
            ).with_overrides(**training_overrides(evaluation.resources, "evaluation.resources"))
        if present(request, "evaluation") and evaluation.HasField("policies"):
            reference = trained["sft"].model if "sft" in trained else None
            policies = rlhf.evaluate(
                request=evaluation.policies,
                dataset=prefs.manifest,
                data=prefs.data,
                policies={s: trained[s].model for s in ("ppo", "dpo") if s in trained},
                reward_model=trained["reward_model"].model,
                **({"reference": reference} if reference is not None else {}),
            ).with_overrides(**training_overrides(evaluation.resources, "evaluation.resources"))
        decision: Any = GateDecision(passed=True, reason="no evaluation configured: nothing gates publishing")
        published: Any = PublishResult()
        name: Any = chosen
        model: Any = trained[chosen].model if chosen in trained else None
        ancestry: Any = [trained[s].artifact for s in lineage(request, chosen)] if chosen in trained else []
        if present(request, "evaluation"):
            # The gate picks (or checks) the candidate; what is served and published is what it returns.
            verdict = gate.gate(
                evaluation=evaluation,
                answers=answers,
                policies=policies,
                models={c: trained[c].model for c in candidates},
                artifacts={s: trained[s].artifact for s in trained},
                lineages={c: lineage(request, c) for c in candidates},
            )
            decision, name, model, ancestry = verdict.decision, verdict.name, verdict.model, verdict.upstream
        shown = gate.model_answers(evaluation=answers, name=name)
        space = serve.space_folder(
            model=model, model_repo_id=request.publish.model_repo_id, title=request.space.title, answers=shown
        ).with_overrides(**serve_overrides)
        if present(request, "publish"):

            def publish() -> Any:
                return serve.publish_model(
                    model=model,
                    request=request.publish,
                    datasets=[d.manifest for d in datasets.values()],
                    upstream=ancestry,
                    answers=shown,
                    title=request.space.title,
                ).with_overrides(**serve_overrides)

            if present(request, "evaluation"):
                published = (
                    conditional("publish_gate")
                    .if_(verdict.passed.is_true())
                    .then(publish())
                    .else_()
                    .then(gate.held_back(decision=verdict.decision))
                )
            else:
                published = publish()
        provenance = report.pipeline_report(
            request=request,
            candidate=name,
            datasets={name: d.manifest for name, d in datasets.items()},
            models={s: trained[s].artifact for s in trained},
            answers=answers,
            policies=policies,
            decision=decision,
            published=published,
        )
        return PipelineOutputs(model=model, space=space, report=provenance)

    return configured


@dynamic(container_image=IMAGE, requests=SMALL)
def run_configured(request: PipelineRequest) -> PipelineOutputs:
    """The pipeline of `request`, built when the request is known (the stages it names, each task's launch)."""
    return pipeline_workflow(request)()


@task(container_image=IMAGE, requests=SMALL)
def read_config(config: FlyteFile) -> PipelineRequest:
    """The config file as a complete, checked PipelineRequest (llmft.orchestration.config); a bad config fails here,
    naming the file and the field, before any stage runs."""
    return load_config(config.download())


@task(container_image=IMAGE, requests=SMALL)
def check_request(request: PipelineRequest) -> PipelineRequest:
    """A request handed over as a message, completed and checked as a config file is (llmft.orchestration.config): a
    bad one fails here, naming the field, before any stage runs."""
    return checked_request(request)


@workflow
def pipeline(config: FlyteFile) -> PipelineOutputs:
    """The pipeline of a config file: what `pyflyte run ... pipeline --config my.yaml` starts."""
    return run_configured(request=read_config(config=config))


@workflow
def pipeline_request(request: PipelineRequest) -> PipelineOutputs:
    """The pipeline of a typed request: what a launch plan (llmft.orchestration.launch_plans) or another workflow
    holding the message starts, with no file to upload."""
    return run_configured(request=check_request(request=request))


# The pipeline of one config as a static workflow (every task visible to `pyflyte package` and `register`, each
# training task with its launch shape): the config $LLMFT_PIPELINE_CONFIG names, else the offline demo.
configured = pipeline_workflow(configured_request(EXAMPLES + "demo.yaml"))
