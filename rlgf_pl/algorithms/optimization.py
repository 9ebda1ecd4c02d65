"""The agent's optimizer: AdamW over what trains, the critics at their own lr, and a linear decay (mixed into
RLGFModule)."""

from __future__ import annotations

import math
from typing import Any

import torch


class Optimization:
    """`configure_optimizers` for Lightning, from the agent's `lr`, `critic_lr`, `weight_decay` and
    `lr_schedule`."""

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.AdamW(self._parameter_groups(), lr=self.hparams.lr,
                                      weight_decay=self.hparams.weight_decay)
        if self.hparams.lr_schedule == "constant":
            return {"optimizer": optimizer}
        total = max(1, int(self.trainer.estimated_stepping_batches)) if math.isfinite(
            self.trainer.estimated_stepping_batches) else 1
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def _parameter_groups(self) -> list[dict[str, Any]]:
        """One group at `lr`, and the critics' parameters at `critic_lr` when it is set. A trunk shared with
        the learner is the learner's, so only its value head takes `critic_lr`."""
        critic_lr = self.hparams.critic_lr
        default, critics = [], []
        for name, parameter in self.named_parameters():
            if parameter.requires_grad:
                is_critic = critic_lr is not None and name.startswith(("critic.", "guide_critic."))
                (critics if is_critic else default).append(parameter)
        return [{"params": default}] + ([{"params": critics, "lr": critic_lr}] if critics else [])
