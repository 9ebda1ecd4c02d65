"""Train zoo models with the project's own SFT module (the same code path users run)."""

from __future__ import annotations

from pathlib import Path

import lightning as L

from rlgf_pl.algorithms.sft import SFT
from rlgf_pl.data.sft_datamodule import SFTDataModule
from rlgf_pl.data.tasks.base import PromptTask


def train_sft(
    model: str | Path,
    task: PromptTask,
    output_dir: Path,
    epochs: int = 1,
    lr: float = 5e-4,
    batch_size: int = 16,
    max_length: int = 128,
    seed: int = 0,
    max_steps: int = -1,
) -> None:
    """Fine-tune `model` on `task`'s texts and `save_pretrained` the result into `output_dir`."""
    L.seed_everything(seed, verbose=False)
    module = SFT(model=str(model), lr=lr)
    data = SFTDataModule(task, max_length=max_length, batch_size=batch_size, seed=seed)
    trainer = L.Trainer(
        max_epochs=epochs, max_steps=max_steps, accelerator="auto", devices=1, logger=False,
        enable_checkpointing=False, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
        deterministic=True,
    )
    trainer.fit(module, datamodule=data)
    module.save_pretrained(output_dir)
