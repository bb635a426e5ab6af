"""Deck publishing for llmft's tasks. The stages render their reports as HTML (llmft.core.decks builds the tables and
plots, so a CLI can write the same page to a file); a task publishes that page as a Flyte Deck here."""

from __future__ import annotations

from typing import Any

from flytekit import Deck


def publish(title: str, html: str) -> None:
    """Adds `html` to the running task's Decks under `title` (empty pages are skipped)."""
    if html:
        Deck(title, html)


def task_deck_fields() -> tuple[Any, ...]:
    """flytekit's default Decks less "Dependencies", which runs `pip list` and `pip freeze` in subprocesses after the
    task (~1 s each time); an llmft task's packages are pinned by its ImageSpec (llmft.flyte.images)."""
    from flytekit.deck import DeckField

    return (DeckField.SOURCE_CODE, DeckField.TIMELINE, DeckField.INPUT, DeckField.OUTPUT)
