import pytest

from llmft.orchestration.summary import loss_table
from llmft.proto.training.v1 import training_pb2 as T


def artifact(before: float, after: float) -> T.ModelArtifact:
    return T.ModelArtifact(
        metrics=T.TrainingMetrics(
            eval_before=T.EvalMetrics(loss=before, perplexity=2.0**before),
            eval_after=T.EvalMetrics(loss=after, perplexity=2.0**after),
        )
    )


def test_the_table_has_a_row_per_stage_and_judges_the_last() -> None:
    text = loss_table(["CPT", "SFT"], [artifact(9.0, 6.0), artifact(6.5, 4.25)])
    lines = text.splitlines()
    assert lines[1].split() == ["CPT", "9.0000", "6.0000", "512.0", "64.0"]
    assert lines[2].split() == ["SFT", "6.5000", "4.2500", "90.5", "19.0"]
    assert lines[3] == "SFT held-out loss after training is lower than its base model's."
    worse = loss_table(["CPT", "SFT"], [artifact(9.0, 6.0), artifact(4.0, 4.5)])
    assert worse.splitlines()[-1] == "SFT held-out loss after training is NOT lower than its base model's."


def test_names_and_artifacts_must_pair_up() -> None:
    with pytest.raises(ValueError, match="names: 1 names for 2 artifacts"):
        loss_table(["CPT"], [artifact(1, 1), artifact(1, 1)])
