"""The committed generated protobuf code matches a fresh generation from the .proto files."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "proto"))

import generate  # noqa: E402  (proto/generate.py, importable once proto/ is on the path)


def test_generated_code_is_up_to_date() -> None:
    assert generate.stale_files(ROOT / "proto") == []


def test_a_changed_proto_is_detected(tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "proto"
    shutil.copytree(ROOT / "proto" / "llmft", copy / "llmft")
    proto = copy / "llmft/proto/serve/v1/serve.proto"
    proto.write_text(proto.read_text().replace("message Usage {", "message Usage {\n  uint32 cached_tokens = 3;"))
    assert generate.stale_files(copy) == [
        "differs: llmft/proto/serve/v1/serve_pb2.py",
        "differs: llmft/proto/serve/v1/serve_pb2.pyi",
    ]
