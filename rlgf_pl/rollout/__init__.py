"""Rollouts: plans, the sampler, typed batch containers, advantages and KL controllers."""

from rlgf_pl.rollout.containers import PPOBatch, Rollout
from rlgf_pl.rollout.plan import Plan

__all__ = ["PPOBatch", "Plan", "Rollout"]
