"""Test fixtures for the stages' tests and benchmarks: small deterministic datasets in the shared folder layout (a
stage's tests must not import the data stage; the text has structure a tiny model learns within a few steps), Trainer
callbacks that stop a run and see where it restarts (the resume tests), and a torchrun helper."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from llmft.core import fingerprint as fp
from llmft.core.datasets import write_dataset
from llmft.proto.data.v1 import dataset_pb2

D = dataset_pb2

WORDS = ["task", "workflow", "cache", "resources", "image", "deck", "plugin", "retry", "input", "output"]


def synthetic_code(index: int, rng: random.Random) -> str:
    name = f"{rng.choice(WORDS)}_{rng.choice(WORDS)}_{index}"
    args = ", ".join(rng.sample(WORDS, 2))
    body = "\n".join(f"    {w} = {w}.strip()" for w in args.split(", "))
    first = args.split(", ")[0]
    docstring = f'"""Return the {first} of a flyte {rng.choice(WORDS)}."""'
    return f"def {name}({args}):\n    {docstring}\n{body}\n    return {first}\n"


def arithmetic_conversation(a: int, b: int) -> list[dict[str, str]]:
    return [
        {"role": "user", "content": f"What is {a} plus {b}?"},
        {"role": "assistant", "content": f"{a} plus {b} is {a + b}."},
    ]


def _write(out_dir: Path, name: str, kind: D.DatasetKind, column: str, train: list[str], eval_: list[str]) -> Path:
    import pandas as pd

    splits = {}
    manifest = D.DatasetManifest(name=name, kind=kind, schema_version=f"{column}/test")
    digests = []
    for split, values in (("train", train), ("eval", eval_)):
        ids = [fp.fingerprint_text(v).removeprefix("sha256:")[:32] for v in values]
        splits[split] = pd.DataFrame(
            {"id": ids, "source": [f"synthetic:{i}" for i in range(len(values))], column: values}
        )
        manifest.splits.add(name=split, rows=len(values), characters=sum(len(v) for v in values))
        digests.append(fp.fingerprint_text("\n".join(ids)))
    manifest.fingerprint = fp.combine(name, *digests)
    write_dataset(out_dir, splits, manifest)
    return out_dir


def write_text_dataset(out_dir: Path, train_docs: int = 200, eval_docs: int = 20, seed: int = 0) -> Path:
    rng = random.Random(seed)
    docs = [synthetic_code(i, rng) for i in range(train_docs + eval_docs)]
    return _write(out_dir, "synthetic-code", D.DATASET_KIND_RAW_TEXT, "text", docs[:train_docs], docs[train_docs:])


def write_chat_dataset(out_dir: Path, train_rows: int = 200, eval_rows: int = 20, seed: int = 0) -> Path:
    rng = random.Random(seed)
    rows = [
        json.dumps(arithmetic_conversation(rng.randint(0, 9), rng.randint(0, 9))) for _ in range(train_rows + eval_rows)
    ]
    return _write(out_dir, "synthetic-chat", D.DATASET_KIND_CHAT, "messages", rows[:train_rows], rows[train_rows:])


def wrong_answer(a: int, b: int, rng: random.Random) -> str:
    """A wrong answer to "What is a plus b?" of the kind a model gives, in the right answer's sentence (no marker a
    reward model could spot instead of the sum): a sum off by one or two, the product, or the sentence cut short."""
    kind = rng.randrange(4)
    if kind == 3:
        return f"{a} plus {b} is"
    wrong = a * b if kind == 2 else a + b + rng.choice([-2, -1, 1, 2])
    if wrong == a + b or wrong < 0:
        wrong = a + b + 1
    return f"{a} plus {b} is {wrong}."


def write_preference_dataset(out_dir: Path, train_rows: int = 64, eval_rows: int = 16, seed: int = 0) -> Path:
    """Arithmetic questions on two digits, each asked once, so the held-out questions are not in train; the chosen
    answer is the right sentence, the rejected one a wrong answer in the same sentence (`wrong_answer`)."""
    import pandas as pd

    rng = random.Random(seed)
    questions = [(a, b) for a in range(10) for b in range(10)]
    if train_rows + eval_rows > len(questions):
        raise ValueError(f"train_rows + eval_rows: at most {len(questions)} distinct questions")
    rng.shuffle(questions)
    rows = [
        {"prompt": f"What is {a} plus {b}?", "chosen": f"{a} plus {b} is {a + b}.", "rejected": wrong_answer(a, b, rng)}
        for a, b in questions[: train_rows + eval_rows]
    ]
    manifest = D.DatasetManifest(
        name="synthetic-preferences", kind=D.DATASET_KIND_PREFERENCE, schema_version="preference/test"
    )
    splits, digests = {}, []
    for split, part in (("train", rows[:train_rows]), ("eval", rows[train_rows:])):
        ids = [fp.fingerprint_json(r).removeprefix("sha256:")[:32] for r in part]
        splits[split] = pd.DataFrame(
            [{"id": i, "source": f"synthetic:{n}", **r} for n, (i, r) in enumerate(zip(ids, part, strict=True))]
        )
        manifest.splits.add(name=split, rows=len(part))
        digests.append(fp.fingerprint_text("\n".join(ids)))
    manifest.fingerprint = fp.combine("preferences", *digests)
    write_dataset(out_dir, splits, manifest)
    return out_dir


def write_prompt_dataset(out_dir: Path, rows: int = 10) -> Path:
    """Arithmetic questions as a prompt dataset (all in the train split)."""
    import pandas as pd

    prompts = [f"What is {i % 10} plus {(i * 3) % 10}?" for i in range(rows)]
    ids = [fp.fingerprint_text(p).removeprefix("sha256:")[:32] + f"~{i}" for i, p in enumerate(prompts)]
    manifest = D.DatasetManifest(name="synthetic-prompts", kind=D.DATASET_KIND_PROMPT, schema_version="prompt/test")
    manifest.splits.add(name="train", rows=rows)
    manifest.splits.add(name="eval", rows=0)
    manifest.fingerprint = fp.combine("prompts", *ids)
    frame = pd.DataFrame({"id": ids, "source": [f"synthetic:{i}" for i in range(rows)], "prompt": prompts})
    write_dataset(out_dir, {"train": frame, "eval": frame.iloc[0:0]}, manifest)
    return out_dir


def run_distributed(module: str, args: list[str], nproc: int = 2, timeout: float = 300) -> str:
    """Runs `python -m <module> <args>` under torchrun with `nproc` local processes (gloo on CPU), in this
    interpreter and with this process's import path. Returns the output; raises with its tail on failure."""
    import os
    import subprocess
    import sys

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    # torch compiles deepspeed's CPU ops with ninja, which sits beside the interpreter in a venv.
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "/usr/bin:/bin")])
    env.setdefault("OMP_NUM_THREADS", "1")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        module,
        *args,
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{output[-6000:]}")
    return output


class Interrupted(RuntimeError):
    """What `StopAfterSaving` raises: a run killed right after a checkpoint."""


class StopAfterSaving(TrainerCallback):
    """Stops a run (raises Interrupted) once the checkpoint of step `step` is written."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            raise Interrupted(f"stopped at step {state.global_step}")


class FirstStep(TrainerCallback):
    """Records the step a run starts from (0, or the step of the checkpoint it resumed)."""

    def __init__(self) -> None:
        self.started_at: int | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.started_at = state.global_step


def rss_mib(pid: int) -> float:
    """A process's resident memory now, in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"process {pid}: no VmRSS")
