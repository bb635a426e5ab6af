"""A user's pipeline config: completed from its top-level fields, and refused whole, naming each bad field, before
anything runs."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmft.orchestration.config import ConfigError, check_local_run, lineage, load_config, parse_config
from llmft.orchestration.pipeline import EXAMPLES
from llmft.proto.data.v1 import dataset_pb2 as D
from llmft.proto.pipeline.v1 import pipeline_pb2 as P


def minimal() -> dict:
    source = [{"local": {"patterns": ["chat.jsonl"]}}]
    return {
        "name": "mine",
        "base_model": "llmft/tiny-llama",
        "chat": {"sources": source},
        "preferences": {"sources": source},
        "sft": {"recipe": {"schedule": {"max_steps": 2}}},
        "dpo": {},
        "evaluation": {"answers": {}, "gate": [{"metric": "first_sentence_match"}]},
    }


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory, holding the file minimal() reads (a local run checks that its sources exist)."""
    (tmp_path / "chat.jsonl").write_text('{"messages": [{"role": "user", "content": "Hi"}]}\n')
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_config_is_completed_from_its_top_level_fields() -> None:
    request = parse_config(minimal())
    assert request.sft.base_model == request.dpo.base_model == "llmft/tiny-llama"
    assert request.chat.kind == D.DATASET_KIND_CHAT and request.preferences.kind == D.DATASET_KIND_PREFERENCE
    assert request.chat.tokenizer == "llmft/tiny-llama" and request.chat.name == "chat"
    assert request.evaluation.candidate == "dpo"  # the last trained policy
    assert request.sft.recipe.schedule.max_steps == 2
    assert lineage(request, "dpo") == ["sft"] and lineage(request, "sft") == []


def test_the_chat_template_reaches_every_stage_and_chat_dataset_that_names_none() -> None:
    config = minimal()
    config["chat_template"] = "llama-2"
    config["dpo"] = {"recipe": {"chat_template": "chatml"}}
    request = parse_config(config)
    assert request.sft.recipe.chat_template == "llama-2" and request.dpo.recipe.chat_template == "chatml"
    assert request.chat.chat_template == request.preferences.chat_template == "llama-2"


