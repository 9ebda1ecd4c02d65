"""Guide ladders (`rlgf_pl/zoo/ladder.py`): how strong is each rung, and the commands of the study across them.

    python tools/guide_ladder.py strength --task demo          # each rung's validation reward, as a markdown table
    python tools/guide_ladder.py commands --task concepts --algorithms ppo d2lols ppo_pp --seeds 0 1 2

`strength` validates the task's learner once per rung with the rung as its guide and reads the guide's own
validation metrics (`val/guide/reward`, the same prompts, decoding and reward as the learner's). `commands`
prints one `rlgf fit` and one `rlgf test` per algorithm, rung and seed, each run in its own folder under
`--root`, for `tools/compare.py` to read.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TASKS = {"demo": "imdb", "concepts": "concepts"}
REFERENCE = "reference"


def rungs(task: str) -> list[str]:
    from rlgf_pl.zoo.ladder import GUIDE_LADDERS

    return [name for name, _ in GUIDE_LADDERS[TASKS[task]]] + [REFERENCE]


def guide_args(rung: str) -> list[str]:
    """The flags that make `rung` the guide of a task config."""
    if rung == REFERENCE:
        return ["--data.init_args.guide=rlgf_pl.policies.ReferenceGuide"]
    return [f"--data.init_args.guide.init_args.model=zoo:{rung}"]


def strength(task: str, rung: str, extra: list[str] = ()) -> dict[str, float]:
    """The learner's and the rung's validation reward on the task's validation prompts (`extra`: more flags
    for the task's config, e.g. a study's smaller validation set)."""
    from rlgf_pl.cli import build_cli

    with tempfile.TemporaryDirectory() as root:
        cli = build_cli(["--config", str(REPO / f"configs/{task}/ppo.yaml"), f"--trainer.default_root_dir={root}",
                         "--trainer.enable_progress_bar=false", "--trainer.logger=false", *guide_args(rung), *extra],
                        run=False)
        cli.model.evaluate_guide_in_next_validation = True
        (metrics,) = cli.trainer.validate(cli.model, datamodule=cli.datamodule, verbose=False)
    return {"learner": metrics["val/reward"], "guide": metrics["val/guide/reward"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["strength", "commands"])
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--rungs", nargs="*", help="zoo names or 'reference' (default: the task's whole ladder)")
    parser.add_argument("--algorithms", nargs="*", default=["ppo", "ppo_pp", "aggrevated", "lols", "d2lols"])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--root", default="runs/ladder")
    args = parser.parse_args(argv)
    chosen = args.rungs or rungs(args.task)
    if args.what == "strength":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        print("| guide | val/reward of the guide | of the learner |\n|---|---|---|")
        for rung in chosen:
            measured = strength(args.task, rung)
            print(f"| {rung} | {measured['guide']:.3f} | {measured['learner']:.3f} |", flush=True)
        return 0
    for algorithm in args.algorithms:
        for rung in ["none"] if algorithm == "ppo" else chosen:
            for seed in args.seeds:
                folder = f"{args.root}/{args.task}/{rung}/{algorithm}/seed{seed}"
                common = (f"--config configs/{args.task}/{algorithm}.yaml --seed_everything={seed} "
                          f"--trainer.default_root_dir={folder}" + "".join(f" {a}" for a in
                                                                           ([] if rung == "none" else guide_args(rung))))
                print(f"rlgf fit {common} && rlgf test {common} --ckpt_path=$(ls {folder}/*/version_0/checkpoints/"
                      "last.ckpt)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
