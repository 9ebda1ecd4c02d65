"""From an epoch's rollouts to the batch the update trains on: collect (generate, score), forward passes, KL-shaped
rewards, and the algorithm's advantage estimator (mixed into RLGFModule).

The seam: `forward_passes` (log-probs, reference log-probs, values if there is a critic) -> `estimate_advantages`
(the algorithm's estimator: GAE here; critic-free estimators in `rlgf_pl.rollout.estimators`) -> `PPOBatch`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from rlgf_pl.engines.hf import HFEngine
from rlgf_pl.rollout.advantages import generalized_advantages, kl_shaped_rewards, whiten
from rlgf_pl.rollout.containers import Advantages, PPOBatch, Rollout, RolloutForward
from rlgf_pl.rollout.sampler import evaluation_mode
from rlgf_pl.rollout.score_scaling import scale_scores
from rlgf_pl.rollout.statistics import rollout_statistics
from rlgf_pl.rollout.targets import reference_targets

if TYPE_CHECKING:
    from rlgf_pl.data.datamodule import RolloutDataModule

ROLLOUT_HOOK = "on_rollouts_collected"
"""Callbacks that define `on_rollouts_collected(trainer, pl_module, rollout, scores)` get each epoch's
scored training rollouts of their rank (see docs/architecture.md)."""


class RolloutPreparation:
    """`collect` and `prepare` of `RLGFModule` (a mixin: it reads the module's policy, reference, critics, plan,
    KL controller, score moments and hparams)."""

    def collect(self, environment: RolloutDataModule | None = None) -> PPOBatch:
        """Generate, score and prepare this rank's rollouts for one epoch (in the trainer's data module by
        default), and hand them to every callback with an `on_rollouts_collected` hook."""
        environment = self.environment if environment is None else environment
        group_size = self.samples_per_prompt
        # without groups, call it as before, so environments written for the one-argument form keep working
        prompts, references = environment.next_prompts(group_size) if group_size > 1 else environment.next_prompts()
        sync_seconds = self._sync_engine()
        sampler = self.sampler(environment.generation, environment, self.engine)
        chunk = environment.generation_batch_size or len(prompts)
        rollouts = [sampler.sample(prompts[start : start + chunk], references[start : start + chunk], self.plan,
                                   environment.generator, group_size) for start in range(0, len(prompts), chunk)]
        rollout = rollouts[0] if len(rollouts) == 1 else Rollout.concat(
            rollouts, self.policy.pad_token_id, self.policy.query_padding_side)
        scores = environment.score(rollout)
        if self._trainer is not None:
            for callback in self.trainer.callbacks:
                hook = getattr(callback, ROLLOUT_HOOK, None)
                if callable(hook):
                    hook(self.trainer, self, rollout, scores)
        batch = self.prepare(rollout, scores, environment)
        if sync_seconds:
            self._rollout_stats["train/engine_sync_s"] = torch.tensor(sync_seconds, device=self.device)
        if self.hparams.sft_coef > 0:
            batch.target_ids, batch.target_mask = reference_targets(
                self.policy, rollout.prompts, rollout.references, environment.generation.max_new_tokens,
                environment.generator)
        return batch

    def _sync_engine(self) -> float:
        """Bring the rollout engine to the learner's weights (its version: the optimizer steps so far); the
        seconds it took. Under several processes rank 0 sends them and the others wait before they generate."""
        if isinstance(self.engine, HFEngine):
            return 0.0
        trainer = self._trainer
        seconds = self.engine.sync(self.policy, self.global_step, send=trainer is None or trainer.is_global_zero)
        if trainer is not None and trainer.world_size > 1:
            trainer.strategy.barrier("rollout engine weight sync")
        return seconds

    @torch.no_grad()
    def prepare(self, rollout: Rollout, scores: Tensor, environment: RolloutDataModule | None = None) -> PPOBatch:
        """Forward passes (log-probs, reference log-probs, values if there is a critic) -> KL-shaped token rewards
        -> this algorithm's advantage estimator -> the batch the clipped update trains on."""
        forward = self.forward_passes(rollout)
        kl_mask = rollout.learner_mask if self.hparams.kl_penalty else torch.zeros_like(rollout.learner_mask)
        self._largest_score = scores.abs().max() if scores.numel() else None
        kl_coef = 0.0 if self.kl_in_loss else self.kl_controller.value  # the loss takes the penalty instead
        rewards, kl = kl_shaped_rewards(self.training_scores(scores), forward.logprobs, forward.ref_logprobs,
                                        rollout.response_mask, kl_mask, kl_coef, self.hparams.kl_estimator)
        estimate = self.estimate_advantages(rollout, rewards, forward, environment)
        checked = {"the policy's log-probs": forward.logprobs, "the reference's log-probs": forward.ref_logprobs,
                   "the returns": estimate.returns, "the advantages": estimate.advantages}
        if forward.values is not None:
            checked["the critic's values"] = forward.values
        self._stop_if_non_finite(checked, f"preparing the rollouts of epoch {self.current_epoch}", scores)
        kl_per_trajectory = kl.sum(-1).mean()
        self._rollout_stats = rollout_statistics(rollout, scores, kl_per_trajectory, forward.values, estimate.returns,
                                                 estimate.critic_mask, self.kl_controller.value)
        self._rollout_stats.update(self._count_tokens(rollout))
        if self.phase_id is not None:
            self._rollout_stats["train/phase"] = torch.tensor(float(self.phase_id), device=scores.device)
        world_size = self.trainer.world_size if self._trainer is not None else 1
        self.kl_controller.update(float(self._sync_mean(kl_per_trajectory)), rollout.batch_size * world_size)
        zeros = torch.zeros_like(forward.logprobs)
        return PPOBatch(
            query_ids=rollout.query_ids, query_mask=rollout.query_mask,
            response_ids=rollout.response_ids, response_mask=rollout.response_mask,
            policy_mask=estimate.policy_mask, critic_mask=estimate.critic_mask,
            old_logprobs=forward.logprobs, old_values=zeros if forward.values is None else forward.values,
            advantages=estimate.advantages, returns=estimate.returns,
            ref_logprobs=forward.ref_logprobs if self.kl_in_loss else None,
        )

    def forward_passes(self, rollout: Rollout) -> RolloutForward:
        """The learner's and the reference's log-probs of the rollout, and the active critic's values (None
        without a critic), in chunks of `forward_batch_size` under eval()."""
        critic = self.active_critic()
        chunk = self.hparams.forward_batch_size
        logprobs, ref_logprobs, values = [], [], []
        with evaluation_mode(self):
            for start in range(0, rollout.batch_size, chunk):
                part = (rollout.query_ids[start : start + chunk], rollout.query_mask[start : start + chunk],
                        rollout.response_ids[start : start + chunk], rollout.response_mask[start : start + chunk])
                logprobs.append(self.policy.logprobs(*part))
                ref_logprobs.append(self.reference.logprobs(*part))
                if critic is not None:
                    values.append(critic(*part))
        return RolloutForward(torch.cat(logprobs), torch.cat(ref_logprobs), torch.cat(values) if values else None)

    def estimate_advantages(self, rollout: Rollout, rewards: Tensor, forward: RolloutForward,
                            environment: RolloutDataModule | None = None) -> Advantages:
        """The `gae` estimator: GAE over the active critic's values, whitened over the learner's tokens when
        configured; the critic trains on the learner's tokens, or on the guide's for a guide critic.
        Critic-free algorithms override this (see `rlgf_pl.rollout.estimators`)."""
        advantages, returns = generalized_advantages(rewards, forward.values, rollout.response_mask,
                                                     self.hparams.gamma, self.hparams.gae_lambda)
        if self.hparams.whiten_advantages:
            advantages = whiten(advantages, rollout.learner_mask)
        critic_mask = rollout.learner_mask if self.critic_name == "learner" else rollout.guide_mask
        return Advantages(advantages, returns, rollout.learner_mask, critic_mask)

    def _count_tokens(self, rollout: Rollout) -> dict[str, Tensor]:
        """Learner- and guide-written training tokens so far, over all ranks (the x axis of sample efficiency)."""
        counts = torch.stack([rollout.learner_mask.sum(), rollout.guide_mask.sum()]).double()
        if self._trainer is not None and self.trainer.world_size > 1:
            counts = self.trainer.strategy.reduce(counts, reduce_op="sum")
        self.tokens_written += counts.to(self.tokens_written.device)
        return {"train/learner_tokens": self.tokens_written[0].float(), "train/guide_tokens": self.tokens_written[1].float()}

    def training_scores(self, scores: Tensor) -> Tensor:
        """The rewards the returns are built from: scaled by the running moments and clipped, as configured."""
        scaling = self.hparams.score_scaling
        if scaling is not None:
            scores64 = scores.double()
            totals = torch.stack([torch.tensor(float(scores.numel()), dtype=torch.float64, device=scores.device),
                                  scores64.sum(), scores64.square().sum()])
            if self._trainer is not None and self.trainer.world_size > 1:
                totals = self.trainer.strategy.reduce(totals, reduce_op="sum")
            self.score_moments.update(*totals)
        return scale_scores(scores, self.score_moments, scaling, self.hparams.score_clip)

    def _sync_mean(self, value: Tensor) -> Tensor:
        """Mean over ranks (identity on one process or without a Trainer)."""
        if self._trainer is None or self.trainer.world_size == 1:
            return value
        return self.trainer.strategy.reduce(value.float(), reduce_op="mean")
