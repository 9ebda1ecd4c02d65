"""The `rlgf` command: a LightningCLI over the rlgf_pl algorithms and the rollout data module.

    rlgf fit --config configs/toy/ppo.yaml
    rlgf test --config configs/toy/ppo.yaml --ckpt_path runs/.../last.ckpt
    rlgf zoo list | rlgf zoo build [NAME ...]
    rlgf serve MODEL --port 8000   (an OpenAI-compatible server for a guide; see rlgf_pl/serving/)
    rlgf export --config configs/toy/ppo.yaml --ckpt_path .../last.ckpt --out DIR [--adapter-only]
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.cli import LightningCLI

from rlgf_pl.algorithms.base import RLGFModule
from rlgf_pl.checkpoints import LIGHTNING_CKPT_KEYWORDS, merge_stored_settings, read_checkpoint
from rlgf_pl.config_errors import RLGFArgumentParser
from rlgf_pl.data.datamodule import RolloutDataModule
from rlgf_pl.errors import TRACEBACK_VARIABLE, ConfigError, UserInputError


class RLGFCLI(LightningCLI):
    """LightningCLI with model and data in subclass mode and omegaconf interpolation in configs."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {key: value for key, value in LightningCLI.subcommands().items() if key in ("fit", "validate", "test")}

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--callbacks", type=list[Callback] | None, default=None,
                            help="Callbacks added to the trainer's own (which a config's `trainer:` file sets and "
                                 "keeps), e.g. the D2LOLS switch: a top-level `callbacks:` list in the config.")

    def parse_arguments(self, parser, args) -> None:
        self._arguments = args  # kept to tell the settings the user wrote from defaults (_parse_ckpt_path)
        super().parse_arguments(parser, args)

    def _parse_ckpt_path(self) -> None:
        """With `--ckpt_path`: read the file safely (named errors for what is not a checkpoint) and take the
        model settings it was trained with, except those the user wrote, which win where that is safe (a moved
        model directory) and raise a named error where it is not (another algorithm or weight layout)."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not is_checkpoint_file(ckpt_path):
            return
        stored = dict(read_checkpoint(ckpt_path).get("hyper_parameters") or {})
        stored.pop("_instantiator", None)
        stored_class = stored.pop("_class_path", None)
        if not stored:
            return
        given_class, given = self._model_settings_given(subcommand)
        merged, overrides = merge_stored_settings(stored_class, stored, given_class, given)
        if overrides:
            _say(f"rlgf: these settings override the checkpoint's: {'; '.join(overrides)}")
        model = {"class_path": stored_class, "dict_kwargs": merged} if stored_class else merged
        self.config = self.parser.parse_object({subcommand: {"model": model}}, self.config)

    def _model_settings_given(self, subcommand: str) -> tuple[str | None, dict[str, Any]]:
        """The model class path and init args the user wrote in config files and flags (no defaults)."""
        arguments = self._arguments
        if isinstance(arguments, (dict, Namespace)):
            given = Namespace(arguments) if isinstance(arguments, dict) else arguments
        else:
            given = self.parser.parse_args(sys.argv[1:] if arguments is None else arguments, defaults=False)
            given = given.get(subcommand) or Namespace()
        model = given.get("model")
        if not isinstance(model, Namespace):
            return None, {}
        init_args = model.get("init_args") or Namespace()
        return model.get("class_path"), _plain(init_args)

    _reserved: Path | None = None

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except BaseException:
            if self._reserved is not None:
                with contextlib.suppress(OSError):
                    self._reserved.rmdir()  # nothing ran: give the folder back (only while it is empty)
            raise

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        except BaseException:
            if self.trainer.is_global_zero:
                remove_unused_log_dir(self.trainer)
            raise

    def before_instantiate_classes(self) -> None:
        """Top-level `callbacks` join `trainer.callbacks`. Default logger: TensorBoard under
        `{default_root_dir}/{algorithm}/version_N`, so runs of different algorithms sharing one trainer config land
        in separate folders (N: the next free one, claimed by creating it, so runs started side by side never
        share one); with `--ckpt_path` into such a folder (a resumed fit, a test), that same folder, and
        the config is saved as `config.{fit,test}.yaml` beside the fit's `config.yaml`."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.get("callbacks"):  # the top-level list joins the trainer's callbacks, which it does not replace
            own = config.trainer.callbacks
            own = [] if own is None else list(own) if isinstance(own, list) else [own]
            config.trainer.callbacks, config.callbacks = [*own, *config.callbacks], None
        if config.trainer.logger in (None, True):
            algorithm = str(config.model.class_path).rsplit(".", 1)[-1].lower()
            root = config.trainer.default_root_dir or "runs"
            logger = Namespace(save_dir=str(root), name=algorithm)
            run = run_folder_of(config.get("ckpt_path"), Path(root) / algorithm)
            if run is not None:  # resume or test a run of this folder: its logs, results and TensorBoard stay one run
                logger.version = run.name
                if (run / "config.yaml").is_file():  # the fit's own config is kept as it was written
                    self.save_config_kwargs = {**self.save_config_kwargs, "config_filename": f"config.{self.subcommand}.yaml"}
            elif rank_zero_only.rank == 0:  # other ranks write no logs; their checkpoints follow rank 0's folder
                self._reserved = reserve_run_folder(Path(root) / algorithm)
                logger.version = self._reserved.name
            config.trainer.logger = Namespace(class_path="lightning.pytorch.loggers.TensorBoardLogger", init_args=logger)


