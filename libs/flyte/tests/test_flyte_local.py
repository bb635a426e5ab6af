"""Local runs: cache entries whose blobs vanished are dropped (and only those), and Decks are told apart by name."""

import logging
from pathlib import Path

import pytest
from flytekit.core.local_cache import LocalTaskCache
from flytekit.models.core.types import BlobType
from flytekit.models.literals import Blob, BlobMetadata, Literal, LiteralMap, Scalar

from llmft.flyte.local import DeckRecorder, deck_title, prune_local_cache


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


def deck(path: Path, *tabs: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f'<li onclick="handleLinkClick(this)">{tab}</li>' for tab in tabs))
    return path


def test_decks_of_tasks_with_the_same_short_name_are_told_apart(tmp_path: Path) -> None:
    cpt = deck(tmp_path / "1" / "deck.html", "Timeline", "Dataset corpus", "CPT", "Source Code")
    sft = deck(tmp_path / "2" / "deck.html", "Timeline", "Dataset corpus", "CPT", "SFT", "Output")
    flow = deck(tmp_path / "3" / "deck.html", "Timeline", "Pandera Report: ChatRow")
    assert deck_title(sft.read_text()) == "SFT" and deck_title(flow.read_text()) == ""
    recorder = DeckRecorder()
    for task, path in (("train", cpt), ("train", sft), ("local", cpt), ("local", flow)):
        message = f"{task} task creates flyte deck html to file://{path}"
        recorder.emit(logging.LogRecord("flytekit", logging.INFO, __file__, 1, message, None, None))
    assert recorder.decks == {"train": cpt, "train-sft": sft, "workflow": flow}
