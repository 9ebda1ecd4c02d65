"""CommonGen: grouping by concept set, the offline concept task, the lexical reward, coverage and beam search."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import REPO
from datasets import Dataset

from rlgf_pl.cli import main
from rlgf_pl.data.tasks import CommonGenTask, ConceptTask
from rlgf_pl.data.tasks.commongen import concept_sets, grouped_rows
from rlgf_pl.errors import ConfigError
from rlgf_pl.metrics import Coverage, EvaluationSamples
from rlgf_pl.metrics.concepts import coverage, lemmas, prompt_concepts
from rlgf_pl.metrics.sentence import rouge_l, sentence_bleu
from rlgf_pl.policies import GenerationSettings, load_policy
from rlgf_pl.rewards import LexicalReward


def test_rows_are_grouped_per_concept_set_with_every_reference():
    rows = grouped_rows([(["dog", "run"], ["a dog runs"]), (["cat"], ["a cat"]), (["dog", "run"], ["dogs run fast"]),
                         (["cat"], [""])])
    assert rows == [{"prompt": "generate a sentence with: dog run.", "references": ["a dog runs", "dogs run fast"]},
                    {"prompt": "generate a sentence with: cat.", "references": ["a cat"]}]


@pytest.mark.parametrize("columns", ["target", "references"])
def test_hub_task_parses_and_groups_without_the_hub(monkeypatch, columns):
    rows = {"concepts": [["ski", "mountain"], ["ski", "mountain"], ["dog", "frisbee"]]}
    if columns == "target":
        rows["target"] = ["Skiing down a mountain.", "A skier on the mountain.", "The dog caught the frisbee."]
    else:
        rows["references"] = [["Skiing down a mountain."], ["A skier on the mountain."], []]
    calls = []

    def fake_load_dataset(name, split):
        calls.append((name, split))
        return Dataset.from_dict(rows)

    monkeypatch.setattr("datasets.load_dataset", fake_load_dataset)
    test = CommonGenTask().load("test")
    assert calls == [("allenai/common_gen", "validation")]  # the hub's test split has no targets
    assert test["prompt"] == ["generate a sentence with: ski mountain.", "generate a sentence with: dog frisbee."]
    assert test["references"][0] == ["Skiing down a mountain.", "A skier on the mountain."]
    assert test["references"][1] == ([] if columns == "references" else ["The dog caught the frisbee."])


def test_concept_task_sets_are_lemmas_of_their_sentences_and_splits_share_none():
    splits = concept_sets(0)
    assert len(splits["train"]) > 10_000 and len(splits["validation"]) > 500 and len(splits["test"]) > 500
    seen = [{tuple(concepts) for concepts, _ in splits[name]} for name in ("train", "validation", "test")]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    for concepts, references in splits["validation"][:200]:
        assert 3 <= len(concepts) <= 5 and concepts == sorted(concepts)
        assert all(coverage(concepts, reference) == 1.0 for reference in references)
    rows = ConceptTask(num_validation=7).load("validation")
    assert len(rows) == 7 and all(prompt_concepts(p) for p in rows["prompt"])


def test_lexical_reward_against_hand_worked_values():
    prompts = ["generate a sentence with: cat sit.", "generate a sentence with: dog run."]
    reward = LexicalReward({"cider_d": 1.0, "meteor": 1.0, "bleu": 1.0, "rouge_l": 1.0, "coverage": 1.0})
    terms = reward.terms(prompts, ["a cat sits", "dogs run"], [["a cat sits"], ["dogs run"]])
    # CIDEr-D: every n-gram occurs in one of N = 2 documents (idf log 2); an exact match has cosine 1 for each
    # n the sentence has: (1 + 1 + 1 + 0) / 4 * 10 and (1 + 1 + 0 + 0) / 4 * 10.
    assert terms["cider_d"].tolist() == pytest.approx([7.5, 5.0])
    # METEOR of an exact match: F = 1, one chunk: 1 - 0.5 (1/3)^3 and 1 - 0.5 (1/2)^3.
    assert terms["meteor"].tolist() == pytest.approx([1 - 0.5 / 27, 1 - 0.5 / 8])
    assert terms["bleu"].tolist() == pytest.approx([1.0, 1.0]) and terms["rouge_l"].tolist() == pytest.approx([1, 1])
    assert terms["coverage"].tolist() == [1.0, 1.0]  # 'sits' covers 'sit', 'dogs' covers 'dog'
    default = LexicalReward()(prompts, ["a cat sits", "dogs run"], [["a cat sits"], ["dogs run"]])
    assert default.tolist() == pytest.approx([7.5 + 1 - 0.5 / 27, 5.0 + 1 - 0.5 / 8])
    # A row without references scores 0 on the reference terms; it takes no part in the document frequencies.
    lone = LexicalReward({"cider_d": 1.0})(prompts[:1] * 2, ["a cat sits", "a cat"], [["a cat sits"], []])
    assert lone.tolist() == [0.0, 0.0]  # N = 1 document: idf log(1 / 1) = 0 for every n-gram
    with pytest.raises(ConfigError, match=r"unknown terms \['spice'\]"):
        LexicalReward({"spice": 1.0})


def test_sentence_scores_against_hand_worked_values():
    # "the cat sat" vs "the cat sat down": p1 = 3/3, p2 = (2+1)/(2+1), p3 = (1+1)/(1+1), p4 = (0+1)/(0+1),
    # brevity exp(1 - 4/3).
    assert sentence_bleu("the cat sat".split(), ["the cat sat down".split()]) == pytest.approx(2.718281828 ** (-1 / 3))
    assert rouge_l("the cat sat".split(), ["the big cat sat down".split()]) == pytest.approx(2 * 1 * 0.6 / 1.6)
    assert sentence_bleu([], [["a"]]) == 0.0


def test_coverage_is_lemmatized():
    assert {"throw"} <= lemmas("threw") and {"dog"} <= lemmas("dogs")
    assert prompt_concepts("generate a sentence with: dog frisbee catch throw.") == ["dog", "frisbee", "catch", "throw"]
    assert coverage(["dog", "frisbee", "catch", "throw"], "The dogs caught a ball someone threw.") == 0.75
    assert coverage(["dog"], "") == 0.0


def test_coverage_metric_averages_rows_that_list_concepts():
    from types import SimpleNamespace

    rollout = SimpleNamespace(prompts=["write with: dog run.", "no concepts here", "write with: cat sit."],
                              continuations=["dogs running", "anything", "a dog"], references=[[], [], []])
    metric = Coverage()
    metric.update(EvaluationSamples(rollout, torch.zeros(3), None, None, 8))
    assert metric.compute()["coverage"].item() == pytest.approx((1.0 + 0.0) / 2)


def test_beam_search_decodes_the_best_beam_of_hugging_face(t5_dir):
    policy = load_policy(str(t5_dir))
    query = policy.encode_prompts(["good movie", "the plot was bad"], 16)
    tokens, lengths = policy.generate(*query, GenerationSettings(max_new_tokens=8, do_sample=False, num_beams=4))
    expected = policy.model.generate(input_ids=query[0], attention_mask=query[1], max_new_tokens=8, num_beams=4,
                                     do_sample=False)[:, 1:]
    for row in range(2):
        assert tokens[row, : lengths[row]].tolist() == expected[row, : lengths[row]].tolist()
    with pytest.raises(ConfigError, match="num_beams=4 decodes with beam search"):
        GenerationSettings(num_beams=4)


def test_test_runs_beam_search_and_writes_coverage(tmp_path, t5_dir):
    main(["test", "--config", str(REPO / "configs/toy/ppo.yaml"), f"--model.init_args.model={t5_dir}",
          "--data.init_args.guide=null", f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_progress_bar=false",
          "--data.init_args.eval_generation.do_sample=false", "--data.init_args.eval_generation.num_beams=3",
          "--data.init_args.metrics+=rlgf_pl.metrics.Coverage",
          "--data.init_args.metrics.init_args.pattern=^(?P<concepts>\\w+)"])
    (results_file,) = tmp_path.rglob("test_results.json")
    results = json.loads(results_file.read_text())
    assert 0.0 <= results["test/coverage"] <= 1.0 and "test/reward" in results


def test_seq2seq_sft_learns_targets_given_inputs(tmp_path, t5_dir):
    from rlgf_pl.data.tasks import ToyTask
    from rlgf_pl.zoo.training import train_sft

    task = ToyTask({"train": 64, "validation": 4}, seed=3)
    train_sft(t5_dir, task, tmp_path / "sft", lr=3e-3, batch_size=16, max_length=24, max_steps=12)
    before, after = load_policy(str(t5_dir)), load_policy(str(tmp_path / "sft"))
    assert after.kind == "seq2seq"
    rows = task.load("train").select(range(16))
    query = before.encode_prompts(list(rows["prompt"]), 24)
    target = before.encode_responses(list(rows["prompt"]), [refs[0] if refs else "" for refs in rows["references"]], 24)
    losses = [-(policy(*query, *target)[0] * target[1]).sum() / target[1].sum() for policy in (before, after)]
    assert losses[1] < losses[0] - 0.5, losses


def test_every_algorithm_has_a_commongen_and_a_concepts_config():
    for task in ("commongen", "concepts"):
        for name in ("ppo", "ppo_pp", "aggrevated", "lols", "d2lols"):
            assert (REPO / f"configs/{task}/{name}.yaml").exists(), (task, name)


def test_the_hub_commongen_configs_carry_the_paper_codes_values():
    """TRIL's CommonGen settings (cfgs/task/commongen.yaml, cfgs/alg/*.yaml), pinned so that an edit shows."""
    import yaml

    folder = REPO / "configs/commongen"
    data = yaml.safe_load((folder / "data.yaml").read_text())["init_args"]
    trainer = yaml.safe_load((folder / "trainer.yaml").read_text())
    assert data["guide"]["init_args"]["model"] == "rajkumarrrk/t5-common-gen"
    assert data["guide"]["init_args"]["generation"] == {"top_k": 0, "top_p": 0.92}
    assert data["generation"] == {"max_new_tokens": 20, "min_new_tokens": 5, "top_k": 0}
    assert data["eval_generation"] == {"max_new_tokens": 20, "min_new_tokens": 5, "do_sample": False, "num_beams": 5}
    assert (data["rollouts_per_epoch"], data["minibatch_size"], data["ppo_epochs"], data["max_prompt_tokens"]) == \
        (128, 32, 4, 15)
    assert (trainer["max_epochs"], trainer["gradient_clip_val"]) == (500, 1.0)
    for name in ("ppo", "ppo_pp", "aggrevated", "lols", "d2lols"):
        model = yaml.safe_load((folder / f"{name}.yaml").read_text())["model"]["init_args"]
        assert model["model"] == "rajkumarrrk/t5-common-gen", name
        assert (model["lr"], model["weight_decay"], model["vf_coef"], model["kl_coef"], model["sft_coef"]) == \
            (5e-6, 1e-6, 30.0, 0.0, 0.1), name
        assert model.get("beta", 0.8) == 0.8 and "aggrevated_beta" not in model, name
    (switch,) = yaml.safe_load((folder / "d2lols.yaml").read_text())["callbacks"]
    assert switch == {"class_path": "callbacks.D2LOLSSwitch", "init_args": {"switch_epoch": 100}}


