"""Reference continuations as supervised targets (TRIL's target regularization, the `sft_coef` term)."""

from __future__ import annotations

import torch
from torch import Tensor

from rlgf_pl.errors import ConfigError
from rlgf_pl.policies.base import Policy
from rlgf_pl.utils.text import joined_reference


def draw_references(references: list[list[str]], generator: torch.Generator) -> list[str | None]:
    """One reference per row, uniformly among the row's own (None for a row without references). One draw per
    row from `generator`, whatever the counts, so the stream it leaves does not depend on the data."""
    counts = torch.tensor([len(row) for row in references], dtype=torch.float64)
    picks = (torch.rand(len(references), generator=generator, dtype=torch.float64) * counts).long()
    return [row[int(pick)] if row else None for row, pick in zip(references, picks)]


def with_end_token(ids: Tensor, mask: Tensor, end_token_id: int | None, keep: Tensor) -> tuple[Tensor, Tensor]:
    """Append `end_token_id` after the last real token of each row where `keep` is True.

    Args:
        ids, mask: [B, T] right-padded tokens, T >= 1.
        end_token_id: The token to append; None appends nothing.
        keep: [B] bool, the rows that get it.
    Returns:
        ids, mask [B, T + 1] (unchanged when `end_token_id` is None).
    """
    if end_token_id is None:
        return ids, mask
    ids = torch.cat([ids, ids[:, -1:]], dim=1)  # the new column: padding, except on the longest rows
    mask = torch.nn.functional.pad(mask, (0, 1), value=0)
    lengths = mask.sum(dim=1, keepdim=True)
    ids = ids.scatter(1, lengths, torch.full_like(lengths, end_token_id))
    mask = mask.scatter(1, lengths, keep.to(mask.dtype).unsqueeze(1))
    return ids, mask


def reference_targets(policy: Policy, prompts: list[str], references: list[list[str]], max_tokens: int,
                      generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The target of each row: one of its references, in the policy's tokens as it would write them after
    the prompt (for a causal learner, read as it follows the prompt's text: `joined_reference`), closed by its
    end token and cut to `max_tokens`.

    Returns:
        ids, mask [B, U], right-padded; the mask is all zero on rows without references.
    Raises:
        ConfigError: when no row has a reference.
    """
    drawn = draw_references(references, generator)
    if all(text is None for text in drawn):
        raise ConfigError("sft_coef > 0 trains on reference continuations, but no prompt of this epoch has any: use "
                          "a task whose rows carry 'references' (CommonGen, the concept task), or set sft_coef: 0.")
    # a causal learner continues the prompt's text: the reference must read as it would follow it (a separating
    # space put back), or its first word merges with the prompt's last and is lost from the target
    texts = [("" if text is None else joined_reference(prompt, text) if policy.continues_prompt_text else text)
             for prompt, text in zip(prompts, drawn)]
    ids, mask = policy.encode_responses(prompts, texts, None)
    has_reference = torch.tensor([text is not None for text in drawn], device=ids.device)
    ids, mask = with_end_token(ids, mask, policy.eos_token_id, has_reference)
    return ids[:, :max_tokens], mask[:, :max_tokens]
