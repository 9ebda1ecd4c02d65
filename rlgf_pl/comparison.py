"""Compare runs: test metrics as mean ± std over seeds, and training curves, from run directories.

A run directory is a TensorBoard log directory (`{save_dir}/{name}/{version}`) that holds the event
files of a fit and, after `rlgf test` into the same directory, `test_results.json`. Runs are grouped by
label: the logger name (the parent directory's name) unless given.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rlgf_pl.results import format_value, ordered_metrics, split_results
from rlgf_pl.utils.tensorboard import per_epoch, read_scalars_and_elapsed

GUIDE = "guide"


@dataclass
class RunRecord:
    """One run: its group label, its test results by writer ({'learner': {...}, 'guide': {...}}) and its
    TensorBoard scalars."""

    label: str
    directory: Path
    results: dict[str, dict[str, float]]
    scalars: dict[str, list[tuple[int, float]]]
    elapsed: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    """Per tag, the run's elapsed seconds at each logged value, in the order of `scalars`."""


def load_run(directory: str | Path, label: str | None = None) -> RunRecord:
    directory = Path(directory)
    results_file = directory / "test_results.json"
    if not results_file.is_file():
        raise FileNotFoundError(f"{results_file} does not exist: run `rlgf test` with this run's logger "
                                f"directory (or compare.py's run mode) first.")
    results = split_results(json.loads(results_file.read_text()))
    return RunRecord(label or directory.parent.name, directory, results, *read_scalars_and_elapsed(directory))


def mean_std(values: Sequence[float]) -> str:
    """'mean ± std' over seeds where there are two or more, the value alone for one seed (no '± 0')."""
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return "–"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return format_value(mean)
    return f"{format_value(mean)} ± {format_value(statistics.stdev(values), scale=mean)}"


def epochs_of(scalars: dict[str, list[tuple[int, float]]], tag: str) -> list[float]:
    """The x of each logged value of `tag` in epochs: a validation logged at step 0 comes before training
    (0); one logged later ends epoch `e` (Lightning's `epoch` scalar at that step), so it is at e + 1. Without
    an `epoch` series, the logging index."""
    points, epochs = scalars.get(tag, []), sorted(scalars.get("epoch", []))
    if not epochs:
        return [float(i) for i in range(len(points))]
    xs = []
    for step, _ in points:
        at = [epoch for logged, epoch in epochs if logged <= step]
        xs.append(0.0 if step == 0 or not at else at[-1] + 1.0)
    return xs


def grouped(runs: Sequence[RunRecord]) -> dict[str, list[RunRecord]]:
    groups: dict[str, list[RunRecord]] = {}
    for run in runs:
        groups.setdefault(run.label, []).append(run)
    return groups


