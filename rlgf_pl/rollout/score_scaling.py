"""Reward clipping and running reward scaling, as TRL's `score_clip`, `use_score_scaling` and `use_score_norm`."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

ScoreScaling = Literal["std", "mean_std"]


def merge_moments(count: Tensor, mean: Tensor, var: Tensor, batch_count: Tensor, batch_sum: Tensor,
                  batch_sum_sq: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Fold a batch, given by its count, sum and sum of squares, into running (population) moments
    (Chan et al.'s parallel update). -> count, mean, var."""
    batch_mean = batch_sum / batch_count
    batch_var = (batch_sum_sq / batch_count - batch_mean**2).clamp(min=0.0)
    total = count + batch_count
    delta = batch_mean - mean
    new_mean = mean + delta * batch_count / total
    new_var = (var * count + batch_var * batch_count + delta**2 * count * batch_count / total) / total
    return total, new_mean, new_var


class RunningMoments(nn.Module):
    """Mean and (population) variance of every score seen so far, over all ranks, and their sample std. Buffers,
    so a checkpoint carries them and a resumed run scales exactly as the uninterrupted one."""

    def __init__(self) -> None:
        super().__init__()
        for name, value in (("count", 0.0), ("mean", 0.0), ("var", 1.0)):
            self.register_buffer(name, torch.tensor(value, dtype=torch.float64))

    @property
    def std(self) -> Tensor:
        """The sample std (n - 1 in the denominator), as TRL's running moments: scaling [1, 3] by it gives
        [0.707, 2.121]. With fewer than two scores, the population std (the n - 1 one is undefined)."""
        correction = self.count / (self.count - 1) if self.count > 1 else torch.ones_like(self.count)
        return (self.var * correction).sqrt()

    def update(self, batch_count: Tensor, batch_sum: Tensor, batch_sum_sq: Tensor) -> None:
        """Add a batch (its totals already summed over ranks)."""
        count, mean, var = merge_moments(self.count, self.mean, self.var, batch_count.double(), batch_sum.double(),
                                         batch_sum_sq.double())
        self.count.copy_(count)
        self.mean.copy_(mean)
        self.var.copy_(var)


def scale_scores(scores: Tensor, moments: RunningMoments, scaling: ScoreScaling | None,
                 clip: float | None, eps: float = 1e-8) -> Tensor:
    """Scores as the agent trains on them: divided by the running std ('std'), or standardized with the
    running mean and std ('mean_std'), with `moments` already updated by this batch; then clipped to
    [-clip, clip]. None and None return the scores unchanged."""
    if scaling is not None:
        std = moments.std.to(scores) + eps
        scores = (scores - moments.mean.to(scores)) / std if scaling == "mean_std" else scores / std
    if clip is not None:
        scores = scores.clamp(-clip, clip)
    return scores
