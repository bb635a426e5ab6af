"""The answer evaluation: held-out questions scored by first sentence, and the built-in general questions scored by
their expected words, each model answering through a Generator (here one that answers from a script, so the test
knows which answers are right)."""

import json
from pathlib import Path
from typing import Any

import pytest

from llmft.proto.serve.v1 import serve_pb2 as S
from llmft.serve import evaluation
from llmft.serve.general_questions import QUESTIONS, GeneralQuestion, is_right
from llmft.testing import write_chat_dataset


@pytest.mark.parametrize(
    ("answers", "sentence", "right"),
    [
        (("Paris",), "The capital of France is Paris", True),
        (("Paris",), "the capital is paris", True),
        (("Paris",), "It is Parisian", False),
        (("10", "ten"), "100 divided by 10 is ten", True),
        (("10", "ten"), "It is 100", False),
        (("4", "four"), "2 + 2 = 4", True),
        (("red",), "Strawberries are red-ish", False),
        (("blue",), "", False),
    ],
)
def test_a_general_answer_is_right_when_an_expected_word_is_a_whole_word(
    answers: tuple[str, ...], sentence: str, right: bool
) -> None:
    assert is_right(GeneralQuestion("q", answers), sentence) is right


def test_the_general_questions_are_thirty_with_one_word_answers() -> None:
    assert len(QUESTIONS) == 30 and len({q.question for q in QUESTIONS}) == 30
    assert all(q.answers and all(len(a.split()) == 1 for a in q.answers) for q in QUESTIONS)


class ScriptedGenerator:
    """A Generator that answers a question from `script` (question -> answer), the reference's text otherwise."""

    scripts: dict[str, dict[str, str]] = {}

    def __init__(self, folder: Path, max_batch: int, max_queue: int) -> None:
        self.script = self.scripts[Path(folder).name]
        self.room = max_queue

    def start(self, request: S.GenerateRequest) -> str:
        self.room -= 1  # every question is submitted before any answer is collected: the queue must hold them all
        assert self.room >= 0
        return request.messages[-1].content

    def collect(self, handle: str, request: S.GenerateRequest) -> Any:
        text = self.script.get(handle, "I do not know.")
        return type("Answer", (), {"text": text, "completion_tokens": len(text.split())})()

    def close(self) -> None:
        pass


def test_general_questions_are_scored_per_model_and_the_report_shows_what_each_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_chat_dataset(tmp_path / "chat", train_rows=4, eval_rows=20)
    held_out = [json.loads(m) for m in __import__("pandas").read_parquet(data / "eval.parquet")["messages"]]
    references = {m[0]["content"]: m[1]["content"] for m in held_out}
    capitals = {q.question: f"It is {q.answers[0]}." for q in QUESTIONS[:10]}
    colours = {q.question: f"{q.answers[0].title()}, of course." for q in QUESTIONS[20:]}
    ScriptedGenerator.scripts = {
        "base": {**capitals, **colours},  # 20 of 30 general questions, none of the held-out ones
        "sft": {**references, **capitals},  # every held-out question; it forgot the colours
    }
    monkeypatch.setattr(evaluation, "Generator", ScriptedGenerator)
    monkeypatch.setattr(evaluation, "model_fingerprint", lambda folder: f"sha256:{Path(folder).name}")
    models = {"base": tmp_path / "base", "sft": tmp_path / "sft"}
    request = S.AnswerEvaluationRequest(general_questions=True, max_new_tokens=16)
    result = evaluation.evaluate_answers(request, data, models)

    assert result.evaluation.questions == 20 and result.evaluation.general_questions == 30
    base, sft = result.evaluation.models
    assert (base.first_sentence_match, sft.first_sentence_match) == (0.0, 1.0)
    assert base.general_match == pytest.approx(20 / 30) and sft.general_match == pytest.approx(10 / 30)
    assert list(base.general_right) == [True] * 10 + [False] * 10 + [True] * 10
    assert list(sft.general_right) == [True] * 10 + [False] * 20
    assert evaluation.retained(sft, base) == pytest.approx(0.5)
    assert "of the base's right answers, kept" in result.report_html and "50.0%" in result.report_html
    assert "Coal" not in result.report_html and "Black, of course." in result.report_html

    without = evaluation.evaluate_answers(S.AnswerEvaluationRequest(max_new_tokens=16), data, models)
    assert without.evaluation.general_questions == 0
    assert [m.general_match for m in without.evaluation.models] == [0.0, 0.0]
    assert all(not m.general_right for m in without.evaluation.models)
