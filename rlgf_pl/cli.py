"""The `rlgf` command: a LightningCLI over the rlgf_pl algorithms and the rollout data module.

    rlgf fit --config configs/toy/ppo.yaml
    rlgf test --config configs/toy/ppo.yaml --ckpt_path runs/.../last.ckpt
    rlgf zoo list | rlgf zoo build [NAME ...]
"""

from __future__ import annotations

import os
import sys

from lightning.pytorch.cli import LightningCLI

from rlgf_pl.algorithms.base import RLGFModule
from rlgf_pl.data.datamodule import RolloutDataModule


class RLGFCLI(LightningCLI):
    """LightningCLI with model and data in subclass mode and omegaconf interpolation in configs."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {key: value for key, value in LightningCLI.subcommands().items() if key in ("fit", "validate", "test")}


def build_cli(args: list[str] | None = None, run: bool = True) -> RLGFCLI:
    return RLGFCLI(
        RLGFModule,
        RolloutDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        parser_kwargs={"parser_mode": "omegaconf"},
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
        args=args,
        run=run,
    )


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["zoo"]:
        from rlgf_pl.zoo.registry import zoo_main

        raise SystemExit(zoo_main(argv[1:]))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    build_cli(argv)


if __name__ == "__main__":
    main()