def test_training_checkpoints_by_default_unless_the_recipe_says_how() -> None:
    config = minimal()
    config["sft"]["recipe"]["schedule"]["max_steps"] = 40
    config["dpo"] = {"recipe": {"checkpoint": {"save_steps": 0}}}
    request = parse_config(config)
    assert (request.sft.recipe.checkpoint.save_steps, request.sft.recipe.checkpoint.save_total_limit) == (10, 2)
    assert request.dpo.recipe.checkpoint.save_steps == 0  # explicitly off stays off


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.update(cptt={}), "cptt: unknown field of PipelineRequest; did you mean 'cpt'?"),
        (
            lambda c: c["sft"].update(recipe={"schedul": {}}),
            "sft.recipe.schedul: unknown field of TrainingRecipe; did you mean 'schedule'",
        ),
        (lambda c: c.update(name="../up"), "name: '../up' must be a folder name"),
        (lambda c: c.pop("chat"), "sft: needs the `chat` dataset section"),
        (lambda c: c.update(corpus={"sources": [{"local": {"patterns": ["x"]}}]}), "corpus: given, but no `cpt`"),
        (lambda c: c["chat"].update(kind="DATASET_KIND_RAW_TEXT"), "chat.kind: DATASET_KIND_RAW_TEXT"),
        (lambda c: c["chat"].update(sources=[]), "chat.sources: empty"),
        (lambda c: c.update(ppo={}), "ppo: needs a `reward_model` section or ppo.reward_model"),
        (
            lambda c: c["evaluation"].update(candidate="ppo"),
            "evaluation.candidate: 'ppo' is neither 'best' nor a trained stage",
        ),
        (lambda c: c["evaluation"].update(baseline="dpo"), "evaluation.baseline: 'dpo' is the candidate; it cannot be"),
        (lambda c: c["evaluation"]["gate"].append({"metric": "bleu"}), "evaluation.gate[1].metric: unknown metric"),
        (lambda c: c["evaluation"]["gate"].append({"metric": "mean_reward"}), "evaluation.gate[1].metric: mean_reward"),
        (
            lambda c: c["evaluation"]["gate"].append({"metric": "general_match", "min_improvement": -0.1}),
            "evaluation.gate[1].metric: general_match needs evaluation.answers.general_questions: true",
        ),
        (lambda c: c.update(publish={}), "publish.model_repo_id: empty"),
        # Hub repo ids by huggingface_hub's own validator, before training rather than at publishing
        (
            lambda c: c.update(publish={"model_repo_id": "org/two words"}),
            "publish.model_repo_id: 'org/two words' is not a Hub repo id: Repo id must use alphanumeric chars",
        ),
        (
            lambda c: c.update(publish={"model_repo_id": "org/m", "space_repo_id": "chat--app"}),
            "publish.space_repo_id: 'chat--app' is not a Hub repo id: Cannot have -- or .. in repo_id",
        ),
        (lambda c: c.update(publish={"model_repo_id": "model"}), "publish.model_repo_id: 'model' needs its owner"),
        (lambda c: [c.pop(k) for k in ("sft", "dpo", "evaluation")] and c.update(reward_model={}), "no model to serve"),
        (lambda c: c.pop("base_model") and c["sft"].update(base_model="x"), "evaluation.baseline: 'base' is compared"),
        (lambda c: c["sft"].update(recipe={"schedule": {"max_steps": "many"}}), "max_steps"),
        (lambda c: c["sft"]["recipe"].update(max_length=0), "sft.recipe.max_length: an explicit 0 is not allowed"),
        (lambda c: c.update(chat_template="llama2"), "chat_template: 'llama2' is neither a shipped template"),
        (lambda c: c["sft"]["recipe"].update(chat_template="vicuna"), "sft.recipe.chat_template: 'vicuna' is neither"),
        (
            lambda c: c.update(data_resources={"accelerator": "nvidia-h100"}),
            "data_resources.accelerator: 'nvidia-h100' needs data_resources.gpu >= 1",
        ),
        (
            lambda c: c["sft"].update(resources={"accelerator": "nvidia-l4"}),
            "sft.resources.accelerator: 'nvidia-l4' needs sft.resources.gpu >= 1",
        ),
        # Numbers, ranges and choices a stage would refuse only when it starts: here, before anything runs
        (lambda c: c["chat"].update(split={"eval_fraction": 1.5}), "chat.split.eval_fraction: must be in [0, 1"),
        (
            lambda c: c["preferences"].update(cleaning={"near_duplicate_threshold": 2}),
            "preferences.cleaning.near_duplicate_threshold: must be in",
        ),
        (
            lambda c: c["chat"].update(cleaning={"drop_patterns": ["ok", "(unclosed"]}),
            "chat.cleaning.drop_patterns[1]: invalid regular expression '(unclosed'",
        ),
        (
            lambda c: c["chat"].update(cleaning={"min_chars": 50, "max_chars": 10}),
            "chat.cleaning.min_chars: 50 is above",
        ),
        (
            lambda c: c["sft"]["recipe"]["schedule"].update(learning_rate=-1),
            "sft.recipe.schedule.learning_rate: must be > 0, got -1.0",
        ),
        (
            lambda c: c["dpo"].update(recipe={"schedule": {"warmup_ratio": 2}}),
            "dpo.recipe.schedule.warmup_ratio: must be",
        ),
        (lambda c: c["sft"]["recipe"].update(zero={"stage": 5}), "sft.recipe.zero.stage: must be 0-3, got 5"),
        (
            lambda c: c["sft"]["recipe"]["schedule"].update(lr_scheduler="cosin"),
            "sft.recipe.schedule.lr_scheduler: 'cosin' is not one of",
        ),
        (lambda c: c["dpo"].update(dpo={"beta": -1}), "dpo.dpo.beta: -1.0 is not a finite number >= 0"),
        (
            lambda c: c.update(reward_model={}, ppo={"ppo": {"kl_coef": -1}}),
            "ppo.ppo.kl_coef: -1.0 is not a finite number >= 0",
        ),
        (lambda c: c["dpo"].update(dpo={"loss_type": "hinge2"}), "dpo.dpo.loss_type: 'hinge2' is not one of"),
        # Resource quantities as Kubernetes parses them, refused here rather than by the cluster.
        (lambda c: c["sft"].update(resources={"cpu": "two"}), "sft.resources.cpu: 'two' is not a Kubernetes quantity"),
        (lambda c: c["sft"].update(resources={"cpu": "8Gi"}), "sft.resources.cpu: '8Gi' is a memory size"),
        (lambda c: c["sft"].update(resources={"cpu": "0.1m"}), "sft.resources.cpu: '0.1m' is under the smallest"),
        (lambda c: c["sft"].update(resources={"memory": "8GB"}), "sft.resources.memory: '8GB' is not a Kubernetes"),
        (lambda c: c.update(serve_resources={"memory": "16"}), "serve_resources.memory: '16' is 16 bytes"),
        (lambda c: c.update(data_resources={"memory": "500m"}), "data_resources.memory: '500m' is 0.5 bytes"),
        (lambda c: c.update(data_resources={"memory": "500m"}), "under 1Mi; give a unit, e.g. '500Gi'"),
        (
            lambda c: c.update(data_resources={"memory": "-8Gi"}),
            "data_resources.memory: '-8Gi' is not positive; give a size",
        ),
        (lambda c: c["dpo"].update(resources={"cpu": "-2"}), "dpo.resources.cpu: '-2' is not positive; give cores"),
        # Sections not covered above
        (lambda c: c.update(cpt={}), "cpt: needs the `corpus` dataset section"),
        (
            lambda c: c.update(reward_model={"recipe": {"schedule": {"learning_rate": -0.5}}}),
            "reward_model.recipe.schedule.learning_rate: must be > 0",
        ),
        (lambda c: c.update(space={"titel": "x"}), "space.titel: unknown field of SpaceRequest; did you mean 'title'"),
        (lambda c: c.update(base_model=""), "evaluation.baseline: 'base' is compared by its answers"),
        (
            lambda c: c["evaluation"].update(resources={"memory": "4G B"}),
            "evaluation.resources.memory: '4G B' is not a Kubernetes quantity",
        ),
        # Sources: what reading them would refuse at once, wherever the run is
        (lambda c: c["chat"]["sources"][0].update(format="yaml"), "chat.sources[0].format: 'yaml' is not one of"),
        (lambda c: c["chat"].update(sources=[{"format": "jsonl"}]), "chat.sources[0].source: none of local, url"),
        (
            lambda c: c["preferences"].update(sources=[{"url": {"urls": ["ftp://host/pairs.jsonl"]}}]),
            "preferences.sources[0].url.urls[0]: 'ftp://host/pairs.jsonl' is not an http(s) URL",
        ),
        (
            lambda c: c["chat"].update(sources=[{"git": {"repository": "--upload-pack=x"}}]),
            "chat.sources[0].git.repository: '--upload-pack=x' is neither a URL",
        ),
        (
            lambda c: c.update(reward_model={}, ppo={}) or c["evaluation"].update(policies={"temperature": -0.5}),
            "evaluation.policies.temperature: -0.5 is not a number >= 0",
        ),
        # Model names: a preset, a packaged model, a local path, or a Hub repo id by huggingface_hub's validator
        (lambda c: c.update(base_model="org/two words"), "base_model: 'org/two words' is neither a built-in model"),
        (lambda c: c["preferences"].update(tokenizer="tok--bad"), "preferences.tokenizer: 'tok--bad' is neither"),
        # Paths and names that must exist on this machine, for a run here
        (
            lambda c: c["chat"]["sources"][0]["local"].update(patterns=["chat.jsonl", "missing/*.jsonl"]),
            "chat.sources[0].local.patterns[1]: 'missing/*.jsonl' matches no file on this machine",
        ),
        (
            lambda c: c["preferences"].update(sources=[{"python_package": {"packages": ["no-such-dist-llmft"]}}]),
            "preferences.sources[0].python_package.packages[0]: 'no-such-dist-llmft' is not installed",
        ),
        (
            lambda c: c["chat"].update(sources=[{"git": {"repository": "./no-such-repo"}}]),
            "chat.sources[0].git.repository: './no-such-repo' does not exist on this machine",
        ),
        (lambda c: c.update(base_model="./models/mine"), "base_model: './models/mine' does not exist on this machine"),
        (lambda c: c["sft"].update(base_model="/no/such.gguf"), "sft.base_model: '/no/such.gguf' does not exist"),
        (
            lambda c: c.update(ppo={"reward_model": "~/rm-missing"}),
            "ppo.reward_model: '~/rm-missing' does not exist on this machine",
        ),
        (
            lambda c: c["chat"].update(tokenizer="./tok"),
            "chat.tokenizer: './tok' does not exist on this machine",
        ),
        (
            lambda c: c["sft"].update(distributed={"nnodes": 2}),
            "sft.distributed.nnodes: 2 nodes need a Flyte cluster",
        ),
    ],
)
def test_a_bad_config_is_refused_by_the_cli_naming_the_file_and_the_field_before_any_task(
    edit: Any, message: str, here: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flytekit.core.base_task import PythonTask

    from llmft.orchestration.local import main

    executed: list[str] = []
    original = PythonTask.dispatch_execute

    def dispatch_execute(self, ctx, input_literal_map):  # type: ignore[no-untyped-def]
        executed.append(self.name)
        return original(self, ctx, input_literal_map)

    monkeypatch.setattr(PythonTask, "dispatch_execute", dispatch_execute)
    built: list[P.PipelineRequest] = []

    def build(request: P.PipelineRequest) -> Any:
        built.append(request)
        raise AssertionError(f"{request.name}: a workflow was built for a config that should have been refused")

    config = minimal()
    edit(config)
    path = here / "mine.yaml"
    path.write_text(yaml.safe_dump(config))
    pattern = f"^error: {re.escape(str(path))}: .*" + re.escape(message)
    checks: list[list[str]] = [[], ["--check"]]  # the run, and its dry run
    for check in checks:
        runs = here / "runs"
        code = main(build, ["run", "--config", str(path), "--runs-dir", str(runs), *check])
        error = capsys.readouterr().err
        assert code == 2 and re.search(pattern, error, re.DOTALL), error  # the file first, then the field
        assert built == [] and executed == [] and not runs.exists()  # no workflow, no task, no output folder


def test_kubernetes_quantities_parse_as_kubernetes_parses_them() -> None:
    from llmft.orchestration.config import quantity

    assert quantity("500m") == (0.5, "m") and quantity("2") == (2.0, "") and quantity(".5") == (0.5, "")
    assert (
        quantity("8Gi") == (8 * 2**30, "Gi")
        and quantity("1.5e3") == (1500.0, "e3")
        and quantity("64M") == (64e6, "M")
    )
    assert [quantity(t) for t in ("8GB", "2 cores", "1e", "Gi", "0x10", "8gi", "")] == [None] * 7
    config = minimal()
    config["sft"]["resources"] = {"cpu": "1500m", "memory": "12Gi"}
    config["data_resources"] = {"cpu": "0.5", "memory": "2e9"}
    parse_config(config)


def test_every_unknown_key_is_named_at_once_with_the_closest_field() -> None:
    config = minimal()
    config["chat"]["sources"] = [{"local": {"patterns": ["chat.jsonl"]}, "formatt": "jsonl"}]
    config["evaluation"] = {"gate": [{"metrc": "first_sentence_match"}], "zzz": 1}
    with pytest.raises(ConfigError) as error:
        parse_config(config)
    assert str(error.value) == (
        "config: chat.sources[0].formatt: unknown field of DatasetSource; did you mean 'format'?; "
        "evaluation.gate[0].metrc: unknown field of GateMetric; did you mean 'metric'?; "
        "evaluation.zzz: unknown field of PipelineEvaluation; the fields are "
        + ", ".join(f.name for f in P.PipelineEvaluation.DESCRIPTOR.fields)
        # and what the check finds in the rest: the misspelt key left the metric empty
        + "; evaluation.gate[0].metric: unknown metric ''; one of first_sentence_match, exact_match, general_match, "
        "mean_reward, correct"
    )


def test_every_problem_is_named_at_once() -> None:
    config = minimal()
    config.pop("chat")
    config["evaluation"]["gate"] = [{"metric": "bleu"}]
    with pytest.raises(ConfigError) as error:
        parse_config(config)
    assert "sft: needs the `chat`" in str(error.value) and "evaluation.gate[0].metric" in str(error.value)


def test_unknown_keys_explicit_zeros_and_range_problems_are_listed_together_a_line_each(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from llmft.orchestration.local import main

    config = minimal()
    config["sft"]["recipe"]["schedul"] = {}
    config["sft"]["recipe"]["max_length"] = 0
    config["chat"]["split"] = {"eval_fraction": 2}
    path = here / "mine.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(lambda request: pytest.fail("built"), ["run", "--config", str(path), "--check"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {path}: 3 problems",
        "  sft.recipe.schedul: unknown field of TrainingRecipe; did you mean 'schedule'?",
        "  sft.recipe.max_length: an explicit 0 is not allowed: it would silently mean the default 1024; give a length "
        "in tokens > 0, or leave the field out",
        "  chat.split.eval_fraction: must be in [0, 1), got 2.0",
    ]


def test_a_config_file_error_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match=f"^{bad}: not a readable YAML file"):
        load_config(bad)
    repeated = tmp_path / "repeated.yaml"  # PyYAML alone keeps the last value
    demo = (Path(EXAMPLES) / "demo.yaml").read_text()
    repeated.write_text(demo + "publish:\n  local_dir: elsewhere\n")
    line = len(demo.splitlines()) + 1
    with pytest.raises(ConfigError, match=rf"^{repeated}:{line}: key 'publish' given twice \(first on line \d+\)$"):
        load_config(repeated)
    listed = tmp_path / "list.yaml"
    listed.write_text(yaml.safe_dump(["name"]))
    with pytest.raises(ConfigError, match=f"^{listed}: a config is a mapping"):
        load_config(listed)


