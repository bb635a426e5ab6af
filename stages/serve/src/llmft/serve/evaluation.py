"""Held-out answer evaluation: each model answers the chat dataset's held-out questions greedily through the
continuous-batching engine, and each answer is compared with the reference (the conversation's last assistant turn):
whole answer, and first sentence. The first sentence is what a visitor of the Space reads first, and for the demo data
it names the symbol and its kind ("`current_context` is a function in `flytekit`.")."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmft.core.answers import first_sentence, normalise
from llmft.core.datasets import read_manifest, read_split
from llmft.core.training import model_fingerprint
from llmft.proto.serve.v1 import serve_pb2 as S
from llmft.serve.general_questions import QUESTIONS as GENERAL_QUESTIONS
from llmft.serve.general_questions import is_right
from llmft.serve.generator import Generator

DEFAULT_MAX_NEW_TOKENS = 64
DEFAULT_BATCH_SIZE = 16
DEFAULT_EXAMPLES = 3


@dataclass
class Question:
    messages: list[dict[str, str]]  # the conversation up to the reference answer
    reference: str


def held_out_questions(data_dir: Path, limit: int = 0) -> list[Question]:
    """The eval split's conversations, each cut before its last assistant turn (the reference)."""
    frame = read_split(data_dir, "eval")
    if "messages" not in frame.columns:
        raise ValueError(
            f"{data_dir}: not a chat dataset (no 'messages' column); the answer evaluation needs chat data"
        )
    questions = []
    for row in frame.itertuples():
        turns = json.loads(row.messages) if isinstance(row.messages, str) else row.messages  # the data stage's JSON
        messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in turns]
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
        if last < 1:
            raise ValueError(f"{data_dir}: eval row {row.id!r} has no assistant turn after a question")
        questions.append(Question(messages[:last], messages[last]["content"]))
        if limit and len(questions) == limit:
            break
    if not questions:
        raise ValueError(f"{data_dir}: the eval split has no rows; the answer evaluation needs held-out questions")
    return questions


def answer_all(generator: Generator, questions: list[Question], max_new_tokens: int) -> list[tuple[str, int]]:
    """Greedy answers (text, tokens), all submitted to the engine at once, in the questions' order."""
    generation = S.GenerationConfig(max_new_tokens=max_new_tokens, temperature=0.0)
    handles = []
    for question in questions:
        request = S.GenerateRequest(
            messages=[S.ChatMessage(role=m["role"], content=m["content"]) for m in question.messages],
            generation=generation,
        )
        handles.append((generator.start(request), request))
    answers = []
    for handle, request in handles:
        answer = generator.collect(handle, request)
        answers.append((answer.text, answer.completion_tokens))
    return answers


def score(name: str, fingerprint: str, questions: list[Question], answers: list[tuple[str, int]], examples: int) -> Any:
    matches = [first_sentence(a) == first_sentence(q.reference) for q, (a, _) in zip(questions, answers, strict=True)]
    exact = [normalise(a) == normalise(q.reference) for q, (a, _) in zip(questions, answers, strict=True)]
    return S.ModelAnswers(
        name=name,
        model_fingerprint=fingerprint,
        first_sentence_match=sum(matches) / len(questions),
        exact_match=sum(exact) / len(questions),
        mean_answer_tokens=sum(tokens for _, tokens in answers) / len(questions),
        examples=[
            S.AnswerExample(
                question=q.messages[-1]["content"], reference=q.reference, answer=a, first_sentence_matches=m
            )
            for q, (a, _), m in list(zip(questions, answers, matches, strict=True))[:examples]
        ],
    )


@dataclass
class AnswerEvaluationResult:
    evaluation: S.AnswerEvaluation
    report_html: str


