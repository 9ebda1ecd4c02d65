"""The training 'dataloader': which rows of an epoch's rollouts each optimizer step trains on."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch


class MinibatchSchedule:
    """`ppo_epochs` shuffled passes over the row indices 0..rollouts-1 of one epoch's rollouts, in minibatches.

    The agent collects the rollouts at the start of each epoch and trains on the rows each index tensor
    names; every rank yields the same number of minibatches. The order of epoch e comes from its own seed,
    so it does not depend on when the trainer first iterates, and a resumed run replays it exactly.

    Args:
        rollouts: Trajectories per rank and epoch.
        minibatch_size: Rows per minibatch.
        ppo_epochs: Passes over the rollouts.
        seed_of_epoch: The shuffling seed of the current epoch.
    """

    def __init__(self, rollouts: int, minibatch_size: int, ppo_epochs: int, seed_of_epoch) -> None:
        self.rollouts = rollouts
        self.minibatch_size = minibatch_size
        self.ppo_epochs = ppo_epochs
        self.seed_of_epoch = seed_of_epoch

    def __len__(self) -> int:
        return self.ppo_epochs * math.ceil(self.rollouts / self.minibatch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        generator = torch.Generator().manual_seed(self.seed_of_epoch())
        for _ in range(self.ppo_epochs):
            order = torch.randperm(self.rollouts, generator=generator)
            yield from order.split(self.minibatch_size)
