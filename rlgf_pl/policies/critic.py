"""The critic: a scalar value head on a transformer trunk."""

from __future__ import annotations

from torch import Tensor, nn
from transformers import PreTrainedModel

from rlgf_pl.errors import ConfigError
from rlgf_pl.policies.base import Policy


def hidden_size(config) -> int:
    """The width of a trunk's hidden states, whatever its config calls it."""
    for name in ("hidden_size", "d_model", "n_embd"):
        if isinstance(getattr(config, name, None), int):
            return getattr(config, name)
    raise ConfigError(f"Cannot tell the hidden size of {type(config).__name__}; it has no hidden_size, d_model or n_embd.")


class ValueModel(nn.Module):
    """V(s_t) for every response position: a linear head on a trunk's hidden states.

    The trunk is its own copy of the backbone by default; pass the learner's `Policy.trunk` to share it
    (fewer parameters, value gradients then reach the policy's trunk).

    Args:
        backbone: The trunk (no LM head), of the learner's kind.
        policy_class: The learner's policy class, whose `trunk_states` reads the trunk: a causal trunk reads
            prompt + response, a seq2seq trunk encodes the prompt and reads the decoder's states.
    """

    def __init__(self, backbone: PreTrainedModel, policy_class: type[Policy]) -> None:
        super().__init__()
        self.backbone = backbone
        self.read_states = policy_class.trunk_states
        self.head = nn.Linear(hidden_size(backbone.config), 1)
        # Zero init: V = 0 until trained, and no draw from the global RNG, so building a critic never
        # shifts the random stream of anything built after it.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, query_ids: Tensor, query_mask: Tensor, response_ids: Tensor, response_mask: Tensor) -> Tensor:
        """Values of the states before each response token. -> [B, T] (float32)."""
        states = self.read_states(self.backbone, query_ids, query_mask, response_ids, response_mask)
        return self.head(states.to(self.head.weight.dtype)).squeeze(-1).float()
