"""Rollout engines: what generates the learner's training rollouts (`model.init_args.engine`).

`HFEngine` (the default) runs Hugging Face `generate` in the training process; `ServedEngine` sends them to an
OpenAI-compatible server (vLLM, SGLang, `rlgf serve`) and keeps it on the learner's weights. To add one,
subclass `RolloutEngine` (`generate`, and `sync` if it generates elsewhere).
"""

from rlgf_pl.engines.base import RolloutEngine
from rlgf_pl.engines.hf import HFEngine
from rlgf_pl.engines.served import ServedEngine

__all__ = ["HFEngine", "RolloutEngine", "ServedEngine"]
