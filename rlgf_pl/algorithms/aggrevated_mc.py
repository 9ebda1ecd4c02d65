"""AggreVaTeD-MC: the learner's trajectory judged against the guide's roll-outs from the same state, no critic."""

from __future__ import annotations

from rlgf_pl.algorithms.critic_free import CriticFreeModule, GroupEstimator
from rlgf_pl.rollout.plan import Plan


class AggreVaTeDMC(CriticFreeModule):
    """AggreVaTeD with Monte Carlo guide values instead of a guide critic. Each group of K rows
    (`data.samples_per_prompt`) is one learner trajectory and K - 1 guide roll-outs: with probability `beta` the
    learner's trajectory is cut at h ~ U{1..L-1} and the guide continues K - 1 times from that state (else from
    the prompt, h = 0). The learner's tokens from h on get advantage = (its return from h) - (the mean return of
    the guide's roll-outs from the same state), an estimate of A^guide(s_h, learner) with no critic: the learner
    is pushed to beat the guide from states it reaches itself. Guide roll-outs train nothing.

    When the guide is much better than the learner, nearly every such advantage is negative; whitening them over
    the batch (on by default, as the critic AggreVaTeD's) keeps the signal of which learner continuations came
    closest to the guide instead of pushing every sampled token down.

    Args:
        beta: Probability that the state is a learner prefix (h >= 1) rather than the prompt.
        whiten_advantages: Normalize the advantages over the batch's trained tokens (default on).
        **kwargs: See `CriticFreeModule` and `RLGFModule`.
    """

    def __init__(self, *args, beta: float = 0.8, whiten_advantages: bool = True, **kwargs) -> None:
        super().__init__(*args, whiten_advantages=whiten_advantages, **kwargs)
        self.beta = beta
        self.plan  # noqa: B018  (validate now, not at the first epoch)

    @property
    def plan(self) -> Plan:
        return Plan("learner", "guide", self.beta, shared_rollin=True, leader_keeps_rollin=True)

    @property
    def group_estimator(self) -> GroupEstimator:
        return "guide_mc"