def summary_table(runs: Sequence[RunRecord], metrics: Sequence[str] | None = None) -> str:
    """Markdown: one row per metric, one column per label (mean ± std over its runs), and a `guide` column
    from the runs that evaluated the guide baseline."""
    groups = grouped(runs)
    columns = {label: [run.results.get("learner", {}) for run in group] for label, group in groups.items()}
    guide_results = [run.results["guide"] for run in runs if GUIDE in run.results]
    if guide_results:
        columns[GUIDE] = guide_results
    if metrics is None:
        metrics = ordered_metrics(name for results in columns.values() for result in results for name in result)
    counts = {label: len(group) for label, group in groups.items()} | ({GUIDE: len(guide_results)} if guide_results else {})
    lines = ["| metric | " + " | ".join(f"{label} (n={counts[label]})" for label in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for metric in metrics:
        cells = [mean_std([result.get(metric, float("nan")) for result in results]) for results in columns.values()]
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(runs: Sequence[RunRecord], tag: str, path: str | Path, guide_metric: str | None = None) -> Path:
    """PNG of `tag` against epochs (`val/*`: the epochs each validation followed, 0 = before training; per
    epoch metrics: 1..n), mean over each label's runs with a ±std band (none for one run). `guide_metric` draws
    the guide's mean test value as a line."""
    import numpy as np

    figure, axes = _figure()
    for label, group in grouped(runs).items():
        curves = [per_epoch(run.scalars, tag) for run in group]
        length = min((len(curve) for curve in curves), default=0)
        if length == 0:
            continue
        values = np.array([curve[:length] for curve in curves])
        mean, std = values.mean(0), values.std(0)
        x = np.array(epochs_of(group[0].scalars, tag)[:length]) if tag.startswith("val/") else np.arange(1, length + 1)
        axes.plot(x, mean, label=f"{label} (n={len(group)})")
        if len(group) > 1:
            axes.fill_between(x, mean - std, mean + std, alpha=0.2)
    guide_values = [run.results[GUIDE][guide_metric] for run in runs
                    if guide_metric and guide_metric in run.results.get(GUIDE, {})]
    if guide_values:
        axes.axhline(statistics.fmean(guide_values), color="black", linestyle="--", label="guide (test)")
    axes.set_xlabel("epoch (0 = before training)" if tag.startswith("val/") else "epoch")
    axes.set_ylabel(tag)
    return _save(figure, axes, path)


def frontier_points(runs: Sequence[RunRecord], x: str) -> dict[str, list[tuple[float, float]]]:
    """Per label, one (x, test reward) point per run that has both. `x` is a test metric ('perplexity') or
    'kl': the run's last `train/kl` (KL to the reference per trajectory in its last epoch)."""
    points: dict[str, list[tuple[float, float]]] = {}
    for label, group in grouped(runs).items():
        for run in group:
            results = run.results.get("learner", {})
            kl = per_epoch(run.scalars, "train/kl")
            value = (kl[-1] if kl else float("nan")) if x == "kl" else results.get(x, float("nan"))
            reward = results.get("reward", float("nan"))
            if math.isfinite(value) and math.isfinite(reward):
                points.setdefault(label, []).append((value, reward))
    return points


def plot_frontier(runs: Sequence[RunRecord], x: str, path: str | Path) -> Path:
    """PNG of test reward against `x` (see `frontier_points`): a small point per seed and a large one at each
    label's mean, so algorithms compare at equal fluency or KL budget."""
    figure, axes = _figure()
    for index, (label, points) in enumerate(frontier_points(runs, x).items()):
        color = f"C{index}"
        axes.scatter([p[0] for p in points], [p[1] for p in points], s=18, alpha=0.5, color=color)
        axes.scatter([statistics.fmean(p[0] for p in points)], [statistics.fmean(p[1] for p in points)], s=90,
                     color=color, edgecolors="black", label=f"{label} (n={len(points)})")
    axes.set_xlabel("final train/kl (per trajectory)" if x == "kl" else f"test/{x}")
    axes.set_ylabel("test/reward")
    return _save(figure, axes, path)


LEARNER_TOKENS = "train/learner_tokens"
EFFICIENCY_AXES = {"tokens": "tokens written by the learner", "seconds": "elapsed seconds (training and validation)"}


def efficiency_points(run: RunRecord, tag: str, x: str) -> list[tuple[float, float]]:
    """(x, value) for each logged value of `tag`. x = 'tokens': the learner's tokens written so far (its
    cumulative `train/learner_tokens` at that step; 0 before the first epoch); 'seconds': the run's elapsed
    time when it was logged. Empty when the run did not log what x needs."""
    values = run.scalars.get(tag, [])
    if x == "seconds":
        seconds = [elapsed for _, elapsed in run.elapsed.get(tag, [])]
        return list(zip(seconds, (value for _, value in values))) if len(seconds) == len(values) else []
    if x != "tokens":
        raise ValueError(f"x must be one of {sorted(EFFICIENCY_AXES)}, got {x!r}")
    tokens = run.scalars.get(LEARNER_TOKENS, [])
    if not tokens:
        return []
    return [(next((count for logged, count in reversed(tokens) if logged <= step), 0.0), value) for step, value in values]


def plot_efficiency(runs: Sequence[RunRecord], tag: str, path: str | Path, guide_metric: str | None = None) -> Path | None:
    """PNG of `tag` against the learner's written tokens and against elapsed time (two panels): per label, the
    mean over its runs at each logged point, with a ±std band of the value. None (nothing written) when no run
    logged `train/learner_tokens`."""
    import numpy as np

    if not any(run.scalars.get(LEARNER_TOKENS) for run in runs):
        return None
    figure, panels = _figure(columns=len(EFFICIENCY_AXES))
    guide_values = [run.results[GUIDE][guide_metric] for run in runs
                    if guide_metric and guide_metric in run.results.get(GUIDE, {})]
    for panel, (x, x_label) in zip(panels, EFFICIENCY_AXES.items()):
        for index, (label, group) in enumerate(grouped(runs).items()):
            curves = [points for points in (efficiency_points(run, tag, x) for run in group) if points]
            length = min((len(points) for points in curves), default=0)
            if length == 0:
                continue
            xs = np.array([[point[0] for point in points[:length]] for points in curves]).mean(0)
            ys = np.array([[point[1] for point in points[:length]] for points in curves])
            panel.plot(xs, ys.mean(0), color=f"C{index % 10}", linestyle="-" if index < 10 else "--",
                       label=f"{label} (n={len(curves)})")
            if len(curves) > 1:
                panel.fill_between(xs, ys.mean(0) - ys.std(0), ys.mean(0) + ys.std(0), alpha=0.15, color=f"C{index % 10}")
        if guide_values:
            panel.axhline(statistics.fmean(guide_values), color="black", linestyle=":", label="guide (test)")
        panel.set_xlabel(x_label)
        panel.set_ylabel(tag)
    return _save(figure, panels, path)


def efficiency_table(runs: Sequence[RunRecord], tag: str = "val/reward") -> str:
    """Markdown: per label (mean ± std over its runs), the learner's and the guide's written tokens over the
    whole fit, the fit's elapsed seconds, and the last logged `tag`."""
    rows = {"learner tokens": lambda run: _last(run.scalars.get(LEARNER_TOKENS, [])),
            "guide tokens": lambda run: _last(run.scalars.get("train/guide_tokens", [])),
            "elapsed seconds": lambda run: _last(run.elapsed.get(tag, [])),
            f"last {tag}": lambda run: _last(run.scalars.get(tag, []))}
    groups = grouped(runs)
    lines = ["| | " + " | ".join(f"{label} (n={len(group)})" for label, group in groups.items()) + " |",
             "|---|" + "---:|" * len(groups)]
    for name, value in rows.items():
        lines.append(f"| {name} | " + " | ".join(mean_std([value(run) for run in group]) for group in groups.values()) + " |")
    return "\n".join(lines) + "\n"


def _last(points: list[tuple[int, float]]) -> float:
    return points[-1][1] if points else float("nan")


SWEEP_LABEL = re.compile(r"^(?P<series>.+)_(?P<parameter>[A-Za-z_]+?)(?P<value>[0-9][0-9.eE+-]*)$")


def sweep_points(runs: Sequence[RunRecord], metric: str) -> tuple[str, dict[str, dict[float, list[float]]]]:
    """Runs whose labels name a swept setting (`{series}_{parameter}{value}`, e.g. `ppo_kl0.1`, as
    `compare.py --suffix` names them): the parameter's name, and per series, per value, the test `metric` of
    each run. Labels of another form are left out."""
    parameters, points = set(), {}
    for label, group in grouped(runs).items():
        match = SWEEP_LABEL.match(label)
        if match is None:
            continue
        try:
            value = float(match["value"])
        except ValueError:
            continue
        parameters.add(match["parameter"])
        values = [run.results.get("learner", {}).get(metric, float("nan")) for run in group]
        points.setdefault(match["series"], {})[value] = [v for v in values if math.isfinite(v)]
    if len(parameters) > 1:
        raise ValueError(f"the runs sweep more than one setting ({sorted(parameters)}); compare one sweep at a time")
    return (parameters.pop() if parameters else ""), points


def plot_sweep(runs: Sequence[RunRecord], metrics: Sequence[str], path: str | Path) -> Path | None:
    """PNG with one panel per test metric against the swept setting (log axis): a line through each series'
    means with ±std bars, a small point per seed. None (nothing written) unless some series has two values."""
    sweeps = [sweep_points(runs, metric) for metric in metrics]
    if not any(len(values) >= 2 for _, series in sweeps for values in series.values()):
        return None
    figure, panels = _figure(columns=len(metrics))
    for panel, metric, (parameter, series) in zip(panels, metrics, sweeps):
        for index, (name, values) in enumerate(sorted(series.items())):
            xs = sorted(x for x in values if values[x])
            means = [statistics.fmean(values[x]) for x in xs]
            stds = [statistics.stdev(values[x]) if len(values[x]) > 1 else 0.0 for x in xs]
            n = sorted({len(values[x]) for x in xs})
            panel.errorbar(xs, means, yerr=stds, color=f"C{index}", marker="o", capsize=3,
                           label=f"{name} (n={'/'.join(map(str, n))})")
            for x in xs:
                panel.scatter([x] * len(values[x]), values[x], s=12, alpha=0.4, color=f"C{index}")
        panel.set_xscale("log")
        panel.set_xlabel(parameter)
        panel.set_ylabel(f"test/{metric}")
    return _save(figure, panels, path)


def _figure(columns: int = 1):
    """A new matplotlib figure and its axes, a list when `columns` > 1 (Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, columns, figsize=(6.4 * columns, 4.0))
    return figure, (list(axes) if columns > 1 else axes)


def _save(figure, axes, path: str | Path) -> Path:
    """Grid and legend on each axes (one or a list; a crowded legend once, beside the last), tight layout;
    write the PNG (parents created), free the figure."""
    import matplotlib.pyplot as plt

    panels = axes if isinstance(axes, list) else [axes]
    crowded = len(panels[-1].get_legend_handles_labels()[0]) > 6
    for each in panels:
        each.grid(alpha=0.3)
        if not crowded:
            each.legend(fontsize="small")
    if crowded:  # one legend, beside the last panel, so it hides no curve
        panels[-1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
