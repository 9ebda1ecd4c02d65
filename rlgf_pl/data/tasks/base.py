"""The task protocol: a split name in, a `datasets.Dataset` of prompts and references out."""

from __future__ import annotations

from abc import ABC, abstractmethod

from datasets import Dataset

SPLITS = ("train", "validation", "test")


class PromptTask(ABC):
    """Loads prompts for a split. The returned dataset has the columns `prompt` (str) and
    `references` (list[str], possibly empty). Subclass it to bring your own data."""

    @abstractmethod
    def load(self, split: str) -> Dataset:
        """The prompts of `split` ('train', 'validation' or 'test')."""


def drop_empty_prompts(dataset: Dataset) -> tuple[Dataset, int]:
    """Remove rows whose prompt is empty or whitespace; return the rest and how many went."""
    keep = [i for i, prompt in enumerate(dataset["prompt"]) if prompt is not None and prompt.strip()]
    dropped = len(dataset) - len(keep)
    return (dataset.select(keep) if dropped else dataset), dropped
