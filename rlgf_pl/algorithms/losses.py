"""The PPO loss as pure functions over [B, T] tensors."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlgf_pl.rollout.advantages import masked_mean


@dataclass
class PPOLossTerms:
    """The loss and the scalars worth logging; each a 0-dim tensor."""

    loss: Tensor
    policy_loss: Tensor
    value_loss: Tensor
    entropy: Tensor
    clip_frac: Tensor
    approx_kl: Tensor
    value_clip_frac: Tensor


def clipped_surrogate(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, clip_range: float
) -> tuple[Tensor, Tensor, Tensor]:
    """PPO's clipped policy loss: mean of max(-A r, -A clip(r, 1-eps, 1+eps)) over `mask`.

    Returns:
        loss, fraction of tokens where clipping was active, approximate KL mean((r - 1) - log r).
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clip_frac = masked_mean((clipped > unclipped).float(), mask)
    approx_kl = masked_mean((ratio - 1.0) - log_ratio, mask)
    return loss, clip_frac, approx_kl


def clipped_value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip_range: float | None
) -> tuple[Tensor, Tensor]:
    """0.5 * mean of max((V - R)^2, (V_clipped - R)^2) over `mask`; no clipping when `clip_range` is None.

    Returns:
        loss and the fraction of tokens where the clipped term was larger.
    """
    unclipped = (values - returns) ** 2
    if clip_range is None:
        return 0.5 * masked_mean(unclipped, mask), torch.zeros((), device=values.device)
    clipped_values = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
    clipped = (clipped_values - returns) ** 2
    return 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask), masked_mean((clipped > unclipped).float(), mask)


def ppo_loss(
    logprobs: Tensor,
    entropy: Tensor,
    values: Tensor | None,
    old_logprobs: Tensor,
    old_values: Tensor | None,
    advantages: Tensor,
    returns: Tensor,
    policy_mask: Tensor,
    critic_mask: Tensor,
    clip_range: float = 0.2,
    value_clip_range: float | None = 0.2,
    vf_coef: float = 0.5,
    ent_coef: float = 0.0,
) -> PPOLossTerms:
    """Clipped surrogate on `policy_mask` + vf_coef x clipped value loss on `critic_mask` - ent_coef x entropy.
    A critic-free algorithm passes `values=None`: its value loss is 0."""
    policy_loss, clip_frac, approx_kl = clipped_surrogate(logprobs, old_logprobs, advantages, policy_mask, clip_range)
    if values is None:
        value_loss = value_clip_frac = torch.zeros((), device=logprobs.device)
    else:
        value_loss, value_clip_frac = clipped_value_loss(values, old_values, returns, critic_mask, value_clip_range)
    mean_entropy = masked_mean(entropy, policy_mask)
    loss = policy_loss + vf_coef * value_loss - ent_coef * mean_entropy
    return PPOLossTerms(loss, policy_loss, value_loss, mean_entropy, clip_frac, approx_kl, value_clip_frac)
