"""Training speed, each figure against its baseline measured in the same run, every arm repeated (--repeats, at least
3, alternating between arms) and reported as median and min..max:

1. tokens/s and MFU of the ~20M preset (llmft/small-llama, seq 256, batch 8) trained by the CPT stage in fp32 and bf16
   autocast, against a plain Hugging Face Trainer in each precision. MFU = 6 x parameters x tokens/s over the peak of
   the arm's own dtype: the fastest matmul in that dtype at the model's layer shapes (forward, input-gradient and
   weight-gradient products), measured in this run. The headline `mfu` is the faster llmft precision on this machine.
2. Packing vs padding: SFT of the ~20M preset (in the machine's faster precision) on flytekit's docstring
   conversations (lengths vary), non-padding tokens per second and held-out loss, at the default max length (1024)
   and at 256 (the default before): at equal steps, and at equal training tokens (the packed run stopped when it has
   seen as many tokens as the padded run). Padding pads each batch to its longest conversation.
3. Flyte overhead: the CPT stage run as its Flyte task (local executor, Elastic worker) against the same training in a
   bare script, wall-clock seconds: their ratio, and the task's extra seconds (mostly fixed, whatever the run's length).
4. Where the CPT step's time goes: one run under torch.profiler, torch ops' self time by kind as a share of wall time
   (not a timed arm: the profiler slows what it watches).

    .venv/bin/python bench/train_throughput.py            # ~30 minutes on 2 cores; run on a quiet machine

Every run is its own process. Steady-state tokens/s excludes the first steps (warm-up).
Prints tables and writes bench/train_throughput.json (keys: mfu, packing_speedup_default, packing_speedup,
flyte_overhead_ratio, flyte_overhead_seconds, profile; each arm's runs, median and spread under results).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import machine

HERE = Path(__file__).resolve().parent
SEQ, BATCH = 256, 8
SFT_PRESET = "llmft/small-llama"
LENGTHS = (256, 1024)  # SFT max lengths measured; the recipe default must be one of them
DEFAULT_LENGTH = 1024  # llmft.core.recipe.DEFAULTS.max_length, checked in main()


# --- measurements that run inside a child process -------------------------------------------------------------------


class StepClock:
    """A TrainerCallback recording when each optimiser step ends (duck-typed like llmft.flyte.training's callback)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
        self.times = [time.perf_counter()]

    def on_step_end(self, *args: Any, **kwargs: Any) -> None:
        self.times.append(time.perf_counter())

    def steady_seconds_per_step(self, warmup: int) -> float:
        times = self.times[warmup:]
        return (times[-1] - times[0]) / (len(times) - 1)


def peak_matmul(hidden: int, intermediate: int, kv: int, vocab: int, tokens: int) -> dict[str, float]:
    """Fastest bf16 and fp32 matmul GFLOP/s over the model's layer shapes (forward, dX, dW)."""
    import torch

    def rate(fn: Any, flops: float, repeat: int = 10) -> float:
        fn()
        fn()
        started = time.perf_counter()
        for _ in range(repeat):
            fn()
        return flops / ((time.perf_counter() - started) / repeat) / 1e9

    def products(dtype: Any, rows: int, d_in: int, d_out: int) -> tuple[list[Any], float]:
        a = torch.randn(rows, d_in, dtype=dtype)
        w = torch.randn(d_out, d_in, dtype=dtype)
        g = torch.randn(rows, d_out, dtype=dtype)
        fns = [lambda: torch.nn.functional.linear(a, w), lambda: g @ w, lambda: g.t() @ a]
        return fns, 2.0 * rows * d_in * d_out

    def once(fn: Any, flops: float) -> float:
        fn()  # the first call of a shape also creates its kernel (oneDNN): not a rate
        started = time.perf_counter()
        fn()
        return flops / (time.perf_counter() - started) / 1e9

    best: dict[str, float] = {}
    for dtype, name in ((torch.bfloat16, "bf16"), (torch.float32, "fp32")):
        rates = []
        for d_in, d_out in (
            (hidden, hidden),
            (hidden, kv),
            (hidden, intermediate),
            (intermediate, hidden),
            (hidden, vocab),
        ):
            # A dtype without native kernels (bf16 on AVX2-only CPUs) runs some products 100x slower than its best:
            # the LM head's input gradient took ~280 s a call there. A warm call on a 64th of the rows first; where a
            # full call would take over 2 s, that call's rates stand for the shape (far below the peak at any size).
            fns, flops = products(dtype, max(tokens // 64, 1), d_in, d_out)
            small = [once(fn, flops) for fn in fns]
            if any(flops * tokens / max(tokens // 64, 1) / (r * 1e9) > 2.0 for r in small):
                rates += small
                continue
            fns, flops = products(dtype, tokens, d_in, d_out)
            rates += [rate(fn, flops) for fn in fns]
        best[name] = max(rates)
    return best


def child_peak(_: Path) -> dict[str, Any]:
    from transformers import AutoConfig

    from llmft.core.models import resolve_model_dir

    config = AutoConfig.from_pretrained(resolve_model_dir("llmft/small-llama").directory)
    kv = config.hidden_size // config.num_attention_heads * config.num_key_value_heads
    return peak_matmul(config.hidden_size, config.intermediate_size, kv, config.vocab_size, SEQ * BATCH)


def blocks_dataset(tmp: Path, rows: int) -> Path:
    from llmft.testing import write_text_dataset

    return write_text_dataset(tmp / "corpus", train_docs=rows, eval_docs=40)


def child_hf_trainer(tmp: Path, steps: int, warmup: int, precision: str) -> dict[str, Any]:
    """The baseline: a plain transformers Trainer (fp32, or bf16 autocast), random token blocks."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments, default_data_collator

    from llmft.core.models import resolve_model_dir

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(resolve_model_dir("llmft/small-llama").directory)
    ids = torch.randint(10, 8000, (steps * BATCH, SEQ)).tolist()
    data = Dataset.from_list([{"input_ids": row, "labels": row} for row in ids])
    clock = StepClock()
    args = TrainingArguments(
        output_dir=str(tmp / "hf"),
        per_device_train_batch_size=BATCH,
        max_steps=steps,
        bf16=precision == "bf16",
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=1000,
        disable_tqdm=True,
    )
    Trainer(model=model, args=args, train_dataset=data, data_collator=default_data_collator, callbacks=[clock]).train()
    seconds = clock.steady_seconds_per_step(warmup)
    return {
        "tokens_per_s": SEQ * BATCH / seconds,
        "seconds_per_step": seconds,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def child_llmft_cpt(tmp: Path, steps: int, warmup: int, precision: str) -> dict[str, Any]:
    from llmft.proto.training.v1 import training_pb2 as T
    from llmft.train_cpt.train import train_cpt

    data = blocks_dataset(tmp, rows=steps * BATCH * 2)
    recipe = T.TrainingRecipe(
        method=T.TRAINING_METHOD_FULL,
        precision=T.PRECISION_BF16 if precision == "bf16" else T.PRECISION_FP32,
        max_length=SEQ,
        packing=True,
        schedule=T.Schedule(max_steps=steps, learning_rate=1e-3, per_device_batch_size=BATCH),
        eval=T.EvalConfig(max_eval_samples=8),
    )
    clock = StepClock()
    result = train_cpt(
        T.TrainingRequest(base_model="llmft/small-llama", recipe=recipe), data, tmp / "model", callbacks=[clock]
    )
    seconds = clock.steady_seconds_per_step(warmup)
    return {
        "tokens_per_s": SEQ * BATCH / seconds,
        "seconds_per_step": seconds,
        "parameters": result.artifact.parameters,
    }


class Profiled:
    """A TrainerCallback running torch.profiler over the optimiser steps after `warmup`."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.started, self.seconds = warmup, 0.0, 0.0
        self.profiler: Any = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        import torch

        if state.global_step == self.warmup:
            self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            self.profiler.__enter__()
            self.started = time.perf_counter()

    def on_train_end(self, *args: Any, **kwargs: Any) -> None:
        if self.profiler is not None:
            self.seconds = time.perf_counter() - self.started
            self.profiler.__exit__(None, None, None)


# Where a step's time goes: torch ops by kind (self time), in the order a name is matched.
PROFILE_KINDS = (
    ("optimizer step (AdamW)", ("_foreach", "adam")),
    ("matmul (linear layers, LM head, loss)", ("aten::mm", "aten::addmm", "aten::bmm", "aten::linear", "matmul")),
    ("attention (SDPA)", ("scaled_dot_product", "flash", "attention")),
    (
        "normalisation, activations, elementwise",
        (
            "aten::mul",
            "aten::add",
            "aten::sub",
            "aten::div",
            "silu",
            "rsqrt",
            "pow",
            "aten::mean",
            "aten::neg",
            "aten::cos",
            "aten::sin",
            "aten::exp",
            "aten::sum",
            "sigmoid",
            "softmax",
            "aten::where",
            "aten::fill_",
            "aten::zero_",
            "aten::clamp",
            "norm",
            "aten::sqrt",
            "aten::max",
            "aten::log",
        ),
    ),
    (
        "copies, casts, layout",
        (
            "copy_",
            "aten::to",
            "_to_copy",
            "contiguous",
            "aten::cat",
            "clone",
            "aten::index",
            "gather",
            "scatter",
            "embedding",
            "aten::empty",
            "aten::stack",
            "aten::t",
        ),
    ),
)


def child_profile(tmp: Path, steps: int, warmup: int) -> dict[str, Any]:
    """llmft CPT in the machine's faster precision (PRECISION_AUTO) under torch.profiler: each kind's share of the
    profiled steps' wall time; what no op accounts for is Python, Trainer and data loading."""
    from llmft.proto.training.v1 import training_pb2 as T
    from llmft.train_cpt.train import train_cpt

    data = blocks_dataset(tmp, rows=steps * BATCH * 2)
    recipe = T.TrainingRecipe(
        method=T.TRAINING_METHOD_FULL,
        precision=T.PRECISION_AUTO,
        max_length=SEQ,
        packing=True,
        schedule=T.Schedule(max_steps=steps, learning_rate=1e-3, per_device_batch_size=BATCH),
        eval=T.EvalConfig(max_eval_samples=8),
    )
    profiled = Profiled(warmup)
    result = train_cpt(
        T.TrainingRequest(base_model="llmft/small-llama", recipe=recipe), data, tmp / "model", callbacks=[profiled]
    )
    assert profiled.profiler is not None and profiled.seconds > 0
    wall_us = profiled.seconds * 1e6
    shares = {label: 0.0 for label, _ in PROFILE_KINDS}
    shares["other ops"] = 0.0
    for event in profiled.profiler.events():
        if event.name.startswith(("ProfilerStep", "Optimizer.", "autograd::", "## ")):
            continue  # annotations: their ops are counted themselves
        parent, in_optimizer = event.cpu_parent, False
        while parent is not None and not in_optimizer:
            in_optimizer, parent = parent.name.startswith("Optimizer.step"), parent.cpu_parent
        name = event.name.lower()
        kind = next((label for label, keys in PROFILE_KINDS if any(k in name for k in keys)), "other ops")
        kind = PROFILE_KINDS[0][0] if in_optimizer else kind
        shares[kind] += event.self_cpu_time_total / wall_us
    shares["outside torch ops (Python, Trainer, data loading)"] = max(0.0, 1 - sum(shares.values()))
    return {
        "shares": shares,
        "profiled_steps": steps - warmup,
        "seconds": profiled.seconds,
        "precision": T.Precision.Name(result.artifact.precision),
    }


def chat_dataset(tmp: Path, tokenizer: str = "", max_tokens: int = 0) -> Path:
    """flytekit's documented functions as chat data (the demo's SFT data), counted with `tokenizer` when given."""
    from llmft.data.build import build_dataset
    from llmft.proto.data.v1 import dataset_pb2 as D

    request = D.DatasetRequest(
        name="flytekit-docstring-chat",
        kind=D.DATASET_KIND_CHAT,
        sources=[
            D.DatasetSource(python_package=D.PythonPackageSource(packages=["flytekit"]), format="python_docstrings")
        ],
        cleaning=D.CleaningConfig(normalize=True, deduplicate_exact=True),
        split=D.SplitConfig(eval_fraction=0.1),
        tokenizer=tokenizer,
        max_tokens=max_tokens,
    )
    build_dataset(request, tmp / "chat")
    return tmp / "chat"


class StopAtTokens:
    """A TrainerCallback ending training once the run has seen `tokens` training tokens."""

    def __init__(self, tokens: int) -> None:
        self.tokens = tokens

    def __getattr__(self, name: str) -> Any:
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.num_input_tokens_seen >= self.tokens:
            control.should_training_stop = True


def child_sft(tmp: Path, steps: int, packing: bool, max_length: int, stop_at_tokens: int = 0) -> dict[str, Any]:
    """SFT in the machine's faster precision (PRECISION_AUTO); `stop_at_tokens` ends it at that many tokens."""
    from llmft.proto.training.v1 import training_pb2 as T
    from llmft.train_sft.train import train_sft

    recipe = T.TrainingRecipe(
        max_length=max_length,
        packing=packing,
        precision=T.PRECISION_AUTO,
        seed=0,
        schedule=T.Schedule(max_steps=steps, learning_rate=1e-3, per_device_batch_size=BATCH),
        eval=T.EvalConfig(max_eval_samples=64),
    )
    clock = StepClock()
    callbacks: list[Any] = [clock] + ([StopAtTokens(stop_at_tokens)] if stop_at_tokens else [])
    result = train_sft(
        T.TrainingRequest(base_model=SFT_PRESET, recipe=recipe),
        chat_dataset(tmp),
        tmp / "model",
        callbacks=callbacks,
    )
    metrics = result.artifact.metrics
    # Steady state: from the end of the first step to the end of the last (no evaluation, no first-step warm-up);
    # tokens the model learns from (not padding), spread evenly over the steps.
    steady = clock.times[-1] - clock.times[1]
    tokens = metrics.train_tokens * (metrics.steps - 1) / metrics.steps
    return {
        "tokens_per_s": tokens / steady,
        "train_tokens": metrics.train_tokens,
        "steps": metrics.steps,
        "eval_loss_after": metrics.eval_after.loss,
        "seconds": metrics.train_seconds,
        "precision": T.Precision.Name(result.artifact.precision),
    }


def overhead_request(steps: int) -> Any:
    from llmft.proto.training.v1 import training_pb2 as T

    recipe = T.TrainingRecipe(
        max_length=SEQ,
        packing=True,
        seed=0,
        eval=T.EvalConfig(max_eval_samples=16),
        schedule=T.Schedule(max_steps=steps, learning_rate=2e-3, per_device_batch_size=BATCH),
    )
    return T.TrainingRequest(base_model="llmft/tiny-llama", recipe=recipe)


def child_bare(tmp: Path, steps: int) -> dict[str, Any]:
    from llmft.train_cpt.train import train_cpt

    data = blocks_dataset(tmp, rows=steps * BATCH * 2)
    started = time.perf_counter()
    train_cpt(overhead_request(steps), data, tmp / "model")
    return {"seconds": time.perf_counter() - started}


def child_flyte(tmp: Path, steps: int) -> dict[str, Any]:
    os.environ["HOME"] = str(tmp)  # a fresh flytekit local cache: no cache hit
    from flytekit.types.directory import FlyteDirectory

    from llmft.core.datasets import read_manifest
    from llmft.train_cpt.tasks import train

    data = blocks_dataset(tmp, rows=steps * BATCH * 2)
    manifest = read_manifest(data)
    started = time.perf_counter()
    train(request=overhead_request(steps), dataset=manifest, data=FlyteDirectory(str(data)))
    return {"seconds": time.perf_counter() - started}


CHILDREN = {
    "peak": lambda tmp, a: child_peak(tmp),
    "hf_trainer_fp32": lambda tmp, a: child_hf_trainer(tmp, a.steps, a.warmup, "fp32"),
    "hf_trainer_bf16": lambda tmp, a: child_hf_trainer(tmp, a.steps, a.warmup, "bf16"),
    "llmft_fp32": lambda tmp, a: child_llmft_cpt(tmp, a.steps, a.warmup, "fp32"),
    "llmft_bf16": lambda tmp, a: child_llmft_cpt(tmp, a.steps, a.warmup, "bf16"),
    "sft_padding_256": lambda tmp, a: child_sft(tmp, a.sft_steps, False, 256),
    "sft_packing_256": lambda tmp, a: child_sft(tmp, a.sft_steps, True, 256),
    "sft_padding_1024": lambda tmp, a: child_sft(tmp, a.sft_steps, False, 1024),
    "sft_packing_1024": lambda tmp, a: child_sft(tmp, a.sft_steps, True, 1024),
    # Packing stopped at the padded run's training tokens (--stop-at-tokens): held-out loss at equal tokens.
    "sft_packing_256_equal_tokens": lambda tmp, a: child_sft(tmp, a.sft_steps, True, 256, a.stop_at_tokens),
    "sft_packing_1024_equal_tokens": lambda tmp, a: child_sft(tmp, a.sft_steps, True, 1024, a.stop_at_tokens),
    "cpt_profile": lambda tmp, a: child_profile(tmp, a.steps, a.warmup),
    "cpt_bare_script": lambda tmp, a: child_bare(tmp, a.overhead_steps),
    "cpt_flyte_task": lambda tmp, a: child_flyte(tmp, a.overhead_steps),
}
DTYPE = {"hf_trainer_fp32": "fp32", "hf_trainer_bf16": "bf16", "llmft_fp32": "fp32", "llmft_bf16": "bf16"}


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


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each numeric figure's median and min..max over the runs, and the runs themselves."""
    out: dict[str, Any] = {"runs": runs}
    for key, value in runs[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            values = [float(run[key]) for run in runs]
            out[key] = statistics.median(values)
            out[f"{key}_min"], out[f"{key}_max"] = min(values), max(values)
        else:
            out[key] = value
    return out


def spread(result: dict[str, Any], key: str, fmt: str = ",.0f") -> str:
    return f"{result[key]:{fmt}} ({result[key + '_min']:{fmt}}..{result[key + '_max']:{fmt}})"


def rounds(names: list[str], argv: list[str], repeats: int) -> dict[str, dict[str, Any]]:
    """Runs every arm `repeats` times, alternating (arm 1, arm 2, ..., arm 1, ...), so a slow spell of a shared
    machine falls on every arm alike."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for _ in range(repeats):
        for name in names:
            runs[name].append(run_child(name, argv))
    return {name: summary(r) for name, r in runs.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--sft-steps", type=int, default=30)
    parser.add_argument("--overhead-steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=HERE / "train_throughput.json")
    parser.add_argument("--stop-at-tokens", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        with tempfile.TemporaryDirectory(prefix="llmft-bench-") as tmp:
            os.environ.setdefault("LLMFT_CACHE", str(Path(tmp) / "cache"))
            print(json.dumps(CHILDREN[args.child](Path(tmp), args)))
        return 0
    if args.repeats < 3:
        raise SystemExit("--repeats: at least 3, for a median and a spread")
    from llmft.core.recipe import DEFAULTS

    if DEFAULTS.max_length != DEFAULT_LENGTH:
        raise SystemExit(f"DEFAULT_LENGTH: {DEFAULT_LENGTH}, but the recipe default is {DEFAULTS.max_length}")
    argv = [
        f"--steps={args.steps}",
        f"--warmup={args.warmup}",
        f"--sft-steps={args.sft_steps}",
        f"--overhead-steps={args.overhead_steps}",
    ]
    command = ".venv/bin/python bench/train_throughput.py " + " ".join([*argv, f"--repeats={args.repeats}"])
    main_arms = [n for n in CHILDREN if not n.endswith("_equal_tokens") and n != "cpt_profile"]
    results = rounds(main_arms, argv, args.repeats)
    for length in LENGTHS:
        target = int(results[f"sft_padding_{length}"]["train_tokens"])
        name = f"sft_packing_{length}_equal_tokens"
        results.update(rounds([name], [*argv, f"--stop-at-tokens={target}"], args.repeats))

    peak = {dtype: results["peak"][dtype] for dtype in ("fp32", "bf16")}
    for name, dtype in DTYPE.items():
        r = results[name]
        for run in r["runs"]:
            run["mfu"] = 6 * run["parameters"] * run["tokens_per_s"] / (peak[dtype] * 1e9)
        r.update({k: v for k, v in summary(r["runs"]).items() if k.startswith("mfu")})
    fastest = max(("fp32", "bf16"), key=lambda d: results[f"llmft_{d}"]["tokens_per_s"])
    mfu = results[f"llmft_{fastest}"]["mfu"]

    print(f"\n1. llmft/small-llama, seq {SEQ}, batch {BATCH}: tokens/s and MFU, median (min..max) of {args.repeats}")
    print(f"   ({command})")
    print(
        f"   peak (fastest matmul at the model's shapes): fp32 {spread(results['peak'], 'fp32')} GFLOP/s, "
        f"bf16 {spread(results['peak'], 'bf16')} GFLOP/s\n"
    )
    print(f"   {'training':<36} {'tokens/s':>22} {'MFU (own dtype peak)':>24}")
    for name, label in (
        ("hf_trainer_fp32", "baseline: plain HF Trainer, fp32"),
        ("hf_trainer_bf16", "baseline: plain HF Trainer, bf16"),
        ("llmft_fp32", "llmft CPT, fp32"),
        ("llmft_bf16", "llmft CPT, bf16 autocast"),
    ):
        r = results[name]
        print(f"   {label:<36} {spread(r, 'tokens_per_s'):>22} {spread(r, 'mfu', '.1%'):>24}")
    ahead = results[f"llmft_{fastest}"]["tokens_per_s"] / results[f"hf_trainer_{fastest}"]["tokens_per_s"]
    print(
        f"   fastest precision here: {fastest}; llmft MFU {mfu:.1%} ({'meets' if mfu >= 0.6 else 'misses'} the 60% "
        f"goal), {ahead:.2f}x the plain HF Trainer in {fastest}"
    )

    print(
        f"\n2. SFT, {SFT_PRESET} (PRECISION_AUTO: {results['sft_packing_256']['precision']}), flytekit docstring chats"
    )
    print(
        f"   {'max length, batches':<34} {'steps':>5} {'tokens':>8} {'tokens/s':>22} {'held-out loss':>14} "
        f"{'speedup':>8}"
    )
    speedups = {}
    for length in LENGTHS:
        pad, pack = results[f"sft_padding_{length}"], results[f"sft_packing_{length}"]
        equal = results[f"sft_packing_{length}_equal_tokens"]
        speedups[length] = pack["tokens_per_s"] / pad["tokens_per_s"]
        for label, r in (
            (f"{length}, baseline: padded", pad),
            (f"{length}, packed, equal steps", pack),
            (f"{length}, packed, equal tokens", equal),
        ):
            print(
                f"   {label:<34} {r['steps']:>5.0f} {r['train_tokens']:>8,.0f} {spread(r, 'tokens_per_s'):>22} "
                f"{r['eval_loss_after']:>14.4f} {r['tokens_per_s'] / pad['tokens_per_s']:>7.2f}x"
            )
    print(
        f"   packing speedup: {speedups[DEFAULT_LENGTH]:.2f}x at the default max length {DEFAULT_LENGTH} "
        f"({', '.join(f'{speedups[n]:.2f}x at {n}' for n in LENGTHS if n != DEFAULT_LENGTH)}; goal >= 1.5x at the "
        "default)"
    )

    profile = run_child("cpt_profile", argv)  # once, after the timed arms: the profiler slows what it watches
    print(
        f"\n4. Where a step goes: llmft CPT ({profile['precision']}), {profile['profiled_steps']} steps under "
        "torch.profiler, share of wall time"
    )
    for label, share in sorted(profile["shares"].items(), key=lambda item: -item[1]):
        print(f"   {label:<52} {share:>7.1%}")

    bare, flyte = results["cpt_bare_script"], results["cpt_flyte_task"]
    ratios = [f["seconds"] / b["seconds"] for f, b in zip(flyte["runs"], bare["runs"], strict=True)]
    overhead = statistics.median(ratios)
    # The task's cost is mostly fixed (launch, agent, output upload): seconds say it for any run length; the ratio
    # holds for this run's length only.
    extra = [f["seconds"] - b["seconds"] for f, b in zip(flyte["runs"], bare["runs"], strict=True)]
    print(f"\n3. CPT, llmft/tiny-llama, {args.overhead_steps} steps: Flyte task vs bare script (wall seconds)")
    print(
        f"   baseline: bare script {spread(bare, 'seconds', '.1f')} s; Flyte task (local, Elastic worker) "
        f"{spread(flyte, 'seconds', '.1f')} s; ratio {overhead:.3f} ({min(ratios):.3f}..{max(ratios):.3f}; "
        f"goal <= 1.03); the task's extra {statistics.median(extra):.2f} s ({min(extra):.2f}..{max(extra):.2f})"
    )

    record = {
        "benchmark": "train_throughput",
        **machine(),
        "command": command,
        "repeats": args.repeats,
        "mfu": mfu,
        "mfu_variant": f"llmft_{fastest}",
        "mfu_vs_hf_trainer_same_precision": ahead,
        "peak_gflops": peak,
        "default_max_length": DEFAULT_LENGTH,
        "packing_speedup_default": speedups[DEFAULT_LENGTH],
        "packing_speedup": speedups[1024],
        "packing_speedup_by_max_length": speedups,
        "flyte_overhead_ratio": overhead,
        "flyte_overhead_seconds": statistics.median(extra),
        "profile": profile,
        "results": results,
    }
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
