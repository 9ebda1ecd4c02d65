"""The advantage estimators against hand computations: groups of unequal rewards, ragged masks, K = 1 refused."""

import pytest
import torch

from rlgf_pl.errors import ConfigError
from rlgf_pl.rollout.estimators import (
    critic_free_advantages,
    discounted_returns,
    distillation_rewards,
    leader_mask_from_state,
    returns_to_go,
)

# two groups of K = 3, ragged: lengths 3, 1, 2 | 2, 3, 1
LENGTHS = torch.tensor([3, 1, 2, 2, 3, 1])
MASK = (torch.arange(3)[None, :] < LENGTHS[:, None]).long()
SCORES = torch.tensor([1.0, 2.0, 6.0, 0.0, 0.0, 3.0])


def _rewards(scores=SCORES, token_penalty=0.0):
    """The score on each row's last token, and -token_penalty on every generated token."""
    rewards = -token_penalty * MASK.float()
    rewards[torch.arange(6), LENGTHS - 1] += scores
    return rewards


def test_group_baseline_is_the_group_mean_and_std_scales():
    plain = critic_free_advantages("group", _rewards(), MASK, MASK, group_size=3)
    expected = torch.tensor([1 - 3, 2 - 3, 6 - 3, 0 - 1, 0 - 1, 3 - 1.0])  # means 3 and 1
    torch.testing.assert_close(plain.advantages, expected[:, None] * MASK)
    torch.testing.assert_close(plain.baselines, torch.tensor([3.0, 3, 3, 1, 1, 1]))
    scaled = critic_free_advantages("group", _rewards(), MASK, MASK, group_size=3, scale_by_std=True)
    stds = torch.tensor([7.0**0.5] * 3 + [3.0**0.5] * 3)  # (n-1): sqrt((4+1+9)/2), sqrt((1+1+4)/2)
    torch.testing.assert_close(scaled.advantages, (expected / (stds + 1e-4))[:, None] * MASK)


def test_leave_one_out_baseline_is_the_mean_of_the_others():
    result = critic_free_advantages("rloo", _rewards(), MASK, MASK, group_size=3)
    expected = torch.tensor([1 - 4, 2 - 3.5, 6 - 1.5, 0 - 1.5, 0 - 1.5, 3 - 0.0])
    torch.testing.assert_close(result.advantages, expected[:, None] * MASK)


def test_per_token_kl_counts_from_each_token_on_and_sequence_mode_gives_one_advantage_per_row():
    rewards = _rewards(token_penalty=0.1)
    to_go = returns_to_go(rewards, MASK)
    # row 0: rewards [-0.1, -0.1, 0.9] -> to-go [0.7, 0.8, 0.9]; row 1: [1.9]; row 2: [-0.1, 5.9] -> [5.8, 5.9]
    torch.testing.assert_close(to_go[:3], torch.tensor([[0.7, 0.8, 0.9], [1.9, 0, 0], [5.8, 5.9, 0]]))
    per_token = critic_free_advantages("group", rewards, MASK, MASK, group_size=3)
    baseline = (0.7 + 1.9 + 5.8) / 3
    torch.testing.assert_close(per_token.advantages[0], torch.tensor([0.7, 0.8, 0.9]) - baseline)
    per_row = critic_free_advantages("group", rewards, MASK, MASK, group_size=3, per_token=False)
    torch.testing.assert_close(per_row.advantages[0], torch.full((3,), 0.7 - baseline))
    torch.testing.assert_close(per_row.advantages[1], torch.tensor([1.9 - baseline, 0, 0]), msg="0 off the mask")


def test_guide_mc_compares_the_leader_with_the_guide_rollouts_from_its_state():
    # K = 3: row 0 is the learner's trajectory from h = 1, rows 1-2 the guide's roll-outs from the same state
    mask = torch.ones(6, 4, dtype=torch.long)
    switch = torch.tensor([1, 1, 1, 2, 2, 2])
    rewards = torch.zeros(6, 4)
    rewards[:, -1] = torch.tensor([1.0, 2.0, 4.0, 5.0, 1.0, 0.0])
    rewards[0, 0] = -10.0  # a reward before the state does not count for the state's return
    policy_mask = leader_mask_from_state(mask, switch, 3)
    assert policy_mask.tolist() == [[0, 1, 1, 1], [0] * 4, [0] * 4, [0, 0, 1, 1], [0] * 4, [0] * 4]
    result = critic_free_advantages("guide_mc", rewards, mask, policy_mask, 3, state_index=switch, per_token=False)
    torch.testing.assert_close(result.baselines[[0, 3]], torch.tensor([3.0, 0.5]))
    torch.testing.assert_close(result.advantages[0], torch.tensor([0.0, -2.0, -2.0, -2.0]))
    torch.testing.assert_close(result.advantages[3], torch.tensor([0.0, 0.0, 4.5, 4.5]))
    assert not result.advantages[[1, 2, 4, 5]].any(), "guide roll-outs take no policy gradient"


@pytest.mark.parametrize("estimator", ["group", "rloo", "guide_mc"])
def test_one_sample_per_prompt_is_refused_with_the_fix(estimator):
    with pytest.raises(ConfigError, match="samples_per_prompt"):
        critic_free_advantages(estimator, _rewards(), MASK, MASK, group_size=1)
    with pytest.raises(ConfigError, match="groups of samples_per_prompt=4"):
        critic_free_advantages(estimator, _rewards(), MASK, MASK, group_size=4)


def test_critic_free_algorithms_refuse_one_sample_and_a_useless_kl_loss(toy_model_dir):
    from rlgf_pl.algorithms import GRPO, RLOO

    with pytest.raises(ConfigError, match="samples_per_prompt"):
        RLOO(model=str(toy_model_dir), samples_per_prompt=1)
    with pytest.raises(ConfigError, match="k3"):
        GRPO(model=str(toy_model_dir), kl_mode="loss", kl_estimator="k1")


def test_distillation_reward_is_the_guide_log_ratio_on_learner_tokens():
    logprobs = torch.log(torch.tensor([[0.5, 0.25, 0.9], [0.1, 0.2, 0.3]]))
    guide = torch.log(torch.tensor([[0.25, 0.5, 0.9], [0.4, 0.2, 0.6]]))
    learner_mask = torch.tensor([[1, 1, 0], [1, 0, 1]])
    rewards = distillation_rewards(logprobs, guide, learner_mask)
    log2 = torch.log(torch.tensor(2.0))
    torch.testing.assert_close(rewards, torch.stack([torch.stack([-log2, log2, torch.tensor(0.0)]),
                                                     torch.stack([2 * log2, torch.tensor(0.0), log2])]))
    torch.testing.assert_close(discounted_returns(rewards, torch.ones(2, 3), 0.0), rewards)
    torch.testing.assert_close(discounted_returns(rewards, torch.ones(2, 3), 1.0)[0, 0], torch.tensor(0.0))
