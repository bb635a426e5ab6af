import json
from pathlib import Path

import pytest

from llmft.core.datasets import read_split
from llmft.core.models import resolve_model_dir
from llmft.core.recipe import RecipeError
from llmft.proto.training.v1 import training_pb2 as T
from llmft.testing import write_chat_dataset
from llmft.train_sft.train import assistant_tokens, conversation, train_sft


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMFT_CACHE", str(tmp_path / "cache"))


def request(**recipe: object) -> T.TrainingRequest:
    base = dict(
        max_length=64,
        packing=True,
        seed=0,
        schedule=T.Schedule(max_steps=15, learning_rate=3e-3, per_device_batch_size=8),
    )
    base.update(recipe)
    recipe_ = T.TrainingRecipe(**base)  # type: ignore[arg-type]
    return T.TrainingRequest(base_model="llmft/tiny-llama", run_name="test", recipe=recipe_)


@pytest.mark.parametrize("packing", [True, False])
def test_sft_lowers_held_out_assistant_loss(tmp_path: Path, packing: bool) -> None:
    data = write_chat_dataset(tmp_path / "data")
    result = train_sft(request(packing=packing), data, tmp_path / "model")
    metrics = result.artifact.metrics
    assert metrics.eval_after.loss < metrics.eval_before.loss - 1.0
    assert result.artifact.provenance.stage == "llmft.train_sft"
    assert len(result.samples) == 3 and all(s["before"] != s["after"] for s in result.samples)
    assert (tmp_path / "model" / "chat_template.jinja").is_file()


def test_eval_token_count_is_the_assistant_tokens_only(tmp_path: Path) -> None:
    from llmft.core.models import load_tokenizer

    tokenizer = load_tokenizer(resolve_model_dir("llmft/tiny-llama").directory)
    conversation = [{"role": "user", "content": "a long question " * 5}, {"role": "assistant", "content": "Yes."}]
    answer = len(tokenizer("Yes.<|im_end|>", add_special_tokens=False)["input_ids"])
    assert assistant_tokens(tokenizer, [conversation], max_length=256) == answer


def test_a_tokenizer_without_chat_template_fails_before_training(tmp_path: Path) -> None:
    import shutil

    base = tmp_path / "no-template"
    shutil.copytree(resolve_model_dir("llmft/tiny-llama").directory, base)
    (base / "chat_template.jinja").unlink()
    config = json.loads((base / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    data = write_chat_dataset(tmp_path / "data", train_rows=10, eval_rows=2)
    with pytest.raises(RecipeError, match="has no chat template; set recipe.chat_template to one of chatml, llama-2"):
        train_sft(request(), data, tmp_path / "model", base_model_dir=base)
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("family", ["llama-2", "redpajama-incite"])
def test_sft_trains_a_real_format_tokenizer_with_the_chosen_template(tmp_path: Path, family: str) -> None:
    """A LLaMA-2-chat and a RedPajama-INCITE tokenizer as the Hub ships them (no {% generation %} markers; none at
    all): refused without a template, trained with the family's template, which the model folder and artifact keep."""
    from transformers import AutoTokenizer

    from llmft.core.chat_templates import FORMATS
    from llmft.testing_tokenizers import write_family_model

    base = write_family_model(family, tmp_path / "base")
    data = write_chat_dataset(tmp_path / "data", train_rows=40, eval_rows=8)
    with pytest.raises(RecipeError, match=f"recipe.chat_template .*look like {family!r}"):
        train_sft(request(), data, tmp_path / "refused", base_model_dir=base)
    assert not (tmp_path / "refused").exists()

    result = train_sft(request(chat_template=family), data, tmp_path / "model", base_model_dir=base)
    artifact = result.artifact
    assert artifact.chat_template == family
    assert artifact.metrics.eval_after.loss < artifact.metrics.eval_before.loss
    saved = AutoTokenizer.from_pretrained(tmp_path / "model")
    assert saved.chat_template == FORMATS[family].template
    # The held-out loss counts the assistant's tokens only, under the family's template.
    eval_conversations = [conversation(m) for m in read_split(data, "eval")["messages"]]
    assert artifact.metrics.eval_before.tokens == assistant_tokens(saved, eval_conversations, 64)
