"""Switch D2LOLS from AggreVaTeD to PPO++ at a set epoch."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info


class D2LOLSSwitch(Callback):
    """At the start of epoch `switch_epoch`, flips the module's plan from AggreVaTeD (learner roll-in,
    guide roll-out, guide critic) to PPO++ (guide roll-in, learner roll-out, learner critic).

    Stateful: a run resumed before or after the switch behaves as if it had never stopped.

    Args:
        switch_epoch: The first epoch of PPO++.
    """

    def __init__(self, switch_epoch: int = 10) -> None:
        if switch_epoch < 0:
            raise ValueError(f"switch_epoch must be >= 0, got {switch_epoch}.")
        self.switch_epoch = switch_epoch
        self.switched_at: int | None = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not callable(getattr(pl_module, "switch_to_ppo_plus_plus", None)):
            raise TypeError(
                f"D2LOLSSwitch needs a module with switch_to_ppo_plus_plus() (such as rlgf_pl.algorithms.D2LOLS); "
                f"got {type(pl_module).__name__}. Remove the callback or change model.class_path."
            )

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.current_epoch >= self.switch_epoch and not bool(pl_module.switched):
            pl_module.switch_to_ppo_plus_plus()
            self.switched_at = trainer.current_epoch
            rank_zero_info(f"[D2LOLS] epoch {trainer.current_epoch}: switched from AggreVaTeD to PPO++")

    def state_dict(self) -> dict[str, Any]:
        return {"switch_epoch": self.switch_epoch, "switched_at": self.switched_at}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.switched_at = state_dict.get("switched_at")
