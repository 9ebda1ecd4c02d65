"""Who writes a trajectory: roll-in policy, roll-out policy and the mixing probability beta."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from rlgf_pl.errors import ConfigError

Writer = Literal["learner", "guide"]


@dataclass(frozen=True)
class Plan:
    """A roll-in/roll-out plan.

    With probability `beta` a trajectory mixes: the roll-in policy writes its first h tokens and the
    roll-out policy continues from there; otherwise the roll-out policy writes everything (h = 0).

    With `shared_rollin`, the rows of a group (the `samples_per_prompt` consecutive rows of one prompt) share
    one draw: one Bernoulli(beta), one roll-in and one h, so every row of the group continues from exactly the
    same state (GRPO++: K learner roll-outs from one guide prefix). With `leader_keeps_rollin` as well, the
    group's first row is the roll-in policy's whole trajectory and the others roll out from its state at h
    (AggreVaTeD-MC: the learner's trajectory and K-1 guide roll-outs from where it stood at h).

    Attributes:
        rollin: Who writes the start of a mixed trajectory.
        rollout: Who finishes it (and writes unmixed trajectories whole).
        beta: Probability that a trajectory mixes, in [0, 1].
        shared_rollin: The rows of a group share the mixing draw, the roll-in and h.
        leader_keeps_rollin: The first row of each group keeps the roll-in policy's whole continuation.
    """

    rollin: Writer = "learner"
    rollout: Writer = "learner"
    beta: float = 0.0
    shared_rollin: bool = False
    leader_keeps_rollin: bool = False

    def __post_init__(self) -> None:
        for name in ("rollin", "rollout"):
            if getattr(self, name) not in ("learner", "guide"):
                raise ConfigError(f"Plan.{name} must be 'learner' or 'guide', got {getattr(self, name)!r}.")
        if not 0.0 <= self.beta <= 1.0:
            raise ConfigError(f"Plan.beta must lie in [0, 1], got {self.beta}.")
        if self.leader_keeps_rollin and not (self.shared_rollin and self.rollin != self.rollout):
            raise ConfigError("Plan.leader_keeps_rollin needs shared_rollin and two different writers.")

    @property
    def uses_guide(self) -> bool:
        return "guide" in (self.rollin, self.rollout)

    @property
    def mixes(self) -> bool:
        """True when roll-in and roll-out are different policies, so a switch point matters."""
        return self.rollin != self.rollout and self.beta > 0.0

    @property
    def needs_rollin(self) -> bool:
        """True when some trajectories are started (or, for group leaders, written whole) by the roll-in policy."""
        return self.mixes or self.leader_keeps_rollin


GUIDE_ONLY = Plan(rollin="guide", rollout="guide")
"""The guide writes every token (the guide baseline of evaluation)."""


def sample_switch_index(mix: Tensor, rollin_lengths: Tensor, uniform: Tensor) -> Tensor:
    """Switch point h per trajectory: uniform on {1, ..., L-1} if it mixes and L >= 2, else 0.

    Args:
        mix: [B] bool, the Bernoulli(beta) draws.
        rollin_lengths: [B] L, the roll-in continuation lengths.
        uniform: [B] draws from U[0, 1) that pick h.

    Returns:
        [B] long switch indices.
    """
    span = (rollin_lengths - 1).clamp(min=0)
    h = 1 + torch.floor(uniform * span.to(uniform.dtype)).long().clamp(max=(span - 1).clamp(min=0))
    return torch.where(mix & (rollin_lengths >= 2), h, torch.zeros_like(h))
