"""GRPO and GRPO++: group-relative advantages, no critic; GRPO++ starts each group from one guide prefix."""

from __future__ import annotations

from rlgf_pl.algorithms.critic_free import CriticFreeModule, KLMode
from rlgf_pl.rollout.advantages import KLEstimator
from rlgf_pl.rollout.plan import Plan


class GRPO(CriticFreeModule):
    """Group Relative Policy Optimization: each prompt's K samples (`data.samples_per_prompt`) are scored, and a
    sample's advantage is its return minus the group's mean return, divided by the group's std. The clipped
    PPO update is unchanged; there is no critic. By default the KL to the reference is a loss term with the k3
    estimate, as in DeepSeekMath.

    Args:
        kl_mode: 'loss' (GRPO's), 'token' or 'sequence' (see `CriticFreeModule`).
        kl_estimator: The KL estimate ('k3' by default, GRPO's).
        scale_by_std: Divide by the group's std (GRPO's; off gives Dr. GRPO's unscaled advantages).
        **kwargs: See `CriticFreeModule` and `RLGFModule`.
    """

    def __init__(self, *args, kl_mode: KLMode = "loss", kl_estimator: KLEstimator = "k3", scale_by_std: bool = True,
                 **kwargs) -> None:
        super().__init__(*args, kl_mode=kl_mode, kl_estimator=kl_estimator, scale_by_std=scale_by_std, **kwargs)


class GRPOPlusPlus(GRPO):
    """GRPO from guide states: with probability `beta` the guide writes a prefix of length h (one draw per group),
    and the K learner continuations from that same prefix form the group, so the baseline is per guide state.
    The policy gradient is on the learner's tokens after h; with 1 - beta the group is plain GRPO.

    Args:
        beta: Probability that a group starts from a guide prefix.
        **kwargs: See `GRPO`.
    """

    def __init__(self, *args, beta: float = 0.6, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.beta = beta
        self.plan  # noqa: B018  (validate now, not at the first epoch)

    @property
    def plan(self) -> Plan:
        return Plan("guide", "learner", self.beta, shared_rollin=True)
