"""On-policy distillation: the learner samples, the guide scores each learner token."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from rlgf_pl.algorithms.base import RLGFModule
from rlgf_pl.errors import ConfigError
from rlgf_pl.policies.base import Policy
from rlgf_pl.policies.guide import Guide, GuideBase, same_vocabulary
from rlgf_pl.rollout.advantages import kl_shaped_rewards
from rlgf_pl.rollout.containers import Advantages, PPOBatch, Rollout, RolloutForward
from rlgf_pl.rollout.estimators import discounted_returns, distillation_rewards, returns_to_go
from rlgf_pl.rollout.sampler import evaluation_mode

if TYPE_CHECKING:
    from rlgf_pl.data.datamodule import RolloutDataModule


def check_distillable(guide: GuideBase | None, learner: Policy) -> Guide:
    """The guide must give the log-probs of the learner's own tokens: a local model with the learner's vocabulary."""
    why = "Distill rewards each learner token with the guide's log-prob of that same token"
    if guide is None:
        raise ConfigError(f"{why}, so it needs a guide: set data.init_args.guide to a local rlgf_pl.policies.Guide.")
    if not isinstance(guide, Guide):
        raise ConfigError(f"{why}, so the guide must be a local model (rlgf_pl.policies.Guide); a "
                          f"{type(guide).__name__} returns text, not log-probs of the learner's tokens. Use a local "
                          "Guide with the learner's tokenizer, or a guided algorithm (PPO++, AggreVaTeD, D2LOLS).")
    if guide.chat_template:
        raise ConfigError(f"{why} in the learner's context; guide.chat_template wraps the prompt in another context. "
                          "Turn chat_template off for Distill.")
    if not same_vocabulary(guide.policy.tokenizer, learner.tokenizer):
        raise ConfigError(f"{why}, so guide and learner must share a vocabulary; the guide {guide.name!r} has another "
                          "tokenizer. Use a guide with the learner's tokenizer, or a guided algorithm, which hands "
                          "text over between tokenizers.")
    if guide.policy.kind != learner.kind:
        raise ConfigError(f"{why} in the same query and response layout; the guide {guide.name!r} is "
                          f"{guide.policy.kind} and the learner {learner.kind}. Use a guide of the learner's kind.")
    return guide


class Distill(RLGFModule):
    """On-policy distillation from the guide (GKD with lambda = 1; on-policy distillation): the learner samples,
    and each of its tokens gets the reward -(log p_learner(y_t) - log p_guide(y_t)), a one-sample estimate of the
    negative reverse KL to the guide. A token's advantage is the `discount`-ed sum of these rewards from t on (0:
    its own, as on-policy distillation) plus `reward_coef` x (the task reward - the batch's mean), so the task
    reward can be mixed in. No critic; the KL penalty to the reference still applies when kl_coef > 0.

    Needs a local guide with the learner's vocabulary and kind (a named error says why otherwise).

    Args:
        reward_coef: Weight of the task reward beside the distillation reward (0: pure distillation).
        discount: Discount of the distillation rewards summed from t on (0: each token's own).
        kl_coef: KL penalty to the reference (0 by default: the guide is the anchor).
        **kwargs: See `RLGFModule`.
    """

    uses_critic = False

    def __init__(self, *args, reward_coef: float = 0.0, discount: float = 0.0, kl_coef: float = 0.0,
                 whiten_advantages: bool = False, **kwargs) -> None:
        super().__init__(*args, kl_coef=kl_coef, whiten_advantages=whiten_advantages, **kwargs)
        if not 0.0 <= discount <= 1.0:
            raise ConfigError(f"discount must lie in [0, 1], got {discount}.")
        self.reward_coef = reward_coef
        self.discount = discount
        self._reverse_kl: Tensor | None = None

    def on_fit_start(self) -> None:
        super().on_fit_start()
        check_distillable(self.environment.guide, self.policy)

    @torch.no_grad()
    def guide_logprobs(self, rollout: Rollout, guide: Guide) -> Tensor:
        """[B, T] the guide's log-probs of the rollout's tokens, in chunks of `forward_batch_size`."""
        chunk = self.hparams.forward_batch_size
        parts = []
        with evaluation_mode(guide.policy):
            for start in range(0, rollout.batch_size, chunk):
                rows = slice(start, start + chunk)
                parts.append(guide.policy.logprobs(rollout.query_ids[rows], rollout.query_mask[rows],
                                                   rollout.response_ids[rows], rollout.response_mask[rows]))
        return torch.cat(parts).to(rollout.response_ids.device)

    def estimate_advantages(self, rollout: Rollout, rewards: Tensor, forward: RolloutForward,
                            environment: RolloutDataModule | None = None) -> Advantages:
        environment = self.environment if environment is None else environment
        guide = check_distillable(environment.guide, self.policy)
        learner_mask, response_mask = rollout.learner_mask, rollout.response_mask
        distill = distillation_rewards(forward.logprobs, self.guide_logprobs(rollout, guide), learner_mask)
        kl_mask = learner_mask if self.hparams.kl_penalty else torch.zeros_like(learner_mask)
        no_scores = torch.zeros(rollout.batch_size, device=rewards.device)
        kl_penalty, _ = kl_shaped_rewards(no_scores, forward.logprobs, forward.ref_logprobs, response_mask, kl_mask,
                                          self.kl_controller.value, self.hparams.kl_estimator)
        token_rewards = distill + kl_penalty
        advantages = discounted_returns(token_rewards, response_mask, self.discount)
        scores = (rewards - kl_penalty).sum(-1)  # the training scores, as the base placed them on the last token
        if self.reward_coef:
            advantages = advantages + self.reward_coef * (scores - scores.mean())[:, None]
        self._reverse_kl = -(distill.sum(-1)).mean()
        advantages = advantages * learner_mask
        returns = returns_to_go(token_rewards, response_mask)
        return Advantages(advantages, returns, learner_mask, torch.zeros_like(learner_mask))

    def prepare(self, rollout: Rollout, scores: Tensor, environment: RolloutDataModule | None = None) -> PPOBatch:
        batch = super().prepare(rollout, scores, environment)
        self._rollout_stats["train/reverse_kl_to_guide"] = self._reverse_kl  # per trajectory, summed over tokens
        return batch
