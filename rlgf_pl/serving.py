"""`rlgf serve`: an OpenAI-compatible completions server over any local Hugging Face LM (causal or seq2seq),
so a guide can run on another machine (or GPU) and be reached with `APIGuide`.

    rlgf serve zoo:toy-guide --port 8000          # then base_url: http://HOST:8000/v1

Endpoints: GET /v1/models, POST /v1/completions, POST /v1/chat/completions. Requests may carry `max_tokens`,
`temperature` (0: greedy), `top_p`, `stop`, `seed`, and vLLM's `top_k`. Requests that arrive together
are generated together: a worker thread takes every waiting request (up to `--max-batch-size`) and runs one
batched `generate` per group of equal sampling settings.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import torch

from rlgf_pl.policies.base import Policy
from rlgf_pl.policies.generation import GenerationSettings
from rlgf_pl.policies.loading import load_policy


class RequestError(Exception):
    """A bad request: answered with its HTTP status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Job:
    """One prompt text to continue, with its request's settings."""

    text: str
    chat: bool
    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    stop: tuple[str, ...]
    seed: int | None
    result: Future = field(default_factory=Future)

    @property
    def group(self) -> tuple:
        """Jobs that can share one `generate`: same sampling and special tokens; a seeded job runs alone."""
        return (self.chat, self.temperature, self.top_p, self.top_k, id(self) if self.seed is not None else None)


def _number(body: dict, name: str, default: float, low: float, high: float) -> float:
    value = body.get(name, default)
    value = default if value is None else value
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"'{name}' must be a number in [{low}, {high}], got {value!r}.")
    return float(value)


def cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    """`text` up to the first stop string (left out), and whether one was found."""
    positions = [text.find(stop) for stop in stops if stop and stop in text]
    return (text[: min(positions)], True) if positions else (text, False)


class CompletionEngine:
    """Generates continuations for jobs, batching the jobs that wait together."""

    def __init__(self, policy: Policy, max_batch_size: int = 64) -> None:
        self.policy = policy
        self.max_batch_size = max_batch_size
        self.jobs: queue.Queue[Job] = queue.Queue()
        threading.Thread(target=self._work, daemon=True, name="rlgf-serve-generate").start()

    def submit(self, jobs: list[Job]) -> list[tuple[str, str]]:
        for job in jobs:
            self.jobs.put(job)
        return [job.result.result() for job in jobs]

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
                    for job, answer in zip(jobs, self.generate(jobs)):
                        job.result.set_result(answer)
                except Exception as error:  # noqa: BLE001 (answered as a 500, the server keeps serving)
                    for job in jobs:
                        if not job.result.done():
                            job.result.set_exception(error)

    @torch.no_grad()
    def generate(self, jobs: list[Job]) -> list[tuple[str, str]]:
        """(text, finish_reason) of each job, in one batched generation."""
        first, policy = jobs[0], self.policy
        settings = GenerationSettings(max_new_tokens=max(job.max_tokens for job in jobs), top_k=first.top_k,
                                      do_sample=first.temperature > 0, temperature=first.temperature or 1.0,
                                      top_p=first.top_p)
        query = policy.encode_prompts([job.text for job in jobs], None, add_special_tokens=not first.chat)
        with torch.random.fork_rng(devices=[policy.device] if policy.device.type == "cuda" else []):
            if first.seed is not None:
                torch.manual_seed(first.seed)
            tokens, lengths = policy.generate(*query, settings)
        own = torch.tensor([job.max_tokens for job in jobs], device=lengths.device)
        kept = torch.minimum(lengths, own)
        last = tokens.gather(1, (kept - 1).clamp(min=0)[:, None]).squeeze(1)
        ended = (kept > 0) & torch.isin(last, torch.tensor(policy.eos_token_ids or [-1], device=last.device))
        keep = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < kept[:, None]
        texts = policy.decode_after(*query, tokens, keep.long())
        answers = []
        for job, text, done in zip(jobs, texts, ended.tolist()):
            text, stopped = cut_at_stop(text, job.stop)
            answers.append((text, "stop" if done or stopped else "length"))
        return answers


