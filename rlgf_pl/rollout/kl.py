"""KL coefficient controllers. The coefficient is a buffer, so it lives in every checkpoint."""

from __future__ import annotations

import torch
from torch import nn

from rlgf_pl.errors import ConfigError


class KLController(nn.Module):
    """The KL penalty coefficient: fixed, or adaptive toward a target KL (Ziegler et al., 2019).

    Args:
        init_coef: Starting coefficient.
        target: Target KL per trajectory; None keeps the coefficient fixed.
        horizon: Adaptive controller horizon, in trajectories.
    """

    def __init__(self, init_coef: float = 0.001, target: float | None = None, horizon: int = 10_000) -> None:
        super().__init__()
        if init_coef < 0:
            raise ConfigError(f"kl_coef must be >= 0, got {init_coef}.")
        if target is not None and target <= 0:
            raise ConfigError(f"kl_target must be > 0 or null (fixed coefficient), got {target}.")
        self.target = target
        self.horizon = horizon
        self.register_buffer("coef", torch.tensor(float(init_coef), dtype=torch.float64))

    @property
    def value(self) -> float:
        return float(self.coef)

    def update(self, observed_kl: float, num_trajectories: int) -> None:
        """Adapt the coefficient after an epoch whose mean KL per trajectory was `observed_kl`."""
        if self.target is None:
            return
        error = min(max(observed_kl / self.target - 1.0, -0.2), 0.2)
        self.coef.mul_(1.0 + error * num_trajectories / self.horizon)
