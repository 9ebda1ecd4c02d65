"""The rollout sampler: batched roll-in, handoff at h, batched roll-out."""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial

import torch
from torch import Tensor

from rlgf_pl.engines.base import RolloutEngine
from rlgf_pl.errors import ConfigError
from rlgf_pl.policies.base import Policy, no_prefix
from rlgf_pl.policies.generation import GenerationSettings
from rlgf_pl.policies.guide import GuideBase, TextWriter, TokenWriter
from rlgf_pl.rollout.containers import Rollout
from rlgf_pl.rollout.packing import pack
from rlgf_pl.rollout.plan import Plan, sample_switch_index


@contextmanager
def seeded_generation(seed: int, device: torch.device):
    """Sample with a private, seeded RNG stream, leaving the global one untouched."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@contextmanager
def evaluation_mode(module: torch.nn.Module):
    """`eval()` for generation, then back to the mode it was in."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def fixed_length(writer: TokenWriter | TextWriter, budget: int) -> bool:
    """True when `writer` always writes the whole budget (its `min_new_tokens` reaches it), so a roll-in's length
    is known before it is written. Writers through text, or with an end allowed earlier, are not."""
    settings = getattr(writer, "settings", None)
    return isinstance(writer, TokenWriter) and settings is not None and settings.min_new_tokens >= budget


