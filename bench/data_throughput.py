"""Data-stage throughput and memory: llmft.data (streaming) against two baselines doing the same work on the same
generated raw-text corpus, in the same run: a load-everything pandas pipeline, and a streaming pyarrow pipeline
(pyarrow's JSON reader and compute kernels batch by batch, a Parquet writer per split).

    .venv/bin/python bench/data_throughput.py                          # 100k, 300k and 1M rows of ~1 KB, 3 repeats
    .venv/bin/python bench/data_throughput.py --sizes 100000 --repeats 3   # a quicker look

All three read JSONL, normalise (NFC, line endings, trailing whitespace), drop blank rows and exact duplicates, split
train/eval by content hash and write Parquet. llmft.data also validates every row against its pandera schema,
removes and counts control characters, and fingerprints the dataset. Each run is its own process (peak RSS is that
process's ru_maxrss); the pipelines alternate, --repeats times per size, and each figure is the median with its
min..max. Prints a table and writes bench/data_throughput.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine

HERE = Path(__file__).resolve().parent
WORDS = (
    "flyte task workflow cache resources image deck plugin retry input output model token train eval loss "
    "dataset schema pandera parquet stream memory shard elastic checkpoint launch plan python container"
).split()


def generate(path: Path, rows: int, seed: int = 0) -> int:
    """`rows` JSONL records of about 1 KB of text; 2% repeat an earlier row exactly. Returns the file size."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as out:
        recent: list[str] = []
        for i in range(rows):
            if recent and rng.random() < 0.02:
                text = rng.choice(recent)
            else:
                lines = [" ".join(rng.choices(WORDS, k=12)) + f" {i}-{n}.  " for n in range(12)]
                text = "\r\n".join(lines)
                recent = (recent + [text])[-100:]
            out.write(json.dumps({"text": text}) + "\n")
    return path.stat().st_size


def run_llmft(corpus: Path, out: Path) -> int:
    from llmft.data.build import build_dataset
    from llmft.proto.data.v1 import dataset_pb2 as D

    request = D.DatasetRequest(
        name="bench",
        kind=D.DATASET_KIND_RAW_TEXT,
        sources=[D.DatasetSource(local=D.LocalSource(patterns=[str(corpus)]))],
        cleaning=D.CleaningConfig(normalize=True, deduplicate_exact=True),
        split=D.SplitConfig(eval_fraction=0.05, seed=0),
    )
    manifest, _ = build_dataset(request, out)
    return sum(s.rows for s in manifest.splits)


def run_pandas(corpus: Path, out: Path) -> int:
    import unicodedata

    import pandas as pd

    frame = pd.read_json(corpus, lines=True)
    frame["text"] = frame["text"].map(
        lambda t: "\n".join(line.rstrip() for line in unicodedata.normalize("NFC", t).replace("\r\n", "\n").split("\n"))
    )
    frame = frame[frame["text"].str.strip() != ""]
    frame = frame.drop_duplicates(subset="text")
    frame["id"] = frame["text"].map(lambda t: hashlib.sha256(t.encode()).hexdigest()[:32])
    position = frame["id"].map(lambda i: int(hashlib.sha256(f"0:{i}".encode()).hexdigest()[:16], 16) / 2**64)
    out.mkdir(parents=True)
    frame[position >= 0.05].to_parquet(out / "train.parquet", index=False)
    frame[position < 0.05].to_parquet(out / "eval.parquet", index=False)
    return len(frame)


