"""Prompts over the toy vocabulary, generated in memory (no files, no network)."""

from __future__ import annotations

import random

from datasets import Dataset

from rlgf_pl.data.tasks.base import PromptTask
from rlgf_pl.errors import ConfigError
from rlgf_pl.zoo.toy import TOY_WORDS


class ToyTask(PromptTask):
    """Random word sequences from the toy vocabulary as prompts; a random continuation as reference.

    Args:
        num_prompts: Prompts per split, e.g. {train: 512, validation: 64, test: 64}.
        min_words: Fewest words in a prompt.
        max_words: Most words in a prompt.
        seed: Makes the prompts reproducible; each split draws its own stream.
        word_weights: Relative sampling weight of chosen words (others weigh 1), e.g. {good: 40}.
    """

    def __init__(
        self,
        num_prompts: dict[str, int] | None = None,
        min_words: int = 3,
        max_words: int = 8,
        seed: int = 0,
        word_weights: dict[str, float] | None = None,
    ) -> None:
        self.num_prompts = num_prompts or {"train": 512, "validation": 64, "test": 64}
        if not 1 <= min_words <= max_words:
            raise ConfigError(f"Need 1 <= min_words <= max_words, got {min_words} and {max_words}.")
        self.min_words = min_words
        self.max_words = max_words
        self.seed = seed
        self.word_weights = word_weights or {}
        unknown = set(self.word_weights) - set(TOY_WORDS)
        if unknown:
            raise ConfigError(f"word_weights names words outside the toy vocabulary: {sorted(unknown)}.")

    def load(self, split: str) -> Dataset:
        if split not in self.num_prompts:
            raise KeyError(f"ToyTask has no split {split!r}; num_prompts has {sorted(self.num_prompts)}.")
        rng = random.Random(f"{self.seed}-{split}")

        weights = [self.word_weights.get(word, 1.0) for word in TOY_WORDS]

        def sentence() -> str:
            length = rng.randint(self.min_words, self.max_words)
            return " ".join(rng.choices(TOY_WORDS, weights=weights, k=length))

        rows = [{"prompt": sentence(), "references": [sentence()]} for _ in range(self.num_prompts[split])]
        return Dataset.from_list(rows)
