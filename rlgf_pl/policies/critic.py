"""The critic: a scalar value head on a transformer trunk."""

from __future__ import annotations

from torch import Tensor, nn
from transformers import PreTrainedModel

from rlgf_pl.policies.causal_lm import response_positions, sequence_inputs


class ValueModel(nn.Module):
    """V(s_t) for every response position: a linear head on a trunk's last hidden state.

    The trunk is its own copy of the backbone by default; pass the learner's `base_model` to
    share it (fewer parameters, value gradients then reach the policy's trunk).
    """

    def __init__(self, backbone: PreTrainedModel) -> None:
        super().__init__()
        self.backbone = backbone
        hidden_size = backbone.config.hidden_size if hasattr(backbone.config, "hidden_size") else backbone.config.n_embd
        self.head = nn.Linear(hidden_size, 1)
        # Zero init: V = 0 until trained, and no draw from the global RNG, so building a critic never
        # shifts the random stream of anything built after it.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, query_ids: Tensor, query_mask: Tensor, response_ids: Tensor, response_mask: Tensor) -> Tensor:
        """Values of the states before each response token. -> [B, T] (float32)."""
        hidden = self.backbone(**sequence_inputs(query_ids, query_mask, response_ids, response_mask)).last_hidden_state
        states = response_positions(hidden, query_ids.shape[1])
        return self.head(states.to(self.head.weight.dtype)).squeeze(-1).float()
