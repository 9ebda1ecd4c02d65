"""A causal language model as a policy: the query is the prompt the response continues."""

from __future__ import annotations

import inspect

import torch
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlgf_pl.policies.base import Policy


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


class CausalLMPolicy(Policy):
    """A Hugging Face causal LM (`AutoModelForCausalLM`) as a policy.

    Sequences are a left-padded query [B, P] followed by a right-padded response [B, T]; the state before
    response token t is the query plus tokens < t. Explicit position ids make padded rows equal unpadded ones.
    """

    kind = "causal"
    continues_prompt_text = True
    query_padding_side = "left"

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
        super().__init__(model, tokenizer)
        # Models that take `logits_to_keep` project only the response positions onto the vocabulary.
        self._keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters

    def encode_responses(self, contexts: list[str], texts: list[str],
                         max_tokens: int | None) -> tuple[Tensor, Tensor]:
        """The tokens of each text where it follows its context: context + text is encoded as one string and
        the tokens that start inside the text are kept (one that straddles the seam is the context's), so a
        leading space is tokenized as it is when the model reads the whole sequence."""
        encoded = self.tokenizer([c + t for c, t in zip(contexts, texts)], add_special_tokens=False,
                                 return_offsets_mapping=True)
        rows = []
        for ids, offsets, context in zip(encoded["input_ids"], encoded["offset_mapping"], contexts):
            start = len(context)  # ragged Python lists of ids: no model is called here
            rows.append([i for i, (begin, _) in zip(ids, offsets) if begin >= start][:max_tokens])
        return self._right_padded(rows)

    def context_of(self, query_ids: Tensor, query_mask: Tensor, prefix_ids: Tensor,
                   prefix_mask: Tensor) -> tuple[Tensor, Tensor]:
        return torch.cat([query_ids, prefix_ids], 1), torch.cat([query_mask, prefix_mask], 1)

    def _generate(self, query_ids: Tensor, query_mask: Tensor, prefix_ids: Tensor, prefix_mask: Tensor,
                  generate_kwargs: dict) -> Tensor:
        input_ids, attention_mask = self.pack_prefix(query_ids, query_mask, prefix_ids, prefix_mask, self.pad_token_id)
        output = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **generate_kwargs)
        return output[:, input_ids.shape[1] :]

    def response_logits(self, query_ids: Tensor, query_mask: Tensor, response_ids: Tensor,
                        response_mask: Tensor) -> Tensor:
        inputs = sequence_inputs(query_ids, query_mask, response_ids, response_mask)
        if self._keeps_logits:  # the last T + 1 positions: the last query token onwards, minus the final one
            return self.model(**inputs, logits_to_keep=response_ids.shape[1] + 1).logits[:, :-1]
        return response_positions(self.model(**inputs).logits, query_ids.shape[1])

    @property
    def trunk(self) -> PreTrainedModel:
        return self.model.base_model

    @staticmethod
    def trunk_states(trunk: PreTrainedModel, query_ids: Tensor, query_mask: Tensor, response_ids: Tensor,
                     response_mask: Tensor) -> Tensor:
        hidden = trunk(**sequence_inputs(query_ids, query_mask, response_ids, response_mask)).last_hidden_state
        return response_positions(hidden, query_ids.shape[1])
