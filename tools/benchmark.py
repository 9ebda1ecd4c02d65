"""Time one RL epoch (rollout + update) of PPO, PPO++ and GRPO on the same tiny setting.

    python tools/benchmark.py [--reps 5] [--accelerator auto]

Prints one JSON object: per-algorithm median seconds per epoch (the first epoch is a warm-up and is
dropped), the split between collecting rollouts and updating, `ppo_pp_over_ppo` and `grpo_over_ppo`. The
PPO++ guide is the same size as the learner, so that ratio measures what the guide's roll-in adds. GRPO draws
the same number of trajectories (`--rollouts`, 4 per prompt) with no critic to run or train.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning.pytorch import Callback  # noqa: E402

from rlgf_pl.cli import build_cli  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


class EpochTimer(Callback):
    """Wall time of each training epoch, and of the rollout collection inside it."""

    def __init__(self) -> None:
        self.epochs: list[float] = []
        self.collect: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            self.collect.append(time.perf_counter() - self._start)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.epochs.append(time.perf_counter() - self._start)


def time_algorithm(config: str, args: argparse.Namespace, root: Path) -> dict:
    timer = EpochTimer()
    cli = build_cli([
        "--config", str(REPO / f"configs/toy/{config}.yaml"),
        f"--trainer.max_epochs={args.reps + 1}", "--trainer.limit_val_batches=0",
        f"--trainer.accelerator={args.accelerator}", f"--trainer.precision={args.precision}",
        f"--trainer.default_root_dir={root / config}", "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false", "--trainer.enable_checkpointing=false", "--trainer.callbacks=[]",
        f"--data.init_args.rollouts_per_epoch={args.rollouts}", f"--data.init_args.minibatch_size={args.minibatch}",
        f"--data.init_args.ppo_epochs={args.ppo_epochs}",
        f"--data.init_args.generation.max_new_tokens={args.max_new_tokens}",
        f"--data.init_args.generation.min_new_tokens={args.max_new_tokens}",
    ], run=False)
    cli.trainer.callbacks.append(timer)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    epochs, collect = timer.epochs[1:], timer.collect[1:]
    return {
        "median_epoch_s": statistics.median(epochs),
        "median_rollout_s": statistics.median(collect),
        "median_update_s": statistics.median(e - c for e, c in zip(epochs, collect)),
        "epochs_s": [round(e, 4) for e in epochs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5, help="timed epochs per algorithm (after one warm-up)")
    parser.add_argument("--rollouts", type=int, default=112)
    parser.add_argument("--minibatch", type=int, default=28)
    parser.add_argument("--ppo-epochs", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--root", default="runs/benchmark")
    args = parser.parse_args()
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    results = {name: time_algorithm(config, args, Path(args.root)) for name, config in
               (("ppo", "ppo"), ("ppo_pp", "ppo_pp"), ("grpo", "grpo"))}
    for name in ("ppo_pp", "grpo"):
        results[f"{name}_over_ppo"] = results[name]["median_epoch_s"] / results["ppo"]["median_epoch_s"]
    results["setting"] = {k: v for k, v in vars(args).items() if k != "root"}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
