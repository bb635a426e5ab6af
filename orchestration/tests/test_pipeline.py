"""The whole pipeline from a user's config, run here the way `python -m llmft.orchestration run` runs it: outputs
under runs/<name>/, and caches that survive reruns (a rerun with nothing changed runs no cached step; one changed
SFT row reruns exactly what depends on it)."""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmft.orchestration.config import lineage, load_config
from llmft.orchestration.pipeline import EXAMPLES

STEPS = {"cpt": 4, "sft": 6, "reward_model": 4, "ppo": 2, "dpo": 4}


def example_config(name: str) -> Path:
    return Path(EXAMPLES) / name


def documented_module(index: int) -> str:
    """A Python file with documented functions and a class: what `python_docstrings` turns into chat and pairs."""
    functions = "".join(
        f'def compute_{index}_{j}(value):\n    """Computes the {j}th transform of a value for module {index}."""\n'
        f"    return value + {j}\n\n\n"
        for j in range(4)
    )
    return functions + (
        f'class Holder{index}:\n    """Holds values of module {index} between the steps."""\n\n'
        '    def read(self):\n        """Reads the held value back out of the holder."""\n        return 1\n'
    )


def write_config(tmp_path: Path) -> Path:
    code, corpus = tmp_path / "code", tmp_path / "corpus"
    code.mkdir(exist_ok=True)
    corpus.mkdir(exist_ok=True)
    for i in range(12):
        (code / f"mod{i}.py").write_text(documented_module(i))
        (corpus / f"lib{i}.py").write_text(documented_module(100 + i))
    source = [{"local": {"patterns": [str(code)]}, "format": "python_docstrings"}]
    recipe = {"max_length": 160, "seed": 0, "checkpoint": {"save_steps": 2, "save_total_limit": 1}}

    def training(stage: str) -> dict:
        section: dict[str, Any] = {"recipe": {**recipe, "schedule": {"max_steps": STEPS[stage], "learning_rate": 0.001,
                                                     "per_device_batch_size": 4}}}  # fmt: skip
        if stage == "ppo":
            section["ppo"] = {"response_length": 8, "eval_prompts": 4}
        return section

    config: dict[str, Any] = {
        "name": "small",
        "base_model": "llmft/tiny-llama",
        "corpus": {"sources": [{"local": {"patterns": [str(corpus)]}, "format": "text"}], "max_tokens": 64,
                   "cleaning": {"min_chars": 10}, "split": {"eval_fraction": 0.2}},  # fmt: skip
        "chat": {"sources": source, "split": {"eval_fraction": 0.2}},
        "preferences": {"sources": source, "split": {"eval_fraction": 0.2}},
        **{stage: training(stage) for stage in STEPS},
        # No gate metrics: every run publishes (a dry run), so a rerun publishes again over the first.
        "evaluation": {"answers": {"max_new_tokens": 8, "questions": 4}},
        "publish": {"model_repo_id": "me/small", "space_repo_id": "me/small-chat", "local_dir": str(tmp_path / "hub")},
        "space": {"title": "small"},
        # Every optional section: resources are requests to a cluster, and no cache key.
        "data_resources": {"cpu": "1", "memory": "2Gi"},
        "serve_resources": {"cpu": "1", "memory": "2Gi"},
    }
    config["evaluation"]["resources"] = {"cpu": "2", "memory": "4Gi"}
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class CacheLog:
    """What the local cache saw: tasks that ran (a miss writes an entry) and tasks served from it (a hit)."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.hits: list[str] = []
        self.plan: dict[str, str] = {}  # what `--check` said before the last run

    def clear(self) -> None:
        self.ran.clear()
        self.hits.clear()


@pytest.fixture
def cache_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CacheLog:
    """A fresh ~/.flyte/local-cache, watched."""
    from flytekit.core.local_cache import LocalTaskCache

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LLMFT_CACHE", str(tmp_path / "llmft-cache"))
    monkeypatch.setattr(LocalTaskCache, "_initialized", False)
    log = CacheLog()
    original_get, original_set = LocalTaskCache.get, LocalTaskCache.set

    def get(task_name, *args, **kwargs):  # type: ignore[no-untyped-def]
        found = original_get(task_name, *args, **kwargs)
        if found is not None:
            log.hits.append(task_name.removeprefix("llmft."))
        return found

    def set_(task_name, *args, **kwargs):  # type: ignore[no-untyped-def]
        log.ran.append(task_name.removeprefix("llmft."))
        return original_set(task_name, *args, **kwargs)

    monkeypatch.setattr(LocalTaskCache, "get", staticmethod(get))
    monkeypatch.setattr(LocalTaskCache, "set", staticmethod(set_))
    return log


CACHED = {
    "data.tasks.prepare_raw_text",
    "data.tasks.prepare_chat",
    "data.tasks.prepare_preference",
    "train_cpt.tasks.train",
    "train_sft.tasks.train",
    "rlhf.tasks.reward_model",
    "rlhf.tasks.ppo",
    "rlhf.tasks.dpo",
    "serve.tasks.evaluate_answers",
    "serve.tasks.space_folder",
}


def printed_plan(out: str) -> dict[str, str]:
    """`--check`'s table as {task: what it says the run will do}: cached, runs, after (decided by the steps before)."""
    from llmft.orchestration.plan import STEPS

    plan = {}
    for line in out.splitlines():
        task = next((word for word in line.split() if word in STEPS), None)
        if task is None:
            continue
        said = line.split(task, 1)[1]
        plan[task] = (
            "cached" if "from the cache" in said else "after" if " after " in said else "if" if " if " in said
            else "skipped" if "skipped" in said else "runs"
        )  # fmt: skip
    return plan


