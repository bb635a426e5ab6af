"""A user's run as one YAML file: a `PipelineRequest` (llmft/proto/pipeline/v1) written with the proto's field names.
A stage runs when its section is present. Reading a config fills what it leaves to the run (each stage's base model
and each dataset's tokenizer from the top-level `base_model`, the datasets' kinds) and checks it whole, naming the
field, before anything runs."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format

from llmft.core.chat_templates import choice_problem
from llmft.core.files import DuplicateKeyError, load_yaml, unknown_key_problems
from llmft.core.recipe import RecipeError, explicit_zero_problems, recipe_problems, with_defaults
from llmft.proto.data.v1 import dataset_pb2 as D
from llmft.proto.pipeline.v1 import pipeline_pb2 as P
from llmft.proto.training.v1 import training_pb2 as T

TRAINING_STAGES = ("cpt", "sft", "reward_model", "ppo", "dpo")
POLICIES = ("cpt", "sft", "ppo", "dpo")  # stages whose model can be the candidate
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
DATASET_KINDS = {
    "corpus": D.DATASET_KIND_RAW_TEXT,
    "chat": D.DATASET_KIND_CHAT,
    "preferences": D.DATASET_KIND_PREFERENCE,
}


CONFIG_ENV = "LLMFT_PIPELINE_CONFIG"

# Gate metrics: where each is read from. All are better when higher.
ANSWER_METRICS = ("first_sentence_match", "exact_match", "general_match")
POLICY_METRICS = ("mean_reward", "correct")
GATE_METRICS = ANSWER_METRICS + POLICY_METRICS
# What the selection may rank by: held-out fractions that no policy trained on (not the reward model's opinion).
RANKING_METRICS = ANSWER_METRICS + ("correct",)
# Shown beside the ranking, never ranking: the reward model's view of each policy.
REWARD_COLUMNS = ("mean_reward", "reward_gain", "kl_to_reference")
BEST = "best"
CONTENDERS = ("sft", "ppo", "dpo")


class ConfigError(ValueError):
    """A config that cannot run; the message names the file and the field. `problems` lists each one (for a config
    with several, the message joins them with "; ")."""

    def __init__(self, message: str, problems: list[str] | None = None, where: str = "") -> None:
        super().__init__(message)
        self.problems = problems or []
        self.where = where

    @classmethod
    def of(cls, where: str, problems: list[str]) -> ConfigError:
        return cls(f"{where}: " + "; ".join(problems), problems, where)

    def within(self, where: str) -> ConfigError:
        """The same problems, in `where` (the file or message they are in)."""
        return ConfigError(f"{where}: {self}", self.problems or [str(self)], where)

    def listed(self) -> str:
        """For a terminal: the place, then a problem a line."""
        if len(self.problems) < 2:
            return str(self)
        return f"{self.where}: {len(self.problems)} problems\n" + "\n".join(f"  {p}" for p in self.problems)


def present(request: P.PipelineRequest, section: str) -> bool:
    return request.HasField(section)  # type: ignore[arg-type]


def load_config(path: str | Path) -> P.PipelineRequest:
    """Reads, completes and checks a config file; a ConfigError names the file and the field."""
    path = Path(path)
    try:
        data = load_yaml(path)
    except FileNotFoundError as error:
        raise ConfigError(f"{path}: no such config file") from error
    except DuplicateKeyError as error:
        raise ConfigError(str(error)) from error
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: not a readable YAML file: {error}") from error
    return parse_config(data, str(path))


def parse_config(data: Any, where: str = "config") -> P.PipelineRequest:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a config is a mapping of PipelineRequest fields, got {type(data).__name__}")
    # Every problem at once: unknown keys, explicit zeros and what the check finds in the rest.
    problems = unknown_key_problems(data, P.PipelineRequest.DESCRIPTOR)
    request = P.PipelineRequest()
    try:
        json_format.ParseDict(data, request, ignore_unknown_fields=True)
    except json_format.ParseError as error:  # a value of the wrong type: the message names its field
        raise ConfigError.of(where, [*problems, str(error)]) from error
    problems += explicit_zero_problems(data, P.PipelineRequest.DESCRIPTOR)
    try:
        checked = checked_request(request, where)
    except ConfigError as error:
        raise ConfigError.of(where, [*problems, *error.problems]) from error
    if problems:
        raise ConfigError.of(where, problems)
    return checked


def checked_request(given: P.PipelineRequest, where: str = "request") -> P.PipelineRequest:
    """A PipelineRequest handed over as a message (a launch plan's input, a workflow's argument), completed and
    checked as a config file is: a copy; a ConfigError names `where` and the field. (A message cannot say which of
    its fields were given as an explicit 0; a file can, and load_config refuses those.)"""
    request = P.PipelineRequest()
    request.CopyFrom(given)
    try:
        complete(request)
        check(request)
    except ConfigError as error:
        raise error.within(where) from error
    return request


def complete(request: P.PipelineRequest) -> None:
    """Fills what a config leaves to the run: stage base models and dataset tokenizers from `base_model`, their chat
    templates from `chat_template`, dataset kinds from the section they are in, the evaluation's candidate."""
    for section in TRAINING_STAGES:
        if present(request, section) and not getattr(request, section).base_model:
            getattr(request, section).base_model = request.base_model
        if present(request, section) and not getattr(request, section).recipe.chat_template:
            getattr(request, section).recipe.chat_template = request.chat_template
    for section, kind in DATASET_KINDS.items():
        if not present(request, section):
            continue
        dataset = getattr(request, section)
        if dataset.kind == D.DATASET_KIND_UNSPECIFIED:
            dataset.kind = kind
        if not dataset.tokenizer:
            dataset.tokenizer = request.base_model
        if not dataset.chat_template and dataset.tokenizer == request.base_model:
            dataset.chat_template = request.chat_template
        if not dataset.name:  # the section, not the run's name: a renamed run reuses its datasets (a cache hit)
            dataset.name = section
    if present(request, "evaluation") and not request.evaluation.candidate:
        request.evaluation.candidate = candidate(request)
    if present(request, "evaluation") and request.evaluation.candidate == BEST:
        complete_selection(request)
    for section in TRAINING_STAGES:
        if present(request, section):
            checkpoint_by_default(getattr(request, section).recipe)


