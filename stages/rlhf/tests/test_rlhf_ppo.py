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
    """Demo data (each question's right answer against three wrong ones), two SFT policies of the tiny Llama (40 steps:
    the weak start PPO improves on; 600 steps: a competent one), and a reward model per family (the Llama one grown
    from the competent policy), trained once for the module."""
    root = tmp_path_factory.mktemp("ppo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLMFT_CACHE", str(root / "cache"))
        prefs = root / "prefs"
        write_demo_dataset(prefs, "preference")
        write_demo_dataset(root / "chat", "chat")
        folders = {
            "prefs": prefs,
            "sft": sft_policy(root / "chat", root / "sft"),
            "competent": sft_policy(root / "chat", root / "competent", steps=600),
        }
        for preset, base, rm_recipe in (
            ("llmft/tiny-llama", folders["competent"], recipe(120, 1e-3)),
            ("llmft/tiny-neox", None, recipe(40, 3e-3)),
        ):
            out = root / preset.split("/")[1]
            request = R.RewardModelRequest(recipe=rm_recipe, base_model="" if base else preset)
            report = train_reward_model(request, prefs, out, base_model_dir=base).report
            print(f"reward model {preset}: held-out accuracy {report.eval_accuracy_after:.3f}")
            folders[preset] = out
        yield folders


def test_ppo_raises_the_held_out_reward_of_the_sft_policy(trained: dict[str, Path], tmp_path: Path) -> None:
    request = R.PpoRequest(
        recipe=recipe(32, 3e-4, batch=16),
        ppo=R.PpoConfig(response_length=12, kl_coef=0.15, eval_prompts=32),
    )
    rm = trained["llmft/tiny-llama"]
    report = train_ppo(request, trained["prefs"], tmp_path / "ppo", trained["sft"], reward_model_dir=rm).report
    start, ppo = report.evaluation.policies
    assert (start.name, ppo.name) == ("sft", "ppo")
    assert start.kl_to_reference == 0.0 and start.win_rate_over_reference == 0.5 and start.reward_gain == 0.0
    # The mean reward of the PPO policy's answers to unseen questions is higher, and the reward model prefers its
    # answers more often than not (an unchanged policy samples the same answers with the same seed: exactly 0.5),
    # within the README's gain of 0.20 and KL budget of 10 nats. The start is the 40-step policy (the words, not yet
    # their order), which leaves the reward model something to raise. How far 32 updates move this tiny policy differs
    # a lot between CPUs (kernels differ by instruction set): at kl_coef 0.05 an AMX Xeon measured gain 0.64 and KL
    # 6.0 (bf16), an AMD EPYC gain 1.86 and KL 19.2, over the budget. At 0.15 the EPYC measured gain 1.50, win rate
    # 0.95, KL 5.6 (0.10: KL 9.3, too near the budget).
    print(f"PPO: gain {ppo.reward_gain:.3f}, win rate {ppo.win_rate_over_reference:.3f}, KL {ppo.kl_to_reference:.3f}")
    assert ppo.reward_gain >= 0.20
    assert ppo.reward_gain == pytest.approx((ppo.mean_reward - start.mean_reward) / report.evaluation.reward_scale)
    assert ppo.win_rate_over_reference > 0.5
    assert 0.0 < ppo.kl_to_reference <= 10.0  # it moved, measured against the frozen starting policy
    assert (report.mean_reward_before, report.mean_reward_after, report.kl) == (
        start.mean_reward,
        ppo.mean_reward,
        ppo.kl_to_reference,
    )
    assert report.episodes == 32 * 16 and report.policy.metrics.steps == 32
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
    # The reference is the base with the adapter off: were it the policy itself, the KL would be exactly 0. PRINTED.
    kl = report.evaluation.policies[1].kl_to_reference
    print(f"LoRA PPO: KL {kl:.4f}")
    assert kl > 1e-3
    # Only the adapter was trained and saved: every tensor in the saved adapter is a LoRA matrix, none a base weight
    # (a base layer trained beside it, e.g. through modules_to_save, would be saved there too).
    from safetensors import safe_open

    with safe_open(str(tmp_path / "ppo" / "adapter_model.safetensors"), framework="pt") as saved:
        keys = list(saved.keys())
    assert keys and all(".lora_A." in k or ".lora_B." in k for k in keys), keys


