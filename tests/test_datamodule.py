"""The rollout data module: tasks, prompt hygiene, minibatch counts and checkpointable sampling state."""

import json
from types import SimpleNamespace

import pytest
import torch
from conftest import built

from rlgf_pl.algorithms.ppo import PPO
from rlgf_pl.data.datamodule import RolloutDataModule
from rlgf_pl.data.tasks import TextFilesTask, ToyTask
from rlgf_pl.errors import DataError
from rlgf_pl.policies.generation import GenerationSettings
from rlgf_pl.rewards import WordFrequencyReward


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def _attach(datamodule):
    """Set the data module up the way a Trainer does, minus the Trainer."""
    datamodule.trainer = SimpleNamespace(global_rank=0, world_size=1, current_epoch=0)
    datamodule.setup("fit")
    return datamodule


def test_missing_column_is_named_with_the_fix(tmp_path):
    files = {"train": _write_jsonl(tmp_path / "train.jsonl", [{"text": "a movie", "reference": "ok"}])}
    with pytest.raises(DataError, match=r"Column 'prompt' \(set as prompt_column\) is missing.*\['text', 'reference'\]"):
        TextFilesTask(files, prompt_column="prompt").load("train")


@pytest.mark.parametrize("name, text, message", [
    ("train.jsonl", "", r"The 'train' data file .*train\.jsonl is empty"),
    ("train.jsonl", "\n  \n", r"The 'train' data file .*train\.jsonl is empty"),
    ("train.csv", "prompt,reference\n", r"train\.csv holds only a CSV header \('prompt,reference'\) and no rows"),
    ("train.json", "[]", r"The 'train' data file .*train\.json has no rows"),
])
def test_empty_and_header_only_task_files_name_the_file_and_split(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        TextFilesTask({"train": str(path)}).load("train")


def test_empty_prompts_are_dropped_with_a_count(tmp_path, toy_model_dir):
    rows = [{"prompt": "good movie", "reference": "yes"}, {"prompt": "", "reference": "x"},
            {"prompt": "   ", "reference": "y"}, {"prompt": "bad film", "reference": ["a", "b"]}]
    files = {split: _write_jsonl(tmp_path / f"{split}.jsonl", rows) for split in ("train", "validation")}
    datamodule = RolloutDataModule(TextFilesTask(files), WordFrequencyReward(), rollouts_per_epoch=2, minibatch_size=1)
    with pytest.warns(UserWarning, match=r"Dropped 2 empty prompt\(s\) from the train split \(2 remain\)"):
        _attach(datamodule)
    assert datamodule.datasets["train"]["prompt"] == ["good movie", "bad film"]
    assert datamodule.datasets["train"]["references"] == [["yes"], ["a", "b"]]


def test_minibatch_count_matches_len_and_masks_cover_the_response(toy_model_dir):
    module = built(PPO(model=str(toy_model_dir)))
    datamodule = _attach(RolloutDataModule(
        ToyTask({"train": 40, "validation": 4}), WordFrequencyReward(), rollouts_per_epoch=10, minibatch_size=4,
        ppo_epochs=2, generation=GenerationSettings(max_new_tokens=6, top_k=0), generation_batch_size=3,
    ))
    loader = datamodule.train_dataloader()
    steps = list(loader)
    assert len(steps) == len(loader) == 6
    assert steps == [(0, 0), (0, 4), (0, 8), (1, 0), (1, 4), (1, 8)]  # two passes of minibatches 4, 4, 2
    buffer = module.collect(datamodule)
    assert len(buffer) == 10 and buffer.response_ids.shape[1] <= 6
    assert torch.equal(buffer.policy_mask, buffer.response_mask)  # PPO: the learner wrote everything
    assert torch.equal(buffer.critic_mask, buffer.response_mask)
    assert (buffer.advantages[buffer.response_mask == 0] == 0).all()


def test_sampling_state_round_trips(toy_model_dir):
    module = built(PPO(model=str(toy_model_dir)))

    def fresh():
        return _attach(RolloutDataModule(ToyTask({"train": 50, "validation": 4}), WordFrequencyReward(),
                                          rollouts_per_epoch=8, minibatch_size=8, ppo_epochs=1,
                                          generation=GenerationSettings(max_new_tokens=5, top_k=0)))

    first = fresh()
    module.collect(first)
    state = first.state_dict()
    expected = module.collect(first)

    second = fresh()
    second.load_state_dict(state)
    resumed = module.collect(second)
    assert torch.equal(resumed.query_ids, expected.query_ids)
    assert torch.equal(resumed.response_ids, expected.response_ids)