def test_concepts_zoo_tiny_slice_builds_and_loads(tmp_path, monkeypatch):
    """The concept zoo's three stages on a slice: a tokenizer with T5's specials, a seq2seq learner trained
    by deshuffling then SFT, and a guide fine-tuned from it (the full build is `rlgf zoo build`)."""
    from rlgf_pl.policies.loading import load_tokenizer
    from rlgf_pl.zoo import concepts

    directories = {name: tmp_path / name for name in ("tokenizer", "learner", "guide")}
    for directory in directories.values():
        directory.mkdir()
    concepts.build_concepts_tokenizer(directories["tokenizer"], max_sets=200)
    tokenizer = load_tokenizer(str(directories["tokenizer"]))
    assert tokenizer.convert_ids_to_tokens([0, 1, 2]) == ["<pad>", "</s>", "<unk>"]
    assert tokenizer("a dog")["input_ids"][-1] == tokenizer.eos_token_id  # T5's closing </s>
    monkeypatch.setattr(concepts, "zoo_path", lambda name: directories["tokenizer"])
    concepts.build_concepts_t5(directories["learner"], pretrain_steps=2, sft_steps=2, max_sets=64)
    concepts.build_concepts_t5_guide(directories["guide"], steps=2, max_sets=64, learner_dir=directories["learner"])
    learner, guide = load_policy(str(directories["learner"])), load_policy(str(directories["guide"]))
    assert learner.kind == guide.kind == "seq2seq"
    assert any(not torch.equal(a, b) for a, b in zip(learner.parameters(), guide.parameters()))


