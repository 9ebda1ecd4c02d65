"""LOLS and D2LOLS: alternate between PPO++ and AggreVaTeD phases."""

from __future__ import annotations

import os
from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_warn

from rlgf_pl.algorithms.base import RLGFModule
from rlgf_pl.errors import ConfigError
from rlgf_pl.rollout.plan import Plan

AGGREVATED, PPO_PLUS_PLUS = 0, 1


class _PhasedModule(RLGFModule):
    """A module whose epoch is either an AggreVaTeD phase (learner roll-in, guide roll-out, guide
    critic) or a PPO++ phase (guide roll-in, learner roll-out, learner critic)."""

    uses_guide_critic = True

    def __init__(self, *args, beta: float = 0.8, aggrevated_beta: float | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.beta = beta
        self.aggrevated_beta = beta if aggrevated_beta is None else aggrevated_beta
        Plan("guide", "learner", self.beta)
        Plan("learner", "guide", self.aggrevated_beta)

    @property
    def phase_id(self) -> int:
        """AGGREVATED or PPO_PLUS_PLUS for the current epoch; each phased algorithm defines its schedule."""
        raise NotImplementedError(f"{type(self).__name__} must define phase_id")

    @property
    def plan(self) -> Plan:
        if self.phase_id == PPO_PLUS_PLUS:
            return Plan("guide", "learner", self.beta)
        return Plan("learner", "guide", self.aggrevated_beta)

    @property
    def critic_name(self) -> Literal["learner", "guide"]:
        return "learner" if self.phase_id == PPO_PLUS_PLUS else "guide"


class LOLS(_PhasedModule):
    """Each epoch is PPO++ with probability `tau`, else AggreVaTeD. The coin of epoch e is drawn from its
    own generator seeded by (`seed`, e), so a resumed run flips the same coins; the flips so far are
    also written into the checkpoint.

    Args:
        tau: Probability of a PPO++ epoch.
        beta: Mixing probability of the PPO++ phase, and of the AggreVaTeD phase unless `aggrevated_beta` is set.
        aggrevated_beta: Mixing probability of the AggreVaTeD phase (the share of learner roll-ins); null = `beta`.
        seed: Seed of the coin flips; null takes the run's `seed_everything`.
        **kwargs: See `RLGFModule`.
    """

    def __init__(self, *args, tau: float = 0.8, beta: float = 0.8, aggrevated_beta: float | None = None,
                 seed: int | None = None, **kwargs) -> None:
        super().__init__(*args, beta=beta, aggrevated_beta=aggrevated_beta, **kwargs)
        if not 0.0 <= tau <= 1.0:
            raise ConfigError(f"tau must lie in [0, 1], got {tau}.")
        self.tau = tau
        self.seed = seed if seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))
        self.flips: dict[int, int] = {}

    def coin(self, epoch: int) -> int:
        """PPO_PLUS_PLUS (1) or AGGREVATED (0) for `epoch`."""
        if epoch not in self.flips:
            generator = torch.Generator().manual_seed(1_000_003 * (self.seed + 1) + epoch)
            self.flips[epoch] = PPO_PLUS_PLUS if float(torch.rand(1, generator=generator)) < self.tau else AGGREVATED
        return self.flips[epoch]

    @property
    def phase_id(self) -> int:
        epoch = self.trainer.current_epoch if self._trainer is not None else 0
        return self.coin(epoch)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["lols_flips"] = dict(self.flips)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.flips.update(checkpoint.get("lols_flips", {}))


SWITCH_CALLBACK_YAML = """callbacks:  # top level of the config, beside trainer: and model:
  - class_path: callbacks.D2LOLSSwitch
    init_args: {{switch_epoch: {epoch}}}"""


class SwitchesOnce:
    """D2LOLS's single switch (a mixin before the module class): the AggreVaTeD phase until a phase-switch
    callback (`callbacks.D2LOLSSwitch`, or an adaptive rule) calls `switch_to_ppo_plus_plus()`, the PPO++ phase
    from then on. The module owns the phase, not its timing; the `switched` buffer is in the state dict, so
    resume keeps the phase."""

    def _init_switch(self, switch_epoch: int | None) -> None:
        if switch_epoch is not None:  # the argument of old configs and checkpoints, before the switch callback
            rank_zero_warn(f"{type(self).__name__}(switch_epoch={switch_epoch}) is ignored: the switch epoch belongs to "
                           f"the callback now. Add to the config:\n{SWITCH_CALLBACK_YAML.format(epoch=switch_epoch)}")
        self._legacy_switch_epoch = switch_epoch
        self.register_buffer("switched", torch.tensor(False))

    @property
    def phase_id(self) -> int:
        return PPO_PLUS_PLUS if bool(self.switched) else AGGREVATED

    def on_fit_start(self) -> None:
        """Fail before any work when no callback would ever switch the phase."""
        if not any(getattr(callback, "switches_phase", False) for callback in self.trainer.callbacks):
            epoch = self._legacy_switch_epoch if self._legacy_switch_epoch is not None else 10
            raise ConfigError(f"{type(self).__name__} switches from its AggreVaTeD phase to its PPO++ phase through a "
                              f"callback, and this run has none. Add to the config (or pick an adaptive rule: "
                              f"callbacks.GuideBaselineSwitch, callbacks.PlateauSwitch):\n"
                              f"{SWITCH_CALLBACK_YAML.format(epoch=epoch)}")
        super().on_fit_start()

    def switch_to_ppo_plus_plus(self) -> None:
        """From the next rollouts on, the PPO++ phase (called by a phase-switch callback at an epoch's start)."""
        self.switched.fill_(True)


class D2LOLS(SwitchesOnce, _PhasedModule):
    """AggreVaTeD, then PPO++ once a phase-switch callback says so: `callbacks.D2LOLSSwitch(switch_epoch)` (a
    fixed epoch), `callbacks.GuideBaselineSwitch` or `callbacks.PlateauSwitch` (adaptive). The callback owns
    the timing; a fit without one stops at its start with the YAML to add.

    Args:
        switch_epoch: Ignored, with a warning (configs and checkpoints from before the switch callback); the
            switch epoch is `callbacks.D2LOLSSwitch`'s.
        beta: Mixing probability of the PPO++ phase, and of the AggreVaTeD phase unless `aggrevated_beta` is
            set (paper IMDB setting: 0.8 for both).
        aggrevated_beta: Mixing probability of the AggreVaTeD phase (the share of learner roll-ins); null = `beta`.
        **kwargs: See `RLGFModule`.
    """

    def __init__(self, *args, beta: float = 0.8, aggrevated_beta: float | None = None,
                 switch_epoch: int | None = None, **kwargs) -> None:
        super().__init__(*args, beta=beta, aggrevated_beta=aggrevated_beta, **kwargs)
        self._init_switch(switch_epoch)

    def switch_to_ppo_plus_plus(self) -> None:
        """From now on: guide roll-in, learner roll-out, learner critic. The learner critic, never trained
        until now, starts from the guide critic's weights: a value estimate of roll-outs from these
        states is a far better start than an untrained head."""
        if self.hparams.critic_share_trunk:  # the trunk is the learner's own: copy the head only
            self.critic.head.load_state_dict(self.guide_critic.head.state_dict())
        else:
            self.critic.load_state_dict(self.guide_critic.state_dict())
        super().switch_to_ppo_plus_plus()