def complete_selection(request: P.PipelineRequest) -> None:
    """The gate's defaults for candidate "best": every trained one of sft, ppo and dpo competes, scored by
    first-sentence match on held-out questions and, when the policy comparison runs, correctness on held-out pairs."""
    evaluation = request.evaluation
    selection = evaluation.selection
    if not selection.contenders:
        selection.contenders.extend(s for s in CONTENDERS if present(request, s))
    if not selection.rank_by:
        if evaluation.HasField("answers"):
            selection.rank_by.append("first_sentence_match")
        if evaluation.HasField("policies"):
            selection.rank_by.append("correct")


DEFAULT_SAVE_STEPS = 500  # when a recipe trains by epochs, not steps
DEFAULT_CHECKPOINTS_KEPT = 2


def checkpoint_by_default(recipe: T.TrainingRecipe) -> None:
    """A pipeline's training checkpoints unless its recipe says how (a `checkpoint` section; save_steps 0 there turns
    it off), so a retried task resumes: four checkpoints over a run of max_steps, else every 500 steps."""
    if recipe.HasField("checkpoint"):
        return
    steps = recipe.schedule.max_steps
    recipe.checkpoint.save_steps = max(1, steps // 4) if steps else DEFAULT_SAVE_STEPS
    recipe.checkpoint.save_total_limit = DEFAULT_CHECKPOINTS_KEPT


def candidate(request: P.PipelineRequest) -> str:
    """The model that is published and served: the config's choice, else the last trained policy."""
    if present(request, "evaluation") and request.evaluation.candidate:
        return request.evaluation.candidate
    return next((s for s in ("ppo", "dpo", "sft", "cpt") if present(request, s)), "")


def check(request: P.PipelineRequest) -> None:
    # The stages' own checks of their sections (through their tasks modules, imported here, not when a config is
    # only read): the data stage's of a dataset request, the RLHF stage's of PPO's and DPO's settings, and
    # publishing's of Hub repo ids (huggingface_hub's validator).
    from llmft.data.tasks import config_problems as dataset_config_problems
    from llmft.data.tasks import source_problems
    from llmft.rlhf.tasks import resolve_dpo, resolve_evaluation, resolve_ppo
    from llmft.serve.tasks import model_name_problem, repo_id_problems

    problems = []
    if not _NAME.match(request.name):
        problems.append(f"name: {request.name!r} must be a folder name (letters, digits, '.', '_', '-')")
    if not any(present(request, s) for s in TRAINING_STAGES):
        problems.append(f"no training stage: give at least one of {', '.join(TRAINING_STAGES)}")
    elif not candidate(request):
        problems.append(
            f"no model to serve: a reward model alone is not a chat model; give one of {', '.join(POLICIES)}"
        )
    for section in TRAINING_STAGES:
        if present(request, section) and not getattr(request, section).base_model and not upstream(request, section):
            problems.append(f"{section}.base_model: empty, and neither base_model nor an earlier stage gives one")
    needs = {"cpt": "corpus", "sft": "chat", "reward_model": "preferences", "ppo": "preferences", "dpo": "preferences"}
    for section, needed in needs.items():
        if present(request, section) and not present(request, needed):
            problems.append(f"{section}: needs the `{needed}` dataset section")
    for section, kind in DATASET_KINDS.items():
        if present(request, section):
            dataset = getattr(request, section)
            if dataset.kind != kind:
                problems.append(
                    f"{section}.kind: {D.DatasetKind.Name(dataset.kind)}; this section takes "
                    f"{D.DatasetKind.Name(kind)}"
                )
            if not dataset.sources:
                problems.append(f"{section}.sources: empty; name at least one source")
            problems += [f"{section}.{p}" for p in dataset_config_problems(dataset) if not p.startswith("kind:")]
            for index, source in enumerate(dataset.sources):
                problems += [f"{section}.sources[{index}].{p}" for p in source_problems(source)]
    if present(request, "corpus") and not present(request, "cpt"):
        problems.append("corpus: given, but no `cpt` section trains on it")
    if present(request, "preferences") and not any(present(request, s) for s in ("reward_model", "ppo", "dpo")):
        problems.append("preferences: given, but no `reward_model`, `ppo` or `dpo` section uses it")
    if present(request, "ppo") and not present(request, "reward_model") and not request.ppo.reward_model:
        problems.append("ppo: needs a `reward_model` section or ppo.reward_model (a trained reward model)")
    for section in TRAINING_STAGES:  # the recipe's numbers and choices, as the stage checks them before loading weights
        if present(request, section):
            # Every training task runs under a torch elastic launcher (llmft.flyte.training.elastic), even alone.
            recipe = with_defaults(getattr(request, section).recipe)
            problems += [f"{section}.{problem}" for problem in recipe_problems(recipe, distributed=True)]
    try:
        if present(request, "ppo"):
            resolve_ppo(request.ppo.ppo)
    except RecipeError as error:
        problems.append(f"ppo.{error}")
    try:
        if present(request, "dpo"):
            resolve_dpo(request.dpo.dpo)
    except RecipeError as error:
        problems.append(f"dpo.{error}")
    try:
        if present(request, "evaluation") and request.evaluation.HasField("policies"):
            resolve_evaluation(request.evaluation.policies)
    except RecipeError as error:
        problems.append(f"evaluation.policies.{error}")
    templates = [("chat_template", request.chat_template)] + [
        (f"{s}.recipe.chat_template", getattr(request, s).recipe.chat_template)
        for s in TRAINING_STAGES
        if present(request, s) and getattr(request, s).recipe.chat_template != request.chat_template  # not inherited
    ]
    problems += [f"{name}: {choice_problem(value)}" for name, value in templates if choice_problem(value)]
    problems += check_evaluation(request)
    resources = [(f"{s}.resources", getattr(request, s).resources) for s in TRAINING_STAGES if present(request, s)]
    resources += [
        ("evaluation.resources", request.evaluation.resources),
        ("data_resources", request.data_resources),
        ("serve_resources", request.serve_resources),
    ]
    problems += [
        f"{name}.accelerator: {given.accelerator!r} needs {name}.gpu >= 1"
        for name, given in resources
        if given.accelerator and not given.gpu
    ]
    for name, given in resources:
        quantities = [quantity_problem(f"{name}.cpu", given.cpu, False)]
        quantities.append(quantity_problem(f"{name}.memory", given.memory, True))
        problems += [problem for problem in quantities if problem]
    problems += model_problems(request, model_name_problem)
    if present(request, "publish"):
        problems += [f"publish.{problem}" for problem in repo_id_problems(request.publish)]
        if not candidate(request):
            problems.append("publish: no trained model to publish")
    if problems:
        raise ConfigError("; ".join(problems), problems)


# A Kubernetes quantity (k8s.io/apimachinery resource.Quantity): a signed decimal number, then a binary suffix (Ki..Ei),
# a decimal one (n, u, m, none, k, M..E) or a decimal exponent (e3, E-2).
QUANTITY = re.compile(
    r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]+|n|u|m|k|M|G|T|P|E)?$"
)
SCALE = {"": 1.0, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
BINARY_SUFFIXES = ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
SCALE.update({unit: 1024.0 ** (i + 1) for i, unit in enumerate(BINARY_SUFFIXES)})


def quantity(text: str) -> tuple[float, str] | None:
    """The value and suffix of a Kubernetes quantity, or None where Kubernetes would refuse to parse it."""
    match = QUANTITY.match(text)
    if not match:
        return None
    number, suffix = match.group(1), match.group(2) or ""
    if suffix[:1] in ("e", "E"):
        return float(number) * 10.0 ** int(suffix[1:]), suffix
    return float(number) * SCALE[suffix], suffix


def quantity_problem(field: str, text: str, memory: bool) -> str:
    """What is wrong with the CPU (or memory) quantity in `field` ("" is the stage's default); "" when nothing is."""
    if not text:
        return ""
    parsed = quantity(text)
    example = "a size, e.g. '8Gi' or '512Mi'" if memory else "cores, e.g. '2' or '500m'"
    if parsed is None:
        return f"{field}: {text!r} is not a Kubernetes quantity; give {example}"
    value, suffix = parsed
    if value <= 0:
        return f"{field}: {text!r} is not positive; give {example}"
    if memory and value < 2**20:  # "8" is 8 bytes and "500m" half a byte: a unit left out, or millis for mebibytes
        number = text.removesuffix(suffix)
        return f"{field}: {text!r} is {value:g} bytes to Kubernetes, under 1Mi; give a unit, e.g. '{number}Gi'"
    if not memory and suffix in BINARY_SUFFIXES:
        return f"{field}: {text!r} is a memory size; give {example}"
    if not memory and value < 1e-3:
        return f"{field}: {text!r} is under the smallest CPU request Kubernetes grants, 1m"
    return ""


EARLIER = {"cpt": (), "sft": ("cpt",), "reward_model": ("sft", "cpt"), "ppo": ("sft", "cpt"), "dpo": ("sft", "cpt")}


def upstream(request: P.PipelineRequest, section: str) -> str:
    """The stage whose model `section` starts from, or "" (its base_model)."""
    return next((s for s in EARLIER[section] if present(request, s)), "")


def lineage(request: P.PipelineRequest, section: str) -> list[str]:
    """The stages a model of `section` descends from, oldest first (its model card's lineage)."""
    chain: list[str] = []
    earlier = upstream(request, section)
    while earlier:
        chain.insert(0, earlier)
        earlier = upstream(request, earlier)
    return chain


def check_evaluation(request: P.PipelineRequest) -> list[str]:
    if not present(request, "evaluation"):
        return []
    evaluation, problems = request.evaluation, []
    trained = [s for s in POLICIES if present(request, s)]
    picked = evaluation.candidate == BEST
    if not picked and evaluation.candidate not in trained:
        problems.append(
            f"evaluation.candidate: {evaluation.candidate!r} is neither {BEST!r} nor a trained stage of this run "
            f"({', '.join(trained) or 'none'})"
        )
    # The models that may end up published: the contenders, or the one candidate.
    candidates = list(evaluation.selection.contenders) if picked else [evaluation.candidate]
    if picked:
        problems += check_selection(request, trained)
    elif evaluation.HasField("selection"):
        problems.append(f"evaluation.selection: only read with candidate: {BEST}; remove it or pick with {BEST!r}")
    baseline = evaluation.baseline or "base"
    if baseline != "base" and baseline not in trained:
        problems.append(f"evaluation.baseline: {baseline!r} is neither 'base' nor a trained stage of this run")
    if baseline in candidates:
        problems.append(
            f"evaluation.baseline: {baseline!r} is "
            + (
                "a contender; it cannot be its own baseline"
                if picked
                else "the candidate; it cannot be its own baseline"
            )
        )
    if evaluation.HasField("answers") and not present(request, "chat"):
        problems.append("evaluation.answers: needs the `chat` dataset (its held-out questions)")
    if evaluation.HasField("answers") and baseline == "base" and not request.base_model:
        problems.append("evaluation.baseline: 'base' is compared by its answers, which needs base_model")
    policies = evaluation.HasField("policies")
    if policies and not (present(request, "reward_model") and (present(request, "ppo") or present(request, "dpo"))):
        problems.append("evaluation.policies: needs a `reward_model` section and a `ppo` or `dpo` section")
    if policies and not present(request, "sft") and not evaluation.policies.reference_model:
        problems.append("evaluation.policies.reference_model: empty, and no `sft` section gives the reference policy")
    for i, condition in enumerate(evaluation.gate):
        field = f"evaluation.gate[{i}].metric"
        if condition.metric in ANSWER_METRICS:
            if not evaluation.HasField("answers"):
                problems.append(f"{field}: {condition.metric} needs evaluation.answers")
            elif condition.metric == "general_match" and not evaluation.answers.general_questions:
                problems.append(f"{field}: general_match needs evaluation.answers.general_questions: true")
        elif condition.metric in POLICY_METRICS:
            if not policies:
                problems.append(f"{field}: {condition.metric} needs evaluation.policies")
            elif {*candidates, baseline} - {"sft", "ppo", "dpo"}:
                problems.append(
                    f"{field}: {condition.metric} compares only sft, ppo and dpo (the reward model's "
                    f"comparison); candidate {', '.join(map(repr, candidates))}, baseline {baseline!r}"
                )
        else:
            problems.append(
                f"{field}: unknown metric {condition.metric!r}; one of " f"{', '.join(ANSWER_METRICS + POLICY_METRICS)}"
            )
    return problems


def check_selection(request: P.PipelineRequest, trained: list[str]) -> list[str]:
    """The gate's selection (candidate "best"): who competes, what scores them, the margin."""
    evaluation, problems = request.evaluation, []
    selection = evaluation.selection
    if not selection.contenders:
        problems.append(f"evaluation.selection.contenders: empty, and this run trains none of {', '.join(CONTENDERS)}")
    for i, name in enumerate(selection.contenders):
        field = f"evaluation.selection.contenders[{i}]"
        if name not in CONTENDERS:
            problems.append(f"{field}: {name!r} is not one of {', '.join(CONTENDERS)}")
        elif name not in trained:
            problems.append(f"{field}: {name!r} is not trained in this run (no `{name}` section)")
        elif name in selection.contenders[:i]:
            problems.append(f"{field}: {name!r} is named twice")
    if not selection.rank_by:
        problems.append(
            "evaluation.selection.rank_by: empty, and nothing measures the contenders: give evaluation.answers "
            "(first_sentence_match) or evaluation.policies (correct)"
        )
    for i, metric in enumerate(selection.rank_by):
        field = f"evaluation.selection.rank_by[{i}]"
        if metric in REWARD_COLUMNS:
            problems.append(
                f"{field}: {metric} is the reward model's opinion, shown beside the ranking but never ranking; "
                f"rank by one of {', '.join(RANKING_METRICS)}"
            )
        elif metric not in RANKING_METRICS:
            problems.append(f"{field}: unknown metric {metric!r}; one of {', '.join(RANKING_METRICS)}")
        elif metric in selection.rank_by[:i]:
            problems.append(f"{field}: {metric} is named twice")
        elif metric in ANSWER_METRICS and not evaluation.HasField("answers"):
            problems.append(f"{field}: {metric} needs evaluation.answers")
        elif metric == "general_match" and not evaluation.answers.general_questions:
            problems.append(f"{field}: general_match needs evaluation.answers.general_questions: true")
        elif metric == "correct" and not evaluation.HasField("policies"):
            problems.append(
                f"{field}: correct needs evaluation.policies (the policy comparison answers held-out pairs)"
            )
    if not 0 <= selection.min_margin < 1:
        problems.append(
            f"evaluation.selection.min_margin: {selection.min_margin} is not in [0, 1); scores are fractions"
        )
    return problems


def launch_shapes(request: P.PipelineRequest) -> dict[str, tuple[int, int]]:
    """(nodes, processes per node) of every training stage present."""
    return {
        s: (max(getattr(request, s).distributed.nnodes, 1), max(getattr(request, s).distributed.nproc_per_node, 1))
        for s in TRAINING_STAGES
        if present(request, s)
    }


def named_models(request: P.PipelineRequest) -> list[tuple[str, str]]:
    """(field, name) of every model the run loads by name: base models of the stages that start from one, dataset
    tokenizers, PPO's reward model without a reward-model stage, the policy comparison's models."""
    models = [("base_model", request.base_model)]
    for section in TRAINING_STAGES:
        if present(request, section) and not upstream(request, section):
            models.append((f"{section}.base_model", getattr(request, section).base_model))
    for section in DATASET_KINDS:
        if present(request, section):
            models.append((f"{section}.tokenizer", getattr(request, section).tokenizer))
    if present(request, "ppo") and not present(request, "reward_model"):
        models.append(("ppo.reward_model", request.ppo.reward_model))
    if present(request, "evaluation") and request.evaluation.HasField("policies"):
        models.append(("evaluation.policies.reference_model", request.evaluation.policies.reference_model))
        models.append(("evaluation.policies.reward_model", request.evaluation.policies.reward_model))
    return models


def model_problems(request: P.PipelineRequest, problem_of: Any) -> list[str]:
    """`problem_of(name)` of every model the run names; a name the top-level base_model gave many fields is named
    once, as base_model."""
    problems, seen = [], set()
    for field, name in named_models(request):
        problem = problem_of(name)
        if problem and (name not in seen or field == "base_model"):
            problems.append(f"{field}: {problem}")
        seen.add(name)
    return problems


def check_local_run(request: P.PipelineRequest, where: str | Path = "config") -> None:
    """What a run on this machine needs besides a good config: one node per stage (several need a cluster; the same
    config compiles into PyTorchJobs with `pyflyte package` / `register`), and the paths it names: local data files,
    installed packages, local model folders and GGUF files. (A cluster's pods see other files: `check` alone holds
    there.) A ConfigError names `where` and every field at once."""
    from llmft.data.tasks import source_problems
    from llmft.serve.tasks import missing_model_problem

    problems = [
        f"{stage}.distributed.nnodes: {nodes} nodes need a Flyte cluster (a PyTorchJob); compile this config with "
        "`pyflyte package` or `pyflyte register`, or set nnodes: 1 to run here"
        for stage, (nodes, _) in launch_shapes(request).items()
        if nodes > 1
    ]
    for section in DATASET_KINDS:
        if present(request, section):
            for index, source in enumerate(getattr(request, section).sources):
                problems += [
                    f"{section}.sources[{index}].{p}"
                    for p in source_problems(source, here=True)
                    if p not in source_problems(source)  # `check` named the rest
                ]
    problems += model_problems(request, missing_model_problem)
    if problems:
        raise ConfigError.of(str(where), problems)


def configured_request(default: str | Path) -> P.PipelineRequest:
    """The config a compiled pipeline is built from: the file $LLMFT_PIPELINE_CONFIG names, else `default`."""
    return load_config(os.environ.get(CONFIG_ENV) or default)
