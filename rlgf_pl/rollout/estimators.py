"""Advantage estimators: how the token rewards of an epoch become the advantages of the policy gradient.

An algorithm is a plan, an estimator and a critic choice. `gae` bootstraps from a learned critic; the others
are critic-free and compare each trajectory with other trajectories of its group (the `samples_per_prompt`
consecutive rows drawn for one prompt, an argument of the critic-free algorithms):

| name | baseline of a row | rows that take the policy gradient |
|---|---|---|
| `gae` | the critic's values (GAE) | the plan's learner tokens |
| `group` | the mean return of its group (GRPO; optionally divided by the group's std) | the plan's learner tokens |
| `rloo` | the mean return of the other K-1 rows of its group (RLOO) | the plan's learner tokens |
| `guide_mc` | the mean return of the guide roll-outs from its state (AggreVaTeD-MC) | the group leader's tokens from h |

All tensors are [B, T] over response positions unless said otherwise; rows of a group are consecutive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from rlgf_pl.errors import ConfigError

EstimatorName = Literal["gae", "group", "rloo", "guide_mc", "distill"]
GROUP_ESTIMATORS = ("group", "rloo", "guide_mc")
"""The estimators that compare rows of a group, and so need `samples_per_prompt` >= 2."""


@dataclass(frozen=True)
class CriticFreeAdvantages:
    """What a critic-free estimator returns.

    Attributes:
        advantages: [B, T] advantages on `policy_mask`, 0 elsewhere.
        returns: [B, T] returns-to-go of the token rewards (logged; there is no critic to train on them).
        baselines: [B] the baseline each row was compared with.
    """

    advantages: Tensor
    returns: Tensor
    baselines: Tensor


def check_group_size(batch_size: int, group_size: int, estimator: str) -> None:
    """A group estimator needs at least two rows per group and whole groups."""
    if group_size < 2:
        raise ConfigError(
            f"The '{estimator}' advantage estimator compares the K continuations of each prompt, so it needs "
            f"samples_per_prompt K >= 2, got {group_size}. Set model.init_args.samples_per_prompt (e.g. 4).")
    if batch_size % group_size:
        raise ConfigError(f"{batch_size} trajectories do not split into groups of samples_per_prompt={group_size}; "
                          "rollouts per rank must be a multiple of samples_per_prompt.")


def returns_to_go(rewards: Tensor, response_mask: Tensor) -> Tensor:
    """G_t = sum of r_t' for t' >= t over each response (undiscounted), 0 off `response_mask`."""
    masked = rewards * response_mask.to(rewards.dtype)
    return masked.flip(-1).cumsum(-1).flip(-1) * response_mask.to(rewards.dtype)


def discounted_returns(rewards: Tensor, response_mask: Tensor, gamma: float) -> Tensor:
    """G_t = sum of gamma^(t'-t) r_t' for t' >= t; gamma = 0 gives each token its own reward."""
    mask = response_mask.to(rewards.dtype)
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):  # a loop over time steps, batched over trajectories
        running = (rewards[:, t] + gamma * running) * mask[:, t]
        returns[:, t] = running
    return returns


def group_mean_baselines(returns: Tensor, group_size: int) -> Tensor:
    """[B] the mean return of each row's group (GRPO)."""
    check_group_size(returns.shape[0], group_size, "group")
    groups = returns.view(-1, group_size)
    return groups.mean(1, keepdim=True).expand_as(groups).reshape(-1)


def leave_one_out_baselines(returns: Tensor, group_size: int) -> Tensor:
    """[B] the mean return of the other K-1 rows of each row's group (RLOO)."""
    check_group_size(returns.shape[0], group_size, "rloo")
    groups = returns.view(-1, group_size)
    return ((groups.sum(1, keepdim=True) - groups) / (group_size - 1)).reshape(-1)


def guide_rollout_baselines(returns: Tensor, group_size: int) -> Tensor:
    """[B] for each group's first row (the learner's trajectory), the mean return of the other K-1 rows (the
    guide's roll-outs from the same state); the other rows are their own baseline (advantage 0)."""
    check_group_size(returns.shape[0], group_size, "guide_mc")
    groups = returns.view(-1, group_size)
    baselines = groups.clone()
    baselines[:, 0] = groups[:, 1:].mean(1)
    return baselines.reshape(-1)


