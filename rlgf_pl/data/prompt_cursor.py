"""Which prompts a rank uses next: a reshuffled pass over its own shard, with checkpointable state."""

from __future__ import annotations

import torch

from rlgf_pl.errors import ConfigError


class PromptCursor:
    """Walks a shuffled order of this rank's prompt indices, reshuffling at the end of each pass.

    Args:
        num_prompts: Size of the whole training set.
        rank, world_size: This process's shard is indices rank, rank + world_size, ...
    """

    def __init__(self, num_prompts: int, rank: int = 0, world_size: int = 1) -> None:
        self.shard = list(range(rank, num_prompts, world_size))
        if not self.shard:
            raise ConfigError(
                f"Rank {rank} of {world_size} gets no training prompts (there are {num_prompts}); "
                "use more prompts or fewer devices."
            )
        self.order: list[int] = []
        self.position = 0

    def take(self, count: int, generator: torch.Generator) -> list[int]:
        """The next `count` prompt indices (prompts repeat only across passes)."""
        taken: list[int] = []
        while len(taken) < count:
            if self.position >= len(self.order):
                permutation = torch.randperm(len(self.shard), generator=generator).tolist()
                self.order = [self.shard[i] for i in permutation]
                self.position = 0
            step = min(count - len(taken), len(self.order) - self.position)
            taken.extend(self.order[self.position : self.position + step])
            self.position += step
        return taken

    def state_dict(self) -> dict:
        return {"order": list(self.order), "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.order = list(state["order"])
        self.position = int(state["position"])
