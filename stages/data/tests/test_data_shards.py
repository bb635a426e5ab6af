"""Corpora beyond one process. Preparing a dataset in shards (llmft.data.shards): duplicates split across shards are
found by the global steps, the result equals the one-process build's, a failing shard names itself, its file and row
and publishes nothing, and a rerun redoes only the shards that failed or changed. And the report's length histograms
hold a bounded sample, not a value per row."""

import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmft.core.datasets import read_split
from llmft.data.__main__ import main as cli
from llmft.data.build import build_dataset
from llmft.data.kinds import DataValidationError
from llmft.data.report import report_html
from llmft.data.shards import ShardError, build_sharded, plan_shards
from llmft.proto.data.v1 import dataset_pb2 as D

WORDS = "task workflow launch plan container image cache version input output schema deck secret node map".split()


def corpus(folder: Path, seed: int = 0) -> list[str]:
    """Two JSONL files of 40-word documents with repeats inside a file, exact copies across the files, and near
    copies (one word added) across the files."""
    rng = random.Random(seed)
    docs = [" ".join(rng.choice(WORDS) for _ in range(40)) for _ in range(600)]
    first = docs[:360] + docs[20:30]  # 10 repeats within the first file
    second = docs[360:] + docs[:15] + [doc + " again" for doc in docs[100:112]]  # 15 exact, 12 near across files
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("a.jsonl", first), ("b.jsonl", second)):
        (folder / name).write_text("".join(json.dumps({"text": text}) + "\n" for text in rows))
    return docs


def request(folder: Path, near: float = 0.0, exact: bool = True) -> D.DatasetRequest:
    return D.DatasetRequest(
        name="corpus",
        kind=D.DATASET_KIND_RAW_TEXT,
        sources=[D.DatasetSource(local=D.LocalSource(patterns=[str(folder / "*.jsonl")]), format="jsonl")],
        cleaning=D.CleaningConfig(normalize=True, deduplicate_exact=exact, near_duplicate_threshold=near),
        split=D.SplitConfig(eval_fraction=0.1, seed=1),
    )


def removed(manifest: D.DatasetManifest) -> dict[str, tuple[int, str]]:
    return {c.step: (c.rows_removed, Path(c.first_row).name) for c in manifest.cleaning if c.rows_removed}


@pytest.mark.parametrize(("near", "exact"), [(0.0, True), (0.7, True), (0.0, False)], ids=["exact", "near", "kept"])
def test_duplicates_across_shards_are_removed_as_in_one_process(tmp_path: Path, near: float, exact: bool) -> None:
    corpus(tmp_path / "in")
    wanted = request(tmp_path / "in", near, exact)
    plan = plan_shards(wanted, 4)
    # The 4 shards cut both files at line boundaries, so copies sit in other shards than their originals.
    assert len(plan.shards) == 4 and sum(1 for s in plan.shards for p in s.pieces if p.end >= 0) >= 4
    one, _ = build_dataset(wanted, tmp_path / "one")
    sharded, report = build_sharded(wanted, tmp_path / "sharded", tmp_path / "work", shards=4, workers=2)
    expected = {"deduplicate_exact": (25, "a.jsonl:361")} if exact else {}
    if near:
        expected["deduplicate_near"] = (12, "b.jsonl:256")
    assert removed(sharded) == removed(one) == expected
    assert sharded.fingerprint == one.fingerprint  # same rows, ids, splits and sources
    assert sharded.source_fingerprints == one.source_fingerprints
    rows = read_split(tmp_path / "sharded", "train")
    ids = list(rows["id"]) + list(read_split(tmp_path / "sharded", "eval")["id"])
    assert len(ids) == len(set(ids)) == 637 - sum(n for n, _ in expected.values())  # 637 lines read
    if not exact:  # kept repeats get their own ids, numbered across shards in source order
        assert sum(1 for i in ids if i.endswith("~2")) == 25
    assert not (tmp_path / "work").exists()  # the shards' work goes once the dataset is written
    # The report (and the Deck) says what each shard read and how much memory its worker took.
    shards = report["shards"]
    assert [s["shard"] for s in shards] == [0, 1, 2, 3] and all(s["peak_rss_mib"] > 50 for s in shards)
    assert "<h3>Shards</h3><table" in report_html(sharded, report)
    assert f"<td>4</td><td>637</td><td>{sum(s['rows_kept'] for s in shards)}</td>" in report_html(sharded, report)


