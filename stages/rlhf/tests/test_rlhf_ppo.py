"""PPO and the held-out evaluation on the tiny presets: the reward rises over the starting policy with the KL measured
against it; LoRA; both families; the contracts between policy and reward model refused before any weights load; the
CLI; the synthetic demo data."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmft.core.recipe import RecipeError
from llmft.core.training import read_artifact
from llmft.proto.rlhf.v1 import rlhf_pb2 as R
from llmft.proto.training.v1 import training_pb2 as T
from llmft.rlhf.__main__ import main
from llmft.rlhf.contracts import ContractError
from llmft.rlhf.demo import write_demo_dataset
from llmft.rlhf.evaluation import evaluate_policies
from llmft.rlhf.ppo import train_ppo
from llmft.rlhf.reward import train_reward_model

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def recipe(steps: int, lr: float, batch: int = 8, method: Any = T.TRAINING_METHOD_FULL) -> T.TrainingRecipe:
    return T.TrainingRecipe(
        method=method,
        max_length=48,
        lora=T.LoraConfig(rank=8, alpha=16.0),
        schedule=T.Schedule(max_steps=steps, learning_rate=lr, per_device_batch_size=batch),
    )


def sft_policy(chat: Path, out: Path, steps: int = 40) -> Path:
    """A supervised fine-tune of the tiny Llama on the demo chat data, with trl's SFTTrainer (a stage's tests may not
    import another stage): the policy PPO starts from, as in the recipe. At 40 steps it has the answers' words but not
    their order ("is plus is is ..."); at 600 (~30 s) it answers in the reference's sentence with the question's
    numbers and gets about a quarter of the held-out sums right."""
    import json

    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from llmft.core.datasets import read_split
    from llmft.core.models import load_tokenizer
    from llmft.core.presets import materialize_preset
    from llmft.core.recipe import load_model_for_training

    base = materialize_preset("llmft/tiny-llama")
    tokenizer = load_tokenizer(base)
    rows = [{"messages": json.loads(m)} for m in read_split(chat, "train")["messages"]]
    args = SFTConfig(
        output_dir=str(out.parent / "sft-work"),
        max_steps=steps,
        learning_rate=1e-3,
        per_device_train_batch_size=8,
        max_length=48,
        assistant_only_loss=True,
        bf16=False,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        seed=0,
    )
    model = load_model_for_training(base, recipe(40, 1e-3))
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    trainer.train()
    trainer.model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Demo data, an SFT policy, and a reward model per family (the Llama one from the SFT policy), trained once for
    the module."""
    root = tmp_path_factory.mktemp("ppo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLMFT_CACHE", str(root / "cache"))
        prefs = root / "prefs"
        write_demo_dataset(prefs, "preference")
        write_demo_dataset(root / "chat", "chat")
        folders = {"prefs": prefs, "sft": sft_policy(root / "chat", root / "sft")}
        for preset in ("llmft/tiny-llama", "llmft/tiny-neox"):
            out = root / preset.split("/")[1]
            request = R.RewardModelRequest(recipe=recipe(40, 3e-3))
            base = folders["sft"] if preset == "llmft/tiny-llama" else None
            request.base_model = "" if base else preset
            assert train_reward_model(request, prefs, out, base_model_dir=base).report.eval_accuracy_after >= 0.8
            folders[preset] = out
        yield folders


def test_ppo_raises_the_held_out_reward_of_the_sft_policy(trained: dict[str, Path], tmp_path: Path) -> None:
    request = R.PpoRequest(
        recipe=recipe(16, 3e-4, batch=16),
        ppo=R.PpoConfig(response_length=12, kl_coef=0.05, eval_prompts=32),
    )
    rm = trained["llmft/tiny-llama"]
    report = train_ppo(request, trained["prefs"], tmp_path / "ppo", trained["sft"], reward_model_dir=rm).report
    start, ppo = report.evaluation.policies
    assert (start.name, ppo.name) == ("sft", "ppo")
    assert start.kl_to_reference == 0.0 and start.win_rate_over_reference == 0.5 and start.reward_gain == 0.0
    # The mean reward of the PPO policy's answers to unseen questions is higher (over seeds 0-2 of this setup the gain
    # was 0.13 to 0.51), and the reward model prefers its answers at least as often as not (an unchanged policy samples
    # the same answers with the same seed: exactly 0.5). The quality targets are bench/rlhf_quality.py's.
    assert ppo.reward_gain > 0.05
    assert ppo.reward_gain == pytest.approx((ppo.mean_reward - start.mean_reward) / report.evaluation.reward_scale)
    assert ppo.win_rate_over_reference >= 0.5
    assert 0.0 < ppo.kl_to_reference < 20.0  # it moved, measured against the frozen starting policy
    assert (report.mean_reward_before, report.mean_reward_after, report.kl) == (
        start.mean_reward,
        ppo.mean_reward,
        ppo.kl_to_reference,
    )
    assert report.episodes == 16 * 16 and report.policy.metrics.steps == 16
    assert report.evaluation.prompts == 32 and report.evaluation.reward_scale > 1.0
    assert read_artifact(tmp_path / "ppo") == report.policy
    assert report.policy.format == T.ARTIFACT_FORMAT_MERGED
    assert report.evaluation.reward_model_fingerprint in report.policy.provenance.input_fingerprints


