"""The run's provenance report: every stage's code version, config and input fingerprints, output fingerprint,
metrics and timings, the held-out answers, the gate's ranking and verdict, and where it was published; as a message, a
Deck ("Pipeline"), HTML and a few terminal lines."""

from __future__ import annotations

import html

from flytekit import task

from llmft.core import fingerprint as fp
from llmft.flyte.decks import publish
from llmft.orchestration.config import REWARD_COLUMNS
from llmft.orchestration.image import IMAGE, SMALL
from llmft.proto.data.v1.dataset_pb2 import DatasetManifest
from llmft.proto.pipeline.v1 import pipeline_pb2 as P
from llmft.proto.rlhf.v1.rlhf_pb2 import PolicyComparison
from llmft.proto.serve.v1.serve_pb2 import AnswerEvaluation, PublishResult
from llmft.proto.training.v1.training_pb2 import ModelArtifact


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
