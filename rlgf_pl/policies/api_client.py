"""A small client for OpenAI-compatible completion endpoints (vLLM, llama.cpp's server, `rlgf serve`, hosted
APIs): concurrent requests in order, retries with exponential backoff, named errors."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from rlgf_pl.errors import GuideResponseError, GuideServerError

RETRIED_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
"""Statuses worth another try: rate limits, timeouts and server-side failures."""

ApiMode = Literal["completion", "chat"]


@dataclass(frozen=True)
class Completion:
    text: str
    ended: bool
    """True when the model stopped on its own (finish_reason 'stop'), False at the length limit."""


def cut(text: str, limit: int = 300) -> str:
    """A payload shown in an error, cut short."""
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more characters]"


def parse_completion(body: str, mode: ApiMode) -> Completion:
    """The first choice of an OpenAI-style response body, or GuideResponseError showing the payload."""
    import json

    try:
        payload = json.loads(body)
        choice = payload["choices"][0]
        text = choice["text"] if mode == "completion" else choice["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as error:
        kind = "not JSON" if isinstance(error, ValueError) else f"no {error} in it"
        raise GuideResponseError(f"The guide's server answered with a body that is not an OpenAI {mode} response "
                                 f"({kind}): {cut(body)!r}") from None
    if not isinstance(text, str):
        raise GuideResponseError(f"The guide's server answered with a non-text completion: {cut(body)!r}")
    return Completion(text=text, ended=choice.get("finish_reason") == "stop")


class CompletionClient:
    """Sends completion (or chat completion) requests to an OpenAI-compatible server.

    The API key is read from the environment variable `api_key_env` at each request; it is never stored on
    the client, so it cannot reach a config dump, a log or a checkpoint.

    Args:
        base_url: The API root, e.g. http://localhost:8000/v1.
        mode: 'completion' (/completions) or 'chat' (/chat/completions).
        api_key_env: Name of the environment variable holding the API key; unset or empty sends none.
        max_concurrency: Requests in flight at once.
        timeout: Seconds per request.
        max_retries: Retries after a 429, a 5xx, a timeout or a connection error.
        backoff: Seconds before the first retry; doubled each time (a Retry-After header wins when larger).
    """

    def __init__(self, base_url: str, mode: ApiMode = "completion", api_key_env: str | None = None,
                 max_concurrency: int = 8, timeout: float = 60.0, max_retries: int = 5, backoff: float = 1.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.mode = mode
        self.api_key_env = api_key_env
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff = backoff
        self._http = httpx.Client(timeout=timeout, limits=httpx.Limits(max_connections=max_concurrency))

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/{'completions' if self.mode == 'completion' else 'chat/completions'}"

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        return {"Authorization": f"Bearer {key}"} if key else {}

    def check_reachable(self) -> None:
        """Fail now, naming the URL, when nothing answers there (any HTTP answer but 401/403 will do: not every
        server lists /models)."""
        url = f"{self.base_url}/models"
        try:
            response = self._http.get(url, headers=self._headers())
        except httpx.HTTPError as error:
            raise GuideServerError(f"The guide's server at {self.base_url} cannot be reached ({type(error).__name__}: "
                                   f"{error}). Start it (e.g. `rlgf serve MODEL --port PORT`) or fix "
                                   "data.init_args.guide.init_args.base_url.") from None
        if response.status_code in (401, 403):
            raise GuideServerError(self._auth_message(response))

    def _auth_message(self, response: httpx.Response) -> str:
        where = f"the environment variable {self.api_key_env}" if self.api_key_env else "no variable (api_key_env: null)"
        return (f"The guide's server at {self.base_url} refused the API key (HTTP {response.status_code}: "
                f"{cut(response.text, 200)!r}). The key is read from {where}; set it to a valid key.")

    def complete(self, payloads: list[dict[str, Any]]) -> list[Completion]:
        """One completion per payload, in order, `max_concurrency` at a time."""
        stop = threading.Event()  # set on the first failure: the other requests give up instead of retrying
        pool = ThreadPoolExecutor(max_workers=max(1, min(self.max_concurrency, len(payloads))))
        futures = [pool.submit(self._complete_one, payload, stop) for payload in payloads]
        try:
            return [future.result() for future in futures]
        except BaseException:
            stop.set()
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _complete_one(self, payload: dict[str, Any], stop: threading.Event) -> Completion:
        failure = "stopped: another request failed"
        for attempt in range(self.max_retries + 1):
            if stop.is_set():
                break
            delay = self.backoff * 2**attempt
            try:
                response = self._http.post(self.endpoint, json=payload, headers=self._headers())
            except httpx.TransportError as error:  # connection refused or reset, timeouts
                failure = f"{type(error).__name__}: {error}"
            else:
                if response.status_code == 200:
                    return parse_completion(response.text, self.mode)
                if response.status_code in (401, 403):
                    raise GuideServerError(self._auth_message(response))
                failure = f"HTTP {response.status_code}: {cut(response.text, 200)!r}"
                if response.status_code not in RETRIED_STATUSES:
                    raise GuideServerError(f"The guide's server at {self.endpoint} answered {failure}. Check the "
                                           "guide's model name and decoding settings.")
                delay = max(delay, _retry_after(response))
            if attempt < self.max_retries and stop.wait(delay):
                break
        raise GuideServerError(f"The guide's server at {self.endpoint} failed {self.max_retries + 1} times in a "
                               f"row; last: {failure}. Check the server, or raise "
                               "data.init_args.guide.init_args.max_retries / timeout.")


def _retry_after(response: httpx.Response) -> float:
    try:
        return float(response.headers.get("retry-after", 0.0))
    except ValueError:
        return 0.0
