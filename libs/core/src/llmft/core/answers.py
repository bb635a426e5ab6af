"""How a model's answer is compared with a reference answer, the same way in every stage that scores answers (the
serve stage's held-out answer evaluation, the RLHF stage's correctness on held-out preference pairs): whitespace is
normalised, and the first sentence, what a reader sees first, is compared whole. For the demo's data the first
sentence names the symbol, its kind and module ("`current_context` is a function in `flytekit`."); for the RLHF
demo's arithmetic it is the sum ("7 plus 5 is 12.")."""

from __future__ import annotations

import re

# A sentence ends at . ! or ? followed by whitespace or the end of the text; a dot inside `flytekit.core` does not.
_SENTENCE_END = re.compile(r"(?<=[.!?])(?:\s|$)")


def normalise(text: str) -> str:
    return " ".join(text.split())


def first_sentence(text: str) -> str:
    """The first sentence of `text`, whitespace-normalised (the whole text when it has no sentence end)."""
    text = normalise(text)
    end = _SENTENCE_END.search(text)
    return text[: end.start()] if end else text


def first_sentence_matches(answer: str, reference: str) -> bool:
    return first_sentence(answer) == first_sentence(reference)
