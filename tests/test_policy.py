"""The causal-LM policy: padding-invariant log-probs, batched generation and EOS handling."""

import torch

from rlgf_pl.policies.base import continuation_lengths
from rlgf_pl.policies.causal_lm import CausalLMPolicy
from rlgf_pl.policies.generation import GenerationSettings
from rlgf_pl.policies.loading import load_causal_lm, load_tokenizer


def _policy(model_dir) -> CausalLMPolicy:
    return CausalLMPolicy(load_causal_lm(str(model_dir)).eval(), load_tokenizer(str(model_dir)))


def test_left_padded_logprobs_equal_unpadded(toy_model_dir):
    policy = _policy(toy_model_dir)
    short_ids, short_mask = policy.encode_prompts(["good movie"], max_tokens=16)
    batch_ids, batch_mask = policy.encode_prompts(["good movie", "the film was very long and boring"], max_tokens=16)
    assert batch_mask[0].tolist()[:5] == [0] * 5  # row 0 is left-padded in the batch
    response = torch.tensor([[7, 8, 9, 1]])
    response_mask = torch.ones_like(response)
    with torch.no_grad():
        alone, alone_entropy = policy(short_ids, short_mask, response, response_mask)
        padded, padded_entropy = policy(batch_ids, batch_mask, response.repeat(2, 1), response_mask.repeat(2, 1))
    torch.testing.assert_close(padded[0], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded_entropy[0], alone_entropy[0], atol=1e-5, rtol=1e-5)


def test_prompts_are_cut_from_the_left(toy_model_dir):
    policy = _policy(toy_model_dir)
    ids, mask = policy.encode_prompts(["the movie was good"], max_tokens=2)
    assert policy.decode(ids, mask) == ["was good"]


def test_continuation_lengths_by_hand():
    tokens = torch.tensor([[5, 1, 0, 0], [5, 6, 7, 8], [1, 0, 0, 0]])
    assert continuation_lengths(tokens, (1,)).tolist() == [2, 4, 1]
    assert continuation_lengths(tokens, (8, 1)).tolist() == [2, 4, 1]
    assert continuation_lengths(tokens, (6,)).tolist() == [4, 2, 4]


def test_generation_pads_after_eos_and_respects_settings(toy_model_dir):
    policy = _policy(toy_model_dir)
    ids, mask = policy.encode_prompts(["good"] * 64, max_tokens=8)
    torch.manual_seed(0)
    tokens, lengths = policy.generate(ids, mask, GenerationSettings(max_new_tokens=30, top_k=0))
    assert tokens.shape[1] <= 30
    assert (lengths < tokens.shape[1]).any(), "a random 40-word model should emit EOS early in some of 64 rows"
    for row, length in zip(tokens, lengths):
        if length < tokens.shape[1] or row[length - 1] == policy.eos_token_id:
            assert row[length - 1] == policy.eos_token_id
        assert (row[length:] == policy.pad_token_id).all()
    greedy_a, _ = policy.generate(ids[:2], mask[:2], GenerationSettings(max_new_tokens=6, do_sample=False))
    greedy_b, _ = policy.generate(ids[:2], mask[:2], GenerationSettings(max_new_tokens=6, do_sample=False))
    assert torch.equal(greedy_a, greedy_b)
    forced, forced_lengths = policy.generate(ids[:8], mask[:8], GenerationSettings(max_new_tokens=5, min_new_tokens=5))
    assert (forced_lengths == 5).all()
