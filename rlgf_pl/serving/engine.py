"""The generating side of `rlgf serve`: jobs that wait together are generated together.

A worker thread takes every waiting job (up to `max_batch_size`) and runs one batched `generate` per group of
equal sampling settings; a seeded request's choices form a group of their own, generated under its seed.

The weights can change between two generations, never during one: `load_weights` (the full state dict) and
`load_adapter` (LoRA adapters, served under their own name beside the base model) wait for the running
generation, and each choice records the weights' version it was generated with.
"""

from __future__ import annotations

import queue
import random
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from http import HTTPStatus
from itertools import accumulate
from pathlib import Path

import torch
from torch import Tensor

from rlgf_pl.engines.weights import load_adapters, load_full_weights
from rlgf_pl.policies.base import Policy
from rlgf_pl.policies.context import context_window
from rlgf_pl.policies.generation import GenerationSettings
from rlgf_pl.policies.lora import has_adapters
from rlgf_pl.serving.requests import CompletionRequest, RequestError


@dataclass(frozen=True)
class TokenLogprob:
    """One written token: its text, its log-prob under the model (temperature 1, before top-k/top-p), and the
    most likely alternatives at its position, best first."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Choice:
    """One generated continuation."""

    text: str
    finish_reason: str
    """'stop' (an end token or a stop string) or 'length' (the token budget ran out)."""
    prompt_tokens: int
    completion_tokens: int
    logprobs: tuple[TokenLogprob, ...] | None = None
    token_ids: tuple[int, ...] = ()
    weight_version: str | None = None
    """The version of the weights that wrote it (None: the weights the server started with)."""


@dataclass
class Job:
    """One choice to generate: a prompt (text, or token ids), its token budget, and its request's settings."""

    text: str
    max_tokens: int
    request: CompletionRequest
    ids: tuple[int, ...] | None = None
    result: Future = field(default_factory=Future)

    @property
    def group(self) -> tuple:
        """Jobs that can share one `generate`: same model, sampling and special tokens, and token-id prompts or
        text; a seeded request's jobs alone."""
        r = self.request
        return (r.model, r.chat, r.temperature, r.top_p, r.top_k, r.min_tokens, self.ids is None,
                id(r) if r.seed is not None else None)


def cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    """`text` up to the first stop string (left out), and whether one was found."""
    positions = [text.find(stop) for stop in stops if stop and stop in text]
    return (text[: min(positions)], True) if positions else (text, False)


