"""The guide: a frozen language model with its own tokenizer and decoding settings, and the writers that
let it (or the learner) continue a batch of trajectories in the learner's tokens."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from rlgf_pl.engines.base import RolloutEngine
from rlgf_pl.engines.hf import HFEngine
from rlgf_pl.errors import ConfigError
from rlgf_pl.policies.base import Policy
from rlgf_pl.policies.generation import GenerationSettings
from rlgf_pl.policies.loading import KindSetting, check_kind, load_policy
from rlgf_pl.zoo.registry import resolve_model_path


def same_vocabulary(first, second) -> bool:
    """True when two tokenizers map every token to the same id (token-level handoff is exact)."""
    if first is second:
        return True
    return first.get_vocab() == second.get_vocab() and first.eos_token_id == second.eos_token_id


class GuideBase(ABC):
    """What the environment and the sampler need of a guide: a name, a writer of learner tokens, and a
    `setup` on the rank's device. `policy` is the local network where there is one (None for a guide behind
    an API): evaluation scores the guide's fluency with it, and the context check reads its config."""

    name: str

    @property
    def policy(self) -> Policy | None:
        return None

    def setup(self, device: torch.device | str) -> GuideBase:
        """Get ready to write on `device` (load weights, reach a server); called in the data module's setup."""
        return self

    @abstractmethod
    def writer(self, learner: Policy) -> TokenWriter | TextWriter:
        """The guide as a writer of `learner` tokens."""


class Guide(GuideBase):
    """A frozen guide policy. It is held by the data module (the environment), never by the agent.

    It never enters an optimizer or a checkpoint and is always in `eval()` mode. Its weights load on first
    use (the data module's `setup`), so building or printing a config loads none.

    Args:
        model: Hugging Face hub id, local directory or zoo name of a causal or seq2seq LM.
        generation: The guide's decoding settings (`max_new_tokens` is taken from the rollout's settings).
        dtype: Weights dtype ('float32', 'bfloat16', 'float16' or null for the checkpoint's own).
        kind: 'causal', 'seq2seq', or 'auto' (from the model's config: `is_encoder_decoder`).
        chat_template: Wrap each prompt in the guide tokenizer's chat template as a user turn (with the
            generation prompt), for instruct guides. The guide's text is then handed over as text.
        system_prompt: A system turn placed before the prompt when `chat_template` is on.
    """

    def __init__(
        self,
        model: str,
        generation: GenerationSettings | None = None,
        dtype: str | None = None,
        kind: KindSetting = "auto",
        chat_template: bool = False,
        system_prompt: str | None = None,
    ) -> None:
        if system_prompt is not None and not chat_template:
            raise ConfigError("guide.system_prompt is used only with guide.chat_template=true; set both or neither.")
        check_kind(kind)
        resolve_model_path(model)  # builds a zoo guide now, before any Trainer runs; weights load on first use
        self.name = model
        self.generation = generation if generation is not None else GenerationSettings(top_k=50, top_p=0.92)
        self.dtype = dtype
        self.kind = kind
        self.chat_template = chat_template
        self.system_prompt = system_prompt
        self._policy: Policy | None = None

    @property
    def policy(self) -> Policy:
        """The frozen policy, loaded on first access."""
        if self._policy is None:
            policy = load_policy(self.name, self.kind, self.dtype)
            policy.requires_grad_(False).eval()
            if self.chat_template and not getattr(policy.tokenizer, "chat_template", None):
                raise ConfigError(f"guide.chat_template is on, but the tokenizer of {self.name!r} has no chat "
                                 "template. Turn chat_template off or use an instruct model.")
            self._policy = policy
        return self._policy

    def setup(self, device: torch.device | str) -> Guide:
        self.policy.to(device)
        return self

    def writer(self, learner: Policy) -> TokenWriter | TextWriter:
        """The guide as a writer of learner tokens: direct when vocabularies match, through text otherwise."""
        if not self.chat_template and same_vocabulary(self.policy.tokenizer, learner.tokenizer):
            return TokenWriter(self.policy, self.generation)
        return TextBridgeWriter(learner, self.policy, self.generation,
                                self.format_prompts if self.chat_template else None)

    def format_prompts(self, prompts: list[str]) -> list[str]:
        """Prompts as the guide's chat template writes a user turn followed by the assistant's turn."""
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return [self.policy.tokenizer.apply_chat_template([*system, {"role": "user", "content": prompt}],
                                                          tokenize=False, add_generation_prompt=True)
                for prompt in prompts]


