"""The agent's safeguards: prompt plus response must fit every model's context, and no NaN or inf may reach
the weights or a checkpoint (mixed into RLGFModule)."""

from __future__ import annotations

import torch
from torch import Tensor

from rlgf_pl.algorithms.guards import REMEDIES, describe, non_finite_names
from rlgf_pl.errors import NonFiniteError
from rlgf_pl.policies.base import Policy
from rlgf_pl.policies.context import check_fits


class Safeguards:
    """Context checks before any generation (`check_context_lengths`) and the non-finite guard
    (`_stop_if_non_finite`, called in `prepare`, before each optimizer step and on every checkpoint)."""

    def on_fit_start(self) -> None:
        self.check_context_lengths("fit")
        self.engine.setup(self.policy)

    def on_fit_end(self) -> None:
        self.engine.close()

    def on_validation_start(self) -> None:
        if self.trainer.state.fn == "validate":
            self.check_context_lengths("validate")

    def on_test_start(self) -> None:
        self.check_context_lengths("test")

    def check_context_lengths(self, stage: str) -> None:
        """Before any generation: the longest prompt plus the longest response of `stage` must fit the learner,
        the critics' own trunks and the guide, or a named error says which model and what to lower."""
        environment = self.environment
        settings = [environment.eval_generation] + ([environment.generation] if stage == "fit" else [])
        new_tokens = max(setting.max_new_tokens for setting in settings)
        models = [("the learner", self.hparams.model, self.policy)]
        for critic in (self.critic, self.guide_critic):
            if critic is not None and critic.backbone is not self.policy.trunk:
                models.append(("the critic trunk", self.hparams.critic_model or self.hparams.model, critic.backbone))
        if environment.guide is not None and environment.guide.policy is not None:  # a remote guide has none
            models.append(("the guide", environment.guide.name, environment.guide.policy))
        for role, name, network in models:
            model = network.model if isinstance(network, Policy) else network
            kind = network.kind if isinstance(network, Policy) else self.policy.kind
            check_fits(role, name, kind, model.config, environment.max_prompt_tokens, new_tokens)

    def _stop_if_non_finite(self, tensors: dict[str, Tensor | None], where: str, scores: Tensor | None = None) -> None:
        """Raise NonFiniteError naming the tensors that hold NaN or inf, on every rank when any rank has one."""
        bad = non_finite_names(tensors)
        if self._trainer is not None and self.trainer.world_size > 1:
            if not self.trainer.strategy.reduce_boolean_decision(bool(bad), all=False):
                return
        elif not bad:
            return
        found = describe(bad) if bad else "tensors on another rank"
        largest = f" The largest |reward| was {float(scores.abs().max()):.3g}." if scores is not None else ""
        raise NonFiniteError(f"Training diverged: NaN or inf in {found} while {where}.{largest} {REMEDIES} "
                             "The run stopped before saving this state, so the last checkpoint is the last good one.")

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Stop before a step that would write NaN or inf into the weights: check this step's loss terms and
        gradients (one device sync; on every rank when any rank finds one)."""
        steps, self._step_terms = self._step_terms, []
        tensors = {name + (f" (micro-batch {i})" if len(steps) > 1 else ""): value
                   for i, terms in enumerate(steps) for name, value in terms.items()}
        tensors.update({f"the gradient of {name}": parameter.grad for name, parameter in self.named_parameters()
                        if parameter.grad is not None})
        self._stop_if_non_finite(tensors, f"training epoch {self.current_epoch} (global step {self.global_step})",
                                 self._largest_score)
