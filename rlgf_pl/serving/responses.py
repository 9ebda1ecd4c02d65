"""OpenAI response bodies and stream chunks, built from generated choices (pure functions)."""

from __future__ import annotations

from collections.abc import Iterator

from rlgf_pl.serving.engine import Choice, TokenLogprob
from rlgf_pl.serving.requests import CompletionRequest


def usage(request: CompletionRequest, choices: list[Choice]) -> dict:
    """Tokens counted as OpenAI counts them: each prompt once (not once per choice), every choice's tokens."""
    prompt = sum(choice.prompt_tokens for choice in choices[:: request.n])
    completion = sum(choice.completion_tokens for choice in choices)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _completion_logprobs(tokens: tuple[TokenLogprob, ...], start: int) -> dict:
    """The legacy completions shape: parallel lists, offsets in characters of the returned text."""
    offsets, at = [], start
    for token in tokens:
        offsets.append(at)
        at += len(token.token)
    return {"tokens": [t.token for t in tokens], "token_logprobs": [t.logprob for t in tokens],
            "top_logprobs": [dict(t.top) for t in tokens], "text_offset": offsets}


def _entry(token: str, logprob: float) -> dict:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode())}


def _chat_logprobs(tokens: tuple[TokenLogprob, ...]) -> dict:
    return {"content": [{**_entry(t.token, t.logprob), "top_logprobs": [_entry(*alt) for alt in t.top]}
                        for t in tokens], "refusal": None}


def _logprobs(request: CompletionRequest, choice: Choice, start: int) -> dict | None:
    if choice.logprobs is None:
        return None
    return _chat_logprobs(choice.logprobs) if request.chat else _completion_logprobs(choice.logprobs, start)


def _texts(request: CompletionRequest, choices: list[Choice]) -> list[tuple[str, int]]:
    """Each choice's text (after its prompt when echoed) and where its own part starts."""
    prompts = [request.texts[i // request.n] if request.echo else "" for i in range(len(choices))]
    return [(prompt + choice.text, len(prompt)) for prompt, choice in zip(prompts, choices)]


def response_body(request: CompletionRequest, choices: list[Choice], rid: str, created: int, model: str) -> dict:
    """The whole answer (`stream: false`)."""
    listed = []
    for i, (choice, (text, start)) in enumerate(zip(choices, _texts(request, choices))):
        entry = {"index": i, "finish_reason": choice.finish_reason, "logprobs": _logprobs(request, choice, start)}
        entry.update({"message": {"role": "assistant", "content": text, "refusal": None}} if request.chat
                     else {"text": text})
        if request.return_token_ids:
            entry["token_ids"] = list(choice.token_ids)
        listed.append(entry)
    return {"id": rid, "object": "chat.completion" if request.chat else "text_completion", "created": created,
            "model": request.model or model, "choices": listed, "usage": usage(request, choices),
            **_version(choices)}


def _version(choices: list[Choice]) -> dict:
    """`metadata.weight_version` (where SGLang reports it): the version of the weights that wrote every choice,
    once the trainer has sent any ('mixed' if an update came between two of them, which the served engine
    refuses)."""
    versions = {choice.weight_version for choice in choices}
    if versions == {None}:
        return {}
    return {"metadata": {"weight_version": versions.pop() if len(versions) == 1 else "mixed"}}


def stream_chunks(request: CompletionRequest, choices: list[Choice], rid: str, created: int,
                  model: str) -> Iterator[dict]:
    """The answer as stream chunks (`stream: true`): per choice its text, then its finish reason; a last
    chunk with `usage` and no choices when `stream_options.include_usage` asks for it."""
    kind = "chat.completion.chunk" if request.chat else "text_completion"
    head = {"id": rid, "object": kind, "created": created, "model": request.model or model, **_version(choices),
            **({"usage": None} if request.include_usage else {})}
    for i, (choice, (text, start)) in enumerate(zip(choices, _texts(request, choices))):
        logprobs = _logprobs(request, choice, start)
        if request.chat:
            yield {**head, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""},
                                        "logprobs": None, "finish_reason": None}]}
            yield {**head, "choices": [{"index": i, "delta": {"content": text}, "logprobs": logprobs,
                                        "finish_reason": None}]}
            yield {**head, "choices": [{"index": i, "delta": {}, "logprobs": None,
                                        "finish_reason": choice.finish_reason}]}
        else:
            tokens = {"token_ids": list(choice.token_ids)} if request.return_token_ids else {}
            yield {**head, "choices": [{"index": i, "text": text, "logprobs": logprobs, "finish_reason": None,
                                        **tokens}]}
            yield {**head, "choices": [{"index": i, "text": "", "logprobs": None,
                                        "finish_reason": choice.finish_reason}]}
    if request.include_usage:
        yield {**head, "choices": [], "usage": usage(request, choices)}