def test_a_failing_shard_names_itself_publishes_nothing_and_the_rerun_redoes_only_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    corpus(folder)
    second = folder / "b.jsonl"
    good = second.read_text()
    lines = good.splitlines(keepends=True)
    second.write_text("".join(lines[:100]) + "{not json\n" + "".join(lines[100:]))
    wanted = request(folder)
    work = tmp_path / "work"
    with pytest.raises(ShardError) as failed:
        build_sharded(wanted, tmp_path / "out", work, shards=4, workers=2)
    named = re.match(r"shard (\d) \((shard-0000\1-[0-9a-f]{16})\): (.*)", str(failed.value))
    assert named and named.group(3).startswith(f"{second}:101: malformed JSON"), failed.value
    assert not (tmp_path / "out").exists()  # nothing published
    finished = {p.parent.name for p in work.glob("shard-*/done.json")}
    assert len(finished) == 3 and named.group(2) not in finished  # the other shards' work is kept
    # The same failure from the command line: exit 2, the shard and the row named, no output folder.
    code = cli(
        ["--kind", "raw_text", "--local", str(folder / "*.jsonl"), "--format", "jsonl", "--shards", "4",
         "--workers", "1", "--out", str(tmp_path / "cli")]
    )  # fmt: skip
    stderr = capsys.readouterr().err
    assert code == 2 and f"{named.group(2)}): {second}:101: malformed JSON" in stderr, stderr
    assert not (tmp_path / "cli").exists()

    second.write_text("".join(lines[:100]) + json.dumps({"text": "a fixed line"}) + "\n" + "".join(lines[100:]))
    read = recording(monkeypatch)
    manifest, _ = build_sharded(wanted, tmp_path / "out", work, shards=4, workers=1)
    # The shards reading only the unchanged first file were done and not read again; those reading the fixed one
    # (changed, so renamed) were.
    plan = plan_shards(wanted, 4)
    changed = [s for s in plan.shards if any(p.path == str(second) for p in s.pieces)]
    assert read == [p.path for s in changed for p in s.pieces] and len(changed) < len(plan.shards)
    one, _ = build_dataset(wanted, tmp_path / "one")
    assert manifest.fingerprint == one.fingerprint and sum(s.rows for s in manifest.splits) == 637 + 1 - 25


def test_rows_are_validated_in_their_shards_worker_and_a_failure_names_the_shard_and_line(tmp_path: Path) -> None:
    """The workers validate their rows against the kind's schema (the merge only moves rows): a control character
    without normalisation fails in its shard's worker, which names the shard and the file's line; the error crosses
    the process boundary with its failures for the Deck; nothing is published and the other shards keep their work.
    Repeated rows in one shard are not an error there (the merge removes them and checks ids across the dataset)."""
    folder = tmp_path / "in"
    corpus(folder)
    second = folder / "b.jsonl"
    lines = second.read_text().splitlines(keepends=True)
    second.write_text("".join(lines[:200]) + json.dumps({"text": "a bell \x07 rings"}) + "\n" + "".join(lines[200:]))
    wanted = request(folder)
    wanted.cleaning.normalize = False
    work = tmp_path / "work"
    with pytest.raises(DataValidationError) as failed:
        build_sharded(wanted, tmp_path / "out", work, shards=4, workers=2)
    error: Any = failed.value
    assert re.match(r"shard \d \(shard-\d{5}-[0-9a-f]{16}\): 1 DATASET_KIND_RAW_TEXT schema failure", str(error))
    assert f"{second}:201" in str(error) and "control character U+0007" in str(error)
    assert [(f["source"], f["field"]) for f in error.failures] == [(f"{second}:201", "text")]
    assert not (tmp_path / "out").exists() and len(list(work.glob("shard-*/done.json"))) == 3
    second.write_text("".join(lines))
    manifest, _ = build_sharded(wanted, tmp_path / "out", work, shards=4, workers=2)
    assert sum(s.rows for s in manifest.splits) == 637 - 25  # the first file's 10 repeats sit in one shard: fine


