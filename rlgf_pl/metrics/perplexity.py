"""Fluency: perplexities of continuations under a frozen LM, and of the references under the policy."""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor
from torchmetrics import Metric

from rlgf_pl.metrics.samples import EvaluationSamples
from rlgf_pl.policies.base import Policy
from rlgf_pl.policies.loading import load_policy
from rlgf_pl.utils.text import joined_reference


@lru_cache(maxsize=2)
def frozen_lm(model: str) -> Policy:
    """A frozen LM (causal or seq2seq, as its config says) for scoring, loaded once per process."""
    policy = load_policy(model)
    return policy.requires_grad_(False).eval()


def encode_continuations(policy: Policy, prompts: list[str], texts: list[str], max_prompt_tokens: int,
                         max_tokens: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Prompts (as the policy encodes them, cut from the left) and the first `max_tokens` tokens of each text
    where it follows its prompt, in `policy`'s vocabulary.

    Returns:
        query ids, query mask [B, P], response ids, response mask [B, T].
    """
    query_ids, query_mask = policy.encode_prompts(prompts, max_prompt_tokens)
    return (query_ids, query_mask, *policy.encode_responses(prompts, texts, max_tokens))


@torch.no_grad()
def summed_nll(policy: Policy, query_ids: Tensor, query_mask: Tensor, response_ids: Tensor,
               response_mask: Tensor, chunk: int) -> tuple[Tensor, Tensor]:
    """Total negative log-likelihood of the masked response tokens, and their number. Cross-entropy on the
    logits directly: no entropy and no full log-softmax kept, which is most of the cost on a CPU."""
    total = torch.zeros((), dtype=torch.float64, device=query_ids.device)
    for start in range(0, query_ids.shape[0], chunk):
        rows = slice(start, start + chunk)
        logits = policy.response_logits(query_ids[rows], query_mask[rows], response_ids[rows], response_mask[rows])
        nll = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), response_ids[rows].flatten(),
                                                reduction="none")
        total += (nll.double() * response_mask[rows].flatten()).sum()
    return total, response_mask.sum()


class _Perplexity(Metric):
    """exp(total NLL / total tokens) over the corpus (token-weighted)."""

    full_state_update = False
    output_name = "perplexity"

    def __init__(self, batch_size: int = 32) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.add_state("nll", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("tokens", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def _accumulate(self, policy: Policy, *inputs: Tensor) -> None:
        nll, tokens = summed_nll(policy, *inputs, chunk=self.batch_size)
        self.nll += nll.to(self.nll.device)
        self.tokens += tokens.to(self.tokens.device)

    def compute(self) -> dict[str, Tensor]:
        value = torch.exp(self.nll / self.tokens) if self.tokens > 0 else torch.tensor(float("nan"))
        return {self.output_name: value.float()}


class GenerationPerplexity(_Perplexity):
    """`perplexity`: of the continuations given their prompts, under a frozen LM.

    Args:
        model: The scoring LM (hub id, directory or zoo name); null uses the run's reference model (the
            learner as it was before training) on the exact generated tokens.
        max_new_tokens: With `model` set, continuations are re-tokenized and cut to this many tokens.
        batch_size: Rows per forward pass.
    """

    def __init__(self, model: str | None = None, max_new_tokens: int = 256, batch_size: int = 32) -> None:
        super().__init__(batch_size)
        self.model = model
        self.max_new_tokens = max_new_tokens

    def update(self, samples: EvaluationSamples) -> None:
        rollout = samples.rollout
        if self.model is None:
            self._accumulate(samples.reference, rollout.query_ids, rollout.query_mask, rollout.response_ids,
                             rollout.response_mask)
            return
        scorer = frozen_lm(self.model).to(rollout.query_ids.device)
        self._accumulate(scorer, *encode_continuations(scorer, samples.prompts, samples.continuations,
                                                       samples.max_prompt_tokens, self.max_new_tokens))


class ReferencePerplexity(_Perplexity):
    """`reference_perplexity`: of the reference continuations given their prompts, under the evaluated policy
    (RL4LMs' fluency measure of the learner). Every reference of a row counts. A causal policy reads each
    reference where it follows its prompt (a separating space put back, see `joined_reference`); a seq2seq
    policy reads it as the decoder's target.

    Args:
        max_reference_tokens: Each reference's first this many tokens are scored.
        batch_size: Rows per forward pass.
    """

    output_name = "reference_perplexity"

    def __init__(self, max_reference_tokens: int = 128, batch_size: int = 32) -> None:
        super().__init__(batch_size)
        self.max_reference_tokens = max_reference_tokens

    def update(self, samples: EvaluationSamples) -> None:
        pairs = [(prompt, ref) for prompt, refs in zip(samples.prompts, samples.references) for ref in refs if ref.strip()]
        if not pairs or samples.policy is None:  # a guide behind an API has no network to score with
            return
        prompts = [p for p, _ in pairs]
        references = [joined_reference(p, r) if samples.policy.continues_prompt_text else r for p, r in pairs]
        self._accumulate(samples.policy, *encode_continuations(samples.policy, prompts, references,
                                                               samples.max_prompt_tokens, self.max_reference_tokens))
