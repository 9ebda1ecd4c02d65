"""Pure tensor functions that compact ragged rows of tokens, so handoffs stay batched."""

from __future__ import annotations

import torch
from torch import Tensor


def pack(tokens: Tensor, keep: Tensor, pad_value: int, align: str) -> tuple[Tensor, Tensor]:
    """Move each row's kept tokens together, in order, to one side of a tensor just wide enough.

    Args:
        tokens: [B, S] token ids.
        keep: [B, S] bool, which tokens to keep.
        pad_value: Id written where nothing was kept.
        align: 'left' (right padding, for responses) or 'right' (left padding, for queries).

    Returns:
        packed tokens [B, W] and their mask [B, W], W = the largest number kept in a row (at least 1).
    """
    if align not in ("left", "right"):
        raise ValueError(f"align must be 'left' or 'right', got {align!r}")
    keep = keep.bool()
    counts = keep.sum(-1)
    width = max(int(counts.max().item()) if counts.numel() else 0, 1)
    rank = keep.long().cumsum(-1) - 1  # position of each kept token among its row's kept tokens
    target = rank if align == "left" else rank + (width - counts)[:, None]
    target = torch.where(keep, target, torch.full_like(target, width))  # dropped tokens go to a spill column
    packed = torch.full((tokens.shape[0], width + 1), pad_value, dtype=tokens.dtype, device=tokens.device)
    packed.scatter_(1, target, tokens)
    mask = torch.zeros((tokens.shape[0], width + 1), dtype=torch.long, device=tokens.device)
    mask.scatter_(1, target, keep.long())
    return packed[:, :width], mask[:, :width]
