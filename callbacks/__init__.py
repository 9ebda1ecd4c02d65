"""Callbacks for rlgf_pl runs (importable as `callbacks.X` in YAML configs)."""

from callbacks.phase_switch import D2LOLSSwitch, GuideBaselineSwitch, PhaseSwitch, PlateauSwitch
from callbacks.rollout_writer import RolloutWriter
from callbacks.sample_logger import SampleLogger
from callbacks.throughput import Throughput

__all__ = ["D2LOLSSwitch", "GuideBaselineSwitch", "PhaseSwitch", "PlateauSwitch", "RolloutWriter", "SampleLogger",
           "Throughput"]
