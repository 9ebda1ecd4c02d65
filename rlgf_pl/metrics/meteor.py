"""METEOR with exact unigram matching (no stem or WordNet synonym stages, so no NLTK data is needed)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from rlgf_pl.metrics.samples import EvaluationSamples
from rlgf_pl.metrics.text import words


def align(hypothesis: list[str], reference: list[str]) -> list[tuple[int, int]]:
    """Exact-match alignment: each hypothesis word, right to left, takes the right-most unaligned identical
    reference word (NLTK's order, so scores agree with its exact stage). Pairs sorted by hypothesis index."""
    free: dict[str, list[int]] = {}
    for j, word in enumerate(reference):
        free.setdefault(word, []).append(j)
    pairs = []
    for i in range(len(hypothesis) - 1, -1, -1):
        positions = free.get(hypothesis[i])
        if positions:
            pairs.append((i, positions.pop()))
    return sorted(pairs)


def count_chunks(pairs: list[tuple[int, int]]) -> int:
    """Runs of pairs that are adjacent in both the hypothesis and the reference."""
    return sum(1 for k, (i, j) in enumerate(pairs) if k == 0 or (i, j) != (pairs[k - 1][0] + 1, pairs[k - 1][1] + 1))


def meteor(hypothesis: list[str], reference: list[str], alpha: float = 0.9, beta: float = 3.0,
           gamma: float = 0.5) -> float:
    """METEOR of one tokenized hypothesis against one reference:
    F_mean = P R / (alpha P + (1 - alpha) R), penalty = gamma (chunks / matches)^beta, score = F_mean (1 - penalty)."""
    pairs = align(hypothesis, reference)
    if not pairs:
        return 0.0
    precision, recall = len(pairs) / len(hypothesis), len(pairs) / len(reference)
    f_mean = precision * recall / (alpha * precision + (1 - alpha) * recall)
    penalty = gamma * (count_chunks(pairs) / len(pairs)) ** beta
    return f_mean * (1 - penalty)


class METEOR(Metric):
    """Mean over rows of the best METEOR against any reference (lower-cased words), as `meteor` in [0, 1]."""

    full_state_update = False

    def __init__(self, alpha: float = 0.9, beta: float = 3.0, gamma: float = 0.5) -> None:
        super().__init__()
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.add_state("total", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, samples: EvaluationSamples) -> None:
        for prediction, references in zip(*samples.with_references()):
            hypothesis = words(prediction)
            self.total += max(meteor(hypothesis, words(ref), self.alpha, self.beta, self.gamma) for ref in references)
            self.count += 1

    def compute(self) -> dict[str, Tensor]:
        value = self.total / self.count if self.count > 0 else torch.tensor(float("nan"))
        return {"meteor": value.float()}
