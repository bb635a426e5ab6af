"""Held-out evaluation of policies, read top to bottom: each policy samples an answer to every held-out prompt (its
chat template, the request's temperature, a fixed seed), the reward model scores the answers, and the reference
policy (the SFT model) gives the KL divergence of each answer. Then each policy is compared with the reference: mean
reward, KL, the reward model's win rate over the reference's answers, and the reward gain in units of the reward
model's own preference margin (chosen minus rejected on held-out pairs): rewards of a Bradley-Terry model are only
defined up to a shift, so a gain relative to the raw reward would mean nothing."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmft.core import fingerprint as fp
from llmft.core.answers import first_sentence, first_sentence_matches
from llmft.core.generation import chat_prompt_ids
from llmft.core.models import load_frozen_model
from llmft.core.recipe import RecipeError
from llmft.proto.rlhf.v1 import rlhf_pb2
from llmft.rlhf.preferences import end_of_turn_id

DEFAULT_TEMPERATURE = 0.7
DEFAULT_NEW_TOKENS = 24


def sample_answers(
    model: Any,
    tokenizer: Any,
    prompts: list[list[int]],
    max_new_tokens: int,
    temperature: float,
    seed: int,
    stop_id: int,
    batch_size: int = 16,
) -> list[list[int]]:
    """One answer per prompt (token ids, up to and including the end-of-turn token when it comes). Temperature 0 is
    greedy. Seeded: the same model answers the same prompts the same way."""
    import torch

    pad = tokenizer.pad_token_id
    answers: list[list[int]] = []
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start : start + batch_size]
            width = max(map(len, batch))
            ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch], device=model.device)
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=model.device)
            sampling = dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0) if temperature > 0 else {}
            output = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                eos_token_id=stop_id,
                pad_token_id=pad,
                **({"do_sample": False} | sampling),
            )
            for row in output[:, width:].tolist():
                answer = []
                for token in row:
                    answer.append(token)
                    if token == stop_id:
                        break
                while answer and answer[-1] == pad and pad != stop_id:
                    answer.pop()
                answers.append(answer)
    return answers


def answer_logprobs(model: Any, prompts: list[list[int]], answers: list[list[int]], temperature: float) -> list[float]:
    """Sum over each answer's tokens of log p(token | prompt, earlier tokens), at the sampling temperature."""
    import torch

    scale = temperature if temperature > 0 else 1.0
    totals = []
    with torch.no_grad():
        for prompt, answer in zip(prompts, answers, strict=True):
            if not answer:
                totals.append(0.0)
                continue
            ids = torch.tensor([prompt + answer], device=model.device)
            logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float() / scale
            logprobs = torch.log_softmax(logits, dim=-1)
            totals.append(float(logprobs.gather(1, torch.tensor(answer, device=model.device)[:, None]).sum()))
    return totals


def reference_of(model: Any, temperature: float) -> Callable[[list[list[int]], list[list[int]]], list[float]]:
    """The log-probabilities a reference model gives answers, for `evaluate_policy`."""
    return lambda prompts, answers: answer_logprobs(model, prompts, answers, temperature)


def rewards(reward_model: Any, prompts: list[list[int]], answers: list[list[int]]) -> list[float]:
    """The reward model's score of each prompt with its answer."""
    import torch

    scores = []
    with torch.no_grad():
        for prompt, answer in zip(prompts, answers, strict=True):
            ids = torch.tensor([prompt + answer], device=reward_model.device)
            scores.append(float(reward_model(input_ids=ids).logits[0, 0]))
    return scores


@dataclass
class PolicyAnswers:
    """One policy's answers to the held-out prompts, their rewards and KL divergences."""

    evaluation: rlhf_pb2.PolicyEvaluation
    texts: list[str]
    rewards: list[float] = field(default_factory=list)


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def evaluate_policy(
    name: str,
    policy: Any,
    reference: Callable[[list[list[int]], list[list[int]]], list[float]] | None,
    reward_model: Any,
    tokenizer: Any,
    prompts: list[list[int]],
    settings: rlhf_pb2.PolicyEvaluationRequest,
    chosen: list[str] | None = None,
) -> PolicyAnswers:
    """Samples the policy's answers and scores them: mean reward, and KL to the reference, whose log-probabilities
    of the answers `reference(prompts, answers)` gives (None: the policy is the reference). With `chosen` (each
    prompt's preferred answer) it also answers greedily, as the Space does, and counts the answers whose first
    sentence is the chosen one's (`correct`). The comparison fields are filled by `compare`."""
    temperature = settings.temperature
    stop = end_of_turn_id(tokenizer)
    answers = sample_answers(
        policy, tokenizer, prompts, settings.max_new_tokens or DEFAULT_NEW_TOKENS, temperature, int(settings.seed), stop
    )
    scores = rewards(reward_model, prompts, answers)
    own = answer_logprobs(policy, prompts, answers, temperature)
    ref = own if reference is None else reference(prompts, answers)
    evaluation = rlhf_pb2.PolicyEvaluation(
        name=name,
        mean_reward=mean(scores),
        kl_to_reference=mean([a - b for a, b in zip(own, ref, strict=True)]),
        mean_answer_tokens=mean([float(len(a)) for a in answers]),
    )
    texts = [tokenizer.decode(a, skip_special_tokens=True).strip() for a in answers]
    if chosen is not None:
        evaluation.correct = correctness(policy, tokenizer, prompts, chosen, settings.max_new_tokens, stop)
    return PolicyAnswers(evaluation, texts, scores)


