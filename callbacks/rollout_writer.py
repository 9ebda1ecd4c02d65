"""Write every rank's training rollouts to JSON lines, to read what the learner (and guide) wrote."""

from __future__ import annotations

import json

from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor

from rlgf_pl.errors import ConfigError
from rlgf_pl.results import run_log_dir
from rlgf_pl.rollout.containers import Rollout


class RolloutWriter(Callback):
    """After each epoch's rollouts are collected, writes `rollouts/epoch{E}_rank{R}.jsonl` in the log
    directory: prompt, continuation, reward, switch index, and which tokens the guide wrote. It listens to
    the agent's `on_rollouts_collected` hook.

    Args:
        every_n_epochs: Write every n-th epoch (1 = all).
        max_rows: Rows written per rank and epoch (null = all).
    """

    def __init__(self, every_n_epochs: int = 1, max_rows: int | None = None) -> None:
        if every_n_epochs < 1:
            raise ConfigError(f"every_n_epochs must be >= 1, got {every_n_epochs}.")
        self.every_n_epochs = every_n_epochs
        self.max_rows = max_rows

    def on_rollouts_collected(self, trainer: Trainer, pl_module: LightningModule, rollout: Rollout,
                              scores: Tensor) -> None:
        if trainer.current_epoch % self.every_n_epochs:
            return
        rows = range(rollout.batch_size if self.max_rows is None else min(self.max_rows, rollout.batch_size))
        directory = run_log_dir(trainer) / "rollouts"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"epoch{trainer.current_epoch:04d}_rank{trainer.global_rank}.jsonl"
        with path.open("w") as handle:
            for i in rows:
                record = {
                    "prompt": rollout.prompts[i],
                    "continuation": rollout.continuations[i],
                    "reward": float(scores[i]),
                    "switch_index": int(rollout.switch_index[i]),
                    "guide_tokens": int(rollout.guide_mask[i].sum()),
                    "learner_tokens": int(rollout.learner_mask[i].sum()),
                }
                handle.write(json.dumps(record) + "\n")
