"""The agent: learner, critic(s), frozen reference, KL controller and the PPO update.

An algorithm is a plan (who writes which tokens) and a choice of critic; subclasses override
`plan` and `critic_name`, nothing else of the loop.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torchmetrics import MetricCollection

from rlgf_pl.algorithms.losses import ppo_loss
from rlgf_pl.metrics.samples import EvaluationSamples
from rlgf_pl.policies.causal_lm import CausalLMPolicy
from rlgf_pl.policies.critic import ValueModel
from rlgf_pl.policies.loading import load_backbone, load_causal_lm, load_tokenizer
from rlgf_pl.rollout.advantages import (
    explained_variance,
    generalized_advantages,
    kl_shaped_rewards,
    whiten,
)
from rlgf_pl.rollout.containers import PPOBatch, Rollout
from rlgf_pl.rollout.kl import KLController
from rlgf_pl.rollout.plan import GUIDE_ONLY, Plan
from rlgf_pl.rollout.sampler import evaluation_mode

REFERENCE_PREFIX = "reference."


def disable_dropout(model: nn.Module) -> None:
    """PPO ratios assume the same network at collection and update time, so dropout is switched off."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


def _check_same_vocabulary(critic_model: str, critic_tokenizer, model: str, tokenizer) -> None:
    """The critic reads the learner's token ids, so both must mean the same token by the same id."""
    if critic_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ValueError(
            f"critic_model {critic_model!r} has a different tokenizer from the learner {model!r}; the critic reads "
            "the learner's token ids. Use a critic model with the learner's tokenizer, or leave critic_model unset."
        )


