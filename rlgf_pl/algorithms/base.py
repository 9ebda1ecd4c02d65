"""The agent: learner, critic(s), frozen reference, KL controller and the PPO update.

An algorithm is a plan (who writes which tokens) and a choice of critic; subclasses override
`plan` and `critic_name`, nothing else of the loop. The agent reads the environment (the data module:
prompts, guide, reward, randomness); the environment never calls the agent.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Literal

import torch
from lightning.pytorch import LightningModule
from torch import Tensor

from rlgf_pl.algorithms.checkpointing import CheckpointState
from rlgf_pl.algorithms.evaluation import EvaluationSteps
from rlgf_pl.algorithms.losses import ppo_loss
from rlgf_pl.algorithms.models import build_agent_models
from rlgf_pl.algorithms.optimization import Optimization
from rlgf_pl.algorithms.preparation import RolloutPreparation
from rlgf_pl.algorithms.safeguards import Safeguards
from rlgf_pl.algorithms.sharding import full_parameters, prepare_strategy, shards_parameters
from rlgf_pl.engines.base import RolloutEngine
from rlgf_pl.engines.hf import HFEngine
from rlgf_pl.errors import ConfigError
from rlgf_pl.policies.base import Policy
from rlgf_pl.policies.critic import ValueModel
from rlgf_pl.policies.generation import GenerationSettings
from rlgf_pl.policies.loading import KindSetting, check_kind
from rlgf_pl.policies.lora import LoraSettings, as_lora_settings
from rlgf_pl.rollout.advantages import KLEstimator, kl_estimate, masked_mean
from rlgf_pl.rollout.containers import PPOBatch
from rlgf_pl.rollout.kl import KLController
from rlgf_pl.rollout.plan import Plan
from rlgf_pl.rollout.sampler import RolloutSampler
from rlgf_pl.rollout.score_scaling import RunningMoments, ScoreScaling
from rlgf_pl.zoo.registry import resolve_model_path

if TYPE_CHECKING:
    from rlgf_pl.data.datamodule import RolloutDataModule

class RLGFModule(RolloutPreparation, CheckpointState, Safeguards, EvaluationSteps, Optimization, LightningModule):
    """Base agent: PPO-style updates of a learner (causal or seq2seq LM) against a frozen reference.

    The networks are built in `configure_model`, so a strategy can wrap or shard them and a checkpoint
    loads into them; constructing the module (or printing its config) loads no weights. Zoo models it names
    (`zoo:...`) are built on first use at construction, outside any running Trainer.

    Args:
        model: Learner: Hugging Face hub id, local directory or zoo name of a causal or seq2seq LM.
        kind: 'causal', 'seq2seq', or 'auto' (from the model's config: `is_encoder_decoder`).
        dtype: Weights dtype ('float32', 'bfloat16', 'float16'); null keeps the checkpoint's.
        critic_share_trunk: Put the value head on the learner's trunk instead of its own copy.
        critic_model: Where the critics' trunks start: null copies the learner's backbone; any model that
            `AutoModel` loads and that shares the learner's tokenizer (and kind) will do (e.g. the reward
            model's trunk, as TRL starts its value model).
        lr: AdamW learning rate.
        critic_lr: Learning rate of the critics (trunk and head); null uses `lr`. A critic whose trunk is
            not the learner's can take a larger step than the policy.
        weight_decay: AdamW weight decay.
        lr_schedule: 'linear' (decay to 0 over the run) or 'constant'.
        gamma: Discount.
        gae_lambda: GAE lambda.
        clip_range: PPO ratio clip epsilon.
        value_clip_range: Value clip around the old values; null disables it.
        vf_coef: Weight of the value loss.
        ent_coef: Weight of the entropy bonus.
        sft_coef: Weight of a supervised term: the NLL of one reference continuation per prompt (drawn among the
            prompt's references), added to the loss of every minibatch. TRIL's target regularization, which its
            CommonGen runs weight 0.1. Needs a task with references; 0 (the default) turns it off.
        kl_coef: KL penalty coefficient (the initial one when `kl_target` is set).
        kl_target: Target KL per trajectory for the adaptive controller; null keeps `kl_coef` fixed.
        kl_horizon: Adaptive KL controller horizon, in trajectories.
        kl_penalty: Apply the KL penalty to learner tokens (off reproduces the authors' guided code).
        kl_estimator: The per-token KL estimate the penalty uses: 'k1' (log pi - log pi_ref, the paper's and
            TRL's default), or 'k2' / 'k3', which are never negative. With top-k, top-p or min_new_tokens the
            tokens are not sampled from pi itself, k1 can average below zero, and its penalty then pays the
            learner to drift (the logged `train/kl` turns negative); k2 or k3 keep it a penalty.
        whiten_advantages: Normalize advantages over policy-gradient tokens.
        forward_batch_size: Trajectories per no-grad forward pass when preparing rollouts.
        score_scaling: Scale the rewards by their running std over the run ('std', as TRL's use_score_scaling)
            or standardize them with the running mean and std ('mean_std', TRL's use_score_norm) before they
            enter the returns. Null (the default) trains on the rewards as scored; logged rewards are always
            the raw ones.
        score_clip: Clip the (scaled) rewards to [-score_clip, score_clip]; null (the default) does not clip.
        lora: LoRA adapters (peft) instead of full fine-tuning: `{r, alpha, dropout, target_modules}`. The
            learner's adapters, the value head and the adapters of a critic's own trunk train; the reference is
            the learner with its adapters disabled; checkpoints hold only what trains. Null trains every weight.
        engine: What generates the learner's training rollouts: null or `rlgf_pl.engines.HFEngine` (in-process
            `generate`), or `rlgf_pl.engines.ServedEngine` (a server that gets the learner's weights before each
            epoch's rollouts). Evaluation always generates in-process. Not a hyperparameter: a resumed run may
            change it.
    """

    def __init__(
        self,
        model: str,
        kind: KindSetting = "auto",
        dtype: str | None = None,
        critic_share_trunk: bool = False,
        critic_model: str | None = None,
        lr: float = 1e-5,
        critic_lr: float | None = None,
        weight_decay: float = 0.0,
        lr_schedule: Literal["linear", "constant"] = "linear",
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_range: float = 0.2,
        value_clip_range: float | None = 0.2,
        vf_coef: float = 0.5,
        ent_coef: float = 0.0,
        sft_coef: float = 0.0,
        kl_coef: float = 0.001,
        kl_target: float | None = None,
        kl_horizon: int = 10_000,
        kl_penalty: bool = True,
        kl_estimator: KLEstimator = "k1",
        whiten_advantages: bool = True,
        forward_batch_size: int = 32,
        score_scaling: ScoreScaling | None = None,
        score_clip: float | None = None,
        lora: LoraSettings | None = None,
        engine: RolloutEngine | None = None,
    ) -> None:
        super().__init__()
        lora = as_lora_settings(lora)
        self.save_hyperparameters(ignore=["engine"])
        self.engine = engine if engine is not None else HFEngine()
        self.hparams.lora = None if lora is None else asdict(lora)  # plain data in checkpoints (weights_only loads)
        self.lora = lora
        if lr_schedule not in ("linear", "constant"):
            raise ConfigError(f"lr_schedule must be 'linear' or 'constant', got {lr_schedule!r}.")
        check_kind(kind)
        if score_scaling not in (None, "std", "mean_std"):
            raise ConfigError(f"score_scaling must be 'std', 'mean_std' or null, got {score_scaling!r}.")
        if kl_estimator not in ("k1", "k2", "k3"):
            raise ConfigError(f"kl_estimator must be 'k1', 'k2' or 'k3', got {kl_estimator!r}.")
        if not sft_coef >= 0:
            raise ConfigError(f"sft_coef must be >= 0 (0 turns the supervised term off), got {sft_coef}.")
        if score_clip is not None and not score_clip > 0:
            raise ConfigError(f"score_clip must be > 0 or null (no clipping), got {score_clip}.")
        if critic_share_trunk and critic_model is not None:
            raise ConfigError("critic_share_trunk puts the value head on the learner's own trunk, so it cannot start "
                             f"from critic_model={critic_model!r}; set one of them.")
        for name in (model, critic_model):  # a zoo build is a training run of its own: do it before any Trainer runs
            if name is not None:
                resolve_model_path(name)
        self.kl_controller = KLController(kl_coef, kl_target, kl_horizon)
        self.score_moments = RunningMoments()
        self.register_buffer("tokens_written", torch.zeros(2, dtype=torch.float64))  # learner, guide; checkpointed
        self.policy: Policy | None = None
        self.reference: Policy | None = None
        self.critic: ValueModel | None = None
        self.guide_critic: ValueModel | None = None
        self._buffer: PPOBatch | None = None
        self._orders: list[Tensor] = []
        self._rollout_stats: dict[str, Tensor] = {}
        self._step_terms: list[dict[str, Tensor]] = []  # loss terms since the last optimizer step
        self._largest_score: Tensor | None = None
        self._evaluation_metrics = {}

    uses_guide_critic: bool = False
    """Subclasses that train a critic of the guide's roll-outs (AggreVaTeD phases) set this."""
    uses_critic: bool = True
    """Critic-free algorithms (GRPO, RLOO, ...) set this to False: they build, train and checkpoint no critic."""
    kl_in_loss: bool = False
    """True when the KL to the reference is a loss term (GRPO's) instead of a penalty in the token rewards."""
    samples_per_prompt: int = 1
    """Trajectories drawn per prompt, as consecutive rows (a group); the group-relative algorithms set it."""

    def configure_model(self) -> None:
        """Build learner, reference and critics (once: fit then test in one process reuses them), before the
        strategy wraps or shards them."""
        if self._trainer is not None:
            prepare_strategy(self.trainer)
        if self.policy is not None:
            return
        hparams = self.hparams
        models = build_agent_models(hparams.model, hparams.kind, hparams.dtype, hparams.critic_model,
                                    hparams.critic_share_trunk, self.uses_guide_critic, self.lora, self.uses_critic)
        self.policy, self.reference = models.policy, models.reference
        self.policy.synced_gpus = self._trainer is not None and shards_parameters(self.trainer)
        self.critic, self.guide_critic = models.critic, models.guide_critic
        # from_pretrained returns eval-mode models; with dropout off, train mode is the same function and
        # keeps Lightning's mode bookkeeping quiet. Rollouts are prepared under eval() regardless.
        self.train()

    @property
    def environment(self) -> RolloutDataModule:
        """The data module this agent trains in (prompts, guide, reward)."""
        datamodule = self.trainer.datamodule
        if datamodule is None:
            raise RuntimeError(f"{type(self).__name__} needs a RolloutDataModule: pass `datamodule=` to the Trainer.")
        return datamodule

    # ---- what an algorithm is ---------------------------------------------------------------
    @property
    def plan(self) -> Plan:
        """Who writes this epoch's trajectories. PPO: the learner alone."""
        return Plan()

    @property
    def critic_name(self) -> Literal["learner", "guide"] | None:
        """Which critic this epoch trains and bootstraps from (None: the algorithm has no critic)."""
        return "learner" if self.uses_critic else None

    @property
    def phase_id(self) -> int | None:
        """For algorithms that alternate phases: 0 = AggreVaTeD, 1 = PPO++ (logged as `train/phase`)."""
        return None

    def active_critic(self) -> ValueModel | None:
        if self.critic_name is None:
            return None
        if self.critic_name == "guide":
            if self.guide_critic is None:
                raise RuntimeError(f"{type(self).__name__} has no guide critic; set uses_guide_critic = True.")
            return self.guide_critic
        return self.critic

    # ---- rollouts -> PPO batch ------------------------------------------------------------
    def sampler(self, settings: GenerationSettings, environment: RolloutDataModule | None = None,
                engine: RolloutEngine | None = None) -> RolloutSampler:
        """A sampler for the learner and the environment's guide, with the given decoding settings; the learner
        writes through `engine` (default: in-process `generate`)."""
        environment = self.environment if environment is None else environment
        return RolloutSampler(self.policy, settings, environment.guide, environment.max_prompt_tokens, engine)

    def on_train_epoch_start(self) -> None:
        """Collect this epoch's rollouts with the policy as it stands (PPO's pi_old), under the trainer's
        precision (generation and the rollout forward passes autocast like the update), and shuffle each pass
        over them with the environment's random stream; the scheduled minibatches index into those orders."""
        environment = self.environment
        # bf16/fp16 autocast as in the update, when set; the full parameters when the strategy shards them
        with self.trainer.precision_plugin.forward_context(), full_parameters(self.trainer):
            self._buffer = self.collect(environment)
        self._orders = [torch.randperm(len(self._buffer), generator=environment.generator).to(self.device)
                        for _ in range(environment.ppo_epochs)]

    # ---- the update ---------------------------------------------------------------------------
    def training_step(self, batch: tuple[int, int], batch_idx: int) -> Tensor:
        """One optimizer step on a minibatch of this epoch's rollouts: `batch` is `(pass, first_row)`."""
        if self._buffer is None:
            raise RuntimeError("training_step ran before this epoch's rollouts were collected (on_train_epoch_start).")
        ppo_epoch, start = batch
        rows = self._orders[ppo_epoch][start : start + self.environment.minibatch_size]
        return self.ppo_step(self._buffer.select(rows))

    def ppo_step(self, batch: PPOBatch) -> Tensor:
        """The PPO loss of a minibatch, with its terms logged (epoch means)."""
        parts = (batch.query_ids, batch.query_mask, batch.response_ids, batch.response_mask)
        logprobs, entropy = self.policy(*parts)
        critic = self.active_critic()
        values = None if critic is None else critic(*parts)
        terms = ppo_loss(
            logprobs, entropy, values, batch.old_logprobs, batch.old_values, batch.advantages, batch.returns,
            batch.policy_mask, batch.critic_mask, clip_range=self.hparams.clip_range,
            value_clip_range=self.hparams.value_clip_range, vf_coef=self.hparams.vf_coef,
            ent_coef=self.hparams.ent_coef,
        )
        loss, logged = terms.loss, {}
        if batch.ref_logprobs is not None:  # GRPO's KL term: an estimate of KL(pi || pi_ref) on the trained tokens
            kl_term = masked_mean(kl_estimate(logprobs, batch.ref_logprobs, self.hparams.kl_estimator), batch.policy_mask)
            loss = loss + self.kl_controller.value * kl_term
            logged["train/kl_loss"] = kl_term.detach()
        if batch.target_ids is not None:
            target_logprobs = self.policy(batch.query_ids, batch.query_mask, batch.target_ids, batch.target_mask)[0]
            sft_nll = -masked_mean(target_logprobs, batch.target_mask)
            loss = loss + self.hparams.sft_coef * sft_nll
            logged["train/sft_nll"] = sft_nll.detach()
        logged.update({"train/loss": loss.detach(), "train/policy_loss": terms.policy_loss.detach(),
                       "train/value_loss": terms.value_loss.detach(), "train/entropy": terms.entropy.detach()})
        self._step_terms.append(logged)
        log = dict(on_step=False, on_epoch=True, sync_dist=True, batch_size=len(batch))
        self.log("train/reward", self._rollout_stats["train/reward"], prog_bar=True, **log)
        self.log_dict({k: v for k, v in self._rollout_stats.items() if k != "train/reward"}, **log)
        self.log_dict({**logged, "train/clip_frac": terms.clip_frac, "train/approx_kl": terms.approx_kl.detach(),
                       "train/value_clip_frac": terms.value_clip_frac}, **log)
        return loss