def test_several_nodes_compile_but_do_not_run_here(here: Path) -> None:
    config = minimal()
    config["sft"]["distributed"] = {"nnodes": 4, "nproc_per_node": 8}
    request = parse_config(config)  # valid: it compiles into a PyTorchJob
    with pytest.raises(ConfigError, match="sft.distributed.nnodes: 4 nodes need a Flyte cluster"):
        check_local_run(request)
    check_local_run(parse_config(minimal()))


def test_the_gate_passes_only_when_the_candidate_beats_the_baseline_by_more_than_the_margin() -> None:
    from llmft.orchestration.gate import decide
    from llmft.proto.pipeline.v1 import pipeline_pb2 as P
    from llmft.proto.rlhf.v1 import rlhf_pb2 as R
    from llmft.proto.serve.v1 import serve_pb2 as S

    answers = S.AnswerEvaluation(
        models=[
            S.ModelAnswers(name="sft", first_sentence_match=0.7),
            S.ModelAnswers(name="base", first_sentence_match=0.0),
        ]
    )
    policies = R.PolicyComparison(policies=[R.PolicyEvaluation(name="sft", mean_reward=1.0)])

    def gate(*metrics: P.GateMetric) -> P.PipelineEvaluation:
        return P.PipelineEvaluation(candidate="sft", baseline="base", gate=metrics)

    passed = decide(gate(P.GateMetric(metric="first_sentence_match", min_improvement=0.1)), answers, policies)
    assert passed.passed and passed.checks[0].candidate == 0.7 and "sft published" in passed.reason
    held = decide(gate(P.GateMetric(metric="first_sentence_match", min_improvement=0.8)), answers, policies)
    assert not held.passed and "does not beat base 0 by more than 0.8: publishing held back" in held.reason
    with pytest.raises(ValueError, match="mean_reward was not measured for model 'base'"):
        decide(gate(P.GateMetric(metric="mean_reward")), answers, policies)
    assert decide(gate(), answers, policies).passed


