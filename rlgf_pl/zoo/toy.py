"""The toy world: a word-level vocabulary, a tiny random GPT-2 and prompts made of those words.

Small enough to train in seconds on a CPU, which makes it the smallest end-to-end run and the
world most tests live in.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

from rlgf_pl.zoo.registry import ZooEntry, register

TOY_WORDS: tuple[str, ...] = (
    "the a movie film was is good bad great plot actor story very not and but it this i really "
    "liked hated fun boring scene music end so too much funny sad long short best worst ever seen watch again"
).split()
SPECIAL_TOKENS = {"pad": "<pad>", "eos": "<eos>", "unk": "<unk>"}


def build_toy_tokenizer(words: tuple[str, ...] = TOY_WORDS) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer over `words` plus <pad>, <eos>, <unk>."""
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS.values())}
    for word in words:
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL_TOKENS["unk"]))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=SPECIAL_TOKENS["pad"],
        eos_token=SPECIAL_TOKENS["eos"],
        unk_token=SPECIAL_TOKENS["unk"],
        padding_side="left",
    )


def build_toy_gpt2(directory: Path, seed: int = 0, n_layer: int = 2, n_embd: int = 32, n_head: int = 2) -> None:
    """Save a randomly initialised tiny GPT-2 and the toy tokenizer into `directory`."""
    tokenizer = build_toy_tokenizer()
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=256,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    GPT2LMHeadModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def build_toy_t5(directory: Path, seed: int = 0, d_model: int = 32, num_layers: int = 2, num_heads: int = 2) -> None:
    """Save a randomly initialised tiny T5 (encoder-decoder) and the toy tokenizer into `directory`."""
    tokenizer = build_toy_tokenizer()
    config = T5Config(
        vocab_size=len(tokenizer), d_model=d_model, d_kv=d_model // num_heads, d_ff=2 * d_model,
        num_layers=num_layers, num_decoder_layers=num_layers, num_heads=num_heads,
        relative_attention_num_buckets=8, relative_attention_max_distance=32, dropout_rate=0.0,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    T5ForConditionalGeneration(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def build_toy_guide(directory: Path, seed: int = 0) -> None:
    """`toy-gpt2` fine-tuned with SFT on sentences where about half the words are 'good': a guide that
    knows what the toy reward wants and a learner that starts without it."""
    from rlgf_pl.data.tasks.toy import ToyTask
    from rlgf_pl.zoo.registry import zoo_path
    from rlgf_pl.zoo.training import train_sft

    task = ToyTask({"train": 2048, "validation": 16}, min_words=8, max_words=16, seed=seed,
                   word_weights={"good": 40.0})
    train_sft(zoo_path("toy-gpt2"), task, directory, epochs=2, lr=3e-3, batch_size=32, max_length=40, seed=seed)


register(ZooEntry("toy-gpt2", "random 2-layer GPT-2 over a 40-word vocabulary (tests, smallest run)", build_toy_gpt2))
register(ZooEntry("toy-t5", "random 2-layer T5 over the toy vocabulary (seq2seq tests and runs)", build_toy_t5))
register(ZooEntry("toy-guide", "toy-gpt2 fine-tuned to say 'good' about half the time (toy guide)", build_toy_guide,
                  depends_on=("toy-gpt2",)))
