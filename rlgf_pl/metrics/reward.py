"""Mean and standard deviation of the reward."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from rlgf_pl.metrics.samples import EvaluationSamples


class RewardStats(Metric):
    """`reward` (mean) and `reward_std` (sample standard deviation) over all evaluated continuations."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("total", "total_squares", "count"):
            self.add_state(name, default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, samples: EvaluationSamples) -> None:
        scores = samples.scores.detach().to(self.total.device, torch.float64)
        self.total += scores.sum()
        self.total_squares += (scores**2).sum()
        self.count += scores.numel()

    def compute(self) -> dict[str, Tensor]:
        mean = self.total / self.count
        variance = (self.total_squares - self.count * mean**2) / (self.count - 1)
        std = variance.clamp(min=0).sqrt() if self.count > 1 else torch.zeros_like(mean)
        return {"reward": mean.float(), "reward_std": std.float()}
