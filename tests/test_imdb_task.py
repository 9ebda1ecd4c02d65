"""The IMDB task: cleaning, the prompt/reference split and the offline held-out split."""

import pytest

from rlgf_pl.data.tasks.imdb import IMDBTask, clean_review, offline_imdb_splits, split_review


def test_clean_review_drops_tags_and_collapses_space():
    assert clean_review("Great film.<br /><br />Loved   it <i>a lot</i>") == "Great film. Loved it a lot"


@pytest.mark.parametrize("review, prompt, reference", [
    ("one two three four", "one two", "three four"),
    ("one two three four five", "one two", "three four five"),  # the odd word goes to the reference
    ("A fine movie.<br /><br />The end was weak", "A fine movie.", "The end was weak"),
    ("single", "", "single"),
])
def test_split_review_by_hand(review, prompt, reference):
    assert split_review(review) == (prompt, reference)


def test_offline_splits_are_disjoint_and_fixed():
    first, second = offline_imdb_splits(), offline_imdb_splits()
    assert [len(first[s]) for s in ("validation", "test")] == [1000, 1000] and len(first["train"]) > 22_000
    assert first["validation"] == second["validation"]
    train_texts = {text for text, _ in first["train"]}
    assert not train_texts & {text for text, _ in first["validation"] + first["test"]}


def test_offline_task_rows():
    task = IMDBTask(source="offline", num_validation=20)
    validation = task.load("validation")
    assert len(validation) == 20
    for prompt, references in zip(validation["prompt"], validation["references"]):
        assert "<br" not in prompt and len(references) == 1
        assert abs(len(prompt.split()) - len(references[0].split())) <= 1
    positive = IMDBTask(source="offline", sentiment="positive", max_train=50).load("train")
    assert len(positive) == 50
