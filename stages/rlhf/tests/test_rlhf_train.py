from pathlib import Path

import pytest

from llmft.core.datasets import DatasetKindError
from llmft.core.recipe import RecipeError
from llmft.core.training import read_artifact
from llmft.proto.rlhf.v1 import rlhf_pb2 as R
from llmft.proto.training.v1 import training_pb2 as T
from llmft.rlhf.__main__ import main
from llmft.rlhf.dpo import train_dpo
from llmft.rlhf.reward import train_reward_model
from llmft.testing import write_chat_dataset, write_preference_dataset

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMFT_CACHE", str(tmp_path / "cache"))


def recipe(steps: int, lr: float) -> T.TrainingRecipe:
    return T.TrainingRecipe(
        max_length=64, schedule=T.Schedule(max_steps=steps, learning_rate=lr, per_device_batch_size=8)
    )


FAMILIES = {"llmft/tiny-llama": "llama", "llmft/tiny-neox": "gpt_neox"}  # LLaMA and RedPajama's GPT-NeoX


@pytest.mark.parametrize("preset", sorted(FAMILIES))
def test_reward_model_learns_to_prefer_the_chosen_answers(preset: str, tmp_path: Path) -> None:
    import pandas as pd
    from transformers import AutoModelForSequenceClassification

    from llmft.core.datasets import read_split
    from llmft.core.generation import chat_prompt_ids
    from llmft.core.models import load_tokenizer
    from llmft.rlhf.evaluation import rewards
    from llmft.rlhf.preferences import conversational_pairs, end_of_turn_id
    from llmft.rlhf.reward import score

    data = write_preference_dataset(tmp_path / "data", eval_rows=32)
    # One pair whose answer runs past max_length (64): trl's RewardTrainer would drop it without a word.
    train = pd.read_parquet(data / "train.parquet")
    long = train.iloc[[5]].assign(id="long", chosen=train.loc[5, "chosen"] + " That is the sum." * 12)
    pd.concat([train, long], ignore_index=True).to_parquet(data / "train.parquet", index=False)
    result = train_reward_model(R.RewardModelRequest(base_model=preset, recipe=recipe(30, 3e-3)), data, tmp_path / "rm")
    report = result.report
    assert (report.train_pairs, report.pairs_over_max_length) == (64, 1)
    assert "left out (over max_length 64)" in result.report_html
    assert report.reward_model.model_family == FAMILIES[preset]
    metrics = report.reward_model.metrics
    assert report.eval_pairs == 32
    assert read_artifact(tmp_path / "rm") == report.reward_model
    # Held-out pairs ask unseen questions, and each rejected answer is a wrong one in the right sentence (a sum off by
    # one or two, the product, cut short). A random-init tiny model learns the cut every time, the product mostly, and
    # not the sums (measured over seeds 0-2 in bf16 and fp32: cut 11/11, product 2-5 of 5, off-by-one 6-11 of 16;
    # held-out loss 0.69 -> 0.45-0.49), so what is asserted is the held-out Bradley-Terry loss and the cut answers.
    assert metrics.eval_after.loss < metrics.eval_before.loss - 0.15
    assert report.eval_margin > 0.5
    held_out = read_split(data, "eval")
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm")
    assert model.config.num_labels == 1
    tokenizer = load_tokenizer(tmp_path / "rm")
    chosen, rejected = score(model, tokenizer, conversational_pairs(held_out), 64)
    cut = [c > r for c, r, text in zip(chosen, rejected, held_out["rejected"], strict=True) if not text.endswith(".")]
    assert len(cut) >= 5 and all(cut)
    # PPO and the held-out evaluation score what a policy samples: the prompt's ids, then the answer's up to the
    # end-of-turn token. Read there (built here without the stage's helper), the model ranks the cut answers below the
    # right ones too; trained on the template's whole text (ChatML adds a newline after <|im_end|>), it was never
    # trained at this position.
    stop = end_of_turn_id(tokenizer)
    prompts = [chat_prompt_ids(tokenizer, [{"role": "user", "content": q}]) for q in held_out["prompt"]]

    def sampled(texts: list[str]) -> list[list[int]]:
        return [tokenizer(t, add_special_tokens=False)["input_ids"] + [stop] for t in texts]

    as_used = zip(
        rewards(model, prompts, sampled(list(held_out["chosen"]))),
        rewards(model, prompts, sampled(list(held_out["rejected"]))),
        held_out["rejected"],
        strict=True,
    )
    cut = [c > r for c, r, text in as_used if not text.endswith(".")]
    assert len(cut) >= 5 and all(cut)


