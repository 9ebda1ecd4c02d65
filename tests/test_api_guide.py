"""The API guide against a real OpenAI-compatible server (`rlgf serve`) in a subprocess, over HTTP."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from conftest import REPO, fast_fit_args
from helpers import FaultProxy

from rlgf_pl.cli import main
from rlgf_pl.data.tasks import ToyTask
from rlgf_pl.errors import GuideResponseError, GuideServerError
from rlgf_pl.policies import APIGuide, GenerationSettings, Guide, load_policy
from rlgf_pl.rollout.plan import GUIDE_ONLY, Plan
from rlgf_pl.rollout.sampler import RolloutSampler
from rlgf_pl.utils.tensorboard import per_epoch, read_scalars

pytestmark = pytest.mark.slow


def start_server(model_dir: Path, *extra: str, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """`rlgf serve MODEL --port 0` in a subprocess; returns it and its base URL once it listens."""
    command = [str(Path(sys.executable).parent / "rlgf"), "serve", str(model_dir), "--port", "0",
               "--served-model-name", "guide", *extra]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("rlgf serve:"):
            threading.Thread(target=process.stdout.read, daemon=True).start()  # keep the pipe drained
            return process, re.search(r"http://\S+", line).group(0)
    raise RuntimeError("rlgf serve did not start:\n" + "".join(lines)[-2000:])


@pytest.fixture(scope="module")
def guide_server(toy_model_dir_guide):
    process, url = start_server(toy_model_dir_guide)
    yield url
    process.kill()


def _random_gpt2_without_specials(directory: Path, seed: int) -> Path:
    """A random toy GPT-2 that writes no special token but its end token (text drops the others, so no text
    handoff can keep them; a trained LM does not write them)."""
    from transformers import GenerationConfig

    from rlgf_pl.zoo.toy import build_toy_gpt2

    build_toy_gpt2(directory, seed=seed)
    config = GenerationConfig.from_pretrained(directory)
    tokenizer = load_policy(str(directory)).tokenizer
    config.suppress_tokens = [i for i in tokenizer.all_special_ids if i != tokenizer.eos_token_id]
    config.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def random_models(tmp_path_factory) -> tuple[Path, Path]:
    """A random learner and a random guide: the guide's greedy text differs from prompt to prompt."""
    return (_random_gpt2_without_specials(tmp_path_factory.mktemp("random-learner"), 0),
            _random_gpt2_without_specials(tmp_path_factory.mktemp("random-guide"), 1))


@pytest.fixture(scope="module")
def random_guide_server(random_models):
    process, url = start_server(random_models[1])
    yield url
    process.kill()


def api_guide_args(url: str, *extra: str) -> list[str]:
    return ["--data.init_args.guide=rlgf_pl.policies.APIGuide", f"--data.init_args.guide.init_args.base_url={url}",
            "--data.init_args.guide.init_args.model=guide", *extra]


def _last_checkpoint(root: Path) -> dict:
    (path,) = root.rglob("last.ckpt")
    checkpoint = torch.load(path, weights_only=True)
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values() if v.is_floating_point())
    return checkpoint


@pytest.mark.parametrize("config", ["ppo_pp", "aggrevated"])
def test_guided_algorithms_fit_through_the_api_guide(tmp_path, toy_model_dir, guide_server, config):
    main(fast_fit_args(tmp_path, toy_model_dir, epochs=2, config=config, extra=api_guide_args(guide_server)))
    logs = read_scalars(tmp_path)
    assert all(fraction > 0.05 for fraction in per_epoch(logs, "train/guide_token_fraction"))
    state = _last_checkpoint(tmp_path)["state_dict"]
    if config == "aggrevated":  # the guide critic trained on the learner-tokenized guide text (its head starts at 0)
        assert state["guide_critic.head.weight"].abs().sum() > 0


@pytest.mark.parametrize("plan", [GUIDE_ONLY, Plan(rollin="learner", rollout="guide", beta=1.0)],
                         ids=["guide-only", "learner-roll-in-then-guide"])
def test_greedy_api_text_equals_the_local_guides(random_models, random_guide_server, plan):
    learner = load_policy(str(random_models[0]))
    task = ToyTask({"validation": 24})
    prompts = list(task.load("validation")["prompt"])
    settings = GenerationSettings(max_new_tokens=12, top_k=0)
    local = Guide(str(random_models[1]), generation=GenerationSettings(do_sample=False)).setup("cpu")
    remote = APIGuide(random_guide_server, "guide", temperature=0.0).setup("cpu")
    rollouts = [RolloutSampler(learner, settings, guide, 16).sample(prompts, [[]] * len(prompts), plan,
                                                                     torch.Generator().manual_seed(5))
                for guide in (local, remote)]
    assert rollouts[0].continuations == rollouts[1].continuations
    assert len(set(rollouts[1].continuations)) > len(prompts) // 2  # the guide's text depends on the prompt
    assert torch.equal(rollouts[0].response_ids, rollouts[1].response_ids)
    assert torch.equal(rollouts[0].guide_mask, rollouts[1].guide_mask) and rollouts[1].guide_mask.any()


