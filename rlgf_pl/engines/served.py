"""The learner's rollouts from an OpenAI-compatible server that receives the learner's weights after each update.

The protocol, the one serving engines expose for RL weight sync over HTTP:

- full weights: the trainer writes the state dict to a folder the server can read and posts
  `/update_weights_from_disk {"model_path", "weight_version"}` (SGLang's route, and `rlgf serve`'s);
- LoRA: the trainer writes the adapters alone (peft's format) and posts `/v1/load_lora_adapter {"lora_name",
  "lora_path"}` (vLLM's runtime LoRA route; SGLang serves it at the root, `/load_lora_adapter`, where the engine
  turns on a 404; `rlgf serve` at both), under a name that carries the version; the previous adapter is
  unloaded.

Rollouts go to `/v1/completions` as token-id prompts (the query and its prefix of response tokens) with
`return_token_ids` (vLLM's extension), so the tokens come back exactly, never re-tokenized text. A response
generated with other weights than the learner's current ones is refused (StaleWeightsError): the LoRA
adapter's name, or the full weights' `weight_version` (in the answer's `metadata`, where SGLang reports
it), must be the version just sent. The server's log-probs
are never used: the update recomputes them with the learner.

Sampled rollouts go as one request without a seed, so every row is an independent draw: vLLM (and SGLang) give
every prompt of a request the same seed, so a seeded batch would draw the same noise for every row, and a
group's identical prompts (GRPO, a shared roll-in) the same continuation. With `seed: true` each row goes as a
request of its own, under its own seed from the run's random stream, sent concurrently: reproducible on a
server that honours per-request seeds.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import torch
from torch import Tensor

from rlgf_pl.engines.base import RolloutEngine
from rlgf_pl.engines.weights import write_adapters, write_full_weights
from rlgf_pl.errors import ConfigError, RolloutServerError, StaleWeightsError, WeightSyncError
from rlgf_pl.policies.lora import has_adapters

if TYPE_CHECKING:  # annotations only: the policies import the engines (a TokenWriter writes through one)
    from rlgf_pl.policies.base import Policy
    from rlgf_pl.policies.generation import GenerationSettings


class ServedEngine(RolloutEngine):
    """Generates the learner's rollouts on a server (vLLM, SGLang, `rlgf serve`) kept on the learner's weights.

    Args:
        url: The server's OpenAI API root, e.g. http://127.0.0.1:8000/v1.
        model: The name the server serves the learner's base model under (its `--served-model-name`).
        sync_dir: A folder both the trainer and the server can read. Each run writes in a folder of its own
            inside it (`rlgf-weights-*`, so runs side by side never load each other's weights), one version at
            a time (the previous one is deleted once the server has the new one), and removes it at the end;
            null: the machine's temporary folder (a server on the same machine).
        api_key_env: The environment variable holding the server's API key (unset or empty: none is sent).
        timeout: Seconds for one request (a batch of rollouts, or a weight update).
        seed: Sample each row in a request of its own under a seed drawn from the run's random stream, so
            sampled rollouts repeat on a server that honours per-request seeds (vLLM, rlgf serve). Off: one
            request per batch, no seed (independent draws, not reproducible).
        max_concurrency: Requests in flight at once with `seed` on.
    """

    name = "served"

    def __init__(self, url: str = "http://127.0.0.1:8000/v1", model: str = "learner", sync_dir: str | None = None,
                 api_key_env: str | None = None, timeout: float = 600.0, seed: bool = False,
                 max_concurrency: int = 64) -> None:
        if max_concurrency < 1 or timeout <= 0:
            raise ConfigError(f"ServedEngine needs max_concurrency >= 1 and timeout > 0; got {max_concurrency} and "
                              f"{timeout}.")
        self.url = url.rstrip("/")
        self.root = self.url.removesuffix("/v1")
        self.model = model
        self.sync_dir = Path(sync_dir) if sync_dir else None
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.seed = seed
        self.max_concurrency = max_concurrency
        self.version: int | None = None
        self.served_name = model
        self._run_dir: Path | None = None  # this run's folder inside sync_dir
        self._folder: Path | None = None  # the version the server has now
        self._http: httpx.Client | None = None
        self._pool: ThreadPoolExecutor | None = None

    # ---- connection --------------------------------------------------------------------------------
    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
            self._http = httpx.Client(timeout=self.timeout, headers={"Authorization": f"Bearer {key}"} if key else {},
                                      limits=httpx.Limits(max_connections=self.max_concurrency))
        return self._http

    def _post(self, url: str, payload: dict, what: str, error: type[Exception]) -> httpx.Response:
        try:
            response = self.http.post(url, json=payload)
        except httpx.HTTPError as failure:
            raise error(f"{what}: the rollout server at {url} could not be reached ({type(failure).__name__}: "
                        f"{failure}). Start it first (README, 'Scale': rlgf serve MODEL --served-model-name "
                        f"{self.model}) or fix model.init_args.engine.init_args.url.") from failure
        if response.status_code != 200:
            raise error(f"{what}: {url} answered {response.status_code}: {response.text[:300]}")
        return response

    def _post_lora(self, route: str, payload: dict, what: str) -> httpx.Response:
        """A runtime-LoRA call: at `/v1/<route>` (vLLM's place), or at the server's root where that is not found
        (SGLang's place)."""
        try:
            response = self.http.post(f"{self.url}/{route}", json=payload)
        except httpx.HTTPError:
            response = None
        if response is not None and response.status_code == 200:
            return response
        if response is None or response.status_code == 404:
            return self._post(f"{self.root}/{route}", payload, what, WeightSyncError)
        raise WeightSyncError(f"{what}: {self.url}/{route} answered {response.status_code}: {response.text[:300]}")

    def setup(self, policy: Policy) -> None:
        if policy.kind != "causal":
            raise ConfigError(f"The served engine writes causal LMs' rollouts (a token-id prompt continued); the "
                              f"learner is a {policy.kind} model. Use model.init_args.engine: "
                              "rlgf_pl.engines.HFEngine for it.")
        try:
            listed = self.http.get(f"{self.url}/models")
        except httpx.HTTPError as failure:
            raise RolloutServerError(f"The rollout server at {self.url} could not be reached ({failure}). Start it "
                                     f"first: rlgf serve MODEL --served-model-name {self.model} (README, 'Scale').") from failure
        if listed.status_code != 200:
            raise RolloutServerError(f"The rollout server at {self.url} answered {listed.status_code} to /models: "
                                     f"{listed.text[:300]} (an API key: model.init_args.engine.init_args.api_key_env).")
        names = [entry.get("id") for entry in listed.json().get("data", [])]
        if self.model not in names:
            raise ConfigError(f"The rollout server at {self.url} serves {names}, not {self.model!r}: set "
                              "model.init_args.engine.init_args.model to the learner's served name.")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = self._folder = None

    # ---- weights -----------------------------------------------------------------------------------
    def sync(self, policy: Policy, version: int, send: bool = True) -> float:
        """Send the learner's weights (its adapters alone under LoRA) when `version` moved; the seconds it took.
        With `send=False` (a rank other than 0) only expect `version` from now on."""
        if version == self.version:
            return 0.0
        if not send:
            self.version = version
            self.served_name = f"{self.model}-v{version}" if has_adapters(policy.model) else self.model
            return 0.0
        started = time.perf_counter()
        if self._run_dir is None:
            if self.sync_dir is not None:
                self.sync_dir.mkdir(parents=True, exist_ok=True)
            self._run_dir = Path(tempfile.mkdtemp(prefix="rlgf-weights-", dir=self.sync_dir))
        folder = self._run_dir / f"v{version}"
        shutil.rmtree(folder, ignore_errors=True)
        what = f"Weight sync of version {version}"
        if has_adapters(policy.model):
            write_adapters(policy.model, folder)
            name = f"{self.model}-v{version}"
            self._post_lora("load_lora_adapter", {"lora_name": name, "lora_path": str(folder.resolve())}, what)
            if self.served_name != self.model:
                try:  # the old adapter is only memory on the server now; a failure to drop it stops nothing
                    self._post_lora("unload_lora_adapter", {"lora_name": self.served_name}, what)
                except (httpx.HTTPError, WeightSyncError):
                    pass
            self.served_name = name
        else:
            write_full_weights(policy.model, folder)
            answer = self._post(f"{self.root}/update_weights_from_disk",
                                {"model_path": str(folder.resolve()), "weight_version": str(version)}, what,
                                WeightSyncError)
            body = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else {}
            if body.get("success") is False:
                raise WeightSyncError(f"{what}: the server refused the weights: {body.get('message')}")
        if self._folder is not None and self._folder != folder:
            shutil.rmtree(self._folder, ignore_errors=True)
        self._folder, self.version = folder, version
        return time.perf_counter() - started

    # ---- rollouts ----------------------------------------------------------------------------------
    def generate(self, policy: Policy, query_ids: Tensor, query_mask: Tensor, settings: GenerationSettings,
                 prefix_ids: Tensor, prefix_mask: Tensor) -> tuple[Tensor, Tensor]:
        if self.version is None:
            raise StaleWeightsError("The served engine has not sent the learner's weights yet (sync before generate).")
        if settings.num_beams > 1:
            raise ConfigError("The served engine samples or decodes greedily; beam search (num_beams > 1) runs "
                              "with the hf engine.")
        rows = [torch.cat([q[m.bool()], p[pm.bool()]]).tolist()
                for q, m, p, pm in zip(query_ids.cpu(), query_mask.cpu(), prefix_ids.cpu(), prefix_mask.cpu())]
        payload = {"model": self.served_name, "max_tokens": settings.max_new_tokens,
                   "min_tokens": settings.min_new_tokens, "return_token_ids": True, "n": 1,
                   "temperature": settings.temperature if settings.do_sample else 0.0}
        if settings.do_sample:
            payload["top_p"] = settings.top_p
            if settings.top_k:
                payload["top_k"] = settings.top_k
        if settings.do_sample and self.seed:  # one request per row: a server gives a request's prompts one seed
            seeds = torch.randint(0, 2**31 - 1, (len(rows),)).tolist()
            bodies = [dict(payload, prompt=[row], seed=seed) for row, seed in zip(rows, seeds)]
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="rlgf-served")
            choices = [choice for answer in self._pool.map(self._complete, bodies) for choice in answer]
        else:
            choices = self._complete(dict(payload, prompt=rows))
        if len(choices) != len(rows) or any(choice.get("token_ids") is None for choice in choices):
            raise RolloutServerError("The rollout server did not return one choice with token ids per prompt; it needs "
                                     "`return_token_ids` (vLLM >= 0.10.2, SGLang, rlgf serve).")
        return self._tokens(policy, choices, settings.max_new_tokens, query_ids.device)

    def _complete(self, payload: dict) -> list[dict]:
        """One completions request: its choices in prompt order, once its weights' version is checked."""
        answer = self._post(f"{self.url}/completions", payload, "Rollout generation", RolloutServerError)
        try:
            body = answer.json()
        except ValueError:
            raise RolloutServerError(f"The rollout server answered 200 with a body that is not JSON: "
                                     f"{answer.text[:300]!r}") from None
        self._check_version(body)
        return sorted(body.get("choices", []), key=lambda choice: choice["index"])

    def _check_version(self, body: dict) -> None:
        if self.served_name != self.model:  # LoRA: the adapter's name carries the version
            if body.get("model") != self.served_name:
                raise StaleWeightsError(f"A rollout came back from {body.get('model')!r}, not from the adapter of "
                                        f"the learner's version {self.version} ({self.served_name!r}).")
            return
        metadata = body.get("metadata")
        reported = (metadata.get("weight_version") if isinstance(metadata, dict) else None) or body.get("weight_version")
        if reported is None:
            raise StaleWeightsError("The rollout server does not report the weights' version (`weight_version`), so "
                                    "a stale rollout could not be refused: serve with rlgf serve, or train with LoRA "
                                    "(the adapter's name carries the version).")
        if str(reported) != str(self.version):
            raise StaleWeightsError(f"A rollout was generated with weights of version {reported}, and the learner is "
                                    f"at version {self.version}: refused.")

    @staticmethod
    def _tokens(policy: Policy, choices: list[dict], budget: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """The choices' tokens as [B, T] (pad after each end) and lengths; a choice that stopped on its end
        token keeps it (a server that leaves it out of `token_ids` gets it back)."""
        ends = policy.eos_token_ids
        rows = []
        for choice in choices:  # parsing the server's answer, one list per row
            ids = [int(token) for token in choice["token_ids"]][:budget]
            if choice.get("finish_reason") == "stop" and ends and (not ids or ids[-1] not in ends) and len(ids) < budget:
                ids.append(ends[0])
            rows.append(torch.tensor(ids, dtype=torch.long))
        lengths = torch.tensor([len(ids) for ids in rows], dtype=torch.long)
        tokens = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=policy.pad_token_id)
        vocabulary = policy.model.get_input_embeddings().num_embeddings
        if tokens.numel() and not 0 <= int(tokens.min()) <= int(tokens.max()) < vocabulary:
            raise RolloutServerError(f"The rollout server returned token ids outside the learner's vocabulary of "
                                     f"{vocabulary}: it serves another model than the learner's base model. Serve "
                                     "the learner's base model (its tokenizer) under model.init_args.engine.init_args.model.")
        if tokens.shape[1] == 0:  # every row empty: one padded column keeps the shapes valid
            tokens = torch.full((len(rows), 1), policy.pad_token_id, dtype=torch.long)
        return tokens.to(device), lengths.to(device)