def _plain(value: Any) -> Any:
    return value.as_dict() if isinstance(value, Namespace) else value


@rank_zero_only
def _say(line: str) -> None:
    print(line, file=sys.stderr)


def is_checkpoint_file(ckpt_path: str | None) -> bool:
    """Whether `--ckpt_path` names a file, not nothing or one of Lightning's keywords ('last', 'best', ...)."""
    return bool(ckpt_path) and str(ckpt_path).split(":")[0] not in LIGHTNING_CKPT_KEYWORDS


def run_folder_of(ckpt_path: str | None, runs_of_algorithm: Path) -> Path | None:
    """The run folder (`{runs_of_algorithm}/version_K`) that holds checkpoint `ckpt_path` in its `checkpoints/`,
    or None: no checkpoint, a keyword such as 'last', or a checkpoint from elsewhere (a run with another
    default_root_dir starts its own folder)."""
    if not is_checkpoint_file(ckpt_path):
        return None
    checkpoint = Path(ckpt_path).resolve()
    run = checkpoint.parent.parent
    if checkpoint.parent.name != "checkpoints" or run.parent != runs_of_algorithm.resolve() or not run.is_dir():
        return None
    return run


def reserve_run_folder(runs_of_algorithm: Path) -> Path:
    """Create and return the next free `version_N` folder. The creation is what claims it (atomic), so runs
    started side by side on one `default_root_dir` never share a folder, its checkpoints or its logs."""
    try:
        runs_of_algorithm.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"Cannot create the run folder {runs_of_algorithm} ({error.strerror or error}): set "
                          "trainer.default_root_dir to a folder you can write.") from None
    taken = [int(path.name.removeprefix("version_")) for path in runs_of_algorithm.glob("version_*")
             if path.name.removeprefix("version_").isdigit()]
    number = max(taken, default=-1) + 1
    while True:
        folder = runs_of_algorithm / f"version_{number}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            number += 1


def remove_unused_log_dir(trainer: Trainer) -> None:
    """After a failed run, delete its logger's `version_N` folder if the run left nothing worth keeping there:
    no checkpoint, no test results, and (for fit) not one optimizer step. Its empty parent goes too."""
    logger = trainer.logger
    log_dir = getattr(logger, "log_dir", None) if logger is not None else None
    if log_dir is None or not Path(log_dir).name.startswith("version_") or not Path(log_dir).is_dir():
        return
    log_dir = Path(log_dir)
    kept = [path for path in log_dir.rglob("*") if path.suffix == ".ckpt" or path.name.startswith("test_results")]
    if kept or (trainer.state.fn == "fit" and trainer.global_step > 0):
        return
    shutil.rmtree(log_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        log_dir.parent.rmdir()  # only when empty


def build_cli(args: list[str] | None = None, run: bool = True) -> RLGFCLI:
    return RLGFCLI(
        RLGFModule,
        RolloutDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        parser_kwargs={"parser_mode": "omegaconf"},
        parser_class=RLGFArgumentParser,
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
    if words[:1] == ["serve"]:
        from rlgf_pl.serving import serve_main

        raise SystemExit(serve_main(words[1:]))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if "" not in sys.path and os.getcwd() not in sys.path:
        # `python -m` puts the working directory on the path, the `rlgf` console script does not: a user's own
        # module next to the config (class_path: myrl.MyReward) resolves either way
        sys.path.insert(0, os.getcwd())
    try:
        if words[:1] == ["export"]:
            from rlgf_pl.export import export_main

            export_main(words[1:])
            return
        build_cli(argv)  # None: LightningCLI reads sys.argv itself
    except Exception as error:
        cause = user_input_error(error)
        if cause is None or os.environ.get(TRACEBACK_VARIABLE, "") not in ("", "0"):
            raise
        print(f"rlgf: error: {cause}\n(set {TRACEBACK_VARIABLE}=1 to see the traceback)", file=sys.stderr)
        raise SystemExit(1) from None


def user_input_error(error: BaseException | None) -> UserInputError | None:
    """The UserInputError behind `error`, also where a library wrapped it (jsonargparse re-raises errors from a
    class's __init__ as its own ValueError)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UserInputError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


if __name__ == "__main__":
    main()