def test_a_server_down_at_start_is_named_before_training(tmp_path, toy_model_dir):
    import socket

    with socket.socket() as probe:  # a port with nothing behind it
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    with pytest.raises(GuideServerError, match=re.escape(f"server at {url} cannot be reached")):
        main(fast_fit_args(tmp_path, toy_model_dir, config="ppo_pp", extra=api_guide_args(url)))
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("version_*"))


def test_a_server_killed_mid_run_stops_with_a_named_error_and_keeps_the_checkpoint(tmp_path, toy_model_dir,
                                                                                   toy_model_dir_guide):
    process, url = start_server(toy_model_dir_guide)
    try:
        args = fast_fit_args(tmp_path, toy_model_dir, epochs=3, config="ppo_pp", extra=[
            *api_guide_args(url, "--data.init_args.guide.init_args.max_retries=2",
                            "--data.init_args.guide.init_args.backoff=0.01"),
            "--trainer.callbacks+=helpers.KillProcessAt", f"--trainer.callbacks.pid={process.pid}"])
        with pytest.raises(GuideServerError, match=r"failed 3 times in a row; last: ConnectError"):
            main(args)
    finally:
        process.kill()
    assert _last_checkpoint(tmp_path)["epoch"] == 0


def test_rate_limits_are_retried(tmp_path, toy_model_dir, guide_server):
    proxy = FaultProxy(guide_server, fault="429", fail_next=3)
    try:
        main(fast_fit_args(tmp_path, toy_model_dir, epochs=1, config="ppo_pp", extra=api_guide_args(
            proxy.url, "--data.init_args.guide.init_args.backoff=0.01")))
    finally:
        proxy.close()
    assert proxy.faults == 3
    assert per_epoch(read_scalars(tmp_path), "train/guide_token_fraction")[0] > 0.05


@pytest.mark.parametrize("fault, error, message", [
    ("429", GuideServerError, r"failed 3 times in a row; last: HTTP 429"),
    ("garbage", GuideResponseError, r"not an OpenAI completion response \(not JSON\): '<html>oops, a proxy error"),
])
def test_persistent_faults_stop_with_a_named_error_and_keep_the_checkpoint(tmp_path, toy_model_dir, guide_server,
                                                                           fault, error, message):
    proxy = FaultProxy(guide_server)
    try:
        args = fast_fit_args(tmp_path, toy_model_dir, epochs=3, config="ppo_pp", extra=[
            *api_guide_args(proxy.url, "--data.init_args.guide.init_args.max_retries=2",
                            "--data.init_args.guide.init_args.backoff=0.01"),
            "--trainer.callbacks+=helpers.FaultsFrom", f"--trainer.callbacks.fault={fault}"])
        with pytest.raises(error, match=message):
            main(args)
    finally:
        proxy.close()
    assert _last_checkpoint(tmp_path)["epoch"] == 0


def test_the_api_key_reaches_the_server_and_nothing_else(tmp_path, toy_model_dir, toy_model_dir_guide, monkeypatch,
                                                         capfd):
    secret = "sk-rlgf-test-5b0f1e7d9c"
    process, url = start_server(toy_model_dir_guide, "--api-key-env", "GUIDE_SERVER_KEY",
                                env={"GUIDE_SERVER_KEY": secret})
    try:
        key_args = api_guide_args(url, "--data.init_args.guide.init_args.api_key_env=RLGF_GUIDE_KEY")
        with pytest.raises(GuideServerError, match=r"refused the API key .*environment variable RLGF_GUIDE_KEY"):
            main(fast_fit_args(tmp_path / "no-key", toy_model_dir, config="ppo_pp", extra=key_args))
        monkeypatch.setenv("RLGF_GUIDE_KEY", secret)
        main(fast_fit_args(tmp_path, toy_model_dir, epochs=1, config="ppo_pp", extra=key_args))
        (checkpoint,) = tmp_path.rglob("last.ckpt")
        main(["test", "--config", str(REPO / "configs/toy/ppo_pp.yaml"), f"--model.init_args.model={toy_model_dir}",
              f"--trainer.default_root_dir={tmp_path / 'test'}", "--trainer.enable_progress_bar=false",
              "--data.init_args.evaluate_guide=true", *key_args, f"--ckpt_path={checkpoint}"])
    finally:
        process.kill()
    assert list((tmp_path / "test").rglob("test_results.json"))
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert written and not [path for path in written if secret.encode() in path.read_bytes()]
    output = capfd.readouterr()
    assert secret not in output.out and secret not in output.err
