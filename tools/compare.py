"""Compare algorithms over seeds: a markdown table of test metrics (mean ± std) and PNG training curves.

From finished runs (each a log directory with event files and test_results.json):

    python tools/compare.py runs/compare/*/seed* --out docs/results

Or run them first: for each config and seed, `rlgf fit`, then `rlgf test` on the last checkpoint with the
guide baseline, into `{root}/{config name}/seed{S}` (finished runs are skipped, so a stopped comparison
picks up where it was):

    python tools/compare.py --configs configs/demo/{ppo,ppo_pp,aggrevated,lols,d2lols}.yaml \\
        --seeds 0 1 2 --root runs/compare --out docs/results --jobs 2

`--arg=X` adds X to both commands (e.g. `--arg=--trainer.max_epochs=2`), `--test-arg=X` to the test only.
`--suffix=S` names the runs `{config name}S`, so a sweep keeps its settings apart in one table (a KL sweep:
`--arg=--model.init_args.kl_coef=0.1 --suffix=_kl0.1`).

Writes `{out}/results.md` (the table), `{out}/val_reward.png` and `{out}/train_kl.png` (curves over
epochs), and `{out}/reward_perplexity.png` and `{out}/reward_kl.png` (the reward-fluency and reward-KL
frontiers: a point per seed, a large one per algorithm's mean), and, where run names carry a `--suffix` sweep,
`{out}/sweep.png` (test reward and perplexity against the swept setting). `--curves val/cider_d` adds
`{out}/val_cider_d.png` (any logged tag against epochs, with the guide's test value of that metric).
Where the runs log `train/learner_tokens`, the sample-efficiency view: `{out}/efficiency.png` (val/reward
against the tokens the learner wrote and against elapsed time) and `{out}/efficiency.md` (tokens written by
the learner and by the guide, elapsed seconds and the last val/reward, per algorithm).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlgf_pl.comparison import (  # noqa: E402
    efficiency_table,
    load_run,
    plot_curves,
    plot_efficiency,
    plot_frontier,
    plot_sweep,
    summary_table,
)


def logger_argument(root: Path, name: str, version: str) -> str:
    logger = {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
              "init_args": {"save_dir": str(root), "name": name, "version": version}}
    return "--trainer.logger=" + json.dumps(logger)


def run_one(config: Path, seed: int, root: Path, threads: int, run_args: list[str], test_args: list[str],
            suffix: str = "") -> Path:
    """Fit and test one (config, seed) unless its results exist. Returns the run directory."""
    name, version = config.stem + suffix, f"seed{seed}"
    directory = root / name / version
    if (directory / "test_results.json").is_file():
        return directory
    environment = dict(os.environ, OMP_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false")
    common = ["--config", str(config), f"--seed_everything={seed}", logger_argument(root, name, version), *run_args]
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "compare.log", "a") as log:
        for command in (["fit", *common],
                        ["test", *common, f"--ckpt_path={directory / 'checkpoints' / 'last.ckpt'}",
                         "--data.init_args.evaluate_guide=true", *test_args]):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "rlgf_pl.cli", *command], check=True, env=environment,
                           stdout=log, stderr=subprocess.STDOUT)
            print(f"{name} seed {seed}: {command[0]} took {time.perf_counter() - started:.0f} s", flush=True)
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", type=Path, help="run directories (with test_results.json)")
    parser.add_argument("--configs", nargs="*", type=Path, default=[], help="configs to run first")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--root", type=Path, default=Path("runs/compare"), help="where run mode logs")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (threads are split among them)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads per run (default: the CPU count divided by --jobs)")
    parser.add_argument("--arg", action="append", default=[], dest="run_args",
                        help="extra argument for fit and test, e.g. --arg=--trainer.max_epochs=2 (repeatable)")
    parser.add_argument("--test-arg", action="append", default=[], dest="test_args",
                        help="extra argument for `rlgf test` only (repeatable)")
    parser.add_argument("--suffix", default="", help="appended to each run's name, e.g. _kl0.1 for a sweep")
    parser.add_argument("--metrics", nargs="*", default=None, help="table rows (default: every metric)")
    parser.add_argument("--curves", nargs="*", default=[],
                        help="more logged tags to plot against epochs, e.g. val/cider_d val/coverage: "
                             "{out}/val_cider_d.png, ... (with the guide's test value of the same metric)")
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    args = parser.parse_args()
    if not args.runs and not args.configs:
        parser.error("give run directories, or --configs to run")
    try:  # checked first: no run is wasted on a missing plotter
        import matplotlib  # noqa: F401
    except ImportError:
        parser.error("compare.py draws its plots with matplotlib, which is not installed: "
                     "pip install -e '.[tools]' (or pip install matplotlib)")
    for config in args.configs:
        if not config.is_file():
            parser.error(f"config {config} does not exist")
    runs = list(args.runs)
    if args.configs:
        threads = args.threads or max(1, (os.cpu_count() or 1) // max(1, args.jobs))
        jobs = [(config, seed) for seed in args.seeds for config in args.configs]  # every algorithm per seed first
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            runs += list(pool.map(lambda job: run_one(*job, args.root, threads, args.run_args, args.test_args,
                                                        args.suffix), jobs))
        print(f"{len(jobs)} runs took {time.perf_counter() - started:.0f} s in all")
    records = [load_run(directory) for directory in runs]
    args.out.mkdir(parents=True, exist_ok=True)
    table = summary_table(records, args.metrics)
    (args.out / "results.md").write_text(table)
    plot_curves(records, "val/reward", args.out / "val_reward.png", guide_metric="reward")
    plot_curves(records, "train/kl", args.out / "train_kl.png")
    curves = {tag: tag.replace("/", "_") for tag in args.curves}  # val/cider_d -> val_cider_d.png
    for tag, name in curves.items():
        plot_curves(records, tag, args.out / f"{name}.png", guide_metric=tag.split("/", 1)[-1])
    plot_frontier(records, "perplexity", args.out / "reward_perplexity.png")
    plot_frontier(records, "kl", args.out / "reward_kl.png")
    swept = plot_sweep(records, ["reward", "perplexity"], args.out / "sweep.png")
    efficient = plot_efficiency(records, "val/reward", args.out / "efficiency.png", guide_metric="reward")
    if efficient:
        (args.out / "efficiency.md").write_text(efficiency_table(records))
    print(table)
    extra = "".join(f", {name}" for name in curves.values())
    print(f"Wrote {args.out / 'results.md'}{' and efficiency.md' if efficient else ''} and the plots val_reward, "
          f"train_kl{extra}, reward_perplexity, reward_kl{', efficiency' if efficient else ''}"
          f"{' and sweep' if swept else ''} (.png) in {args.out}")


if __name__ == "__main__":
    main()
