"""An encoder-decoder model (T5, Flan-T5, BART) as a policy: the prompt goes to the encoder, and the
trajectory is the decoder's output."""

from __future__ import annotations

import torch
from torch import Tensor
from transformers import PreTrainedModel

from rlgf_pl.errors import ConfigError
from rlgf_pl.policies.base import Policy


def decoder_start_id(config) -> int:
    """The token the decoder starts from (`decoder_start_token_id`, else the pad token as in T5)."""
    start = getattr(config, "decoder_start_token_id", None)
    start = start if start is not None else getattr(config, "pad_token_id", None)
    if start is None:
        raise ConfigError(f"{type(config).__name__} sets neither decoder_start_token_id nor pad_token_id; the "
                         "decoder cannot start. Set config.decoder_start_token_id.")
    return int(start)


def decoder_inputs(start_id: int, response_ids: Tensor, response_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Teacher-forcing decoder inputs: the start token, then each response token but the last. -> 2x[B, T]."""
    start = torch.full_like(response_ids[:, :1], start_id)
    ids = torch.cat([start, response_ids[:, :-1]], 1)
    mask = torch.cat([torch.ones_like(response_mask[:, :1]), response_mask[:, :-1]], 1)
    return ids, mask


class Seq2SeqPolicy(Policy):
    """A Hugging Face `AutoModelForSeq2SeqLM` as a policy.

    The query [B, P] is the encoder's input, right-padded. The response [B, T] is what the decoder writes
    after its start token; the state before response token t is the encoded prompt plus tokens < t.
    A handoff prefix is left-padded behind the start token and prefilled in one pass. With relative
    position biases (T5) that is exact; decoders with learned absolute positions (BART) see the prefix
    shifted by its row's padding during that one generation (log-probs are always computed unpadded).
    """

    kind = "seq2seq"
    continues_prompt_text = False
    query_padding_side = "right"

    def __init__(self, model: PreTrainedModel, tokenizer) -> None:
        super().__init__(model, tokenizer)
        self.start_id = decoder_start_id(model.config)

    def context_of(self, query_ids: Tensor, query_mask: Tensor, prefix_ids: Tensor,
                   prefix_mask: Tensor) -> tuple[Tensor, Tensor]:
        return prefix_ids, prefix_mask  # the decoder's text starts with the response

    def _generate(self, query_ids: Tensor, query_mask: Tensor, prefix_ids: Tensor, prefix_mask: Tensor,
                  generate_kwargs: dict) -> Tensor:
        start = torch.full_like(query_ids[:, :1], self.start_id)
        decoder_ids, decoder_mask = self.pack_prefix(start, torch.ones_like(start), prefix_ids, prefix_mask,
                                                     self.pad_token_id)
        output = self.model.generate(input_ids=query_ids, attention_mask=query_mask, decoder_input_ids=decoder_ids,
                                     decoder_attention_mask=decoder_mask, **generate_kwargs)
        return output[:, decoder_ids.shape[1] :]

    def response_logits(self, query_ids: Tensor, query_mask: Tensor, response_ids: Tensor,
                        response_mask: Tensor) -> Tensor:
        decoder_ids, decoder_mask = decoder_inputs(self.start_id, response_ids, response_mask)
        return self.model(input_ids=query_ids, attention_mask=query_mask, decoder_input_ids=decoder_ids,
                          decoder_attention_mask=decoder_mask).logits

    @staticmethod
    def trunk_states(trunk: PreTrainedModel, query_ids: Tensor, query_mask: Tensor, response_ids: Tensor,
                     response_mask: Tensor) -> Tensor:
        encoded = trunk.get_encoder()(input_ids=query_ids, attention_mask=query_mask).last_hidden_state
        decoder_ids, decoder_mask = decoder_inputs(decoder_start_id(trunk.config), response_ids, response_mask)
        return trunk.get_decoder()(input_ids=decoder_ids, attention_mask=decoder_mask, encoder_hidden_states=encoded,
                                   encoder_attention_mask=query_mask).last_hidden_state
