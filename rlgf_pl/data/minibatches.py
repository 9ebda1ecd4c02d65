"""The training 'dataloader': one item per optimizer step, naming which minibatch of the epoch it trains on."""

from __future__ import annotations

import math
from collections.abc import Iterator


class MinibatchSchedule:
    """`ppo_epochs` passes over one epoch's rollouts, in minibatches: yields `(pass, first_row)` per step.

    The agent collects the rollouts at the start of each epoch and shuffles each pass with the environment's
    random stream; a step trains on rows `first_row : first_row + minibatch_size` of its pass's order. The
    schedule draws no randomness, so it does not matter when the trainer first iterates it. Every rank
    yields the same number of steps.

    Args:
        rollouts: Trajectories per rank and epoch.
        minibatch_size: Rows per minibatch.
        ppo_epochs: Passes over the rollouts.
    """

    def __init__(self, rollouts: int, minibatch_size: int, ppo_epochs: int) -> None:
        self.rollouts = rollouts
        self.minibatch_size = minibatch_size
        self.ppo_epochs = ppo_epochs

    def __len__(self) -> int:
        return self.ppo_epochs * math.ceil(self.rollouts / self.minibatch_size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for ppo_epoch in range(self.ppo_epochs):
            for start in range(0, self.rollouts, self.minibatch_size):
                yield ppo_epoch, start  # plain ints: Lightning moves nothing to the device, no sync per step
