"""What an epoch's rollouts look like, as logged under `train/`."""

from __future__ import annotations

import torch
from torch import Tensor

from rlgf_pl.rollout.advantages import explained_variance
from rlgf_pl.rollout.containers import Rollout


def rollout_statistics(rollout: Rollout, scores: Tensor, kl: Tensor, values: Tensor | None, returns: Tensor,
                       critic_mask: Tensor, kl_coef: float) -> dict[str, Tensor]:
    """Reward mean and std, KL per trajectory and its coefficient, response length, the critic's explained
    variance on its tokens (when there is a critic), and the share of roll-in and guide tokens."""
    lengths = rollout.response_mask.sum(-1).float()
    generated = rollout.response_mask.sum().clamp(min=1)
    statistics = {
        "train/reward": scores.float().mean(),
        "train/reward_std": scores.float().std() if scores.numel() > 1 else torch.zeros((), device=scores.device),
        "train/kl": kl.float(),
        "train/kl_coef": torch.tensor(kl_coef, device=scores.device, dtype=torch.float32),
        "train/response_length": lengths.mean(),
        "train/rollin_fraction": (rollout.switch_index.float() / lengths.clamp(min=1)).mean(),
        "train/guide_token_fraction": rollout.guide_mask.sum().float() / generated,
    }
    if values is not None:
        statistics["train/explained_variance"] = torch.nan_to_num(explained_variance(values, returns, critic_mask),
                                                                  nan=0.0)
    return statistics
