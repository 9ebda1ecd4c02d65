"""The metric collection a run evaluates with."""

from __future__ import annotations

import copy

from torchmetrics import Metric, MetricCollection

from rlgf_pl.errors import ConfigError
from rlgf_pl.metrics.chrf import CHRF
from rlgf_pl.metrics.cider import CIDErD
from rlgf_pl.metrics.diversity import Diversity
from rlgf_pl.metrics.lexical import BLEU, ROUGE
from rlgf_pl.metrics.meteor import METEOR
from rlgf_pl.metrics.reward import RewardStats


def default_metrics() -> list[Metric]:
    """The cheap metrics, used when a config names none: diversity and lexical overlap. Perplexity and
    semantic similarity load or run extra models, so configs opt into them."""
    return [Diversity(), BLEU(), ROUGE(), CHRF(), METEOR(), CIDErD()]


def with_every_family(metrics: list[Metric]) -> list[Metric]:
    """`metrics` plus a default instance of each family it lacks, for test: fluency (`GenerationPerplexity`
    under the reference model, `ReferencePerplexity`), `Diversity`, lexical overlap (BLEU, ROUGE, METEOR,
    CIDEr-D) and meaning (`SemanticSimilarity`: embedding cosine and the BERTScore-style F1)."""
    from rlgf_pl.metrics.perplexity import GenerationPerplexity, ReferencePerplexity
    from rlgf_pl.metrics.semantic import SemanticSimilarity

    present = {type(metric) for metric in metrics}
    families = (GenerationPerplexity, ReferencePerplexity, Diversity, BLEU, ROUGE, METEOR, CIDErD, SemanticSimilarity)
    return [*metrics, *(family() for family in families if family not in present)]


def evaluation_collection(metrics: list[Metric], prefix: str) -> MetricCollection:
    """`RewardStats` plus fresh copies of `metrics`, whose outputs are logged as `{prefix}{name}`."""
    for metric in metrics:
        if not isinstance(metric, Metric):
            raise ConfigError(f"data.metrics entries must be torchmetrics Metrics, got {type(metric).__name__}.")
    names = [type(metric).__name__ for metric in metrics]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ConfigError(f"data.metrics lists {', '.join(duplicated)} more than once; keep one of each.")
    fresh = [copy.deepcopy(metric) for metric in metrics if not isinstance(metric, RewardStats)]
    return MetricCollection([RewardStats(), *fresh], prefix=prefix, compute_groups=False)
