"""The `rlgf` command: a LightningCLI over the rlgf_pl algorithms and the rollout data module.

    rlgf fit --config configs/toy/ppo.yaml
    rlgf test --config configs/toy/ppo.yaml --ckpt_path runs/.../last.ckpt
    rlgf zoo list | rlgf zoo build [NAME ...]
"""

from __future__ import annotations

import os
import sys

from jsonargparse import Namespace
from lightning.pytorch.cli import LightningCLI

from rlgf_pl.algorithms.base import RLGFModule
from rlgf_pl.data.datamodule import RolloutDataModule


class RLGFCLI(LightningCLI):
    """LightningCLI with model and data in subclass mode and omegaconf interpolation in configs."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {key: value for key, value in LightningCLI.subcommands().items() if key in ("fit", "validate", "test")}

    def before_instantiate_classes(self) -> None:
        """Default logger: TensorBoard under `{default_root_dir}/{algorithm}/version_N`, so runs of
        different algorithms sharing one trainer config land in separate folders."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.trainer.logger in (None, True):
            algorithm = str(config.model.class_path).rsplit(".", 1)[-1].lower()
            root = config.trainer.default_root_dir or "runs"
            config.trainer.logger = Namespace(
                class_path="lightning.pytorch.loggers.TensorBoardLogger",
                init_args=Namespace(save_dir=str(root), name=algorithm),
            )


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
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["zoo"]:
        from rlgf_pl.zoo.registry import zoo_main

        raise SystemExit(zoo_main(words[1:]))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    build_cli(argv)  # None: LightningCLI reads sys.argv itself


if __name__ == "__main__":
    main()
