"""D2LOLS over the critic-free objectives: AggreVaTeD-MC, then GRPO++."""

from __future__ import annotations

from rlgf_pl.algorithms.critic_free import CriticFreeModule, GroupEstimator, KLMode
from rlgf_pl.algorithms.lols import PPO_PLUS_PLUS, SwitchesOnce
from rlgf_pl.rollout.advantages import KLEstimator
from rlgf_pl.rollout.plan import Plan


class D2LOLSMC(SwitchesOnce, CriticFreeModule):
    """Critic-free D2LOLS: AggreVaTeD-MC (learner roll-in, K - 1 guide roll-outs from its state as the baseline),
    then GRPO++ (one guide prefix per group, K learner roll-outs from it) once a phase-switch callback says so,
    as D2LOLS. No critic in either phase.

    Args:
        switch_epoch: Ignored, with a warning, as in `D2LOLS`: the switch epoch is `callbacks.D2LOLSSwitch`'s.
        beta: Probability that a GRPO++ group starts from a guide prefix.
        aggrevated_beta: Probability that an AggreVaTeD-MC state is a learner prefix; null = `beta`.
        kl_mode, kl_estimator: As `GRPO` (defaults: KL in the loss with k3).
        scale_by_std: Divide by the group's std (off by default: in the AggreVaTeD-MC phase a group of equal guide
            returns has a tiny std, and the learner's advantage explodes).
        whiten_advantages: Normalize the advantages over the batch's trained tokens, in both phases (default on).
        **kwargs: See `CriticFreeModule` and `RLGFModule`.
    """

    def __init__(self, *args, switch_epoch: int | None = None, beta: float = 0.8, aggrevated_beta: float | None = None,
                 kl_mode: KLMode = "loss", kl_estimator: KLEstimator = "k3", scale_by_std: bool = False,
                 whiten_advantages: bool = True, **kwargs) -> None:
        super().__init__(*args, kl_mode=kl_mode, kl_estimator=kl_estimator, scale_by_std=scale_by_std,
                         whiten_advantages=whiten_advantages, **kwargs)
        self.beta = beta
        self.aggrevated_beta = beta if aggrevated_beta is None else aggrevated_beta
        Plan("guide", "learner", self.beta)
        Plan("learner", "guide", self.aggrevated_beta)
        self._init_switch(switch_epoch)

    @property
    def plan(self) -> Plan:
        if self.phase_id == PPO_PLUS_PLUS:
            return Plan("guide", "learner", self.beta, shared_rollin=True)
        return Plan("learner", "guide", self.aggrevated_beta, shared_rollin=True, leader_keeps_rollin=True)

    @property
    def group_estimator(self) -> GroupEstimator:
        return "group" if self.phase_id == PPO_PLUS_PLUS else "guide_mc"
