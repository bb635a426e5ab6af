"""Data-stage throughput and memory: llmft.data (streaming) against a naive load-everything pandas pipeline doing
the same work, on the same generated raw-text corpus, in the same run.

    .venv/bin/python bench/data_throughput.py                 # 1,000,000 rows of ~1 KB: a ~1 GB JSONL corpus
    .venv/bin/python bench/data_throughput.py --rows 100000   # a quicker look

Both read JSONL, normalise (NFC, line endings, trailing whitespace), drop blank rows and exact duplicates, split
train/eval by content hash and write Parquet. llmft.data also validates every row against its pandera schema and
fingerprints the dataset. Each runs in its own process; peak RSS is that process's ru_maxrss. Prints a table and
writes bench/data_throughput.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import resource
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


def child(which: str, corpus: str, out: str) -> None:
    started = time.perf_counter()
    rows = (run_llmft if which == "llmft" else run_pandas)(Path(corpus), Path(out))
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rows_out": rows, "seconds": seconds, "peak_rss_mib": peak_kib / 1024}))


def measure(which: str, corpus: Path, out: Path) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--child", which, str(corpus), str(out)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"{which} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path, default=HERE / "data_throughput.json")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    with tempfile.TemporaryDirectory(prefix="llmft-bench-") as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        size = generate(corpus, args.rows)
        ours = measure("llmft", corpus, Path(tmp) / "llmft")
        baseline = measure("pandas", corpus, Path(tmp) / "pandas")
    for result in (ours, baseline):
        result["rows_per_s"] = args.rows / result["seconds"]
    command = f".venv/bin/python bench/data_throughput.py --rows {args.rows}"
    print(f"\nData stage throughput: {args.rows:,} rows, {size / 2**20:,.0f} MiB of JSONL  ({command})\n")
    print(f"{'pipeline':<34} {'rows/s':>10} {'seconds':>9} {'peak RSS MiB':>13} {'rows out':>10}")
    for name, result in (("llmft.data (streaming)", ours), ("baseline: pandas, load everything", baseline)):
        print(
            f"{name:<34} {result['rows_per_s']:>10,.0f} {result['seconds']:>9.1f} "
            f"{result['peak_rss_mib']:>13,.0f} {result['rows_out']:>10,}"
        )
    print(
        f"\nspeed: {ours['rows_per_s'] / baseline['rows_per_s']:.2f}x the baseline; "
        f"memory: {ours['peak_rss_mib'] / baseline['peak_rss_mib']:.2f}x the baseline"
    )
    record = {
        "benchmark": "data_throughput",
        **machine(),
        "command": command,
        "rows": args.rows,
        "corpus_bytes": size,
        "rows_per_s": ours["rows_per_s"],
        "peak_rss_mib": ours["peak_rss_mib"],
        "seconds": ours["seconds"],
        "rows_out": ours["rows_out"],
        "baseline": {"name": "pandas load-everything", **baseline},
    }
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
