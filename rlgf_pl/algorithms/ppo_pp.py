"""PPO++: the guide rolls in, the learner rolls out from the guide's states."""

from __future__ import annotations

from rlgf_pl.algorithms.base import RLGFModule
from rlgf_pl.rollout.plan import Plan


class PPOPlusPlus(RLGFModule):
    """PPO whose trajectories start, with probability `beta`, from a prefix the guide wrote.

    The learner's critic is trained, and the policy gradient taken, on the learner's tokens after h.

    Args:
        beta: Probability that a trajectory starts with a guide roll-in (paper IMDB setting: 0.6).
        **kwargs: See `RLGFModule`.
    """

    def __init__(self, *args, beta: float = 0.6, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.beta = beta
        Plan("guide", "learner", beta)  # validate now, not at the first epoch

    @property
    def plan(self) -> Plan:
        return Plan("guide", "learner", self.beta)