class CompletionServer(ThreadingHTTPServer):
    """The HTTP side: parses OpenAI-style requests into jobs and answers in the same style."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], engine: CompletionEngine, served_name: str,
                 api_key: str | None = None) -> None:
        super().__init__(address, CompletionHandler)
        self.engine = engine
        self.served_name = served_name
        self.api_key = api_key

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.served_name, "object": "model", "owned_by": "rlgf"}]}

    def complete(self, body: dict, chat: bool) -> dict:
        if body.get("model", self.served_name) != self.served_name:
            raise RequestError(HTTPStatus.NOT_FOUND, f"The model {body.get('model')!r} is not served here; this "
                                                     f"server serves {self.served_name!r}.")
        texts = [self._chat_text(body)] if chat else self._prompts(body)
        stop = body.get("stop") or []
        stop = (stop,) if isinstance(stop, str) else tuple(stop)
        seed = body.get("seed")
        if seed is not None and not isinstance(seed, int):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"'seed' must be an integer, got {seed!r}.")
        settings = dict(chat=chat, max_tokens=int(_number(body, "max_tokens", 16, 1, 1_000_000)),
                        temperature=_number(body, "temperature", 1.0, 0.0, 100.0),
                        top_p=_number(body, "top_p", 1.0, 1e-9, 1.0), stop=stop, seed=seed,
                        top_k=max(0, int(_number(body, "top_k", 0, -1, 1_000_000))))  # vLLM's extension; -1 or 0: off
        answers = self.engine.submit([Job(text=text, **settings) for text in texts])
        choices = [({"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": reason} if chat
                    else {"index": i, "text": text, "logprobs": None, "finish_reason": reason})
                   for i, (text, reason) in enumerate(answers)]
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()), "model": self.served_name, "choices": choices}

    @staticmethod
    def _prompts(body: dict) -> list[str]:
        prompt = body.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise RequestError(HTTPStatus.BAD_REQUEST, "'prompt' must be a string or a non-empty list of strings.")
        return prompts

    def _chat_text(self, body: dict) -> str:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError(HTTPStatus.BAD_REQUEST, "'messages' must be a non-empty list of {role, content}.")
        tokenizer = self.engine.policy.tokenizer
        if not getattr(tokenizer, "chat_template", None):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"{self.served_name!r} has no chat template; use /v1/completions.")
        go_on = bool(body.get("continue_final_message")) and messages[-1].get("role") == "assistant"
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=not go_on,
                                             continue_final_message=go_on)


class CompletionHandler(BaseHTTPRequestHandler):
    server: CompletionServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (quiet: one line at start is enough)
        pass

    def _answer(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._answer(status, {"error": {"message": message, "type": HTTPStatus(status).phrase, "code": status}})

    def _authorized(self) -> bool:
        key = self.server.api_key
        if key and self.headers.get("Authorization") != f"Bearer {key}":
            self._error(HTTPStatus.UNAUTHORIZED, "Missing or wrong API key.")
            return False
        return True

    def do_GET(self) -> None:  # noqa: N802
        if not self._authorized():
            return
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._answer(HTTPStatus.OK, self.server.models())
        elif self.path.rstrip("/") in ("/health", "/v1/health"):
            self._answer(HTTPStatus.OK, {"status": "ok"})
        else:
            self._error(HTTPStatus.NOT_FOUND, f"No route {self.path}.")

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self._authorized():
            return
        path = self.path.rstrip("/").removeprefix("/v1")
        if path not in ("/completions", "/chat/completions"):
            self._error(HTTPStatus.NOT_FOUND, f"No route {self.path}.")
            return
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise RequestError(HTTPStatus.BAD_REQUEST, "The request body must be a JSON object.")
            self._answer(HTTPStatus.OK, self.server.complete(body, chat=path == "/chat/completions"))
        except json.JSONDecodeError as error:
            self._error(HTTPStatus.BAD_REQUEST, f"The request body is not JSON: {error}.")
        except RequestError as error:
            self._error(error.status, str(error))
        except Exception as error:  # noqa: BLE001
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(error).__name__}: {error}")


def serve_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="rlgf serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="hub id, local directory or zoo name of a causal or seq2seq LM")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
    parser.add_argument("--served-model-name", default=None, help="the name clients send as 'model' (default: MODEL)")
    parser.add_argument("--api-key-env", default=None,
                        help="environment variable holding the key clients must send (default: no key)")
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--max-batch-size", type=int, default=64, help="most requests generated together")
    args = parser.parse_args(argv)
    api_key = os.environ.get(args.api_key_env, "") if args.api_key_env else ""
    if args.api_key_env and not api_key:
        parser.error(f"--api-key-env {args.api_key_env}: that environment variable is unset or empty.")
    policy = load_policy(args.model, "auto", args.dtype).to(args.device).eval().requires_grad_(False)
    engine = CompletionEngine(policy, args.max_batch_size)
    server = CompletionServer((args.host, args.port), engine, args.served_model_name or args.model, api_key or None)
    host, port = server.server_address[:2]
    print(f"rlgf serve: {args.model} as {server.served_name!r} at http://{host}:{port}/v1 (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(serve_main(sys.argv[1:]))
