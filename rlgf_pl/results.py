"""Writing test results where the run's logs are."""

from __future__ import annotations

import json
import math
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only


def run_log_dir(trainer: Trainer) -> Path:
    """The run's log directory: the logger's versioned directory, else the trainer's root."""
    directory = trainer.log_dir or trainer.default_root_dir
    return Path(directory)


class TestResultsWriter(Callback):
    """After `rlgf test`, writes every `test/*` metric to `test_results.json` in the run's log directory."""

    def __init__(self, filename: str = "test_results.json") -> None:
        self.filename = filename
        self.path: Path | None = None

    @rank_zero_only
    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        results = {
            name: float(value)
            for name, value in sorted(trainer.callback_metrics.items())
            if name.startswith("test/") and math.isfinite(float(value))
        }
        self.path = run_log_dir(trainer) / self.filename
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"Test results written to {self.path}")
