"""Callbacks for rlgf_pl runs (importable as `callbacks.X` in YAML configs)."""

from callbacks.rollout_writer import RolloutWriter

__all__ = ["RolloutWriter"]
