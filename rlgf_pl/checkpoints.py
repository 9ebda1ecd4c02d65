"""Reading checkpoints safely, and deciding which of a checkpoint's stored settings a run may override."""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from rlgf_pl.errors import CheckpointError

LIGHTNING_CKPT_KEYWORDS = ("last", "best", "hpc", "registry")
"""`ckpt_path` values Lightning resolves itself."""

ARCHITECTURE_SETTINGS = ("kind", "critic_share_trunk", "lora")
"""Model settings that change which weights a checkpoint holds: a run cannot override them."""

_FIX = "Pass a .ckpt file written by `rlgf fit` (runs/<algorithm>/version_N/checkpoints/last.ckpt)."


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint's contents, loaded with `weights_only=True` (no code from the file runs) and
    memory-mapped (no second copy of the weights), or a CheckpointError that says what the file is instead."""
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"ckpt_path {str(path)!r} is not a file. {_FIX}")
    if not zipfile.is_zipfile(file):
        raise CheckpointError(f"{file} is not a checkpoint: torch.save writes a zip archive, and this file is not "
                              f"one (it starts with {_peek(file)!r}). {_FIX}")
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:  # torch's own advice here is to unpickle it anyway: not for us to do
        raise CheckpointError(
            f"{file} holds Python objects that a safe load refuses ({_unsafe_reason(error)}). rlgf_pl loads "
            f"checkpoints with weights_only=True and does not unpickle a file on your behalf. {_FIX}") from None
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        raise CheckpointError(f"{file} cannot be read as a checkpoint ({str(error).splitlines()[0][:200]}); it may "
                              f"be truncated or corrupt. {_FIX}") from None
    if not isinstance(checkpoint, Mapping) or "state_dict" not in checkpoint:
        found = sorted(checkpoint)[:6] if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise CheckpointError(f"{file} is a torch file but not a Lightning checkpoint: it has no 'state_dict' "
                              f"(it holds {found}). {_FIX}")
    return dict(checkpoint)


def _peek(file: Path, size: int = 24) -> str:
    with file.open("rb") as handle:
        return handle.read(size).decode("utf-8", errors="replace")


def _unsafe_reason(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "Unsupported global" in line or "Unsupported operand" in line:
            return line[:200]
    return (lines[0] if lines else type(error).__name__)[:200]


def merge_stored_settings(stored_class: str | None, stored: Mapping[str, Any], given_class: str | None,
                          given: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The model settings a run uses when it loads a checkpoint.

    `stored` are the settings the checkpoint was trained with; `given` only those the user wrote (config
    files and flags, no defaults). A given value wins over the stored one where that is safe (a moved model
    directory, evaluation settings); a different algorithm class or an `ARCHITECTURE_SETTINGS` value raises
    CheckpointError. -> (the merged settings, one 'name: stored -> given' line per override)."""
    if given_class is not None and stored_class is not None and _short(given_class) != _short(stored_class):
        raise CheckpointError(
            f"The checkpoint was trained with {_short(stored_class)}, but this run's config asks for "
            f"{_short(given_class)}; the algorithms hold different weights. Use the config the checkpoint was "
            f"trained with (config.yaml in its version folder), or set model.class_path to {stored_class}.")
    stored, given = _normalized(stored), _normalized(given)
    conflicts = [f"{name}: checkpoint {stored[name]!r}, config {given[name]!r}" for name in ARCHITECTURE_SETTINGS
                 if name in stored and name in given and given[name] != stored[name]]
    if conflicts:
        raise CheckpointError(f"The config changes how the checkpoint's weights are laid out ({'; '.join(conflicts)}). "
                              "Use the values the checkpoint was trained with.")
    merged = dict(stored)
    overrides = []
    for name, value in given.items():
        if name in stored and value != stored[name]:
            overrides.append(f"{name}: {stored[name]!r} -> {value!r}")
        merged[name] = value
    return merged, overrides


def _normalized(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings in one spelling: `lora` as its full mapping (a config may leave defaults out)."""
    from dataclasses import asdict

    from rlgf_pl.policies.lora import as_lora_settings

    settings = dict(settings)
    if settings.get("lora") is not None:
        settings["lora"] = asdict(as_lora_settings(settings["lora"]))
    return settings


def _short(class_path: str) -> str:
    return class_path.rsplit(".", 1)[-1]


def state_mismatch(saved: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], limit: int = 3) -> str:
    """What keeps `saved` from loading strictly into a module whose state is `expected` ('' when it loads)."""
    missing = [key for key in expected if key not in saved]
    unexpected = [key for key in saved if key not in expected]
    reshaped = [f"{key} {tuple(saved[key].shape)} in the checkpoint, {tuple(expected[key].shape)} here"
                for key in expected if key in saved and tuple(saved[key].shape) != tuple(expected[key].shape)]
    parts = []
    for label, items in (("shapes differ", reshaped), ("missing from the checkpoint", missing),
                         ("not in this model", unexpected)):
        if items:
            more = f" and {len(items) - limit} more" if len(items) > limit else ""
            parts.append(f"{len(items)} {label} ({'; '.join(items[:limit])}{more})")
    return ", ".join(parts)
