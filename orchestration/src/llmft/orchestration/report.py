"""The last task of a training workflow: a plain-text table of held-out loss before and after each stage, logged and
returned, so a run ends by saying whether training helped."""

from __future__ import annotations

from flytekit import Resources, task

from llmft.proto.training.v1.training_pb2 import ModelArtifact
from llmft.train_sft.tasks import IMAGE


@task(container_image=IMAGE, requests=Resources(cpu="500m", mem="512Mi"))
def loss_summary(cpt: ModelArtifact, sft: ModelArtifact) -> str:
    lines = [f"{'stage':<6} {'held-out loss before':>21} {'after':>8} {'perplexity before':>18} {'after':>9}"]
    for name, artifact in (("CPT", cpt), ("SFT", sft)):
        m = artifact.metrics
        lines.append(
            f"{name:<6} {m.eval_before.loss:>21.4f} {m.eval_after.loss:>8.4f} "
            f"{m.eval_before.perplexity:>18.1f} {m.eval_after.perplexity:>9.1f}"
        )
    verdict = "lower" if sft.metrics.eval_after.loss < sft.metrics.eval_before.loss else "NOT lower"
    lines.append(f"SFT held-out loss after training is {verdict} than its base model's.")
    text = "\n".join(lines)
    print(text, flush=True)
    return text