# Runs one shard of each request (hex-serialised) in a fresh process and prints what it kept or the error it raised,
# with the heavy modules the process had imported by then.
WORKER_SCRIPT = """
import json, sys
from pathlib import Path
from llmft.data.shards import plan_shards, run_shard
from llmft.proto.data.v1 import dataset_pb2 as D
for position, raw in enumerate(sys.argv[2:]):
    request = D.DatasetRequest.FromString(bytes.fromhex(raw))
    try:
        outcome = run_shard(request, plan_shards(request, 1).shards[0], Path(sys.argv[1]) / str(position))["rows_kept"]
    except Exception as error:
        outcome = str(error)
    heavy = sorted({"pandas", "pandera", "pyarrow.compute"} & set(sys.modules))
    print(json.dumps({"outcome": outcome, "heavy": heavy}))
"""


def test_a_worker_validates_its_rows_without_pandas_until_a_batch_fails(tmp_path: Path) -> None:
    """Valid rows pass the schema's checks in the worker without pandas and pandera (kinds.screen; ~50 MiB and 0.3 s
    a worker); the first batch that fails goes through pandera, whose report names the file's line."""
    import os
    import subprocess
    import sys

    folder = tmp_path / "in"
    corpus(folder)
    valid = request(folder)
    bad_folder = tmp_path / "bad"
    bad_folder.mkdir()
    (bad_folder / "a.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in ["fine", "a bell \x07 rings"]))
    bad = request(bad_folder)
    bad.cleaning.normalize = False
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(os.path.abspath(entry) for entry in sys.path if entry)}
    run = subprocess.run(
        [sys.executable, "-c", WORKER_SCRIPT, str(tmp_path / "work"),
         valid.SerializeToString().hex(), bad.SerializeToString().hex()],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    first, second = (json.loads(line) for line in run.stdout.strip().splitlines()[-2:])
    assert first == {"outcome": 637, "heavy": []}, first  # every row: the repeats stay until the merge
    assert f"{bad_folder / 'a.jsonl'}:2" in second["outcome"] and "control character U+0007" in second["outcome"]
    assert "pandera" in second["heavy"]


def recording(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files shards read from now on, in order."""
    from llmft.data import shards

    read: list[str] = []
    original = shards._records

    def records(request: D.DatasetRequest, piece: shards.Piece, fingerprints: list[str]) -> Iterator[Any]:
        read.append(piece.path)
        yield from original(request, piece, fingerprints)

    monkeypatch.setattr(shards, "_records", records)
    return read


def test_a_killed_run_redoes_only_its_unfinished_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llmft.data import shards

    folder = tmp_path / "in"
    corpus(folder)
    wanted = request(folder)
    plan = plan_shards(wanted, 4)
    work = tmp_path / "work"
    for shard in plan.shards[:2]:  # a run that was killed after two shards
        shards.run_shard(wanted, shard, work)
    read = recording(monkeypatch)
    manifest, _ = build_sharded(wanted, tmp_path / "out", work, shards=4, workers=1)
    assert read == [p.path for s in plan.shards[2:] for p in s.pieces]  # only the unfinished shards were read
    one, _ = build_dataset(wanted, tmp_path / "one")
    assert manifest.fingerprint == one.fingerprint


def test_the_reports_length_histograms_hold_a_bounded_uniform_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report keeps at most REPORT_SAMPLE lengths per split, whatever the row count, drawn from the whole split
    (not its first rows), and the Deck says it is a sample; the manifest's counts stay exact."""
    from llmft.data import build

    monkeypatch.setattr(build, "REPORT_SAMPLE", 50)
    folder = tmp_path / "in"
    folder.mkdir()
    # Row i has i + 1 words: lengths grow through the file, so a sample of the first rows would be the shortest.
    (folder / "a.jsonl").write_text("".join(json.dumps({"text": " ".join(["w"] * (i + 1))}) + "\n" for i in range(600)))
    manifest, report = build_dataset(request(folder), tmp_path / "out")
    train = next(s for s in manifest.splits if s.name == "train")
    lengths = report["lengths"]["train"]
    assert len(lengths) == 50 and report["sampled"]["train"] == (50, train.rows) and train.rows > 500
    assert max(lengths) > 2 * 600 * 0.75  # rows from the last quarter of the file are in the sample
    assert train.characters == sum(2 * (i + 1) - 1 for i in range(600)) - next(
        s.characters for s in manifest.splits if s.name == "eval"
    )
    html = report_html(manifest, report)
    assert "uniform sample" in html and f"<td>train</td><td>50</td><td>{train.rows}</td>" in html


# Builds a generated corpus of `rows` 31-word rows (no duplicates: every index must hold every row) with exact and
# MinHash near deduplication, in shards of 5,000 rows on 2 workers or in one process, and prints the peak RSS of this
# process and of its largest worker, in MiB (VmHWM: ru_maxrss would start from the forking test process's peak).
PEAK_SCRIPT = """
import json, random, sys
from pathlib import Path

def main():
    folder, rows, path = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    from llmft.proto.data.v1 import dataset_pb2 as D
    words = "task workflow launch plan container image cache version input output schema deck secret node".split()
    rng = random.Random(0)
    with open(folder / "corpus.jsonl", "w") as handle:
        for i in range(rows):
            handle.write(json.dumps({"text": " ".join(rng.choice(words) for _ in range(30)) + f" {i}"}) + "\\n")
    request = D.DatasetRequest(
        name="memory", kind=D.DATASET_KIND_RAW_TEXT,
        sources=[D.DatasetSource(local=D.LocalSource(patterns=[str(folder / "corpus.jsonl")]), format="jsonl")],
        cleaning=D.CleaningConfig(normalize=True, deduplicate_exact=True, near_duplicate_threshold=0.8),
        split=D.SplitConfig(eval_fraction=0.1),
    )
    from llmft.data.shards import peak_rss_mib
    if path == "sharded":
        from llmft.data.shards import build_sharded
        manifest, report = build_sharded(request, folder / "out", folder / "work", shards=rows // 5000, workers=2)
        worker = max(shard["peak_rss_mib"] for shard in report["shards"])
    else:
        from llmft.data.build import build_dataset
        manifest, _ = build_dataset(request, folder / "out")
        worker = 0.0
    kept = sum(s.rows for s in manifest.splits)
    # The workers validated; the merge moves Arrow batches without pyarrow.compute.
    light = not {"pandera", "pandas", "scipy", "pyarrow.compute"} & set(sys.modules)
    print(json.dumps({"kept": kept, "process": peak_rss_mib(), "worker": worker, "light": light}))

if __name__ == "__main__":
    main()
"""


def peak_rss(folder: Path, rows: int, path: str) -> dict[str, float]:
    import os
    import subprocess
    import sys

    folder.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(os.path.abspath(entry) for entry in sys.path if entry)}
    run = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, str(folder), str(rows), path],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    result: dict[str, float] = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["kept"] == rows  # every row was read, indexed and written
    return result


def test_memory_does_not_grow_with_the_row_count_in_shards_as_it_does_in_one_process(tmp_path: Path) -> None:
    """Four times the rows in four times the shards of one size: neither the process running the global steps nor
    a worker grows by more than the budget. The one-process build's indexes (exact keys, MinHash LSH) hold every row,
    and the same budget catches them."""
    budget = 40.0  # MiB; one process grows ~2.3 KB a row here, ~100 MiB for the 45,000 more rows
    small, large = (peak_rss(tmp_path / f"sharded-{rows}", rows, "sharded") for rows in (15_000, 60_000))
    assert large["process"] - small["process"] <= budget, (small, large)
    assert small["worker"] > 0 and large["worker"] - small["worker"] <= budget, (small, large)  # workers ran
    assert small["light"] and large["light"]  # pandera, pandas (Arrow's shim would), scipy, pyarrow.compute: not here
    one_small, one_large = (peak_rss(tmp_path / f"one-{rows}", rows, "one") for rows in (15_000, 60_000))
    assert one_small["worker"] == one_large["worker"] == 0  # one process: no workers
    assert one_large["process"] - one_small["process"] > budget, (one_small, one_large)
