"""A guide behind an OpenAI-compatible completions endpoint: text in, text out, no logits, no weights
(the paper's IMDB guide was GPT-3 through an API)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rlgf_pl.errors import ConfigError
from rlgf_pl.policies.api_client import ApiMode, CompletionClient
from rlgf_pl.policies.base import Policy
from rlgf_pl.policies.guide import GuideBase, TextWriter


class APIGuide(GuideBase):
    """A frozen guide served elsewhere (vLLM, llama.cpp's server, `rlgf serve`, a hosted API).

    It writes wherever a local guide does (PPO++ roll-in, AggreVaTeD and LOLS/D2LOLS roll-out, the
    `evaluate_guide` baseline). Its text is handed over as text: the learner re-encodes it, and the guide
    critic trains on those learner tokens. A batch's requests run concurrently; results keep their order.

    Args:
        base_url: The API root, e.g. http://localhost:8000/v1.
        model: The model name the server knows (the request's `model` field).
        api_key_env: Name of the environment variable that holds the API key, e.g. OPENAI_API_KEY (the key itself
            never appears in a config, a log or a checkpoint). Null (the default) sends no key, so a key is only
            ever sent to a server you named it for.
        mode: 'completion' (the prompt text is continued) or 'chat' (the prompt is a user turn; a roll-out
            prefix is sent as the assistant turn to continue, with vLLM's `continue_final_message`).
        system_prompt: A system turn before the prompt, in chat mode.
        temperature: Sampling temperature; 0 decodes greedily.
        top_p: Nucleus sampling mass.
        stop: Strings that end a continuation (the server leaves them out of the text).
        seed: Send each request a seed drawn from the run's random stream, for servers that honour it (vLLM).
        extra_body: More request fields for the server, e.g. {top_k: 50} for vLLM.
        max_concurrency: Requests in flight at once.
        timeout: Seconds per request.
        max_retries: Retries after a 429, a 5xx, a timeout or a connection error, with exponential backoff.
        backoff: Seconds before the first retry (doubled each retry).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = None,
        mode: ApiMode = "completion",
        system_prompt: str | None = None,
        temperature: float = 1.0,
        top_p: float = 1.0,
        stop: list[str] | None = None,
        seed: bool = False,
        extra_body: dict[str, Any] | None = None,
        max_concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff: float = 1.0,
    ) -> None:
        if mode not in ("completion", "chat"):
            raise ConfigError(f"APIGuide mode must be 'completion' or 'chat', got {mode!r}.")
        if system_prompt is not None and mode != "chat":
            raise ConfigError("APIGuide system_prompt is sent only in chat mode; set mode: chat or drop it.")
        for name, value, low in (("max_concurrency", max_concurrency, 1), ("max_retries", max_retries, 0)):
            if value < low:
                raise ConfigError(f"APIGuide {name} must be >= {low}, got {value}.")
        if temperature < 0 or not 0 < top_p <= 1 or timeout <= 0 or backoff < 0:
            raise ConfigError(f"APIGuide needs temperature >= 0, 0 < top_p <= 1, timeout > 0 and backoff >= 0; got "
                              f"{temperature}, {top_p}, {timeout} and {backoff}.")
        self.name = f"{model} at {base_url}"
        self.model = model
        self.system_prompt = system_prompt
        self.sampling = {"temperature": temperature, "top_p": top_p, **({"stop": list(stop)} if stop else {}),
                         **(extra_body or {})}
        self.seed = seed
        self.client = CompletionClient(base_url, mode, api_key_env, max_concurrency, timeout, max_retries, backoff)

    @property
    def mode(self) -> ApiMode:
        return self.client.mode

    def setup(self, device: torch.device | str) -> APIGuide:
        """Reach the server before any training: a named error with the URL when nothing answers."""
        self.client.check_reachable()
        return self

    def writer(self, learner: Policy) -> APIWriter:
        return APIWriter(learner, self)

    def payloads(self, prompts: list[str], prefixes: list[str], max_new_tokens: int) -> list[dict[str, Any]]:
        """The request body of each row: the prompt text and its prefix, the token budget, the sampling fields."""
        common = {"model": self.model, "max_tokens": max_new_tokens, **self.sampling}
        seeds = torch.randint(0, 2**31 - 1, (len(prompts),)).tolist() if self.seed else [None] * len(prompts)
        bodies = []
        for prompt, prefix, seed in zip(prompts, prefixes, seeds):
            body = dict(common, **({"seed": seed} if seed is not None else {}))
            if self.mode == "completion":
                body["prompt"] = prompt + prefix
            else:
                system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
                turns = [*system, {"role": "user", "content": prompt}]
                if prefix:  # the learner's roll-in, for the guide to continue as its own turn
                    turns.append({"role": "assistant", "content": prefix})
                    body.update(continue_final_message=True, add_generation_prompt=False)
                body["messages"] = turns
            bodies.append(body)
        return bodies


class APIWriter(TextWriter):
    """Continues learner trajectories through an APIGuide's server."""

    def __init__(self, learner: Policy, guide: APIGuide) -> None:
        super().__init__(learner)
        self.guide = guide

    def continue_texts(self, prompts: list[str], prefixes: list[str], max_new_tokens: int) -> tuple[list[str], Tensor]:
        completions = self.guide.client.complete(self.guide.payloads(prompts, prefixes, max_new_tokens))
        return [c.text for c in completions], torch.tensor([c.ended for c in completions], dtype=torch.bool)