def files_under(folder: Path) -> set[Path]:
    return set(folder.rglob("*")) if folder.exists() else set()


def run(config: Path, runs: Path, capsys: pytest.CaptureFixture[str], cache_log: CacheLog | None = None) -> str:
    """Runs the pipeline of `config` as the CLI does. With `cache_log`, `--check` first: it writes nothing under
    `runs`, and its plan is what the run then does (each cached step it says comes from the cache does, each it says
    runs does, and only a step it says waits on another may go either way)."""
    from llmft.orchestration.local import main
    from llmft.orchestration.pipeline import pipeline_workflow

    args = ["run", "--config", str(config), "--runs-dir", str(runs)]
    plan: dict[str, str] = {}
    if cache_log is not None:
        before = files_under(runs)
        assert main(pipeline_workflow, [*args, "--check"]) == 0
        plan = cache_log.plan = printed_plan(capsys.readouterr().out)
        assert files_under(runs) == before
        cache_log.clear()
    assert main(pipeline_workflow, args) == 0
    if cache_log is not None:
        cached = {task for task in plan if task in CACHED | {"rlhf.tasks.evaluate"}}  # (the policy comparison, when on)
        said = {what: {t for t in cached if plan[t] == what} for what in ("cached", "runs", "after")}
        assert said["cached"] <= set(cache_log.hits) <= said["cached"] | said["after"], plan
        assert said["runs"] <= set(cache_log.ran) <= said["runs"] | said["after"], (plan, cache_log.ran, cache_log.hits)
        assert set(plan) >= CACHED | {"orchestration.report.pipeline_report"}
    return capsys.readouterr().out


