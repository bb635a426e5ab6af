"""A user's pipeline config: completed from its top-level fields, and refused whole, naming each bad field, before
anything runs."""

from pathlib import Path

import pytest
import yaml

from llmft.flyte.config import ConfigError, check_local_run, lineage, load_config, parse_config
from llmft.proto.data.v1 import dataset_pb2 as D


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


def test_a_config_is_completed_from_its_top_level_fields() -> None:
    request = parse_config(minimal())
    assert request.sft.base_model == request.dpo.base_model == "llmft/tiny-llama"
    assert request.chat.kind == D.DATASET_KIND_CHAT and request.preferences.kind == D.DATASET_KIND_PREFERENCE
    assert request.chat.tokenizer == "llmft/tiny-llama" and request.chat.name == "mine-chat"
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
        (lambda c: c.update(cptt={}), 'no field named "cptt"'),
        (lambda c: c.update(name="../up"), "name: '../up' must be a folder name"),
        (lambda c: c.pop("chat"), "sft: needs the `chat` dataset section"),
        (lambda c: c.update(corpus={"sources": [{"local": {"patterns": ["x"]}}]}), "corpus: given, but no `cpt`"),
        (lambda c: c["chat"].update(kind="DATASET_KIND_RAW_TEXT"), "chat.kind: DATASET_KIND_RAW_TEXT"),
        (lambda c: c["chat"].update(sources=[]), "chat.sources: empty"),
        (lambda c: c.update(ppo={}), "ppo: needs a `reward_model` section or ppo.reward_model"),
        (lambda c: c["evaluation"].update(candidate="ppo"), "evaluation.candidate: 'ppo' is not a trained stage"),
        (lambda c: c["evaluation"].update(baseline="dpo"), "evaluation.baseline: the candidate 'dpo' cannot be"),
        (lambda c: c["evaluation"]["gate"].append({"metric": "bleu"}), "evaluation.gate[1].metric: unknown metric"),
        (lambda c: c["evaluation"]["gate"].append({"metric": "mean_reward"}), "evaluation.gate[1].metric: mean_reward"),
        (
            lambda c: c["evaluation"]["gate"].append({"metric": "general_match", "min_improvement": -0.1}),
            "evaluation.gate[1].metric: general_match needs evaluation.answers.general_questions: true",
        ),
        (lambda c: c.update(publish={}), "publish.model_repo_id: empty"),
        (lambda c: [c.pop(k) for k in ("sft", "dpo", "evaluation")] and c.update(reward_model={}), "no model to serve"),
        (lambda c: c.pop("base_model") and c["sft"].update(base_model="x"), "evaluation.baseline: 'base' is compared"),
        (lambda c: c["sft"].update(recipe={"schedule": {"max_steps": "many"}}), "max_steps"),
        (lambda c: c["sft"]["recipe"].update(max_length=0), "sft.recipe.max_length: an explicit 0 is not allowed"),
        (lambda c: c.update(chat_template="llama2"), "chat_template: 'llama2' is neither a shipped template"),
        (lambda c: c["sft"]["recipe"].update(chat_template="vicuna"), "sft.recipe.chat_template: 'vicuna' is neither"),
    ],
)
def test_a_bad_config_is_refused_naming_the_field(edit, message: str) -> None:  # type: ignore[no-untyped-def]
    config = minimal()
    edit(config)
    with pytest.raises(ConfigError, match="^config: .*" + message.replace("(", r"\(").replace("[", r"\[")):
        parse_config(config)


def test_every_problem_is_named_at_once() -> None:
    config = minimal()
    config.pop("chat")
    config["evaluation"]["gate"] = [{"metric": "bleu"}]
    with pytest.raises(ConfigError) as error:
        parse_config(config)
    assert "sft: needs the `chat`" in str(error.value) and "evaluation.gate[0].metric" in str(error.value)


def test_a_config_file_error_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match=f"^{bad}: not a readable YAML file"):
        load_config(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text(yaml.safe_dump(["name"]))
    with pytest.raises(ConfigError, match=f"^{listed}: a config is a mapping"):
        load_config(listed)


def test_several_nodes_compile_but_do_not_run_here() -> None:
    config = minimal()
    config["sft"]["distributed"] = {"nnodes": 4, "nproc_per_node": 8}
    request = parse_config(config)  # valid: it compiles into a PyTorchJob
    with pytest.raises(ConfigError, match="sft.distributed.nnodes: 4 nodes need a Flyte cluster"):
        check_local_run(request)
    check_local_run(parse_config(minimal()))


def test_the_gate_passes_only_when_the_candidate_beats_the_baseline_by_more_than_the_margin() -> None:
    from llmft.flyte.pipeline import decide
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
    gate = [P.GateMetric(metric="first_sentence_match", min_improvement=0.1)]
    passed = decide(gate, "sft", "base", answers, policies)
    assert passed.passed and passed.checks[0].candidate == 0.7 and "sft beats base" in passed.reason
    held = decide([P.GateMetric(metric="first_sentence_match", min_improvement=0.8)], "sft", "base", answers, policies)
    assert not held.passed and "does not beat base 0 by more than 0.8: publishing held back" in held.reason
    with pytest.raises(ValueError, match="mean_reward was not measured for model 'base'"):
        decide([P.GateMetric(metric="mean_reward")], "sft", "base", answers, policies)
    assert decide([], "sft", "base", answers, policies).passed


def test_a_negative_margin_bounds_how_many_general_questions_the_candidate_may_lose() -> None:
    from llmft.flyte.pipeline import decide
    from llmft.proto.pipeline.v1 import pipeline_pb2 as P
    from llmft.proto.rlhf.v1 import rlhf_pb2 as R
    from llmft.proto.serve.v1 import serve_pb2 as S

    def answers(sft: float) -> S.AnswerEvaluation:
        return S.AnswerEvaluation(
            models=[S.ModelAnswers(name="sft", general_match=sft), S.ModelAnswers(name="base", general_match=0.8)]
        )

    gate = [P.GateMetric(metric="general_match", min_improvement=-0.1)]
    assert decide(gate, "sft", "base", answers(0.75), R.PolicyComparison()).passed
    held = decide(gate, "sft", "base", answers(0.6), R.PolicyComparison())
    assert not held.passed and "general_match 0.6 does not beat base 0.8 by more than -0.1" in held.reason
    config = minimal()
    config["evaluation"]["answers"]["general_questions"] = True
    config["evaluation"]["gate"].append({"metric": "general_match", "min_improvement": -0.1})
    assert parse_config(config).evaluation.gate[1].metric == "general_match"
