"""A bag-of-words sequence classifier registered with transformers' Auto classes.

Mean of learned token embeddings, then a linear layer: trains in seconds on a CPU and is a strong
sentiment baseline on IMDB. Importing this module registers it, after which
`AutoModelForSequenceClassification.from_pretrained(directory)` loads it like any other model, and
`AutoModel.from_pretrained(directory)` loads its trunk (`BagOfWordsModel`): at every position, the mean
embedding of the tokens so far. That trunk can carry a critic (`critic_model`), the way TRL starts its
value model from the reward model.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import BaseModelOutput, SequenceClassifierOutput


class BagOfWordsConfig(PretrainedConfig):
    """Config of `BagOfWordsForSequenceClassification` (vocab_size, hidden_size, num_labels)."""

    model_type = "rlgf-bag-of-words"

    def __init__(self, vocab_size: int = 8192, hidden_size: int = 8, **kwargs) -> None:
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        super().__init__(**kwargs)


def _init_bag_of_words_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.1)
    elif isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.1)
        nn.init.zeros_(module.bias)


class BagOfWordsModel(PreTrainedModel):
    """The classifier's trunk: `last_hidden_state[:, t]` is the mean embedding of the attended tokens up to
    and including t (causal, so a critic's value at t sees no later token). Padding counts for nothing."""

    config_class = BagOfWordsConfig
    base_model_prefix = "bag_of_words"
    _keys_to_ignore_on_load_unexpected = [r"^classifier\."]  # loading the trunk of a saved classifier

    def __init__(self, config: BagOfWordsConfig) -> None:
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        _init_bag_of_words_weights(module)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, **kwargs) -> BaseModelOutput:
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        mask = mask.unsqueeze(-1).float()
        running_sum = (self.embeddings(input_ids).float() * mask).cumsum(1)  # float32: bf16 sums drift over a review
        running_mean = running_sum / mask.cumsum(1).clamp(min=1.0)
        return BaseModelOutput(last_hidden_state=running_mean.to(self.embeddings.weight.dtype))


class BagOfWordsForSequenceClassification(PreTrainedModel):
    """logits = W · mean(embedding(token) over the attended tokens) + b."""

    config_class = BagOfWordsConfig
    base_model_prefix = "bag_of_words"

    def __init__(self, config: BagOfWordsConfig) -> None:
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        _init_bag_of_words_weights(module)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, labels: Tensor | None = None,
                **kwargs) -> SequenceClassifierOutput:
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        mask = mask.unsqueeze(-1).to(self.embeddings.weight.dtype)
        pooled = (self.embeddings(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        logits = self.classifier(pooled)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


AutoConfig.register(BagOfWordsConfig.model_type, BagOfWordsConfig, exist_ok=True)
AutoModel.register(BagOfWordsConfig, BagOfWordsModel, exist_ok=True)
AutoModelForSequenceClassification.register(BagOfWordsConfig, BagOfWordsForSequenceClassification, exist_ok=True)
