"""Supervised fine-tuning: next-token cross-entropy on texts (causal LMs) or on targets given inputs (seq2seq
LMs). Builds guides and zoo models."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import Tensor

from rlgf_pl.policies.causal_lm import position_ids_from_mask
from rlgf_pl.policies.loading import KindSetting, load_causal_lm, load_seq2seq_lm, load_tokenizer, policy_kind


class SFT(LightningModule):
    """Fine-tune a causal LM on `prompt + reference` texts, or a seq2seq LM to write the reference given the
    prompt (`rlgf fit --model rlgf_pl.algorithms.SFT --data rlgf_pl.data.SFTDataModule`).

    Args:
        model: Hub id, local directory or zoo name of the causal or seq2seq LM to fine-tune.
        kind: 'causal', 'seq2seq', or 'auto' (from the model's config).
        dtype: Weights dtype; null keeps the checkpoint's.
        lr: AdamW learning rate (linear warmup then linear decay to 0).
        weight_decay: AdamW weight decay.
        warmup_fraction: Fraction of the steps spent warming up.
        export_dir: If set, the fine-tuned model and tokenizer are written there with `save_pretrained`
            when fit ends (ready to be a learner, guide or reward model).
    """

    def __init__(
        self,
        model: str,
        kind: KindSetting = "auto",
        dtype: str | None = None,
        lr: float = 5e-4,
        weight_decay: float = 0.0,
        warmup_fraction: float = 0.05,
        export_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.is_seq2seq = policy_kind(model, kind) == "seq2seq"
        self.model = (load_seq2seq_lm if self.is_seq2seq else load_causal_lm)(model, dtype=dtype)
        self.tokenizer = load_tokenizer(model, padding_side="right")
        self.model.train()

    def _loss(self, batch: dict[str, Tensor]) -> Tensor:
        if self.is_seq2seq:  # labels: the target tokens, -100 where padded (the model shifts them itself)
            return self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                              labels=batch["labels"]).loss
        mask = batch["attention_mask"]
        labels = batch["input_ids"].masked_fill(mask == 0, -100)
        output = self.model(input_ids=batch["input_ids"], attention_mask=mask,
                            position_ids=position_ids_from_mask(mask), labels=labels)
        return output.loss

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        loss = self._loss(batch)
        size = batch["input_ids"].shape[0]
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=size)
        self.log("val/perplexity", torch.exp(loss.detach()), sync_dist=True, batch_size=size)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        steps = self.trainer.estimated_stepping_batches
        total = max(1, int(steps)) if math.isfinite(steps) else 1
        warmup = max(1, int(total * self.hparams.warmup_fraction))

        def factor(step: int) -> float:
            return (step + 1) / warmup if step < warmup else max(0.0, (total - step) / max(1, total - warmup))

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def save_pretrained(self, directory: str | Path) -> None:
        """Write the model and its tokenizer (left padding, for generation) with `save_pretrained`."""
        self.model.save_pretrained(directory)
        self.tokenizer.padding_side = "left"
        self.tokenizer.save_pretrained(directory)

    def on_fit_end(self) -> None:
        if self.hparams.export_dir and self.trainer.is_global_zero:
            self.save_pretrained(self.hparams.export_dir)