def group_stds(returns: Tensor, group_size: int) -> Tensor:
    """[B] the (n-1) standard deviation of each row's group of returns."""
    groups = returns.view(-1, group_size)
    return groups.std(1, keepdim=True).expand_as(groups).reshape(-1)


def group_leaders(batch_size: int, group_size: int, device: torch.device | None = None) -> Tensor:
    """[B] bool, True on the first row of each group."""
    return torch.arange(batch_size, device=device) % group_size == 0


def leader_mask_from_state(learner_mask: Tensor, switch_index: Tensor, group_size: int) -> Tensor:
    """The policy-gradient tokens of AggreVaTeD-MC: the learner's tokens of each group's first row, from its state
    h on (tokens before h are shared with the guide roll-outs they are compared with)."""
    positions = torch.arange(learner_mask.shape[1], device=learner_mask.device)[None, :]
    leaders = group_leaders(learner_mask.shape[0], group_size, learner_mask.device)[:, None]
    return learner_mask * (leaders & (positions >= switch_index[:, None])).to(learner_mask.dtype)


BASELINES = {"group": group_mean_baselines, "rloo": leave_one_out_baselines, "guide_mc": guide_rollout_baselines}


def critic_free_advantages(
    estimator: Literal["group", "rloo", "guide_mc"],
    rewards: Tensor,
    response_mask: Tensor,
    policy_mask: Tensor,
    group_size: int,
    state_index: Tensor | None = None,
    per_token: bool = True,
    scale_by_std: bool = False,
    eps: float = 1e-4,
) -> CriticFreeAdvantages:
    """Advantages from a group baseline, no critic.

    Each row's return is G at its state: position `state_index` (h for `guide_mc`, where the learner's trajectory
    and the guide's roll-outs part; the first token otherwise). A token's advantage is (G_t - b) when
    `per_token` (returns-to-go: a per-token KL penalty counts only from t on), else (G_state - b) for every
    token of the row (the sequence's return, KL included); with `scale_by_std` divided by the group's std of
    returns (+ eps), as GRPO.

    Args:
        estimator: 'group', 'rloo' or 'guide_mc' (see the module's table).
        rewards: [B, T] token rewards (the score on the last token, KL penalties where they apply).
        response_mask: [B, T] generated tokens.
        policy_mask: [B, T] tokens that take the policy gradient.
        group_size: K, rows per group (consecutive).
        state_index: [B] the position each row's return is taken from; None = 0.
        per_token: Advantages from returns-to-go (True) or from the row's return alone (False).
        scale_by_std: Divide by the group's std of returns.
        eps: Added to the std.
    """
    if estimator not in BASELINES:
        raise ConfigError(f"Unknown critic-free estimator {estimator!r}; use one of {sorted(BASELINES)}.")
    to_go = returns_to_go(rewards, response_mask)
    state = torch.zeros(rewards.shape[0], dtype=torch.long, device=rewards.device) if state_index is None \
        else state_index.clamp(max=rewards.shape[1] - 1)
    at_state = to_go.gather(1, state[:, None]).squeeze(1)
    baselines = BASELINES[estimator](at_state, group_size)
    centred = (to_go if per_token else at_state[:, None].expand_as(to_go)) - baselines[:, None]
    if scale_by_std:
        centred = centred / (group_stds(at_state, group_size)[:, None] + eps)
    return CriticFreeAdvantages(centred * policy_mask.to(centred.dtype), to_go, baselines)


def distillation_rewards(logprobs: Tensor, guide_logprobs: Tensor, learner_mask: Tensor) -> Tensor:
    """On-policy distillation's per-token reward: -(log p_learner(y_t) - log p_guide(y_t)) on the learner's
    tokens, a single-sample estimate of the negative reverse KL(learner || guide) at each step (GKD with
    lambda = 1)."""
    return -(logprobs - guide_logprobs) * learner_mask.to(logprobs.dtype)
