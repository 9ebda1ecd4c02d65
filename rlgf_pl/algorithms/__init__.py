"""Algorithms: one small LightningModule each over the shared base."""

from rlgf_pl.algorithms.aggrevated import AggreVaTeD
from rlgf_pl.algorithms.base import RLGFModule
from rlgf_pl.algorithms.lols import D2LOLS, LOLS
from rlgf_pl.algorithms.ppo import PPO
from rlgf_pl.algorithms.ppo_pp import PPOPlusPlus
from rlgf_pl.algorithms.sft import SFT

__all__ = ["D2LOLS", "LOLS", "PPO", "AggreVaTeD", "PPOPlusPlus", "RLGFModule", "SFT"]
