"""RLOO: REINFORCE with a leave-one-out baseline over each prompt's K samples, no critic."""

from __future__ import annotations

from rlgf_pl.algorithms.critic_free import CriticFreeModule, GroupEstimator, KLMode


class RLOO(CriticFreeModule):
    """REINFORCE Leave-One-Out (Ahmadian et al., 2024): a sample's advantage is its return minus the mean return
    of the other K - 1 samples of its prompt (`data.samples_per_prompt`), an unbiased baseline. Updated with the
    clipped PPO objective (as TRL's RLOO), with no critic. By default the KL penalty is summed into each
    trajectory's return ('sequence'), as in the RLOO paper.

    Args:
        kl_mode: 'sequence' (default), 'token' or 'loss' (see `CriticFreeModule`).
        **kwargs: See `CriticFreeModule` and `RLGFModule`.
    """

    def __init__(self, *args, kl_mode: KLMode = "sequence", **kwargs) -> None:
        super().__init__(*args, kl_mode=kl_mode, **kwargs)

    @property
    def group_estimator(self) -> GroupEstimator:
        return "rloo"