def test_ppo_with_lora_keeps_the_base_frozen_and_measures_kl_with_the_adapter_off(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    request = R.PpoRequest(
        base_model="llmft/tiny-llama",
        recipe=recipe(3, 2e-2, method=T.TRAINING_METHOD_LORA),
        ppo=R.PpoConfig(response_length=8, eval_prompts=8, kl_estimator="k3"),
    )
    report = train_ppo(request, trained["prefs"], tmp_path / "ppo", reward_model_dir=trained["llmft/tiny-llama"]).report
    assert report.policy.format == T.ARTIFACT_FORMAT_ADAPTER
    assert (tmp_path / "ppo" / "adapter_config.json").is_file()
    assert report.policy.trainable_parameters < report.policy.parameters / 5
    # The reference is the base with the adapter off: were it the policy itself, the KL would be exactly 0.
    assert abs(report.evaluation.policies[1].kl_to_reference) > 1e-4


def test_ppo_on_gpt_neox_policy_and_reward_model(trained: dict[str, Path], tmp_path: Path) -> None:
    request = R.PpoRequest(
        base_model="llmft/tiny-neox", recipe=recipe(2, 1e-3), ppo=R.PpoConfig(response_length=8, eval_prompts=8)
    )
    report = train_ppo(request, trained["prefs"], tmp_path / "ppo", reward_model_dir=trained["llmft/tiny-neox"]).report
    assert report.policy.model_family == "gpt_neox" and report.policy.metrics.steps == 2


def test_models_that_cannot_work_together_are_refused_before_any_weights_load(
    trained: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import llmft.rlhf.ppo as ppo_module

    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("weights loaded before the contracts were checked")

    monkeypatch.setattr(ppo_module, "load_model_for_training", no_loading)
    rm = trained["llmft/tiny-llama"]
    request = R.PpoRequest(base_model="llmft/tiny-llama", recipe=recipe(1, 1e-3))
    # A reward model whose tokenizer has one more token and another chat template.
    other = tmp_path / "other-rm"
    shutil.copytree(rm, other)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(other)
    tokenizer.add_tokens(["<|extra|>"])
    tokenizer.chat_template = tokenizer.chat_template.replace("<|im_start|>assistant", "<|im_start|>bot")
    tokenizer.save_pretrained(other)
    with pytest.raises(ContractError) as error:
        train_ppo(request, trained["prefs"], tmp_path / "a", reward_model_dir=other)
    message = str(error.value)
    assert "vocabulary" in message and "<|extra|>" in message and "chat template" in message and str(other) in message
    # The reward model in the policy's place, and the policy in the reward model's.
    with pytest.raises(ContractError, match="policy .*not a causal language model"):
        train_ppo(R.PpoRequest(recipe=recipe(1, 1e-3)), trained["prefs"], tmp_path / "b", rm, reward_model_dir=rm)
    from llmft.core.presets import materialize_preset

    policy = materialize_preset("llmft/tiny-llama")
    with pytest.raises(ContractError, match="reward model .*not a sequence classifier"):
        train_ppo(request, trained["prefs"], tmp_path / "c", reward_model_dir=policy)
    # ZeRO: trl's PPOTrainer builds its own accelerator and would silently train without it.
    zero = R.PpoRequest(base_model="llmft/tiny-llama", recipe=recipe(1, 1e-3))
    zero.recipe.zero.stage = 2
    with pytest.raises(RecipeError, match="recipe.zero.stage"):
        train_ppo(zero, trained["prefs"], tmp_path / "d", reward_model_dir=rm)
    assert not any((tmp_path / name).exists() for name in "abcd")


def test_evaluation_compares_policies_with_their_reference_reproducibly(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    from llmft.core.presets import materialize_preset

    policy = materialize_preset("llmft/tiny-llama")
    settings = R.PolicyEvaluationRequest(max_new_tokens=8, temperature=0.7, prompts=8, seed=3, max_length=48)
    rm = trained["llmft/tiny-llama"]
    first = evaluate_policies(settings, trained["prefs"], {"same": policy}, policy, rm)
    again = evaluate_policies(settings, trained["prefs"], {"same": policy}, policy, rm)
    reference, same = first.comparison.policies
    assert same.mean_reward == reference.mean_reward and same.kl_to_reference == pytest.approx(0.0, abs=1e-4)
    assert same.win_rate_over_reference == 0.5 and same.reward_gain == pytest.approx(0.0, abs=1e-6)
    assert first.comparison == again.comparison  # seeded sampling
    other_seed = R.PolicyEvaluationRequest()
    other_seed.CopyFrom(settings)
    other_seed.seed = 4
    assert (
        evaluate_policies(other_seed, trained["prefs"], {"same": policy}, policy, rm).answers[0].texts
        != first.answers[0].texts
    )
    assert "side by side" in first.report_html


def test_correct_counts_greedy_answers_with_the_chosen_first_sentence(trained: dict[str, Path], tmp_path: Path) -> None:
    """The SFT policy learned the demo's sentence and some of its sums; the untrained preset states none. Answers may
    run past max_new_tokens (8, shorter than "12 plus 7 is 19.") to the longest chosen first sentence, so a right
    answer is not cut short."""
    from llmft.core.presets import materialize_preset

    competent = sft_policy(trained["prefs"].parent / "chat", tmp_path / "sft", steps=600)
    settings = R.PolicyEvaluationRequest(max_new_tokens=8, temperature=0.7, prompts=32, seed=0, max_length=48)
    untrained = {"untrained": materialize_preset("llmft/tiny-llama")}
    result = evaluate_policies(settings, trained["prefs"], untrained, competent, trained["llmft/tiny-llama"])
    sft, other = result.comparison.policies
    assert sft.HasField("correct") and other.HasField("correct")
    assert other.correct == 0.0 and sft.correct >= 0.15  # 0.275 measured


def printed_json(out: str) -> dict:
    """The report a command prints last (trl prints its own lines to stdout before it)."""
    import json

    start = out.index("{\n") if out.startswith("{\n") else out.rindex("\n{\n") + 1
    return dict(json.loads(out[start:]))


def test_cli_runs_ppo_and_evaluate_and_writes_demo_data(
    trained: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rm = str(trained["llmft/tiny-llama"])
    assert main(["demo-data", "--kind", "preference", "--seed", "1", "--out", str(tmp_path / "prefs")]) == 0
    capsys.readouterr()
    args = ["--data", str(tmp_path / "prefs"), "--reward-model-dir", rm]
    assert (
        main(["ppo", "--config", str(EXAMPLES / "ppo.yaml"), *args, "--out", str(tmp_path / "ppo"), "--max-steps", "1"])
        == 0
    )
    report = printed_json(capsys.readouterr().out)
    assert report["policy"]["metrics"]["steps"] == 1 and len(report["evaluation"]["policies"]) == 2
    artifact = read_artifact(tmp_path / "ppo")
    assert artifact is not None and artifact.provenance.stage == "llmft.rlhf"
    from llmft.core.presets import materialize_preset

    policies = ["--policy", f"ppo={tmp_path / 'ppo'}"]
    reference = ["--base-model-dir", str(materialize_preset("llmft/tiny-llama"))]
    assert (
        main(
            [
                "evaluate",
                "--config",
                str(EXAMPLES / "evaluate.yaml"),
                *args,
                *reference,
                *policies,
                "--out",
                str(tmp_path / "eval"),
            ]
        )
        == 0
    )
    comparison = printed_json(capsys.readouterr().out)
    assert [p["name"] for p in comparison["policies"]] == ["sft", "ppo"]
    assert (tmp_path / "eval" / "report.html").is_file() and (tmp_path / "eval" / "comparison.json").is_file()
    # Bad input: a non-empty output folder, a policy named twice, a chat dataset for PPO.
    assert main(["evaluate", *args, *reference, *policies, "--out", str(tmp_path / "eval")]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert main(["evaluate", *args, *reference, *policies, *policies, "--out", str(tmp_path / "e2")]) == 2
    assert "is taken" in capsys.readouterr().err
    write_demo_dataset(tmp_path / "chat", "chat")
    assert main(["ppo", "--data", str(tmp_path / "chat"), "--reward-model-dir", rm, "--out", str(tmp_path / "p2")]) == 2
    assert "DATASET_KIND_CHAT" in capsys.readouterr().err
    assert not (tmp_path / "e2").exists() and not (tmp_path / "p2").exists()


def test_demo_data_holds_out_unseen_questions_and_prefers_the_right_answer(tmp_path: Path) -> None:
    import json

    from llmft.core.datasets import read_manifest, read_split

    manifest = write_demo_dataset(tmp_path / "prefs", "preference")
    assert read_manifest(tmp_path / "prefs") == manifest and manifest.name == "demo-arithmetic-preference"
    train, held_out = read_split(tmp_path / "prefs", "train"), read_split(tmp_path / "prefs", "eval")
    assert (len(train), len(held_out)) == (320, 80)
    assert not set(train["prompt"]) & set(held_out["prompt"])
    for row in held_out.itertuples():
        a, b = (int(w) for w in row.prompt.removeprefix("What is ").removesuffix("?").split(" plus "))
        assert row.chosen == f"{a} plus {b} is {a + b}." and row.rejected != row.chosen
    assert all(source == "synthetic:llmft.rlhf.demo" for source in train["source"])
    write_demo_dataset(tmp_path / "chat", "chat")
    first = json.loads(read_split(tmp_path / "chat", "train")["messages"][0])
    assert [m["role"] for m in first] == ["user", "assistant"]
    assert write_demo_dataset(tmp_path / "again", "preference").fingerprint == manifest.fingerprint
    with pytest.raises(FileExistsError):
        write_demo_dataset(tmp_path / "prefs", "preference")