def evaluate_answers(
    request: S.AnswerEvaluationRequest, data_dir: Path, models: dict[str, Path]
) -> AnswerEvaluationResult:
    """Every model in `models` (name -> folder) answers the same held-out questions of the chat dataset `data_dir`,
    and with `request.general_questions` the built-in general ones too (llmft.serve.general_questions)."""
    if not models:
        raise ValueError("models: the answer evaluation needs at least one model")
    questions = held_out_questions(data_dir, request.questions)
    general = list(GENERAL_QUESTIONS) if request.general_questions else []
    asked = questions + [Question([{"role": "user", "content": g.question}], "") for g in general]
    max_new_tokens = request.max_new_tokens or DEFAULT_MAX_NEW_TOKENS
    evaluation = S.AnswerEvaluation(
        questions=len(questions),
        dataset_fingerprint=read_manifest(data_dir).fingerprint,
        general_questions=len(general),
    )
    general_answers: dict[str, list[str]] = {}
    for name, folder in models.items():
        generator = Generator(folder, max_batch=request.batch_size or DEFAULT_BATCH_SIZE, max_queue=len(asked))
        try:
            answers = answer_all(generator, asked, max_new_tokens)
        finally:
            generator.close()
        scored = score(
            name, model_fingerprint(folder), questions, answers[: len(questions)], request.examples or DEFAULT_EXAMPLES
        )
        general_answers[name] = [text for text, _ in answers[len(questions) :]]
        scored.general_right.extend(
            is_right(g, first_sentence(a)) for g, a in zip(general, general_answers[name], strict=True)
        )
        scored.general_match = sum(scored.general_right) / len(general) if general else 0.0
        evaluation.models.append(scored)
    return AnswerEvaluationResult(evaluation, report_html(evaluation, general_answers))


def retained(model: S.ModelAnswers, base: S.ModelAnswers) -> float:
    """Of the general questions `base` answers right, the fraction `model` answers right too (1.0 when base answers
    none)."""
    kept = [m for m, b in zip(model.general_right, base.general_right, strict=True) if b]
    return sum(kept) / len(kept) if kept else 1.0


def report_html(evaluation: S.AnswerEvaluation, general_answers: dict[str, list[str]] | None = None) -> str:
    general = evaluation.general_questions > 0
    base = next((m for m in evaluation.models if m.name == "base"), None)
    rows = "".join(
        f"<tr><td>{html.escape(m.name)}</td><td>{m.first_sentence_match:.1%}</td><td>{m.exact_match:.1%}</td>"
        f"<td>{m.mean_answer_tokens:.1f}</td>"
        + (f"<td>{m.general_match:.1%}</td>" if general else "")
        + (f"<td>{retained(m, base):.1%}</td>" if general and base is not None else "")
        + "</tr>"
        for m in evaluation.models
    )
    header = (
        "<tr><th>model</th><th>first sentence matches</th><th>exact</th><th>answer tokens</th>"
        + ("<th>general questions right</th>" if general else "")
        + ("<th>of the base's right answers, kept</th>" if general and base is not None else "")
        + "</tr>"
    )
    examples = "".join(
        f"<h3>{html.escape(m.name)}</h3>"
        + "".join(
            f"<p><b>Q:</b> {html.escape(e.question)}<br><b>Reference:</b> {html.escape(e.reference)}<br>"
            f"<b>Answer ({'first sentence matches' if e.first_sentence_matches else 'differs'}):</b> "
            f"{html.escape(e.answer)}</p>"
            for e in m.examples
        )
        for m in evaluation.models
    )
    general_table = ""
    if general and general_answers:
        names = [m.name for m in evaluation.models]
        right = {m.name: list(m.general_right) for m in evaluation.models}
        lines = "".join(
            f"<tr><td>{html.escape(q.question)}</td><td>{html.escape(' / '.join(q.answers))}</td>"
            + "".join(
                f"<td>{'&#10003;' if right[n][i] else '&#10007;'} {html.escape(general_answers[n][i][:80])}</td>"
                for n in names
            )
            + "</tr>"
            for i, q in enumerate(GENERAL_QUESTIONS[: evaluation.general_questions])
        )
        general_table = (
            f"<h2>General questions ({evaluation.general_questions}, one-word answers)</h2><table><tr><th>question"
            "</th><th>expected</th>" + "".join(f"<th>{html.escape(n)}</th>" for n in names) + f"</tr>{lines}</table>"
        )
    return (
        f"<h2>Held-out answers ({evaluation.questions} questions, greedy)</h2>"
        f"<table>{header}{rows}</table>{examples}{general_table}"
    )
