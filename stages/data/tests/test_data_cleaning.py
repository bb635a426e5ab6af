"""Cleaning steps, file formats, the Hugging Face datasets source, streaming, and every bad input: each fails with
file, row and field named, a non-zero exit from the CLI, and no output folder."""

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from llmft.core.datasets import read_split
from llmft.data.__main__ import main as cli
from llmft.data.build import acquire_frame, build_dataset
from llmft.data.sources import MAX_RECORD_BYTES
from llmft.proto.data.v1 import dataset_pb2 as D

PARAGRAPH = (
    "Flyte tasks are the building blocks of workflows. Each task runs in its own container with declared "
    "resources, and its inputs and outputs are typed so that data flows between tasks safely and reproducibly."
)


def request(kind: D.DatasetKind, pattern: str, fmt: str = "auto", **cleaning: object) -> D.DatasetRequest:
    return D.DatasetRequest(
        name="t",
        kind=kind,
        sources=[D.DatasetSource(local=D.LocalSource(patterns=[pattern]), format=fmt)],
        cleaning=D.CleaningConfig(normalize=True, **cleaning),  # type: ignore[arg-type]
        split=D.SplitConfig(eval_fraction=0.2),
    )


def removed(manifest: D.DatasetManifest) -> dict[str, int]:
    return {c.step: c.rows_removed for c in manifest.cleaning}


def test_near_duplicates_are_removed_and_counted(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(PARAGRAPH)
    (docs / "b.txt").write_text(PARAGRAPH.replace("safely", "safely and quickly"))  # one edit: near duplicate
    (docs / "c.txt").write_text("A completely different text about tokenizers, byte pairs and merges in vocabularies.")
    (docs / "d.txt").write_text(PARAGRAPH)  # exact duplicate
    manifest, _ = build_dataset(
        request(D.DATASET_KIND_RAW_TEXT, str(docs), deduplicate_exact=True, near_duplicate_threshold=0.7),
        tmp_path / "out",
    )
    assert removed(manifest) == {
        "strip_control_characters": 0,
        "drop_blank": 0,
        "deduplicate_exact": 1,
        "deduplicate_near": 1,
    }
    assert sum(s.rows for s in manifest.splits) == 2


def test_shard_signatures_and_lsh_bands_equal_datasketchs_without_importing_it() -> None:
    """A shard worker's MinHash signatures and LSH bands are computed without datasketch (whose import pulls scipy),
    and must equal what the one-process build's datasketch index holds, or the two paths would find different near
    duplicates: values for texts of 0 to 400 words (fewer words than a shingle, accents, combining marks), and the
    bands for every threshold from 0.01 to 1. A fresh process shows neither datasketch nor scipy is imported."""
    import os
    import random
    import sys

    import numpy as np
    from datasketch import MinHash
    from datasketch.lsh import _optimal_param

    from llmft.data.clean import NUM_PERM, Signatures, lsh_params, shingles

    signatures = Signatures()
    rng = random.Random(0)
    for words in (0, 1, 4, 5, 6, 50, 400):
        text = " ".join(rng.choice(["a", "bb", "cé", "d\u0301", "x1", "Paris."]) for _ in range(words))
        reference = MinHash(num_perm=NUM_PERM, seed=1)
        reference.update_batch(list(shingles(text)))
        ours = signatures.of(text)
        assert ours.dtype == reference.hashvalues.dtype and np.array_equal(ours, reference.hashvalues), words
    for threshold in (round(0.01 * i, 2) for i in range(1, 101)):
        assert lsh_params(threshold) == tuple(_optimal_param(threshold, NUM_PERM, 0.5, 0.5)), threshold
    script = (
        "import sys; from llmft.data.shards import band_hashes, lsh_bands; b, r = lsh_bands(0.8); "
        "assert len(band_hashes('one two three four five six', b, r)) == b; "
        "print(sorted({'datasketch', 'scipy'} & set(sys.modules)))"
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(os.path.abspath(p) for p in sys.path if p)},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]"


def test_length_pattern_and_language_filters(tmp_path: Path) -> None:
    rows = [
        {"prompt": "short"},
        {"prompt": "TODO: remove this generated placeholder prompt before release"},
        {"prompt": "Ceci est une longue phrase en français sur l'entraînement des modèles de langage."},
        {"prompt": "This is a long English sentence about training language models on curated data."},
    ]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    req = request(
        D.DATASET_KIND_PROMPT, str(tmp_path / "p.jsonl"), min_chars=20, drop_patterns=["^TODO"], languages=["en"]
    )
    req.split.eval_fraction = 0.0
    manifest, _ = build_dataset(req, tmp_path / "out")
    assert removed(manifest) == {
        "strip_control_characters": 0,
        "drop_blank": 0,
        "min_chars": 1,
        "drop_patterns": 1,
        "languages": 1,
    }
    assert list(read_split(tmp_path / "out", "train")["prompt"]) == [rows[3]["prompt"]]


