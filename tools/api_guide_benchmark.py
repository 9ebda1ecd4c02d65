"""Time a roll-out through a guide behind an API against the same guide loaded locally.

    python tools/api_guide_benchmark.py [--prompts 112] [--concurrency 8] [--reps 3]

Starts `rlgf serve` over the quickstart's guide (zoo:imdb-tiny-guide) on a free port, then samples the same
prompts with the quickstart's learner rolling in and the guide rolling out (AggreVaTeD's plan, beta = 1),
once through a local `Guide` and once through an `APIGuide` at the given concurrency. Prints one JSON
object with the median seconds of each. Server and client share this machine's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from rlgf_pl.data.tasks import IMDBTask  # noqa: E402
from rlgf_pl.policies import APIGuide, GenerationSettings, Guide, load_policy  # noqa: E402
from rlgf_pl.rollout.plan import Plan  # noqa: E402
from rlgf_pl.rollout.sampler import RolloutSampler  # noqa: E402
from rlgf_pl.zoo.registry import resolve_model_path  # noqa: E402

GUIDE, LEARNER = "zoo:imdb-tiny-guide", "zoo:imdb-tiny"


def start_server(model: str, max_batch_size: int) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "rlgf_pl.serving", model, "--port", "0", "--served-model-name", "guide",
               "--max-batch-size", str(max_batch_size)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    for line in process.stdout:
        if line.startswith("rlgf serve:"):
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return process, re.search(r"http://\S+", line).group(0)
    raise RuntimeError("rlgf serve did not start")


def timed(sampler: RolloutSampler, prompts: list[str], plan: Plan, reps: int) -> list[float]:
    times = []
    for rep in range(reps + 1):  # the first is a warm-up
        start = time.perf_counter()
        sampler.sample(prompts, [[]] * len(prompts), plan, torch.Generator().manual_seed(rep))
        times.append(time.perf_counter() - start)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=112)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))  # the server gets the other half
    for name in (GUIDE, LEARNER):
        resolve_model_path(name)
    prompts = list(IMDBTask(source="offline").load("train")["prompt"][: args.prompts])
    learner = load_policy(LEARNER)
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, min_new_tokens=0, top_k=50)
    plan = Plan(rollin="learner", rollout="guide", beta=1.0)
    local = Guide(GUIDE, generation=GenerationSettings(top_k=50, top_p=0.92)).setup("cpu")
    process, url = start_server(GUIDE, max_batch_size=args.prompts)
    try:
        remote = APIGuide(url, "guide", top_p=0.92, extra_body={"top_k": 50}, max_concurrency=args.concurrency)
        remote.setup("cpu")
        results = {name: timed(RolloutSampler(learner, settings, guide, 64), prompts, plan, args.reps)
                   for name, guide in (("local_guide_s", local), ("api_guide_s", remote))}
    finally:
        process.kill()
    print(json.dumps({"prompts": len(prompts), "concurrency": args.concurrency, "max_new_tokens": args.max_new_tokens,
                      **{name: round(statistics.median(times), 2) for name, times in results.items()},
                      "runs": {name: [round(t, 2) for t in times] for name, times in results.items()}}, indent=1))


if __name__ == "__main__":
    main()
