"""Rollout engines: the served engine against `rlgf serve` (greedy rollouts equal the in-process engine's before
and after an update, full and LoRA weight sync, stale rollouts refused, a failed sync stops the run and keeps
the last checkpoint), and the sampler writing the learner's tokens only through its engine."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import torch
from conftest import fast_fit_args
from safetensors.torch import load_file

from rlgf_pl.cli import main
from rlgf_pl.engines import HFEngine, ServedEngine
from rlgf_pl.engines.weights import ADAPTER_FILE, write_adapters
from rlgf_pl.errors import ConfigError, StaleWeightsError, WeightSyncError
from rlgf_pl.policies import load_policy
from rlgf_pl.policies.generation import GenerationSettings
from rlgf_pl.policies.lora import LoraSettings, add_adapters
from rlgf_pl.rollout.plan import Plan
from rlgf_pl.rollout.sampler import RolloutSampler, seeded_generation
from rlgf_pl.serving import CompletionEngine, CompletionServer

PROMPTS = ["the movie was", "i really liked the plot and", "good"]
GREEDY = GenerationSettings(max_new_tokens=8, do_sample=False)


def start_server(model_dir: Path, name: str = "learner") -> CompletionServer:
    policy = load_policy(str(model_dir)).eval().requires_grad_(False)
    server = CompletionServer(("127.0.0.1", 0), CompletionEngine(policy, 64), name)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def server(toy_model_dir):
    server = start_server(toy_model_dir)
    yield server
    server.shutdown()
    server.server_close()


def url(server: CompletionServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/v1"


def rollouts(policy, engine, prefix_tokens: int = 0, settings: GenerationSettings = GREEDY):
    """Greedy continuations of PROMPTS through `engine`, after the first `prefix_tokens` of a greedy roll-in."""
    query = policy.encode_prompts(PROMPTS, 16)
    empty = torch.zeros((len(PROMPTS), 0), dtype=torch.long)
    if not prefix_tokens:
        return engine.generate(policy, *query, settings, empty, empty)
    prefix, _ = policy.generate(*query, GenerationSettings(max_new_tokens=prefix_tokens, min_new_tokens=prefix_tokens,
                                                           do_sample=False))
    return engine.generate(policy, *query, settings, prefix, torch.ones_like(prefix))


def nudge(policy, seed: int = 1) -> None:
    """An 'update': every trainable weight moves, so greedy rollouts change."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in policy.model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.5)


def test_served_greedy_rollouts_equal_the_hf_engine_before_and_after_an_update(server, toy_model_dir, tmp_path):
    learner = load_policy(str(toy_model_dir)).eval()
    served = ServedEngine(url(server), "learner", sync_dir=str(tmp_path / "sync"))
    served.setup(learner)
    for version in (0, 1):
        if version:
            nudge(learner)
        assert served.sync(learner, version) > 0
        for prefix in (0, 3):
            expected = rollouts(learner, HFEngine(), prefix)
            got = rollouts(learner, served, prefix)
            assert torch.equal(got[1], expected[1]) and torch.equal(got[0], expected[0])
        if version == 0:
            before = got
    assert not torch.equal(before[0], got[0])  # the update changed what the server writes
    assert sorted(p.name for p in served._folder.parent.iterdir()) == ["v1"]  # the old version's files are gone
    served.close()


def test_sampled_served_rollouts_repeat_under_a_seed_and_keep_min_tokens(server, toy_model_dir):
    learner = load_policy(str(toy_model_dir)).eval()
    served = ServedEngine(url(server), "learner", seed=True)
    served.sync(learner, 0)
    settings = GenerationSettings(max_new_tokens=6, min_new_tokens=6, top_k=5)
    draws = []
    for _ in range(2):
        with seeded_generation(7, torch.device("cpu")):
            draws.append(rollouts(learner, served, settings=settings))
    assert torch.equal(draws[0][0], draws[1][0]) and draws[0][1].tolist() == [6, 6, 6]
    served.close()


