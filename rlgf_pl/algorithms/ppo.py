"""PPO: the learner writes every token and its own critic judges them."""

from __future__ import annotations

from rlgf_pl.algorithms.base import RLGFModule


class PPO(RLGFModule):
    """Plain PPO with a KL penalty to the initial learner (the base agent's defaults)."""
