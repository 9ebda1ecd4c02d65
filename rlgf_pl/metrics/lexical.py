"""Overlap with the references, from torchmetrics: BLEU-4 (SacreBLEU) and ROUGE-1/2/L.

Each adapter feeds torchmetrics the rows that have references; rows without any are skipped, and a
metric that saw none computes to NaN (left out of logs and result files).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.text import ROUGEScore, SacreBLEUScore

from rlgf_pl.metrics.samples import EvaluationSamples


class _CountsScoredRows:
    """Mixin for torchmetrics text metrics: updates from `EvaluationSamples` rows that have references, and
    counts them in a `scored` state so that a metric that saw none is NaN, not 0."""

    def _add_scored_state(self) -> None:
        self.add_state("scored", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, samples: EvaluationSamples) -> None:
        """Feed the torchmetrics class (next in the MRO) the rows that have references."""
        predictions, references = samples.with_references()
        self.scored += len(predictions)
        if predictions:
            super().update(predictions, references)

    def _or_nan(self, value: Tensor) -> Tensor:
        return value if self.scored > 0 else torch.full_like(value, float("nan"))


class BLEU(_CountsScoredRows, SacreBLEUScore):
    """Corpus BLEU (SacreBLEU's definition and 13a tokenization), as `bleu` in [0, 1]."""

    def __init__(self, n_gram: int = 4, tokenize: str = "13a", lowercase: bool = False, smooth: bool = False) -> None:
        super().__init__(n_gram=n_gram, tokenize=tokenize, lowercase=lowercase, smooth=smooth)
        self._add_scored_state()

    def compute(self) -> dict[str, Tensor]:
        return {"bleu": self._or_nan(super().compute())}


class ROUGE(_CountsScoredRows, ROUGEScore):
    """ROUGE F-measures `rouge1`, `rouge2`, `rougeL` (best reference per row), averaged over rows."""

    def __init__(self, rouge_keys: tuple[str, ...] = ("rouge1", "rouge2", "rougeL")) -> None:
        super().__init__(rouge_keys=rouge_keys, accumulate="best", use_stemmer=False)
        self._add_scored_state()

    def compute(self) -> dict[str, Tensor]:
        if self.scored == 0:
            return {key: torch.tensor(float("nan")) for key in self.rouge_keys}
        scores = super().compute()
        return {key: scores[f"{key}_fmeasure"] for key in self.rouge_keys}