def run_pyarrow(corpus: Path, out: Path) -> int:
    """The streaming baseline: pyarrow reads the JSONL in blocks and normalises with its compute kernels; content ids
    and the split need a hash per row (sha256, as llmft's), done in Python."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    out.mkdir(parents=True)
    schema = pa.schema([("id", pa.string()), ("text", pa.string())])
    writers = {name: pq.ParquetWriter(out / f"{name}.parquet", schema) for name in ("train", "eval")}
    seen: set[str] = set()
    kept = 0
    reader = pj.open_json(corpus, read_options=pj.ReadOptions(block_size=1 << 24))
    for batch in reader:
        text = pc.utf8_normalize(batch.column("text"), "NFC")
        text = pc.replace_substring(text, "\r\n", "\n")
        text = pc.replace_substring_regex(text, r"[ \t]+(\n|$)", r"\1")
        text = pc.utf8_trim(text, "\n")
        text = pc.filter(text, pc.not_equal(pc.utf8_trim_whitespace(text), ""))
        ids, rows, splits = [], [], []
        for value in text.to_pylist():
            row_id = hashlib.sha256(value.encode()).hexdigest()[:32]
            if row_id in seen:
                continue
            seen.add(row_id)
            ids.append(row_id)
            rows.append(value)
            splits.append(int(hashlib.sha256(f"0:{row_id}".encode()).hexdigest()[:16], 16) / 2**64 < 0.05)
        table = pa.table({"id": ids, "text": rows}, schema=schema)
        mask = pa.array(splits)
        writers["eval"].write_table(table.filter(mask))
        writers["train"].write_table(table.filter(pc.invert(mask)))
        kept += len(ids)
    for writer in writers.values():
        writer.close()
    return kept


PIPELINES = {"llmft": run_llmft, "pandas": run_pandas, "pyarrow": run_pyarrow}
LABELS = {
    "llmft": "llmft.data (streaming)",
    "pandas": "baseline: pandas, load everything",
    "pyarrow": "baseline: pyarrow, streaming",
}


def child(which: str, corpus: str, out: str) -> None:
    started = time.perf_counter()
    rows = PIPELINES[which](Path(corpus), Path(out))
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rows_out": rows, "seconds": seconds, "peak_rss_mib": peak_kib / 1024}))


def measure(which: str, corpus: Path, out: Path) -> dict:
    print(f"  {which} on {corpus.name} ...", flush=True)
    result = subprocess.run(
        [sys.executable, __file__, "--child", which, str(corpus), str(out)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"{which} failed:\n{result.stderr[-4000:]}")
    shutil.rmtree(out, ignore_errors=True)
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def summary(runs: list[dict], rows: int) -> dict:
    for run in runs:
        run["rows_per_s"] = rows / run["seconds"]
    out: dict = {"runs": runs, "rows_out": runs[0]["rows_out"]}
    for key in ("rows_per_s", "seconds", "peak_rss_mib"):
        values = [run[key] for run in runs]
        out[key], out[f"{key}_min"], out[f"{key}_max"] = statistics.median(values), min(values), max(values)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=HERE / "data_throughput.json")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    if args.repeats < 3:
        raise SystemExit("--repeats: at least 3, for a median and a spread")
    command = (
        f".venv/bin/python bench/data_throughput.py --sizes {' '.join(map(str, args.sizes))} --repeats {args.repeats}"
    )
    by_size: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="llmft-bench-") as tmp:
        for rows in args.sizes:
            corpus = Path(tmp) / f"corpus-{rows}.jsonl"
            size = generate(corpus, rows)
            runs: dict[str, list[dict]] = {name: [] for name in PIPELINES}
            for _ in range(args.repeats):
                for name in PIPELINES:
                    runs[name].append(measure(name, corpus, Path(tmp) / name))
            corpus.unlink()
            results = {name: summary(r, rows) for name, r in runs.items()}
            assert len({r["rows_out"] for r in results.values()}) == 1, "the pipelines disagree on the rows kept"
            faster = max(("pandas", "pyarrow"), key=lambda n: results[n]["rows_per_s"])
            ours = results["llmft"]
            by_size[str(rows)] = {
                "corpus_bytes": size,
                "results": results,
                "faster_baseline": faster,
                "speedup_vs_faster_baseline": ours["rows_per_s"] / results[faster]["rows_per_s"],
                "memory_vs_pandas": ours["peak_rss_mib"] / results["pandas"]["peak_rss_mib"],
            }
    print(f"\nData stage throughput, median (min..max) of {args.repeats}  ({command})")
    for rows, entry in by_size.items():
        print(f"\n{int(rows):,} rows, {entry['corpus_bytes'] / 2**20:,.0f} MiB of JSONL")
        print(f"{'pipeline':<34} {'rows/s':>26} {'peak RSS MiB':>22}")
        for name, r in entry["results"].items():
            speed = f"{r['rows_per_s']:,.0f} ({r['rows_per_s_min']:,.0f}..{r['rows_per_s_max']:,.0f})"
            memory = f"{r['peak_rss_mib']:,.0f} ({r['peak_rss_mib_min']:,.0f}..{r['peak_rss_mib_max']:,.0f})"
            print(f"{LABELS[name]:<34} {speed:>26} {memory:>22}")
        print(
            f"speed: {entry['speedup_vs_faster_baseline']:.2f}x the faster baseline ({entry['faster_baseline']}; goal "
            f">= 1.5x); memory: {entry['memory_vs_pandas']:.2f}x pandas'"
        )
    largest = by_size[str(max(args.sizes))]
    record = {
        "benchmark": "data_throughput",
        **machine(),
        "command": command,
        "repeats": args.repeats,
        "rows": max(args.sizes),
        "rows_per_s": largest["results"]["llmft"]["rows_per_s"],
        "peak_rss_mib": largest["results"]["llmft"]["peak_rss_mib"],
        "speedup_vs_faster_baseline": {rows: e["speedup_vs_faster_baseline"] for rows, e in by_size.items()},
        "sizes": by_size,
    }
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
