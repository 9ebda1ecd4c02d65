"""OpenAI request bodies, checked field by field into one typed `CompletionRequest`.

Every field OpenAI defines for /v1/completions and /v1/chat/completions is either honoured or refused with a
400 that names it; a field OpenAI does not define is refused as OpenAI refuses it ("Unrecognized request
argument supplied"), except the vLLM extensions this server honours (`top_k`, `min_tokens`, `return_token_ids`,
`continue_final_message`, `add_generation_prompt`). A completion prompt may be token ids (a list of integers, or a
list of such lists), as vLLM takes them: the served engine's rollouts come that way.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

MAX_CHOICES = 1024
"""Most choices (`n` times the prompts) one request may ask for."""

_COMMON = {"model", "max_tokens", "temperature", "top_p", "n", "stream", "stream_options", "stop", "seed", "user",
           "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_k", "min_tokens", "return_token_ids"}
COMPLETION_FIELDS = _COMMON | {"prompt", "echo", "best_of", "suffix"}
CHAT_FIELDS = _COMMON | {"messages", "max_completion_tokens", "top_logprobs", "response_format", "tools",
                         "tool_choice", "parallel_tool_calls", "store", "metadata", "continue_final_message",
                         "add_generation_prompt"}
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class RequestError(Exception):
    """A request the server refuses: its HTTP status, message, and the field at fault (OpenAI's `param`)."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code

    def body(self) -> dict:
        """OpenAI's error shape."""
        kind = "server_error" if self.status >= 500 else "invalid_request_error"
        return {"error": {"message": str(self), "type": kind, "param": self.param, "code": self.code}}


def bad(param: str, message: str) -> RequestError:
    return RequestError(HTTPStatus.BAD_REQUEST, message, param)


@dataclass(frozen=True)
class CompletionRequest:
    """One request, valid by construction.

    Attributes:
        texts: The prompt texts (a chat request's conversation rendered through the chat template); empty
            strings for token-id prompts.
        model: The served name asked for (the base model's, or a loaded LoRA adapter's).
        adapter: The LoRA adapter asked for (None: the base model).
        chat: True for /v1/chat/completions (the text already spells out its special tokens).
        n: Choices per prompt.
        max_tokens: Most new tokens per choice; None: as many as the context holds.
        temperature: 0 decodes greedily.
        top_p, top_k: Sampling truncation (top_k 0: off).
        stop: Strings that end a choice (left out of its text).
        seed: Seeds the request's sampling (its choices are generated together, alone).
        stream: Answer as server-sent events.
        include_usage: Streaming: end with a chunk that carries `usage`.
        logprobs: None for no log-probs, else how many alternatives each token lists (0: only the chosen).
        echo: Completions: the prompt leads each choice's text.
        token_prompts: Completions: prompts given as token ids (then `texts` holds empty strings).
        min_tokens: Fewest new tokens before an end token may stop a choice (vLLM's extension).
        return_token_ids: Each choice lists its token ids (`token_ids`, vLLM's extension).
    """

    texts: tuple[str, ...]
    chat: bool
    model: str = ""
    adapter: str | None = None
    n: int = 1
    max_tokens: int | None = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    stream: bool = False
    include_usage: bool = False
    logprobs: int | None = None
    echo: bool = False
    token_prompts: tuple[tuple[int, ...], ...] = ()
    min_tokens: int = 0
    return_token_ids: bool = False


def _integer(body: dict, name: str, default: int | None, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise bad(name, f"'{name}' must be an integer in [{low}, {high}], got {value!r}.")
    return value


def _number(body: dict, name: str, default: float, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        raise bad(name, f"'{name}' must be a number in [{low}, {high}], got {value!r}.")
    return float(value)


def _flag(body: dict, name: str) -> bool:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise bad(name, f"'{name}' must be true or false, got {value!r}.")
    return bool(value)


def _stops(body: dict) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise bad("stop", f"'stop' must be a string or a list of strings, got {stop!r}.")
    return tuple(s for s in stops if s)


def _unsupported(body: dict, name: str, neutral: tuple = (None,), what: str = "") -> None:
    """Refuse a field this server cannot honour unless it holds a value that changes nothing."""
    if name in body and body[name] not in neutral:
        raise bad(name, f"'{name}' is not supported by rlgf serve{what}; leave it out.")


def _token_ids(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value)


def _prompts(body: dict) -> tuple[tuple[str, ...], tuple[tuple[int, ...], ...]]:
    """The prompt texts, or the token-id prompts (with empty texts)."""
    prompt = body.get("prompt")
    if _token_ids(prompt):
        prompt = [prompt]
    if isinstance(prompt, list) and prompt and all(_token_ids(p) for p in prompt):
        return ("",) * len(prompt), tuple(tuple(p) for p in prompt)
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise bad("prompt", "'prompt' must be a string, a non-empty list of strings, a list of token ids or a "
                            f"list of such lists, got {str(prompt)[:200]}.")
    return tuple(prompts), ()


def message_text(content: Any, where: str) -> str:
    """A message's text: a string, or OpenAI's list of content parts of type 'text' (joined by new lines)."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list) and all(isinstance(part, dict) for part in content):
        texts = []
        for part in content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise bad(where, f"{where}: only content parts of type 'text' with a string 'text' are supported, "
                                 f"got {part!r}.")
            texts.append(part["text"])
        return "\n".join(texts)
    raise bad(where, f"{where} must be a string or a list of text parts, got {content!r}.")


def chat_messages(body: dict) -> list[dict[str, str]]:
    """The conversation as {role, content} strings, checked; 'developer' reads as 'system'."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad("messages", "'messages' must be a non-empty list of {role, content} objects.")
    turns = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise bad(f"messages[{i}]", f"messages[{i}] must be an object whose 'role' is one of "
                                        f"{sorted(_ROLES)}, got {message!r}.")
        if message.get("tool_calls"):
            raise bad(f"messages[{i}]", "tool calls are not supported by rlgf serve.")
        turns.append({"role": _ROLES[message["role"]],
                      "content": message_text(message.get("content"), f"messages[{i}].content")})
    return turns


def parse_request(body: Any, chat: bool, served_name: str, adapters: tuple[str, ...] = ()) -> CompletionRequest:
    """Check a request body. A chat request comes back with no texts yet: its conversation (`chat_messages`)
    is rendered with the model's chat template by the server. `adapters`: the names of loaded LoRA adapters,
    which a request may ask for as its model."""
    if not isinstance(body, dict):
        raise RequestError(HTTPStatus.BAD_REQUEST, "The request body must be a JSON object.")
    known = CHAT_FIELDS if chat else COMPLETION_FIELDS
    unknown = sorted(set(body) - known)
    if unknown:
        raise bad(unknown[0], f"Unrecognized request argument supplied: {unknown[0]}")
    model = body.get("model", served_name)
    if not isinstance(model, str):
        raise bad("model", f"'model' must be a string, got {model!r}.")
    if model != served_name and model not in adapters:
        raise RequestError(HTTPStatus.NOT_FOUND, f"The model {model!r} does not exist here; this server serves "
                                                 f"{[served_name, *adapters] if adapters else served_name!r}.",
                           "model", "model_not_found")
    n = _integer(body, "n", 1, 1, MAX_CHOICES)
    for name in ("presence_penalty", "frequency_penalty"):
        _unsupported(body, name, (None, 0, 0.0))
    _unsupported(body, "logit_bias", (None, {}))
    stream_options = body.get("stream_options")
    if stream_options is not None and not (isinstance(stream_options, dict) and set(stream_options) <= {
            "include_usage", "continuous_usage_stats"}):
        raise bad("stream_options", f"'stream_options' must be an object like {{\"include_usage\": true}}, got "
                                    f"{stream_options!r}.")
    stream = _flag(body, "stream")
    if stream_options is not None and not stream:
        raise bad("stream_options", "'stream_options' is only allowed with 'stream': true.")
    include_usage = _flag(stream_options or {}, "include_usage")
    if chat:
        _unsupported(body, "tools", (None, []))
        _unsupported(body, "tool_choice", (None, "none", "auto"))
        _unsupported(body, "response_format", (None, {"type": "text"}), " (only {\"type\": \"text\"})")
        for name in ("continue_final_message", "add_generation_prompt", "parallel_tool_calls", "store"):
            _flag(body, name)
        if body.get("metadata") is not None and not isinstance(body["metadata"], dict):
            raise bad("metadata", "'metadata' must be an object of strings.")
        if body.get("max_completion_tokens") is not None and body.get("max_tokens") is not None:
            raise bad("max_completion_tokens", "Give 'max_completion_tokens' or its deprecated alias "
                                               "'max_tokens', not both.")
        limit_name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
        max_tokens = _integer(body, limit_name, None, 1, 1_000_000)
        wants_logprobs = _flag(body, "logprobs")
        top = _integer(body, "top_logprobs", 0, 0, 20)
        if body.get("top_logprobs") is not None and not wants_logprobs:
            raise bad("top_logprobs", "'top_logprobs' needs 'logprobs': true.")
        logprobs, echo, texts, token_prompts = (top if wants_logprobs else None), False, (), ()
    else:
        texts, token_prompts = _prompts(body)
        _unsupported(body, "suffix", (None, ""))
        best_of = _integer(body, "best_of", n, 1, MAX_CHOICES)
        if best_of != n:
            raise bad("best_of", f"'best_of' other than 'n' ({best_of} against {n}) is not supported by rlgf serve.")
        max_tokens = _integer(body, "max_tokens", 16, 1, 1_000_000)
        logprobs = _integer(body, "logprobs", None, 0, 5)
        echo = _flag(body, "echo")
        if echo and token_prompts:
            raise bad("echo", "'echo' with token-id prompts is not supported by rlgf serve.")
        if echo and logprobs is not None:
            raise bad("echo", "'echo' together with 'logprobs' (the prompt's log-probs) is not supported by "
                              "rlgf serve; ask for one of them.")
    if n * max(len(texts), 1) > MAX_CHOICES:
        raise bad("n", f"{len(texts)} prompts times n = {n} asks for more than {MAX_CHOICES} choices; split it.")
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not -2**63 <= seed < 2**63):
        raise bad("seed", f"'seed' must be an integer in [-2**63, 2**63), as vLLM takes it; got {seed!r}.")
    if body.get("user") is not None and not isinstance(body["user"], str):
        raise bad("user", f"'user' must be a string, got {body['user']!r}.")
    request = CompletionRequest(
        texts=texts, chat=chat, model=model, adapter=model if model in adapters else None,
        token_prompts=token_prompts, n=n, max_tokens=max_tokens, stop=_stops(body), seed=seed, stream=stream,
        include_usage=include_usage, logprobs=logprobs, echo=echo,
        temperature=_number(body, "temperature", 1.0, 0.0, 100.0), top_p=_number(body, "top_p", 1.0, 1e-9, 1.0),
        top_k=max(0, _integer(body, "top_k", 0, -1, 1_000_000)),  # vLLM's extension; -1 or 0: off
        min_tokens=_integer(body, "min_tokens", 0, 0, 1_000_000), return_token_ids=_flag(body, "return_token_ids"),
    )
    if max_tokens is not None and request.min_tokens > max_tokens:
        raise bad("min_tokens", f"'min_tokens' ({request.min_tokens}) exceeds 'max_tokens' ({max_tokens}).")
    return request
