"""Contract checks across every proto: artifact messages carry a fingerprint and provenance, requests and reports
round-trip through flytekit's protobuf transformer (how they cross task boundaries), and zero values are explicit."""

from typing import Any

import pytest
from google.protobuf import descriptor

from llmft.proto.common.v1 import provenance_pb2
from llmft.proto.data.v1 import dataset_pb2
from llmft.proto.rlhf.v1 import rlhf_pb2
from llmft.proto.serve.v1 import serve_pb2
from llmft.proto.training.v1 import training_pb2

MODULES = [provenance_pb2, dataset_pb2, training_pb2, rlhf_pb2, serve_pb2]

# Messages that describe a produced artifact: each needs its own content fingerprint and provenance.
ARTIFACTS = [
    dataset_pb2.DatasetManifest,
    training_pb2.ModelArtifact,
    serve_pb2.BatchInferenceResult,
]
# Reports wrap an artifact message.
REPORTS = {
    rlhf_pb2.RewardModelReport: "reward_model",
    rlhf_pb2.PpoReport: "policy",
    rlhf_pb2.DpoReport: "policy",
}


def all_messages() -> list[descriptor.Descriptor]:
    out = []
    for module in MODULES:
        out.extend(module.DESCRIPTOR.message_types_by_name.values())
    return out


@pytest.mark.parametrize("message", ARTIFACTS, ids=lambda m: m.DESCRIPTOR.full_name)
def test_artifacts_carry_fingerprint_and_provenance(message: Any) -> None:
    fields = message.DESCRIPTOR.fields_by_name
    assert fields["fingerprint"].type == descriptor.FieldDescriptor.TYPE_STRING
    assert fields["provenance"].message_type.full_name == "llmft.proto.common.v1.Provenance"


@pytest.mark.parametrize(("report", "field"), REPORTS.items(), ids=lambda x: getattr(x, "__name__", x))
def test_reports_wrap_a_model_artifact(report: Any, field: str) -> None:
    assert report.DESCRIPTOR.fields_by_name[field].message_type.full_name == "llmft.proto.training.v1.ModelArtifact"


def test_every_enum_starts_with_unspecified() -> None:
    for module in MODULES:
        for enum in module.DESCRIPTOR.enum_types_by_name.values():
            assert enum.values[0].number == 0 and enum.values[0].name.endswith("_UNSPECIFIED"), enum.full_name


def test_messages_hold_no_timestamps_so_caches_stay_valid() -> None:
    for message in all_messages():
        for field in message.fields:
            assert not (
                field.message_type and field.message_type.full_name == "google.protobuf.Timestamp"
            ), f"{message.full_name}.{field.name}"


def test_messages_round_trip_through_flytekit() -> None:
    from flytekit.core.context_manager import FlyteContextManager
    from flytekit.core.type_engine import TypeEngine

    request = training_pb2.TrainingRequest(
        base_model="llmft/tiny-llama",
        recipe=training_pb2.TrainingRecipe(
            method=training_pb2.TRAINING_METHOD_QLORA,
            lora=training_pb2.LoraConfig(rank=8, target_modules=["q_proj", "v_proj"]),
            schedule=training_pb2.Schedule(learning_rate=1e-4, max_steps=10),
            seed=2**40,
        ),
    )
    manifest = dataset_pb2.DatasetManifest(
        name="x", fingerprint="sha256:ab", splits=[dataset_pb2.SplitStats(rows=2**33)]
    )
    ctx = FlyteContextManager.current_context()
    for value in (request, manifest):
        literal_type = TypeEngine.to_literal_type(type(value))
        literal = TypeEngine.to_literal(ctx, value, type(value), literal_type)
        assert TypeEngine.to_python_value(ctx, literal, type(value)) == value
