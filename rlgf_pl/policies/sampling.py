"""Top-k / top-p sampling as one logits processor, for Hugging Face `generate`.

`generate(do_sample=True)` draws each token with `torch.multinomial` over the whole vocabulary; on CPU
that one call took about 45% of a 48-token generation of the demo's 8k-vocabulary model. This processor
draws from the same distribution (temperature, then top-k, then top-p, as Hugging Face's warpers do)
with the exponential race (argmax of p / E, E ~ Exp(1), is a draw from p) over the top-k candidates
only, and leaves a single finite logit, so `generate(do_sample=False)` picks the drawn token.
"""

from __future__ import annotations

import torch
from torch import Tensor
from transformers import LogitsProcessor


def truncated_candidates(scores: Tensor, top_k: int, top_p: float, temperature: float) -> tuple[Tensor, Tensor]:
    """The tokens a truncated sampler may draw and their probabilities.

    Args:
        scores: [B, V] next-token logits (-inf where earlier processors banned a token).
        top_k: Keep the k most likely tokens (0 keeps all).
        top_p: Then keep the fewest most likely tokens whose mass reaches top_p (1.0 keeps all).
        temperature: Logits are divided by it first.

    Returns:
        probabilities [B, K] (renormalized, 0 for dropped candidates) and token ids [B, K], K = min(k, V).
    """
    vocabulary = scores.shape[-1]
    k = vocabulary if top_k == 0 else min(top_k, vocabulary)
    values, indices = torch.topk(scores.float() / temperature, k, dim=-1)  # sorted, most likely first
    probs = torch.softmax(values, dim=-1)
    if top_p < 1.0:
        mass_before = torch.cumsum(probs, dim=-1) - probs
        probs = torch.where(mass_before < top_p, probs, torch.zeros_like(probs))  # the most likely always stays
        probs = probs / probs.sum(-1, keepdim=True)
    return probs, indices


class TruncatedSampler(LogitsProcessor):
    """Draws the next token from the truncated distribution and leaves only its logit finite.

    Randomness comes from the global RNG of the scores' device, so a seeded generation is reproducible.
    """

    def __init__(self, top_k: int, top_p: float, temperature: float) -> None:
        self.top_k, self.top_p, self.temperature = top_k, top_p, temperature

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        probs, indices = truncated_candidates(scores, self.top_k, self.top_p, self.temperature)
        race = probs / torch.empty_like(probs).exponential_().clamp_min_(torch.finfo(probs.dtype).tiny)
        drawn = indices.gather(-1, race.argmax(-1, keepdim=True))
        return torch.full_like(scores, float("-inf")).scatter_(-1, drawn, 0.0)
