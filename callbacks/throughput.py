"""Epoch time, rollout and update throughput, and peak memory, logged to TensorBoard (`perf/...`) and printed.

    trainer:
      callbacks:
        - class_path: callbacks.Throughput

Per epoch and per rank: `perf/epoch_s`; `perf/rollout_s` (generation, scoring and the rollout forward
passes) with `perf/generation_tokens_per_s` (response tokens written / rollout seconds); `perf/update_s`
with `perf/update_tokens_per_s` (response tokens x PPO passes / update seconds); `perf/peak_rss_gib` (the
process's peak resident memory) and, on a GPU, `perf/peak_gpu_memory_gib` (torch's peak allocation).
Multiply the token rates by the number of ranks for the run's total.
"""

from __future__ import annotations

import resource
import sys
import time

import torch
from lightning.pytorch import Callback


def peak_rss_gib() -> float:
    """This process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class Throughput(Callback):
    """Times each training epoch's rollout collection and update, and records peak memory.

    Args:
        verbose: Also print one line per epoch on rank 0.
    """

    def __init__(self, verbose: bool = True) -> None:
        self.verbose = verbose
        self.history: list[dict[str, float]] = []
        self._start = self._update_start = 0.0
        self._generated = 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:  # runs before the module collects its rollouts
        if torch.cuda.is_available() and pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        self._start = time.perf_counter()
        self._update_start = 0.0

    def on_rollouts_collected(self, trainer, pl_module, rollout, scores) -> None:
        self._generated = int(rollout.response_mask.sum())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self._update_start:
            self._update_start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        end = time.perf_counter()
        update_start = self._update_start or end
        rollout_s, update_s = update_start - self._start, end - update_start
        passes = getattr(trainer.datamodule, "ppo_epochs", 1)
        stats = {
            "perf/epoch_s": end - self._start,
            "perf/rollout_s": rollout_s,
            "perf/update_s": update_s,
            "perf/generation_tokens_per_s": self._generated / max(rollout_s, 1e-9),
            "perf/update_tokens_per_s": self._generated * passes / max(update_s, 1e-9),
            "perf/peak_rss_gib": peak_rss_gib(),
        }
        if torch.cuda.is_available() and pl_module.device.type == "cuda":
            stats["perf/peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated(pl_module.device) / 2**30
        self.history.append(stats)
        if trainer.logger is not None and trainer.is_global_zero:
            trainer.logger.log_metrics(stats, step=trainer.global_step)
        if self.verbose and trainer.is_global_zero:
            gpu = f", peak GPU memory {stats['perf/peak_gpu_memory_gib']:.2f} GiB" if "perf/peak_gpu_memory_gib" in stats else ""
            print(f"rlgf: epoch {trainer.current_epoch}: {stats['perf/epoch_s']:.1f} s (rollouts {rollout_s:.1f} s, "
                  f"{stats['perf/generation_tokens_per_s']:.0f} tokens/s; update {update_s:.1f} s, "
                  f"{stats['perf/update_tokens_per_s']:.0f} tokens/s); peak RSS {stats['perf/peak_rss_gib']:.2f} GiB"
                  f"{gpu}", file=sys.stderr)