def test_deshuffling_examples_ask_to_write_the_sentence_from_its_own_words():
    import random
    from collections import Counter

    from rlgf_pl.zoo.concepts import shuffled_words

    rng = random.Random(0)
    sentence = "The film is a quiet and moving portrait of grief"
    kept_counts = []
    for _ in range(200):
        example = shuffled_words(sentence, rng, keep=0.65)
        assert example["references"] == [sentence] and example["prompt"].startswith("generate a sentence with: ")
        words = prompt_concepts(example["prompt"])
        assert words and not Counter(words) - Counter(sentence.lower().split()), "a non-empty sub-multiset"
        kept_counts.append(len(words))
    assert 0.55 < sum(kept_counts) / (200 * 10) < 0.75  # about `keep` of the 10 words
    assert shuffled_words("one", random.Random(1), keep=0.0)["prompt"] == "generate a sentence with: one."


def test_the_learners_sft_pairs_give_half_the_training_sets_another_sets_sentence():
    """The learner's SFT data: every training prompt kept, `fraction` of them paired with another set's
    sentence (which seldom holds their concepts), the same draw on every build, evaluation splits untouched."""
    from rlgf_pl.zoo.concepts import MismatchedConceptTask

    task = MismatchedConceptTask(fraction=0.5, max_sets=400)
    rows, clean = task.load("train"), ConceptTask(num_validation=8, max_train=400).load("train")
    assert rows["prompt"] == clean["prompt"] and len(rows) == 400
    swapped = [(prompt, refs) for prompt, refs, own in zip(rows["prompt"], rows["references"], clean["references"])
               if refs != own]
    assert 0.4 < len(swapped) / len(rows) < 0.6

    def mean_coverage(pairs) -> float:
        pairs = list(pairs)
        return sum(coverage(prompt_concepts(prompt), refs[0]) for prompt, refs in pairs) / len(pairs)

    assert mean_coverage(zip(clean["prompt"], clean["references"])) > 0.95
    assert mean_coverage(swapped) < 0.1
    assert MismatchedConceptTask(fraction=0.5, max_sets=400).load("train")["references"] == rows["references"]
    assert task.load("validation")["references"] == ConceptTask(num_validation=8).load("validation")["references"]
    assert MismatchedConceptTask(fraction=0.0, max_sets=400).load("train")["references"] == clean["references"]
