"""The default engine: Hugging Face `generate` in the training process, on the learner itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from rlgf_pl.engines.base import RolloutEngine

if TYPE_CHECKING:  # annotations only: the policies import the engines (a TokenWriter writes through one)
    from rlgf_pl.policies.base import Policy
    from rlgf_pl.policies.generation import GenerationSettings


class HFEngine(RolloutEngine):
    """In-process batched `generate` with the KV cache: always on the learner's current weights, nothing to sync."""

    name = "hf"

    def generate(self, policy: Policy, query_ids: Tensor, query_mask: Tensor, settings: GenerationSettings,
                 prefix_ids: Tensor, prefix_mask: Tensor) -> tuple[Tensor, Tensor]:
        return policy.generate(query_ids, query_mask, settings, prefix_ids, prefix_mask)
