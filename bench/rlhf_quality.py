"""Quality of the RLHF stage on the tiny preset, from the synthetic demo data (llmft.rlhf.demo): SFT → reward model →
PPO, and SFT → DPO, then all three policies answer the same held-out (unseen) questions and the reward model scores
them. The baseline is the SFT policy, evaluated in the same run by the same code.

    .venv/bin/python bench/rlhf_quality.py                   # 3 seeds, tiny Llama
    .venv/bin/python bench/rlhf_quality.py --seeds 1 --preset llmft/tiny-neox

The SFT policy is a competent one (600 steps: it answers in the reference's sentence and gets some held-out sums
right), so the baseline is what a user would ship without preference learning. The preference data pairs each
question's right answer with three wrong ones in the same sentence (a sum off by one to three, the product, the
sentence cut short; llmft.rlhf.demo), so the reward model must read the numbers.

Reported per seed (a table each) and as median and spread (min..max) over seeds:
- rm_pairwise_accuracy: fraction of held-out pairs where the reward model scores chosen above rejected;
- ppo_reward_gain, dpo_reward_gain: (mean reward of the policy's answers - the SFT policy's) / the reward model's
  held-out margin (mean chosen - mean rejected score). Bradley-Terry rewards are defined only up to a shift, so the
  gain is measured in the reward model's own unit: 1.0 moves answers as far as a preferred answer is from a rejected
  one;
- ppo_kl, dpo_kl: mean sequence KL divergence from the SFT policy on the held-out answers (nats);
- win rates of PPO and DPO over SFT by the reward model;
- sft_correct, ppo_correct, dpo_correct: the fraction of held-out questions whose greedy answer has the right sum's
  sentence (for this data the same as first-sentence match with the chosen answer).
The targets hold on every seed or are reported missed (exit 1): accuracy >= 0.80, each gain >= 0.20 with KL < 10,
and each policy's correctness not below SFT's. Writes bench/rlhf_quality.json with the CPU it ran on.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import machine

HERE = Path(__file__).resolve().parent
TARGETS = {"rm_pairwise_accuracy": 0.80, "ppo_reward_gain": 0.20, "dpo_reward_gain": 0.20}
KL_BOUND = 10.0  # nats per answer; the stage README states it


def recipe(steps: int, lr: float, seed: int, max_length: int = 64, batch: int = 8) -> Any:
    from llmft.proto.training.v1 import training_pb2 as T

    return T.TrainingRecipe(
        max_length=max_length,
        seed=seed,
        packing=False,
        schedule=T.Schedule(max_steps=steps, learning_rate=lr, per_device_batch_size=batch, lr_scheduler="cosine"),
    )


def run(seed: int, preset: str, root: Path, args: argparse.Namespace) -> dict[str, float]:
    from llmft.proto.rlhf.v1 import rlhf_pb2 as R
    from llmft.proto.training.v1 import training_pb2 as T
    from llmft.rlhf.demo import write_demo_dataset
    from llmft.rlhf.dpo import train_dpo
    from llmft.rlhf.evaluation import evaluate_policies
    from llmft.rlhf.ppo import train_ppo
    from llmft.rlhf.reward import train_reward_model
    from llmft.train_sft.train import train_sft

    started = time.perf_counter()
    chat = root / "chat"
    prefs = root / "prefs"
    write_demo_dataset(chat, "chat", seed=seed)
    write_demo_dataset(prefs, "preference", seed=seed)
    sft_request = T.TrainingRequest(base_model=preset, recipe=recipe(args.sft_steps, 1e-3, seed))
    train_sft(sft_request, chat, root / "sft")
    rm = train_reward_model(
        R.RewardModelRequest(recipe=recipe(args.rm_steps, 1e-3, seed)), prefs, root / "rm", base_model_dir=root / "sft"
    ).report
    ppo_request = R.PpoRequest(
        recipe=recipe(args.ppo_steps, args.ppo_lr, seed, max_length=64, batch=16),
        ppo=R.PpoConfig(response_length=16, kl_coef=args.kl_coef, temperature=0.7, eval_prompts=0),
    )
    ppo = train_ppo(ppo_request, prefs, root / "ppo", base_model_dir=root / "sft", reward_model_dir=root / "rm").report
    dpo_request = R.DpoRequest(
        recipe=recipe(args.dpo_steps, args.dpo_lr, seed), dpo=R.DpoConfig(beta=0.1, sft_weight=args.dpo_sft_weight)
    )
    train_dpo(dpo_request, prefs, root / "dpo", base_model_dir=root / "sft")
    evaluation = evaluate_policies(
        R.PolicyEvaluationRequest(max_new_tokens=16, temperature=0.7, seed=seed, max_length=64),
        prefs,
        {"ppo": root / "ppo", "dpo": root / "dpo"},
        reference_dir=root / "sft",
        reward_model_dir=root / "rm",
    ).comparison
    by_name = {e.name: e for e in evaluation.policies}
    return {
        "rm_pairwise_accuracy": rm.eval_accuracy_after,
        "ppo_reward_gain": by_name["ppo"].reward_gain,
        "dpo_reward_gain": by_name["dpo"].reward_gain,
        "ppo_kl": by_name["ppo"].kl_to_reference,
        "dpo_kl": by_name["dpo"].kl_to_reference,
        "sft_correct": by_name["sft"].correct,
        "ppo_correct": by_name["ppo"].correct,
        "dpo_correct": by_name["dpo"].correct,
        "ppo_win_rate": by_name["ppo"].win_rate_over_reference,
        "dpo_win_rate": by_name["dpo"].win_rate_over_reference,
        "sft_mean_reward": by_name["sft"].mean_reward,
        "ppo_mean_reward": by_name["ppo"].mean_reward,
        "dpo_mean_reward": by_name["dpo"].mean_reward,
        "reward_scale": evaluation.reward_scale,
        "ppo_episodes": ppo.episodes,
        "held_out_prompts": evaluation.prompts,
        "seconds": time.perf_counter() - started,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--preset", default="llmft/tiny-llama")
    parser.add_argument("--sft-steps", type=int, default=600)
    parser.add_argument("--rm-steps", type=int, default=120)
    parser.add_argument("--ppo-steps", type=int, default=30)
    parser.add_argument("--ppo-lr", type=float, default=3e-4)
    parser.add_argument("--kl-coef", type=float, default=0.05)
    parser.add_argument("--dpo-steps", type=int, default=60)
    parser.add_argument("--dpo-lr", type=float, default=5e-4)
    parser.add_argument("--dpo-sft-weight", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=HERE / "rlhf_quality.json")
    args = parser.parse_args()

    runs: list[dict[str, Any]] = []
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory(prefix="llmft-rlhf-bench-") as tmp:
            runs.append({"seed": seed, **run(seed, args.preset, Path(tmp), args)})
    keys = [k for k in runs[0] if k != "seed"]
    summary = {
        key: {
            "median": statistics.median(r[key] for r in runs),
            "min": min(r[key] for r in runs),
            "max": max(r[key] for r in runs),
        }
        for key in keys
    }
    for r in runs:
        print(f"\nseed {r['seed']} ({r['seconds']:.0f} s)")
        print(f"{'policy':<6}{'mean reward':>12}{'gain':>8}{'KL':>8}{'win rate':>10}{'correct':>9}")
        print(f"{'sft':<6}{r['sft_mean_reward']:>12.3f}{0.0:>8.3f}{0.0:>8.3f}{0.5:>10.3f}{r['sft_correct']:>9.3f}")
        for name in ("ppo", "dpo"):
            print(
                f"{name:<6}{r[f'{name}_mean_reward']:>12.3f}{r[f'{name}_reward_gain']:>8.3f}{r[f'{name}_kl']:>8.3f}"
                f"{r[f'{name}_win_rate']:>10.3f}{r[f'{name}_correct']:>9.3f}"
            )
        print(f"reward model held-out accuracy {r['rm_pairwise_accuracy']:.3f}")
    print(f"\n{'metric':<26}{'median':>10}{'min':>10}{'max':>10}  target (every seed)")
    for key in keys:
        target = TARGETS.get(key)
        bound = f">= {target:.2f}" if target is not None else (f"< {KL_BOUND:.1f}" if key.endswith("_kl") else "")
        if key in ("ppo_correct", "dpo_correct"):
            bound = ">= sft_correct"
        s = summary[key]
        print(f"{key:<26}{s['median']:>10.3f}{s['min']:>10.3f}{s['max']:>10.3f}  {bound}")
    print("baseline: the SFT policy (reward gain 0, win rate 0.5), evaluated in the same run")
    result = {
        # The headline figures (medians over seeds, as fractions) under the keys the stage README quotes.
        **{
            key: summary[key]["median"]
            for key in ("rm_pairwise_accuracy", "ppo_reward_gain", "dpo_reward_gain", "ppo_kl")
        },
        "targets": TARGETS,
        "kl_bound_nats": KL_BOUND,
        "summary": summary,
        "runs": runs,
        "preset": args.preset,
        "settings": {k: v for k, v in vars(args).items() if k not in {"out"}},
        **machine(),
        "command": "python bench/rlhf_quality.py " + " ".join(sys.argv[1:]),
    }
    missed = [
        f"seed {r['seed']}: {problem}"
        for r in runs
        for problem in (
            *(f"{k} {r[k]:.3f} < {t}" for k, t in TARGETS.items() if r[k] < t),
            *(f"{n}_kl {r[f'{n}_kl']:.3f} >= {KL_BOUND}" for n in ("ppo", "dpo") if r[f"{n}_kl"] >= KL_BOUND),
            *(
                f"{n}_correct {r[f'{n}_correct']:.3f} < sft_correct {r['sft_correct']:.3f}"
                for n in ("ppo", "dpo")
                if r[f"{n}_correct"] < r["sft_correct"]
            ),
        )
    ]
    result["missed"] = missed
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    print("targets met on every seed" if not missed else "missed:\n  " + "\n  ".join(missed))
    return 0 if not missed else 1


if __name__ == "__main__":
    sys.exit(main())
