"""Deduplicating a corpus in shards: llmft.data (`--shards`, llmft.data.shards) against datatrove 0.10 doing the same
work on the same generated corpus, in the same run: read JSONL, MinHash near-duplicate removal with the same
parameters (5-word shingles, 64 hash values cut into the bands datasketch picks for a Jaccard threshold of 0.8), and
write Parquet; each with 1 and with 2 worker processes.

llmft also normalises every row (NFC, line endings, control characters), removes exact duplicates first, validates
every row against its pandera schema, splits train/eval and fingerprints; datatrove's pipeline is its four MinHash
stages (signatures, buckets, clusters, filter) with its JSONL reader and Parquet writer, which catch exact copies as
near duplicates. Each run is its own process; peak RSS is the largest process of the run, reported also apart: the
process that runs the pipeline (its VmHWM; llmft: planning, the global steps and the merge) and its largest worker
(llmft: the VmHWM each shard's worker records; datatrove: ru_maxrss of its worker processes). llmft cuts the corpus
into shards of --shard-rows rows (at least one per file), so a larger corpus has more shards of the same size, as a
team would run it; datatrove reads one task per file. Arms alternate, --repeats times;
figures are medians with min..max.

    .venv/bin/python bench/data_dedup.py --rows 100000           # 8 files of ~1 KB rows, 3 repeats
    .venv/bin/python bench/data_dedup.py --rows 1000000 4000000 --arms llmft_2 --repeats 1 \
        --json bench/data_dedup_scale.json                       # memory at scale (datatrove: ~30 min a run at 1M)

Writes bench/data_dedup.json (or --json) with the CPU it ran on.
"""

from __future__ import annotations

import argparse
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
from typing import Any

from machine import machine

HERE = Path(__file__).resolve().parent
THRESHOLD = 0.8
WORDS = (
    "flyte task workflow cache resources image deck plugin retry input output model token train eval loss "
    "dataset schema pandera parquet stream memory shard elastic checkpoint launch plan python container"
).split()
ARMS = ("llmft_1", "datatrove_1", "llmft_2", "datatrove_2")


