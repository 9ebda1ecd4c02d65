"""A toy reward a tiny model can learn in a few epochs."""

from __future__ import annotations

import torch
from torch import Tensor

from rlgf_pl.errors import ConfigError
from rlgf_pl.rewards.base import Reward


class WordFrequencyReward(Reward):
    """The fraction of words in a continuation that equal `word` (0 for an empty continuation), or, with
    `at_least` > 0, a sparse reward: 1 if the word occurs at least that often, else 0.

    Args:
        word: The rewarded word.
        min_words: Continuations shorter than this count as this long, so ending early is no shortcut.
        at_least: If > 0, reward 1.0 only when `word` occurs at least this many times (hard exploration);
            0 gives the dense fraction.
    """

    def __init__(self, word: str = "good", min_words: int = 1, at_least: int = 0) -> None:
        if at_least < 0:
            raise ConfigError(f"at_least must be >= 0 (0: dense fraction), got {at_least}.")
        self.word = word
        self.min_words = max(1, min_words)
        self.at_least = at_least

    def __call__(self, prompts: list[str], continuations: list[str], references: list[list[str]]) -> Tensor:
        words = [text.split() for text in continuations]
        hits = torch.tensor([sum(w == self.word for w in row) for row in words], dtype=torch.float32)
        if self.at_least > 0:
            return (hits >= self.at_least).float()
        lengths = torch.tensor([max(len(row), self.min_words) for row in words], dtype=torch.float32)
        return hits / lengths
