"""The whole pipeline's own tasks, which need no trainer and run on the libraries' image: the publishing gate (the
candidate model against its baseline on the metrics a config names; a workflow branches on its verdict), the stand-in
for publishing when the gate holds it back, and the run's provenance report (every stage's version, input
fingerprints, metrics and timings, the held-out answers and the gate) as a Deck."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any, NamedTuple

from flytekit import Resources, task
from flytekit.types.directory import FlyteDirectory
from flytekit.types.file import FlyteFile

from llmft.core import fingerprint as fp
from llmft.flyte import __version__
from llmft.flyte.decks import publish
from llmft.flyte.images import stage_image
from llmft.proto.data.v1.dataset_pb2 import DatasetManifest
from llmft.proto.pipeline.v1 import pipeline_pb2 as P
from llmft.proto.rlhf.v1.rlhf_pb2 import PolicyComparison
from llmft.proto.serve.v1.serve_pb2 import AnswerEvaluation, ModelAnswers, PublishResult
from llmft.proto.training.v1.training_pb2 import ModelArtifact

IMAGE = stage_image("llmft-flyte", __version__, ())
SMALL = Resources(cpu="500m", mem="512Mi")

# Gate metrics: where each is read from. All are better when higher.
ANSWER_METRICS = ("first_sentence_match", "exact_match", "general_match")
POLICY_METRICS = ("mean_reward", "correct")
GATE_METRICS = ANSWER_METRICS + POLICY_METRICS
# What the selection may rank by: held-out fractions that no policy trained on (not the reward model's opinion).
RANKING_METRICS = ANSWER_METRICS + ("correct",)
# Shown beside the ranking, never ranking: the reward model's view of each policy.
REWARD_COLUMNS = ("mean_reward", "reward_gain", "kl_to_reference")
BEST = "best"
CONTENDERS = ("sft", "ppo", "dpo")


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


def stage_records(datasets: dict[str, DatasetManifest], models: dict[str, ModelArtifact]) -> list[P.StageRecord]:
    records = [
        P.StageRecord(name=f"data:{name}", provenance=manifest.provenance, output_fingerprint=manifest.fingerprint)
        for name, manifest in datasets.items()
    ]
    for name, artifact in models.items():
        m = artifact.metrics
        record = P.StageRecord(
            name=name, provenance=artifact.provenance, output_fingerprint=artifact.fingerprint, seconds=m.train_seconds
        )
        for key, value in {
            "held_out_loss_before": m.eval_before.loss,
            "held_out_loss_after": m.eval_after.loss,
            "train_loss": m.train_loss,
            "steps": float(m.steps),
            "tokens_per_second": m.tokens_per_second,
        }.items():
            if value:
                record.metrics[key] = value
        records.append(record)
    return records


def build_report(
    request: P.PipelineRequest,
    candidate: str,
    datasets: dict[str, DatasetManifest],
    models: dict[str, ModelArtifact],
    answers: AnswerEvaluation,
    policies: PolicyComparison,
    decision: P.GateDecision,
    published: PublishResult,
) -> P.PipelineReport:
    report = P.PipelineReport(
        name=request.name,
        config_fingerprint=fp.fingerprint_message(request),
        stages=stage_records(datasets, models),
        answers=answers,
        policies=policies,
        gate=decision,
        publish=published,
        candidate=candidate,
    )
    matches = {model.name: model.first_sentence_match for model in answers.models}
    for record in report.stages:
        if record.name in matches:
            record.metrics["first_sentence_match"] = matches[record.name]
    return report


def metrics_text(record: P.StageRecord) -> str:
    return ", ".join(f"{name} {value:.4g}" for name, value in sorted(record.metrics.items()))


def report_html(report: P.PipelineReport) -> str:
    def cell(text: object) -> str:
        return f"<td>{html.escape(str(text))}</td>"

    stage_rows = "".join(
        "<tr>"
        + cell(r.name)
        + cell(f"{r.provenance.stage} {r.provenance.stage_version}")
        + cell(fp.short(r.provenance.config_fingerprint))
        + cell(", ".join(fp.short(i) for i in r.provenance.input_fingerprints))
        + cell(fp.short(r.output_fingerprint))
        + cell(metrics_text(r))
        + cell(f"{r.seconds:.1f}" if r.seconds else "")
        + "</tr>"
        for r in report.stages
    )
    answer_rows = "".join(
        "<tr>" + cell(m.name) + cell(f"{m.first_sentence_match:.1%}") + cell(f"{m.exact_match:.1%}") + "</tr>"
        for m in report.answers.models
    )
    checks = "".join(
        "<tr>"
        + cell(c.metric)
        + cell(f"{c.candidate:.4g}")
        + cell(c.against)
        + cell(f"{c.baseline:.4g}")
        + cell(f"> {c.min_improvement:.4g}")
        + cell("pass" if c.passed else "FAIL")
        + "</tr>"
        for c in report.gate.checks
    )
    columns = sorted({m for c in report.gate.ranking for m in c.metrics}, key=_column_order)
    ranking = ""
    if report.gate.ranking:
        ranking = (
            "<h3>Ranking (the gate's pick first; the reward model's columns are shown, never ranked by)</h3><table><tr>"
            + "".join(f"<th>{html.escape(h)}</th>" for h in ["model", "score", *columns])
            + "</tr>"
            + "".join(
                "<tr>"
                + cell(c.name)
                + cell(f"{c.score:.3f}")
                + "".join(cell(f"{c.metrics[m]:.3f}" if m in c.metrics else "") for m in columns)
                + "</tr>"
                for c in report.gate.ranking
            )
            + "</table>"
        )
    where = report.publish.model_url or "not published"
    return (
        f"<h2>Pipeline {html.escape(report.name)}</h2><p>config {fp.short(report.config_fingerprint)}; "
        f"candidate <b>{html.escape(report.candidate)}</b></p>"
        "<h3>Stages</h3><table><tr><th>stage</th><th>code</th><th>config</th><th>inputs</th><th>output</th>"
        f"<th>metrics</th><th>seconds</th></tr>{stage_rows}</table>"
        "<h3>Held-out answers</h3><table><tr><th>model</th><th>first sentence matches</th><th>exact</th></tr>"
        f"{answer_rows}</table>{ranking}"
        f"<h3>Gate: {'passed' if report.gate.passed else 'held back'}</h3><p>{html.escape(report.gate.reason)}</p>"
        f"<table><tr><th>metric</th><th>candidate</th><th>against</th><th>its value</th><th>needs</th><th></th></tr>"
        f"{checks}</table>"
        f"<h3>Published</h3><p>{html.escape(where)}</p>"
    )


@task(container_image=IMAGE, requests=SMALL, enable_deck=True)
def pipeline_report(
    request: P.PipelineRequest,
    candidate: str,
    datasets: dict[str, DatasetManifest],
    models: dict[str, ModelArtifact],
    answers: AnswerEvaluation,
    policies: PolicyComparison,
    decision: P.GateDecision,
    published: PublishResult,
) -> P.PipelineReport:
    """The run's provenance and results, returned and shown as the "Pipeline" Deck."""
    report = build_report(request, candidate, datasets, models, answers, policies, decision, published)
    publish("Pipeline", report_html(report))
    return report