def test_a_negative_margin_bounds_how_many_general_questions_the_candidate_may_lose() -> None:
    from llmft.orchestration.gate import decide
    from llmft.proto.pipeline.v1 import pipeline_pb2 as P
    from llmft.proto.rlhf.v1 import rlhf_pb2 as R
    from llmft.proto.serve.v1 import serve_pb2 as S

    def answers(sft: float) -> S.AnswerEvaluation:
        return S.AnswerEvaluation(
            models=[S.ModelAnswers(name="sft", general_match=sft), S.ModelAnswers(name="base", general_match=0.8)]
        )

    gate = P.PipelineEvaluation(candidate="sft", gate=[P.GateMetric(metric="general_match", min_improvement=-0.1)])
    assert decide(gate, answers(0.75), R.PolicyComparison()).passed
    held = decide(gate, answers(0.6), R.PolicyComparison())
    assert not held.passed and "general_match 0.6 does not beat base 0.8 by more than -0.1" in held.reason
    config = minimal()
    config["evaluation"]["answers"]["general_questions"] = True
    config["evaluation"]["gate"].append({"metric": "general_match", "min_improvement": -0.1})
    assert parse_config(config).evaluation.gate[1].metric == "general_match"


def picking(sft: tuple[float, float], ppo: tuple[float, float], dpo: tuple[float, float]) -> tuple:
    """An answer evaluation and a policy comparison where each policy has (first_sentence_match, correct), and the
    reward model prefers DPO by far."""
    from llmft.proto.rlhf.v1 import rlhf_pb2 as R
    from llmft.proto.serve.v1 import serve_pb2 as S

    scores = {"sft": sft, "ppo": ppo, "dpo": dpo}
    answers = S.AnswerEvaluation(
        models=[S.ModelAnswers(name=n, first_sentence_match=m) for n, (m, _) in scores.items()]
        + [S.ModelAnswers(name="base", first_sentence_match=0.0)]
    )
    policies = R.PolicyComparison(
        policies=[
            R.PolicyEvaluation(name=n, correct=c, mean_reward=9.0 if n == "dpo" else 0.0)
            for n, (_, c) in scores.items()
        ]
    )
    return answers, policies


