from pathlib import Path

import pytest

from llmft.core import fingerprint as fp
from llmft.proto.training.v1 import training_pb2


def test_same_content_under_another_path_has_the_same_fingerprint(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "elsewhere" / "b"
    for root in (a, b):
        (root / "sub").mkdir(parents=True)
        (root / "x.txt").write_text("hello")
        (root / "sub" / "y.txt").write_text("world")
    assert fp.fingerprint_directory(a) == fp.fingerprint_directory(b)
    (b / "sub" / "y.txt").write_text("world!")
    assert fp.fingerprint_directory(a) != fp.fingerprint_directory(b)


def test_a_renamed_file_changes_the_directory_fingerprint(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("hello")
    before = fp.fingerprint_directory(tmp_path)
    (tmp_path / "x.txt").rename(tmp_path / "z.txt")
    assert fp.fingerprint_directory(tmp_path) != before


def test_include_limits_the_files_hashed(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{}")
    before = fp.fingerprint_directory(tmp_path, include=["tokenizer.json"])
    (tmp_path / "model.safetensors").write_text("weights")
    assert fp.fingerprint_directory(tmp_path, include=["tokenizer.json"]) == before


def test_json_fingerprint_ignores_key_order() -> None:
    assert fp.fingerprint_json({"a": 1, "b": [1, 2]}) == fp.fingerprint_json({"b": [1, 2], "a": 1})
    assert fp.fingerprint_json({"a": 1}) != fp.fingerprint_json({"a": 2})


def test_message_fingerprint_follows_content() -> None:
    one = training_pb2.TrainingRecipe(max_length=128, seed=1)
    same = training_pb2.TrainingRecipe(seed=1, max_length=128)
    other = training_pb2.TrainingRecipe(max_length=256, seed=1)
    assert fp.fingerprint_message(one) == fp.fingerprint_message(same)
    assert fp.fingerprint_message(one) != fp.fingerprint_message(other)


def test_provenance_records_stage_config_and_inputs() -> None:
    config = training_pb2.TrainingRecipe(max_length=64)
    prov = fp.provenance("llmft.train_cpt", "1.2.3", config, ["sha256:aa", "sha256:bb"])
    assert prov.stage == "llmft.train_cpt"
    assert prov.stage_version == "1.2.3"
    assert prov.config_fingerprint == fp.fingerprint_message(config)
    assert list(prov.input_fingerprints) == ["sha256:aa", "sha256:bb"]
    assert fp.short("sha256:0123456789abcdef") == "0123456789ab"


def _package(root: Path, name: str, module: str, data: str = "{}") -> str:
    """A package `name` under `root` (on sys.path) with one module and one data file; its import name."""
    folder = root / name
    (folder / "__pycache__").mkdir(parents=True)
    (folder / "__init__.py").write_text('"""A package."""\n')
    (folder / "work.py").write_text(module)
    (folder / "settings.json").write_text(data)
    (folder / "__pycache__" / "work.cpython-311.pyc").write_bytes(root.name.encode())  # differs per copy
    return name


MODULE = '''def scale(values, factor):
    """Scales the values."""
    return [value * factor for value in values]
'''


REFLOWED = "[\n        value * factor\n        for value in values\n    ]"


def test_source_digest_follows_code_not_comments_or_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    variants = {
        "same": (MODULE, "{}"),
        "commented": ("# why it scales\n" + MODULE.replace("    return", "    # the factor\n    return"), "{}"),
        "reflowed": (MODULE.replace("[value * factor for value in values]", REFLOWED), "{}"),
        "body": (MODULE.replace("value * factor", "value * factor + 1"), "{}"),
        "name": (MODULE.replace("factor", "weight"), "{}"),
        "data": (MODULE, '{"x": 1}'),
    }
    digests = {}
    for i, (label, (module, data)) in enumerate({"original": (MODULE, "{}"), **variants}.items()):
        root = tmp_path / f"root{i}"
        monkeypatch.syspath_prepend(str(root))
        name = _package(root, f"digestpkg{i}", module, data)
        digests[label] = fp.source_digest(name)
        sys.modules.pop(name, None)
    # The same code under another folder (and other bytecode) and code with comments or another layout: one digest.
    assert digests["same"] == digests["commented"] == digests["reflowed"] == digests["original"]
    # A changed function body, a renamed variable, a changed data file: each a digest of its own.
    assert len({digests["original"], digests["body"], digests["name"], digests["data"]}) == 4


def test_source_digest_refuses_unparsable_code_and_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    name = _package(tmp_path, "brokenpkg", "def broken(:\n")
    with pytest.raises(ValueError, match=r"work\.py: cannot fingerprint code that does not parse"):
        fp.source_digest(name)
    (tmp_path / "plainmodule.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="plainmodule.*not an importable package"):
        fp.source_digest("plainmodule")


def test_cache_version_changes_with_the_code_digest() -> None:
    pins = {"torch": "2.13.0"}
    one = fp.cache_version("llmft-x", "1.0.0", pins, {"llmft.x": "sha256:aa"})
    assert one == fp.cache_version("llmft-x", "1.0.0", pins, {"llmft.x": "sha256:aa"})
    assert one != fp.cache_version("llmft-x", "1.0.0", pins, {"llmft.x": "sha256:bb"})
    assert one.startswith("llmft-x-1.0.0-")