@task(container_image=IMAGE, requests=SMALL)
def read_config(config: FlyteFile) -> P.PipelineRequest:
    """The config file as a complete, checked PipelineRequest (llmft.flyte.config); a bad config fails here, naming
    the field, before any stage runs."""
    from llmft.flyte.config import load_config

    return load_config(Path(config.download()))


@task(container_image=IMAGE, requests=SMALL)
def model_answers(evaluation: AnswerEvaluation, name: str) -> ModelAnswers:
    """One model's part of the answer evaluation (empty when it was not evaluated): what its card and Space show."""
    return next((m for m in evaluation.models if m.name == name), ModelAnswers())


def _column_order(metric: str) -> tuple[int, str]:
    return (REWARD_COLUMNS.index(metric) + 1 if metric in REWARD_COLUMNS else 0, metric)


def report_text(report: P.PipelineReport) -> str:
    """The run's results in a few lines for the terminal."""
    lines = [f"{'stage':<16} {'code':<24} {'output':<14} {'seconds':>8}  metrics"]
    for r in report.stages:
        code = f"{r.provenance.stage} {r.provenance.stage_version}"
        lines.append(
            f"{r.name:<16} {code:<24} {fp.short(r.output_fingerprint):<14} {r.seconds:>8.1f}  {metrics_text(r)}"
        )
    for m in report.answers.models:
        lines.append(
            f"held-out answers, {m.name}: first sentence matches the reference in {m.first_sentence_match:.1%} "
            f"({report.answers.questions} questions), whole answer in {m.exact_match:.1%}"
        )
    for c in report.gate.ranking:
        measured = ", ".join(f"{m} {c.metrics[m]:.3f}" for m in sorted(c.metrics, key=_column_order))
        lines.append(f"gate ranking, {c.name}: score {c.score:.3f} ({measured})")
    lines.append(f"gate: {report.gate.reason}")
    if report.publish.model_url:
        lines.append(f"published: {report.publish.model_url} {report.publish.space_url}".rstrip())
    return "\n".join(lines)
