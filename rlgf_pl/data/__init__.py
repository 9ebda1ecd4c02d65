"""The environment side: the rollout data module and tasks."""

from rlgf_pl.data.datamodule import RolloutDataModule
from rlgf_pl.data.tasks import PromptTask, TextFilesTask, ToyTask

__all__ = ["PromptTask", "RolloutDataModule", "TextFilesTask", "ToyTask"]
