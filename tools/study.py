"""The guide study of issue #25: the D2LOLS switch point, beta, and the guide's strength, n seeds, one task.

    python tools/study.py run --task concepts --seeds 0 1 2 --jobs 2   # every run not finished yet, then the report
    python tools/study.py report --task concepts                       # tables and plots from the finished runs
    python tools/study.py commands --task demo                         # the `rlgf fit` of each run, to run elsewhere

Three sweeps share one set of runs (a run two sweeps need is made once):

- switch: D2LOLS with its switch at 0, 25, 50, 75 and 100 % of training (0 %: PPO++ throughout; 100 %:
  AggreVaTeD throughout), the task's guide;
- beta: PPO++ and AggreVaTeD at each `--betas` value, the task's guide;
- ladder: PPO and every guided algorithm (PPO++, AggreVaTeD, LOLS, D2LOLS) with each rung of the task's guide
  ladder as the guide (`rlgf_pl/zoo/ladder.py`, and `reference`: `ReferenceGuide`).

Each run is `rlgf fit` of `configs/{task}/{algorithm}.yaml` with the study's budget (`--epochs`, and the task's
`STUDY_ARGS` below, stated in the report): no checkpoints, no text metrics but those the report reads,
validation every `--val-every` epochs. The final metric is the last validation's (the task's validation
prompts); the untrained learner is the validation before training (step 0) of the same runs. A finished run
has `done` in its folder; a stopped study picks up where it was. The report (`study_report.py`) writes
`{out}/results.md` (the tables, the settings and the commands) and `switch.png`, `beta.png`, `ladder.png`,
`curves.png`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from guide_ladder import guide_args, rungs  # noqa: E402
from study_report import METRICS, load_outcome, report  # noqa: E402

GUIDED = ["ppo_pp", "aggrevated", "lols", "d2lols"]
# The budget the study shrinks each run to (beside --epochs), per task: no text metrics but the reward's (the
# concept task keeps CIDEr-D and coverage, which the report tabulates), no checkpoint or sample table; the
# demo validates on 128 prompts (its config: 256), the concept task collects 128 rollouts an epoch (its config: 256).
STUDY_ARGS = {
    "demo": ["--data.init_args.metrics=[]", "--data.init_args.task.init_args.num_validation=128"],
    "concepts": ['--data.init_args.metrics=[{"class_path": "rlgf_pl.metrics.CIDErD"}, '
                 '{"class_path": "rlgf_pl.metrics.Coverage"}]', "--data.init_args.rollouts_per_epoch=128"],
}


@dataclass(frozen=True)
class Run:
    """One fit: an algorithm, its guide (a ladder rung, or none for PPO), and the setting a sweep moves."""

    algorithm: str
    rung: str | None
    beta: float | None = None
    switch_epoch: int | None = None

    @property
    def name(self) -> str:
        knobs = (f"_beta{self.beta}" if self.beta is not None else "") + (
            f"_switch{self.switch_epoch}" if self.switch_epoch is not None else "")
        return self.algorithm + knobs + (f"@{self.rung}" if self.rung else "")

    def arguments(self, task: str) -> list[str]:
        arguments = ["--config", str(REPO / f"configs/{task}/{self.algorithm}.yaml")]
        if self.rung:
            arguments += guide_args(self.rung)
        if self.beta is not None:
            arguments.append(f"--model.init_args.beta={self.beta}")
        if self.switch_epoch is not None:
            switch = [{"class_path": "callbacks.D2LOLSSwitch", "init_args": {"switch_epoch": self.switch_epoch}}]
            arguments.append("--callbacks=" + json.dumps(switch))
        return arguments


def switch_epochs(epochs: int) -> list[int]:
    """0, 25, 50, 75 and 100 % of `epochs`, rounded to whole epochs."""
    return [round(epochs * fraction) for fraction in (0.0, 0.25, 0.5, 0.75, 1.0)]


def plan(task: str, epochs: int, betas: list[float], ladder: list[str]) -> dict[str, list[Run]]:
    """Per sweep, its runs (without seeds). The default switch is the middle one (50 %), so the ladder's D2LOLS
    runs with the task's guide are the switch sweep's middle point."""
    guide = rungs(task)[-2]  # the task's own guide: the ladder's top zoo rung
    middle = switch_epochs(epochs)[2]
    return {
        "switch": [Run("d2lols", guide, switch_epoch=epoch) for epoch in switch_epochs(epochs)],
        "beta": [Run(algorithm, guide, beta=beta) for algorithm in ("ppo_pp", "aggrevated") for beta in betas],
        "ladder": [Run("ppo", None)] + [Run(algorithm, rung, switch_epoch=middle if algorithm == "d2lols" else None)
                                        for algorithm in GUIDED for rung in ladder],
    }


def unique_runs(sweeps: dict[str, list[Run]]) -> list[Run]:
    return list(dict.fromkeys(run for runs in sweeps.values() for run in runs))


def folder(root: Path, task: str, run: Run, seed: int) -> Path:
    return root / task / run.name / f"seed{seed}"


def fit_command(task: str, run: Run, seed: int, root: Path, epochs: int, val_every: int) -> list[str]:
    logger = {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
              "init_args": {"save_dir": str(root / task), "name": run.name, "version": f"seed{seed}"}}
    return ["fit", *run.arguments(task), f"--seed_everything={seed}", f"--trainer.max_epochs={epochs}",
            f"--trainer.check_val_every_n_epoch={val_every}", "--trainer.callbacks=[]",
            "--trainer.enable_checkpointing=false", "--trainer.enable_progress_bar=false",
            "--trainer.logger=" + json.dumps(logger), *STUDY_ARGS[task]]


def run_one(task: str, run: Run, seed: int, root: Path, epochs: int, val_every: int, threads: int) -> None:
    directory = folder(root, task, run, seed)
    if (directory / "done").is_file():
        return
    if directory.exists():  # a run stopped part-way starts over: its events would mix with the new ones
        for stale in sorted(directory.rglob("*"), reverse=True):
            stale.unlink() if stale.is_file() else stale.rmdir()
    directory.mkdir(parents=True, exist_ok=True)
    environment = dict(os.environ, OMP_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false",
                       HF_HUB_OFFLINE="1")
    started = time.perf_counter()
    with open(directory / "fit.log", "w") as log:
        subprocess.run([sys.executable, "-m", "rlgf_pl.cli", *fit_command(task, run, seed, root, epochs, val_every)],
                       check=True, env=environment, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    seconds = time.perf_counter() - started
    (directory / "done").write_text(f"{seconds:.0f}\n")
    print(f"{task} {run.name} seed {seed}: {seconds:.0f} s", flush=True)


def guide_strengths(task: str, ladder: list[str], root: Path) -> dict[str, float]:
    """Each rung's validation reward as a writer, on the study's validation prompts (cached in the study's
    folder: one validation per rung)."""
    from guide_ladder import strength

    cache = root / task / "guide_strength.json"
    known = json.loads(cache.read_text()) if cache.is_file() else {}
    for rung in ladder:
        if rung not in known:
            known[rung] = strength(task, rung, STUDY_ARGS[task])["guide"]
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(known, indent=1))
    return known


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["run", "report", "commands"])
    parser.add_argument("--task", choices=["demo", "concepts"], required=True)
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=8, help="training epochs per run (the configs: 20)")
    parser.add_argument("--val-every", type=int, default=4, help="validate every N epochs (and before training)")
    parser.add_argument("--betas", nargs="*", type=float, default=[0.3, 0.6, 0.8])
    parser.add_argument("--rungs", nargs="*", help="ladder rungs (default: the task's whole ladder and 'reference')")
    parser.add_argument("--sweeps", nargs="*", choices=["switch", "beta", "ladder"], default=["switch", "beta", "ladder"],
                        help="which sweeps to run (the report shows whatever has finished)")
    parser.add_argument("--root", type=Path, default=Path("runs/study"))
    parser.add_argument("--out", type=Path, help="where the report goes (default: docs/results/study/{task})")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (threads are split among them)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ladder = args.rungs or rungs(args.task)
    sweeps = plan(args.task, args.epochs, args.betas, ladder)
    chosen = unique_runs({name: runs for name, runs in sweeps.items() if name in args.sweeps})
    if args.what == "commands":
        for seed in args.seeds:
            for run in chosen:
                print("rlgf " + " ".join(f"'{a}'" if any(c in a for c in " {[\"") else a for a in
                                         fit_command(args.task, run, seed, args.root, args.epochs, args.val_every)))
        return 0
    if args.what == "run":
        threads = max(1, (os.cpu_count() or 1) // max(1, args.jobs))
        jobs = [(run, seed) for seed in args.seeds for run in chosen]  # seed 0 of everything first
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(lambda job: run_one(args.task, *job, args.root, args.epochs, args.val_every, threads), jobs))
        print(f"{len(jobs)} runs took {time.perf_counter() - started:.0f} s in all", flush=True)
    outcomes = {(run, seed): load_outcome(folder(args.root, args.task, run, seed), METRICS[args.task])
                for run in unique_runs(sweeps) for seed in args.seeds
                if (folder(args.root, args.task, run, seed) / "done").is_file()}
    if not outcomes:
        print(f"No finished runs under {args.root / args.task} (a finished run has `done` in its folder): "
              f"run `python tools/study.py run --task {args.task}` first, or pass --root.", file=sys.stderr)
        return 1
    strengths = guide_strengths(args.task, ladder, args.root)
    command = " ".join(["python tools/study.py run", f"--task {args.task}", f"--epochs {args.epochs}",
                        f"--val-every {args.val_every}", "--seeds " + " ".join(map(str, args.seeds)),
                        "--rungs " + " ".join(ladder), "--jobs 2"])
    print(report(args.task, sweeps, outcomes, strengths, args.epochs, args.val_every, STUDY_ARGS[args.task],
                 args.out or REPO / f"docs/results/study/{args.task}", command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
