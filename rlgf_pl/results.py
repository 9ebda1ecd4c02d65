"""Writing test results where the run's logs are: `test_results.json` and a markdown table."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

LEARNER_PREFIX = "test/"
GUIDE_PREFIX = "test/guide/"


def run_log_dir(trainer: Trainer) -> Path:
    """The run's log directory: the logger's versioned directory, else the trainer's root."""
    directory = trainer.log_dir or trainer.default_root_dir
    return Path(directory)


METRIC_ORDER = (
    "reward", "reward_std", "perplexity", "reference_perplexity", "msttr", "distinct_1", "distinct_2",
    "unique_1", "unique_2", "length_mean", "length_min", "length_max", "bleu", "rouge1", "rouge2", "rougeL",
    "chrf", "meteor", "cider_d", "semantic_cosine", "bertscore_precision", "bertscore_recall", "bertscore_f1",
)


def ordered_metrics(names) -> list[str]:
    """Metric names in reading order: reward first, then fluency, diversity, lexical and semantic; others after."""
    rank = {name: i for i, name in enumerate(METRIC_ORDER)}
    return sorted(dict.fromkeys(names), key=lambda name: (rank.get(name, len(rank)), name))


def format_value(value: float, scale: float | None = None) -> str:
    """Four decimals for rates and scores, one for large numbers (counts, perplexities). `scale` picks the
    format by another number (so a std reads like its mean)."""
    if not math.isfinite(value):
        return "–"
    return f"{value:.1f}" if abs(value if scale is None else scale) >= 100 else f"{value:.4f}"


def split_results(results: dict[str, float]) -> dict[str, dict[str, float]]:
    """{'learner': {metric: value}, 'guide': {...}} from flat `test/...` and `test/guide/...` names."""
    columns: dict[str, dict[str, float]] = {"learner": {}, "guide": {}}
    for name, value in results.items():
        if name.startswith(GUIDE_PREFIX):
            columns["guide"][name[len(GUIDE_PREFIX):]] = value
        elif name.startswith(LEARNER_PREFIX):
            columns["learner"][name[len(LEARNER_PREFIX):]] = value
    return {writer: metrics for writer, metrics in columns.items() if metrics}


def results_table(results: dict[str, float]) -> str:
    """A markdown table with one row per metric and one column per writer (learner, and guide if evaluated)."""
    columns = split_results(results)
    metrics = ordered_metrics(name for values in columns.values() for name in values)
    lines = ["| metric | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for metric in metrics:
        cells = [format_value(values.get(metric, float("nan"))) for values in columns.values()]
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


class TestResultsWriter(Callback):
    """After `rlgf test`, writes every `test/*` metric to `test_results.json` and the table of them to
    `test_results.md` in the run's log directory, and prints the table."""

    def __init__(self, filename: str = "test_results.json") -> None:
        self.filename = filename
        self.path: Path | None = None

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._started = time.perf_counter()
        self._prompts = 0

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int,
                          dataloader_idx: int = 0) -> None:
        self._prompts += len(batch["prompt"]) if isinstance(batch, dict) and "prompt" in batch else 0

    @rank_zero_only
    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        elapsed = time.perf_counter() - self._started
        results = {
            name: float(value)
            for name, value in sorted(trainer.callback_metrics.items())
            if name.startswith(LEARNER_PREFIX) and math.isfinite(float(value))
        }
        self.path = run_log_dir(trainer) / self.filename
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(results, indent=2) + "\n")
        table = results_table(results)
        self.path.with_suffix(".md").write_text(table)
        print(f"\n{table}\nEvaluated {self._prompts} prompts on rank 0 in {elapsed:.1f} s. "
              f"Test results written to {self.path} and {self.path.with_suffix('.md')}")
