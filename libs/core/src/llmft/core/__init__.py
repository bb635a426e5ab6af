"""llmft.core: the code two or more llmft stages share (model and tokenizer loading, the built-in presets,
fingerprints and provenance, the training-recipe mapping onto transformers/peft/deepspeed/bitsandbytes, evaluation,
model artifacts and Deck plots). It never imports flytekit or any stage."""

__version__ = "0.12.0"
