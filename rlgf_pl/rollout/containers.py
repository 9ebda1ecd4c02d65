"""Typed containers for the tensors of one epoch of rollouts."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor


@dataclass
class Rollout:
    """Trajectories in the learner's tokens. B trajectories, P query positions, T response positions.

    Attributes:
        query_ids: [B, P] prompt tokens (left-padded for a causal learner, right-padded for a seq2seq one).
        query_mask: [B, P] 1 on real prompt tokens.
        response_ids: [B, T] generated tokens (roll-in prefix then roll-out), right-padded.
        response_mask: [B, T] 1 on generated tokens (EOS included).
        learner_mask: [B, T] 1 on tokens the learner wrote (policy gradient and KL apply here).
        guide_mask: [B, T] 1 on tokens the guide wrote. learner_mask + guide_mask == response_mask.
        switch_index: [B] h, the number of roll-in tokens kept before the roll-out policy took over (0: none).
        prompts: B prompt texts (as the learner saw them, after truncation).
        continuations: B generated texts.
        references: B lists of reference continuations.
    """

    query_ids: Tensor
    query_mask: Tensor
    response_ids: Tensor
    response_mask: Tensor
    learner_mask: Tensor
    guide_mask: Tensor
    switch_index: Tensor
    prompts: list[str]
    continuations: list[str]
    references: list[list[str]]

    @property
    def batch_size(self) -> int:
        return self.query_ids.shape[0]

    @staticmethod
    def concat(rollouts: list[Rollout], pad_token_id: int, query_padding_side: str = "left") -> Rollout:
        """Join rollouts generated in several batches into one (queries padded on the learner's side)."""
        return Rollout(**_concat_fields(rollouts, pad_token_id, query_padding_side))


@dataclass
class PPOBatch:
    """Everything the PPO loss needs, for B trajectories of T response positions.

    Attributes:
        query_ids, query_mask: [B, P] left-padded prompts.
        response_ids, response_mask: [B, T] right-padded responses.
        policy_mask: [B, T] tokens whose policy gradient counts (the learner's).
        critic_mask: [B, T] tokens the active critic is trained on.
        old_logprobs: [B, T] log pi_old(y_t | s_t) of the learner at collection time.
        old_values: [B, T] V(s_t) of the active critic at collection time.
        advantages: [B, T] GAE advantages (whitened over `policy_mask` when enabled).
        returns: [B, T] value targets, advantages + values before whitening.
        target_ids, target_mask: [B, U] a reference continuation per row for the supervised term (`sft_coef`),
            right-padded; None when that term is off.
        ref_logprobs: [B, T] log pi_ref(y_t | s_t), kept when the KL penalty is a loss term (GRPO's KL in the
            loss) rather than a reward; None otherwise.
    """

    query_ids: Tensor
    query_mask: Tensor
    response_ids: Tensor
    response_mask: Tensor
    policy_mask: Tensor
    critic_mask: Tensor
    old_logprobs: Tensor
    old_values: Tensor
    advantages: Tensor
    returns: Tensor
    target_ids: Tensor | None = None
    target_mask: Tensor | None = None
    ref_logprobs: Tensor | None = None

    def __len__(self) -> int:
        return self.query_ids.shape[0]

    def select(self, index: Tensor) -> PPOBatch:
        """The rows at `index` (a minibatch)."""
        return PPOBatch(**{field.name: None if (value := getattr(self, field.name)) is None else value[index]
                           for field in fields(self)})


@dataclass
class RolloutForward:
    """The no-grad forward passes over an epoch's rollouts, B trajectories of T response positions.

    Attributes:
        logprobs: [B, T] log pi_old(y_t | s_t) of the learner.
        ref_logprobs: [B, T] log pi_ref(y_t | s_t) of the frozen reference.
        values: [B, T] V(s_t) of the active critic, or None for a critic-free algorithm.
    """

    logprobs: Tensor
    ref_logprobs: Tensor
    values: Tensor | None


@dataclass
class Advantages:
    """What an advantage estimator hands to the update, [B, T] each.

    Attributes:
        advantages: per-token advantages (0 off `policy_mask`).
        returns: value targets of the critic (GAE), or the returns-to-go of a critic-free estimator (logged only).
        policy_mask: tokens whose policy gradient counts.
        critic_mask: tokens the active critic trains on (all 0 without a critic).
    """

    advantages: Tensor
    returns: Tensor
    policy_mask: Tensor
    critic_mask: Tensor


def _concat_fields(items: list, pad_token_id: int, query_padding_side: str) -> dict:
    """Concatenate the fields of dataclasses row-wise: tensors named query_* pad on `query_padding_side`,
    other [B, T] tensors on the right (ids with the pad token, everything else with 0); lists are joined."""
    merged = {}
    for field in fields(items[0]):
        values = [getattr(item, field.name) for item in items]
        if isinstance(values[0], list):
            merged[field.name] = [entry for value in values for entry in value]
            continue
        if values[0].dim() == 1:
            merged[field.name] = torch.cat(values)
            continue
        width = max(value.shape[1] for value in values)
        fill = pad_token_id if field.name.endswith("_ids") else 0
        left = field.name.startswith("query") and query_padding_side == "left"
        padded = [
            torch.nn.functional.pad(value, (width - value.shape[1], 0) if left else (0, width - value.shape[1]), value=fill)
            for value in values
        ]
        merged[field.name] = torch.cat(padded)
    return merged
