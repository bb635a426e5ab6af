"""The workflows run end to end under flytekit's local execution on tiny inputs: real tasks, real (short) training,
protobuf messages between tasks, Flyte directories for the blobs."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from llmft.core.datasets import read_manifest
from llmft.orchestration.defaults import CHAT, CORPUS, CPT, SFT
from llmft.orchestration.skeleton import skeleton_workflow
from llmft.proto.data.v1 import dataset_pb2 as D
from llmft.proto.serve.v1 import serve_pb2 as S
from llmft.proto.training.v1 import training_pb2 as T
from llmft.testing import arithmetic_conversation, synthetic_code


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMFT_CACHE", str(tmp_path / "llmft-cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # a fresh ~/.flyte local cache
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def small_inputs(tmp_path: Path) -> tuple[D.DatasetRequest, D.DatasetRequest]:
    import random

    rng = random.Random(0)
    code = tmp_path / "code"
    code.mkdir()
    for i in range(60):
        (code / f"m{i}.py").write_text(synthetic_code(i, rng))
    (tmp_path / "chat.jsonl").write_text(
        "".join(json.dumps({"messages": arithmetic_conversation(a, b)}) + "\n" for a in range(10) for b in range(6))
    )
    corpus = D.DatasetRequest()
    corpus.CopyFrom(CORPUS)
    corpus.ClearField("sources")
    corpus.sources.add(local=D.LocalSource(patterns=[str(code)]))
    corpus.cleaning.min_chars = 10
    chat = D.DatasetRequest()
    chat.CopyFrom(CHAT)
    chat.ClearField("sources")
    chat.sources.add(local=D.LocalSource(patterns=[str(tmp_path / "chat.jsonl")]))
    return corpus, chat


def short(request: T.TrainingRequest, steps: int) -> T.TrainingRequest:
    out = T.TrainingRequest()
    out.CopyFrom(request)
    out.recipe.max_length = 64
    out.recipe.schedule.max_steps = steps
    out.recipe.schedule.learning_rate = 3e-3
    return out


def test_skeleton_runs_end_to_end_and_sft_lowers_held_out_loss(tmp_path: Path) -> None:
    corpus, chat = small_inputs(tmp_path)
    workflow = skeleton_workflow(corpus, chat, short(CPT, 10), short(SFT, 12))
    out = workflow()
    assert out.corpus.kind == D.DATASET_KIND_RAW_TEXT and out.chat.kind == D.DATASET_KIND_CHAT
    assert out.cpt.metrics.eval_after.loss < out.cpt.metrics.eval_before.loss
    assert out.sft.metrics.eval_after.loss < out.sft.metrics.eval_before.loss
    assert out.sft.base_model.startswith("llmft/tiny-llama+llmft.train_cpt@")
    assert out.sft.base_model.endswith(out.cpt.fingerprint.removeprefix("sha256:")[:12])
    assert out.chat.fingerprint in out.sft.provenance.input_fingerprints
    assert "SFT" in out.summary and f"{out.sft.metrics.eval_after.loss:.4f}" in out.summary
    model_dir = Path(out.model.download())
    assert (model_dir / "model.safetensors").is_file() and (model_dir / "chat_template.jinja").is_file()


def test_batch_inference_maps_over_shards_and_writes_nothing_into_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flytekit.types.directory import FlyteDirectory

    from llmft.core.models import resolve_model_dir
    from llmft.orchestration.batch import batch_inference
    from llmft.testing import write_prompt_dataset

    data = write_prompt_dataset(tmp_path / "prompts", rows=5)
    model = resolve_model_dir("llmft/tiny-llama").directory
    request = S.BatchInferenceRequest(shards=2, batch_size=2, generation=S.GenerationConfig(max_new_tokens=4))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out = batch_inference(
        request=request, dataset=read_manifest(data), data=FlyteDirectory(str(data)), model=FlyteDirectory(str(model))
    )
    assert out.result.prompts == 5
    answers = out.answers if isinstance(out.answers, pd.DataFrame) else out.answers.open(pd.DataFrame).all()
    assert sorted(answers["id"]) == sorted(pd.read_parquet(data / "train.parquet")["id"])
    assert list(cwd.iterdir()) == []  # shards went under the tasks' working directory


def test_a_sharded_dataset_maps_over_three_shards_and_equals_the_one_process_build(tmp_path: Path) -> None:
    """llmft.orchestration.corpus: plan, a cached map task over 3 shards, the merge deduplicating across them."""
    import random

    from llmft.data.build import build_dataset
    from llmft.orchestration.corpus import sharded_dataset

    rng = random.Random(1)
    docs = [
        " ".join(rng.choice(["task", "node", "cache", "image", "deck", "plan"]) for _ in range(30)) for _ in range(90)
    ]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs[:60]))
    # The second file repeats 5 documents of the first and has near copies of 4 more.
    second = docs[60:] + docs[:5] + [d + " again" for d in docs[10:14]]
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in second))
    request = D.DatasetRequest(
        name="corpus",
        kind=D.DATASET_KIND_RAW_TEXT,
        sources=[D.DatasetSource(local=D.LocalSource(patterns=[str(tmp_path / "*.jsonl")]), format="jsonl")],
        cleaning=D.CleaningConfig(normalize=True, deduplicate_exact=True, near_duplicate_threshold=0.7),
        split=D.SplitConfig(eval_fraction=0.2),
    )
    out = sharded_dataset(request=request, shards=3)
    removed = {c.step: c.rows_removed for c in out.manifest.cleaning if c.rows_removed}
    assert removed == {"deduplicate_exact": 5, "deduplicate_near": 4}
    one, _ = build_dataset(request, tmp_path / "one")
    assert out.manifest.fingerprint == one.fingerprint
    assert sum(len(pd.read_parquet(Path(out.data.path) / f"{s}.parquet")) for s in ("train", "eval")) == 90


def test_training_tasks_are_elastic_with_images_resources_and_retries() -> None:
    from flytekitplugins.kfpytorch import Elastic

    from llmft.rlhf.tasks import dpo, reward_model
    from llmft.train_cpt.tasks import train as cpt
    from llmft.train_sft.tasks import train as sft

    for task in (cpt, sft, reward_model, dpo):
        assert isinstance(task.task_config, Elastic), task.name
        assert task.task_config.nnodes == 1 and task.task_config.nproc_per_node >= 1
        assert task.metadata.retries >= 1 and task.metadata.cache
        assert task.resources.requests.cpu and task.resources.requests.mem
        assert task.container_image.name.startswith("llmft-")


def test_requested_resources_accelerator_and_launch_are_compiled() -> None:
    from collections import OrderedDict

    from flytekit.configuration import ImageConfig, SerializationSettings
    from flytekit.tools.translator import get_serializable
    from google.protobuf import json_format

    from llmft.proto.common.v1 import provenance_pb2 as C
    from llmft.train_cpt.tasks import train

    cpt = T.TrainingRequest()
    cpt.CopyFrom(CPT)
    cpt.resources.CopyFrom(C.ComputeResources(cpu="8", memory="64Gi", gpu=4, accelerator="nvidia-h100"))
    cpt.distributed.CopyFrom(T.DistributedConfig(nnodes=2, nproc_per_node=4))
    workflow = skeleton_workflow(CORPUS, CHAT, cpt, SFT)
    settings = SerializationSettings(image_config=ImageConfig.auto_default_image())
    entities: OrderedDict = OrderedDict()
    spec = get_serializable(entities, settings, workflow)
    trained = [n for n in spec.template.nodes if n.task_node and "train_cpt" in n.task_node.reference_id.name]
    assert len(trained) == 1 and trained[0].task_node.reference_id.name == "llmft.train_cpt.tasks.train_2x4"
    overrides = json_format.MessageToDict(trained[0].task_node.overrides.to_flyte_idl())
    requests = {r["name"]: r["value"] for r in overrides["resources"]["requests"]}
    assert requests == {"CPU": "8", "MEMORY": "64Gi", "GPU": "4"}
    assert overrides["extendedResources"]["gpuAccelerator"]["device"] == "nvidia-h100"
    job = next(e for e in entities.values() if getattr(e, "template", None) is not None
               and e.template.id.name == "llmft.train_cpt.tasks.train_2x4").template  # fmt: skip
    assert job.type == "pytorch" and job.custom["workerReplicas"]["replicas"] == 2
    assert job.custom["elasticConfig"]["nprocPerNode"] == 4
    assert train.task_config.nnodes == 1 and train.task_config.nproc_per_node == 1  # the module's task is unchanged


def test_elastic_training_task_runs_two_local_processes(tmp_path: Path) -> None:
    from flytekit import workflow
    from flytekit.types.directory import FlyteDirectory

    from llmft.core.datasets import read_manifest
    from llmft.flyte.training import training_node
    from llmft.testing import write_text_dataset
    from llmft.train_cpt.tasks import train

    data = write_text_dataset(tmp_path / "data", train_docs=80)
    request = short(CPT, 4)
    request.distributed.CopyFrom(T.DistributedConfig(nnodes=1, nproc_per_node=2))
    request.recipe.schedule.per_device_batch_size = 4

    @workflow
    def elastic() -> T.ModelArtifact:
        return training_node(train, request)(
            request=request, dataset=read_manifest(data), data=FlyteDirectory(str(data))
        ).artifact

    artifact = elastic()
    assert train.task_config.nproc_per_node == 1
    assert artifact.metrics.steps == 4
    assert artifact.metrics.train_tokens == 4 * 2 * 4 * 64  # steps x processes x batch x length


def test_batch_workflow_starts_with_pyflyte_run(tmp_path: Path) -> None:
    """What a user types: `pyflyte run ... batch --model DIR --prompts DIR`; the answers and a Deck come back."""
    import os
    import subprocess
    import sys

    from llmft.core.models import resolve_model_dir
    from llmft.testing import write_prompt_dataset

    data = write_prompt_dataset(tmp_path / "prompts", rows=6)
    model = resolve_model_dir("llmft/tiny-llama").directory
    workflow = Path(__file__).parents[1] / "src" / "llmft" / "orchestration" / "batch.py"
    run = subprocess.run(
        [sys.executable, "-m", "flytekit.clis.sdk_in_container.pyflyte", "run", "--raw-output-data-prefix",
         str(tmp_path / "blobs"), str(workflow), "batch", "--model", str(model), "--prompts", str(data),
         "--shards", "2", "--max_new_tokens", "4"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
        # Run from tmp_path (nothing lands in the checkout), with this process's import path made absolute.
        env={
            **os.environ,
            "FLYTE_SDK_LOGGING_LEVEL": "20",
            "PYTHONPATH": os.pathsep.join(os.path.abspath(entry) for entry in sys.path if entry),
        },
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "prompts: 6" in run.stdout
    logs = run.stdout + run.stderr
    start = logs.find("merge_answers task creates flyte deck")
    assert start >= 0, logs[-2000:]
    unwrapped = "".join(line.strip() for line in logs[start : start + 800].splitlines())  # rich wraps log lines
    deck = re.search(r"file://(\S+?deck\.html)", unwrapped)
    assert deck, unwrapped
    assert "Batch inference" in Path(deck.group(1)).read_text(encoding="utf-8")


def test_shards_cross_tasks_hashed_on_their_content(tmp_path: Path) -> None:
    """The map task's cache key of a shard is its content, wherever the file was written: a rerun of a stopped
    batch (on a cluster, where Flyte caches each subtask) answers only the shards that had not finished."""
    from flytekit.core.context_manager import FlyteContextManager
    from flytekit.core.type_engine import TypeEngine
    from flytekit.types.file import FlyteFile

    from llmft.core import fingerprint as fp
    from llmft.serve.tasks import CACHE_VERSION, ShardFile, answer

    hashes = []
    for folder in ("a", "b"):
        path = tmp_path / folder / "shard-x.parquet"
        path.parent.mkdir()
        pd.DataFrame({"id": ["1"], "prompt": ["hi"]}).to_parquet(path, index=False)
        ctx = FlyteContextManager.current_context()
        literal = TypeEngine.to_literal(ctx, FlyteFile(str(path)), ShardFile, TypeEngine.to_literal_type(ShardFile))
        hashes.append(literal.hash)
    assert hashes[0] == hashes[1] == fp.fingerprint_file(tmp_path / "a" / "shard-x.parquet")
    assert answer.metadata.cache and answer.metadata.cache_version == CACHE_VERSION
