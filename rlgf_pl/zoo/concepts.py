"""The concept-task zoo (the offline CommonGen stand-in): a SentencePiece-style BPE tokenizer with T5's
special tokens, a small T5 pretrained by deshuffling and fine-tuned on concepts -> sentence pairs of which half
are mismatched (the learner), and that model fine-tuned further on the true pairs (the guide). Trained only on
the concept task's training split."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import torch
from datasets import Dataset
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

from rlgf_pl.data.tasks.base import PromptTask
from rlgf_pl.data.tasks.commongen import ConceptTask, concept_prompt, concept_sets
from rlgf_pl.zoo.registry import ZooEntry, register, zoo_path
from rlgf_pl.zoo.training import train_sft

SEED = 0
VOCAB_SIZE = 4096
SENTINELS = 16
PAD, EOS, UNK = "<pad>", "</s>", "<unk>"


def training_sentences(max_sets: int | None = None) -> list[str]:
    return [sentence for _, sentences in concept_sets(SEED)["train"][:max_sets] for sentence in sentences]


def build_concepts_tokenizer(directory: Path, max_sets: int | None = None) -> None:
    """Lower-cased BPE over the training sentences (Metaspace words, as SentencePiece), T5's special tokens
    (pad 0, </s> 1, unk 2, <extra_id_N> sentinels) and a closing </s> after every encoded text."""
    backend = Tokenizer(models.BPE(unk_token=UNK))
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    specials = [PAD, EOS, UNK, *(f"<extra_id_{i}>" for i in range(SENTINELS))]
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, min_frequency=2, special_tokens=specials, show_progress=False)
    backend.train_from_iterator(training_sentences(max_sets) + ["generate a sentence with:"], trainer=trainer)
    backend.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}",
                                                           special_tokens=[(EOS, 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=PAD, eos_token=EOS, unk_token=UNK,
                                        additional_special_tokens=specials[3:], padding_side="right")
    tokenizer.save_pretrained(directory)


class DeshuffleTask(PromptTask):
    """Pretraining that teaches copying: the prompt lists about two thirds of a training sentence's words in
    random order, in the concept prompt's format, and the target is the sentence. (T5's span corruption never
    asks the decoder to write what the encoder read; a T5 trained from scratch on it learned to use concepts
    less than half as often: 5-beam validation coverage 0.067, against 0.158 after deshuffling.)"""

    def __init__(self, max_sets: int | None = None, seed: int = SEED, keep: float = 0.65) -> None:
        self.max_sets = max_sets
        self.seed = seed
        self.keep = keep

    def load(self, split: str) -> Dataset:
        sentences = training_sentences(self.max_sets)
        if split != "train":
            sentences = sentences[:16]
        rng = random.Random(f"{self.seed}-{split}")
        return Dataset.from_list([shuffled_words(sentence, rng, self.keep) for sentence in sentences])


def shuffled_words(sentence: str, rng: random.Random, keep: float) -> dict:
    """One deshuffling example: {'prompt': the kept words (at least one), shuffled, as a concept prompt,
    'references': [sentence]}."""
    words = sentence.lower().split()
    kept = [word for word in words if rng.random() < keep] or [rng.choice(words)]
    rng.shuffle(kept)
    return {"prompt": concept_prompt(kept), "references": [sentence]}


class MismatchedConceptTask(PromptTask):
    """The concept task with `fraction` of its training rows given the sentence of another, random concept
    set. A model fine-tuned on it often writes a plausible review sentence that ignores its concepts, as an
    SFT model trained on loosely aligned pairs does: the learner whose concept use RL can raise. Validation
    and test rows are the concept task's own."""

    def __init__(self, fraction: float = 0.5, max_sets: int | None = None, seed: int = SEED) -> None:
        self.task = ConceptTask(num_validation=8, max_train=max_sets, seed=seed)
        self.fraction = fraction
        self.seed = seed

    def load(self, split: str) -> Dataset:
        rows = self.task.load(split)
        if split != "train":
            return rows
        rng = random.Random(self.seed)
        references = list(rows["references"])
        swapped = [references[rng.randrange(len(references))] if rng.random() < self.fraction else own
                   for own in references]
        return Dataset.from_dict({"prompt": list(rows["prompt"]), "references": swapped})


def build_concepts_t5(directory: Path, pretrain_steps: int = 600, sft_steps: int = 1500,
                      max_sets: int | None = None, mismatched: float = 0.5) -> None:
    """A T5 (3+3 layers, 128 wide) pretrained by deshuffling (batches of 32), then fine-tuned on
    concepts -> sentence pairs, `mismatched` of them with another set's sentence (batches of 16). It uses few
    of its concepts (5-beam validation coverage 0.05), which leaves the RL and the guide room."""
    tokenizer = PreTrainedTokenizerFast.from_pretrained(zoo_path("concepts-tokenizer"))
    config = T5Config(vocab_size=len(tokenizer), d_model=128, d_kv=32, d_ff=512, num_layers=3, num_decoder_layers=3,
                      num_heads=4, dropout_rate=0.0, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id)
    torch.manual_seed(SEED)
    initial, pretrained = (directory.parent / f".{directory.name}-{stage}" for stage in ("init", "pretrained"))
    T5ForConditionalGeneration(config).save_pretrained(initial)
    tokenizer.save_pretrained(initial)
    train_sft(initial, DeshuffleTask(max_sets), pretrained, lr=1e-3, batch_size=32, max_length=32, seed=SEED,
              max_steps=pretrain_steps, epochs=100)
    train_sft(pretrained, MismatchedConceptTask(mismatched, max_sets), directory, lr=1e-3, batch_size=16,
              max_length=32, seed=SEED, max_steps=sft_steps, epochs=100)
    for stage in (initial, pretrained):
        shutil.rmtree(stage, ignore_errors=True)


def build_concepts_t5_guide(directory: Path, steps: int = 2000, max_sets: int | None = None,
                            learner_dir: Path | None = None) -> None:
    """`concepts-t5` fine-tuned further on the true concepts -> sentence pairs: the guide."""
    train_sft(learner_dir or zoo_path("concepts-t5"), ConceptTask(num_validation=8, max_train=max_sets, seed=SEED),
              directory, lr=1e-3, batch_size=16, max_length=32, seed=SEED + 1, max_steps=steps, epochs=100)


register(ZooEntry("concepts-tokenizer", "BPE, 4k tokens, T5 specials, on the concept task's sentences",
                  build_concepts_tokenizer))
register(ZooEntry("concepts-t5", "small T5: deshuffling, then SFT on half-mismatched concepts -> sentence (learner)",
                  build_concepts_t5, depends_on=("concepts-tokenizer",), version=3))
register(ZooEntry("concepts-t5-guide", "concepts-t5 fine-tuned further on the true concepts -> sentence (guide)",
                  build_concepts_t5_guide, depends_on=("concepts-t5",), version=3))