def test_without_deduplication_repeats_keep_distinct_ids(tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_text(json.dumps({"prompt": "same"}) + "\n" + json.dumps({"prompt": "same"}) + "\n")
    frame, _ = acquire_frame(request(D.DATASET_KIND_PROMPT, str(tmp_path / "p.jsonl")))
    assert len(frame) == 2 and frame["id"][1] == frame["id"][0] + "~2"


def test_csv_and_parquet_sources(tmp_path: Path) -> None:
    pd.DataFrame({"prompt": ["a?", "b?"], "chosen": ["yes", "no"], "rejected": ["no", "yes"]}).to_csv(
        tmp_path / "p.csv", index=False
    )
    pd.DataFrame({"prompt": ["c?"], "chosen": ["x"], "rejected": ["y"]}).to_parquet(tmp_path / "p.parquet")
    frame, summary = acquire_frame(request(D.DATASET_KIND_PREFERENCE, str(tmp_path / "p.*")))
    assert sorted(frame["prompt"]) == ["a?", "b?", "c?"]
    assert sorted(frame["source"])[0].endswith("p.csv:2")
    assert len(summary.source_fingerprints) == 2


def test_hugging_face_datasets_source_reads_a_local_dataset(tmp_path: Path) -> None:
    folder = tmp_path / "hub-dataset"
    folder.mkdir()
    (folder / "train.jsonl").write_text(
        "".join(json.dumps({"instruction": f"Say {i}", "input": "", "output": f"{i}"}) + "\n" for i in range(4))
    )
    req = D.DatasetRequest(
        name="hub",
        kind=D.DATASET_KIND_CHAT,
        sources=[D.DatasetSource(hub=D.HubDatasetSource(dataset_id=str(folder), split="train"))],
    )
    frame, summary = acquire_frame(req)
    assert len(frame) == 4
    assert json.loads(frame["messages"][0])[0] == {"role": "user", "content": "Say 0"}
    assert summary.source_fingerprints[0].startswith("sha256:")
    missing = D.DatasetRequest(
        name="hub", kind=D.DATASET_KIND_CHAT, sources=[D.DatasetSource(hub=D.HubDatasetSource(dataset_id="no/such"))]
    )
    with pytest.raises(ValueError, match="hub dataset 'no/such': cannot load"):
        acquire_frame(missing)


def test_chunking_does_not_change_the_dataset(tmp_path: Path) -> None:
    rows = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
        for i in range(50)
    ]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    small, _ = build_dataset(request(D.DATASET_KIND_CHAT, str(tmp_path / "c.jsonl")), tmp_path / "a", chunk_rows=7)
    large, _ = build_dataset(request(D.DATASET_KIND_CHAT, str(tmp_path / "c.jsonl")), tmp_path / "b")
    assert small == large
    for split in ("train", "eval"):
        assert read_split(tmp_path / "a", split).equals(read_split(tmp_path / "b", split))


def bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (CLI arguments, what the error must say)."""
    (tmp_path / "malformed.jsonl").write_text('{"prompt": "ok"}\n{"prompt": \n')
    (tmp_path / "missing.jsonl").write_text('{"question": "x"}\n')
    (tmp_path / "mistyped.jsonl").write_text('{"prompt": ["a", "b"]}\n')
    (tmp_path / "latin1.jsonl").write_bytes('{"prompt": "caf\xe9"}\n'.encode("latin-1"))
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "huge.txt").write_text("x" * (10 * 1024 * 1024))
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.md").write_text("text")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    for command in (["init", "-q"], ["add", "."], ["commit", "-qm", "one"]):
        subprocess.run([*git, *command], cwd=repo, check=True, capture_output=True)
    chat = [{"role": "user", "content": "q"}, {"role": "user", "content": "again"}]
    (tmp_path / "roles.jsonl").write_text(json.dumps({"messages": chat}) + "\n")
    local = ["--kind", "prompt", "--local"]
    return {
        "malformed JSONL": (local + [str(tmp_path / "malformed.jsonl")], "malformed.jsonl:2: malformed JSON"),
        "missing field": (local + [str(tmp_path / "missing.jsonl")], "missing.jsonl:1: missing field 'prompt'"),
        "mistyped field": (local + [str(tmp_path / "mistyped.jsonl")], "field 'prompt' is list, expected str"),
        "non-UTF-8": (local + [str(tmp_path / "latin1.jsonl")], "latin1.jsonl:1: not valid UTF-8"),
        "empty dataset": (local + [str(tmp_path / "empty.jsonl")], "the sources hold no rows"),
        "10 MB row": (["--kind", "raw_text", "--local", str(tmp_path / "huge.txt")], f"{MAX_RECORD_BYTES:,}-byte"),
        "missing file": (local + [str(tmp_path / "nope.jsonl")], "nope.jsonl' matches no file on this machine"),
        "bad roles": (["--kind", "chat", "--local", str(tmp_path / "roles.jsonl")], "roles must alternate"),
        "unreachable URL": (["--kind", "prompt", "--url", "http://127.0.0.1:9/p.jsonl"], "p.jsonl: unreachable"),
        "missing git ref": (["--kind", "raw_text", "--git", f"{repo}@no-such-ref"], "'no-such-ref' does not exist"),
    }


@pytest.mark.parametrize(
    "name",
    [
        "malformed JSONL",
        "missing field",
        "mistyped field",
        "non-UTF-8",
        "empty dataset",
        "10 MB row",
        "missing file",
        "bad roles",
        "unreachable URL",
        "missing git ref",
    ],
)
def test_bad_input_exits_non_zero_naming_the_problem_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    arguments, message = bad_inputs(tmp_path)[name]
    out = tmp_path / "out"
    assert cli([*arguments, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out-")]
