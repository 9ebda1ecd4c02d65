"""The reward protocol."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from rlgf_pl.errors import DataError


class Reward(ABC):
    """Scores whole trajectories. Subclass it and set `data.init_args.reward.class_path` to use your own."""

    @abstractmethod
    def __call__(self, prompts: list[str], continuations: list[str], references: list[list[str]]) -> Tensor:
        """One finite score per continuation: a float tensor of shape [len(continuations)]."""

    def to(self, device: torch.device | str) -> Reward:
        """Move any model the reward holds (no-op by default)."""
        return self


def check_scores(scores: object, count: int, reward: Reward) -> Tensor:
    """Validate a reward's output: a tensor-like of `count` finite numbers."""
    name = type(reward).__name__
    try:
        scores = torch.as_tensor(scores, dtype=torch.float32)
    except (TypeError, ValueError) as error:
        raise DataError(f"Reward {name} returned {type(scores).__name__}, not numbers: {error}") from error
    if scores.shape != (count,):
        raise DataError(
            f"Reward {name} returned shape {tuple(scores.shape)} for {count} continuations; a reward must return "
            f"one number per continuation, shape ({count},). Fix its __call__."
        )
    if not torch.isfinite(scores).all():
        bad = (~torch.isfinite(scores)).nonzero().flatten().tolist()[:5]
        raise DataError(
            f"Reward {name} returned non-finite scores (NaN or inf) at rows {bad}; every score must be finite. "
            "Check the reward for division by zero or empty continuations."
        )
    return scores
