"""LoRA adapters (peft) on a learner or critic trunk, and the base network with its adapters switched off.

The adapters are injected into the Hugging Face model in place, so the policy keeps the model's own class
(its `generate`, `base_model`, encoder and decoder) and only the adapters train. The KL reference is the
same network with its adapters disabled, not a second copy of the weights.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from torch import nn

from rlgf_pl.errors import ConfigError


@dataclass
class LoraSettings:
    """Low-rank adapters on the learner (and on a critic's own trunk).

    Attributes:
        r: Rank of each adapter.
        alpha: Scaling numerator (the update is `alpha / r * B A`).
        dropout: Dropout on the adapters' input. 0 keeps PPO's ratio exact at the first minibatch (all other
            dropout in the model is switched off, as for full fine-tuning).
        target_modules: Names (or a regex) of the layers to adapt; 'all-linear' adapts every linear layer but
            the output head; null uses peft's default for the architecture (the attention projections).
    """

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list[str] | str | None = None

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ConfigError(f"lora.r must be >= 1, got {self.r}.")
        if not self.alpha > 0:
            raise ConfigError(f"lora.alpha must be > 0, got {self.alpha}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"lora.dropout must lie in [0, 1), got {self.dropout}.")

    def peft_config(self):
        from peft import LoraConfig

        targets = list(self.target_modules) if isinstance(self.target_modules, (list, tuple)) else self.target_modules
        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout, target_modules=targets)


def as_lora_settings(value: LoraSettings | dict | None) -> LoraSettings | None:
    """The settings from a config's mapping (a checkpoint's hyperparameters store them as a dict)."""
    if value is None or isinstance(value, LoraSettings):
        return value
    if isinstance(value, dict):
        unknown = set(value) - set(LoraSettings.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"Unknown lora settings {sorted(unknown)}; use r, alpha, dropout and target_modules.")
        return LoraSettings(**value)
    raise ConfigError(f"lora must be a mapping of r, alpha, dropout and target_modules, or null; got {value!r}.")


def add_adapters(model: nn.Module, settings: LoraSettings) -> nn.Module:
    """Inject LoRA adapters into `model` in place and freeze everything else. Returns `model`."""
    try:
        from peft import get_peft_model
    except ImportError as error:
        raise ConfigError("LoRA needs the `peft` package: pip install peft") from error
    if has_adapters(model):
        raise ConfigError(f"{type(model).__name__} already has adapters; LoRA is added once.")
    try:
        with warnings.catch_warnings():  # GPT-2's Conv1D layers: peft sets fan_in_fan_out itself and says so
            warnings.filterwarnings("ignore", message="fan_in_fan_out is set to False")
            get_peft_model(model, settings.peft_config())
    except ValueError as error:
        raise ConfigError(
            f"peft could not put LoRA adapters on {type(model).__name__}: {str(error).splitlines()[0]} "
            "Set model.init_args.lora.target_modules to the names of its linear layers (or 'all-linear')."
        ) from error
    return model


def tuner_layers(model: nn.Module) -> Iterator[nn.Module]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return (module for module in model.modules() if isinstance(module, BaseTunerLayer))


def has_adapters(model: nn.Module) -> bool:
    try:
        return next(tuner_layers(model), None) is not None
    except ImportError:
        return False


@contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[None]:
    """Run the block on the base network: every adapter of `model` off, then on again (trainable, as before)."""
    layers = list(tuner_layers(model))
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield
    finally:
        for layer in layers:
            layer.enable_adapters(True)
