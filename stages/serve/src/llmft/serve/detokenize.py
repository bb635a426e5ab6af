"""Text of a growing answer, decoded as it grows without decoding the whole answer at every token.

Decoding a token alone is wrong (a character can span tokens; a tokenizer may join pieces differently in context),
and decoding the whole sequence at every step costs O(n) per token, O(n^2) per answer. `IncrementalText` decodes a
short window instead: the tokens since the last complete piece, against the same window without the newest tokens, and
adds the difference once it ends in a complete character (the scheme of text-generation servers' detokenizers)."""

from __future__ import annotations

from collections.abc import Callable

REPLACEMENT = "\ufffd"  # what decoding an incomplete UTF-8 sequence gives


class IncrementalText:
    """`add(token)` returns the text the token completes ("" while a character is incomplete); `text` is all of it."""

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self.decode = decode
        self.tokens: list[int] = []
        self.text = ""
        self._prefix = 0  # the window starts here: context for the tokens after `_read`
        self._read = 0  # tokens before this are in `text`

    def add(self, token: int) -> str:
        self.tokens.append(token)
        before = self.decode(self.tokens[self._prefix : self._read])
        now = self.decode(self.tokens[self._prefix :])
        if len(now) <= len(before) or now.endswith(REPLACEMENT):
            return ""
        delta = now[len(before) :]
        self._prefix, self._read = self._read, len(self.tokens)
        self.text += delta
        return delta


def first_stop(text: str, stops: list[str], new: int) -> int:
    """Where the first stop string starts in `text`, looking only where the last `new` characters could complete
    one; -1 for none."""
    if not stops:
        return -1
    longest = max(len(s) for s in stops)
    start = max(0, len(text) - new - longest + 1)
    found = [i for i in (text.find(s, start) for s in stops) if i >= 0]
    return min(found) if found else -1
