"""llmft.train_sft: supervised fine-tuning on chat conversations with the model's chat template, loss on the
assistant's tokens only. Input: a TrainingRequest, a chat dataset folder (and optionally an upstream model folder);
output: a model folder in Hugging Face format and its ModelArtifact."""

__version__ = "0.5.0"
STAGE = "llmft.train_sft"
