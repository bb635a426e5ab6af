"""llmft.orchestration: the pipeline. Every decision about a run is made in one of these modules:

- `config`: what runs. A config file (a PipelineRequest) read, completed and checked whole; which stages run, what each
  trains from (`upstream`, `lineage`), which model is the candidate, the metrics a gate may use.
- `gate`: what is published. The contenders ranked on held-out metrics, the candidate checked against its baseline.
- `report`: what the run tells you (the provenance report, its Deck and terminal lines).
- `pipeline`: the Flyte workflows that wire the stages' tasks in that order; `launch_plans`, `batch`, `rlhf`,
  `skeleton`: the other entry points; `local`: the runner behind `python -m llmft.orchestration run`.

It holds no training, data or serving logic: that is in the stages, reached only through their `tasks` modules."""

__version__ = "0.11.0"
