"""The error every request check in llmft.core raises, in a module of its own so that the modules that check (the
recipe, the chat templates) can share it without importing each other."""


class RecipeError(ValueError):
    """A training recipe that cannot run; the message names the field."""
