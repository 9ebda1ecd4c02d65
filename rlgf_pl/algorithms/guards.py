"""Non-finite guards: find NaN or inf in named tensors with one device sync, and say what to do about it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor


def non_finite_names(tensors: Mapping[str, Tensor | None]) -> list[str]:
    """The names of the floating tensors that hold NaN or inf (None entries are skipped)."""
    named = [(name, tensor) for name, tensor in tensors.items()
             if isinstance(tensor, Tensor) and tensor.is_floating_point() and tensor.numel()]
    if not named:
        return []
    finite = torch.stack([torch.isfinite(_local(tensor)).all().to(named[0][1].device) for _, tensor in named])
    return [name for (name, _), ok in zip(named, finite.tolist()) if not ok]


def _local(tensor: Tensor) -> Tensor:
    """This rank's shard of a distributed tensor (DTensor), the tensor itself otherwise."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def describe(names: Iterable[str], limit: int = 4) -> str:
    """'a, b, c and 2 more'."""
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


REMEDIES = ("Large rewards overflow the value loss: scale them (model.init_args.score_scaling: std) or clip them "
            "(model.init_args.score_clip: 10); otherwise lower the learning rate, or set "
            "trainer.gradient_clip_val.")