def test_ppo_on_gpt_neox_policy_and_reward_model(trained: dict[str, Path], tmp_path: Path) -> None:
    request = R.PpoRequest(
        base_model="llmft/tiny-neox", recipe=recipe(2, 1e-3), ppo=R.PpoConfig(response_length=8, eval_prompts=8)
    )
    report = train_ppo(request, trained["prefs"], tmp_path / "ppo", reward_model_dir=trained["llmft/tiny-neox"]).report
    assert report.policy.model_family == "gpt_neox" and report.policy.metrics.steps == 2
    # Two updates moved the NeoX policy: its weights and its answers' likelihood differ from the preset's.
    from transformers import AutoModelForCausalLM

    from llmft.core.presets import materialize_preset

    before = AutoModelForCausalLM.from_pretrained(materialize_preset("llmft/tiny-neox")).state_dict()
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "ppo").state_dict()
    assert any(not before[k].equal(after[k]) for k in before)
    assert report.kl > 0.0 and report.episodes == 2 * 8


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
    # No policy or no reward model named.
    with pytest.raises(RecipeError, match="base_model: empty"):
        train_ppo(R.PpoRequest(recipe=recipe(1, 1e-3)), trained["prefs"], tmp_path / "e", reward_model_dir=rm)
    with pytest.raises(RecipeError, match="reward_model: empty"):
        train_ppo(request, trained["prefs"], tmp_path / "f")
    # A prompt budget that leaves no room for the answer.
    short = R.PpoRequest(base_model="llmft/tiny-llama", recipe=recipe(1, 1e-3), ppo=R.PpoConfig(response_length=47))
    with pytest.raises(RecipeError, match="recipe.max_length 48 leaves no room"):
        train_ppo(short, trained["prefs"], tmp_path / "g", reward_model_dir=rm)
    # A Llama policy and a NeoX reward model: the tiny presets share one tokenizer, and are refused all the same.
    neox = trained["llmft/tiny-neox"]
    with pytest.raises(ContractError, match="policy .* is a llama and the reward model .* a gpt_neox"):
        train_ppo(request, trained["prefs"], tmp_path / "h", reward_model_dir=neox)
    # Allowed with the flag: the contracts pass (the tokenizers agree) and loading begins.
    mixed = R.PpoRequest(base_model="llmft/tiny-llama", recipe=recipe(1, 1e-3), allow_mixed_families=True)
    with pytest.raises(AssertionError, match="weights loaded before the contracts were checked"):
        train_ppo(mixed, trained["prefs"], tmp_path / "i", reward_model_dir=neox)
    # The flag does not waive the tokenizer: a NeoX reward model with another vocabulary is still refused.
    other_neox = tmp_path / "other-neox"
    shutil.copytree(neox, other_neox)
    tokenizer = AutoTokenizer.from_pretrained(other_neox)
    tokenizer.add_tokens(["<|extra|>"])
    tokenizer.save_pretrained(other_neox)
    with pytest.raises(ContractError, match="vocabulary"):
        train_ppo(mixed, trained["prefs"], tmp_path / "j", reward_model_dir=other_neox)
    # The held-out comparison holds its policies to the same contract.
    with pytest.raises(ContractError, match="reference policy .* is a llama and the reward model .* a gpt_neox"):
        evaluate_policies(R.PolicyEvaluationRequest(), trained["prefs"], {"p": policy}, policy, neox)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (R.PpoConfig(kl_estimator="k2"), "ppo.kl_estimator: 'k2' is not one of"),
        (R.PpoConfig(kl_coef=-0.1), "ppo.kl_coef: -0.1 is not a finite number >= 0"),
        (R.PpoConfig(cliprange=float("nan")), "ppo.cliprange: nan is not a finite number"),
        (R.PpoConfig(vf_coef=float("inf")), "ppo.vf_coef: inf is not a finite number"),
        (R.PpoConfig(temperature=-1.0), "ppo.temperature: -1.0 is not a finite number"),
        (R.PpoConfig(missing_eos_penalty=-2.0), "ppo.missing_eos_penalty: -2.0 is not a finite number"),
        (R.PpoConfig(response_length=5000), "ppo.response_length: 5000 is over 4096 tokens"),
    ],
)
def test_ppo_settings_that_cannot_run_are_refused_naming_the_field(config: R.PpoConfig, message: str) -> None:
    from llmft.rlhf.ppo import resolve_ppo

    with pytest.raises(RecipeError, match=message.replace("(", r"\(")):
        resolve_ppo(config)