class RLGFModule(LightningModule):
    """Base agent: PPO-style updates of a causal-LM learner against a frozen reference.

    Args:
        model: Learner: Hugging Face hub id, local directory or zoo name of a causal LM.
        dtype: Weights dtype ('float32', 'bfloat16', 'float16'); null keeps the checkpoint's.
        critic_share_trunk: Put the value head on the learner's trunk instead of its own copy.
        critic_model: Where the critics' trunks start: null copies the learner's backbone; any model that
            `AutoModel` loads and that shares the learner's tokenizer will do (e.g. the reward model's trunk,
            as TRL starts its value model).
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
        kl_coef: KL penalty coefficient (the initial one when `kl_target` is set).
        kl_target: Target KL per trajectory for the adaptive controller; null keeps `kl_coef` fixed.
        kl_horizon: Adaptive KL controller horizon, in trajectories.
        kl_penalty: Apply the KL penalty to learner tokens (off reproduces the authors' guided code).
        whiten_advantages: Normalize advantages over policy-gradient tokens.
        forward_batch_size: Trajectories per no-grad forward pass when preparing rollouts.
    """

    def __init__(
        self,
        model: str,
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
        kl_coef: float = 0.001,
        kl_target: float | None = None,
        kl_horizon: int = 10_000,
        kl_penalty: bool = True,
        whiten_advantages: bool = True,
        forward_batch_size: int = 32,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if lr_schedule not in ("linear", "constant"):
            raise ValueError(f"lr_schedule must be 'linear' or 'constant', got {lr_schedule!r}.")
        if critic_share_trunk and critic_model is not None:
            raise ValueError("critic_share_trunk puts the value head on the learner's own trunk, so it cannot start "
                             f"from critic_model={critic_model!r}; set one of them.")
        network = load_causal_lm(model, dtype=dtype)
        disable_dropout(network)
        tokenizer = load_tokenizer(model)
        self.policy = CausalLMPolicy(network, tokenizer)
        reference = copy.deepcopy(network).requires_grad_(False)
        self.reference = CausalLMPolicy(reference, tokenizer)
        if critic_model is not None:
            _check_same_vocabulary(critic_model, load_tokenizer(critic_model), model, tokenizer)
        self.critic = self._build_critic(critic_model or model, dtype, critic_share_trunk)
        self.guide_critic = self._build_critic(critic_model or model, dtype, False) if self.uses_guide_critic else None
        self.kl_controller = KLController(kl_coef, kl_target, kl_horizon)
        self._rollout_stats: dict[str, Tensor] = {}
        self._evaluation_metrics: dict[str, MetricCollection] = {}
        # from_pretrained returns eval-mode models; with dropout off, train mode is the same function and
        # keeps Lightning's mode bookkeeping quiet. Rollouts are prepared under eval() regardless.
        self.train()

    uses_guide_critic: bool = False
    """Subclasses that train a critic of the guide's roll-outs (AggreVaTeD phases) set this."""

    def _build_critic(self, model: str, dtype: str | None, share_trunk: bool) -> ValueModel:
        trunk = self.policy.model.base_model if share_trunk else load_backbone(model, dtype=dtype)
        disable_dropout(trunk)
        return ValueModel(trunk)

    # ---- what an algorithm is ---------------------------------------------------------------
    @property
    def plan(self) -> Plan:
        """Who writes this epoch's trajectories. PPO: the learner alone."""
        return Plan()

    @property
    def critic_name(self) -> Literal["learner", "guide"]:
        """Which critic this epoch trains and bootstraps from."""
        return "learner"

    @property
    def phase_id(self) -> int | None:
        """For algorithms that alternate phases: 0 = AggreVaTeD, 1 = PPO++ (logged as `train/phase`)."""
        return None

    def active_critic(self) -> ValueModel:
        if self.critic_name == "guide":
            if self.guide_critic is None:
                raise RuntimeError(f"{type(self).__name__} has no guide critic; set uses_guide_critic = True.")
            return self.guide_critic
        return self.critic

    # ---- rollouts -> PPO batch ------------------------------------------------------------
    @torch.no_grad()
    def prepare(self, rollout: Rollout, scores: Tensor) -> PPOBatch:
        """Old log-probs, reference log-probs and values; KL-shaped rewards; GAE advantages and returns."""
        critic = self.active_critic()
        chunk = self.hparams.forward_batch_size
        logprobs, ref_logprobs, values = [], [], []
        with evaluation_mode(self):
            for start in range(0, rollout.batch_size, chunk):
                part = (rollout.query_ids[start : start + chunk], rollout.query_mask[start : start + chunk],
                        rollout.response_ids[start : start + chunk], rollout.response_mask[start : start + chunk])
                logprobs.append(self.policy(*part)[0])
                ref_logprobs.append(self.reference(*part)[0])
                values.append(critic(*part))
        logprobs, ref_logprobs, values = torch.cat(logprobs), torch.cat(ref_logprobs), torch.cat(values)
        response_mask = rollout.response_mask
        learner_mask = rollout.learner_mask
        kl_mask = learner_mask if self.hparams.kl_penalty else torch.zeros_like(learner_mask)
        rewards, kl = kl_shaped_rewards(scores, logprobs, ref_logprobs, response_mask, kl_mask, self.kl_controller.value)
        advantages, returns = generalized_advantages(
            rewards, values, response_mask, self.hparams.gamma, self.hparams.gae_lambda
        )
        critic_mask = learner_mask if self.critic_name == "learner" else rollout.guide_mask
        if self.hparams.whiten_advantages:
            advantages = whiten(advantages, learner_mask)
        kl_per_trajectory = kl.sum(-1).mean()
        self._rollout_stats = self._summarize(rollout, scores, kl_per_trajectory, values, returns, critic_mask)
        if self.phase_id is not None:
            self._rollout_stats["train/phase"] = torch.tensor(float(self.phase_id), device=scores.device)
        world_size = self.trainer.world_size if self._trainer is not None else 1
        self.kl_controller.update(float(self._sync_mean(kl_per_trajectory)), rollout.batch_size * world_size)
        return PPOBatch(
            query_ids=rollout.query_ids, query_mask=rollout.query_mask,
            response_ids=rollout.response_ids, response_mask=response_mask,
            policy_mask=learner_mask, critic_mask=critic_mask,
            old_logprobs=logprobs, old_values=values, advantages=advantages, returns=returns,
        )

    def _sync_mean(self, value: Tensor) -> Tensor:
        """Mean over ranks (identity on one process or without a Trainer)."""
        if self._trainer is None or self.trainer.world_size == 1:
            return value
        return self.trainer.strategy.reduce(value.float(), reduce_op="mean")

    def _summarize(self, rollout: Rollout, scores: Tensor, kl: Tensor, values: Tensor, returns: Tensor,
                   critic_mask: Tensor) -> dict[str, Tensor]:
        lengths = rollout.response_mask.sum(-1).float()
        generated = rollout.response_mask.sum().clamp(min=1)
        return {
            "train/reward": scores.float().mean(),
            "train/reward_std": scores.float().std() if scores.numel() > 1 else torch.zeros((), device=scores.device),
            "train/kl": kl.float(),
            "train/kl_coef": torch.tensor(self.kl_controller.value, device=scores.device, dtype=torch.float32),
            "train/response_length": lengths.mean(),
            "train/explained_variance": torch.nan_to_num(explained_variance(values, returns, critic_mask), nan=0.0),
            "train/rollin_fraction": (rollout.switch_index.float() / lengths.clamp(min=1)).mean(),
            "train/guide_token_fraction": rollout.guide_mask.sum().float() / generated,
        }

    # ---- the update ---------------------------------------------------------------------------
    def training_step(self, batch: PPOBatch, batch_idx: int) -> Tensor:
        parts = (batch.query_ids, batch.query_mask, batch.response_ids, batch.response_mask)
        logprobs, entropy = self.policy(*parts)
        values = self.active_critic()(*parts)
        terms = ppo_loss(
            logprobs, entropy, values, batch.old_logprobs, batch.old_values, batch.advantages, batch.returns,
            batch.policy_mask, batch.critic_mask, clip_range=self.hparams.clip_range,
            value_clip_range=self.hparams.value_clip_range, vf_coef=self.hparams.vf_coef,
            ent_coef=self.hparams.ent_coef,
        )
        size = len(batch)
        log = dict(on_step=False, on_epoch=True, sync_dist=True, batch_size=size)
        self.log("train/reward", self._rollout_stats["train/reward"], prog_bar=True, **log)
        self.log_dict({k: v for k, v in self._rollout_stats.items() if k != "train/reward"}, **log)
        self.log_dict({
            "train/loss": terms.loss.detach(), "train/policy_loss": terms.policy_loss.detach(),
            "train/value_loss": terms.value_loss.detach(), "train/entropy": terms.entropy.detach(),
            "train/clip_frac": terms.clip_frac, "train/approx_kl": terms.approx_kl.detach(),
            "train/value_clip_frac": terms.value_clip_frac,
        }, **log)
        return terms.loss

    # ---- evaluation ---------------------------------------------------------------------------
    def validation_step(self, batch: dict, batch_idx: int) -> dict:
        return self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict, batch_idx: int) -> dict:
        return self._evaluate(batch, batch_idx, "test")

    def on_validation_epoch_start(self) -> None:
        self._start_evaluation("val")

    def on_test_epoch_start(self) -> None:
        self._start_evaluation("test")

    def on_validation_epoch_end(self) -> None:
        self._finish_evaluation("val")

    def on_test_epoch_end(self) -> None:
        self._finish_evaluation("test")

    def _start_evaluation(self, stage: str) -> None:
        """Fresh metric collections (the learner's, and the guide baseline's when asked) for this pass."""
        collections = self.trainer.datamodule.metric_collections(stage)
        self._evaluation_metrics = {writer: collection.to(self.device) for writer, collection in collections.items()}

    def _evaluate(self, batch: dict, batch_idx: int, stage: str) -> dict:
        """Continue the batch's prompts with the learner (and the guide, for the baseline), score them and
        update the metrics. Returns the learner's rollout and rewards (for callbacks)."""
        datamodule = self.trainer.datamodule
        rollout = datamodule.evaluation_rollout(self, batch, batch_idx)
        scores = datamodule.score(rollout)
        writers = {"learner": (self.policy, rollout, scores)}
        if "guide" in self._evaluation_metrics:
            guide_rollout = datamodule.evaluation_rollout(self, batch, batch_idx, GUIDE_ONLY)
            writers["guide"] = (datamodule.guide.policy, guide_rollout, datamodule.score(guide_rollout))
        for writer, (policy, writer_rollout, writer_scores) in writers.items():
            self._evaluation_metrics[writer].update(EvaluationSamples(
                writer_rollout, writer_scores, policy, self.reference, datamodule.max_prompt_tokens))
        self.log(f"{stage}/response_length", rollout.response_mask.sum(-1).float().mean(), sync_dist=True,
                 batch_size=rollout.batch_size)
        return {"rollout": rollout, "scores": scores}

    def _finish_evaluation(self, stage: str) -> None:
        """Compute the metrics (torchmetrics reduces them over ranks) and log them. Lightning drops what the
        sanity check logs; with `num_sanity_val_steps: -1` the metrics of the learner before any training are
        worth keeping, so they are logged at step 0."""
        values: dict[str, Tensor] = {}
        for collection in self._evaluation_metrics.values():
            values.update(collection.compute())
        self._evaluation_metrics = {}
        values = {name: value.float().cpu() for name, value in values.items() if torch.isfinite(value).all()}
        if self.trainer.sanity_checking:
            if self.global_step == 0 and self.trainer.is_global_zero:
                for logger in self.loggers:
                    logger.log_metrics({name: float(value) for name, value in values.items()}, step=0)
            return
        reward = values.pop(f"{stage}/reward", None)
        if reward is not None:
            self.log(f"{stage}/reward", reward, prog_bar=True)
        self.log_dict(values)  # already reduced over ranks, so no sync_dist

    def configure_callbacks(self) -> list:
        from rlgf_pl.results import TestResultsWriter

        return [TestResultsWriter()]

    # ---- optimization ---------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.AdamW(self._parameter_groups(), lr=self.hparams.lr,
                                      weight_decay=self.hparams.weight_decay)
        if self.hparams.lr_schedule == "constant":
            return {"optimizer": optimizer}
        total = max(1, int(self.trainer.estimated_stepping_batches)) if math.isfinite(
            self.trainer.estimated_stepping_batches) else 1
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def _parameter_groups(self) -> list[dict[str, Any]]:
        """One group at `lr`, and the critics' parameters at `critic_lr` when it is set. A trunk shared with
        the learner is the learner's, so only its value head takes `critic_lr`."""
        critic_lr = self.hparams.critic_lr
        default, critics = [], []
        for name, parameter in self.named_parameters():
            if parameter.requires_grad:
                is_critic = critic_lr is not None and name.startswith(("critic.", "guide_critic."))
                (critics if is_critic else default).append(parameter)
        return [{"params": default}] + ([{"params": critics, "lr": critic_lr}] if critics else [])

    # ---- checkpoints: the reference is rebuilt from `model`, never saved ---------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith(REFERENCE_PREFIX)]:
            del state[key]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key, value in self.reference.state_dict(prefix=REFERENCE_PREFIX).items():
            state.setdefault(key, value)
