"""GAE, KL shaping and whitening against numbers worked out by hand."""

import math

import pytest
import torch

from rlgf_pl.rollout.advantages import explained_variance, generalized_advantages, kl_shaped_rewards, whiten


def test_gae_full_length_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.4, 0.3]])
    advantages, returns = generalized_advantages(rewards, values, torch.ones(1, 3), gamma=0.9, lam=0.8)
    # t=2: 1 - 0.3 = 0.7; t=1: 0.9*0.3 - 0.4 + 0.72*0.7 = 0.374; t=0: 0.9*0.4 - 0.5 + 0.72*0.374 = 0.12928
    assert advantages == pytest.approx(torch.tensor([[0.12928, 0.374, 0.7]]), abs=1e-6)
    assert returns == pytest.approx(torch.tensor([[0.62928, 0.774, 1.0]]), abs=1e-6)


def test_gae_value_is_zero_after_last_token():
    rewards = torch.tensor([[0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.4, 9.0]])  # 9.0 sits on padding and must be ignored
    advantages, returns = generalized_advantages(rewards, values, torch.tensor([[1, 1, 0]]), gamma=0.9, lam=0.8)
    # t=1: 1 + 0 - 0.4 = 0.6; t=0: 0.9*0.4 - 0.5 + 0.72*0.6 = 0.292
    assert advantages == pytest.approx(torch.tensor([[0.292, 0.6, 0.0]]), abs=1e-6)
    assert returns == pytest.approx(torch.tensor([[0.792, 1.0, 0.0]]), abs=1e-6)


def test_kl_shaping_by_hand():
    logprobs = torch.tensor([[-1.0, -2.0, -3.0]])
    ref_logprobs = torch.tensor([[-1.5, -2.0, -2.0]])
    full = torch.ones(1, 3)
    rewards, kl = kl_shaped_rewards(torch.tensor([2.0]), logprobs, ref_logprobs, full, full, kl_coef=0.1)
    assert kl == pytest.approx(torch.tensor([[0.5, 0.0, -1.0]]))
    assert rewards == pytest.approx(torch.tensor([[-0.05, 0.0, 2.1]]))
    # KL only on the tokens the learner wrote; the score lands on the last generated token.
    rewards, _ = kl_shaped_rewards(
        torch.tensor([2.0]), logprobs, ref_logprobs, torch.tensor([[1, 1, 0]]), torch.tensor([[0, 1, 0]]), kl_coef=0.1
    )
    assert rewards == pytest.approx(torch.tensor([[0.0, 2.0, 0.0]]))


def test_whiten_only_masked_entries():
    values = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    whitened = whiten(values, torch.tensor([[1, 1, 1, 0]]))
    assert whitened == pytest.approx(torch.tensor([[-1.0, 0.0, 1.0, 100.0]]), abs=1e-4)


def test_explained_variance():
    targets = torch.tensor([[1.0, 2.0, 3.0]])
    mask = torch.ones(1, 3)
    assert float(explained_variance(targets, targets, mask)) == pytest.approx(1.0)
    assert float(explained_variance(torch.zeros(1, 3) + 2.0, targets, mask)) == pytest.approx(0.0)


def test_kl_estimators_by_hand_and_unbiased_on_policy():
    from rlgf_pl.rollout.advantages import kl_estimate

    logprobs, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -1.0])
    assert kl_estimate(logprobs, ref, "k1").tolist() == pytest.approx([0.5, -1.0])
    assert kl_estimate(logprobs, ref, "k2").tolist() == pytest.approx([0.125, 0.5])
    assert kl_estimate(logprobs, ref, "k3").tolist() == pytest.approx([math.exp(-0.5) - 1 + 0.5, math.e - 1 - 1])
    generator = torch.Generator().manual_seed(0)
    p, q = torch.softmax(torch.randn(50, generator=generator), 0), torch.softmax(torch.randn(50, generator=generator), 0)
    exact = float((p * (p / q).log()).sum())
    tokens = torch.multinomial(p, 200_000, replacement=True, generator=generator)
    for estimator in ("k1", "k3"):  # unbiased for tokens drawn from pi itself
        mean = float(kl_estimate(p.log()[tokens], q.log()[tokens], estimator).mean())
        assert mean == pytest.approx(exact, rel=0.03), estimator
    top = torch.topk(p, 5).indices  # top-k sampling: k1 can turn negative, k3 cannot
    truncated = top[torch.multinomial(p[top], 20_000, replacement=True, generator=generator)]
    assert (kl_estimate(p.log()[truncated], q.log()[truncated], "k3") >= 0).all()
