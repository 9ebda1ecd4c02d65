"""Text batches for supervised fine-tuning, from any prompt task (prompt + first reference)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from rlgf_pl.data.tasks.base import PromptTask

if TYPE_CHECKING:
    from rlgf_pl.algorithms.sft import SFT


class SFTDataModule(LightningDataModule):
    """Batches of tokenized `prompt + reference` texts for a causal LM, or of prompts (inputs) and references
    (labels) for a seq2seq LM (the module's tokenizer, right padding).

    Args:
        task: Source of prompts and references.
        join: Text placed between a prompt and its first reference.
        max_length: Tokens kept per text (cut from the right).
        batch_size: Texts per batch.
        seed: Shuffling seed.
    """

    def __init__(self, task: PromptTask, join: str = " ", max_length: int = 128, batch_size: int = 16,
                 seed: int = 0) -> None:
        super().__init__()
        self.task = task
        self.join = join
        self.max_length = max_length
        self.batch_size = batch_size
        self.seed = seed
        self.pairs: dict[str, list[tuple[str, str]]] = {}

    def setup(self, stage: str) -> None:
        for split in {"fit": ("train", "validation"), "validate": ("validation",), "test": ("test",)}.get(stage, ()):
            dataset = self.task.load(split)
            self.pairs[split] = [(prompt, refs[0] if refs else "")
                                 for prompt, refs in zip(dataset["prompt"], dataset["references"])
                                 if (prompt or "").strip()]

    def _collate(self, pairs: list[tuple[str, str]]) -> dict:
        module: SFT = self.trainer.lightning_module
        tokenizer = module.tokenizer
        tokenizer.padding_side = "right"
        tokenizer.truncation_side = "right"
        cut = dict(padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        if module.is_seq2seq:  # the tokenizer adds its own end token (T5's </s>) to inputs and targets
            batch = dict(tokenizer([prompt for prompt, _ in pairs], **cut))
            targets = tokenizer([target for _, target in pairs], **cut)
            batch["labels"] = targets["input_ids"].masked_fill(targets["attention_mask"] == 0, -100)
            return batch
        eos = tokenizer.eos_token or ""
        texts = [prompt + (self.join + target if target else "") + eos for prompt, target in pairs]
        return dict(tokenizer(texts, add_special_tokens=False, **cut))

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        import torch

        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.pairs[split], batch_size=self.batch_size, shuffle=shuffle, collate_fn=self._collate,
                          generator=generator)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