def test_explicit_zeros_of_ppo_settings_are_errors_in_a_request_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """kl_coef 0 and temperature 0 would read as absent and silently become 0.05 and 0.7; the request file is refused,
    naming the file and both fields, before any data is read or model loaded (there is no data here)."""
    config = tmp_path / "ppo.yaml"
    config.write_text("ppo: {kl_coef: 0, temperature: 0.0, missing_eos_penalty: 0}\n")
    code = main(["ppo", "--config", str(config), "--data", str(tmp_path / "none"), "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert code == 2 and str(config) in error
    assert "ppo.kl_coef: an explicit 0 is not allowed" in error and "ppo.temperature" in error
    assert "missing_eos_penalty" not in error  # its 0 means what it says: no penalty
    assert not (tmp_path / "out").exists()


def test_evaluation_compares_policies_with_their_reference_reproducibly(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    policy = trained["sft"]  # 40 steps: the demo's words, not yet their order
    settings = R.PolicyEvaluationRequest(max_new_tokens=8, temperature=0.7, prompts=8, seed=3, max_length=48)
    rm = trained["llmft/tiny-llama"]
    compared = {"same": policy, "competent": trained["competent"]}
    first = evaluate_policies(settings, trained["prefs"], compared, policy, rm)
    again = evaluate_policies(settings, trained["prefs"], compared, policy, rm)
    reference, same, competent = first.comparison.policies
    # The reference's own weights in another policy's place: no distance, no gain, a win rate of exactly one half.
    assert same.mean_reward == reference.mean_reward and same.kl_to_reference == pytest.approx(0.0, abs=1e-4)
    assert same.win_rate_over_reference == 0.5 and same.reward_gain == pytest.approx(0.0, abs=1e-6)
    # The policy trained 15 times longer, from which the reward model grew: far from the reference, and its answers
    # (the demo's whole sentence, some right sums) score higher with the reward model than the 40-step policy's
    # (measured on an AMD EPYC with AVX2 only: gain 1.37, 7 of 8 won).
    print(
        f"competent over 40 steps: gain {competent.reward_gain:.3f}, win rate {competent.win_rate_over_reference:.3f}"
    )
    assert competent.kl_to_reference > 1.0 and competent.reward_gain > 0.0 and competent.win_rate_over_reference > 0.5
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

    competent = trained["competent"]
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

    manifest = write_demo_dataset(tmp_path / "prefs", "preference", pairs_per_question=1)
    assert read_manifest(tmp_path / "prefs") == manifest and manifest.name == "demo-arithmetic-preference"
    train, held_out = read_split(tmp_path / "prefs", "train"), read_split(tmp_path / "prefs", "eval")
    assert (len(train), len(held_out)) == (320, 80)
    assert not set(train["prompt"]) & set(held_out["prompt"])
    kinds = {"off": 0, "product": 0, "cut": 0}
    for row in held_out.itertuples():
        a, b = (int(w) for w in row.prompt.removeprefix("What is ").removesuffix("?").split(" plus "))
        assert row.chosen == f"{a} plus {b} is {a + b}." and row.rejected != row.chosen
        # A wrong answer in the reference's own sentence, never a marker: a wrong number, or the sentence cut short.
        if row.rejected in (f"{a} plus {b} is", f"{a} plus {b}"):
            kinds["cut"] += 1
        else:
            stated = int(row.rejected.removeprefix(f"{a} plus {b} is ").removesuffix("."))
            assert row.rejected == f"{a} plus {b} is {stated}." and stated != a + b
            kinds["product" if stated == a * b else "off"] += 1
    assert all(count >= 15 for count in kinds.values()), kinds  # about a third each of the 80
    three = write_demo_dataset(tmp_path / "three", "preference")  # by default, three wrong answers per question
    rows = read_split(tmp_path / "three", "eval")
    assert len(rows) == 3 * 80 and rows["id"].is_unique and three.fingerprint != manifest.fingerprint
    assert all(len(set(group["rejected"])) == 3 for _, group in rows.groupby("prompt"))
    assert all(source == "synthetic:llmft.rlhf.demo" for source in train["source"])
    write_demo_dataset(tmp_path / "chat", "chat")
    first = json.loads(read_split(tmp_path / "chat", "train")["messages"][0])
    assert [m["role"] for m in first] == ["user", "assistant"]
    assert (
        write_demo_dataset(tmp_path / "again", "preference", pairs_per_question=1).fingerprint == manifest.fingerprint
    )
    with pytest.raises(FileExistsError):
        write_demo_dataset(tmp_path / "prefs", "preference")
