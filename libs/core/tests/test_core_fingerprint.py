from pathlib import Path

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
