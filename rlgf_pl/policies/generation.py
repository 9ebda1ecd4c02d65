"""Decoding settings, as plain data that a YAML config can set."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import LogitsProcessorList

from rlgf_pl.errors import ConfigError
from rlgf_pl.policies.sampling import TruncatedSampler


@dataclass
class GenerationSettings:
    """How a policy samples continuations.

    Attributes:
        max_new_tokens: Most tokens generated after the prompt.
        min_new_tokens: Fewest tokens generated before EOS is allowed.
        do_sample: Sample (True) or decode greedily (False).
        top_k: Keep only the k most likely tokens when sampling (0 disables).
        top_p: Nucleus sampling mass (1.0 disables).
        temperature: Softmax temperature when sampling.
        num_beams: Beam search with this many beams when > 1 (needs do_sample: false); CommonGen's evaluation
            decodes with 5.
    """

    max_new_tokens: int = 48
    min_new_tokens: int = 0
    do_sample: bool = True
    top_k: int = 50
    top_p: float = 1.0
    temperature: float = 1.0
    num_beams: int = 1

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}.")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ConfigError(
                f"min_new_tokens must lie in [0, max_new_tokens={self.max_new_tokens}], got {self.min_new_tokens}."
            )
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p must lie in (0, 1], got {self.top_p}.")
        if self.temperature <= 0.0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}.")
        if self.top_k < 0:
            raise ConfigError(f"top_k must be >= 0 (0 disables it), got {self.top_k}.")
        if self.num_beams < 1:
            raise ConfigError(f"num_beams must be >= 1, got {self.num_beams}.")
        if self.num_beams > 1 and self.do_sample:
            raise ConfigError(f"num_beams={self.num_beams} decodes with beam search, which does not sample: set "
                              "do_sample: false, or num_beams: 1 to sample.")

    def generate_kwargs(self) -> dict:
        """Keyword arguments for Hugging Face `generate`. Sampling runs through `TruncatedSampler` (the
        same distribution as `do_sample=True` with these warpers, without a full-vocabulary multinomial)."""
        kwargs = {"max_new_tokens": self.max_new_tokens, "min_new_tokens": self.min_new_tokens, "do_sample": False,
                  "num_beams": self.num_beams}
        if self.do_sample:
            kwargs["logits_processor"] = LogitsProcessorList(
                [TruncatedSampler(self.top_k, self.top_p, self.temperature)])
        return kwargs