def correctness(
    policy: Any, tokenizer: Any, prompts: list[list[int]], chosen: list[str], max_new_tokens: int, stop: int
) -> float:
    """Fraction of prompts whose greedy answer has the chosen answer's first sentence. Each answer may run to the
    longest chosen first sentence and a few tokens more, so a right answer is never cut before its sentence ends."""
    if len(chosen) != len(prompts):
        raise ValueError(f"chosen: {len(chosen)} answers for {len(prompts)} prompts")
    longest = max((len(tokenizer(first_sentence(c), add_special_tokens=False)["input_ids"]) for c in chosen), default=0)
    answers = sample_answers(policy, tokenizer, prompts, max(max_new_tokens, longest + 4), 0.0, 0, stop)
    texts = [tokenizer.decode(a, skip_special_tokens=True) for a in answers]
    return mean([1.0 if first_sentence_matches(t, c) else 0.0 for t, c in zip(texts, chosen, strict=True)])


def compare(
    reference: PolicyAnswers, policies: list[PolicyAnswers], reward_scale: float, prompts: int
) -> rlhf_pb2.PolicyComparison:
    """The comparison of each policy with the reference: win rate and reward gain."""
    comparison = rlhf_pb2.PolicyComparison(prompts=prompts, reward_scale=reward_scale)
    for answers in [reference, *policies]:
        evaluation = rlhf_pb2.PolicyEvaluation()
        evaluation.CopyFrom(answers.evaluation)
        wins = [
            1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(answers.rewards, reference.rewards, strict=True)
        ]
        evaluation.win_rate_over_reference = mean(wins)
        evaluation.reward_gain = (
            (evaluation.mean_reward - reference.evaluation.mean_reward) / reward_scale if reward_scale > 0 else math.nan
        )
        comparison.policies.append(evaluation)
    return comparison


def chosen_answers(pairs: list[dict]) -> list[str] | None:
    """The chosen answer of each held-out prompt, in the order the prompts first appear (a prompt with several pairs:
    its first pair's), or None for a prompt-only dataset: nothing to check answers against."""
    first: dict[str, str] = {}
    for pair in pairs:
        first.setdefault(pair["prompt"][-1]["content"], pair["chosen"][-1]["content"])
    return list(first.values()) or None


def reward_scale(reward_model: Any, tokenizer: Any, pairs: list[dict], max_length: int) -> float:
    """The reward model's held-out margin: mean score of chosen answers minus that of rejected ones (0 without
    pairs, e.g. for a prompt-only dataset)."""
    if not pairs:
        return 0.0
    from llmft.rlhf.reward import score

    chosen, rejected = score(reward_model, tokenizer, pairs, max_length)
    return mean(chosen) - mean(rejected)


def prompt_ids(tokenizer: Any, prompts: list[str], max_length: int, where: str) -> list[list[int]]:
    """Each prompt as a user turn through the chat template, up to the assistant's header. A prompt that leaves no
    room for an answer within `max_length` is an error naming its row."""
    encoded = []
    for number, prompt in enumerate(prompts):
        ids = chat_prompt_ids(tokenizer, [{"role": "user", "content": prompt}])
        if max_length and len(ids) >= max_length:
            raise RecipeError(
                f"{where}: row {number}: the prompt is {len(ids)} tokens with the chat template, not below "
                f"max_length {max_length}; raise max_length or shorten the prompt"
            )
        encoded.append(ids)
    return encoded


def comparison_html(
    title: str, comparison: rlhf_pb2.PolicyComparison, prompts: list[str], answers: list[PolicyAnswers]
) -> str:
    """Deck page: the comparison table, and each prompt with every policy's answer and reward side by side."""
    from llmft.core import decks

    rows = [
        {
            "policy": e.name,
            "mean reward": e.mean_reward,
            "KL to reference (nats)": e.kl_to_reference,
            "win rate over reference": e.win_rate_over_reference,
            "reward gain": "n/a" if math.isnan(e.reward_gain) else e.reward_gain,
            "correct (greedy, first sentence)": e.correct if e.HasField("correct") else "n/a",
            "answer tokens": e.mean_answer_tokens,
        }
        for e in comparison.policies
    ]
    side_by_side = []
    for index, prompt in enumerate(prompts[:32]):
        row: dict[str, Any] = {"prompt": prompt}
        for policy in answers:
            row[policy.evaluation.name] = f"{policy.texts[index]}  [{policy.rewards[index]:+.2f}]"
        side_by_side.append(row)
    note = (
        f"{comparison.prompts} held-out prompts; reward gain is in units of the reward model's held-out margin "
        f"({comparison.reward_scale:.3f})"
    )
    return decks.page(
        decks.table(rows, title=f"{title}: {note}"), decks.table(side_by_side, title="answers [reward], side by side")
    )