def best(margin: float = 0.02, *gate: Any) -> Any:
    from llmft.proto.pipeline.v1 import pipeline_pb2 as P

    return P.PipelineEvaluation(
        candidate="best",
        gate=gate,
        selection=P.Selection(
            contenders=["sft", "ppo", "dpo"], rank_by=["first_sentence_match", "correct"], min_margin=margin
        ),
    )


def test_the_gate_picks_the_policy_with_the_best_held_out_score_not_the_best_reward() -> None:
    from llmft.orchestration.gate import decide

    decision = decide(best(), *picking(sft=(0.60, 0.50), ppo=(0.70, 0.80), dpo=(0.62, 0.40)))
    assert decision.candidate == "ppo" and decision.passed
    assert [c.name for c in decision.ranking] == ["ppo", "sft", "dpo"]  # DPO's reward of 9 does not rank it
    assert decision.ranking[0].score == pytest.approx(0.75) and decision.ranking[2].metrics["mean_reward"] == 9.0
    # The runner-up is SFT: one margin check, against it.
    assert [(c.metric, c.against, c.passed) for c in decision.checks] == [("score", "sft", True)]
    assert "ppo published" in decision.reason and "ppo 0.750" in decision.reason


def test_the_gate_holds_back_a_winner_that_does_not_beat_the_runner_up_and_sft_by_the_margin() -> None:
    from llmft.orchestration.gate import decide

    # PPO wins, DPO is close behind: held back, naming the runner-up and the margin.
    close = decide(best(0.05), *picking(sft=(0.40, 0.40), ppo=(0.70, 0.80), dpo=(0.72, 0.74)))
    assert close.candidate == "ppo" and not close.passed
    assert [(c.against, c.passed) for c in close.checks] == [("dpo", False), ("sft", True)]
    assert "ppo score 0.75 does not beat dpo 0.73 by more than 0.05: publishing held back" in close.reason
    # A tie goes to the earlier contender (sft), which then does not beat the runner-up by any margin.
    tie = decide(best(0.0), *picking(sft=(0.5, 0.5), ppo=(0.5, 0.5), dpo=(0.1, 0.1)))
    assert tie.candidate == "sft" and not tie.passed
    # The winner also passes the gate metrics against the baseline.
    from llmft.proto.pipeline.v1 import pipeline_pb2 as P

    floor = P.GateMetric(metric="first_sentence_match", min_improvement=0.9)
    assert not decide(best(0.02, floor), *picking(sft=(0.6, 0.5), ppo=(0.7, 0.8), dpo=(0.6, 0.4))).passed


