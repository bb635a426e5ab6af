"""llmft.orchestration: Flyte workflows and launch plans composing the stages' tasks. It holds no training or data
logic: only the wiring between tasks and the default requests of each workflow."""

__version__ = "0.8.0"
