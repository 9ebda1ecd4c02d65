"""The guide study's report (`tools/study.py report`): tables and plots from its finished runs.

It reads each run's TensorBoard events; of the plan it needs the three sweeps (`study.plan`), and of a run only
its `algorithm`, `rung`, `beta` and `switch_epoch` (`study.Run`).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from guide_ladder import REFERENCE

if TYPE_CHECKING:
    from study import Run

REPO = Path(__file__).resolve().parents[1]
NAMES = {"ppo": "PPO", "ppo_pp": "PPO++", "aggrevated": "AggreVaTeD", "lols": "LOLS", "d2lols": "D2LOLS"}
# What the report reads of each run, per task (its first metric is the one the plots and most tables show).
METRICS = {"demo": ["reward"], "concepts": ["reward", "cider_d", "coverage"]}


def baseline(sweeps: dict[str, list[Run]]) -> Run:
    """The ladder's run without a guide (PPO)."""
    return next(run for run in sweeps["ladder"] if run.rung is None)


def guided(sweeps: dict[str, list[Run]]) -> list[str]:
    """The ladder's guided algorithms, in its order."""
    return list(dict.fromkeys(run.algorithm for run in sweeps["ladder"] if run.rung is not None))


@dataclass
class Outcome:
    """One finished run's validation curve per metric ([(epoch, value)], epoch 0 = before training)."""

    curves: dict[str, list[tuple[float, float]]]
    seconds: float

    def final(self, metric: str) -> float:
        return self.curves[metric][-1][1]

    def untrained(self, metric: str) -> float:
        return self.curves[metric][0][1]


def load_outcome(directory: Path, metrics: list[str]) -> Outcome:
    from rlgf_pl.comparison import epochs_of
    from rlgf_pl.utils.tensorboard import read_scalars_and_elapsed

    scalars, _ = read_scalars_and_elapsed(directory)
    curves = {}
    for metric in metrics:
        tag = f"val/{metric}"
        curves[metric] = list(zip(epochs_of(scalars, tag), (value for _, value in scalars.get(tag, []))))
    return Outcome(curves, float((directory / "done").read_text()))


def cell(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def finals(outcomes: dict[tuple[Run, int], Outcome], run: Run, metric: str) -> list[float]:
    return [outcome.final(metric) for (each, _), outcome in outcomes.items() if each == run]


def settings(task: str, outcomes: dict[tuple[Run, int], Outcome], epochs: int, val_every: int,
             overrides: list[str]) -> list[str]:
    """The budget each run had, against the task's configs, and what the runs cost here."""
    import yaml

    configs = REPO / "configs" / task
    trainer = yaml.safe_load((configs / "trainer.yaml").read_text())
    data = yaml.safe_load((configs / "data.yaml").read_text())["init_args"]
    seconds = [outcome.seconds for outcome in outcomes.values()]
    seeds = sorted({seed for _, seed in outcomes})
    return ["## Settings", "",
            f"- `configs/{task}/{{algorithm}}.yaml`, each with {epochs} epochs (the configs: "
            f"{trainer['max_epochs']}) and validation every {val_every} epochs and before training (the configs: "
            f"every {trainer['check_val_every_n_epoch']}); the configs' {data['rollouts_per_epoch']} rollouts per "
            f"epoch and {data['task']['init_args'].get('num_validation', 'all')} validation prompts, unless the "
            "overrides below say otherwise.",
            "- Overrides: " + ", ".join(f"`{argument}`" for argument in overrides) + ".",
            f"- Seeds {', '.join(map(str, seeds))}; {len(outcomes)} runs, {statistics.fmean(seconds):.0f} s each on "
            f"average ({sum(seconds) / 3600:.1f} hours of runs in all)." if seconds else "",
            ""]


def report(task: str, sweeps: dict[str, list[Run]], outcomes: dict[tuple[Run, int], Outcome],
           strengths: dict[str, float], epochs: int, val_every: int, overrides: list[str], out: Path,
           command: str) -> str:
    """`{out}/results.md` and the plots from the finished runs' `outcomes`; returns the markdown."""
    metrics = METRICS[task]
    main = metrics[0]
    ppo = baseline(sweeps)
    untrained = [outcome.untrained(metric) for outcome in outcomes.values() for metric in [main]]
    lines = [f"# The guide study on the {'IMDB demo' if task == 'demo' else 'concept task'}", "",
             f"Final validation {main} (last of {epochs} epochs), mean ± std over seeds; the untrained learner "
             f"(the validation before training, every run): {cell(untrained)}; PPO: {cell(finals(outcomes, ppo, main))}.",
             "", "## Switch point (D2LOLS, the task's guide)", "",
             "| switch epoch | % of training | " + " | ".join(f"val/{m}" for m in metrics) + " | n |",
             "|---:|---:|" + "---:|" * len(metrics) + "---:|"]
    for run in sweeps["switch"]:
        n = len(finals(outcomes, run, main))
        lines.append(f"| {run.switch_epoch} | {100 * run.switch_epoch / epochs:.0f} | "
                     + " | ".join(cell(finals(outcomes, run, m)) for m in metrics) + f" | {n} |")
    betas = sorted({run.beta for run in sweeps["beta"]})
    lines += ["", f"## Beta (the task's guide), val/{main}", "",
              "| algorithm | " + " | ".join(f"beta {b}" for b in betas) + " |", "|---|" + "---:|" * len(betas)]
    for algorithm in ("ppo_pp", "aggrevated"):
        lines.append(f"| {NAMES[algorithm]} | " + " | ".join(
            cell(finals(outcomes, run, main)) for run in sweeps["beta"] if run.algorithm == algorithm) + " |")
    ladder = list(dict.fromkeys(run.rung for run in sweeps["ladder"] if run.rung))
    lines += ["", f"## Guide ladder, val/{main}", "",
              "| algorithm | " + " | ".join(f"{rung} ({strengths.get(rung, float('nan')):.3f})" for rung in ladder) + " |",
              "|---|" + "---:|" * len(ladder), f"| PPO (no guide) | {cell(finals(outcomes, ppo, main))} |"
              + " |" * (len(ladder) - 1)]
    for algorithm in guided(sweeps):
        lines.append(f"| {NAMES[algorithm]} | " + " | ".join(
            cell(finals(outcomes, run, main)) for run in sweeps["ladder"] if run.algorithm == algorithm) + " |")
    lines += ["", "The header gives each rung's own validation reward as a writer (`val/guide/reward`, its "
              "sampling settings, the same prompts). `reference` writes the task's reference continuation (`ReferenceGuide`); "
              "where the reward compares a text with the references, the reference is scored against itself, so its "
              "strength is an oracle's and sits off the rungs' scale.", ""]
    lines += settings(task, outcomes, epochs, val_every, overrides)
    lines += ["Made with:", "", "```bash", command, "```", ""]
    plot(task, sweeps, outcomes, strengths, epochs, out)
    text = "\n".join(lines)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text)
    return text


