"""Per-sentence overlap scores of one candidate against its references (rewards need one number per row):
smoothed sentence BLEU and ROUGE-L F1. Words are `text.words` (lower case, punctuation dropped)."""

from __future__ import annotations

import math
from collections import Counter


def sentence_bleu(candidate: list[str], references: list[list[str]], max_n: int = 4) -> float:
    """BLEU-`max_n` of one sentence with add-one smoothing of the n > 1 precisions (Lin and Och, 2004) and the
    brevity penalty against the reference closest in length. 0 for an empty candidate or no references."""
    if not candidate or not references:
        return 0.0
    log_precision = 0.0
    for n in range(1, max_n + 1):
        grams = Counter(tuple(candidate[i : i + n]) for i in range(len(candidate) - n + 1))
        most = Counter()
        for reference in references:
            most |= Counter(tuple(reference[i : i + n]) for i in range(len(reference) - n + 1))
        matched = sum(min(count, most[gram]) for gram, count in grams.items())
        total = max(len(candidate) - n + 1, 0)
        smooth = 0 if n == 1 else 1
        if matched + smooth == 0:
            return 0.0
        log_precision += math.log((matched + smooth) / (total + smooth)) / max_n
    closest = min((abs(len(ref) - len(candidate)), len(ref)) for ref in references)[1]
    brevity = 1.0 if len(candidate) > closest else math.exp(1 - closest / len(candidate))
    return brevity * math.exp(log_precision)


def lcs_length(first: list[str], second: list[str]) -> int:
    """Length of the longest common subsequence."""
    previous = [0] * (len(second) + 1)
    for word in first:
        current = [0]
        for j, other in enumerate(second):
            current.append(previous[j] + 1 if word == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(candidate: list[str], references: list[list[str]]) -> float:
    """The best ROUGE-L F1 (LCS precision and recall) over the references; 0 when nothing matches."""
    best = 0.0
    for reference in references:
        common = lcs_length(candidate, reference)
        if common:
            precision, recall = common / len(candidate), common / len(reference)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best
