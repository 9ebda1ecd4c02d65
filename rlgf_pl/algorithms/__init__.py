"""Algorithms: one small LightningModule each over the shared base."""

from rlgf_pl.algorithms.aggrevated import AggreVaTeD
from rlgf_pl.algorithms.aggrevated_mc import AggreVaTeDMC
from rlgf_pl.algorithms.base import RLGFModule
from rlgf_pl.algorithms.critic_free import CriticFreeModule
from rlgf_pl.algorithms.d2lols_mc import D2LOLSMC
from rlgf_pl.algorithms.distill import Distill
from rlgf_pl.algorithms.grpo import GRPO, GRPOPlusPlus
from rlgf_pl.algorithms.lols import D2LOLS, LOLS
from rlgf_pl.algorithms.ppo import PPO
from rlgf_pl.algorithms.ppo_pp import PPOPlusPlus
from rlgf_pl.algorithms.rloo import RLOO
from rlgf_pl.algorithms.sft import SFT

__all__ = ["D2LOLS", "D2LOLSMC", "GRPO", "LOLS", "PPO", "RLOO", "SFT", "AggreVaTeD", "AggreVaTeDMC", "CriticFreeModule",
           "Distill", "GRPOPlusPlus", "PPOPlusPlus", "RLGFModule"]
