"""Word tokenization and n-gram helpers shared by the text metrics.

N-grams travel between DDP ranks as int64 hashes: strings cannot be all-gathered, and Python's
`hash` differs between processes, so words are hashed with BLAKE2b.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence

import torch
from torch import Tensor

WORD = re.compile(r"[\w']+")


def words(text: str) -> list[str]:
    """Lower-cased word tokens, punctuation dropped."""
    return WORD.findall(text.lower())


def stable_hash(word: str) -> int:
    """A 64-bit signed hash of `word` that is the same in every process."""
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little", signed=True)


def hash_words(texts: Sequence[str], device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Word hashes of all texts, concatenated, and each text's word count. -> [N] int64, [len(texts)] int64."""
    tokenized = [words(text) for text in texts]
    flat = [stable_hash(word) for tokens in tokenized for word in tokens]
    return (torch.tensor(flat, dtype=torch.long, device=device),
            torch.tensor([len(tokens) for tokens in tokenized], dtype=torch.long, device=device))


def cat_state(state: list[Tensor] | Tensor) -> Tensor:
    """A `cat` state as one tensor: a list before the DDP sync, a tensor after it, empty when nothing came."""
    if isinstance(state, Tensor):
        return state
    return torch.cat(state) if state else torch.zeros(0, dtype=torch.long)


def split_by_lengths(flat: Tensor, lengths: Tensor) -> list[tuple[int, ...]]:
    """Undo `hash_words`: one tuple of word hashes per text."""
    return [tuple(part.tolist()) for part in torch.split(flat.cpu(), lengths.cpu().tolist())]


def ngram_counts(tokens: Sequence, n: int) -> Counter:
    """Counts of the n-grams of one token sequence."""
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
