import json
from pathlib import Path

import pytest

from llmft.core import presets
from llmft.core.models import (
    ModelNotFoundError,
    default_lora_targets,
    load_tokenizer,
    missing_model_problem,
    model_name_problem,
    resolve_model_dir,
    tokenizer_fingerprint,
)
from llmft.core.parameters import count_parameters


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMFT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_tiny_preset_is_a_loadable_llama_of_about_two_million_parameters() -> None:
    from transformers import AutoModelForCausalLM

    resolved = resolve_model_dir("llmft/tiny-llama")
    model = AutoModelForCausalLM.from_pretrained(resolved.directory)
    total, trainable = count_parameters(model)
    assert model.config.model_type == "llama"
    assert 1_500_000 < total < 2_500_000
    assert trainable == total
    assert default_lora_targets(model.config)[:2] == ["q_proj", "k_proj"]


def test_small_preset_has_about_twenty_million_parameters() -> None:
    total, _ = count_parameters(presets.preset_model("llmft/small-llama"))
    assert 18_000_000 < total < 22_000_000


def test_materializing_twice_gives_the_same_weights(tmp_path: Path) -> None:
    from llmft.core.models import weights_fingerprint

    first = presets.materialize_preset("llmft/tiny-llama", root=tmp_path / "a")
    second = presets.materialize_preset("llmft/tiny-llama", root=tmp_path / "b")
    assert weights_fingerprint(first) == weights_fingerprint(second)
    assert tokenizer_fingerprint(first) == tokenizer_fingerprint(second)


def test_chat_template_marks_only_the_assistant_turns() -> None:
    tokenizer = load_tokenizer(resolve_model_dir("llmft/tiny-llama").directory)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is Flyte?"},
        {"role": "assistant", "content": "An orchestrator."},
        {"role": "user", "content": "And a task?"},
        {"role": "assistant", "content": "A unit of work."},
    ]
    encoded = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = encoded["input_ids"], encoded["assistant_masks"]
    trained = tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if m])
    assert trained == "An orchestrator.<|im_end|>A unit of work.<|im_end|>"
    prompt = tokenizer.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")


def test_tokenizer_round_trips_code_byte_for_byte() -> None:
    tokenizer = load_tokenizer(resolve_model_dir("llmft/tiny-llama").directory)
    text = "def f(x: int) -> str:\n    return f'{x:>4} ünïcode ✓'\n"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert len(ids) < len(text)  # BPE merges: fewer tokens than characters


def test_local_directory_and_missing_path(tmp_path: Path) -> None:
    preset_dir = resolve_model_dir("llmft/tiny-llama").directory
    local = resolve_model_dir(str(preset_dir))
    assert local.directory == preset_dir
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model_dir(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="config.json"):
        resolve_model_dir(str(tmp_path / "empty"))


def test_hub_id_goes_to_the_hub_and_fails_clearly_offline() -> None:
    with pytest.raises(ModelNotFoundError, match="could not be fetched from the Hub"):
        resolve_model_dir("meta-llama/Llama-3.2-1B")


def test_model_names_are_checked_without_loading_or_asking_the_hub(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    good = ["llmft/tiny-llama", "smollm2-135m-instruct", "meta-llama/Llama-3.2-1B", str(tmp_path / "model")]
    assert [model_name_problem(n) for n in good] == [""] * 4
    assert [missing_model_problem(n) for n in good] == [""] * 4  # a Hub id is resolved when the run needs it
    assert "is neither a built-in model" in model_name_problem("org/two words")
    assert "Hub repo id" in model_name_problem("a--b")
    for local in (str(tmp_path / "nope"), "./here/m", "~/no-such-model", "weights.gguf"):
        assert model_name_problem(local) == ""  # a path is a path; whether it is there depends on the machine
        assert missing_model_problem(local) == f"{local!r} does not exist on this machine"
    assert not (tmp_path / "cache").exists()  # nothing materialised


def test_shipped_tokenizer_is_byte_level_bpe_with_the_special_tokens() -> None:
    spec = json.loads((presets.TOKENIZER_DIR / "tokenizer.json").read_text())
    assert spec["model"]["type"] == "BPE"
    assert spec["pre_tokenizer"]["type"] == "ByteLevel"
    added = {t["content"] for t in spec["added_tokens"]}
    assert set(presets.SPECIAL_TOKENS) <= added
    assert len(spec["model"]["vocab"]) == 8192