def test_reward_model_and_dpo_take_a_real_format_tokenizer_with_the_chosen_template(tmp_path: Path) -> None:
    """A RedPajama-INCITE tokenizer as the Hub ships it (no chat template): refused without one, trained with the
    family's template, which both artifacts record and both tokenizers carry, so PPO's shared-tokenizer check holds."""
    from llmft.core.models import load_tokenizer
    from llmft.rlhf.contracts import tokenizer_differences
    from llmft.testing_tokenizers import write_family_model

    base = write_family_model("redpajama-incite", tmp_path / "base")
    data = write_preference_dataset(tmp_path / "data", train_rows=16, eval_rows=8)
    with pytest.raises(RecipeError, match="has no chat template; set recipe.chat_template .*'redpajama-incite'"):
        train_dpo(R.DpoRequest(recipe=recipe(4, 1e-3)), data, tmp_path / "refused", base_model_dir=base)
    chosen = recipe(4, 1e-3)
    chosen.chat_template = "redpajama-incite"
    dpo = train_dpo(R.DpoRequest(recipe=chosen), data, tmp_path / "dpo", base_model_dir=base).report.policy
    rm = train_reward_model(R.RewardModelRequest(recipe=chosen), data, tmp_path / "rm", base_model_dir=base)
    assert dpo.chat_template == rm.report.reward_model.chat_template == "redpajama-incite"
    assert dpo.model_family == "gpt_neox"
    assert tokenizer_differences(load_tokenizer(tmp_path / "dpo"), load_tokenizer(tmp_path / "rm")) == []
    assert "<bot>:" in load_tokenizer(tmp_path / "dpo").chat_template


@pytest.mark.parametrize("preset", sorted(FAMILIES))
def test_dpo_raises_held_out_preference_accuracy(preset: str, tmp_path: Path) -> None:
    data = write_preference_dataset(tmp_path / "data")
    request = R.DpoRequest(base_model=preset, recipe=recipe(30, 1e-3), dpo=R.DpoConfig(beta=0.1))
    result = train_dpo(request, data, tmp_path / "dpo")
    report = result.report
    assert report.policy.model_family == FAMILIES[preset]
    # On the same honest pairs (see above), measured at 30 steps: loss 0.69 -> 0.59 (Llama), 0.57 (NeoX); accuracy
    # 0.81 and 0.63 (0 before: the policy is its own reference, so no pair's implicit reward differs).
    assert report.eval_loss_after < report.eval_loss_before - 0.08
    assert report.eval_accuracy_after >= 0.6
    assert report.policy.provenance.stage == "llmft.rlhf"
    assert report.policy.base_model == preset
    assert report.policy.metrics.eval_before.perplexity == 0.0  # a preference loss has no perplexity


def test_bad_inputs_fail_before_training(tmp_path: Path) -> None:
    chat = write_chat_dataset(tmp_path / "chat", train_rows=4, eval_rows=2)
    with pytest.raises(DatasetKindError, match="DATASET_KIND_PREFERENCE"):
        train_dpo(R.DpoRequest(base_model="llmft/tiny-llama", recipe=recipe(1, 1e-3)), chat, tmp_path / "x")
    prefs = write_preference_dataset(tmp_path / "prefs", train_rows=4, eval_rows=2)
    with pytest.raises(RecipeError, match="dpo.loss_type"):
        bad = R.DpoRequest(base_model="llmft/tiny-llama", recipe=recipe(1, 1e-3), dpo=R.DpoConfig(loss_type="magic"))
        train_dpo(bad, prefs, tmp_path / "y")
    with pytest.raises(RecipeError, match="base_model: empty and no upstream policy folder given"):
        train_dpo(R.DpoRequest(recipe=recipe(1, 1e-3)), prefs, tmp_path / "z")
    with pytest.raises(RecipeError, match="dpo.sft_weight"):
        nan = R.DpoRequest(
            base_model="llmft/tiny-llama", recipe=recipe(1, 1e-3), dpo=R.DpoConfig(sft_weight=float("nan"))
        )
        train_dpo(nan, prefs, tmp_path / "w")
    assert not any((tmp_path / name).exists() for name in ("w", "x", "y", "z"))


def test_dpo_sft_weight_adds_the_chosen_answers_likelihood_to_the_loss(tmp_path: Path) -> None:
    prefs = write_preference_dataset(tmp_path / "prefs", train_rows=8, eval_rows=4)
    losses = {}
    for weight in (0.0, 1.0):
        request = R.DpoRequest(
            base_model="llmft/tiny-llama", recipe=recipe(1, 1e-3), dpo=R.DpoConfig(sft_weight=weight)
        )
        losses[weight] = train_dpo(request, prefs, tmp_path / f"dpo-{weight}").report.eval_loss_before
    # Before any step the policy is its reference: the preference loss is log 2 either way, and the SFT term adds the
    # untrained model's negative log-likelihood of the chosen answers (several nats per token).
    assert losses[0.0] == pytest.approx(0.6931, abs=1e-3)
    assert losses[1.0] > losses[0.0] + 2.0