def folder_fingerprint(model_dir: Path) -> str:
    from llmft.core.training import model_fingerprint

    return model_fingerprint(model_dir) if Path(model_dir).is_dir() else fp.fingerprint_text(str(model_dir))


@dataclass
class ComparisonResult:
    comparison: rlhf_pb2.PolicyComparison
    report_html: str
    answers: list[PolicyAnswers]


def resolve_evaluation(request: rlhf_pb2.PolicyEvaluationRequest) -> rlhf_pb2.PolicyEvaluationRequest:
    """The request with its defaults filled (a copy), or a RecipeError naming the field: the pipeline's config check
    asks this before anything runs, the evaluation again before it loads a model."""
    settings = rlhf_pb2.PolicyEvaluationRequest()
    settings.CopyFrom(request)
    if not settings.temperature:
        settings.temperature = DEFAULT_TEMPERATURE
    if not settings.max_new_tokens:
        settings.max_new_tokens = DEFAULT_NEW_TOKENS
    if not settings.temperature == settings.temperature or settings.temperature < 0:
        raise RecipeError(f"temperature: {settings.temperature} is not a number >= 0")
    return settings


def evaluate_policies(
    request: rlhf_pb2.PolicyEvaluationRequest,
    data_dir: Path,
    policies: dict[str, Path],
    reference_dir: Path | None = None,
    reward_model_dir: Path | None = None,
) -> ComparisonResult:
    """Compares each policy folder in `policies` (name: folder) with the reference policy (the SFT model:
    `reference_dir` or the request's `reference_model`) on the held-out prompts in `data_dir`, scored by the reward
    model (`reward_model_dir` or the request's `reward_model`). Contracts are checked before any weights load."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from llmft.core.models import load_tokenizer, resolve_model_dir
    from llmft.rlhf.contracts import check_causal_lm, check_reward_model, check_same_family, check_shared_tokenizer
    from llmft.rlhf.preferences import load_prompts

    settings = resolve_evaluation(request)
    if reference_dir is None and not request.reference_model:
        raise RecipeError("reference_model: empty and no reference policy folder given; name the SFT model")
    if reward_model_dir is None and not request.reward_model:
        raise RecipeError("reward_model: empty and no reward model folder given; name the reward model")
    if not policies:
        raise RecipeError("policies: none given; name at least one policy to compare with the reference")
    reference = resolve_model_dir(str(reference_dir) if reference_dir else request.reference_model).directory
    reward_dir = resolve_model_dir(str(reward_model_dir) if reward_model_dir else request.reward_model).directory
    folders = {name: resolve_model_dir(str(folder)).directory for name, folder in policies.items()}
    check_causal_lm(reference, "reference policy")
    for name, folder in folders.items():
        check_causal_lm(folder, f"policy {name!r}")
    check_reward_model(reward_dir)
    for role, folder in (("reference policy", reference), *((f"policy {n!r}", f) for n, f in folders.items())):
        check_same_family(folder, reward_dir, request.allow_mixed_families, role)
    tokenizer = load_tokenizer(reference)
    check_shared_tokenizer(
        {
            "reference policy": (reference, tokenizer),
            "reward model": (reward_dir, load_tokenizer(reward_dir)),
            **{f"policy {name!r}": (folder, load_tokenizer(folder)) for name, folder in folders.items()},
        }
    )
    prompts = load_prompts(data_dir, settings.prompts)
    max_length = settings.max_length or 0
    room = max_length - settings.max_new_tokens if max_length else 0
    ids = prompt_ids(tokenizer, prompts.eval, room, f"{data_dir}/eval.parquet")

    reward_model = load_frozen_model(reward_dir, AutoModelForSequenceClassification)
    reference_model = load_frozen_model(reference, AutoModelForCausalLM)
    scale = reward_scale(reward_model, tokenizer, prompts.eval_pairs, max_length or 1 << 30)
    chosen = chosen_answers(prompts.eval_pairs)
    baseline = evaluate_policy("sft", reference_model, None, reward_model, tokenizer, ids, settings, chosen)
    baseline.evaluation.fingerprint = folder_fingerprint(reference)
    evaluated = []
    for name, folder in folders.items():
        policy = load_frozen_model(folder, AutoModelForCausalLM)
        answers = evaluate_policy(
            name,
            policy,
            reference_of(reference_model, settings.temperature),
            reward_model,
            tokenizer,
            ids,
            settings,
            chosen,
        )
        answers.evaluation.fingerprint = folder_fingerprint(folder)
        evaluated.append(answers)
        del policy
    comparison = compare(baseline, evaluated, scale, len(ids))
    comparison.reward_model_fingerprint = folder_fingerprint(reward_dir)
    comparison.reference_fingerprint = baseline.evaluation.fingerprint
    comparison.dataset_fingerprint = prompts.manifest.fingerprint
    everyone = [baseline, *evaluated]
    return ComparisonResult(
        comparison, comparison_html("Policies on held-out prompts", comparison, prompts.eval, everyone), everyone
    )
