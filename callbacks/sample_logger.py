"""Show what learner and guide write for a few fixed validation prompts, in TensorBoard's Text tab."""

from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from rlgf_pl.errors import ConfigError
from rlgf_pl.rollout.plan import GUIDE_ONLY


def table_cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip() or "(empty)"


def samples_table(prompts: list[str], guide: list[str] | None, learner: list[str], learner_rewards: list[float],
                  guide_rewards: list[float] | None) -> str:
    """A markdown table: prompt / guide continuation / learner continuation / rewards."""
    with_guide = guide is not None
    header = "| prompt | " + ("guide | guide reward | " if with_guide else "") + "learner | learner reward |"
    lines = [header, "|---|" + ("---|---:|" if with_guide else "") + "---|---:|"]
    for i, prompt in enumerate(prompts):
        guide_cells = f"{table_cell(guide[i])} | {guide_rewards[i]:.3f} | " if with_guide else ""
        lines.append(f"| {table_cell(prompt)} | {guide_cells}{table_cell(learner[i])} | {learner_rewards[i]:.3f} |")
    return "\n".join(lines)


class SampleLogger(Callback):
    """At each validation, writes a table of prompt / guide continuation / learner continuation / reward for
    the first `num_prompts` validation prompts to TensorBoard text (tag `samples`). The learner's rows are
    the validation pass's own (same seed every time); the guide's are generated once and reused, since the
    guide is frozen.

    Args:
        num_prompts: How many prompts (from the start of the first validation batch).
        tag: The TensorBoard text tag.
    """

    def __init__(self, num_prompts: int = 4, tag: str = "samples") -> None:
        if num_prompts < 1:
            raise ConfigError(f"SampleLogger.num_prompts must be >= 1, got {num_prompts}.")
        self.num_prompts = num_prompts
        self.tag = tag
        self._guide: tuple[list[str], list[float]] | None = None
        self._table: str | None = None

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        if batch_idx != 0 or not isinstance(outputs, dict) or "rollout" not in outputs:
            return
        rollout, scores = outputs["rollout"], outputs["scores"]
        count = min(self.num_prompts, rollout.batch_size)
        guide = self._guide_rows(trainer, pl_module, batch, count)
        self._table = samples_table(
            rollout.prompts[:count], guide[0] if guide else None, rollout.continuations[:count],
            scores[:count].tolist(), guide[1] if guide else None,
        )

    def _guide_rows(self, trainer: Trainer, pl_module: LightningModule, batch: dict, count: int):
        environment = trainer.datamodule
        if getattr(environment, "guide", None) is None:
            return None
        if self._guide is None:
            prompts = {key: values[:count] for key, values in batch.items()}
            rollout = pl_module.evaluation_rollout(prompts, 0, GUIDE_ONLY)
            self._guide = (rollout.continuations, environment.score(rollout).tolist())
        return self._guide

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._table is None or not trainer.is_global_zero:
            return
        if trainer.sanity_checking and pl_module.global_step > 0:
            return  # a resumed run's sanity check repeats a step that is already logged
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_text(self.tag, self._table, global_step=pl_module.global_step)
        self._table = None
