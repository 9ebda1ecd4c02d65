"""AggreVaTeD: the learner rolls in, the guide rolls out; a critic of the guide judges the learner."""

from __future__ import annotations

from typing import Literal

from rlgf_pl.algorithms.base import RLGFModule
from rlgf_pl.rollout.plan import Plan


class AggreVaTeD(RLGFModule):
    """Differentiable AggreVaTeD: with probability `beta` the learner writes the first h tokens and the
    guide finishes; the policy gradient is on the learner's tokens before h, with advantages from a
    critic trained on the guide's tokens (an estimate of the guide's value). Trajectories with h = 0
    are the guide's alone and train only that critic.

    Args:
        beta: Probability that a trajectory starts with a learner roll-in (paper IMDB setting: 0.8).
        **kwargs: See `RLGFModule`.
    """

    uses_guide_critic = True

    def __init__(self, *args, beta: float = 0.8, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.beta = beta
        Plan("learner", "guide", beta)

    @property
    def plan(self) -> Plan:
        return Plan("learner", "guide", self.beta)

    @property
    def critic_name(self) -> Literal["learner", "guide"]:
        return "guide"
