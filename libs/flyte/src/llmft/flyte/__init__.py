"""llmft.flyte: the Flyte face the stages' tasks modules share. Blob types whose cache hash is their content
fingerprint, the training task body (Elastic launch, resource overrides, checkpoints mirrored into Flyte's checkpoint
store), Deck publishing, the stages' ImageSpecs, and the run summary task. Stage cores never import it; only a stage's
`tasks.py` does."""

__version__ = "0.6.0"
