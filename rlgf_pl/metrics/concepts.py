"""Concept coverage (CommonGen): the fraction of a prompt's concepts that its output uses, compared as lemmas
(lemminflect), so 'dogs' covers 'dog' and 'threw' covers 'throw'."""

from __future__ import annotations

import re
from functools import lru_cache

import torch
from torch import Tensor
from torchmetrics import Metric

from rlgf_pl.metrics.samples import EvaluationSamples
from rlgf_pl.metrics.text import words

CONCEPT_PROMPT = re.compile(r":\s*(?P<concepts>[^:]*?)\s*\.?\s*$")
"""The concepts of a prompt such as 'generate a sentence with: dog frisbee catch throw.': the words after the
last colon, up to an optional final period."""


@lru_cache(maxsize=200_000)
def lemmas(word: str) -> frozenset[str]:
    """The word and every lemma lemminflect knows for it under any part of speech (lower case); a possessive
    or quoted word ("girl's", "kids'", "'group") counts as the word without its apostrophes."""
    from lemminflect import getAllLemmas, getAllLemmasOOV

    word = word.lower().strip("'")
    if "'" in word:
        return lemmas(word.split("'")[0]) | {word}
    found = getAllLemmas(word) or {pos: getAllLemmasOOV(word, pos)[pos] for pos in ("NOUN", "VERB")}
    return frozenset({word, *(lemma.lower() for group in found.values() for lemma in group)})


def prompt_concepts(prompt: str, pattern: re.Pattern = CONCEPT_PROMPT) -> list[str]:
    """The concept words a prompt lists (empty when it lists none)."""
    match = pattern.search(prompt)
    return words(match.group("concepts")) if match else []


def coverage(concepts: list[str], text: str) -> float:
    """The fraction of `concepts` whose lemmas meet the lemmas of a word of `text` (1 for no concepts)."""
    if not concepts:
        return 1.0
    used = set().union(*(lemmas(word) for word in words(text))) if text.strip() else set()
    return sum(bool(lemmas(concept) & used) for concept in concepts) / len(concepts)


class Coverage(Metric):
    """Mean concept coverage of the outputs, as `coverage` in [0, 1] (rows whose prompt lists no concepts are
    skipped). The concepts are read from each prompt: the words after its last colon.

    Args:
        pattern: Regular expression with a `concepts` group that finds the concept list in a prompt.
    """

    full_state_update = False

    def __init__(self, pattern: str = CONCEPT_PROMPT.pattern) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)
        if "concepts" not in self.pattern.groupindex:
            from rlgf_pl.errors import ConfigError

            raise ConfigError(f"Coverage pattern {pattern!r} needs a named group (?P<concepts>...).")
        self.add_state("total", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, samples: EvaluationSamples) -> None:
        for prompt, text in zip(samples.prompts, samples.continuations):
            concepts = prompt_concepts(prompt, self.pattern)
            if concepts:
                self.total += coverage(concepts, text)
                self.count += 1

    def compute(self) -> dict[str, Tensor]:
        return {"coverage": (self.total / self.count if self.count > 0 else torch.tensor(float("nan"))).float()}