def test_a_config_that_picks_is_completed_and_checked() -> None:
    config = minimal()
    config["ppo"] = {}
    config["reward_model"] = {}
    config["evaluation"] = {"answers": {}, "policies": {}, "candidate": "best"}
    request = parse_config(config)
    assert list(request.evaluation.selection.contenders) == ["sft", "ppo", "dpo"]
    assert list(request.evaluation.selection.rank_by) == ["first_sentence_match", "correct"]
    faults = {
        "contenders": (["sft", "cpt"], "evaluation.selection.contenders[1]: 'cpt' is not one of sft, ppo, dpo"),
        "rank_by": (["mean_reward"], "evaluation.selection.rank_by[0]: mean_reward is the reward model's opinion"),
        "min_margin": (1.5, "evaluation.selection.min_margin: 1.5 is not in [0, 1)"),
    }
    for field, (value, message) in faults.items():
        bad = minimal()
        bad.update(ppo={}, reward_model={}, evaluation={"answers": {}, "policies": {}, "candidate": "best"})
        bad["evaluation"]["selection"] = {field: value}
        with pytest.raises(ConfigError, match=re.escape(message)):
            parse_config(bad)
    no_policies = minimal()
    no_policies["evaluation"] = {"answers": {}, "candidate": "best", "selection": {"rank_by": ["correct"]}}
    with pytest.raises(ConfigError, match=r"rank_by\[0\]: correct needs evaluation.policies"):
        parse_config(no_policies)
    fixed = minimal()
    fixed["evaluation"]["selection"] = {"min_margin": 0.1}
    with pytest.raises(ConfigError, match="evaluation.selection: only read with candidate: best"):
        parse_config(fixed)
    contender_baseline = minimal()
    contender_baseline["evaluation"] = {"answers": {}, "candidate": "best", "baseline": "sft"}
    with pytest.raises(ConfigError, match="evaluation.baseline: 'sft' is a contender"):
        parse_config(contender_baseline)
