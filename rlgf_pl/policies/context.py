"""How many positions a model holds, and a named error when prompt plus response would not fit."""

from __future__ import annotations

from rlgf_pl.errors import ConfigError

_WINDOW_NAMES = ("n_positions", "max_position_embeddings", "n_ctx", "max_sequence_length", "seq_length")


def context_window(config) -> tuple[str, int] | None:
    """The config field that bounds a model's positions and its value; None for relative positions (T5)."""
    if getattr(config, "relative_attention_num_buckets", None) is not None:
        return None
    for name in _WINDOW_NAMES:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return name, value
    return None


def check_fits(role: str, name: str, kind: str, config, prompt_tokens: int, new_tokens: int) -> None:
    """Raise ConfigError when `prompt_tokens` of prompt and `new_tokens` of response exceed the model's
    positions: their sum for a causal LM; the prompt (encoder) or the response after the decoder's start
    token for a seq2seq model."""
    window = context_window(config)
    if window is None:
        return
    field, limit = window
    where = f"{role} {name!r} ({type(config).__name__}.{field} = {limit})"
    fixes = "or use a model with a longer context."
    if kind == "seq2seq":
        if prompt_tokens > limit:
            raise ConfigError(f"data.max_prompt_tokens = {prompt_tokens} exceeds the encoder positions of {where}. "
                              f"Lower data.init_args.max_prompt_tokens to at most {limit}, {fixes}")
        if new_tokens + 1 > limit:
            raise ConfigError(f"max_new_tokens = {new_tokens} (plus the decoder's start token) exceeds the decoder "
                              f"positions of {where}. Lower max_new_tokens in data.init_args.generation and "
                              f"eval_generation to at most {limit - 1}, {fixes}")
        return
    if prompt_tokens + new_tokens > limit:
        raise ConfigError(
            f"data.max_prompt_tokens + max_new_tokens = {prompt_tokens} + {new_tokens} = {prompt_tokens + new_tokens} "
            f"tokens do not fit {where}. Lower max_new_tokens (data.init_args.generation and eval_generation) to at "
            f"most {max(limit - prompt_tokens, 0)}, or data.init_args.max_prompt_tokens to at most "
            f"{max(limit - new_tokens, 0)}, {fixes}")