class CompletionEngine:
    """Generates choices for jobs, batching the jobs that wait together.

    Args:
        policy: The model, in eval mode on its device.
        max_batch_size: Most jobs in one `generate`.
        default_max_tokens: A chat request's budget when it sets none and the model has no fixed context
            window (otherwise: the rest of the window, as vLLM does).
    """

    def __init__(self, policy: Policy, max_batch_size: int = 64, default_max_tokens: int = 512) -> None:
        self.policy = policy
        self.max_batch_size = max_batch_size
        self.default_max_tokens = default_max_tokens
        window = context_window(policy.model.config)
        self.window = window[1] if window is not None and policy.kind == "causal" else None
        self.tokenizer_lock = threading.Lock()
        """Fast tokenizers are not safe across threads (padding settings are shared state)."""
        self.weights_lock = threading.Lock()
        """Held by a generation, and by a weight update: the weights never change under a running generation."""
        self.weight_version: str | None = None
        self.adapter: str | None = None
        """The name the loaded LoRA adapter is served under (None: no adapter loaded)."""
        self.unseeded = random.SystemRandom()
        """Seeds the requests that bring none: each its own draw (fresh noise, as vLLM gives them)."""
        self.jobs: queue.Queue[Job] = queue.Queue()
        threading.Thread(target=self._work, daemon=True, name="rlgf-serve-generate").start()

    # ---- admission (HTTP threads) ----------------------------------------------------------------
    def jobs_for(self, request: CompletionRequest) -> list[Job]:
        """The request's jobs, prompt-major (prompt 0's n choices first), each with its token budget; a
        budget that does not fit the context window is a 400 naming both numbers."""
        if request.token_prompts:
            lengths = [len(ids) for ids in request.token_prompts]
        else:
            with self.tokenizer_lock:
                lengths = [len(ids) for ids in self.policy.tokenizer(
                    list(request.texts), add_special_tokens=not request.chat)["input_ids"]]
        vocabulary = len(self.policy.tokenizer)
        if any(max(ids) >= vocabulary for ids in request.token_prompts):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"A token-id prompt holds an id outside the vocabulary of "
                                                       f"{vocabulary} tokens.", "prompt")
        ids_of = request.token_prompts or (None,) * len(request.texts)
        jobs = []
        for text, ids, length in zip(request.texts, ids_of, lengths):
            budget = request.max_tokens
            if self.window is not None:
                room = self.window - length
                if budget is None:
                    budget = room
                if room < 1 or budget > room:
                    raise RequestError(HTTPStatus.BAD_REQUEST, (
                        f"This model's maximum context length is {self.window} tokens. However, you requested "
                        f"{length + (budget or 0)} tokens ({length} in the prompt, {budget} in the completion). "
                        "Please reduce the length of the prompt or the completion."), "max_tokens")
            jobs.extend(Job(text, budget or self.default_max_tokens, request, ids) for _ in range(request.n))
        return jobs

    # ---- weights (HTTP threads) ------------------------------------------------------------------
    def load_weights(self, folder: str | Path, version: str) -> None:
        """The full state dict written by the trainer (`rlgf_pl.engines.weights`), as weights of `version`."""
        with self.weights_lock:
            load_full_weights(self.policy.model, Path(folder))
            self.weight_version = version

    def load_adapter(self, name: str, folder: str | Path) -> None:
        """LoRA adapters (peft's format), served as `name`; they replace the adapter loaded before."""
        with self.weights_lock:
            load_adapters(self.policy.model, Path(folder))
            self.adapter = name

    def unload_adapter(self, name: str) -> bool:
        """Stop serving the adapter `name`. False when no adapter of that name is loaded."""
        with self.weights_lock:
            if name != self.adapter:
                return False
            self.adapter = None
            return True

    def served_adapters(self) -> tuple[str, ...]:
        return (self.adapter,) if self.adapter else ()

    def submit(self, jobs: list[Job]) -> list[Choice]:
        for job in jobs:
            self.jobs.put(job)
        return [job.result.result() for job in jobs]

    # ---- generation (the worker thread) ----------------------------------------------------------
    def _work(self) -> None:
        while True:
            batch = [self.jobs.get()]
            while len(batch) < self.max_batch_size:
                try:
                    batch.append(self.jobs.get_nowait())
                except queue.Empty:
                    break
            groups: dict[tuple, list[Job]] = {}
            for job in batch:
                groups.setdefault(job.group, []).append(job)
            for jobs in groups.values():
                try:
                    for job, choice in zip(jobs, self.generate(jobs)):
                        job.result.set_result(choice)
                except Exception as error:  # noqa: BLE001 (answered as a 500, the server keeps serving)
                    for job in jobs:
                        if not job.result.done():
                            job.result.set_exception(error)

    def generate(self, jobs: list[Job]) -> list[Choice]:
        """Each job's choice, in one batched generation, on weights that stay put until it is done."""
        with self.weights_lock:
            return self._generate(jobs, self.weight_version)

    @torch.no_grad()
    def _generate(self, jobs: list[Job], version: str | None) -> list[Choice]:
        request, policy = jobs[0].request, self.policy
        budget = max(job.max_tokens for job in jobs)
        settings = GenerationSettings(max_new_tokens=budget, top_k=request.top_k, do_sample=request.temperature > 0,
                                      temperature=request.temperature or 1.0, top_p=request.top_p,
                                      min_new_tokens=min(request.min_tokens, budget))
        with self.tokenizer_lock:
            query = (self._padded([job.ids for job in jobs]) if jobs[0].ids is not None else
                     policy.encode_prompts([job.text for job in jobs], None, add_special_tokens=not request.chat))
        if request.adapter is not None and request.adapter != self.adapter:
            raise RequestError(HTTPStatus.NOT_FOUND, f"The LoRA adapter {request.adapter!r} was replaced by "
                                                     f"{self.adapter!r} before its turn; ask again.", "model",
                               "model_not_found")
        if has_adapters(policy.model):  # the base model's name runs with the adapters off
            policy.adapters_off = request.adapter is None
        with torch.random.fork_rng(devices=[policy.device] if policy.device.type == "cuda" else []):
            # the fork restores the process's stream afterwards, so a request without a seed needs one of its own
            torch.manual_seed(request.seed if request.seed is not None else self.unseeded.getrandbits(63))
            tokens, lengths = policy.generate(*query, settings)
        kept = torch.minimum(lengths, torch.tensor([job.max_tokens for job in jobs], device=lengths.device))
        last = tokens.gather(1, (kept - 1).clamp(min=0)[:, None]).squeeze(1)
        ended = ((kept > 0) & torch.isin(last, torch.tensor(policy.eos_token_ids or [-1], device=last.device))).tolist()
        context = policy.context_of(*query, tokens[:, :0], query[1][:, :0])
        prompt_tokens = query[1].sum(1).tolist()
        keep = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < kept[:, None]
        kept = kept.tolist()
        with self.tokenizer_lock:
            texts = policy.decode_after(*query, tokens, keep.long())
            pieces: dict[int, list[str]] = {}
            for i, job in enumerate(jobs):
                texts[i], stopped = cut_at_stop(texts[i], job.request.stop)
                if stopped or job.request.logprobs is not None:
                    pieces[i] = self._token_texts(context[0][i][context[1][i].bool()], tokens[i, : kept[i]])
                if stopped:  # the tokens up to the first that reaches into the stop string
                    ends = accumulate(len(piece) for piece in pieces[i])
                    kept[i] = next((k for k, end in enumerate(ends, 1) if end > len(texts[i])), kept[i])
                    ended[i] = True
        wanted = [i for i, job in enumerate(jobs) if job.request.logprobs is not None]
        scored = self._logprobs(query, tokens, kept, wanted, pieces, jobs) if wanted else {}
        return [Choice(text, "stop" if done else "length", prompt, count, scored.get(i),
                       tuple(tokens[i, :count].tolist()) if job.request.return_token_ids else (), version)
                for i, (job, text, done, prompt, count) in enumerate(zip(jobs, texts, ended, prompt_tokens, kept))]

    def _padded(self, rows: list[tuple[int, ...]]) -> tuple[Tensor, Tensor]:
        """Token-id prompts as a query on the policy's padding side."""
        padded = self.policy.tokenizer.pad({"input_ids": [list(ids) for ids in rows]}, padding=True,
                                           padding_side=self.policy.query_padding_side, return_tensors="pt")
        return padded["input_ids"].long().to(self.policy.device), padded["attention_mask"].long().to(self.policy.device)

    def _token_texts(self, context: Tensor, new: Tensor) -> list[str]:
        """The text each new token adds where it follows its context (a leading space stays with its token)."""
        ids = context.tolist() + new.tolist()
        heads = self.policy.tokenizer.batch_decode([ids[: len(context) + k] for k in range(len(new) + 1)],
                                                   skip_special_tokens=True)
        return [after[len(before):] if after.startswith(before) else self.policy.tokenizer.decode([token])
                for before, after, token in zip(heads, heads[1:], new.tolist())]

    def _logprobs(self, query: tuple[Tensor, Tensor], tokens: Tensor, kept: list[int], rows: list[int],
                  pieces: dict[int, list[str]], jobs: list[Job]) -> dict[int, tuple[TokenLogprob, ...]]:
        """Per-token log-probs of the written tokens under the model (one forward pass over the rows asking)."""
        index = torch.tensor(rows, device=tokens.device)
        width = max(max(kept[i] for i in rows), 1)
        ids = tokens[index, :width]
        mask = (torch.arange(width, device=ids.device)[None, :] < torch.tensor([kept[i] for i in rows],
                                                                               device=ids.device)[:, None]).long()
        with self.policy._network():
            logits = self.policy.response_logits(query[0][index], query[1][index], ids, mask)
        logprobs = torch.log_softmax(logits.float(), -1)
        chosen = logprobs.gather(2, ids[..., None]).squeeze(2).tolist()
        most = max(jobs[i].request.logprobs for i in rows)
        top_values, top_ids = logprobs.topk(most, -1) if most else (logprobs[..., :0], ids[..., None][..., :0])
        out = {}
        with self.tokenizer_lock:
            for row, i in enumerate(rows):
                k = jobs[i].request.logprobs
                out[i] = tuple(
                    TokenLogprob(pieces[i][t], chosen[row][t], tuple(
                        (self.policy.tokenizer.decode([a]), v)
                        for a, v in zip(top_ids[row, t, :k].tolist(), top_values[row, t, :k].tolist())))
                    for t in range(kept[i]))
        return out
