"""The guided sampler: who wrote which token, to the token, and the handoff between tokenizers."""

import pytest
import torch

from rlgf_pl.policies.causal_lm import CausalLMPolicy
from rlgf_pl.policies.generation import GenerationSettings
from rlgf_pl.policies.guide import Guide
from rlgf_pl.policies.loading import load_causal_lm, load_tokenizer
from rlgf_pl.rollout.plan import Plan
from rlgf_pl.rollout.sampler import RolloutSampler

BUDGET = 10


def _sampler(learner_dir, guide_dir):
    learner = CausalLMPolicy(load_causal_lm(str(learner_dir)), load_tokenizer(str(learner_dir)))
    guide = Guide(str(guide_dir), GenerationSettings(top_k=50, top_p=0.92))
    return RolloutSampler(learner, GenerationSettings(max_new_tokens=BUDGET, top_k=0), guide, max_prompt_tokens=8)


def _sample(sampler, plan, count=48, seed=0):
    prompts = ["the movie was", "a very long film and it was not fun", "i liked it"] * (count // 3)
    return sampler.sample(prompts, [[]] * len(prompts), plan, torch.Generator().manual_seed(seed))


def test_ppo_plus_plus_guide_writes_the_prefix_and_learner_the_rest(no_marker_learner_dir, marker_guide_dir):
    sampler = _sampler(no_marker_learner_dir, marker_guide_dir)
    marker = sampler.learner.tokenizer.convert_tokens_to_ids("good")
    rollout = _sample(sampler, Plan("guide", "learner", 0.6))
    h = rollout.switch_index
    assert (h > 0).any() and (h == 0).any()
    assert ((h >= 0) & (h <= BUDGET - 1)).all()
    positions = torch.arange(rollout.response_ids.shape[1])[None, :]
    generated = rollout.response_mask.bool()
    expected_guide = (positions < h[:, None]) & generated
    assert torch.equal(rollout.guide_mask.bool(), expected_guide)
    assert torch.equal(rollout.learner_mask.bool(), generated & ~expected_guide)
    is_marker = rollout.response_ids == marker
    assert torch.equal(is_marker & generated, expected_guide), "guide tokens are exactly the marker ones"
    assert (rollout.response_mask.sum(-1) <= BUDGET).all()
    assert (rollout.response_mask.sum(-1) > h).all(), "the learner always writes at least one token"


def test_aggrevated_learner_writes_the_prefix_and_guide_the_rest(no_marker_learner_dir, marker_guide_dir):
    sampler = _sampler(no_marker_learner_dir, marker_guide_dir)
    marker = sampler.learner.tokenizer.convert_tokens_to_ids("good")
    rollout = _sample(sampler, Plan("learner", "guide", 0.8))
    h = rollout.switch_index
    assert (h > 0).any() and (h == 0).any()
    positions = torch.arange(rollout.response_ids.shape[1])[None, :]
    generated = rollout.response_mask.bool()
    expected_learner = (positions < h[:, None]) & generated
    assert torch.equal(rollout.learner_mask.bool(), expected_learner)
    assert torch.equal(rollout.guide_mask.bool(), generated & ~expected_learner)
    assert torch.equal((rollout.response_ids == marker) & generated, generated & ~expected_learner)
    # the marker guide never stops, so it fills the budget; h = 0 rows are the guide's alone
    assert (rollout.response_mask.sum(-1) == BUDGET).all()
    assert rollout.guide_mask[h == 0].all()


def test_ppo_plan_never_calls_the_guide(no_marker_learner_dir, marker_guide_dir):
    sampler = _sampler(no_marker_learner_dir, marker_guide_dir)
    rollout = _sample(sampler, Plan("guide", "learner", 0.0))
    assert not rollout.guide_mask.any() and not rollout.switch_index.any()
    plain = _sample(sampler, Plan())
    assert torch.equal(plain.response_ids, rollout.response_ids), "beta = 0 PPO++ is PPO, draw for draw"


def test_guide_with_another_tokenizer_hands_off_text(no_marker_learner_dir, reordered_marker_guide_dir):
    sampler = _sampler(no_marker_learner_dir, reordered_marker_guide_dir)
    guide_ids = sampler.writers["guide"].policy.tokenizer.convert_tokens_to_ids("good")
    marker = sampler.learner.tokenizer.convert_tokens_to_ids("good")
    assert guide_ids != marker, "the test needs vocabularies that disagree"
    rollout = _sample(sampler, Plan("guide", "learner", 1.0))
    generated = rollout.response_mask.bool()
    assert torch.equal((rollout.response_ids == marker) & generated, rollout.guide_mask.bool())
    assert rollout.guide_mask.sum(-1).tolist() == rollout.switch_index.tolist()
    mirrored = _sample(sampler, Plan("learner", "guide", 1.0))
    assert torch.equal((mirrored.response_ids == marker) & mirrored.response_mask.bool(), mirrored.guide_mask.bool())
    assert all(text.split()[-1] == "good" for text in mirrored.continuations)


def test_plan_that_needs_a_guide_without_one_is_refused(no_marker_learner_dir):
    learner = CausalLMPolicy(load_causal_lm(str(no_marker_learner_dir)), load_tokenizer(str(no_marker_learner_dir)))
    sampler = RolloutSampler(learner, GenerationSettings(max_new_tokens=4))
    with pytest.raises(ValueError, match="needs a guide.*data.init_args.guide"):
        _sample(sampler, Plan("guide", "learner", 0.5), count=3)