def plot(task: str, sweeps: dict[str, list[Run]], outcomes: dict[tuple[Run, int], Outcome],
         strengths: dict[str, float], epochs: int, out: Path) -> None:
    from rlgf_pl.comparison import _figure, _save

    main = METRICS[task][0]
    ppo = finals(outcomes, baseline(sweeps), main)
    untrained = [outcome.untrained(main) for outcome in outcomes.values()]

    def references(axes) -> None:
        if ppo:
            axes.axhline(statistics.fmean(ppo), color="C0", linestyle="--", label=f"PPO (n={len(ppo)})")
        if untrained:
            axes.axhline(statistics.fmean(untrained), color="gray", linestyle=":", label="untrained learner")

    def errorbar(axes, xs: list[float], runs: list[Run], label: str, color: str) -> None:
        points = [(x, finals(outcomes, run, main)) for x, run in zip(xs, runs)]
        points = [(x, values) for x, values in points if values]
        if not points:
            return
        axes.errorbar([x for x, _ in points], [statistics.fmean(v) for _, v in points],
                      yerr=[statistics.stdev(v) if len(v) > 1 else 0.0 for _, v in points], marker="o", capsize=3,
                      color=color, label=label)
        for x, values in points:
            axes.scatter([x] * len(values), values, s=12, alpha=0.4, color=color)

    figure, axes = _figure()
    runs = sweeps["switch"]
    errorbar(axes, [100 * run.switch_epoch / epochs for run in runs], runs, "D2LOLS", "C3")
    references(axes)
    axes.set_xlabel("switch point (% of training; 0: PPO++ throughout, 100: AggreVaTeD throughout)")
    axes.set_ylabel(f"final val/{main}")
    _save(figure, axes, out / "switch.png")

    figure, axes = _figure()
    for index, algorithm in enumerate(("ppo_pp", "aggrevated")):
        runs = [run for run in sweeps["beta"] if run.algorithm == algorithm]
        errorbar(axes, [run.beta for run in runs], runs, NAMES[algorithm], f"C{index + 1}")
    references(axes)
    axes.set_xlabel("beta")
    axes.set_ylabel(f"final val/{main}")
    _save(figure, axes, out / "beta.png")

    figure, axes = _figure()
    for index, algorithm in enumerate(guided(sweeps)):
        runs = [run for run in sweeps["ladder"] if run.algorithm == algorithm and run.rung in strengths
                and run.rung != REFERENCE]
        errorbar(axes, [strengths[run.rung] for run in runs], runs, NAMES[algorithm], f"C{index + 1}")
    references(axes)
    axes.set_xlabel("guide strength (the guide's own val/reward; the reference rung left out)")
    axes.set_ylabel(f"final val/{main}")
    _save(figure, axes, out / "ladder.png")

    import numpy as np

    figure, axes = _figure()
    top = [run for run in sweeps["ladder"] if run.rung in (None, sweeps["switch"][0].rung)]  # the task's guide
    for index, run in enumerate(top):
        curves = [outcome.curves[main] for (each, _), outcome in outcomes.items() if each == run]
        length = min((len(curve) for curve in curves), default=0)
        if not length:
            continue
        values = np.array([[value for _, value in curve[:length]] for curve in curves])
        xs = [epoch for epoch, _ in curves[0][:length]]
        axes.plot(xs, values.mean(0), color=f"C{index}", label=f"{NAMES[run.algorithm]} (n={len(curves)})")
        if len(curves) > 1:
            axes.fill_between(xs, values.mean(0) - values.std(0), values.mean(0) + values.std(0), color=f"C{index}",
                              alpha=0.15)
    axes.set_xlabel("epoch (0 = before training)")
    axes.set_ylabel(f"val/{main}")
    _save(figure, axes, out / "curves.png")
