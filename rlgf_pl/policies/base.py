"""The policy interface: everything the sampler, the agent, the critic and the metrics ask of a language model.

A policy writes *responses* after *queries*. The query is the encoded prompt: for a causal LM, the tokens
the response continues (left-padded); for an encoder-decoder model, the encoder's input (right-padded).
The response is always a right-padded [B, T] block of the policy's tokens, and position t of every
per-token tensor is "the state before response token t". Two kinds implement it: `CausalLMPolicy` and
`Seq2SeqPolicy`; nothing outside `rlgf_pl/policies/` knows which one it holds.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from typing import Literal

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlgf_pl.policies.generation import GenerationSettings
from rlgf_pl.policies.lora import adapters_disabled, has_adapters
from rlgf_pl.rollout.packing import pack

PolicyKind = Literal["causal", "seq2seq"]


def continuation_lengths(new_tokens: Tensor, eos_token_ids: tuple[int, ...]) -> Tensor:
    """Length of each generated row up to and including its first end token (any of `eos_token_ids`).

    new_tokens [B, T] -> [B]; rows without an end token keep all T."""
    batch, width = new_tokens.shape
    if not eos_token_ids or width == 0:
        return torch.full((batch,), width, dtype=torch.long, device=new_tokens.device)
    is_eos = torch.isin(new_tokens, torch.tensor(eos_token_ids, device=new_tokens.device))
    first_eos = torch.where(is_eos.any(-1), is_eos.float().argmax(-1), torch.full_like(is_eos[:, 0], width, dtype=torch.long))
    return torch.clamp(first_eos + 1, max=width)


def token_logprobs(logits: Tensor, tokens: Tensor) -> Tensor:
    """Log-prob of each token: its logit minus the log-normalizer, without materializing the log-softmax over
    the vocabulary. logits [B, T, V], tokens [B, T] -> [B, T]."""
    logits = logits.float()
    return logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def token_logprobs_and_entropy(logits: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
    """Log-prob of each token (exactly as `token_logprobs`) and the entropy of its distribution.
    logits [B, T, V], tokens [B, T] -> 2x[B, T]."""
    logits = logits.float()
    normalizer = torch.logsumexp(logits, dim=-1)
    token_logp = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - normalizer
    entropy = normalizer - (torch.softmax(logits, dim=-1) * logits).sum(-1)
    return token_logp, entropy


def no_prefix(query_ids: Tensor) -> tuple[Tensor, Tensor]:
    """An empty prefix of response tokens for every row: ids, mask [B, 0]."""
    empty = torch.zeros((query_ids.shape[0], 0), dtype=torch.long, device=query_ids.device)
    return empty, empty


def model_end_tokens(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> tuple[int, ...]:
    """Every token that ends a generation: the model's `generation_config.eos_token_id` (an id or a list, as
    instruct models such as Llama-3-Instruct or Gemma-it ship several) and the tokenizer's EOS."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [] if configured is None else ([configured] if isinstance(configured, int) else list(configured))
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return tuple(dict.fromkeys(int(i) for i in ids))


