"""When D2LOLS (and D2LOLS-MC) leave their AggreVaTeD phase for PPO++: one callback per rule.

A config lists one at its top level, beside `trainer:` (which keeps its own callbacks):

    callbacks:
      - class_path: callbacks.D2LOLSSwitch
        init_args: {switch_epoch: 10}

The module owns the phase (`switch_to_ppo_plus_plus()`, its checkpointed `switched` buffer, `train/phase` in
the logs); the callback owns the timing. Adaptive rules decide after a validation and switch at the start of
the next epoch, before its rollouts; a decision taken and not yet carried out is in the callback's checkpoint
state, so a resumed run switches where the uninterrupted one would.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, Literal

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from rlgf_pl.errors import ConfigError


class PhaseSwitch(Callback):
    """The shared mechanics: check the module has phases, switch once at an epoch's start when
    `wants_switch` says so, and keep the decision across resume. Subclasses define `wants_switch`."""

    switches_phase = True  # what D2LOLS looks for at fit start

    def __init__(self) -> None:
        self.decided_at: int | None = None  # the epoch whose end decided the switch (adaptive rules)
        self.reason = ""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not callable(getattr(pl_module, "switch_to_ppo_plus_plus", None)):
            raise ConfigError(f"{type(self).__name__} switches D2LOLS-style algorithms (D2LOLS, D2LOLSMC) from their "
                              f"AggreVaTeD phase to PPO++, and {type(pl_module).__name__} has no phases: remove the "
                              f"callback from the config, or choose one of those algorithms.")

    def wants_switch(self, trainer: Trainer, pl_module: LightningModule) -> bool:
        return self.decided_at is not None

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Callbacks run before the module's own hook, which collects this epoch's rollouts: the new phase applies
        # to them.
        if bool(pl_module.switched) or not self.wants_switch(trainer, pl_module):
            return
        pl_module.switch_to_ppo_plus_plus()
        rank_zero_info(f"[{type(self).__name__}] epoch {trainer.current_epoch}: switched {type(pl_module).__name__} "
                       f"from its AggreVaTeD phase to PPO++ ({self.reason})")

    def decide(self, trainer: Trainer, reason: str) -> None:
        if self.decided_at is None:
            self.decided_at, self.reason = trainer.current_epoch, reason
            rank_zero_info(f"[{type(self).__name__}] after epoch {trainer.current_epoch}: switching next epoch ({reason})")

    def state_dict(self) -> dict[str, Any]:
        return {"decided_at": self.decided_at, "reason": self.reason}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.decided_at = state_dict.get("decided_at")
        self.reason = state_dict.get("reason", "")


class D2LOLSSwitch(PhaseSwitch):
    """The paper's rule: switch at a fixed epoch.

    Args:
        switch_epoch: The first PPO++ epoch (0: PPO++ throughout; at or past `max_epochs`: AggreVaTeD throughout).
    """

    def __init__(self, switch_epoch: int) -> None:
        super().__init__()
        if switch_epoch < 0:
            raise ConfigError(f"D2LOLSSwitch(switch_epoch={switch_epoch}): the switch epoch must be >= 0.")
        self.switch_epoch = switch_epoch
        self.reason = f"switch_epoch {switch_epoch}"

    def wants_switch(self, trainer: Trainer, pl_module: LightningModule) -> bool:
        return trainer.current_epoch >= self.switch_epoch


class _ValidationRule(PhaseSwitch, ABC):
    """A rule that reads the metrics of each validation (the sanity check's are not the run's)."""

    def __init__(self, monitor: str) -> None:
        super().__init__()
        self.monitor = monitor

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or self.decided_at is not None or bool(pl_module.switched):
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            logged = sorted(name for name in trainer.callback_metrics if name.startswith("val/"))
            raise ConfigError(f"{type(self).__name__} monitors {self.monitor!r}, which validation did not log; "
                              f"it logged {logged}.")
        self.after_validation(trainer, pl_module, float(value))

    @abstractmethod
    def after_validation(self, trainer: Trainer, pl_module: LightningModule, value: float) -> None:
        """Update the rule with this validation's `monitor` value; call `decide` when it says switch."""


class GuideBaselineSwitch(_ValidationRule):
    """Switch once the learner does as well as the guide: its validation reward reaches the guide's on the same
    prompts (plus `margin`). The guide is evaluated once, in the first validation, with the same decoding and
    random stream as the learner (`val/guide/reward`), and kept in the checkpoint.

    Args:
        margin: How far past the guide's reward the learner must be (negative: switch just before it).
        monitor: The learner's metric; the guide's is the same name under `val/guide/`.
    """

    def __init__(self, margin: float = 0.0, monitor: str = "val/reward") -> None:
        super().__init__(monitor)
        self.margin = margin
        self.guide_value: float | None = None

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.guide_value is None and not trainer.sanity_checking:
            pl_module.evaluate_guide_in_next_validation = True  # the module's metrics then include the guide's

    def after_validation(self, trainer: Trainer, pl_module: LightningModule, value: float) -> None:
        if self.guide_value is None:
            guide_name = self.monitor.replace("val/", "val/guide/", 1)
            guide = trainer.callback_metrics.get(guide_name)
            if guide is None:
                raise ConfigError(f"GuideBaselineSwitch: validation logged no {guide_name!r}; the data module needs a "
                                  f"guide (data.init_args.guide) to measure the baseline.")
            self.guide_value = float(guide)
            rank_zero_info(f"[GuideBaselineSwitch] guide baseline {guide_name} = {self.guide_value:.4f}")
        if value >= self.guide_value + self.margin:
            self.decide(trainer, f"{self.monitor} {value:.4f} reached the guide's {self.guide_value:.4f}"
                                 f"{f' + {self.margin}' if self.margin else ''}")

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "guide_value": self.guide_value}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.guide_value = state_dict.get("guide_value")


class PlateauSwitch(_ValidationRule):
    """Switch when a validation metric stops improving, as Lightning's `EarlyStopping` stops: after `patience`
    validations in a row without an improvement of more than `min_delta` over the best so far.

    Args:
        monitor: The logged validation metric.
        patience: Validations without improvement before the switch.
        min_delta: The least change that counts as an improvement.
        mode: 'max' (the metric should rise, as a reward) or 'min'.
    """

    def __init__(self, monitor: str = "val/reward", patience: int = 2, min_delta: float = 0.0,
                 mode: Literal["max", "min"] = "max") -> None:
        super().__init__(monitor)
        if patience < 1:
            raise ConfigError(f"PlateauSwitch(patience={patience}): patience must be >= 1 validation.")
        if mode not in ("max", "min"):
            raise ConfigError(f"PlateauSwitch(mode={mode!r}): mode must be 'max' or 'min'.")
        if min_delta < 0:
            raise ConfigError(f"PlateauSwitch(min_delta={min_delta}): min_delta must be >= 0.")
        self.patience, self.min_delta, self.mode = patience, min_delta, mode
        self.best = -math.inf if mode == "max" else math.inf
        self.wait = 0

    def after_validation(self, trainer: Trainer, pl_module: LightningModule, value: float) -> None:
        improvement = value - self.best if self.mode == "max" else self.best - value
        if improvement > self.min_delta:
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.decide(trainer, f"{self.monitor} has not improved on {self.best:.4f} by more than {self.min_delta} "
                                 f"for {self.wait} validations")

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "best": self.best, "wait": self.wait}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.best, self.wait = state_dict.get("best", self.best), state_dict.get("wait", 0)