def test_a_config_with_a_key_given_twice_is_refused_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_preference_dataset(tmp_path / "data", train_rows=16, eval_rows=4)
    config = tmp_path / "dpo.yaml"
    config.write_text("dpo:\n  beta: 0.1\n  beta: 0.5\n")
    code = main(["dpo", "--config", str(config), "--data", str(data), "--out", str(tmp_path / "dpo")])
    assert code != 0 and f"{config}:3: key 'beta' given twice (first on line 2)" in capsys.readouterr().err
    assert not (tmp_path / "dpo").exists()
    config.write_text("dpo:\n  betta: 0.1\n")  # an unknown key: named with the closest field
    code = main(["dpo", "--config", str(config), "--data", str(data), "--out", str(tmp_path / "dpo")])
    assert code != 0 and "dpo.betta: unknown field of DpoConfig; did you mean 'beta'?" in capsys.readouterr().err
    assert not (tmp_path / "dpo").exists()


def test_cli_runs_the_dpo_example(tmp_path: Path) -> None:
    data = write_preference_dataset(tmp_path / "data", train_rows=16, eval_rows=4)
    assert EXAMPLES.joinpath("dpo.yaml").read_text().startswith("# llmft rlhf dpo --config")
    code = main(
        [
            "dpo",
            "--config",
            str(EXAMPLES / "dpo.yaml"),
            "--data",
            str(data),
            "--out",
            str(tmp_path / "o"),
            "--max-steps",
            "2",
        ]
    )
    assert code == 0
    artifact = read_artifact(tmp_path / "o")
    assert artifact is not None and artifact.metrics.steps == 2


def test_pairs_that_cannot_teach_fail_naming_the_row_before_any_model_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    from llmft.rlhf import reward
    from llmft.rlhf.preferences import PreferenceDataError

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(reward, "load_model_for_training", no_model)
    data = write_preference_dataset(tmp_path / "prefs", train_rows=6, eval_rows=2)
    frame = pd.read_parquet(data / "train.parquet")
    frame.loc[4, "rejected"] = frame.loc[4, "chosen"] + "  "
    frame.to_parquet(data / "train.parquet", index=False)
    request = R.RewardModelRequest(base_model="llmft/tiny-llama", recipe=recipe(1, 1e-3))
    with pytest.raises(PreferenceDataError, match=rf"train.parquet: row 4 \(id {frame.loc[4, 'id']}\): chosen equals"):
        train_reward_model(request, data, tmp_path / "rm")

    data = write_preference_dataset(tmp_path / "long", train_rows=6, eval_rows=2)
    short = R.RewardModelRequest(base_model="llmft/tiny-llama", recipe=recipe(1, 1e-3))
    short.recipe.max_length = 12  # "What is a plus b?" in the chat template is longer
    with pytest.raises(
        PreferenceDataError, match=r"train.parquet: row 0: the prompt is \d+ tokens .*recipe.max_length 12"
    ):
        train_reward_model(short, data, tmp_path / "rm")
    short.recipe.max_length = 19  # the prompts (17 tokens) fit, every answer runs over
    with pytest.raises(PreferenceDataError, match=r"train.parquet: every pair is longer than recipe.max_length 19"):
        train_reward_model(short, data, tmp_path / "rm")
    assert not (tmp_path / "rm").exists()


def test_the_reward_model_scores_a_conversation_where_a_sampled_answer_ends() -> None:
    from llmft.core.generation import chat_prompt_ids
    from llmft.core.presets import load_preset_tokenizer
    from llmft.rlhf.preferences import end_of_turn_id, scored_ids

    tokenizer = load_preset_tokenizer()  # ChatML: "<|im_end|>" then a newline closes each turn
    prompt = [{"role": "user", "content": "What is 2 plus 3?"}]
    answer = [{"role": "assistant", "content": "2 plus 3 is 5."}]
    stop = end_of_turn_id(tokenizer)
    whole = tokenizer.apply_chat_template(prompt + answer, tokenize=True, return_dict=True)["input_ids"]
    ids = scored_ids(tokenizer, prompt, answer, stop)
    assert len(whole) > len(ids) and ids[-1] == stop
    assert ids == chat_prompt_ids(tokenizer, prompt) + tokenizer("2 plus 3 is 5.", add_special_tokens=False)[
        "input_ids"
    ] + [stop]
