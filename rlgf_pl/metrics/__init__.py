"""Evaluation metrics: torchmetrics `Metric`s updated with `EvaluationSamples`, reduced across DDP ranks.

Pick them per task in the data config (`data.init_args.metrics`); `RewardStats` always runs.
"""

from rlgf_pl.metrics.chrf import CHRF
from rlgf_pl.metrics.cider import CIDErD
from rlgf_pl.metrics.collection import default_metrics, evaluation_collection
from rlgf_pl.metrics.concepts import Coverage
from rlgf_pl.metrics.diversity import Diversity
from rlgf_pl.metrics.lexical import BLEU, ROUGE
from rlgf_pl.metrics.meteor import METEOR
from rlgf_pl.metrics.perplexity import GenerationPerplexity, ReferencePerplexity
from rlgf_pl.metrics.reward import RewardStats
from rlgf_pl.metrics.samples import EvaluationSamples
from rlgf_pl.metrics.semantic import SemanticSimilarity

__all__ = [
    "BLEU", "CHRF", "CIDErD", "Coverage", "Diversity", "EvaluationSamples", "GenerationPerplexity", "METEOR", "ROUGE",
    "ReferencePerplexity", "RewardStats", "SemanticSimilarity", "default_metrics", "evaluation_collection",
]
