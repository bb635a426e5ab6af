"""llmft.rlhf: learning from preferences. Reward-model training (a scalar head scoring answers) and DPO (direct
preference optimisation of the policy) with trl, on preference-pair datasets. Inputs: a RewardModelRequest or
DpoRequest, a preference dataset folder and a base or upstream model folder; outputs: a model folder and a
RewardModelReport or DpoReport."""

__version__ = "0.3.0"
STAGE = "llmft.rlhf"
