"""Language-model policies: the learner, its critic, the frozen reference and the guide."""

from rlgf_pl.policies.api_guide import APIGuide
from rlgf_pl.policies.base import Policy
from rlgf_pl.policies.causal_lm import CausalLMPolicy
from rlgf_pl.policies.critic import ValueModel
from rlgf_pl.policies.generation import GenerationSettings
from rlgf_pl.policies.guide import Guide
from rlgf_pl.policies.loading import load_causal_lm, load_policy, load_tokenizer
from rlgf_pl.policies.reference_guide import ReferenceGuide
from rlgf_pl.policies.seq2seq import Seq2SeqPolicy

__all__ = ["APIGuide", "CausalLMPolicy", "GenerationSettings", "Guide", "Policy", "ReferenceGuide", "Seq2SeqPolicy",
           "ValueModel", "load_causal_lm", "load_policy", "load_tokenizer"]
