"""Algorithms: one small LightningModule each over the shared base."""

from rlgf_pl.algorithms.base import RLGFModule
from rlgf_pl.algorithms.ppo import PPO

__all__ = ["PPO", "RLGFModule"]
