"""The PPO loss against numbers worked out by hand."""

import math

import pytest
import torch

from rlgf_pl.algorithms.losses import clipped_surrogate, clipped_value_loss, ppo_loss


def test_clipped_surrogate_by_hand():
    logprobs = torch.tensor([[math.log(1.5), math.log(0.5)]])
    old = torch.zeros(1, 2)
    advantages = torch.tensor([[1.0, -1.0]])
    loss, clip_frac, approx_kl = clipped_surrogate(logprobs, old, advantages, torch.ones(1, 2), clip_range=0.2)
    # token 0: max(-1.5, -1.2) = -1.2 ; token 1: max(0.5, 0.8) = 0.8 ; both clipped
    assert float(loss) == pytest.approx(-0.2)
    assert float(clip_frac) == pytest.approx(1.0)
    expected_kl = ((0.5 - math.log(1.5)) + (-0.5 - math.log(0.5))) / 2
    assert float(approx_kl) == pytest.approx(expected_kl, rel=1e-5)


def test_surrogate_ignores_unmasked_tokens():
    logprobs = torch.tensor([[math.log(1.1), 5.0]])
    loss, clip_frac, _ = clipped_surrogate(logprobs, torch.zeros(1, 2), torch.ones(1, 2), torch.tensor([[1, 0]]), 0.2)
    assert float(loss) == pytest.approx(-1.1, rel=1e-5)
    assert float(clip_frac) == 0.0


def test_clipped_value_loss_by_hand():
    loss, frac = clipped_value_loss(
        torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.5]]), torch.tensor([[2.0, 0.0]]), torch.ones(1, 2), 0.2
    )
    # token 0: max((1-2)^2, (0.7-2)^2) = 1.69 ; token 1: max(0, 0.3^2) = 0.09
    assert float(loss) == pytest.approx(0.5 * (1.69 + 0.09) / 2)
    assert float(frac) == pytest.approx(1.0)
    unclipped, _ = clipped_value_loss(
        torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.5]]), torch.tensor([[2.0, 0.0]]), torch.ones(1, 2), None
    )
    assert float(unclipped) == pytest.approx(0.25)


def test_total_loss_combines_terms():
    terms = ppo_loss(
        logprobs=torch.tensor([[math.log(1.5), math.log(0.5)]]),
        entropy=torch.tensor([[2.0, 4.0]]),
        values=torch.tensor([[1.0, 0.0]]),
        old_logprobs=torch.zeros(1, 2),
        old_values=torch.tensor([[0.5, 0.5]]),
        advantages=torch.tensor([[1.0, -1.0]]),
        returns=torch.tensor([[2.0, 0.0]]),
        policy_mask=torch.ones(1, 2),
        critic_mask=torch.ones(1, 2),
        clip_range=0.2,
        value_clip_range=0.2,
        vf_coef=0.5,
        ent_coef=0.01,
    )
    assert float(terms.loss) == pytest.approx(-0.2 + 0.5 * 0.445 - 0.01 * 3.0, abs=1e-6)
