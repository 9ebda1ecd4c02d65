"""A toy reward a tiny model can learn in a few epochs."""

from __future__ import annotations

import torch
from torch import Tensor

from rlgf_pl.rewards.base import Reward


class WordFrequencyReward(Reward):
    """The fraction of words in a continuation that equal `word` (0 for an empty continuation).

    Args:
        word: The rewarded word.
        min_words: Continuations shorter than this count as this long, so ending early is no shortcut.
    """

    def __init__(self, word: str = "good", min_words: int = 1) -> None:
        self.word = word
        self.min_words = max(1, min_words)

    def __call__(self, prompts: list[str], continuations: list[str], references: list[list[str]]) -> Tensor:
        words = [text.split() for text in continuations]
        hits = torch.tensor([sum(w == self.word for w in row) for row in words], dtype=torch.float32)
        lengths = torch.tensor([max(len(row), self.min_words) for row in words], dtype=torch.float32)
        return hits / lengths
