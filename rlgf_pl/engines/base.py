"""The seam between the sampler and whatever generates the learner's tokens.

An engine continues a batch of learner queries after their ragged prefixes of response tokens, in the
learner's tokens, and keeps whatever generates them on the learner's current weights (`sync`). The sampler
asks the engine, never the policy's `generate`; the update always recomputes log-probs with the learner.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from torch import Tensor

if TYPE_CHECKING:  # annotations only: the policies import the engines (a TokenWriter writes through one)
    from rlgf_pl.policies.base import Policy
    from rlgf_pl.policies.generation import GenerationSettings



class RolloutEngine(ABC):
    """Writes the learner's rollouts.

    `setup` runs once at fit start, `sync` before each collection with the learner's version (its optimizer
    step count): an engine that generates elsewhere sends the weights when the version moved, and refuses to
    return tokens generated with any other version.
    """

    name: str

    def setup(self, policy: Policy) -> None:
        """Check the engine can serve this policy (its kind, its server); called once before training."""
        return None

    def sync(self, policy: Policy, version: int, send: bool = True) -> float:
        """Bring the generator to `policy`'s weights at `version` (`send=False`: another process sends them; only
        expect that version). Returns the seconds it took (0: nothing sent)."""
        return 0.0

    @abstractmethod
    def generate(self, policy: Policy, query_ids: Tensor, query_mask: Tensor, settings: GenerationSettings,
                 prefix_ids: Tensor, prefix_mask: Tensor) -> tuple[Tensor, Tensor]:
        """As `Policy.generate`: new tokens [B, T] (pad after each row's end) and lengths [B] (end token included)."""

    def close(self) -> None:
        """Release connections and files."""
        return None