def test_the_pipeline_runs_from_a_config_caches_and_reruns_only_what_changed(
    tmp_path: Path, cache_log: CacheLog, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, runs = write_config(tmp_path), tmp_path / "runs"
    # A Hub token in the environment and as the Flyte secret, as a user who publishes has them.
    token = "hf_PipelineRunToken0123456789abcdef"
    monkeypatch.setenv("HF_TOKEN", token)
    monkeypatch.setenv("_FSEC_HUGGINGFACE_TOKEN", token)
    out = run(config, runs, capsys, cache_log)
    assert set(cache_log.ran) == CACHED and cache_log.hits == []
    # It reaches nothing the run leaves: not the output, a Deck, the report, the card, the Space, a log, the cache.
    assert token not in out
    leaks = [path for path in tmp_path.rglob("*") if path.is_file() and token.encode() in path.read_bytes()]
    assert leaks == []
    run_dir = runs / "small"
    assert (run_dir / "model" / "model.safetensors").is_file() and (run_dir / "space" / "app.py").is_file()
    space_config = json.loads((run_dir / "space" / "space_config.json").read_text())
    assert space_config["model"] == str((run_dir / "model").resolve())  # `python app.py` there serves this run's model
    assert (run_dir / "report.json").is_file() and (run_dir / "decks" / "pipeline_report.html").is_file()
    assert str(run_dir / "space") in out and "python app.py" in out
    assert (tmp_path / "hub" / "model" / "model.safetensors").is_file() and "published" in out
    stages = {s["name"] for s in json.loads((run_dir / "report.json").read_text())["stages"]}
    assert {"data:corpus", "data:chat", "data:preferences", "cpt", "sft", "reward_model", "ppo", "dpo"} <= stages

    cache_log.clear()
    run(config, runs, capsys, cache_log)
    assert cache_log.ran == [] and set(cache_log.hits) == CACHED  # nothing changed: every cached step hits
    assert {task for task, said in cache_log.plan.items() if said == "cached"} == CACHED  # and the plan knew it

    # Cosmetic changes: the run renamed, a stage's run name and resources changed: every cached step hits.
    cosmetic = yaml.safe_load(config.read_text())
    cosmetic["name"] = "renamed"
    cosmetic["sft"]["run_name"] = "another-name"
    cosmetic["sft"]["resources"] = {"cpu": "3", "memory": "5Gi"}
    cosmetic["ppo"]["resources"] = {"cpu": "1"}
    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(yaml.safe_dump(cosmetic))
    cache_log.clear()
    run(renamed, runs, capsys, cache_log)
    assert cache_log.ran == [] and set(cache_log.hits) == CACHED
    assert (runs / "renamed" / "report.json").is_file()

    # Code: a copy of the SFT stage's package stands in for it. Comments are not code: every step hits. An edit to the
    # task's function body (one that changes what it trains) reruns SFT and what starts from its model, and nothing
    # before it. (Downstream steps key on the model's content: an edit that trains the same weights reruns SFT only.)
    import llmft.train_sft
    import llmft.train_sft.tasks

    def sft_code(name: str, edit: Any) -> None:
        copy = tmp_path / name / "train_sft"
        shutil.copytree(Path(llmft.train_sft.__path__[0]), copy, ignore=shutil.ignore_patterns("__pycache__"))
        tasks = copy / "tasks.py"
        tasks.write_text(edit(tasks.read_text()))
        llmft.train_sft.__path__ = [str(copy)]
        importlib.reload(llmft.train_sft.tasks)

    original_path = list(llmft.train_sft.__path__)
    body = "    return train_in_task(train_sft,"
    try:
        sft_code("commented", lambda text: "# a comment\n\n" + text.replace(body, "    # why\n" + body))
        cache_log.clear()
        run(config, runs, capsys, cache_log)
        assert cache_log.ran == [] and set(cache_log.hits) == CACHED

        sft_code("edited", lambda text: text.replace(body, "    request.recipe.seed += 1\n" + body))
        cache_log.clear()
        run(config, runs, capsys, cache_log)
        after_sft = {"rlhf.tasks.reward_model", "rlhf.tasks.ppo", "rlhf.tasks.dpo", "serve.tasks.evaluate_answers"}
        assert {"train_sft.tasks.train", *after_sft} <= set(cache_log.ran)
        assert cache_log.plan["train_sft.tasks.train"] == "runs" and cache_log.plan["train_cpt.tasks.train"] == "cached"
        assert {cache_log.plan[task] for task in after_sft} == {"after"}
        before_sft = {"data.tasks.prepare_raw_text", "data.tasks.prepare_chat", "train_cpt.tasks.train"}
        assert before_sft <= set(cache_log.hits) and not before_sft & set(cache_log.ran)
    finally:
        llmft.train_sft.__path__ = original_path
        importlib.reload(llmft.train_sft.tasks)

    module = tmp_path / "code" / "mod0.py"
    module.write_text(module.read_text().replace("1th transform", "first transform"))  # one chat row changes
    cache_log.clear()
    run(config, runs, capsys, cache_log)
    # SFT data, SFT, the reward model and DPO (both start from SFT), the evaluation and the Space folder (its inputs
    # are the SFT model and its answers) rerun; CPT does not. The changed row is in the train split: its content, and
    # with it its split, no longer depends on where the test's files sit (the module is `mod0`, not the tmp path).
    assert set(cache_log.hits) == {"data.tasks.prepare_raw_text", "train_cpt.tasks.train"}
    assert set(cache_log.ran) == {
        "data.tasks.prepare_chat",
        "data.tasks.prepare_preference",
        "train_sft.tasks.train",
        "rlhf.tasks.reward_model",
        "rlhf.tasks.ppo",
        "rlhf.tasks.dpo",
        "serve.tasks.evaluate_answers",
        "serve.tasks.space_folder",
    }

    # A new serve release (its version only) reruns only serving; its cache version is derived from it.
    import llmft.serve
    import llmft.serve.tasks

    released = llmft.serve.__version__
    try:
        llmft.serve.__version__ = "99.0.0"
        importlib.reload(llmft.serve.tasks)
        cache_log.clear()
        run(config, runs, capsys, cache_log)
        assert set(cache_log.ran) == {"serve.tasks.evaluate_answers", "serve.tasks.space_folder"}
    finally:
        llmft.serve.__version__ = released
        importlib.reload(llmft.serve.tasks)

    # CPT's cached model folder disappears: the entry is dropped and CPT trains again instead of a crash.
    from llmft.core.training import read_artifact

    models = [p.parent for p in (runs / ".flyte" / "work").rglob("model.safetensors")]
    cpt = [m for m in models if (a := read_artifact(m)) is not None and a.provenance.stage == "llmft.train_cpt"]
    assert cpt
    for folder in cpt:
        shutil.rmtree(folder)
    cache_log.clear()
    out = run(config, runs, capsys, cache_log)
    assert "lost their outputs and will run again" in out
    assert cache_log.plan["train_cpt.tasks.train"] == "runs"  # `--check` saw the outputs gone, and pruned nothing
    assert "train_cpt.tasks.train" in cache_log.ran and "data.tasks.prepare_raw_text" in cache_log.hits

    # The gate picks among SFT, PPO and DPO, and holds the pick back when it does not beat the runner-up and SFT by
    # the margin (0.99: no model of 4 steps does): nothing is published, and the report says why. No training reruns.
    picking = yaml.safe_load(config.read_text())
    picking["evaluation"] = {
        "answers": {"max_new_tokens": 8, "questions": 4},
        "policies": {"max_new_tokens": 8, "prompts": 4},
        "candidate": "best",
        "selection": {"min_margin": 0.99},
    }
    picking["publish"]["local_dir"] = str(tmp_path / "hub-picked")
    config.write_text(yaml.safe_dump(picking))
    cache_log.clear()
    out = run(config, runs, capsys, cache_log)
    assert not {"train_cpt.tasks.train", "train_sft.tasks.train", "rlhf.tasks.ppo", "rlhf.tasks.dpo"} & set(
        cache_log.ran
    )
    report = json.loads((run_dir / "report.json").read_text())
    gate = report["gate"]
    assert not gate.get("passed") and [c["name"] for c in gate["ranking"]][0] == report["candidate"]
    assert sorted(c["name"] for c in gate["ranking"]) == ["dpo", "ppo", "sft"]
    assert all("correct" in c["metrics"] and "mean_reward" in c["metrics"] for c in gate["ranking"])
    assert "by more than 0.99: publishing held back" in gate["reason"] and gate["reason"] in out
    assert not (tmp_path / "hub-picked").exists() and "\npublished:" not in out


def test_the_shipped_examples_are_valid_configs() -> None:
    shipped = ("demo.yaml", "redpajama-qlora.yaml", "cluster-multinode.yaml", "smollm2.yaml", "smollm2-qlora.yaml")
    assert sorted(p.name for p in example_config("demo.yaml").parent.glob("*.yaml")) == sorted(shipped)
    for name in shipped:
        assert load_config(example_config(name)).name
    smollm2 = load_config(example_config("smollm2.yaml"))
    assert {smollm2.sft.base_model, smollm2.chat.tokenizer} == {"smollm2-135m-instruct"}  # the packaged real model
    assert [s for s in ("sft", "reward_model", "ppo", "dpo") if smollm2.HasField(s)] == [
        "sft",
        "reward_model",
        "ppo",
        "dpo",
    ]
    assert smollm2.evaluation.answers.general_questions and smollm2.evaluation.baseline == "base"
    selection = smollm2.evaluation.selection  # the gate picks among the three policies, keeping general knowledge
    assert smollm2.evaluation.candidate == "best" and list(selection.contenders) == ["sft", "ppo", "dpo"]
    assert list(selection.rank_by) == ["first_sentence_match", "general_match"]
    demo = load_config(example_config("demo.yaml"))
    assert lineage(demo, "dpo") == ["cpt", "sft"] and lineage(demo, "cpt") == []  # the model card's lineage


def pyflyte_package(tmp_path: Path, config: Path) -> tuple[Path, Any]:
    """Runs `pyflyte package` of llmft.orchestration with the pipeline built from `config`; the archive's path and
    the finished process."""
    import os
    import subprocess
    import sys

    archive = tmp_path / f"{config.stem}.tgz"
    env = {**os.environ, "LLMFT_PIPELINE_CONFIG": str(config), "HOME": str(tmp_path / "home")}
    env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(entry) for entry in sys.path if entry)
    run = subprocess.run(
        [sys.executable, "-m", "flytekit.clis.sdk_in_container.pyflyte", "--pkgs", "llmft.orchestration", "package",
         "--copy", "none", "--image", "ghcr.io/llmft/llmft:test", "-o", str(archive)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return archive, run


def packaged(tmp_path: Path, config: Path) -> Path:
    """The archive a cluster registers: `pyflyte package` of the pipeline built from `config`."""
    archive, run = pyflyte_package(tmp_path, config)
    assert run.returncode == 0, run.stderr[-3000:]
    return archive


def test_a_bad_config_fails_pyflyte_package_naming_the_field_and_writes_no_archive(tmp_path: Path) -> None:
    """The cluster path: the compiled pipeline is built from $LLMFT_PIPELINE_CONFIG at import, through the same
    check as a local run, so a config a pod would trip over fails at packaging (and so at registration)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(example_config("demo.yaml").read_text().replace("memory: 8Gi", 'memory: "8"', 1))
    archive, run = pyflyte_package(tmp_path, bad)
    assert run.returncode != 0 and not archive.exists()
    assert "resources.memory: '8' is 8 bytes to Kubernetes, under 1Mi" in run.stdout + run.stderr


def compiled(tmp_path: Path, config: Path) -> tuple[dict, list]:
    """The packaged archive's task templates by name, and the nodes of the `configured` workflow."""
    import tarfile

    from flyteidl.admin import task_pb2, workflow_pb2
    from google.protobuf import json_format

    archive = packaged(tmp_path, config)
    tasks: dict = {}
    nodes: list = []
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            data = tar.extractfile(member).read() if member.isfile() else b""  # type: ignore[union-attr]
            if "pipeline.configured" in member.name:  # the workflow (its launch plan shares the name)
                spec = workflow_pb2.WorkflowSpec()
                try:
                    spec.ParseFromString(data)
                except Exception:
                    continue
                nodes = nodes or [json_format.MessageToDict(n) for n in spec.template.nodes]
                continue
            task = task_pb2.TaskSpec()
            try:
                task.ParseFromString(data)
            except Exception:
                continue
            if task.template.id.name:
                tasks[task.template.id.name] = json_format.MessageToDict(task.template)
    return tasks, nodes


def within(nodes: list) -> list:
    """The nodes and, inside each branch node (the gate's conditional), the nodes of its branches."""
    found = []
    for node in nodes:
        found.append(node)
        branch = node.get("branchNode", {}).get("ifElse", {})
        cases = [branch.get("case", {}), *branch.get("other", [])]
        found += within(
            [c["thenNode"] for c in cases if "thenNode" in c] + [branch[k] for k in ("elseNode",) if k in branch]
        )
    return found


def node_overrides(nodes: list, task: str) -> dict:
    node = next(n for n in within(nodes) if n.get("taskNode", {}).get("referenceId", {}).get("name") == task)
    overrides = node["taskNode"].get("overrides", {})
    requests = {r["name"]: r["value"] for r in overrides.get("resources", {}).get("requests", [])}
    accelerator = overrides.get("extendedResources", {}).get("gpuAccelerator", {}).get("device", "")
    return {"requests": requests, "accelerator": accelerator}


def test_the_demo_and_a_multi_node_gpu_config_compile_with_images_resources_and_node_counts(tmp_path: Path) -> None:
    tasks, nodes = compiled(tmp_path, example_config("demo.yaml"))
    for name, image in (("llmft.train_cpt.tasks.train", "llmft-train-cpt"), ("llmft.rlhf.tasks.dpo", "llmft-rlhf")):
        assert tasks[name]["type"] == "python-task" and f"/{image}:" in tasks[name]["container"]["image"]
        assert node_overrides(nodes, name) == {"requests": {"CPU": "2", "MEMORY": "8Gi"}, "accelerator": ""}
    assert "/llmft-serve:" in tasks["llmft.serve.tasks.evaluate_answers"]["container"]["image"]
    assert "/llmft-orchestration:" in tasks["llmft.orchestration.pipeline.run_configured"]["container"]["image"]
    assert node_overrides(nodes, "llmft.data.tasks.prepare_chat") == {"requests": {}, "accelerator": ""}  # its own

    tasks, nodes = compiled(tmp_path, example_config("cluster-multinode.yaml"))
    for name, image in (
        ("llmft.train_sft.tasks.train_2x8", "llmft-train-sft"),
        ("llmft.rlhf.tasks.reward_model_2x8", "llmft-rlhf"),
        ("llmft.rlhf.tasks.dpo_2x8", "llmft-rlhf"),
    ):
        task = tasks[name]
        assert task["type"] == "pytorch" and f"/{image}:" in task["container"]["image"]
        assert task["custom"]["workerReplicas"]["replicas"] == 2
        assert task["custom"]["elasticConfig"]["nprocPerNode"] == 8
        assert "llmft.flyte.training.launched_task_resolver" in task["container"]["args"]
        assert node_overrides(nodes, name) == {
            "requests": {"CPU": "64", "MEMORY": "900Gi", "GPU": "8"},
            "accelerator": "nvidia-h100",
        }
    # The evaluation tasks take the config's evaluation.resources (a 3B model's answers do not fit the defaults).
    for name in ("llmft.serve.tasks.evaluate_answers", "llmft.rlhf.tasks.evaluate"):
        assert node_overrides(nodes, name) == {
            "requests": {"CPU": "8", "MEMORY": "64Gi", "GPU": "1"},
            "accelerator": "nvidia-h100",
        }
    # So do the data tasks (data_resources) and the serving tasks (serve_resources).
    for name in ("acquire_chat", "prepare_chat", "acquire_preference", "prepare_preference"):
        assert node_overrides(nodes, f"llmft.data.tasks.{name}") == {
            "requests": {"CPU": "4", "MEMORY": "16Gi"},
            "accelerator": "",
        }
    for name in ("space_folder", "publish_model"):
        assert node_overrides(nodes, f"llmft.serve.tasks.{name}") == {
            "requests": {"CPU": "2", "MEMORY": "32Gi"},
            "accelerator": "",
        }


def test_launch_plans_register_with_the_demo_request_a_schedule_and_batch_defaults(tmp_path: Path) -> None:
    """The launch plans are in what `pyflyte package` gives a cluster: the demo's with the demo config's complete
    request as its default input, a weekly one with its cron schedule, batch inference with its settings defaulted
    and the model and prompts left to the launch."""
    import tarfile

    from flyteidl.admin import launch_plan_pb2
    from flytekit.models.literals import Literal
    from google.protobuf import json_format

    from llmft.orchestration import launch_plans
    from llmft.proto.pipeline.v1.pipeline_pb2 import PipelineRequest

    archive = packaged(tmp_path, example_config("demo.yaml"))
    plans = {}
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            name = member.name.split("_", 1)[-1].removesuffix("_3.pb")
            if member.name.endswith("_3.pb") and name.startswith("llmft.orchestration.launch_plans."):
                plan = launch_plan_pb2.LaunchPlan()
                plan.ParseFromString(tar.extractfile(member).read())  # type: ignore[union-attr]
                plans[name.removeprefix("llmft.orchestration.launch_plans.")] = plan.spec
    assert set(plans) == {"demo", "demo_weekly", "batch_inference"}
    for name in ("demo", "demo_weekly"):
        plan = plans[name]
        assert plan.workflow_id.name == "llmft.orchestration.pipeline.pipeline_request"
        default = Literal.from_flyte_idl(plan.default_inputs.parameters["request"].default)
        request = PipelineRequest()
        json_format.ParseDict(json_format.MessageToDict(default.scalar.generic), request)
        assert request == load_config(example_config("demo.yaml"))
    assert plans["demo_weekly"].entity_metadata.schedule.cron_schedule.schedule == launch_plans.WEEKLY == "0 3 * * 1"
    assert not plans["demo"].entity_metadata.schedule.HasField("cron_schedule")
    batch = plans["batch_inference"].default_inputs.parameters
    assert batch["model"].required and batch["prompts"].required
    assert batch["shards"].default.scalar.primitive.integer == 8


def test_a_typed_request_is_checked_before_any_stage_and_runs_the_pipeline(tmp_path: Path, cache_log: CacheLog) -> None:
    """`pipeline_request`, the workflow the launch plans start, checks the message it is handed as a config file is
    checked (a stage without its data is refused before any task runs) and runs the stages it names."""
    from llmft.orchestration.config import parse_config
    from llmft.orchestration.pipeline import pipeline_request

    full = yaml.safe_load(write_config(tmp_path).read_text())
    good = parse_config({key: full[key] for key in ("name", "base_model", "chat", "sft")})
    bad = PipelineRequestOf(good)
    bad.ClearField("chat")
    with pytest.raises(Exception, match="request: .*sft: needs the `chat` dataset section"):
        pipeline_request(request=bad)
    assert cache_log.ran == []
    outputs = pipeline_request(request=good)
    assert set(cache_log.ran) == {"data.tasks.prepare_chat", "train_sft.tasks.train", "serve.tasks.space_folder"}
    assert [s.name for s in outputs.report.stages if s.name == "sft"] == ["sft"]


def PipelineRequestOf(request: Any) -> Any:  # noqa: N802  (a copy of a message, named as its type)
    copy = type(request)()
    copy.CopyFrom(request)
    return copy


def test_pyflyte_run_takes_a_config_file_and_refuses_a_bad_one_before_any_stage(tmp_path: Path) -> None:
    """The other entry point: `pyflyte run .../pipeline.py pipeline --config my.yaml` (a dynamic workflow builds the
    stages the config names)."""
    import os
    import subprocess
    import sys

    full = yaml.safe_load(write_config(tmp_path).read_text())
    config = {key: full[key] for key in ("name", "base_model", "chat", "sft")}
    good, bad = tmp_path / "sft-only.yaml", tmp_path / "bad.yaml"
    good.write_text(yaml.safe_dump(config))
    bad.write_text(yaml.safe_dump({**config, "sft": {"recipe": {"schedule": {"max_stepz": 2}}}}))
    workflow = Path(EXAMPLES).parent / "pipeline.py"
    env = {**os.environ, "HOME": str(tmp_path / "home"), "LLMFT_CACHE": str(tmp_path / "llmft-cache")}
    env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(entry) for entry in sys.path if entry)

    def pyflyte_run(path: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "flytekit.clis.sdk_in_container.pyflyte", "run", str(workflow), "pipeline",
             "--config", str(path)],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600,
        )  # fmt: skip

    def cached_results() -> int:
        """Entries of flytekit's local cache in the test's HOME (a diskcache: its sqlite table `Cache`): every stage
        task that ran wrote one."""
        import sqlite3

        database = tmp_path / "home" / ".flyte" / "local-cache" / "cache.db"
        if not database.exists():
            return 0
        with sqlite3.connect(database) as connection:
            return int(connection.execute("SELECT COUNT(*) FROM Cache").fetchone()[0])

    refused = pyflyte_run(bad)
    assert refused.returncode != 0
    said = " ".join(line.strip() for line in (refused.stdout + refused.stderr).splitlines())  # rich wraps lines
    assert "sft.recipe.schedule.max_stepz: unknown field of Schedule; did you mean 'max_steps'?" in said
    assert cached_results() == 0  # no stage ran: none left a result

    ran = pyflyte_run(good)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert cached_results() >= 2  # the chat data and SFT ran (the count that stays 0 above)
    out = " ".join(line.strip() for line in ran.stdout.splitlines())  # rich wraps long lines
    assert 'name: "small"' in out and 'stage: "llmft.train_sft"' in out  # the report, with SFT's stage record
