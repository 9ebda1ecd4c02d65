"""The supervised term (`sft_coef`): reference targets drawn per row, closed by the end token, and trained on."""

from types import SimpleNamespace

import pytest
import torch
from conftest import built, fast_fit_args
from helpers import StopAfterEpochs  # noqa: F401  (used by class path in CLI args)

from rlgf_pl.algorithms import PPO
from rlgf_pl.cli import build_cli
from rlgf_pl.data.datamodule import RolloutDataModule
from rlgf_pl.data.tasks import ToyTask
from rlgf_pl.errors import ConfigError
from rlgf_pl.policies.generation import GenerationSettings
from rlgf_pl.policies.loading import load_policy
from rlgf_pl.rewards import WordFrequencyReward
from rlgf_pl.rollout.targets import draw_references, reference_targets, with_end_token
from rlgf_pl.utils.tensorboard import per_epoch, read_scalars


def test_each_row_draws_uniformly_among_its_own_references_with_one_draw_per_row():
    references = [["a", "b", "c"], [], ["d"]]
    generator = torch.Generator().manual_seed(0)
    counts = {"a": 0, "b": 0, "c": 0}
    for _ in range(3000):
        first, empty, only = draw_references(references, generator)
        assert empty is None and only == "d"
        counts[first] += 1
    assert all(900 < count < 1100 for count in counts.values()), counts
    drawn, direct = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    draw_references(references, drawn)
    torch.rand(3, generator=direct, dtype=torch.float64)
    assert torch.equal(torch.rand(4, generator=drawn), torch.rand(4, generator=direct)), "one draw per row, no more"


def test_the_end_token_goes_after_the_last_real_token_of_kept_rows_by_hand():
    ids = torch.tensor([[5, 6, 7], [8, 0, 0], [0, 0, 0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    new_ids, new_mask = with_end_token(ids, mask, 9, torch.tensor([True, True, False]))
    assert new_ids.tolist() == [[5, 6, 7, 9], [8, 9, 0, 0], [9, 0, 0, 0]]
    assert new_mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]]
    assert with_end_token(ids, mask, None, torch.tensor([True] * 3)) == (ids, mask)


@pytest.mark.parametrize("learner", ["toy_model_dir", "t5_dir"])
def test_targets_are_the_drawn_references_in_the_learners_tokens_closed_by_its_end_token(learner, request):
    policy = load_policy(str(request.getfixturevalue(learner)))
    prompts, references = ["the movie", "a plot", "its end"], [["was good and fun"], [], ["bad bad bad bad"]]
    ids, mask = reference_targets(policy, prompts, references, 4, torch.Generator().manual_seed(0))
    first = " " + references[0][0] if policy.continues_prompt_text else references[0][0]  # as it follows "the movie"
    expected, _ = policy.encode_responses(prompts[:1], [first], None)
    assert ids[0, : mask[0].sum()].tolist() == [*expected[0].tolist(), policy.eos_token_id][:4]
    assert mask[1].sum() == 0, "a row without references trains on nothing"
    assert mask.shape[1] <= 4 and mask[2].sum() == 4, "cut to max_tokens"
    logprobs = policy(*policy.encode_prompts(prompts, 8), ids, mask)[0]
    assert torch.isfinite(logprobs).all() and (logprobs[mask.bool()] < 0).all(), "the learner scores its targets"


def test_a_causal_target_reads_as_the_reference_follows_the_prompt(toy_model_dir):
    """Prompt "the movie" and reference "is good": the target is the tokens of "is good" in "the movie is good", not
    of "the movieis good", where the word-level tokenizer loses 'is' (and BPE ones mangle it)."""
    policy = load_policy(str(toy_model_dir))
    ids, mask = reference_targets(policy, ["the movie", "the movie "], [["is good"], ["is good"]], 8,
                                  torch.Generator().manual_seed(0))
    whole = policy.tokenizer("the movie is good", add_special_tokens=False)["input_ids"]
    prompt = policy.tokenizer("the movie", add_special_tokens=False)["input_ids"]
    for row in range(2):  # with and without the prompt's own trailing space
        target = ids[row, : mask[row].sum()].tolist()
        assert target == [*whole[len(prompt):], policy.eos_token_id], (row, target)
    assert policy.decode(ids[:1], mask[:1])[0].split() == ["is", "good"]


def test_a_task_without_references_gets_a_named_error(toy_model_dir):
    module = built(PPO(model=str(toy_model_dir), sft_coef=0.5))
    datamodule = RolloutDataModule(ToyTask({"train": 8, "validation": 2}), WordFrequencyReward(), rollouts_per_epoch=4,
                                   minibatch_size=4, ppo_epochs=1, generation=GenerationSettings(max_new_tokens=4))
    datamodule.trainer = SimpleNamespace(global_rank=0, world_size=1, current_epoch=0)
    datamodule.setup("fit")
    datamodule.next_prompts = lambda: (["a", "b", "c", "d"], [[], [], [], []])
    with pytest.raises(ConfigError, match="sft_coef > 0 trains on reference continuations, but no prompt"):
        module.collect(datamodule)
    with pytest.raises(ConfigError, match="sft_coef must be >= 0"):
        PPO(model=str(toy_model_dir), sft_coef=-1.0)


@pytest.mark.slow
def test_the_supervised_term_lowers_the_references_nll_and_resumes_exactly(tmp_path, toy_model_dir):
    sft = ["--model.init_args.sft_coef=1.0", "--model.init_args.lr=1e-3"]
    straight, stopped, resumed = tmp_path / "straight", tmp_path / "stopped", tmp_path / "resumed"
    build_cli(fast_fit_args(straight, toy_model_dir, epochs=4, extra=sft))
    nll = per_epoch(read_scalars(straight), "train/sft_nll")
    # the toy references are random sentences, so the floor is high; the NLL must fall every epoch
    assert len(nll) == 4 and all(later < earlier for earlier, later in zip(nll, nll[1:])) and nll[-1] < nll[0] - 0.1, nll
    build_cli(fast_fit_args(stopped, toy_model_dir, epochs=4, extra=[*sft, "--trainer.callbacks+=helpers.StopAfterEpochs",
                                                                     "--trainer.callbacks.init_args.epochs=2"]))
    (checkpoint,) = stopped.rglob("last.ckpt")
    build_cli([*fast_fit_args(resumed, toy_model_dir, epochs=4, extra=sft), f"--ckpt_path={checkpoint}"])
    assert per_epoch(read_scalars(stopped), "train/sft_nll") + per_epoch(read_scalars(resumed), "train/sft_nll") == nll
    (straight_path,), (resumed_path,) = straight.rglob("last.ckpt"), resumed.rglob("last.ckpt")
    final_straight = torch.load(straight_path, weights_only=False)["state_dict"]
    final_resumed = torch.load(resumed_path, weights_only=False)["state_dict"]
    for key, value in final_straight.items():
        torch.testing.assert_close(final_resumed[key], value, rtol=0, atol=0, msg=key)
