"""Pure functions for token rewards and advantages. All tensors are [B, T] over response positions."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of `values` where `mask` is 1 (0 when the mask is empty)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def masked_var(values: Tensor, mask: Tensor) -> Tensor:
    """Unbiased variance of `values` where `mask` is 1 (0 with fewer than two entries)."""
    mask = mask.to(values.dtype)
    count = mask.sum()
    mean = masked_mean(values, mask)
    return (((values - mean) ** 2) * mask).sum() / (count - 1).clamp(min=1.0)


def whiten(values: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """Normalize `values` to unit variance (and zero mean) over the masked entries; others are untouched."""
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(mask.bool(), whitened, values)


KLEstimator = Literal["k1", "k2", "k3"]


def kl_estimate(logprobs: Tensor, ref_logprobs: Tensor, estimator: KLEstimator = "k1") -> Tensor:
    """Per-token estimates of KL(pi || pi_ref) from the sampled tokens' log-probs (Schulman's k1, k2, k3).

    k1 = log pi - log pi_ref is unbiased but can be negative; k2 = (log pi - log pi_ref)^2 / 2 and
    k3 = pi_ref/pi - 1 - log(pi_ref/pi) are never negative. That matters when tokens are not sampled from pi
    itself (top-k, top-p or min_new_tokens truncate it): then the mean of k1 can fall below zero, and a k1
    penalty pays the learner for moving away from the reference.
    """
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio.square()
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"Unknown KL estimator {estimator!r}; use 'k1', 'k2' or 'k3'.")


def kl_shaped_rewards(
    scores: Tensor,
    logprobs: Tensor,
    ref_logprobs: Tensor,
    response_mask: Tensor,
    kl_mask: Tensor,
    kl_coef: float | Tensor,
    estimator: KLEstimator = "k1",
) -> tuple[Tensor, Tensor]:
    """Per-token rewards r_t = -kl_coef * KL_t on `kl_mask` (KL_t the `estimator`'s estimate, k1 by default:
    log pi(y_t) - log pi_ref(y_t)), plus the sequence score on each trajectory's last generated token.

    Args:
        scores: [B] sequence rewards.
        logprobs, ref_logprobs: [B, T] log-probs of the generated tokens under the policy and the reference.
        response_mask: [B, T] generated tokens.
        kl_mask: [B, T] tokens the KL penalty applies to (the learner's).
        kl_coef: the KL coefficient.
        estimator: 'k1', 'k2' or 'k3' (see `kl_estimate`).

    Returns:
        rewards [B, T] and the per-token KL estimate [B, T] (0 off `kl_mask`).
    """
    kl = kl_estimate(logprobs, ref_logprobs, estimator) * kl_mask.to(logprobs.dtype)
    rewards = -kl_coef * kl
    last = (response_mask.long().sum(-1) - 1).clamp(min=0)
    rewards = rewards.scatter_add(1, last[:, None], scores.to(rewards.dtype)[:, None])
    return rewards * response_mask.to(rewards.dtype), kl


def generalized_advantages(
    rewards: Tensor, values: Tensor, response_mask: Tensor, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """GAE over each response: delta_t = r_t + gamma V(s_{t+1}) - V(s_t), with V = 0 after the last token.

    Returns:
        advantages [B, T] and returns = advantages + values [B, T], both 0 off `response_mask`.
    """
    mask = response_mask.to(values.dtype)
    values = values * mask
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):  # a loop over time steps, batched over trajectories
        next_value = values[:, t + 1] if t + 1 < values.shape[1] else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values) * mask


def explained_variance(predictions: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """1 - Var(targets - predictions) / Var(targets) over the masked entries (nan when targets are constant)."""
    var_targets = masked_var(targets, mask)
    return 1.0 - masked_var(targets - predictions, mask) / var_targets
