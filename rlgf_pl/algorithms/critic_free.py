"""The critic-free base: advantages from a group baseline (GRPO, RLOO, AggreVaTeD-MC), no critic."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from rlgf_pl.algorithms.base import RLGFModule
from rlgf_pl.errors import ConfigError
from rlgf_pl.rollout.advantages import whiten
from rlgf_pl.rollout.containers import Advantages, Rollout, RolloutForward
from rlgf_pl.rollout.estimators import check_group_size, critic_free_advantages, leader_mask_from_state

if TYPE_CHECKING:
    from rlgf_pl.data.datamodule import RolloutDataModule

KLMode = Literal["token", "sequence", "loss"]
GroupEstimator = Literal["group", "rloo", "guide_mc"]


class CriticFreeModule(RLGFModule):
    """An agent whose advantages compare the `samples_per_prompt` trajectories of each prompt (a group); it builds,
    trains and checkpoints no critic. Subclasses choose the plan and the estimator (`group_estimator`).

    Args:
        samples_per_prompt: K, the trajectories drawn per prompt (consecutive rows, a group), >= 2. The epoch still
            has `data.rollouts_per_epoch` trajectories, so it sees `rollouts_per_epoch / K` distinct prompts.
        kl_mode: Where the KL to the reference goes: 'token' (a per-token penalty in the rewards; each token's
            advantage is its return-to-go minus the baseline), 'sequence' (the penalty summed into the trajectory's
            return; every token of a row gets the same advantage), or 'loss' (GRPO's: the rewards are the scores
            alone and kl_coef x the `kl_estimator` estimate of KL(pi || pi_ref) on the trained tokens is added to
            the loss; needs 'k2' or 'k3', since k1's gradient is zero in expectation).
        scale_by_std: Divide each advantage by the std of its group's returns (GRPO's normalization).
        whiten_advantages: Also normalize the advantages over the batch's trained tokens (off by default: the
            group baseline already centres them).
        **kwargs: See `RLGFModule`.
    """

    uses_critic = False

    def __init__(self, *args, samples_per_prompt: int = 4, kl_mode: KLMode = "token", scale_by_std: bool = False,
                 whiten_advantages: bool = False, **kwargs) -> None:
        super().__init__(*args, whiten_advantages=whiten_advantages, **kwargs)
        check_group_size(samples_per_prompt, samples_per_prompt, type(self).__name__)
        self.samples_per_prompt = samples_per_prompt
        if kl_mode not in ("token", "sequence", "loss"):
            raise ConfigError(f"kl_mode must be 'token', 'sequence' or 'loss', got {kl_mode!r}.")
        if kl_mode == "loss" and self.hparams.kl_estimator == "k1":
            raise ConfigError("kl_mode 'loss' differentiates the KL estimate, and k1's gradient (that of log pi) is "
                              "zero in expectation: set kl_estimator to 'k3' (GRPO's) or 'k2'.")
        self.kl_mode = kl_mode
        self.scale_by_std = scale_by_std

    @property
    def kl_in_loss(self) -> bool:
        return self.kl_mode == "loss"

    @property
    def group_estimator(self) -> GroupEstimator:
        """Which baseline this epoch uses: 'group' (GRPO), 'rloo' or 'guide_mc'."""
        return "group"

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.environment.check_groups(self.samples_per_prompt)  # whole groups per rank, named errors

    def estimate_advantages(self, rollout: Rollout, rewards: Tensor, forward: RolloutForward,
                            environment: RolloutDataModule | None = None) -> Advantages:
        group_size, estimator = self.samples_per_prompt, self.group_estimator
        policy_mask = rollout.learner_mask
        if estimator == "guide_mc":
            policy_mask = leader_mask_from_state(rollout.learner_mask, rollout.switch_index, group_size)
        estimate = critic_free_advantages(
            estimator, rewards, rollout.response_mask, policy_mask, group_size,
            state_index=rollout.switch_index if estimator == "guide_mc" else None,
            per_token=self.kl_mode == "token", scale_by_std=self.scale_by_std)
        advantages = whiten(estimate.advantages, policy_mask) * policy_mask if self.hparams.whiten_advantages \
            else estimate.advantages
        return Advantages(advantages, estimate.returns, policy_mask, torch.zeros_like(policy_mask))
