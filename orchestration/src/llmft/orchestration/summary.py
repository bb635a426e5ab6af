"""What a training workflow ends with: a plain-text table of held-out loss before and after each training stage, and
whether the last stage improved on its base, logged and returned; on the pipeline's own image, with its other small
tasks."""

from __future__ import annotations

from flytekit import task

from llmft.orchestration.image import IMAGE, SMALL
from llmft.proto.training.v1.training_pb2 import ModelArtifact


def loss_table(names: list[str], artifacts: list[ModelArtifact]) -> str:
    """One row per stage (held-out loss and perplexity before and after training), then the verdict on the last."""
    if len(names) != len(artifacts) or not artifacts:
        raise ValueError(f"names: {len(names)} names for {len(artifacts)} artifacts; give one name per artifact")
    lines = [f"{'stage':<6} {'held-out loss before':>21} {'after':>8} {'perplexity before':>18} {'after':>9}"]
    for name, artifact in zip(names, artifacts, strict=True):
        m = artifact.metrics
        lines.append(
            f"{name:<6} {m.eval_before.loss:>21.4f} {m.eval_after.loss:>8.4f} "
            f"{m.eval_before.perplexity:>18.1f} {m.eval_after.perplexity:>9.1f}"
        )
    last = artifacts[-1].metrics
    verdict = "lower" if last.eval_after.loss < last.eval_before.loss else "NOT lower"
    lines.append(f"{names[-1]} held-out loss after training is {verdict} than its base model's.")
    return "\n".join(lines)


@task(container_image=IMAGE, requests=SMALL)
def loss_summary(names: list[str], artifacts: list[ModelArtifact]) -> str:
    text = loss_table(names, artifacts)
    print(text, flush=True)
    return text
