"""ReferenceGuide: the oracle-like top of a guide ladder hands over the task's reference from the switch point."""

import pytest
import torch
from conftest import fast_fit_args

from rlgf_pl.cli import main
from rlgf_pl.policies import GenerationSettings, ReferenceGuide, load_policy
from rlgf_pl.rollout.plan import GUIDE_ONLY, Plan
from rlgf_pl.rollout.sampler import RolloutSampler

PROMPTS = ["the movie was", "i liked it"]
REFERENCES = [["very good and fun", "bad"], ["so much fun"]]


@pytest.fixture(params=["no_marker_learner_dir", "no_marker_t5_dir"])
def sampler(request):
    learner = load_policy(str(request.getfixturevalue(request.param)))
    return RolloutSampler(learner, GenerationSettings(max_new_tokens=6, top_k=0), ReferenceGuide(), max_prompt_tokens=8)


def test_the_guide_alone_writes_each_rows_first_reference_and_ends_it(sampler):
    rollout = sampler.sample(PROMPTS, REFERENCES, GUIDE_ONLY, torch.Generator().manual_seed(0))
    assert [text.strip() for text in rollout.continuations] == ["very good and fun", "so much fun"]
    lengths = rollout.response_mask.sum(1)
    last = rollout.response_ids.gather(1, (lengths - 1)[:, None]).squeeze(1)
    assert (last == sampler.learner.eos_token_id).all() and torch.equal(rollout.guide_mask, rollout.response_mask)


def test_a_roll_out_continues_the_reference_from_the_switch_point(sampler):
    writer = sampler.writers["guide"]
    learner = sampler.learner
    query = learner.encode_prompts(PROMPTS, 8)
    prefix_ids, prefix_mask = learner.encode_responses(PROMPTS, [" it", " it was"], None)  # h = 1 and 2
    ids, lengths = writer.write(*query, prefix_ids, prefix_mask, 6, references=REFERENCES)
    texts = learner.decode(ids, (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long())
    assert [text.strip() for text in texts] == ["good and fun", "fun"]  # the reference's tokens from h on
    short, short_lengths = writer.write(*query, prefix_ids, prefix_mask, 2, references=REFERENCES)
    assert short_lengths.tolist() == [2, 2]  # cut at the budget: "good and" with no end; "fun" then its end
    assert short[1, 1] == learner.eos_token_id and short[0, 1] != learner.eos_token_id
    with pytest.raises(ValueError, match="one list of references per row"):
        writer.write(*query, prefix_ids, prefix_mask, 6)


def test_learner_roll_in_then_reference_marks_who_wrote_what(sampler):
    rollout = sampler.sample(PROMPTS * 8, REFERENCES * 8, Plan("learner", "guide", 1.0),
                             torch.Generator().manual_seed(1))
    h = rollout.switch_index
    positions = torch.arange(rollout.response_ids.shape[1])[None, :]
    assert torch.equal(rollout.learner_mask.bool(), (positions < h[:, None]) & rollout.response_mask.bool())
    assert torch.equal(rollout.guide_mask.bool(), (positions >= h[:, None]) & rollout.response_mask.bool())


def test_d2lols_trains_with_the_reference_guide(tmp_path, toy_model_dir):
    main(fast_fit_args(tmp_path, toy_model_dir, epochs=2, config="d2lols",
                       extra=["--data.init_args.guide=rlgf_pl.policies.ReferenceGuide"]))
    assert list(tmp_path.rglob("last.ckpt"))
