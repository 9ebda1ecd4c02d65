"""TruncatedSampler: the same distribution as Hugging Face's sampling warpers, drawn without a multinomial."""

import pytest
import torch
from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from rlgf_pl.policies.causal_lm import CausalLMPolicy
from rlgf_pl.policies.generation import GenerationSettings
from rlgf_pl.policies.loading import load_causal_lm, load_tokenizer
from rlgf_pl.policies.sampling import TruncatedSampler, truncated_candidates

SETTINGS = [(5, 0.8, 0.7), (0, 0.9, 1.0), (10, 1.0, 1.3), (0, 1.0, 1.0), (1, 1.0, 1.0)]


def _hugging_face_probs(scores, top_k, top_p, temperature):
    warpers = [TemperatureLogitsWarper(temperature)] if temperature != 1.0 else []
    warpers += [TopKLogitsWarper(top_k)] if top_k else []
    warpers += [TopPLogitsWarper(top_p)] if top_p < 1.0 else []
    for warper in warpers:
        scores = warper(None, scores)
    return torch.softmax(scores, dim=-1)


@pytest.mark.parametrize("top_k,top_p,temperature", SETTINGS)
def test_candidates_carry_hugging_face_warped_distribution(top_k, top_p, temperature):
    scores = torch.randn(6, 40, generator=torch.Generator().manual_seed(1)) * 2
    scores[:, 3] = float("-inf")  # banned by an earlier processor (e.g. EOS before min_new_tokens)
    probs, indices = truncated_candidates(scores, top_k, top_p, temperature)
    dense = torch.zeros_like(scores).scatter_add_(-1, indices, probs)
    torch.testing.assert_close(dense, _hugging_face_probs(scores.clone(), top_k, top_p, temperature))
    assert (dense[:, 3] == 0).all()


@pytest.mark.parametrize("top_k,top_p,temperature", SETTINGS[:3])
def test_draws_follow_the_truncated_distribution(top_k, top_p, temperature):
    logits = torch.randn(40, generator=torch.Generator().manual_seed(2)) * 2
    scores = logits.expand(40_000, -1).clone()
    torch.manual_seed(0)
    out = TruncatedSampler(top_k, top_p, temperature)(None, scores)
    assert (torch.isfinite(out).sum(-1) == 1).all() and (out.max(-1).values == 0).all()
    frequencies = torch.bincount(out.argmax(-1), minlength=40).float() / len(scores)
    expected = _hugging_face_probs(logits[None].clone(), top_k, top_p, temperature)[0]
    assert (frequencies[expected == 0] == 0).all()
    assert (frequencies - expected).abs().max() < 0.01  # about 4 standard errors at 40k draws


def test_seeded_generation_repeats_and_differs_across_seeds(toy_model_dir):
    policy = CausalLMPolicy(load_causal_lm(str(toy_model_dir)).eval(), load_tokenizer(str(toy_model_dir)))
    ids, mask = policy.encode_prompts(["good movie"] * 16, max_tokens=8)
    settings = GenerationSettings(max_new_tokens=12, top_k=20, top_p=0.95)
    draws = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        draws.append(policy.generate(ids, mask, settings)[0])
    assert torch.equal(draws[0], draws[1])
    assert not torch.equal(draws[0], draws[2])
    assert len({tuple(row.tolist()) for row in draws[0]}) > 1, "rows of one prompt should differ when sampling"
