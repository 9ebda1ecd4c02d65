"""What an evaluation metric sees: one batch of continuations, their rewards and the models involved."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from rlgf_pl.policies.base import Policy
from rlgf_pl.rollout.containers import Rollout


@dataclass
class EvaluationSamples:
    """One evaluation batch.

    Attributes:
        rollout: The continuations, as text and as tokens of the learner's vocabulary.
        scores: [B] rewards.
        policy: The policy being evaluated (the learner, or the guide's policy for the guide baseline); None for a
            guide behind an API, which has no local network to score text with.
        reference: The frozen reference LM (the learner at the start of training).
        max_prompt_tokens: Prompts are cut from the left to this many tokens.
    """

    rollout: Rollout
    scores: Tensor
    policy: Policy | None
    reference: Policy
    max_prompt_tokens: int

    @property
    def prompts(self) -> list[str]:
        return self.rollout.prompts

    @property
    def continuations(self) -> list[str]:
        return self.rollout.continuations

    @property
    def references(self) -> list[list[str]]:
        return self.rollout.references

    def with_references(self) -> tuple[list[str], list[list[str]]]:
        """Continuations and reference lists of the rows that have at least one reference."""
        rows = [(text, refs) for text, refs in zip(self.continuations, self.references) if refs]
        return [text for text, _ in rows], [list(refs) for _, refs in rows]