class TokenWriter:
    """Continues trajectories with a policy that shares the learner's vocabulary, through a rollout engine
    (in-process `generate` by default; the learner's may be a served one)."""

    def __init__(self, policy: Policy, settings: GenerationSettings, engine: RolloutEngine | None = None) -> None:
        self.policy = policy
        self.settings = settings
        self.engine = engine if engine is not None else HFEngine()

    def write(self, query_ids: Tensor, query_mask: Tensor, prefix_ids: Tensor, prefix_mask: Tensor,
              max_new_tokens: int) -> tuple[Tensor, Tensor]:
        """Continue each learner query after its prefix of learner response tokens [B, H].

        Returns:
            new learner tokens [B, T] padded after each end, and lengths [B].
        """
        with torch.no_grad():
            return self.engine.generate(self.policy, query_ids, query_mask, with_budget(self.settings, max_new_tokens),
                                        prefix_ids, prefix_mask)


def with_budget(settings: GenerationSettings, max_new_tokens: int) -> GenerationSettings:
    """`settings` with `max_new_tokens` (and `min_new_tokens` no larger)."""
    return GenerationSettings(**{**vars(settings), "max_new_tokens": max_new_tokens,
                                 "min_new_tokens": min(settings.min_new_tokens, max_new_tokens)})


class TextWriter(ABC):
    """A writer that continues text: decode the learner's prompts and prefixes, get each continuation as text
    (`continue_texts`), and re-encode it with the learner's tokenizer where it follows prompt and prefix
    (masks live on learner tokens), with the learner's end token where the text ended.

    Args:
        learner: The learner, whose tokens the result is in.
    """

    def __init__(self, learner: Policy) -> None:
        self.learner = learner

    @abstractmethod
    def continue_texts(self, prompts: list[str], prefixes: list[str], max_new_tokens: int) -> tuple[list[str], Tensor]:
        """Each prompt's continuation after its prefix (text as it reads after prefix, leading space kept), and
        whether it ended on its own (an end token or stop string, not the length limit). -> texts, ended [B]."""

    def write(self, query_ids: Tensor, query_mask: Tensor, prefix_ids: Tensor, prefix_mask: Tensor,
              max_new_tokens: int) -> tuple[Tensor, Tensor]:
        learner = self.learner
        prompts = learner.decode(query_ids, query_mask)
        prefixes = learner.decode_after(query_ids, query_mask, prefix_ids, prefix_mask)  # as it reads after the prompt
        continuations, ended = self.continue_texts(prompts, prefixes, max_new_tokens)
        contexts = [prompt + prefix for prompt, prefix in zip(prompts, prefixes)]
        new_ids, new_mask = learner.encode_responses(contexts, continuations, max_new_tokens)
        device = query_ids.device
        return close_ended_rows(learner, new_ids.to(device), new_mask.sum(-1).to(device), ended.to(device),
                                max_new_tokens)


def close_ended_rows(learner: Policy, ids: Tensor, lengths: Tensor, ended: Tensor,
                     max_new_tokens: int) -> tuple[Tensor, Tensor]:
    """Write the learner's end token after each row whose text ended, where the budget allows. -> ids, lengths."""
    eos = learner.eos_token_id
    if eos is not None:
        closes = ended & (lengths < max_new_tokens)
        ids = torch.nn.functional.pad(ids, (0, 1), value=learner.pad_token_id)
        rows = closes.nonzero().squeeze(-1)
        ids[rows, lengths[rows]] = eos
        lengths = lengths + closes.long()
    width = max(1, int(lengths.max()) if lengths.numel() else 1)
    return ids[:, :width], lengths


class TextBridgeWriter(TextWriter):
    """A local guide with another tokenizer (or a chat template), handed over through text.

    Args:
        learner: The learner, whose tokens the result is in.
        policy: The guide's policy.
        settings: The guide's decoding settings.
        format_prompts: Turns prompt texts into the guide's prompts (its chat template), or None.
    """

    def __init__(self, learner: Policy, policy: Policy, settings: GenerationSettings, format_prompts=None) -> None:
        super().__init__(learner)
        self.policy = policy
        self.settings = settings
        self.format_prompts = format_prompts

    def continue_texts(self, prompts: list[str], prefixes: list[str], max_new_tokens: int) -> tuple[list[str], Tensor]:
        guide = self.policy
        if self.format_prompts is None:
            guide_prompts = prompts
            guide_query = guide.encode_prompts(guide_prompts, None)
        else:  # the template writes its own special tokens as text
            guide_prompts = self.format_prompts(prompts)
            guide_query = guide.encode_prompts(guide_prompts, None, add_special_tokens=False)
        guide_prefix = guide.encode_responses(guide_prompts, prefixes, None)
        settings = with_budget(self.settings, max_new_tokens)
        with torch.no_grad():
            tokens, lengths = guide.generate(*guide_query, settings, *guide_prefix)
        last = tokens.gather(1, (lengths - 1).clamp(min=0)[:, None]).squeeze(1)
        ended = (lengths > 0) & torch.isin(last, torch.tensor(guide.eos_token_ids or [-1], device=last.device))
        keep = torch.arange(tokens.shape[1], device=tokens.device) < lengths[:, None]
        return guide.decode_after(*guide_query, tokens, keep.long(), *guide_prefix), ended
