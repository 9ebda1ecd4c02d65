"""`ReferenceGuide`: an oracle-like guide for tasks with references. It writes no text of its own: it hands
over the task's reference, in the learner's tokens, from the switch point on.

The top of a guide ladder: with a reference at hand, how far can a guide's help go? In a roll-in (PPO++) it
writes the reference's first h tokens; in a roll-out (AggreVaTeD, LOLS, D2LOLS) the learner has written h
tokens and the reference continues from its own token h, so the trajectory reads as the learner's start and
the reference's end. A row's first reference is used. Where the reference has no tokens left after h, the
guide ends the row at once.

    guide:
      class_path: rlgf_pl.policies.ReferenceGuide
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlgf_pl.policies.base import Policy
from rlgf_pl.policies.guide import GuideBase, close_ended_rows
from rlgf_pl.utils.text import joined_reference


class ReferenceGuide(GuideBase):
    """A guide that writes each prompt's first reference (see the module's docstring)."""

    name = "reference"

    def writer(self, learner: Policy) -> ReferenceWriter:
        return ReferenceWriter(learner)


class ReferenceWriter:
    """Writes the reference's learner tokens after each row's prefix. `needs_references`: the sampler passes
    each row's references to `write`."""

    needs_references = True

    def __init__(self, learner: Policy) -> None:
        self.learner = learner

    def write(self, query_ids: Tensor, query_mask: Tensor, prefix_ids: Tensor, prefix_mask: Tensor,
              max_new_tokens: int, references: list[list[str]] | None = None) -> tuple[Tensor, Tensor]:
        if references is None or len(references) != query_ids.shape[0]:
            raise ValueError("ReferenceWriter needs one list of references per row.")
        learner, device = self.learner, query_ids.device
        prompts = learner.decode(query_ids, query_mask)
        texts = [rows[0] if rows else "" for rows in references]
        if learner.continues_prompt_text:  # the reference as it reads after its prompt (a space put back)
            texts = [joined_reference(prompt, text) if text else text for prompt, text in zip(prompts, texts)]
        reference_ids, reference_mask = learner.encode_responses(prompts, texts, None)
        reference_ids, total = reference_ids.to(device), reference_mask.sum(1).to(device)
        start = prefix_mask.sum(1)  # the switch point: the reference continues from its own token h
        positions = start[:, None] + torch.arange(max_new_tokens, device=device)[None, :]
        lengths = (total - start).clamp(0, max_new_tokens)
        ids = reference_ids.gather(1, positions.clamp(max=reference_ids.shape[1] - 1))
        keep = torch.arange(max_new_tokens, device=device)[None, :] < lengths[:, None]
        ids = ids.masked_fill(~keep, learner.pad_token_id)
        return close_ended_rows(learner, ids, lengths, total - start <= max_new_tokens, max_new_tokens)
