"""`rlgf serve`: an OpenAI-compatible server over any local Hugging Face LM (causal or seq2seq), so a guide can
run on another machine (or GPU) and be reached with `APIGuide`, or with the official `openai` client, and so
the learner's rollouts can run on it (`rlgf_pl.engines.ServedEngine`, which keeps it on the learner's weights).

    rlgf serve zoo:toy-guide --port 8000          # then base_url: http://HOST:8000/v1

Endpoints: GET /v1/models, POST /v1/completions and /v1/chat/completions, with `stream` (server-sent events
ending in `data: [DONE]`, and `stream_options.include_usage`), `n`, `max_tokens` (chat: also
`max_completion_tokens`; unset, the rest of the context window), `temperature` (0: greedy), `top_p`, `stop`,
`seed`, `logprobs` (completions: up to 5 alternatives; chat: `logprobs` with `top_logprobs` up to 20), `echo`,
and vLLM's `top_k`, `min_tokens` and `return_token_ids`; a completion prompt may be token ids. Weight sync for
RL: POST /update_weights_from_disk (SGLang's), /v1/load_lora_adapter and /v1/unload_lora_adapter (vLLM's);
every answer then reports the `weight_version` that wrote it (in `metadata`, as SGLang does). Every answer counts its `usage` in tokens. A field the server cannot honour, or one that is
malformed, is a 400 in OpenAI's error shape naming it.

Requests that arrive together are generated together (`engine.py`); a seeded request's choices alone, under its
seed, and a request without one with fresh noise of its own. A streamed answer is sent when its batch
has finished generating: each choice's text arrives as one chunk, then its finish reason. Log-probs are the
model's own (temperature 1, before top-k/top-p), computed by one extra forward pass over the choices that ask.
"""

from rlgf_pl.serving.engine import Choice, CompletionEngine, TokenLogprob
from rlgf_pl.serving.requests import CompletionRequest, RequestError, parse_request
from rlgf_pl.serving.server import CompletionServer, serve_main

__all__ = ["Choice", "CompletionEngine", "CompletionRequest", "CompletionServer", "RequestError", "TokenLogprob",
           "parse_request", "serve_main"]
