"""The environment side: the rollout data module, the SFT data module and tasks."""

from rlgf_pl.data.datamodule import RolloutDataModule
from rlgf_pl.data.sft_datamodule import SFTDataModule
from rlgf_pl.data.tasks import PromptTask, TextFilesTask, ToyTask

__all__ = ["PromptTask", "RolloutDataModule", "SFTDataModule", "TextFilesTask", "ToyTask"]
