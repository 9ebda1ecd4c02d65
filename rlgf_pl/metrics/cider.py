"""CIDEr-D: TF-IDF weighted n-gram cosine with count clipping and a Gaussian length penalty.

Following Vedantam et al. (2015) and the coco-caption implementation: for n = 1..4, each sentence is a
vector of n-gram term frequencies times log(N / df), where N is the number of evaluated prompts and df the
number of prompts whose references contain the n-gram. A row scores

    10 * mean_n mean_refs [ sum_g min(c_g, r_g) r_g / (|c| |r|) * exp(-(len_c - len_r)^2 / (2 sigma^2)) ]

and the corpus score is the mean over rows. Document frequencies need the whole corpus, so rows travel
between DDP ranks as word hashes and the score is computed once, after the gather.
"""

from __future__ import annotations

import math
from collections import Counter

import torch
from torch import Tensor
from torchmetrics import Metric

from rlgf_pl.metrics.samples import EvaluationSamples
from rlgf_pl.metrics.text import cat_state, hash_words, ngram_counts, split_by_lengths

CANDIDATE = -1


def tfidf(tokens: tuple, document_frequency: Counter, log_documents: float, max_n: int) -> list[dict]:
    """Per n: n-gram -> term frequency * (log N - log max(1, df))."""
    vectors = []
    for n in range(1, max_n + 1):
        vectors.append({gram: count * (log_documents - math.log(max(1.0, document_frequency[gram])))
                        for gram, count in ngram_counts(tokens, n).items()})
    return vectors


def clipped_cosine(candidate: dict, reference: dict) -> float:
    """sum_g min(c_g, r_g) r_g / (|c| |r|); 0 when either vector is empty or all-zero."""
    norm = math.sqrt(sum(v * v for v in candidate.values())) * math.sqrt(sum(v * v for v in reference.values()))
    if norm == 0.0:
        return 0.0
    return sum(min(value, reference[gram]) * reference[gram] for gram, value in candidate.items() if gram in reference) / norm


def cider_d(candidates: list[tuple], references: list[list[tuple]], max_n: int = 4, sigma: float = 6.0) -> list[float]:
    """CIDEr-D of each tokenized candidate against its tokenized references, with document frequencies taken
    over all rows' references."""
    document_frequency = Counter()
    for refs in references:
        document_frequency.update({gram for ref in refs for n in range(1, max_n + 1) for gram in ngram_counts(ref, n)})
    log_documents = math.log(float(len(candidates))) if candidates else 0.0
    scores = []
    for candidate, refs in zip(candidates, references):
        candidate_vectors = tfidf(candidate, document_frequency, log_documents, max_n)
        total = 0.0
        for ref in refs:
            ref_vectors = tfidf(ref, document_frequency, log_documents, max_n)
            penalty = math.exp(-((len(candidate) - len(ref)) ** 2) / (2 * sigma**2))
            total += penalty * sum(clipped_cosine(c, r) for c, r in zip(candidate_vectors, ref_vectors)) / max_n
        scores.append(10.0 * total / len(refs))
    return scores


class CIDErD(Metric):
    """Corpus CIDEr-D (lower-cased words, punctuation dropped), as `cider_d` (0 to 10; 10 = identical)."""

    full_state_update = False

    def __init__(self, max_n: int = 4, sigma: float = 6.0) -> None:
        super().__init__()
        self.max_n, self.sigma = max_n, sigma
        # One row per sentence: its owner (a row id unique across ranks) and whether it is the candidate.
        for name in ("word_hashes", "lengths", "owners", "roles"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self.add_state("rows_seen", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, samples: EvaluationSamples) -> None:
        predictions, references = samples.with_references()
        if not predictions:
            return
        rank = torch.distributed.get_rank() if torch.distributed.is_available() and torch.distributed.is_initialized() else 0
        first = (rank << 40) + int(self.rows_seen)
        sentences, owners, roles = [], [], []
        for row, (prediction, refs) in enumerate(zip(predictions, references)):
            sentences += [prediction, *refs]
            owners += [first + row] * (1 + len(refs))
            roles += [CANDIDATE, *range(len(refs))]
        flat, lengths = hash_words(sentences, self.device)
        self.word_hashes.append(flat)
        self.lengths.append(lengths)
        self.owners.append(torch.tensor(owners, dtype=torch.long, device=self.device))
        self.roles.append(torch.tensor(roles, dtype=torch.long, device=self.device))
        self.rows_seen += len(predictions)

    def compute(self) -> dict[str, Tensor]:
        lengths = cat_state(self.lengths)
        if lengths.numel() == 0:
            return {"cider_d": torch.tensor(float("nan"))}
        sentences = split_by_lengths(cat_state(self.word_hashes), lengths)
        candidates: dict[int, tuple] = {}
        references: dict[int, list[tuple]] = {}
        for sentence, owner, role in zip(sentences, cat_state(self.owners).tolist(), cat_state(self.roles).tolist()):
            if role == CANDIDATE:
                candidates[owner] = sentence
            else:
                references.setdefault(owner, []).append(sentence)
        owners = sorted(candidates)
        scores = cider_d([candidates[o] for o in owners], [references[o] for o in owners], self.max_n, self.sigma)
        return {"cider_d": torch.tensor(sum(scores) / len(scores))}
