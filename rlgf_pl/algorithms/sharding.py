"""What the agent needs of a sharding strategy (FSDP, DeepSpeed ZeRO) outside Lightning's own steps.

Lightning runs `training_step`, `validation_step` and `test_step` through the wrapped model, so the
strategy gathers parameters there itself. The rollouts of an epoch are collected in `on_train_epoch_start`,
outside any forward call: there the full parameters are gathered once (`full_parameters`) and generation
runs locally. Generation inside a step (evaluation) goes through each wrapped unit's forward, one collective
per step; `synced_gpus` keeps every rank stepping until all have finished, so ranks whose rows end at
different lengths never wait on each other forever.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

from lightning.pytorch import Trainer

from rlgf_pl.errors import ConfigError


def _is_fsdp(strategy) -> bool:
    from lightning.pytorch.strategies import FSDPStrategy

    return isinstance(strategy, FSDPStrategy)


def _is_zero3(strategy) -> bool:
    return type(strategy).__name__ == "DeepSpeedStrategy" and bool(getattr(strategy, "zero_stage_3", False))


def shards_parameters(trainer: Trainer) -> bool:
    """True when the trainer's strategy splits parameters across ranks (FSDP, DeepSpeed ZeRO-3)."""
    strategy = trainer.strategy
    return trainer.world_size > 1 and (_is_fsdp(strategy) or _is_zero3(strategy))


def prepare_strategy(trainer: Trainer) -> None:
    """Settings a strategy needs for this agent, applied before it wraps the module (from `configure_model`).

    FSDP must keep the original parameters (`use_orig_params=True`): the agent has frozen parameters (the
    reference, a LoRA base) beside trained ones, and gives the critics their own learning rate.
    """
    strategy = trainer.strategy
    if not _is_fsdp(strategy):
        return
    if strategy.kwargs.get("use_orig_params") is False:
        raise ConfigError("FSDP needs use_orig_params: true here: the agent mixes frozen and trained parameters and "
                          "gives critics their own learning rate. Remove use_orig_params: false from the strategy.")
    strategy.kwargs["use_orig_params"] = True


@contextmanager
def full_parameters(trainer: Trainer | None) -> Iterator[None]:
    """Gather every parameter of the wrapped module for the block (read-only), under FSDP or ZeRO-3; elsewhere
    a no-op. Not for use inside a forward call."""
    if trainer is None or not shards_parameters(trainer):
        yield
        return
    strategy = trainer.strategy
    if _is_fsdp(strategy):
        from torch.distributed.fsdp import FullyShardedDataParallel

        gather = FullyShardedDataParallel.summon_full_params(strategy.model, writeback=False, recurse=True)
    elif _is_zero3(strategy):
        import deepspeed

        gather = deepspeed.zero.GatheredParameters(list(strategy.model.parameters()), modifier_rank=None)
    else:
        gather = nullcontext()
    with gather:
        yield