class RolloutSampler:
    """Generates trajectories for a plan, in the learner's tokens.

    A mixed trajectory is written in two batched generations: the roll-in policy continues every
    mixing prompt, each row is cut at its own switch index h, and the roll-out policy continues every
    query after its ragged prefix, prefilled in one pass (each policy kind knows where a prefix goes: after
    a causal LM's prompt, or behind a seq2seq decoder's start token). The total length never exceeds
    `settings.max_new_tokens`.

    Roll-ins stop at the switch point where the plan allows it: when the roll-in writer cannot end before the
    budget (its `min_new_tokens` reaches it, so every roll-in has length L = budget), h is drawn before the
    roll-in and the roll-in writes max(h) tokens instead of the whole budget. The tokens before h are the ones a
    full roll-in would have written (the same random stream, step by step), so only the wasted tail is saved.

    Args:
        learner: The policy being trained.
        settings: The learner's decoding settings (its `max_new_tokens` bounds every trajectory).
        guide: The frozen guide, or None for plans that do not use one.
        max_prompt_tokens: Prompts longer than this are cut from the left.
        engine: What writes the learner's tokens (default: in-process `generate`, `HFEngine`).
    """

    def __init__(
        self,
        learner: Policy,
        settings: GenerationSettings,
        guide: GuideBase | None = None,
        max_prompt_tokens: int = 64,
        engine: RolloutEngine | None = None,
    ) -> None:
        self.learner = learner
        self.settings = settings
        self.max_prompt_tokens = max_prompt_tokens
        self.writers: dict[str, TokenWriter | TextWriter] = {"learner": TokenWriter(learner, settings, engine)}
        if guide is not None:
            self.writers["guide"] = guide.writer(learner)

    def sample(self, prompts: list[str], references: list[list[str]], plan: Plan, generator: torch.Generator,
               group_size: int = 1) -> Rollout:
        """Trajectories for `prompts` under `plan`, all randomness drawn from `generator` (CPU). With a plan that
        shares its roll-in, each `group_size` consecutive rows (one prompt's samples) share one draw."""
        if plan.uses_guide and "guide" not in self.writers:
            raise ConfigError(f"The plan {plan} needs a guide, but the data module has none: set data.init_args.guide.")
        batch = len(prompts)
        if plan.shared_rollin and batch % group_size:
            raise ConfigError(f"{batch} prompts do not split into groups of samples_per_prompt={group_size}.")
        mix = torch.rand(batch, generator=generator) < plan.beta
        uniform = torch.rand(batch, generator=generator)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        device = self.learner.device
        query_ids, query_mask = self.learner.encode_prompts(prompts, self.max_prompt_tokens)
        with evaluation_mode(self.learner), seeded_generation(seed, device):
            rollout = self._generate(query_ids, query_mask, plan, mix.to(device), uniform.to(device),
                                     group_size if plan.shared_rollin else 1, references)
        response_ids, response_mask, learner_mask, guide_mask, switch_index = rollout
        return Rollout(
            query_ids=query_ids,
            query_mask=query_mask,
            response_ids=response_ids,
            response_mask=response_mask,
            learner_mask=learner_mask,
            guide_mask=guide_mask,
            switch_index=switch_index,
            prompts=self.learner.decode(query_ids, query_mask),
            continuations=self.learner.decode_after(query_ids, query_mask, response_ids, response_mask),
            references=references,
        )

    def _write_rows(self, writer: str, rows: Tensor, batch: int, query_ids: Tensor, query_mask: Tensor,
                    prefix_ids: Tensor, prefix_mask: Tensor, budget: int,
                    references: list[list[str]] | None = None) -> tuple[Tensor, Tensor]:
        """`writer`'s continuation of the given rows, placed in a [batch, W] tensor (other rows empty). A writer
        that `needs_references` (ReferenceGuide's) also gets the rows' references."""
        device = query_ids.device
        write = self.writers[writer].write
        if getattr(self.writers[writer], "needs_references", False):
            write = partial(write, references=[references[i] for i in rows.tolist()] if references else None)
        if rows.numel() == batch:
            return write(query_ids, query_mask, prefix_ids, prefix_mask, budget)
        ids = torch.full((batch, 1), self.learner.pad_token_id, dtype=torch.long, device=device)
        lengths = torch.zeros(batch, dtype=torch.long, device=device)
        if rows.numel():
            tokens, written = write(query_ids[rows], query_mask[rows], prefix_ids[rows], prefix_mask[rows], budget)
            ids = torch.full((batch, tokens.shape[1]), self.learner.pad_token_id, dtype=torch.long, device=device)
            ids[rows], lengths[rows] = tokens, written
        return ids, lengths

    def _generate(self, query_ids: Tensor, query_mask: Tensor, plan: Plan, mix: Tensor, uniform: Tensor,
                  group_size: int = 1, references: list[list[str]] | None = None):
        budget = self.settings.max_new_tokens
        batch = query_ids.shape[0]
        device = query_ids.device
        pad = self.learner.pad_token_id
        leaders = torch.arange(batch, device=device) % group_size == 0
        leader_of = torch.arange(batch, device=device) // group_size * group_size
        mix, uniform = mix[leader_of], uniform[leader_of]  # one draw per group (the identity when group_size = 1)
        writes_rollin = leaders & (plan.leader_keeps_rollin | (mix & plan.mixes))
        rollin_ids = torch.full((batch, 1), pad, dtype=torch.long, device=device)
        rollin_lengths = torch.zeros(batch, dtype=torch.long, device=device)
        cut = plan.needs_rollin and not plan.leader_keeps_rollin and fixed_length(self.writers[plan.rollin], budget)
        early = sample_switch_index(mix & plan.mixes, torch.full_like(rollin_lengths, budget), uniform) if cut else None
        if bool(writes_rollin.any()):
            rows = writes_rollin.nonzero().squeeze(-1)
            rollin_budget = max(int(early[rows].max()), 1) if cut else budget  # only the tokens before h are kept
            rollin_ids, rollin_lengths = self._write_rows(plan.rollin, rows, batch, query_ids, query_mask,
                                                          *no_prefix(query_ids), rollin_budget, references)
            rollin_ids, rollin_lengths = rollin_ids[leader_of], rollin_lengths[leader_of]  # the group's roll-in
        switch_index = early if cut else sample_switch_index(mix & plan.mixes, rollin_lengths, uniform)
        positions = torch.arange(rollin_ids.shape[1], device=device)
        prefix_ids, prefix_mask = pack(rollin_ids, positions[None, :] < switch_index[:, None], pad, align="left")
        remaining = budget - switch_index
        # a leader that keeps its roll-in writes no roll-out: its roll-in is its whole trajectory
        keeps_rollin = leaders & plan.leader_keeps_rollin
        rollout_rows = (~keeps_rollin).nonzero().squeeze(-1)
        rollout_ids, rollout_lengths = self._write_rows(
            plan.rollout, rollout_rows, batch, query_ids, query_mask, prefix_ids, prefix_mask,
            int(remaining[rollout_rows].max()) if rollout_rows.numel() else 1, references)
        rollout_lengths = torch.minimum(rollout_lengths, remaining)
        rollin_kept = torch.where(keeps_rollin, rollin_lengths, switch_index)
        prefix_keep = positions[None, :] < rollin_kept[:, None]
        rollout_keep = torch.arange(rollout_ids.shape[1], device=device)[None, :] < rollout_lengths[:, None]
        response_ids, response_mask = pack(
            torch.cat([rollin_ids, rollout_ids], 1), torch.cat([prefix_keep, rollout_keep], 1), pad, align="left"
        )
        in_prefix = torch.arange(response_ids.shape[1], device=device)[None, :] < rollin_kept[:, None]
        written_by_rollin = in_prefix & response_mask.bool()
        written_by_rollout = ~in_prefix & response_mask.bool()
        learner_mask = torch.zeros_like(response_mask, dtype=torch.bool)
        if plan.rollin == "learner":
            learner_mask |= written_by_rollin
        if plan.rollout == "learner":
            learner_mask |= written_by_rollout
        guide_mask = response_mask.bool() & ~learner_mask
        return response_ids, response_mask, learner_mask.long(), guide_mask.long(), switch_index
