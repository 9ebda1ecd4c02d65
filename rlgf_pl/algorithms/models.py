"""The agent's networks: learner policy, frozen reference and critics, built from the config's names."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from rlgf_pl.errors import ConfigError
from rlgf_pl.policies.base import Policy
from rlgf_pl.policies.critic import ValueModel
from rlgf_pl.policies.loading import KindSetting, load_backbone, load_policy, load_tokenizer, policy_kind
from rlgf_pl.policies.lora import LoraSettings, add_adapters


def disable_dropout(model: nn.Module) -> None:
    """PPO ratios assume the same network at collection and update time, so dropout is switched off."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


@dataclass
class AgentModels:
    """What `RLGFModule.configure_model` registers.

    Attributes:
        policy: The learner.
        reference: A frozen copy of the learner's initial weights (the KL anchor), or with LoRA the learner's
            network with its adapters disabled; never checkpointed.
        critic: The learner's critic, or None for a critic-free algorithm.
        guide_critic: The critic of the guide's roll-outs (AggreVaTeD phases), or None.
    """

    policy: Policy
    reference: Policy
    critic: ValueModel | None
    guide_critic: ValueModel | None


def check_critic_model(critic_model: str, model: str, policy: Policy) -> None:
    """A critic trunk from another model must read the learner's token ids, the learner's way."""
    if load_tokenizer(critic_model).get_vocab() != policy.tokenizer.get_vocab():
        raise ConfigError(
            f"critic_model {critic_model!r} has a different tokenizer from the learner {model!r}; the critic reads "
            "the learner's token ids. Use a critic model with the learner's tokenizer, or leave critic_model unset."
        )
    critic_kind = policy_kind(critic_model)
    if policy.kind == "seq2seq" and critic_kind != "seq2seq":
        raise ConfigError(
            f"critic_model {critic_model!r} is a {critic_kind} model, but the learner {model!r} is seq2seq: its "
            "critic reads decoder states over the encoded prompt. Use a seq2seq critic_model or leave it unset."
        )


def build_agent_models(model: str, kind: KindSetting, dtype: str | None, critic_model: str | None,
                       critic_share_trunk: bool, with_guide_critic: bool,
                       lora: LoraSettings | None = None, with_critic: bool = True) -> AgentModels:
    """Load the learner, copy its reference, and build the critics (see `RLGFModule` for the options; none
    without `with_critic`). With `lora`, the learner and each critic's own trunk get adapters (their dropout is
    the adapters' own)."""
    policy = load_policy(model, kind, dtype)
    disable_dropout(policy.model)
    if lora is not None:
        add_adapters(policy.model, lora)
    if critic_model is not None and with_critic:
        check_critic_model(critic_model, model, policy)

    def critic(share_trunk: bool) -> ValueModel:
        if share_trunk:
            return ValueModel(policy.trunk, type(policy))
        trunk = load_backbone(critic_model or model, dtype=dtype)
        disable_dropout(trunk)
        if lora is not None:
            add_adapters(trunk, lora)
        return ValueModel(trunk, type(policy))

    return AgentModels(policy, policy.frozen_copy(), critic(critic_share_trunk) if with_critic else None,
                       critic(False) if with_guide_critic and with_critic else None)
