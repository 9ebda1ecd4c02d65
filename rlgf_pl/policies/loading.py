"""Load Hugging Face models and tokenizers from a hub id, a local directory or the offline zoo."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

import rlgf_pl.policies.bag_of_words  # noqa: F401  (registers the zoo's bag-of-words models with the Auto classes)
from rlgf_pl.errors import ConfigError, ModelLoadError
from rlgf_pl.policies.base import Policy, PolicyKind
from rlgf_pl.policies.causal_lm import CausalLMPolicy
from rlgf_pl.policies.seq2seq import Seq2SeqPolicy
from rlgf_pl.zoo.registry import resolve_model_path

POLICY_CLASSES: dict[str, type[Policy]] = {"causal": CausalLMPolicy, "seq2seq": Seq2SeqPolicy}
KindSetting = Literal["auto", "causal", "seq2seq"]

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_dtype(dtype: str | None) -> torch.dtype | None:
    """Map a config string ('float32', 'bfloat16', 'float16' or None) to a torch dtype."""
    if dtype is None or dtype == "auto":
        return None
    if dtype not in _DTYPES:
        raise ConfigError(f"Unknown dtype {dtype!r}; use one of {sorted(_DTYPES)} or null.")
    return _DTYPES[dtype]


def _load_error(kind: str, name: str, error: Exception) -> ModelLoadError:
    looks_local = name.startswith((".", "/", "~")) or os.sep in name.strip("/").split("/", 1)[-1]
    if looks_local and not Path(name).expanduser().exists():
        reason = f"the directory {name!r} does not exist"
    else:
        reason = str(error).splitlines()[0]
    return ModelLoadError(
        f"Could not load the {kind} {name!r}: {reason}.\n"
        "Pass a Hugging Face hub id (needs a network or a filled HF cache), a local directory written by "
        "`save_pretrained` (with config.json in it), or an offline zoo name such as 'zoo:toy-gpt2' "
        "(see `rlgf zoo list`)."
    )


def load_tokenizer(name_or_path: str, padding_side: str = "left") -> PreTrainedTokenizerBase:
    """Load a tokenizer for generation: left padding, and a pad token (EOS if it has none)."""
    path = resolve_model_path(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as error:
        raise _load_error("tokenizer", name_or_path, error) from error
    tokenizer.padding_side = padding_side
    tokenizer.truncation_side = "left"  # the end of a prompt is what the model continues
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ConfigError(f"Tokenizer {name_or_path!r} has neither a pad nor an EOS token; add one before training.")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _load_pretrained(auto_class, kind: str, name_or_path: str, dtype: str | None, **kwargs) -> PreTrainedModel:
    """`auto_class.from_pretrained` on a hub id, a local directory or a zoo name, with a named error."""
    path = resolve_model_path(name_or_path)
    try:
        return auto_class.from_pretrained(path, dtype=parse_dtype(dtype), **kwargs)
    except (OSError, ValueError) as error:
        raise _load_error(kind, name_or_path, error) from error


def load_causal_lm(name_or_path: str, dtype: str | None = None, **kwargs) -> PreTrainedModel:
    """Load any causal LM (`AutoModelForCausalLM`) from a hub id, a local directory or a zoo name."""
    return _load_pretrained(AutoModelForCausalLM, "causal language model", name_or_path, dtype, **kwargs)


def load_seq2seq_lm(name_or_path: str, dtype: str | None = None, **kwargs) -> PreTrainedModel:
    """Load any encoder-decoder LM (`AutoModelForSeq2SeqLM`: T5, Flan-T5, BART, ...)."""
    return _load_pretrained(AutoModelForSeq2SeqLM, "sequence-to-sequence language model", name_or_path, dtype,
                            **kwargs)


def check_kind(kind: str) -> None:
    """Refuse a `kind` setting that is not 'auto', 'causal' or 'seq2seq'."""
    if kind not in ("auto", *POLICY_CLASSES):
        raise ConfigError(f"Unknown policy kind {kind!r}; use 'auto', 'causal' or 'seq2seq'.")


def policy_kind(name_or_path: str, kind: KindSetting = "auto") -> PolicyKind:
    """'causal' or 'seq2seq': `kind` when set, else what the model's config says (`is_encoder_decoder`).
    Reads config.json only, no weights."""
    check_kind(kind)
    if kind != "auto":
        return kind
    try:
        config = AutoConfig.from_pretrained(resolve_model_path(name_or_path))
    except (OSError, ValueError) as error:
        raise _load_error("model config", name_or_path, error) from error
    return "seq2seq" if getattr(config, "is_encoder_decoder", False) else "causal"


def load_policy(name_or_path: str, kind: KindSetting = "auto", dtype: str | None = None) -> Policy:
    """A policy of the model's kind (or the one asked for) with its tokenizer."""
    kind = policy_kind(name_or_path, kind)
    loader = load_seq2seq_lm if kind == "seq2seq" else load_causal_lm
    return POLICY_CLASSES[kind](loader(name_or_path, dtype=dtype), load_tokenizer(name_or_path))


def load_backbone(name_or_path: str, dtype: str | None = None, **kwargs) -> PreTrainedModel:
    """Load the transformer trunk (`AutoModel`, no LM head) of a model, e.g. for a critic."""
    return _load_pretrained(AutoModel, "model backbone", name_or_path, dtype, **kwargs)
