"""The guided sampler: who wrote which token, to the token, and the handoff between tokenizers and kinds.

Each test runs with a causal and a seq2seq (T5) learner that never writes 'good'; guides always write it."""

import pytest
import torch

from rlgf_pl.policies.generation import GenerationSettings
from rlgf_pl.policies.guide import Guide, TextBridgeWriter
from rlgf_pl.policies.loading import load_policy
from rlgf_pl.rollout.plan import Plan
from rlgf_pl.rollout.sampler import RolloutSampler

BUDGET = 10
LEARNERS = ["no_marker_learner_dir", "no_marker_t5_dir"]


@pytest.fixture(params=LEARNERS)
def learner_dir(request):
    return request.getfixturevalue(request.param)


def _sampler(learner_dir, guide_dir, **guide_options):
    guide = Guide(str(guide_dir), GenerationSettings(top_k=50, top_p=0.92), **guide_options)
    return RolloutSampler(load_policy(str(learner_dir)), GenerationSettings(max_new_tokens=BUDGET, top_k=0), guide,
                          max_prompt_tokens=8)


def _sample(sampler, plan, count=48, seed=0):
    prompts = ["the movie was", "a very long film and it was not fun", "i liked it"] * (count // 3)
    return sampler.sample(prompts, [[]] * len(prompts), plan, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("guide", ["marker_guide_dir", "marker_t5_guide_dir", "reordered_marker_guide_dir"])
def test_ppo_plus_plus_guide_writes_the_prefix_and_learner_the_rest(learner_dir, guide, request):
    sampler = _sampler(learner_dir, request.getfixturevalue(guide))
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


@pytest.mark.parametrize("guide", ["marker_guide_dir", "marker_t5_guide_dir", "reordered_marker_guide_dir"])
def test_aggrevated_learner_writes_the_prefix_and_guide_the_rest(learner_dir, guide, request):
    sampler = _sampler(learner_dir, request.getfixturevalue(guide))
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


def test_ppo_plan_never_calls_the_guide(learner_dir, marker_guide_dir):
    sampler = _sampler(learner_dir, marker_guide_dir)
    rollout = _sample(sampler, Plan("guide", "learner", 0.0))
    assert not rollout.guide_mask.any() and not rollout.switch_index.any()
    plain = _sample(sampler, Plan())
    assert torch.equal(plain.response_ids, rollout.response_ids), "beta = 0 PPO++ is PPO, draw for draw"


def test_guide_with_another_tokenizer_hands_off_text(learner_dir, reordered_marker_guide_dir):
    sampler = _sampler(learner_dir, reordered_marker_guide_dir)
    assert isinstance(sampler.writers["guide"], TextBridgeWriter)
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


def test_plan_that_needs_a_guide_without_one_is_refused(learner_dir):
    sampler = RolloutSampler(load_policy(str(learner_dir)), GenerationSettings(max_new_tokens=4))
    with pytest.raises(ValueError, match="needs a guide.*data.init_args.guide"):
        _sample(sampler, Plan("guide", "learner", 0.5), count=3)


def test_chat_template_guide_sees_its_template_and_hands_off_text(learner_dir, marker_guide_dir, tmp_path):
    """An instruct guide reads the prompt inside its chat template (here: the prompt, then 'so' as the
    assistant's cue); the handoff then goes through text even with a shared vocabulary."""
    import shutil

    from transformers import AutoTokenizer

    chat_guide = tmp_path / "chat-guide"
    shutil.copytree(marker_guide_dir, chat_guide)
    tokenizer = AutoTokenizer.from_pretrained(chat_guide)
    tokenizer.chat_template = ("{% for message in messages %}{{ message['content'] }} {% endfor %}"
                               "{% if add_generation_prompt %}so{% endif %}")
    tokenizer.save_pretrained(chat_guide)
    sampler = _sampler(learner_dir, chat_guide, chat_template=True)
    writer = sampler.writers["guide"]
    assert isinstance(writer, TextBridgeWriter)
    assert writer.format_prompts(["the movie was"]) == ["the movie was so"]
    marker = sampler.learner.tokenizer.convert_tokens_to_ids("good")
    rollout = _sample(sampler, Plan("guide", "learner", 1.0), count=12)
    generated = rollout.response_mask.bool()
    assert torch.equal((rollout.response_ids == marker) & generated, rollout.guide_mask.bool())
    with pytest.raises(ValueError, match="system_prompt is used only with guide.chat_template"):
        Guide(str(chat_guide), system_prompt="be kind")


@pytest.mark.parametrize("plan", [Plan("guide", "learner", 0.6), Plan("learner", "guide", 0.8)])
def test_fixed_length_roll_ins_stop_at_the_switch_point_with_the_same_prefixes(toy_model_dir, other_toy_model_dir,
                                                                             plan, monkeypatch):
    """A roll-in writer that always fills the budget: h is drawn first and the roll-in writes max(h) tokens;
    the switch points and the roll-in's tokens before them equal the full roll-in's."""
    import rlgf_pl.rollout.sampler as sampler_module

    whole = GenerationSettings(max_new_tokens=BUDGET, min_new_tokens=BUDGET, top_k=5)
    guide = Guide(str(other_toy_model_dir), whole)

    def sample(cut: bool):
        monkeypatch.setattr(sampler_module, "fixed_length", lambda writer, budget: cut)
        sampler = RolloutSampler(load_policy(str(toy_model_dir)), whole, guide, max_prompt_tokens=8)
        asked = []
        writer = sampler.writers[plan.rollin]
        write = writer.write
        writer.write = lambda *args: asked.append(args[-1]) or write(*args)
        return _sample(sampler, plan, count=24, seed=3), asked

    full, full_asked = sample(cut=False)
    cut, cut_asked = sample(cut=True)
    h = full.switch_index
    assert torch.equal(cut.switch_index, h) and (h > 0).any()
    assert full_asked[0] == BUDGET and cut_asked[0] == int(h.max()) < BUDGET
    rollin = torch.arange(BUDGET)[None, :] < h[:, None]
    assert torch.equal(cut.response_ids[:, :BUDGET][rollin], full.response_ids[:, :BUDGET][rollin])
    assert (cut.response_mask.sum(-1) == BUDGET).all()
    assert sampler_module.fixed_length(RolloutSampler(load_policy(str(toy_model_dir)), whole).writers["learner"],
                                       BUDGET) is True


def test_roll_ins_that_may_end_early_are_written_whole(toy_model_dir):
    from rlgf_pl.rollout.sampler import fixed_length

    sampler = RolloutSampler(load_policy(str(toy_model_dir)), GenerationSettings(max_new_tokens=BUDGET, min_new_tokens=3))
    assert fixed_length(sampler.writers["learner"], BUDGET) is False
