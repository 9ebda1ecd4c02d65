"""The training 'dataloader': each pass collects an epoch of rollouts, then yields PPO minibatches."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from rlgf_pl.rollout.containers import PPOBatch

if TYPE_CHECKING:
    from rlgf_pl.data.datamodule import RolloutDataModule


class EpochRollouts:
    """An iterable that, each time it is iterated, generates `rollouts_per_epoch / world_size`
    trajectories with the current learner, has the module turn them into a `PPOBatch`, and yields
    `ppo_epochs` shuffled passes of minibatches. Every rank yields the same number of minibatches."""

    def __init__(self, datamodule: RolloutDataModule) -> None:
        self.datamodule = datamodule

    def __len__(self) -> int:
        data = self.datamodule
        return data.ppo_epochs * math.ceil(data.rollouts_per_rank / data.minibatch_size)

    def __iter__(self) -> Iterator[PPOBatch]:
        data = self.datamodule
        buffer = data.collect_epoch()
        size = data.minibatch_size
        for _ in range(data.ppo_epochs):
            order = torch.randperm(len(buffer), generator=data.generator).to(buffer.query_ids.device)
            for start in range(0, len(buffer), size):
                yield buffer.select(order[start : start + size])
