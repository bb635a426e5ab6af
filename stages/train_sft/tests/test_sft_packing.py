"""Padding-free packing is exact: with position ids restarting per conversation, a packed row gives each
conversation the logits it gets alone (no attention across examples), and only assistant tokens carry labels."""

from pathlib import Path

import pytest
import torch

from llmft.core.models import load_tokenizer, resolve_model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import os

    os.environ["LLMFT_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    return resolve_model_dir("llmft/tiny-llama").directory


@pytest.mark.parametrize("preset", ["llmft/tiny-llama", "llmft/tiny-neox"])
def test_packed_sequences_do_not_attend_across_examples(model_dir: Path, preset: str) -> None:
    """As trl calls the model in training (use_cache=False): with a cache, transformers skips the packed-sequence
    mask and attention would cross examples."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(resolve_model_dir(preset).directory, attn_implementation="sdpa")
    model.eval()
    a = torch.randint(10, 8000, (1, 17))
    b = torch.randint(10, 8000, (1, 11))
    with torch.no_grad():
        alone_a = model(input_ids=a).logits
        alone_b = model(input_ids=b).logits
        packed = model(
            input_ids=torch.cat([a, b], dim=1),
            position_ids=torch.cat([torch.arange(17), torch.arange(11)]).unsqueeze(0),
            use_cache=False,
        ).logits
    assert torch.allclose(packed[:, :17], alone_a, atol=1e-4)
    assert torch.allclose(packed[:, 17:], alone_b, atol=1e-4)


def test_packed_training_batches_restart_positions_and_label_only_assistant_tokens(
    model_dir: Path, tmp_path: Path
) -> None:
    from llmft.core.recipe import load_model_for_training, resolve_recipe
    from llmft.proto.training.v1 import training_pb2 as T
    from llmft.train_sft.train import sft_trainer

    tokenizer = load_tokenizer(model_dir)
    recipe = resolve_recipe(T.TrainingRecipe(max_length=64, packing=True, schedule=T.Schedule(per_device_batch_size=2)))
    conversations = [
        [{"role": "user", "content": "What is 2 plus 2?"}, {"role": "assistant", "content": "4."}],
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "A color?"},
            {"role": "assistant", "content": "Blue."},
        ],
    ]
    trainer = sft_trainer(
        recipe, load_model_for_training(model_dir, recipe), tokenizer, conversations, conversations, tmp_path
    )
    batch = next(iter(trainer.get_train_dataloader()))
    lengths = [
        len(tokenizer.apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"]) for c in conversations
    ]
    assert batch["input_ids"].shape == (1, sum(lengths))  # both conversations packed into one row
    assert "attention_mask" not in batch  # so transformers masks attention per conversation
    positions = batch["position_ids"][0].tolist()
    starts = [i for i, p in enumerate(positions) if p == 0] + [len(positions)]
    runs = [positions[start:end] for start, end in zip(starts, starts[1:], strict=False)]
    assert sorted(len(run) for run in runs) == sorted(lengths)
    assert all(run == list(range(len(run))) for run in runs)  # positions restart per conversation
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    trained = tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label != -100])
    assert sorted(trained.split("<|im_end|>")[:-1]) == ["4.", "Blue."]


def test_without_flash_attention_packed_rows_stay_separate_rows(model_dir: Path, tmp_path: Path) -> None:
    """sdpa would compute a flattened batch as one long row (quadratic in the whole batch): rows stay rows."""
    from llmft.core.lm_loss import FusedLMOutput
    from llmft.core.recipe import load_model_for_training, resolve_recipe
    from llmft.proto.training.v1 import training_pb2 as T
    from llmft.train_sft.attention import PACKED_SDPA
    from llmft.train_sft.train import RowPackedCollator, sft_trainer

    tokenizer = load_tokenizer(model_dir)
    recipe = resolve_recipe(T.TrainingRecipe(max_length=48, packing=True, schedule=T.Schedule(per_device_batch_size=2)))
    long_answer = "word " * 20
    conversations = [
        [{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": long_answer}] for i in range(2)
    ]
    trainer = sft_trainer(
        recipe, load_model_for_training(model_dir, recipe), tokenizer, conversations, conversations, tmp_path
    )
    assert isinstance(trainer.data_collator, RowPackedCollator)
    assert trainer.model.config._attn_implementation == PACKED_SDPA  # each conversation attends to itself only
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape[0] == 2 and batch["input_ids"].shape[1] <= 48  # two rows, not one of 2 x 48
    for row in batch["position_ids"].tolist():
        assert row[0] == 0 and all(b == a + 1 for a, b in zip(row, row[1:], strict=False) if b != 0)
    # The loss is llmft's fused one: no logits, and trl's token statistics over the assistant tokens.
    outputs = trainer.model(**batch)
    assert isinstance(outputs, FusedLMOutput) and outputs.logits is None and outputs.num_valid_tokens is not None
    assert int(outputs.num_valid_tokens) == int((batch["labels"][:, 1:] != -100).sum()) > 0
