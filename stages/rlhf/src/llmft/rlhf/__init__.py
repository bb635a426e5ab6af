"""llmft.rlhf: learning from preferences with trl. Reward-model training (a scalar head scoring answers), PPO (the
policy against the reward model, KL-penalised against its frozen reference) and DPO (direct preference optimisation),
and the held-out comparison of policies. Inputs: a request (RewardModelRequest, PpoRequest, DpoRequest,
PolicyEvaluationRequest), a preference or prompt dataset folder and model folders; outputs: a model folder and a
report (RewardModelReport, PpoReport, DpoReport, PolicyComparison)."""

__version__ = "0.9.0"
STAGE = "llmft.rlhf"