class Policy(nn.Module, ABC):
    """A Hugging Face language model and its tokenizer, used as a policy over tokens.

    Args:
        model: The network (`AutoModelForCausalLM` or `AutoModelForSeq2SeqLM`).
        tokenizer: Its tokenizer; it encodes prompts the way it wants (a BOS where it adds one).
    """

    kind: PolicyKind
    query_padding_side: Literal["left", "right"]
    continues_prompt_text: bool
    """True when a response is the prompt's text continued (causal LMs), False when it stands alone (a
    seq2seq decoder's target)."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.eos_token_ids = model_end_tokens(model, tokenizer)
        self.adapters_off = False
        self.synced_gpus = False
        """Generate with `synced_gpus` (set under FSDP or ZeRO-3: every rank steps until all are done)."""
        """True for the base view of a LoRA policy (`frozen_copy`): the model runs with its adapters disabled."""

    def _network(self) -> AbstractContextManager:
        """The context every call of the model runs in: the adapters off for a base view."""
        return adapters_disabled(self.model) if self.adapters_off else nullcontext()

    # ---- tokens and text -----------------------------------------------------------------------
    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id

    @property
    def eos_token_id(self) -> int | None:
        """The end token this policy writes after text it did not generate itself (e.g. re-encoded guide text)."""
        if self.tokenizer.eos_token_id is not None:
            return self.tokenizer.eos_token_id
        return self.eos_token_ids[0] if self.eos_token_ids else None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode_prompts(self, prompts: list[str], max_tokens: int | None,
                       add_special_tokens: bool = True) -> tuple[Tensor, Tensor]:
        """Tokenize prompts as the tokenizer wants them (with its BOS, or T5's closing EOS), cut from the
        left to `max_tokens` (special tokens included, never cut; None: no cut), padded on
        `query_padding_side`. `add_special_tokens=False` is for text that already spells them out (a chat
        template's output).

        Returns:
            ids, mask [B, P] on the policy's device.
        """
        encoded = self.tokenizer(
            prompts, padding=True, truncation=max_tokens is not None, max_length=max_tokens, return_tensors="pt",
            add_special_tokens=add_special_tokens, padding_side=self.query_padding_side,
        )
        return encoded["input_ids"].to(self.device), encoded["attention_mask"].to(self.device)

    def encode_responses(self, contexts: list[str], texts: list[str],
                         max_tokens: int | None) -> tuple[Tensor, Tensor]:
        """The first `max_tokens` tokens (None: all) of each text as this policy would write it after its
        context (the prompt text). -> ids, mask [B, T] right-padded, T <= max_tokens."""
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return self._right_padded([row[:max_tokens] for row in encoded])

    def _right_padded(self, rows: list[list[int]]) -> tuple[Tensor, Tensor]:
        padded = self.tokenizer.pad({"input_ids": rows}, padding=True, padding_side="right", return_tensors="pt")
        ids, mask = padded["input_ids"], padded["attention_mask"]
        if ids.shape[1] == 0:  # every text was empty: one masked column keeps shapes valid
            ids, mask = torch.full((len(rows), 1), self.pad_token_id), torch.zeros((len(rows), 1), dtype=torch.long)
        return ids.long().to(self.device), mask.long().to(self.device)

    def decode(self, tokens: Tensor, mask: Tensor) -> list[str]:
        """Text of each row's masked tokens, special tokens dropped."""
        rows = [row[row_mask.bool()].tolist() for row, row_mask in zip(tokens.cpu(), mask.cpu())]
        return self.tokenizer.batch_decode(rows, skip_special_tokens=True)

    def decode_after(self, query_ids: Tensor, query_mask: Tensor, new_ids: Tensor, new_mask: Tensor,
                     prefix_ids: Tensor | None = None, prefix_mask: Tensor | None = None) -> list[str]:
        """Text of each row's new tokens as it reads after its query and prefix of response tokens (none by
        default), so a leading space that only shows in context (SentencePiece, word-level vocabularies) is
        kept. A row whose context does not decode to a prefix of the whole is decoded alone."""
        if prefix_ids is None:
            prefix_ids, prefix_mask = no_prefix(query_ids)
        context_ids, context_mask = self.context_of(query_ids, query_mask, prefix_ids, prefix_mask)
        before = self.decode(context_ids, context_mask)
        whole = self.decode(torch.cat([context_ids, new_ids], 1), torch.cat([context_mask, new_mask], 1))
        return [text[len(head):] if text.startswith(head) else self.decode(new_ids[i : i + 1], new_mask[i : i + 1])[0]
                for i, (head, text) in enumerate(zip(before, whole))]

    @abstractmethod
    def context_of(self, query_ids: Tensor, query_mask: Tensor, prefix_ids: Tensor,
                   prefix_mask: Tensor) -> tuple[Tensor, Tensor]:
        """The tokens that the text of new response tokens continues. -> ids, mask [B, C]."""

    # ---- writing -------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, query_ids: Tensor, query_mask: Tensor, settings: GenerationSettings,
                 prefix_ids: Tensor | None = None, prefix_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Continue each query after its ragged prefix of response tokens, in one batched `generate` with the
        KV cache: the prefixes are prefilled together, never teacher-forced token by token.

        Args:
            query_ids, query_mask: [B, P] encoded prompts.
            settings: Decoding settings.
            prefix_ids, prefix_mask: [B, H] response tokens already written (right-padded; rows may be empty).

        Returns:
            new_tokens [B, T] (pad after each row's end) and lengths [B] (the end token included).
        """
        if prefix_ids is None:
            prefix_ids, prefix_mask = no_prefix(query_ids)
        with self._network():
            new_tokens = self._generate(query_ids, query_mask, prefix_ids, prefix_mask, {
                "pad_token_id": self.pad_token_id, "eos_token_id": list(self.eos_token_ids) or None,
                "use_cache": True, **settings.generate_kwargs(), **({"synced_gpus": True} if self.synced_gpus else {}),
            })
        lengths = continuation_lengths(new_tokens, self.eos_token_ids)
        keep = torch.arange(new_tokens.shape[1], device=new_tokens.device) < lengths[:, None]
        return new_tokens.masked_fill(~keep, self.pad_token_id), lengths

    @abstractmethod
    def _generate(self, query_ids: Tensor, query_mask: Tensor, prefix_ids: Tensor, prefix_mask: Tensor,
                  generate_kwargs: dict) -> Tensor:
        """The new tokens [B, T] of `model.generate` after query + prefix."""

    # ---- scoring -------------------------------------------------------------------------------
    @abstractmethod
    def response_logits(self, query_ids: Tensor, query_mask: Tensor, response_ids: Tensor,
                        response_mask: Tensor) -> Tensor:
        """Logits that predict each response token. -> [B, T, V]."""

    def forward(self, query_ids: Tensor, query_mask: Tensor, response_ids: Tensor,
                response_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Per-token log-probs and entropies of the given responses. -> 2x[B, T]."""
        with self._network():
            logits = self.response_logits(query_ids, query_mask, response_ids, response_mask)
        return token_logprobs_and_entropy(logits, response_ids)

    def logprobs(self, query_ids: Tensor, query_mask: Tensor, response_ids: Tensor, response_mask: Tensor) -> Tensor:
        """Per-token log-probs of the given responses, without the entropy (what preparing rollouts needs). [B, T]."""
        with self._network():
            logits = self.response_logits(query_ids, query_mask, response_ids, response_mask)
        return token_logprobs(logits, response_ids)

    # ---- what a critic reads -------------------------------------------------------------------
    @property
    def trunk(self) -> PreTrainedModel:
        """The part of the network a value head can share (`critic_share_trunk`)."""
        return self.model

    @staticmethod
    @abstractmethod
    def trunk_states(trunk: PreTrainedModel, query_ids: Tensor, query_mask: Tensor, response_ids: Tensor,
                     response_mask: Tensor) -> Tensor:
        """Hidden states of `trunk` (a network of this kind, without its LM head) at the states before each
        response token. -> [B, T, H]."""

    def frozen_copy(self) -> Policy:
        """The KL reference, sharing the tokenizer: a frozen copy of this policy's current weights, or, for a
        model with LoRA adapters, the same network with its adapters disabled (no second copy of the weights)."""
        if has_adapters(self.model):
            view = type(self)(self.model, self.tokenizer)
            view.adapters_off = True
            return view
        return type(self)(copy.deepcopy(self.model).requires_grad_(False).eval(), self.tokenizer)

    @staticmethod
    def pack_prefix(lead: Tensor, lead_mask: Tensor, prefix_ids: Tensor, prefix_mask: Tensor,
                    pad_token_id: int) -> tuple[Tensor, Tensor]:
        """`lead` then each row's prefix tokens, left-padded into one tensor just wide enough. -> ids, mask."""
        return pack(torch.cat([lead, prefix_ids], 1), torch.cat([lead_mask.bool(), prefix_mask.bool()], 1),
                    pad_token_id, align="right")
