"""Diversity of the continuations, as RL4LMs reports it."""

from __future__ import annotations

from collections import Counter

import torch
from torch import Tensor
from torchmetrics import Metric

from rlgf_pl.errors import ConfigError
from rlgf_pl.metrics.samples import EvaluationSamples
from rlgf_pl.metrics.text import cat_state, hash_words, ngram_counts, split_by_lengths


def msttr(tokens: list, window: int) -> float:
    """Mean segmental type-token ratio: the TTR of each full `window`-token segment of the stream, averaged.
    NaN when the stream is shorter than one window."""
    segments = [tokens[start : start + window] for start in range(0, len(tokens) - window + 1, window)]
    if not segments:
        return float("nan")
    return sum(len(set(segment)) / window for segment in segments) / len(segments)


def distinct_and_unique(texts: list[tuple], n: int) -> tuple[float, int]:
    """distinct-n = distinct n-grams / all n-grams; unique-n = number of n-grams that occur exactly once.
    N-grams never cross from one text to the next."""
    counts = Counter()
    for tokens in texts:
        counts.update(ngram_counts(tokens, n))
    total = sum(counts.values())
    distinct = len(counts) / total if total else float("nan")
    return distinct, sum(1 for count in counts.values() if count == 1)


class Diversity(Metric):
    """MSTTR, distinct-n, unique-n and word lengths of the continuations (lower-cased words, no punctuation).

    Outputs: `msttr`, `distinct_{n}`, `unique_{n}` for n in `orders`, `length_mean`, `length_min`, `length_max`.

    Args:
        msttr_window: Segment length of MSTTR, in words.
        orders: The n of distinct-n and unique-n.
    """

    full_state_update = False

    def __init__(self, msttr_window: int = 100, orders: tuple[int, ...] = (1, 2)) -> None:
        super().__init__()
        if msttr_window < 1 or not orders or min(orders) < 1:
            raise ConfigError(f"Diversity needs msttr_window >= 1 and orders >= 1, got {msttr_window} and {orders}.")
        self.msttr_window = msttr_window
        self.orders = tuple(orders)
        self.add_state("word_hashes", default=[], dist_reduce_fx="cat")
        self.add_state("lengths", default=[], dist_reduce_fx="cat")

    def update(self, samples: EvaluationSamples) -> None:
        flat, lengths = hash_words(samples.continuations, self.device)
        self.word_hashes.append(flat)
        self.lengths.append(lengths)

    def compute(self) -> dict[str, Tensor]:
        lengths = cat_state(self.lengths)
        texts = split_by_lengths(cat_state(self.word_hashes), lengths)
        stream = [word for text in texts for word in text]
        results = {"msttr": msttr(stream, self.msttr_window)}
        for n in self.orders:
            results[f"distinct_{n}"], results[f"unique_{n}"] = distinct_and_unique(texts, n)
        empty = lengths.numel() == 0
        results["length_mean"] = float("nan") if empty else lengths.double().mean().item()
        results["length_min"] = float("nan") if empty else lengths.min().item()
        results["length_max"] = float("nan") if empty else lengths.max().item()
        return {name: torch.tensor(float(value)) for name, value in results.items()}