def test_a_lora_sync_sends_only_adapter_tensors_and_the_server_uses_them(server, toy_model_dir, tmp_path):
    learner = load_policy(str(toy_model_dir)).eval()
    add_adapters(learner.model, LoraSettings(r=4, target_modules=["c_attn"]))
    nudge(learner)  # the adapters' B is zero at start: move it so the adapters change what the model writes
    folder = write_adapters(learner.model, tmp_path / "adapters")
    saved = load_file(str(folder / ADAPTER_FILE))
    trained = [name for name, p in learner.model.named_parameters() if p.requires_grad]
    assert len(saved) == len(trained) and all("lora_" in name for name in saved)
    assert sum(t.numel() for t in saved.values()) < sum(p.numel() for p in learner.model.parameters()) / 4
    served = ServedEngine(url(server), "learner", sync_dir=str(tmp_path / "sync"))
    served.sync(learner, 5)
    assert served.served_name == "learner-v5"
    assert torch.equal(rollouts(learner, served)[0], rollouts(learner, HFEngine())[0])
    nudge(learner, seed=2)
    served.sync(learner, 6)
    assert server.engine.served_adapters() == ("learner-v6",)  # the old adapter was unloaded
    assert torch.equal(rollouts(learner, served)[0], rollouts(learner, HFEngine())[0])
    served.close()


def test_a_rollout_from_other_weights_is_refused(server, toy_model_dir):
    learner = load_policy(str(toy_model_dir)).eval()
    served = ServedEngine(url(server), "learner")
    served.sync(learner, 3)
    server.engine.load_weights(served._folder, "2")  # someone else's update: the server says version 2
    with pytest.raises(StaleWeightsError, match="version 2.*version 3"):
        rollouts(learner, served)
    served.close()


def test_the_weight_version_is_read_where_sglang_reports_it():
    """SGLang's completions carry `metadata: {weight_version}` (so does rlgf serve's); an answer without it
    cannot be checked, so it is refused."""
    served = ServedEngine("http://unused/v1", "learner")
    served.version = 7
    served._check_version({"metadata": {"weight_version": "7"}})
    served._check_version({"weight_version": 7})  # a server that reports it at the top level
    with pytest.raises(StaleWeightsError, match="version 6.*version 7"):
        served._check_version({"metadata": {"weight_version": "6"}})
    with pytest.raises(StaleWeightsError, match="does not report"):
        served._check_version({"metadata": {}})


def test_sync_to_a_server_that_is_gone_or_refuses_is_a_named_error(server, toy_model_dir, other_toy_model_dir):
    learner = load_policy(str(toy_model_dir)).eval()
    with pytest.raises(ConfigError, match="serves \\['learner'\\], not 'policy'"):
        ServedEngine(url(server), "policy").setup(learner)
    gone = ServedEngine("http://127.0.0.1:9/v1", "learner", timeout=5)
    with pytest.raises(WeightSyncError, match="could not be reached.*rlgf serve"):
        gone.sync(learner, 0)
    seq2seq = type("Seq2Seq", (), {"kind": "seq2seq"})()
    with pytest.raises(ConfigError, match="causal LMs"):
        ServedEngine(url(server), "learner").setup(seq2seq)


def test_the_sampler_writes_the_learner_only_through_its_engine(toy_model_dir, monkeypatch):
    learner = load_policy(str(toy_model_dir)).eval()

    def refuse(*args, **kwargs):
        raise AssertionError("the sampler called the learner's generate directly")

    calls = []

    class Recording(HFEngine):
        def generate(self, policy, *args):
            calls.append(policy)
            return type(policy).generate(policy, *args)  # the class's method: the patched attribute refuses

    sampler = RolloutSampler(learner, GenerationSettings(max_new_tokens=5), engine=Recording())
    monkeypatch.setattr(learner, "generate", refuse)
    rollout = sampler.sample(PROMPTS, [[]] * 3, Plan(), torch.Generator().manual_seed(0))
    assert calls == [learner] and rollout.response_mask.sum() > 0


