"""PPO, read top to bottom: check the request, the prompts and the three models' contracts (the policy a causal LM, the
reward model a one-output sequence classifier, one tokenizer for both) before any weights load; evaluate the SFT
policy on held-out prompts; optimise it with trl's PPOTrainer (trl.experimental.ppo: a frozen reference, the reward
model, a value model initialised from the reward model, a per-token KL penalty against the reference) with
checkpoints and resume; evaluate the PPO policy the same way; save and describe it."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmft.core import chat_templates
from llmft.core.models import load_frozen_model, load_tokenizer, resolve_model_dir
from llmft.core.recipe import RecipeError, load_model_for_training, resolve_recipe, training_arguments
from llmft.core.training import (
    build_artifact,
    copy_training_logs,
    latest_checkpoint,
    load_base,
    log_history_series,
    run_clock,
    run_train_loss,
    save_model,
)
from llmft.proto.rlhf.v1 import rlhf_pb2
from llmft.proto.training.v1 import training_pb2 as T
from llmft.rlhf import STAGE, __version__
from llmft.rlhf import evaluation as ev
from llmft.rlhf.contracts import check_causal_lm, check_reward_model, check_same_family, check_shared_tokenizer
from llmft.rlhf.preferences import end_of_turn_id, load_prompts

log = logging.getLogger(__name__)

KL_ESTIMATORS = {"k1", "k3"}
VALUE_WEIGHTS = "value_model.safetensors"
POLICY_LOSS = "loss/policy_avg"  # what trl's PPOTrainer logs each step as its policy loss


def resolve_ppo(config: rlhf_pb2.PpoConfig) -> rlhf_pb2.PpoConfig:
    """A copy with every unset field at its default (trl's, except a shorter answer for CPU-sized runs); errors name
    the field."""
    resolved = rlhf_pb2.PpoConfig()
    resolved.CopyFrom(config)
    defaults: dict[str, Any] = dict(
        num_ppo_epochs=4,
        response_length=ev.DEFAULT_NEW_TOKENS,
        kl_coef=0.05,
        cliprange=0.2,
        vf_coef=0.1,
        temperature=ev.DEFAULT_TEMPERATURE,
        kl_estimator="k1",
        num_mini_batches=1,
    )
    for name, value in defaults.items():
        if not getattr(resolved, name):
            setattr(resolved, name, value)
    if resolved.kl_estimator not in KL_ESTIMATORS:
        raise RecipeError(f"ppo.kl_estimator: {resolved.kl_estimator!r} is not one of {sorted(KL_ESTIMATORS)}")
    for name in ("kl_coef", "cliprange", "vf_coef", "temperature", "missing_eos_penalty"):
        value = getattr(resolved, name)
        if not value == value or value < 0 or value == float("inf"):  # NaN, negative, infinite
            raise RecipeError(f"ppo.{name}: {value} is not a finite number >= 0")
    if resolved.response_length > 4096:
        raise RecipeError(f"ppo.response_length: {resolved.response_length} is over 4096 tokens")
    return resolved


def resumable_trainer_class() -> Any:
    """trl's PPOTrainer saves checkpoints but cannot resume from one. This subclass also saves the value model into
    each checkpoint and, given one, restores the policy, value model, optimizer, scheduler, RNG and trainer state
    (the step, episode and log history) and runs only the updates that remain."""
    import torch
    from safetensors.torch import load_model as load_weights
    from safetensors.torch import save_model as save_weights
    from transformers import TrainerCallback
    from trl.experimental.ppo import PPOTrainer
    from trl.experimental.ppo.ppo_trainer import OnlineTrainerState

    class RestoreState(TrainerCallback):
        def __init__(self, saved: Any, total: int) -> None:
            self.saved, self.total = saved, total

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            state.global_step, state.episode = self.saved.global_step, self.saved.episode
            state.log_history, state.max_steps = list(self.saved.log_history), self.total

    def load_policy(policy: Any, folder: Path) -> None:
        """The policy's weights as save_model wrote them: a peft adapter, or full weights (tied ones left out)."""
        from safetensors.torch import load_file

        if (folder / "adapter_model.safetensors").is_file():
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(policy, load_file(str(folder / "adapter_model.safetensors")))
            return
        missing, unexpected = policy.load_state_dict(load_file(str(folder / "model.safetensors")), strict=False)
        tied = {"lm_head.weight"} if getattr(policy.config, "tie_word_embeddings", False) else set()
        if unexpected or set(missing) - tied:
            raise RuntimeError(
                f"{folder}: the policy's weights do not match (missing {missing}, unexpected {unexpected})"
            )
        policy.tie_weights()

    class SkipBatches:
        def __init__(self, loader: Any, skip: int, resumed: Any) -> None:
            self.loader, self.skip, self.resumed = loader, skip, resumed

        def __len__(self) -> int:
            return len(self.loader)

        def __iter__(self) -> Any:
            iterator = iter(self.loader)
            for _ in range(self.skip):
                try:
                    next(iterator)
                except StopIteration:
                    iterator = iter(self.loader)
                    next(iterator)
            if self.skip or self.resumed:
                self.skip = 0
                self.resumed, resumed = None, self.resumed
                if resumed:
                    resumed()
            yield from iterator

    class ResumablePPOTrainer(PPOTrainer):  # type: ignore[misc]
        # Read by transformers 5's Trainer._save on ranks other than 0; trl 1.12.0's PPOTrainer never sets it.
        is_distributed_loading_by_transformers = False

        def create_model_card(self, *args: Any, **kwargs: Any) -> None:
            """No trl model card in checkpoints: llmft describes the model in its artifact (and the serve stage writes
            the card), and trl's reads `self.model.config`, which the DDP wrapper of a multi-process run lacks."""

        def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
            """trl's save_model saves the policy only when the model it holds is the unwrapped policy-and-value
            pair; in a multi-process run it is wrapped (DDP), so unwrap it first."""
            wrapped: Any = getattr(self, "model")  # noqa: B009  (set by PPOTrainer.__init__, untyped)
            self.model = self.accelerator.unwrap_model(wrapped)
            try:
                super().save_model(output_dir, _internal_call)
            finally:
                self.model = wrapped

        def _save_checkpoint(self, model: Any, trial: Any) -> None:
            folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
            if self.args.should_save:
                folder.mkdir(parents=True, exist_ok=True)
                save_weights(self.accelerator.unwrap_model(self.model).value_model, str(folder / VALUE_WEIGHTS))
            super()._save_checkpoint(model, trial)  # trainer_state.json last: it marks the checkpoint complete

        def train(self, resume_from_checkpoint: str | None = None) -> None:  # type: ignore[override]
            if not resume_from_checkpoint:
                return super().train()
            checkpoint = str(resume_from_checkpoint)
            wrapper = self.accelerator.unwrap_model(self.model)
            load_policy(wrapper.policy, Path(checkpoint))
            load_weights(wrapper.value_model, str(Path(checkpoint) / VALUE_WEIGHTS))
            device = self.accelerator.device
            self.optimizer.load_state_dict(
                torch.load(Path(checkpoint) / "optimizer.pt", map_location=device, weights_only=True)
            )
            self.lr_scheduler.load_state_dict(torch.load(Path(checkpoint) / "scheduler.pt", weights_only=True))
            saved = OnlineTrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
            total = self.args.num_total_batches
            loader: Any = getattr(self, "dataloader")  # noqa: B009  (set by PPOTrainer.__init__, untyped)
            self.args.num_total_batches = total - saved.global_step
            self.callback_handler.callbacks.insert(0, RestoreState(saved, total))  # before any callback looks
            # The prompts come in the order an uninterrupted run would draw them (within the first pass over the
            # data): skip the batches already trained on, then sample rollouts from the checkpoint's RNG state.
            self.dataloader = SkipBatches(loader, saved.global_step, lambda: self._load_rng_state(checkpoint))
            try:
                return super().train()
            finally:
                self.args.num_total_batches, self.dataloader = total, loader

    return ResumablePPOTrainer


@dataclass
class PpoResult:
    report: rlhf_pb2.PpoReport
    report_html: str


def train_ppo(
    request: rlhf_pb2.PpoRequest,
    data_dir: Path,
    out_dir: Path,
    base_model_dir: Path | None = None,
    reward_model_dir: Path | None = None,
    checkpoint_dir: Path | None = None,
    distributed: bool = False,
    callbacks: list[Any] | None = None,
) -> PpoResult:
    """Optimises the policy in `base_model_dir` (or the request's `base_model`) against the reward model in
    `reward_model_dir` (or the request's `reward_model`) on the prompts in `data_dir`. A `checkpoint_dir` holding
    checkpoints of an earlier attempt resumes from the latest."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl.experimental.ppo import PPOConfig

    recipe = resolve_recipe(request.recipe)
    ppo = resolve_ppo(request.ppo)
    if recipe.zero.stage:
        raise RecipeError(
            f"recipe.zero.stage: {recipe.zero.stage}; PPO runs on one process or data-parallel (DDP) across the "
            "Elastic launch's processes, without ZeRO: trl's PPOTrainer builds its own accelerator and does not take "
            "the recipe's deepspeed config. Set recipe.zero.stage to 0"
        )
    if not request.base_model and base_model_dir is None:
        raise RecipeError("base_model: empty and no upstream policy folder given; name the policy to optimise")
    if not request.reward_model and reward_model_dir is None:
        raise RecipeError("reward_model: empty and no reward model folder given; name the reward model")
    prompts = load_prompts(data_dir, ppo.eval_prompts or recipe.eval.max_eval_samples)
    base = load_base(request.base_model, "", base_model_dir, recipe, distributed, chat=chat_templates.REQUIRED)
    reward_dir = resolve_model_dir(str(reward_model_dir) if reward_model_dir else request.reward_model).directory
    check_causal_lm(base.directory, "policy")
    check_reward_model(reward_dir)
    check_same_family(base.directory, reward_dir, request.allow_mixed_families)
    tokenizer = base.tokenizer
    check_shared_tokenizer(
        {"policy": (base.directory, tokenizer), "reward model": (reward_dir, load_tokenizer(reward_dir))}
    )
    room = recipe.max_length - ppo.response_length
    if room < 2:
        raise RecipeError(
            f"recipe.max_length {recipe.max_length} leaves no room for a prompt beside ppo.response_length "
            f"{ppo.response_length}"
        )
    train_ids = ev.prompt_ids(tokenizer, prompts.train, room, f"{data_dir}/train.parquet")
    eval_ids = ev.prompt_ids(tokenizer, prompts.eval, room, f"{data_dir}/eval.parquet")

    policy = load_model_for_training(base.directory, recipe)
    reward_model = load_frozen_model(reward_dir, AutoModelForSequenceClassification)
    value_model = load_frozen_model(reward_dir, AutoModelForSequenceClassification).train()
    settings = rlhf_pb2.PolicyEvaluationRequest(
        max_new_tokens=ppo.response_length, temperature=ppo.temperature, seed=recipe.seed, max_length=recipe.max_length
    )
    scale = ev.reward_scale(reward_model, tokenizer, prompts.eval_pairs, recipe.max_length)
    chosen = ev.chosen_answers(prompts.eval_pairs)
    sft = ev.evaluate_policy("sft", policy, None, reward_model, tokenizer, eval_ids, settings, chosen)

    work = Path(checkpoint_dir) if checkpoint_dir else Path(tempfile.mkdtemp(prefix="llmft-ppo-"))
    arguments = training_arguments(recipe, work)
    batch = recipe.schedule.per_device_batch_size * recipe.schedule.gradient_accumulation_steps
    episodes = ppo.total_episodes or (recipe.schedule.max_steps * batch * (_world_size() if distributed else 1))
    args = PPOConfig(
        **{
            k: v for k, v in arguments.items() if k not in {"include_num_input_tokens_seen", "activation_checkpointing"}
        },
        total_episodes=episodes or None,
        num_ppo_epochs=ppo.num_ppo_epochs,
        num_mini_batches=ppo.num_mini_batches,
        response_length=ppo.response_length,
        temperature=ppo.temperature,
        kl_coef=ppo.kl_coef,
        kl_estimator=ppo.kl_estimator,
        cliprange=ppo.cliprange,
        vf_coef=ppo.vf_coef,
        missing_eos_penalty=ppo.missing_eos_penalty or None,
        stop_token_id=end_of_turn_id(tokenizer),
        num_sample_generations=0,
        local_rollout_forward_batch_size=recipe.schedule.per_device_batch_size,
        gradient_checkpointing=False,
    )
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # rollouts generate after the prompt
    try:
        trainer = resumable_trainer_class()(
            args=args,
            processing_class=tokenizer,
            model=policy,
            ref_model=None,  # a frozen copy of the policy (with LoRA: the policy with its adapter off)
            reward_model=reward_model,
            value_model=value_model,
            train_dataset=Dataset.from_dict({"input_ids": train_ids}),
            eval_dataset=Dataset.from_dict({"input_ids": eval_ids}),
            callbacks=callbacks,
        )
        checkpoint = latest_checkpoint(work)
        clock = run_clock()
        trainer.add_callback(clock)
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        seconds = clock.seconds()
    finally:
        tokenizer.padding_side = padding_side
    if not trainer.is_world_process_zero():
        return PpoResult(rlhf_pb2.PpoReport(), "")

    trained = trainer.accelerator.unwrap_model(trainer.model).policy.eval()
    after = ev.evaluate_policy(
        "ppo", trained, _reference(trainer, settings), reward_model, tokenizer, eval_ids, settings, chosen
    )
    comparison = ev.compare(sft, [after], scale, len(eval_ids))
    comparison.reward_model_fingerprint = ev.folder_fingerprint(reward_dir)
    comparison.reference_fingerprint = ev.folder_fingerprint(base.directory)
    comparison.dataset_fingerprint = prompts.manifest.fingerprint

    history = trainer.state.log_history
    whole_run_loss = run_train_loss(history, POLICY_LOSS)
    metrics = T.TrainingMetrics(
        train_loss=whole_run_loss or 0.0, steps=int(trainer.state.global_step), train_seconds=seconds
    )
    fmt = save_model(trained, tokenizer, recipe, out_dir)
    copy_training_logs(work, out_dir)
    artifact = build_artifact(
        model=trained,
        out_dir=out_dir,
        fmt=fmt,
        base_name=base.name,
        base_dir=base.directory,
        request=request,
        stage=STAGE,
        stage_version=__version__,
        input_fingerprints=[prompts.manifest.fingerprint, comparison.reward_model_fingerprint],
        metrics=metrics,
        chat_template=base.chat_template,
        precision=recipe.precision,
    )
    evaluated = {e.name: e for e in comparison.policies}
    report = rlhf_pb2.PpoReport(
        policy=artifact,
        mean_reward_before=evaluated["sft"].mean_reward,
        mean_reward_after=evaluated["ppo"].mean_reward,
        kl=evaluated["ppo"].kl_to_reference,
        episodes=int(trainer.state.episode),
        evaluation=comparison,
    )
    html = ppo_report_html(
        f"PPO {request.run_name or prompts.manifest.name}", report, history, prompts.eval, [sft, after]
    )
    return PpoResult(report, html)


def _reference(trainer: Any, settings: rlhf_pb2.PolicyEvaluationRequest) -> Any:
    """The frozen reference's log-probabilities of answers: trl's copy of the policy, or with LoRA, the policy with its
    adapter disabled."""
    if trainer.ref_model is not None:
        return ev.reference_of(trainer.ref_model, settings.temperature)
    policy = trainer.accelerator.unwrap_model(trainer.model).policy

    def logprobs(prompts: list[list[int]], answers: list[list[int]]) -> list[float]:
        with trainer.null_ref_context():
            return ev.answer_logprobs(policy, prompts, answers, settings.temperature)

    return logprobs


def _world_size() -> int:
    from llmft.core.distributed import world_size

    return world_size()


def ppo_report_html(
    title: str, report: rlhf_pb2.PpoReport, history: list[dict[str, Any]], prompts: list[str], answers: list[Any]
) -> str:
    """Deck page: reward and KL curves over PPO updates, the policy and value losses, and the held-out comparison
    with the answers side by side."""
    from llmft.core import decks

    curves = []
    for keys, label in (
        ((("objective/scores", "reward-model score"), ("objective/rlhf_reward", "score - KL penalty")), "reward"),
        ((("objective/kl", "KL to reference"),), "KL (nats per answer)"),
        ((("loss/policy_avg", "policy"), ("loss/value_avg", "value")), "loss"),
    ):
        series = {name: log_history_series(history, key) for key, name in keys}
        if any(xs for xs, _ in series.values()):
            curves.append(decks.line_plot(series, f"{label} over PPO updates", "update", label))
    return decks.page(ev.comparison_html(title, report.evaluation, prompts, answers), *curves)
