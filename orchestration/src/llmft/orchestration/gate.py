"""What gets published: the gate ranks the contenders a config names on held-out metrics (`rank`), checks the candidate
against its baseline (`decide`), and its task hands the workflow the verdict to branch on (a Flyte conditional), with
the chosen model's folder and lineage; `held_back` stands in for publishing when the gate says no."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from flytekit import task
from flytekit.types.directory import FlyteDirectory

from llmft.orchestration.config import ANSWER_METRICS, BEST, GATE_METRICS, POLICY_METRICS, REWARD_COLUMNS
from llmft.orchestration.image import IMAGE, SMALL
from llmft.proto.pipeline.v1 import pipeline_pb2 as P
from llmft.proto.rlhf.v1.rlhf_pb2 import PolicyComparison
from llmft.proto.serve.v1.serve_pb2 import AnswerEvaluation, ModelAnswers, PublishResult
from llmft.proto.training.v1.training_pb2 import ModelArtifact


def metric_value(metric: str, model: str, answers: AnswerEvaluation, policies: PolicyComparison) -> float:
    """`metric` of the model named `model` in the evaluations; a model the evaluation did not cover is an error."""
    if metric in ANSWER_METRICS:
        found = [getattr(m, metric) for m in answers.models if m.name == model]
    elif metric in POLICY_METRICS:
        found = [getattr(p, metric) for p in policies.policies if p.name == model and _measured(p, metric)]
    else:
        raise ValueError(f"evaluation.gate: unknown metric {metric!r}; one of {', '.join(GATE_METRICS)}")
    if not found:
        raise ValueError(f"evaluation.gate: {metric} was not measured for model {model!r}")
    return float(found[0])


def _measured(policy: Any, metric: str) -> bool:
    if metric == "correct":
        return bool(policy.HasField("correct"))
    return not math.isnan(getattr(policy, metric))


def rank(selection: P.Selection, answers: AnswerEvaluation, policies: PolicyComparison) -> list[P.Contender]:
    """Every contender with its score (the mean of its `rank_by` metrics), best first; a tie keeps the contenders'
    order. The reward model's columns ride along where it measured them."""
    contenders = []
    for name in selection.contenders:
        contender = P.Contender(name=name)
        for metric in selection.rank_by:
            contender.metrics[metric] = metric_value(metric, name, answers, policies)
        contender.score = sum(contender.metrics.values()) / len(contender.metrics)
        for policy in policies.policies:
            if policy.name == name:
                for column in REWARD_COLUMNS:
                    if _measured(policy, column):
                        contender.metrics[column] = getattr(policy, column)
        contenders.append(contender)
    order = {name: index for index, name in enumerate(selection.contenders)}
    return sorted(contenders, key=lambda c: (-c.score, order[c.name]))


def _describe(contender: P.Contender, selection: P.Selection) -> str:
    parts = ", ".join(f"{m} {contender.metrics[m]:.3f}" for m in selection.rank_by)
    return f"{contender.name} {contender.score:.3f} ({parts})"


def decide(evaluation: P.PipelineEvaluation, answers: AnswerEvaluation, policies: PolicyComparison) -> P.GateDecision:
    """The gate's verdict. With candidate "best" it first ranks the contenders (`rank`) and checks that the winner
    beats the runner-up and the SFT model by more than the selection's margin; then the candidate must beat the
    baseline by more than each gate metric's min_improvement."""
    baseline = evaluation.baseline or "base"
    decision = P.GateDecision(candidate=evaluation.candidate, baseline=baseline)
    picked = evaluation.candidate == BEST
    if picked:
        selection = evaluation.selection
        decision.ranking.extend(rank(selection, answers, policies))
        winner = decision.ranking[0]
        decision.candidate = winner.name
        others = [c for c in decision.ranking[1:2]]
        others += [c for c in decision.ranking[2:] if c.name == "sft" and winner.name != "sft"]
        for other in others:
            decision.checks.append(
                P.GateCheck(
                    metric="score",
                    candidate=winner.score,
                    baseline=other.score,
                    min_improvement=selection.min_margin,
                    passed=winner.score - other.score > selection.min_margin,
                    against=other.name,
                )
            )
    candidate = decision.candidate
    for condition in evaluation.gate:
        ours = metric_value(condition.metric, candidate, answers, policies)
        theirs = metric_value(condition.metric, baseline, answers, policies)
        decision.checks.append(
            P.GateCheck(
                metric=condition.metric,
                candidate=ours,
                baseline=theirs,
                min_improvement=condition.min_improvement,
                passed=ours - theirs > condition.min_improvement,
                against=baseline,
            )
        )
    failed = [c for c in decision.checks if not c.passed]
    decision.passed = not failed
    ranked = ""
    if picked:
        ranked = (
            "ranked by "
            + " + ".join(evaluation.selection.rank_by)
            + ": "
            + " > ".join(_describe(c, evaluation.selection) for c in decision.ranking)
            + "; "
        )
    if not decision.checks:
        decision.reason = ranked + f"no gate metrics configured: {candidate} is published without a comparison"
    elif failed:
        decision.reason = (
            ranked
            + "; ".join(
                f"{candidate} {c.metric} {c.candidate:.4g} does not beat {c.against} {c.baseline:.4g} by more than "
                f"{c.min_improvement:.4g}"
                for c in failed
            )
            + ": publishing held back"
        )
    else:
        decision.reason = (
            ranked
            + ", ".join(f"{c.metric} {c.candidate:.4g} vs {c.against} {c.baseline:.4g}" for c in decision.checks)
            + f": {candidate} published"
        )
    return decision


class Gate(NamedTuple):
    passed: bool
    decision: P.GateDecision
    name: str  # the model the gate chose (the candidate)
    model: FlyteDirectory
    upstream: list[ModelArtifact]  # the models it descends from, oldest first (its card's lineage)


@task(container_image=IMAGE, requests=SMALL)
def gate(
    evaluation: P.PipelineEvaluation,
    answers: AnswerEvaluation,
    policies: PolicyComparison,
    models: dict[str, FlyteDirectory],
    artifacts: dict[str, ModelArtifact],
    lineages: dict[str, list[str]],
) -> Gate:
    """The publishing gate: the candidate (picked among `models` with candidate "best"), its verdict, its folder and
    lineage; the workflow publishes only on `passed` (a Flyte conditional)."""
    decision = decide(evaluation, answers, policies)
    print(f"Gate: {decision.reason}", flush=True)
    name = decision.candidate
    if name not in models:
        raise ValueError(
            f"evaluation.candidate: {name!r} is not among the models handed to the gate ({sorted(models)})"
        )
    upstream = [artifacts[stage] for stage in lineages.get(name, [])]
    return Gate(passed=decision.passed, decision=decision, name=name, model=models[name], upstream=upstream)


@task(container_image=IMAGE, requests=SMALL)
def held_back(decision: P.GateDecision) -> PublishResult:
    """The gate's other branch: nothing is published; the report carries the reason."""
    print(f"Not published: {decision.reason}", flush=True)
    return PublishResult()


@task(container_image=IMAGE, requests=SMALL)
def model_answers(evaluation: AnswerEvaluation, name: str) -> ModelAnswers:
    """One model's part of the answer evaluation (empty when it was not evaluated): what its card and Space show."""
    return next((m for m in evaluation.models if m.name == name), ModelAnswers())
