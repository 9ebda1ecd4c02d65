"""rlgf_pl: reinforcement learning with a guide policy for language models, on PyTorch Lightning."""

__version__ = "0.1.0"
