"""General questions with one-word answers (capitals, small arithmetic, colours) that an instruction-tuned base model
answers and a fine-tuned one should still answer: the answer evaluation asks them beside the held-out questions
(`AnswerEvaluationRequest.general_questions`), so a run shows, and a gate can refuse, a model that learned the new
task and forgot what its base knew. An answer is right when one of the expected words is a whole word of its first
sentence, in any case."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class GeneralQuestion:
    question: str
    answers: tuple[str, ...]  # any one of them, as a whole word of the answer's first sentence


def _q(question: str, *answers: str) -> GeneralQuestion:
    return GeneralQuestion(question, answers)


QUESTIONS: tuple[GeneralQuestion, ...] = (
    _q("What is the capital of France?", "Paris"),
    _q("What is the capital of Germany?", "Berlin"),
    _q("What is the capital of Italy?", "Rome"),
    _q("What is the capital of Spain?", "Madrid"),
    _q("What is the capital of Japan?", "Tokyo"),
    _q("What is the capital of Egypt?", "Cairo"),
    _q("What is the capital of Russia?", "Moscow"),
    _q("What is the capital of the United Kingdom?", "London"),
    _q("What is the capital of China?", "Beijing"),
    _q("What is the capital of Canada?", "Ottawa"),
    _q("What is 2 + 2?", "4", "four"),
    _q("What is 3 + 5?", "8", "eight"),
    _q("What is 10 - 3?", "7", "seven"),
    _q("What is 2 times 3?", "6", "six"),
    _q("What is 9 + 1?", "10", "ten"),
    _q("What is 7 + 6?", "13", "thirteen"),
    _q("What is 12 - 4?", "8", "eight"),
    _q("What is 5 times 5?", "25", "twenty-five"),
    _q("What is 100 divided by 10?", "10", "ten"),
    _q("What is 6 + 3?", "9", "nine"),
    _q("What colour is the sky on a clear day?", "blue"),
    _q("What colour is grass?", "green"),
    _q("What colour is snow?", "white"),
    _q("What colour is a ripe banana?", "yellow"),
    _q("What colour is coal?", "black"),
    _q("What colour is a ripe tomato?", "red"),
    _q("What colour are strawberries?", "red"),
    _q("What colour is chocolate?", "brown"),
    _q("What colour is a lemon?", "yellow"),
    _q("What colour is milk?", "white"),
)


def is_right(question: GeneralQuestion, first_sentence: str) -> bool:
    return any(
        re.search(rf"(?<![\w-]){re.escape(answer)}(?![\w-])", first_sentence, flags=re.IGNORECASE)
        for answer in question.answers
    )
