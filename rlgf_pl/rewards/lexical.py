"""Lexical rewards for tasks with references (CommonGen): a weighted sum of per-row overlap scores."""

from __future__ import annotations

import torch
from torch import Tensor

from rlgf_pl.errors import ConfigError
from rlgf_pl.metrics.cider import cider_d
from rlgf_pl.metrics.concepts import coverage, prompt_concepts
from rlgf_pl.metrics.meteor import meteor
from rlgf_pl.metrics.sentence import rouge_l, sentence_bleu
from rlgf_pl.metrics.text import words
from rlgf_pl.rewards.base import Reward

TERMS = ("cider_d", "meteor", "bleu", "rouge_l", "coverage")


class LexicalReward(Reward):
    """sum_k weight_k * score_k of each continuation against its row's references.

    Terms: `cider_d` (CIDEr-D, 0-10, document frequencies over the batch's references, as a corpus metric
    computed on the batch), `meteor` (best over references), `bleu` (smoothed sentence BLEU-4), `rouge_l`
    (best ROUGE-L F1) and `coverage` (the fraction of the prompt's concepts used, lemmatized). A row without
    references scores 0 on the reference terms. SPICE needs Java and Stanford CoreNLP downloads, so it is not
    offered; the paper's CommonGen reward is SPICE + CIDEr, the offline default here is CIDEr-D + METEOR.

    Args:
        weights: Term -> weight; terms left out weigh 0.
    """

    def __init__(self, weights: dict[str, float] | None = None) -> None:
        weights = {"cider_d": 1.0, "meteor": 1.0} if weights is None else dict(weights)
        unknown = sorted(set(weights) - set(TERMS))
        if unknown:
            raise ConfigError(f"LexicalReward weights name unknown terms {unknown}; use some of {list(TERMS)}.")
        if not any(weights.values()):
            raise ConfigError("LexicalReward needs at least one non-zero weight.")
        self.weights = {term: float(weight) for term, weight in weights.items() if weight}

    def terms(self, prompts: list[str], continuations: list[str], references: list[list[str]]) -> dict[str, Tensor]:
        """Each weighted term's per-row scores, [B] float32 each."""
        candidates = [words(text) for text in continuations]
        refs = [[words(ref) for ref in row] for row in references]
        scored = [i for i, row in enumerate(refs) if row]
        values: dict[str, list[float]] = {}
        for term in self.weights:
            if term == "coverage":
                values[term] = [coverage(prompt_concepts(p), c) for p, c in zip(prompts, continuations)]
                continue
            row_scores = [0.0] * len(candidates)
            if term == "cider_d" and scored:
                for i, score in zip(scored, cider_d([tuple(candidates[i]) for i in scored],
                                                    [[tuple(r) for r in refs[i]] for i in scored])):
                    row_scores[i] = score
            elif term == "meteor":
                row_scores = [max((meteor(c, r) for r in row), default=0.0) if c else 0.0
                              for c, row in zip(candidates, refs)]
            elif term == "bleu":
                row_scores = [sentence_bleu(c, row) for c, row in zip(candidates, refs)]
            elif term == "rouge_l":
                row_scores = [rouge_l(c, row) for c, row in zip(candidates, refs)]
            values[term] = row_scores
        return {term: torch.tensor(scores, dtype=torch.float32) for term, scores in values.items()}

    def __call__(self, prompts: list[str], continuations: list[str], references: list[list[str]]) -> Tensor:
        terms = self.terms(prompts, continuations, references)
        return sum(self.weights[term] * scores for term, scores in terms.items())
