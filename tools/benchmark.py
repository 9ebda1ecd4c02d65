"""Time one RL epoch (rollout + update) of PPO, PPO++, AggreVaTeD and GRPO on the same tiny setting.

    python tools/benchmark.py [--reps 10] [--accelerator auto] [--engine served]

Prints one JSON object: per-algorithm median seconds per epoch (the first epoch is a warm-up and is
dropped), the split between collecting rollouts and updating, `ppo_pp_over_ppo`, `aggrevated_over_ppo` and
`grpo_over_ppo`. The guide is the same size as the learner, so the guided ratios measure what the roll-in and
the roll-out by another model add. Every writer writes the whole budget (`min_new_tokens` = `max_new_tokens`,
the paper's IMDB shape), so roll-ins stop at the switch point. GRPO draws the same number of trajectories
(`--rollouts`, 4 per prompt) with no critic to run or train.

`collection_over_generate`, the collection guard, at the shape of the comparison with TRL's PPOTrainer (the
demo's tiny GPT-2 `zoo:imdb-tiny`, 112 trajectories, 64-token prompts, 48 new tokens): the sampler's rollouts
(through the learner's engine: generation, packing, text) over one plain batched `generate` of the same
prompts and settings with the same model, medians over `--reps` interleaved pairs. The forward passes that
prepare the update and the reward are not collection (TRL times them in its step); they show in
`median_rollout_s` of each algorithm, which is everything before the first update.

`--engine served` also times PPO with the learner's rollouts on `rlgf serve` (started here as a subprocess on
the same machine), with the weights synced before each epoch: `ppo_served` (its epochs and
`median_sync_s`) and `served_over_hf`.
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

import torch  # noqa: E402
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


def time_algorithm(config: str, args: argparse.Namespace, root: Path, extra: tuple[str, ...] = (),
                   callbacks: tuple[Callback, ...] | list[Callback] = ()) -> dict:
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
        *([] if config in ("ppo", "grpo") else
          [f"--data.init_args.guide.init_args.generation.min_new_tokens={args.max_new_tokens}"]), *extra,
    ], run=False)
    cli.trainer.callbacks.extend([timer, *callbacks])
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    epochs, collect = timer.epochs[1:], timer.collect[1:]
    result = {
        "median_epoch_s": statistics.median(epochs),
        "median_rollout_s": statistics.median(collect),
        "median_update_s": statistics.median(e - c for e, c in zip(epochs, collect)),
        "epochs_s": [round(e, 4) for e in epochs],
    }
    return result


@torch.no_grad()
def collection_guard(args: argparse.Namespace) -> dict:
    """The demo learner's rollouts through the sampler against plain `generate` of the same batch (see above)."""
    cli = build_cli(["--config", str(REPO / "configs/demo/ppo.yaml"), "--trainer.logger=false",
                     f"--trainer.accelerator={args.accelerator}", "--data.init_args.metrics=[]",
                     f"--data.init_args.rollouts_per_epoch={args.rollouts}",
                     f"--data.init_args.generation.max_new_tokens={args.max_new_tokens}",
                     f"--data.init_args.generation.min_new_tokens={args.max_new_tokens}"], run=False)
    module, environment = cli.model, cli.datamodule
    module.configure_model()
    environment.setup("fit")
    policy = module.policy.to(cli.trainer.strategy.root_device).eval()
    prompts, references = environment.next_prompts()
    query = policy.encode_prompts(prompts, environment.max_prompt_tokens)
    sampler = module.sampler(environment.generation, environment, module.engine)
    generate, collect = [], []
    for _ in range(args.reps + 1):  # interleaved, so drift in the machine's speed hits both alike
        started = time.perf_counter()
        policy.generate(*query, environment.generation)
        generate.append(time.perf_counter() - started)
        started = time.perf_counter()
        sampler.sample(prompts, references, module.plan, environment.generator)
        collect.append(time.perf_counter() - started)
    return {"median_generate_s": statistics.median(generate[1:]), "median_collection_s": statistics.median(collect[1:]),
            "shape": {"trajectories": len(prompts), "prompt_tokens": int(query[0].shape[1]),
                      "new_tokens": args.max_new_tokens, "model": "zoo:imdb-tiny"}}


def time_served(args: argparse.Namespace, root: Path) -> dict:
    """PPO with its rollouts on `rlgf serve` (a subprocess serving the toy learner), synced every epoch."""
    import re
    import subprocess

    from rlgf_pl.zoo.registry import resolve_model_path

    model = str(resolve_model_path("zoo:toy-gpt2"))
    server = subprocess.Popen([sys.executable, "-m", "rlgf_pl.cli", "serve", model, "--port", "0",
                               "--served-model-name", "learner", "--max-batch-size", "1024"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads())))
    try:
        for line in server.stdout:
            found = re.search(r"at (http://\S+/v1)", line)
            if found:
                break
        else:
            raise RuntimeError("rlgf serve did not start")
        syncs: list[float] = []

        class SyncTimer(Callback):
            def on_train_epoch_end(self, trainer, pl_module) -> None:
                value = trainer.callback_metrics.get("train/engine_sync_s")
                if value is not None:
                    syncs.append(float(value))

        timer = SyncTimer()
        result = time_algorithm("ppo", args, root / "served", (
            "--model.init_args.engine=rlgf_pl.engines.ServedEngine",
            f"--model.init_args.engine.init_args.url={found.group(1)}",
            "--model.init_args.engine.init_args.model=learner"), callbacks=[timer])
        result["median_sync_s"] = statistics.median(syncs[1:] or syncs) if syncs else None
        return result
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=10, help="timed epochs per algorithm (after one warm-up)")
    parser.add_argument("--rollouts", type=int, default=112)
    parser.add_argument("--minibatch", type=int, default=28)
    parser.add_argument("--ppo-epochs", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--root", default="runs/benchmark")
    parser.add_argument("--engine", choices=["hf", "served"], default="hf",
                        help="served: also time PPO with its rollouts on rlgf serve (a subprocess)")
    args = parser.parse_args()
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    results = {name: time_algorithm(config, args, Path(args.root)) for name, config in
               (("ppo", "ppo"), ("ppo_pp", "ppo_pp"), ("aggrevated", "aggrevated"), ("grpo", "grpo"))}
    for name in ("ppo_pp", "aggrevated", "grpo"):
        results[f"{name}_over_ppo"] = results[name]["median_epoch_s"] / results["ppo"]["median_epoch_s"]
    results["collection_guard"] = collection_guard(args)
    results["collection_over_generate"] = (results["collection_guard"]["median_collection_s"] /
                                           results["collection_guard"]["median_generate_s"])
    if args.engine == "served":
        results["ppo_served"] = time_served(args, Path(args.root))
        results["served_over_hf"] = results["ppo_served"]["median_epoch_s"] / results["ppo"]["median_epoch_s"]
    results["setting"] = {k: v for k, v in vars(args).items() if k != "root"} | {"threads": torch.get_num_threads()}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
