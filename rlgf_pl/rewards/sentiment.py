"""Sentiment reward: probability of a class from a sequence classifier."""

from __future__ import annotations

import torch
from torch import Tensor
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import rlgf_pl.policies.bag_of_words  # noqa: F401  (registers the zoo's classifier with the Auto classes)
from rlgf_pl.errors import ConfigError
from rlgf_pl.rewards.base import Reward
from rlgf_pl.zoo.registry import resolve_model_path


class SentimentReward(Reward):
    """P(label | prompt + continuation) from any `AutoModelForSequenceClassification`, batched.

    Args:
        model: Hub id, local directory or zoo name of the classifier.
        label: Index or name (as in the model's `id2label`) of the rewarded class.
        include_prompt: Score prompt + continuation (the paper's IMDB setting) or the continuation alone.
        batch_size: Texts per classifier forward pass.
        max_length: Tokens kept per text (cut from the left).
    """

    def __init__(
        self,
        model: str = "lvwerra/distilbert-imdb",
        label: int | str = 1,
        include_prompt: bool = True,
        batch_size: int = 64,
        max_length: int = 512,
    ) -> None:
        path = resolve_model_path(model)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForSequenceClassification.from_pretrained(path).eval().requires_grad_(False)
        except OSError as error:
            raise OSError(f"Could not load the reward classifier {model!r}: {error}") from error
        self.tokenizer.truncation_side = "left"
        if isinstance(label, str):
            names = {name.lower(): index for index, name in self.model.config.id2label.items()}
            if label.lower() not in names:
                raise ConfigError(f"Label {label!r} is not one of the classifier's labels {sorted(names)}.")
            label = int(names[label.lower()])
        self.label = label
        self.include_prompt = include_prompt
        self.batch_size = batch_size
        self.max_length = max_length

    def to(self, device: torch.device | str) -> SentimentReward:
        self.model.to(device)
        return self

    @torch.no_grad()
    def __call__(self, prompts: list[str], continuations: list[str], references: list[list[str]]) -> Tensor:
        texts = [p + c if self.include_prompt else c for p, c in zip(prompts, continuations)]
        device = next(self.model.parameters()).device
        scores = []
        for start in range(0, len(texts), self.batch_size):
            encoded = self.tokenizer(
                texts[start : start + self.batch_size], padding=True, truncation=True,
                max_length=self.max_length, return_tensors="pt",
            ).to(device)
            probabilities = self.model(**encoded).logits.float().softmax(-1)
            scores.append(probabilities[:, self.label])
        return torch.cat(scores).cpu() if scores else torch.zeros(0)
