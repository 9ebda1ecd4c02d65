"""A causal language model as a policy: batched generation and per-token log-probs."""

from __future__ import annotations

import inspect

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlgf_pl.policies.generation import GenerationSettings


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """Positions that count only real tokens, so a left-padded row matches its unpadded self. [B, S]."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def sequence_inputs(query_ids: Tensor, query_mask: Tensor, response_ids: Tensor, response_mask: Tensor) -> dict:
    """Model inputs for query + response: ids, attention mask and padding-aware position ids. [B, P + T]."""
    attention_mask = torch.cat([query_mask, response_mask], dim=1)
    return {
        "input_ids": torch.cat([query_ids, response_ids], dim=1),
        "attention_mask": attention_mask,
        "position_ids": position_ids_from_mask(attention_mask),
    }


def response_positions(outputs: Tensor, query_length: int) -> Tensor:
    """The outputs at the states before each response token (the last query token onwards). [B, T, ...]."""
    return outputs[:, query_length - 1 : -1]


def continuation_lengths(new_tokens: Tensor, eos_token_id: int | None) -> Tensor:
    """Length of each generated row up to and including its first EOS. new_tokens [B, T] -> [B]."""
    batch, width = new_tokens.shape
    if eos_token_id is None or width == 0:
        return torch.full((batch,), width, dtype=torch.long, device=new_tokens.device)
    is_eos = new_tokens == eos_token_id
    first_eos = torch.where(is_eos.any(-1), is_eos.float().argmax(-1), torch.full_like(is_eos[:, 0], width, dtype=torch.long))
    return torch.clamp(first_eos + 1, max=width)


def token_logprobs_and_entropy(logits: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
    """Log-prob of each token and the entropy of its distribution. logits [B, T, V], tokens [B, T] -> 2x[B, T]."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    token_logp = logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    entropy = -(logp.exp() * logp).sum(-1)
    return token_logp, entropy


class CausalLMPolicy(nn.Module):
    """A Hugging Face causal LM and its tokenizer, used as a policy over tokens.

    Sequences are a left-padded query [B, P] followed by a right-padded response [B, T]; the
    state before response token t is the query plus tokens < t.
    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        # Models that take `logits_to_keep` project only the response positions onto the vocabulary.
        self._keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id

    @property
    def eos_token_id(self) -> int | None:
        return self.tokenizer.eos_token_id

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode_prompts(self, prompts: list[str], max_tokens: int) -> tuple[Tensor, Tensor]:
        """Tokenize prompts, cut from the left to `max_tokens`, left-padded. -> ids, mask [B, P]."""
        encoded = self.tokenizer(
            prompts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt", add_special_tokens=False
        )
        return encoded["input_ids"].to(self.device), encoded["attention_mask"].to(self.device)

    def decode(self, tokens: Tensor, mask: Tensor) -> list[str]:
        """Text of each row's masked tokens, special tokens dropped."""
        rows = [row[row_mask.bool()].tolist() for row, row_mask in zip(tokens.cpu(), mask.cpu())]
        return self.tokenizer.batch_decode(rows, skip_special_tokens=True)

    @torch.no_grad()
    def generate(self, query_ids: Tensor, query_mask: Tensor, settings: GenerationSettings) -> tuple[Tensor, Tensor]:
        """Sample continuations of left-padded queries with the KV cache.

        Returns:
            new_tokens [B, T] (pad after each row's end) and lengths [B] (EOS included).
        """
        output = self.model.generate(
            input_ids=query_ids,
            attention_mask=query_mask,
            pad_token_id=self.pad_token_id,
            eos_token_id=self.eos_token_id,
            use_cache=True,
            **settings.generate_kwargs(),
        )
        new_tokens = output[:, query_ids.shape[1] :]
        lengths = continuation_lengths(new_tokens, self.eos_token_id)
        keep = torch.arange(new_tokens.shape[1], device=new_tokens.device) < lengths[:, None]
        return new_tokens.masked_fill(~keep, self.pad_token_id), lengths

    def response_logits(self, query_ids: Tensor, query_mask: Tensor, response_ids: Tensor, response_mask: Tensor) -> Tensor:
        """Logits that predict each response token. -> [B, T, V]."""
        inputs = sequence_inputs(query_ids, query_mask, response_ids, response_mask)
        if self._keeps_logits:  # the last T + 1 positions: the last query token onwards, minus the final one
            return self.model(**inputs, logits_to_keep=response_ids.shape[1] + 1).logits[:, :-1]
        return response_positions(self.model(**inputs).logits, query_ids.shape[1])

    def forward(
        self, query_ids: Tensor, query_mask: Tensor, response_ids: Tensor, response_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Per-token log-probs and entropies of the given responses. -> 2x[B, T]."""
        logits = self.response_logits(query_ids, query_mask, response_ids, response_mask)
        return token_logprobs_and_entropy(logits, response_ids)