def test_fit_with_the_served_engine_trains_and_a_failed_sync_stops_with_the_checkpoint_kept(toy_model_dir, tmp_path):
    server = start_server(toy_model_dir)
    engine = (f"--model.init_args.engine=rlgf_pl.engines.ServedEngine "
              f"--model.init_args.engine.init_args.url={url(server)} "
              f"--model.init_args.engine.init_args.sync_dir={tmp_path / 'sync'}").split()
    try:
        main(fast_fit_args(tmp_path / "ok", toy_model_dir, epochs=2, extra=engine))
        assert server.engine.weight_version is not None and int(server.engine.weight_version) > 0
        checkpoint = next((tmp_path / "ok").rglob("last.ckpt"))
        before = checkpoint.read_bytes()

        class Refusing(type(server.engine)):
            def load_weights(self, folder, version):
                raise WeightSyncError("disk full")

        server.engine.__class__ = Refusing
        with pytest.raises(WeightSyncError, match="version .*disk full"):
            main([*fast_fit_args(tmp_path / "ok", toy_model_dir, epochs=3, extra=engine),
                  f"--ckpt_path={checkpoint}"])
        assert checkpoint.read_bytes() == before
    finally:
        server.shutdown()
        server.server_close()



@pytest.mark.slow
@pytest.mark.parametrize("seed", [True, False])
def test_a_seeded_served_run_resumes_exactly(toy_model_dir, tmp_path, seed):
    """Against `rlgf serve` in a process of its own, as a real server runs: with `seed: true` every row's draw is
    fixed by the run's stream, so the resumed run equals the straight one; without, the server's own stream
    moved on between the runs and the resumed run differs."""
    import re
    import subprocess
    import sys

    server = subprocess.Popen([sys.executable, "-m", "rlgf_pl.cli", "serve", str(toy_model_dir), "--port", "0",
                               "--served-model-name", "learner"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        address = next(found.group(1) for line in server.stdout if (found := re.search(r"at (http://\S+/v1)", line)))
        engine = (f"--model.init_args.engine=rlgf_pl.engines.ServedEngine --model.init_args.engine.init_args.url="
                  f"{address} --model.init_args.engine.init_args.seed={str(seed).lower()}").split()
        stop = ["--trainer.callbacks+=helpers.StopAfterEpochs", "--trainer.callbacks.init_args.epochs=1"]
        main(fast_fit_args(tmp_path / "straight", toy_model_dir, epochs=2, extra=engine))
        main(fast_fit_args(tmp_path / "interrupted", toy_model_dir, epochs=2, extra=[*engine, *stop]))
        (stopped,) = (tmp_path / "interrupted").rglob("last.ckpt")
        main([*fast_fit_args(tmp_path / "resumed", toy_model_dir, epochs=2, extra=engine), f"--ckpt_path={stopped}"])
    finally:
        server.terminate()
        server.wait()
    (straight,), (resumed,) = ((tmp_path / run).rglob("last.ckpt") for run in ("straight", "resumed"))
    first, second, start = (torch.load(path, weights_only=False) for path in (straight, resumed, stopped))
    assert first["global_step"] == second["global_step"] > start["global_step"] > 0
    assert any(not torch.equal(start["state_dict"][k], v) for k, v in first["state_dict"].items())
    same = all(torch.equal(second["state_dict"][key], value) for key, value in first["state_dict"].items())
    assert same == seed

def test_a_request_for_an_adapter_replaced_before_its_turn_is_refused(server, toy_model_dir, tmp_path):
    from rlgf_pl.serving import RequestError, parse_request

    learner = load_policy(str(toy_model_dir)).eval()
    add_adapters(learner.model, LoraSettings(r=4, target_modules=["c_attn"]))
    engine = server.engine
    engine.load_adapter("learner-v1", write_adapters(learner.model, tmp_path / "v1"))
    request = parse_request({"prompt": "the movie was", "model": "learner-v1"}, False, "learner",
                            engine.served_adapters())
    jobs = engine.jobs_for(request)
    engine.load_adapter("learner-v2", write_adapters(learner.model, tmp_path / "v2"))
    with pytest.raises(RequestError, match="'learner-v1' was replaced by 'learner-v2'"):
        engine.generate(jobs)


@pytest.mark.parametrize("tied", [True, False])
def test_full_weights_are_written_under_the_checkpoint_names_serving_engines_load(tmp_path, tied):
    """A tied embedding is written once under the input embedding's name, as `save_pretrained` writes it: vLLM and
    SGLang skip `lm_head.weight` of a tied model, so a file with only the head's name would leave them stale."""
    from safetensors import safe_open
    from transformers import GPT2Config, GPT2LMHeadModel

    from rlgf_pl.engines.weights import FULL_FILE, load_full_weights, write_full_weights

    config = GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=40, tie_word_embeddings=tied)
    model = GPT2LMHeadModel(config)
    nudge(type("Trained", (), {"model": model})())
    write_full_weights(model, tmp_path / "sync")
    model.save_pretrained(tmp_path / "checkpoint")
    names = {}
    for folder in ("sync", "checkpoint"):
        with safe_open(str(tmp_path / folder / FULL_FILE), "pt") as file:
            names[folder] = set(file.keys())
    assert names["sync"] == names["checkpoint"]
    assert "transformer.wte.weight" in names["sync"] and ("lm_head.weight" in names["sync"]) == (not tied)
    served = GPT2LMHeadModel(config)
    load_full_weights(served, tmp_path / "sync")
    for (name, mine), theirs in zip(model.state_dict().items(), served.state_dict().values()):
        assert torch.equal(mine, theirs), name


def test_lora_calls_fall_back_to_the_servers_root_where_sglang_serves_them(toy_model_dir, tmp_path):
    import httpx

    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(404 if request.url.path.startswith("/v1/") else 200, json={"success": True})

    learner = load_policy(str(toy_model_dir)).eval()
    add_adapters(learner.model, LoraSettings(r=2, target_modules=["c_attn"]))
    served = ServedEngine("http://sglang:30000/v1", "learner", sync_dir=str(tmp_path))
    served._http = httpx.Client(transport=httpx.MockTransport(handler))
    served.sync(learner, 1)
    served.sync(learner, 2)
    assert calls == ["/v1/load_lora_adapter", "/load_lora_adapter", "/v1/load_lora_adapter", "/load_lora_adapter",
                     "/v1/unload_lora_adapter", "/unload_lora_adapter"]
    assert served.served_name == "learner-v2"


def test_runs_side_by_side_on_one_sync_dir_never_share_a_weights_folder(server, toy_model_dir, tmp_path):
    first, second = (load_policy(str(toy_model_dir)).eval() for _ in range(2))
    nudge(second)
    engines = [ServedEngine(url(server), "learner", sync_dir=str(tmp_path / "shared")) for _ in range(2)]
    for version in (1, 2):  # both runs at the same step: the same version number
        for engine, learner in zip(engines, (first, second)):
            engine.sync(learner, version)
    folders = [engine._folder for engine in engines]
    assert folders[0] != folders[1] and all(folder.name == "v2" for folder in folders)
    for folder, learner in zip(folders, (first, second)):
        written = load_file(str(folder / "model.safetensors"))
        assert torch.equal(written["transformer.h.0.attn.c_attn.weight"],
                           learner.model.state_dict()["transformer.h.0.attn.c_attn.weight"])
    assert sorted(path.name for path in folders[0].parent.iterdir()) == ["v2"]  # v1 went once v2 was loaded
    engines[0].close()
    assert not folders[0].exists() and folders[1].exists()  # a run removes its own folder, never a peer's
    engines[1].close()
    assert list((tmp_path / "shared").iterdir()) == []


def vllm_like_server(requests: list[dict]):
    """A mock completions server with vLLM's seed semantics: every prompt of a request draws from the request's
    one seed (the same tokens for every prompt); a request without a seed draws from a shared stream."""
    import json
    import random

    import httpx

    shared = random.Random(0)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("update_weights_from_disk"):
            return httpx.Response(200, json={"success": True})
        body = json.loads(request.content)
        requests.append(body)
        choices = []
        for index, _ in enumerate(body["prompt"]):
            draw = random.Random(body["seed"]) if "seed" in body else shared
            choices.append({"index": index, "finish_reason": "length",
                            "token_ids": [draw.randrange(5, 40) for _ in range(body["max_tokens"])]})
        return httpx.Response(200, json={"model": body["model"], "choices": choices, "metadata": {"weight_version": "1"}})

    return httpx.Client(transport=httpx.MockTransport(handler))


@pytest.mark.parametrize("seed", [False, True])
def test_sampled_rows_are_independent_draws_on_a_server_that_gives_a_request_one_seed(toy_model_dir, tmp_path, seed):
    learner = load_policy(str(toy_model_dir)).eval()
    requests: list[dict] = []
    served = ServedEngine("http://vllm:8000/v1", "learner", sync_dir=str(tmp_path), seed=seed)
    served._http = vllm_like_server(requests)
    served.sync(learner, 1)
    query = learner.encode_prompts(["good"] * 4, 16)  # one prompt's group, as GRPO sends it
    empty = torch.zeros((4, 0), dtype=torch.long)
    settings = GenerationSettings(max_new_tokens=6, top_k=5)
    draws = []
    for _ in range(2):
        with seeded_generation(7, torch.device("cpu")):
            draws.append(served.generate(learner, *query, settings, empty, empty)[0])
    assert len({tuple(row) for row in draws[0].tolist()}) == 4  # four different continuations of one prompt
    if seed:  # a request per row, each under a seed of its own from the run's stream: the draws repeat
        assert len(requests) == 8 and all(len(body["prompt"]) == 1 for body in requests)
        assert len({body["seed"] for body in requests[:4]}) == 4 and torch.equal(draws[0], draws[1])
    else:  # one request, no seed: the server's own stream
        assert len(requests) == 2 and all("seed" not in body for body in requests)
    served.close()


@pytest.mark.parametrize(("answer", "message"), [
    ({"choices": [{"index": 0, "token_ids": [3, 10**6], "finish_reason": "length"}]}, "outside the learner's vocabulary"),
    ("<html>busy</html>", "not JSON"),
])
def test_an_answer_the_learner_cannot_use_is_a_named_error(toy_model_dir, tmp_path, answer, message):
    """Another model behind the served name (its own vocabulary), or a proxy's page: named, never an index error
    deep in the update."""
    import httpx

    from rlgf_pl.errors import RolloutServerError

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("update_weights_from_disk"):
            return httpx.Response(200, json={"success": True})
        if isinstance(answer, str):
            return httpx.Response(200, text=answer)
        return httpx.Response(200, json={**answer, "model": "learner", "metadata": {"weight_version": "1"}})

    learner = load_policy(str(toy_model_dir)).eval()
    served = ServedEngine("http://vllm:8000/v1", "learner", sync_dir=str(tmp_path))
    served._http = httpx.Client(transport=httpx.MockTransport(handler))
    served.sync(learner, 1)
    query = learner.encode_prompts(["good"], 16)
    empty = torch.zeros((1, 0), dtype=torch.long)
    with pytest.raises(RolloutServerError, match=message):
        served.generate(learner, *query, GREEDY, empty, empty)
    served.close()
