"""The guide: a frozen language model with its own tokenizer and decoding settings."""

from __future__ import annotations

import torch
from torch import Tensor

from rlgf_pl.policies.causal_lm import CausalLMPolicy
from rlgf_pl.policies.generation import GenerationSettings
from rlgf_pl.policies.loading import load_causal_lm, load_tokenizer


def same_vocabulary(first, second) -> bool:
    """True when two tokenizers map every token to the same id (token-level handoff is exact)."""
    if first is second:
        return True
    return first.get_vocab() == second.get_vocab() and first.eos_token_id == second.eos_token_id


class Guide:
    """A frozen guide policy. It is held by the data module (the environment), never by the agent.

    It never enters an optimizer or a checkpoint and is always in `eval()` mode.

    Args:
        model: Hugging Face hub id, local directory or zoo name of a causal LM.
        generation: The guide's decoding settings (`max_new_tokens` is taken from the rollout's settings).
        dtype: Weights dtype ('float32', 'bfloat16', 'float16' or null for the checkpoint's own).
    """

    def __init__(
        self,
        model: str,
        generation: GenerationSettings | None = None,
        dtype: str | None = None,
    ) -> None:
        self.name = model
        self.generation = generation if generation is not None else GenerationSettings(top_k=50, top_p=0.92)
        network = load_causal_lm(model, dtype=dtype)
        network.requires_grad_(False).eval()
        self.policy = CausalLMPolicy(network, load_tokenizer(model))

    def to(self, device: torch.device | str) -> Guide:
        self.policy.to(device)
        return self

    def writer(self, learner: CausalLMPolicy) -> TokenWriter:
        """The guide as a writer of learner tokens: direct when vocabularies match, through text otherwise."""
        if same_vocabulary(self.policy.tokenizer, learner.tokenizer):
            return TokenWriter(self.policy, self.generation)
        return TextBridgeWriter(self.policy, self.generation, learner)


class TokenWriter:
    """Continues left-padded queries of learner tokens with a policy that shares the learner's vocabulary."""

    def __init__(self, policy: CausalLMPolicy, settings: GenerationSettings) -> None:
        self.policy = policy
        self.settings = settings

    def write(self, query_ids: Tensor, query_mask: Tensor, max_new_tokens: int) -> tuple[Tensor, Tensor]:
        """-> new learner tokens [B, T] padded after each end, lengths [B]."""
        settings = GenerationSettings(**{**vars(self.settings), "max_new_tokens": max_new_tokens,
                                         "min_new_tokens": min(self.settings.min_new_tokens, max_new_tokens)})
        with torch.no_grad():
            return self.policy.generate(query_ids, query_mask, settings)


class TextBridgeWriter(TokenWriter):
    """A guide with another tokenizer: decode the learner query to text, let the guide continue it,
    and re-encode the continuation with the learner's tokenizer (masks live on learner tokens)."""

    def __init__(self, policy: CausalLMPolicy, settings: GenerationSettings, learner: CausalLMPolicy) -> None:
        super().__init__(policy, settings)
        self.learner = learner

    def write(self, query_ids: Tensor, query_mask: Tensor, max_new_tokens: int) -> tuple[Tensor, Tensor]:
        texts = self.learner.decode(query_ids, query_mask)
        guide_tokenizer = self.policy.tokenizer
        encoded = guide_tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
        guide_ids, guide_mask = encoded["input_ids"].to(self.policy.device), encoded["attention_mask"].to(self.policy.device)
        guide_tokens, guide_lengths = super().write(guide_ids, guide_mask, max_new_tokens)
        ended = (guide_lengths > 0) & (guide_tokens.gather(1, (guide_lengths - 1).clamp(min=0)[:, None]).squeeze(1)
                                       == self.policy.eos_token_id)
        keep = torch.arange(guide_tokens.shape[1], device=guide_tokens.device) < guide_lengths[:, None]
        continuations = self.policy.decode(guide_tokens, keep)
        learner_tok = self.learner.tokenizer
        rows = learner_tok(continuations, add_special_tokens=False)["input_ids"]
        eos = self.learner.eos_token_id
        rows = [(row + [eos] if bool(end) and eos is not None else row)[:max_new_tokens] for row, end in zip(rows, ended)]
        width = max(1, max(len(row) for row in rows))
        new_tokens = torch.full((len(rows), width), self.learner.pad_token_id, dtype=torch.long)
        for index, row in enumerate(rows):  # re-tokenized text is ragged; this copies ids, it never calls a model
            new_tokens[index, : len(row)] = torch.tensor(row, dtype=torch.long)
        lengths = torch.tensor([len(row) for row in rows], dtype=torch.long)
        return new_tokens.to(query_ids.device), lengths.to(query_ids.device)
