"""Command line of the data stage: build one dataset from a request file or from flags.

Sources (repeatable, combine freely):
  --local PATTERN          local files, folders or globs ("docs/**/*.md"); txt/md/code are one row per file,
                           .jsonl/.json/.csv/.parquet one row per record
  --url URL                an http(s) file, read like a local file of the same extension
  --git REPO[@REVISION]    a git repository (URL or path) at a branch, tag or commit; the commit is fingerprinted
  --hub DATASET_ID[:SPLIT] a Hugging Face dataset, through the datasets library
  --python-package NAME    the source and docs of an installed Python distribution (e.g. flytekit)
Cleaning (in order, each step's removals reported): Unicode NFC and whitespace normalisation; blank rows dropped;
--max-chars fails on longer rows; --min-chars, --drop-pattern, --language filters; exact deduplication (--no-dedup
to keep repeats); --near-dup MinHash deduplication. Rows are validated against the kind's pandera schema; train/eval
split by content hash (--eval-fraction, --seed). Everything streams. With --shards N the rows are read and cleaned in N
shards on --workers processes, then deduplicated across all of them by bucket files on disk (exact, then MinHash
clusters), so no process holds an index of the whole corpus.

Kinds (--kind): raw_text (column text: CPT), chat (messages: SFT; alpaca instruction/input/output and sharegpt
conversations are converted), preference (prompt/chosen/rejected: reward model, DPO), prompt (prompt: PPO, batch
inference). Formats (--format): auto, text, jsonl, csv, parquet, alpaca, sharegpt, python_docstrings (chat
conversations derived from documented functions and classes).

Examples:
  llmft data --name corpus --kind raw_text --python-package flytekit --out runs/corpus
  llmft data --request stages/data/examples/chat.yaml --out runs/chat
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from google.protobuf import json_format

from llmft.core.files import DuplicateKeyError, load_yaml, unknown_key_problems
from llmft.core.models import ModelNotFoundError
from llmft.core.recipe import RecipeError
from llmft.data import __version__
from llmft.data.build import DatasetRequestError, build_dataset, cleaning_lines, describe
from llmft.data.kinds import DataValidationError
from llmft.data.report import report_html
from llmft.data.sources import SourceError, split_git_spec
from llmft.proto.data.v1 import dataset_pb2

KINDS = {
    "raw_text": dataset_pb2.DATASET_KIND_RAW_TEXT,
    "chat": dataset_pb2.DATASET_KIND_CHAT,
    "preference": dataset_pb2.DATASET_KIND_PREFERENCE,
    "prompt": dataset_pb2.DATASET_KIND_PROMPT,
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="llmft data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--version", action="version", version=f"llmft.data {__version__}")
    p.add_argument("--request", type=Path, help="a DatasetRequest as YAML or JSON (proto field names)")
    p.add_argument("--out", type=Path, required=True, help="output folder (must not exist or be empty)")
    p.add_argument("--report", type=Path, help="also write the HTML report here")
    sharding = p.add_argument_group("shards (corpora beyond one process; llmft.data.shards)")
    sharding.add_argument(
        "--shards",
        type=int,
        default=0,
        help="prepare in this many shards of about equal bytes (big JSONL files cut at lines), deduplicated across "
        "all of them; 0: one process, one stream",
    )
    sharding.add_argument("--workers", type=int, default=0, help="processes for the shards (default: the CPUs)")
    sharding.add_argument(
        "--work-dir",
        type=Path,
        help="the shards' work (default: <out>.shards beside --out); a rerun with the same folder redoes only the "
        "shards that did not finish or whose input changed; removed once --out is written",
    )
    g = p.add_argument_group("request by flags (ignored with --request)")
    g.add_argument("--name", default="dataset")
    g.add_argument("--kind", choices=sorted(KINDS))
    g.add_argument("--local", action="append", default=[], metavar="PATTERN")
    g.add_argument("--url", action="append", default=[])
    g.add_argument("--git", action="append", default=[], metavar="REPO[@REVISION]")
    g.add_argument("--hub", action="append", default=[], metavar="DATASET_ID[:SPLIT]")
    g.add_argument("--python-package", action="append", default=[], metavar="NAME")
    g.add_argument("--format", default="auto")
    g.add_argument("--eval-fraction", type=float, default=0.1)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--min-chars", type=int, default=0)
    g.add_argument("--max-chars", type=int, default=0)
    g.add_argument("--no-dedup", action="store_true", help="keep exact duplicates")
    g.add_argument(
        "--near-dup",
        type=float,
        default=0.0,
        metavar="JACCARD",
        help="drop near duplicates at this MinHash Jaccard similarity (e.g. 0.8); 0 keeps them",
    )
    g.add_argument("--drop-pattern", action="append", default=[], metavar="REGEX", help="drop rows matching REGEX")
    g.add_argument(
        "--language",
        action="append",
        default=[],
        metavar="ISO639",
        help="keep only rows detected as this language (e.g. en); repeatable",
    )
    g.add_argument("--tokenizer", default="", help="preset, local path or Hub id for token statistics")
    g.add_argument("--max-tokens", type=int, default=0)
    return p


def request_from_args(args: argparse.Namespace) -> dataset_pb2.DatasetRequest:
    if args.request:
        try:
            data = load_yaml(args.request)
        except DuplicateKeyError as error:
            raise DatasetRequestError(str(error)) from error
        unknown = unknown_key_problems(data, dataset_pb2.DatasetRequest.DESCRIPTOR)
        if unknown:
            raise DatasetRequestError(f"{args.request}: " + "; ".join(unknown))
        return json_format.ParseDict(data, dataset_pb2.DatasetRequest())
    if not args.kind:
        raise DatasetRequestError("kind: give --kind or --request")
    request = dataset_pb2.DatasetRequest(
        name=args.name,
        kind=KINDS[args.kind],
        cleaning=dataset_pb2.CleaningConfig(
            normalize=True,
            deduplicate_exact=not args.no_dedup,
            near_duplicate_threshold=args.near_dup,
            min_chars=args.min_chars,
            max_chars=args.max_chars,
            drop_patterns=args.drop_pattern,
            languages=args.language,
        ),
        split=dataset_pb2.SplitConfig(eval_fraction=args.eval_fraction, seed=args.seed),
        tokenizer=args.tokenizer,
        max_tokens=args.max_tokens,
    )
    for pattern in args.local:
        request.sources.add(local=dataset_pb2.LocalSource(patterns=[pattern]), format=args.format)
    for url in args.url:
        request.sources.add(url=dataset_pb2.UrlSource(urls=[url]), format=args.format)
    for spec in args.git:
        repo, revision = split_git_spec(spec)
        request.sources.add(git=dataset_pb2.GitSource(repository=repo, revision=revision), format=args.format)
    for spec in args.hub:
        dataset_id, _, split = spec.partition(":")
        request.sources.add(hub=dataset_pb2.HubDatasetSource(dataset_id=dataset_id, split=split), format=args.format)
    for name in args.python_package:
        request.sources.add(python_package=dataset_pb2.PythonPackageSource(packages=[name]), format=args.format)
    return request


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        request = request_from_args(args)
        if args.shards < 0 or args.workers < 0:
            raise DatasetRequestError("--shards, --workers: must be >= 0")
        if args.shards:
            from llmft.data.shards import build_sharded, default_workers

            work_dir = args.work_dir or args.out.with_name(f"{args.out.name}.shards")
            manifest, report = build_sharded(
                request, args.out, work_dir, args.shards, args.workers or default_workers()
            )
        else:
            manifest, report = build_dataset(request, args.out)
    except (
        DatasetRequestError,
        SourceError,
        DataValidationError,
        FileExistsError,
        json_format.ParseError,
        ModelNotFoundError,
        RecipeError,
    ) as error:
        print(f"llmft.data: error: {error}", file=sys.stderr)
        return 2
    if args.report:
        args.report.write_text(report_html(manifest, report), encoding="utf-8")
    for line in cleaning_lines(manifest):
        print(line, file=sys.stderr)
    print(describe(manifest))
    print(json_format.MessageToJson(manifest, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