def generate(folder: Path, rows: int, files: int, seed: int = 0) -> dict[str, int]:
    """`rows` JSONL records of about 1 KB in `files` files; 2% repeat an earlier row exactly and 2% are an earlier row
    with one word changed (near duplicates), the earlier row often in another file."""
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    handles = [open(folder / f"part-{i:03d}.jsonl", "w", encoding="utf-8") for i in range(files)]  # noqa: SIM115
    recent: list[str] = []
    exact = near = 0
    for i in range(rows):
        draw = rng.random()
        if recent and draw < 0.02:
            text = rng.choice(recent)
            exact += 1
        elif recent and draw < 0.04:
            words = rng.choice(recent).split(" ")
            words[rng.randrange(len(words))] = rng.choice(WORDS)
            text = " ".join(words)
            near += 1
        else:
            text = " ".join(" ".join(rng.choices(WORDS, k=12)) + f" {i}-{n}." for n in range(12))
            recent = (recent + [text])[-1000:]
        handles[i * files // rows].write(json.dumps({"text": text}) + "\n")
    for handle in handles:
        handle.close()
    return {"exact_copies": exact, "near_copies": near}


def run_llmft(corpus: Path, out: Path, workers: int, shards: int) -> tuple[int, float, dict[str, float]]:
    from llmft.data.shards import build_sharded
    from llmft.proto.data.v1 import dataset_pb2 as D

    request = D.DatasetRequest(
        name="bench",
        kind=D.DATASET_KIND_RAW_TEXT,
        sources=[D.DatasetSource(local=D.LocalSource(patterns=[str(corpus / "*.jsonl")]), format="jsonl")],
        cleaning=D.CleaningConfig(normalize=True, deduplicate_exact=True, near_duplicate_threshold=THRESHOLD),
        split=D.SplitConfig(eval_fraction=0.01),
    )
    manifest, report = build_sharded(request, out / "dataset", out / "work", shards=shards, workers=workers)
    worker = max(shard["peak_rss_mib"] for shard in report["shards"]) if workers > 1 else 0.0
    return sum(s.rows for s in manifest.splits), worker, report["seconds"]


def run_datatrove(corpus: Path, out: Path, workers: int, shards: int) -> tuple[int, float, dict[str, float]]:
    import pyarrow.parquet as pq
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import ParquetWriter
    from datatrove.utils.hashing import HashConfig

    from llmft.data.shards import lsh_bands

    bands, rows = lsh_bands(THRESHOLD)
    config = MinhashConfig(n_grams=5, num_buckets=bands, hashes_per_bucket=rows, hash_config=HashConfig(precision=64))
    files = len(list(corpus.glob("*.jsonl")))

    def stage(pipeline: list[Any], tasks: int, name: str) -> None:
        LocalPipelineExecutor(
            pipeline=pipeline, tasks=tasks, workers=workers, logging_dir=str(out / "logs" / name)
        ).run()

    stage([JsonlReader(str(corpus)), MinhashDedupSignature(output_folder=str(out / "signatures"), config=config)],
          files, "signatures")  # fmt: skip
    stage([MinhashDedupBuckets(input_folder=str(out / "signatures"), output_folder=str(out / "buckets"),
                               config=config)], bands, "buckets")  # fmt: skip
    stage([MinhashDedupCluster(input_folder=str(out / "buckets"), output_folder=str(out / "remove"), config=config)],
          1, "clusters")  # fmt: skip
    stage([JsonlReader(str(corpus)), MinhashDedupFilter(input_folder=str(out / "remove")),
           ParquetWriter(str(out / "dataset"))], files, "filter")  # fmt: skip
    kept = sum(pq.ParquetFile(p).metadata.num_rows for p in (out / "dataset").rglob("*.parquet"))
    return kept, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, {}


def child(arm: str, corpus: str, out: str, shards: str) -> None:
    tool, workers = arm.rsplit("_", 1)
    started = time.perf_counter()
    run = run_llmft if tool == "llmft" else run_datatrove
    kept, worker, phases = run(Path(corpus), Path(out), int(workers), int(shards))
    seconds = time.perf_counter() - started
    from llmft.data.shards import peak_rss_mib

    print(json.dumps({"seconds": seconds, "kept": kept, "process": peak_rss_mib(), "worker": worker, "phases": phases}))


def measure(arm: str, corpus: Path, rows: int, shards: int) -> dict[str, float]:
    out = Path(tempfile.mkdtemp(prefix=f"llmft-dedup-{arm}-"))
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--child", arm, str(corpus), str(out), str(shards)],
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"{arm}: {done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(out, ignore_errors=True)
    workers = int(arm.rsplit("_", 1)[1])
    return {
        "rows_per_s": rows / result["seconds"],
        "rows_per_s_per_worker": rows / result["seconds"] / workers,
        "seconds": result["seconds"],
        "removed": rows - result["kept"],
        "peak_rss_mib": max(result["process"], result["worker"]),
        "process_rss_mib": result["process"],
        "worker_rss_mib": result["worker"],
        **{f"{phase}_s": value for phase, value in result["phases"].items()},  # llmft: plan, shards, dedup, prepare
    }


def spread(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def plan_100gb(sizes: dict[str, Any], shard_rows: int) -> dict[str, Any]:
    """A 100 GB corpus of the same rows, planned from the largest size's llmft_2 medians: its shards (of
    `shard_rows` rows) spread over pods of one worker each, then the merge in one pod. Worker-seconds per shard and
    merge seconds per row are taken as measured (the merge's sorts are per bucket, so its time grows about linearly);
    a worker pod gets its measured peak RSS and half again, rounded up to 256 MiB."""
    measured = [size for size in sizes.values() if "shards_s" in size["results"].get("llmft_2", {})]
    if not measured:
        return {}
    size = max(measured, key=lambda s: s["rows"])
    median = {k: v["median"] for k, v in size["results"]["llmft_2"].items()}
    rows = 100e9 / (size["corpus_bytes"] / size["rows"])
    shards = -(-int(rows) // shard_rows)
    shard_seconds = median["shards_s"] * 2 / size["llmft_shards"]  # two workers ran them
    merge_seconds = (median["deduplicate_s"] + median["prepare_s"]) * rows / size["rows"]
    return {
        "from_rows": size["rows"],
        "rows": rows,
        "shards": shards,
        "worker_seconds_per_shard": shard_seconds,
        "merge_hours": merge_seconds / 3600,
        "worker_pod_mib": -(-int(median["worker_rss_mib"] * 1.5) // 256) * 256,
        "merge_peak_mib": median["process_rss_mib"],
        "hours": {str(pods): (shards * shard_seconds / pods + merge_seconds) / 3600 for pods in (16, 64, 256)},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--shard-rows", type=int, default=12_500, help="llmft's rows per shard (about)")
    parser.add_argument("--json", type=Path, default=HERE / "data_dedup.json")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    sizes: dict[str, Any] = {}
    for rows in args.rows:
        with tempfile.TemporaryDirectory(prefix="llmft-dedup-corpus-") as tmp:
            corpus = Path(tmp) / "corpus"
            planted = generate(corpus, rows, args.files)
            corpus_bytes = sum(path.stat().st_size for path in corpus.glob("*.jsonl"))
            shards = max(args.files, rows // args.shard_rows)
            arms = [arm for arm in ARMS if arm in args.arms]
            runs: dict[str, list[dict[str, float]]] = {arm: [] for arm in arms}
            for repeat in range(args.repeats):
                for arm in arms if repeat % 2 == 0 else list(reversed(arms)):
                    print(f"{rows:,} rows, repeat {repeat + 1}/{args.repeats}: {arm}", flush=True)
                    runs[arm].append(measure(arm, corpus, rows, shards))
        results = {arm: {k: spread([r[k] for r in rs]) for k in rs[0]} for arm, rs in runs.items()}
        median = {arm: {k: v["median"] for k, v in figures.items()} for arm, figures in results.items()}
        sizes[str(rows)] = {
            "rows": rows,
            "corpus_bytes": corpus_bytes,
            "llmft_shards": shards,
            "planted": planted,
            "results": results,
        }
        if set(ARMS) <= set(arms):
            sizes[str(rows)] |= {
                "per_core_vs_datatrove": median["llmft_2"]["rows_per_s_per_worker"]
                / median["datatrove_2"]["rows_per_s_per_worker"],
                "rss_vs_datatrove": median["llmft_2"]["peak_rss_mib"] / median["datatrove_2"]["peak_rss_mib"],
                "removed_vs_datatrove": median["llmft_2"]["removed"] / max(1.0, median["datatrove_2"]["removed"]),
                "llmft_2_workers_vs_1": median["llmft_2"]["rows_per_s"] / median["llmft_1"]["rows_per_s"],
                "datatrove_2_workers_vs_1": median["datatrove_2"]["rows_per_s"] / median["datatrove_1"]["rows_per_s"],
            }
    command = "python bench/data_dedup.py " + " ".join(sys.argv[1:])
    print(f"\n{command}   ({machine()['cpu']}, {args.files} files, {args.repeats} repeats; median (min..max))")
    for rows, size in sizes.items():
        print(f"{int(rows):,} rows ({size['planted']['exact_copies']:,} exact and {size['planted']['near_copies']:,} "
              f"near copies planted)")  # fmt: skip
        print(f"  {'arm':<14}{'rows/s':>24}{'rows/s per worker':>24}{'removed':>9}"
              f"{'peak RSS MiB: process':>26}{'largest worker':>22}")  # fmt: skip
        for arm, r in size["results"].items():

            def cell(key: str, width: int, r: dict[str, Any] = r) -> str:
                return f"{r[key]['median']:,.0f} ({r[key]['min']:,.0f}..{r[key]['max']:,.0f})".rjust(width)

            rss = cell("process_rss_mib", 26) + cell("worker_rss_mib", 22)
            print(f"  {arm:<14}{cell('rows_per_s', 24)}{cell('rows_per_s_per_worker', 24)}"
                  f"{r['removed']['median']:>9,.0f}{rss}")  # fmt: skip
        if "per_core_vs_datatrove" in size:
            print(
                f"  llmft per core vs datatrove (2 workers) {size['per_core_vs_datatrove']:.2f}x (goal 1.0x); peak RSS "
                f"{size['rss_vs_datatrove']:.2f}x of datatrove's (goal <= 1.0x); removed "
                f"{size['removed_vs_datatrove']:.3f}x of datatrove's (goal within 1%); llmft 2 workers vs 1 "
                f"{size['llmft_2_workers_vs_1']:.2f}x (goal 1.7x)"
            )
    if len(sizes) > 1 and all("llmft_2" in size["results"] for size in sizes.values()):
        first, last = (sizes[str(rows)]["results"]["llmft_2"] for rows in (min(args.rows), max(args.rows)))
        growth = {k: last[k]["median"] / first[k]["median"] for k in ("process_rss_mib", "worker_rss_mib")}
        result_growth = {f"{min(args.rows)}_to_{max(args.rows)}": growth}
        print(
            f"  llmft_2 peak RSS from {min(args.rows):,} to {max(args.rows):,} rows: process "
            f"{growth['process_rss_mib']:.2f}x, largest worker {growth['worker_rss_mib']:.2f}x (goal: flat)"
        )
    else:
        result_growth = {}
    plan = plan_100gb(sizes, args.shard_rows)
    if plan:
        print(f"  100 GB of such rows: {plan['shards']:,} shards of {args.shard_rows:,} rows; worker pods of "
              f"{plan['worker_pod_mib']:,} MiB; merge pod peak {plan['merge_peak_mib']:,.0f} MiB; hours on "
              + ", ".join(f"{pods} pods {hours:.2f}" for pods, hours in plan["hours"].items()))  # fmt: skip
    result = {
        "plan_100gb": plan,
        "sizes": sizes,
        "rss_growth": result_growth,
        "shard_rows": args.shard_rows,
        "threshold": THRESHOLD,
        "files": args.files,
        **machine(),
        "command": command,
    }
    args.json.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
