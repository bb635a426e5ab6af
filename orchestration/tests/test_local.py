"""Local runs: cache entries whose blobs vanished are dropped (and only those), and Decks are told apart by name."""

from pathlib import Path
from typing import Any

import pytest
from flytekit import task, workflow
from flytekit.core.local_cache import LocalTaskCache
from flytekit.models.core.types import BlobType
from flytekit.models.literals import Blob, BlobMetadata, Literal, LiteralMap, Scalar

from llmft.flyte.decks import publish
from llmft.orchestration.local import DeckRecorder, deck_title
from llmft.orchestration.sandbox import prune_local_cache


def blob(uri: str | Path) -> LiteralMap:
    meta = BlobMetadata(type=BlobType(format="", dimensionality=BlobType.BlobDimensionality.MULTIPART))
    return LiteralMap({"model": Literal(scalar=Scalar(blob=Blob(metadata=meta, uri=str(uri))))})


def test_only_entries_whose_blobs_are_gone_are_pruned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(LocalTaskCache, "_initialized", False)
    kept, gone = tmp_path / "kept", tmp_path / "gone"
    kept.mkdir()
    gone.mkdir()
    inputs = LiteralMap({})
    LocalTaskCache.set("llmft.a.tasks.kept", "v1", inputs, (), blob(kept))
    LocalTaskCache.set("llmft.a.tasks.gone", "v1", inputs, (), blob(gone))
    LocalTaskCache.set("llmft.a.tasks.remote", "v1", inputs, (), blob("s3://bucket/x"))  # not ours to check
    assert prune_local_cache() == []
    gone.rmdir()
    removed = prune_local_cache()
    assert len(removed) == 1 and removed[0].startswith("llmft.a.tasks.gone-")
    assert LocalTaskCache.get("llmft.a.tasks.gone", "v1", inputs, ()) is None
    assert LocalTaskCache.get("llmft.a.tasks.kept", "v1", inputs, ()) is not None
    assert LocalTaskCache.get("llmft.a.tasks.remote", "v1", inputs, ()) is not None


def reporting_task(title: str) -> Any:
    """A task named `train`, as both training stages' are, that publishes a report Deck titled `title`."""

    @task(enable_deck=True)
    def train(n: int) -> int:
        publish(title, f"<p>{title} report</p>")
        return n + 1

    return train


def test_decks_of_tasks_with_the_same_short_name_are_told_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real local run of two tasks that flytekit's log both calls `train` (CPT's and SFT's): each Deck is found under
    a name of its own, from flytekit's own log line and the Deck file it wrote, and holds that task's report."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cpt, sft = reporting_task("CPT"), reporting_task("SFT")

    @workflow
    def two_trainings(n: int) -> int:
        return sft(n=cpt(n=n))

    with DeckRecorder().recording() as recorder:
        assert two_trainings(n=1) == 3
    assert set(recorder.decks) == {"train", "train-sft"}
    assert "<p>CPT report</p>" in recorder.decks["train"].read_text()
    sft_deck = recorder.decks["train-sft"].read_text()
    assert "<p>SFT report</p>" in sft_deck and deck_title(sft_deck) == "SFT"
    assert all(path.is_file() for path in recorder.decks.values())
