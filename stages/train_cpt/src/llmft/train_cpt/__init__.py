"""llmft.train_cpt: continued pre-training on raw text. Input: a TrainingRequest, a raw-text dataset folder (and
optionally an upstream model folder); output: a model folder in Hugging Face format and its ModelArtifact."""

__version__ = "0.5.0"
STAGE = "llmft.train_cpt"
