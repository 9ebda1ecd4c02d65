"""Nothing lost: non-finite guards, score scaling, safe checkpoints, context checks, bad files and overrides."""

from __future__ import annotations

import pytest
import torch
from conftest import REPO, fast_fit_args

from rlgf_pl.cli import main
from rlgf_pl.errors import CheckpointError, ConfigError, NonFiniteError
from rlgf_pl.policies.context import check_fits, context_window
from rlgf_pl.rollout.score_scaling import RunningMoments, merge_moments, scale_scores


def _checkpoints(root):
    return {path.name: path for path in root.rglob("*.ckpt")}


def _all_finite(checkpoint) -> bool:
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    return all(torch.isfinite(value).all() for value in state.values() if value.is_floating_point())


def test_a_huge_reward_stops_the_run_before_it_saves_nan_weights(tmp_path, toy_model_dir):
    # Epoch 0 trains and validates on zero rewards and saves; from epoch 1 the reward is 1e30: finite, but the
    # value loss overflows. Before the guard the run went on, saved NaN weights and deleted epoch 0's checkpoint.
    args = fast_fit_args(tmp_path, toy_model_dir, epochs=3, extra=[
        "--data.init_args.reward=helpers.BrokenReward", "--data.init_args.reward.init_args.kind=huge",
        "--data.init_args.reward.init_args.after=2"])
    with pytest.raises(NonFiniteError, match=r"(?s)NaN or inf in .*epoch 1.*largest \|reward\| was 1e\+30.*score_clip"):
        main(args)
    checkpoints = _checkpoints(tmp_path)
    assert set(checkpoints) == {"last.ckpt", "epoch=0-step=16.ckpt"}, checkpoints
    assert all(_all_finite(path) for path in checkpoints.values())
    assert torch.load(checkpoints["last.ckpt"], weights_only=True)["epoch"] == 0


def test_score_clip_trains_through_the_same_huge_reward(tmp_path, toy_model_dir):
    main(fast_fit_args(tmp_path, toy_model_dir, epochs=2, extra=[
        "--data.init_args.reward=helpers.BrokenReward", "--data.init_args.reward.init_args.kind=huge",
        "--data.init_args.reward.init_args.after=0", "--model.init_args.score_scaling=std",
        "--model.init_args.score_clip=5"]))
    last = _checkpoints(tmp_path)["last.ckpt"]
    assert _all_finite(last)
    state = torch.load(last, weights_only=True)["state_dict"]
    assert state["score_moments.count"] == 2 * 64 and state["score_moments.mean"] == pytest.approx(1e30)


def test_a_checkpoint_with_non_finite_weights_is_never_written(tmp_path, toy_model_dir):
    args = fast_fit_args(tmp_path, toy_model_dir, epochs=3, extra=["--trainer.callbacks+=helpers.PoisonWeightsAt",
                                                                   "--trainer.callbacks.epoch=1"])
    with pytest.raises(NonFiniteError, match=r"saving a checkpoint \(no file was written"):
        main(args)
    checkpoints = _checkpoints(tmp_path)
    assert set(checkpoints) == {"last.ckpt", "epoch=0-step=16.ckpt"}, checkpoints
    assert torch.load(checkpoints["last.ckpt"], weights_only=True)["epoch"] == 0
    assert all(_all_finite(path) for path in checkpoints.values())


def test_running_moments_match_the_moments_of_all_scores_seen():
    moments = RunningMoments()
    batches = [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0]), torch.tensor([-4.0, 0.5])]
    for batch in batches:
        moments.update(torch.tensor(float(len(batch))), batch.sum(), batch.square().sum())
    everything = torch.cat(batches).double()
    assert moments.count == 6
    assert moments.mean.item() == pytest.approx(everything.mean().item())
    assert moments.var.item() == pytest.approx(everything.var(unbiased=False).item())
    # hand-worked: {1, 3} then {5}: mean 3, population variance (4 + 0 + 4) / 3
    count, mean, var = merge_moments(*(torch.tensor(v, dtype=torch.float64) for v in (2.0, 2.0, 1.0, 1.0, 5.0, 25.0)))
    assert (count.item(), mean.item(), var.item()) == pytest.approx((3.0, 3.0, 8.0 / 3.0))


def test_scale_scores_scales_standardizes_and_clips():
    moments = RunningMoments()
    moments.update(torch.tensor(2.0), torch.tensor(4.0), torch.tensor(10.0))  # {1, 3}: mean 2, sample std sqrt(2)
    scores = torch.tensor([4.0, -2.0])
    root2 = 2.0**0.5
    assert torch.allclose(scale_scores(scores, moments, "std", None), torch.tensor([4.0 / root2, -2.0 / root2]))
    assert torch.allclose(scale_scores(scores, moments, "mean_std", None), torch.tensor([2.0 / root2, -4.0 / root2]))
    assert torch.allclose(scale_scores(scores, moments, "mean_std", 2.0), torch.tensor([2.0 / root2, -2.0]))
    assert torch.equal(scale_scores(scores, moments, None, None), scores)


def test_std_scaling_uses_the_sample_std_as_trl():
    """TRL's use_score_scaling divides by its running std with the n - 1 correction: [1, 3] -> [0.707, 2.121]
    (the population std, 1, would leave them as they are)."""
    moments = RunningMoments()
    scores = torch.tensor([1.0, 3.0])
    moments.update(torch.tensor(2.0), scores.sum(), scores.square().sum())
    assert scale_scores(scores, moments, "std", None).tolist() == pytest.approx([0.7071068, 2.1213203])
    single = RunningMoments()
    single.update(torch.tensor(1.0), torch.tensor(2.0), torch.tensor(4.0))  # one score: no n - 1 std, no inf
    assert torch.isfinite(single.std)


@pytest.mark.parametrize("stage", ["fit", "test"])
def test_prompt_plus_response_beyond_the_context_is_named_before_any_generation(tmp_path, toy_model_dir, stage):
    # The toy GPT-2 holds 256 positions; 16 prompt tokens + 300 new ones used to give a raw IndexError.
    args = fast_fit_args(tmp_path, toy_model_dir, extra=["--data.init_args.eval_generation.max_new_tokens=300"])
    if stage == "test":
        args = ["test", *args[1:]]
    with pytest.raises(ConfigError, match=r"(?s)16 \+ 300 = 316 tokens do not fit the learner .*n_positions = 256.*"
                                          r"max_new_tokens .* at most 240.*max_prompt_tokens to at most 0"):
        main(args)
    assert not list(tmp_path.rglob("*.ckpt"))
    assert not list(tmp_path.rglob("version_*")), "a run that failed before training leaves no version folder"


def test_the_command_prints_a_user_error_without_a_traceback(tmp_path, toy_model_dir, monkeypatch, capsys):
    args = fast_fit_args(tmp_path, toy_model_dir, extra=["--data.init_args.eval_generation.max_new_tokens=300"])
    monkeypatch.delenv("RLGF_TRACEBACK")
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "rlgf: error: data.max_prompt_tokens + max_new_tokens = 16 + 300 = 316 tokens" in err
    assert "RLGF_TRACEBACK=1" in err and "Traceback" not in err
    assert not list(tmp_path.rglob("version_*"))


def _toy_vocabulary_gpt2(directory, **config):
    """A random GPT-2 over the toy vocabulary with the given config fields, written with save_pretrained."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from rlgf_pl.zoo.toy import build_toy_tokenizer

    tokenizer = build_toy_tokenizer()
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_layer=1, n_head=2, **config)).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_the_guide_context_is_checked_too(tmp_path, toy_model_dir):
    guide = _toy_vocabulary_gpt2(tmp_path / "short-guide", n_positions=20, n_embd=16)
    with pytest.raises(ConfigError, match=r"16 \+ 12 = 28 tokens do not fit the guide .*short-guide.*n_positions = 20"):
        main(fast_fit_args(tmp_path, toy_model_dir, config="ppo_pp", guide=guide))


def test_context_window_reads_absolute_positions_and_skips_relative_ones():
    from transformers import GPT2Config, LlamaConfig, T5Config

    assert context_window(GPT2Config(n_positions=64)) == ("n_positions", 64)
    assert context_window(LlamaConfig(max_position_embeddings=128)) == ("max_position_embeddings", 128)
    assert context_window(T5Config()) is None
    check_fits("the learner", "t5", "seq2seq", T5Config(), 10_000, 10_000)  # relative positions: no bound


@pytest.fixture(scope="module")
def trained_ppo(tmp_path_factory, toy_model_dir):
    """A 1-epoch toy PPO run: its checkpoint and its (movable) model directory."""
    import shutil

    root = tmp_path_factory.mktemp("trained-ppo")
    model = root / "model"
    shutil.copytree(toy_model_dir, model)
    main(fast_fit_args(root / "run", model, epochs=1))
    (checkpoint,) = (root / "run").rglob("last.ckpt")
    return checkpoint, model


def _test_args(tmp_path, checkpoint, config="ppo", extra=()):
    return ["test", "--config", str(REPO / f"configs/toy/{config}.yaml"), "--data.init_args.guide=null",
            f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_progress_bar=false",
            f"--ckpt_path={checkpoint}", *extra]


def test_a_text_file_as_checkpoint_is_named(tmp_path, trained_ppo):
    path = tmp_path / "notes.ckpt"
    path.write_text("epoch 3 looked good")
    with pytest.raises(CheckpointError, match=r"notes\.ckpt is not a checkpoint: .*not one \(it starts with 'epoch 3"):
        main(_test_args(tmp_path, path, extra=[f"--model.init_args.model={trained_ppo[1]}"]))


def test_a_hostile_pickle_is_refused_without_running_its_code(tmp_path, trained_ppo):
    from helpers import RunsCodeWhenUnpickled

    mark = tmp_path / "mark"
    path = tmp_path / "hostile.ckpt"
    torch.save({"state_dict": {}, "payload": RunsCodeWhenUnpickled(str(mark))}, path)
    with pytest.raises(CheckpointError, match=r"hostile\.ckpt holds Python objects that a safe load refuses") as error:
        main(_test_args(tmp_path, path, extra=[f"--model.init_args.model={trained_ppo[1]}"]))
    assert "weights_only=False" not in str(error.value) and error.value.__cause__ is None
    assert not mark.exists(), "the file's code must never run"


def test_a_state_dict_file_is_not_a_lightning_checkpoint(tmp_path, trained_ppo):
    path = tmp_path / "weights.pt"
    torch.save({"transformer.wte.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError, match=r"weights\.pt is a torch file but not a Lightning checkpoint"):
        main(_test_args(tmp_path, path, extra=[f"--model.init_args.model={trained_ppo[1]}"]))


def test_a_moved_model_directory_wins_over_the_checkpoint_and_says_so(tmp_path, trained_ppo, capsys):
    checkpoint, model = trained_ppo
    moved = tmp_path / "moved"
    model.rename(moved)
    try:
        main(_test_args(tmp_path, checkpoint, extra=[f"--model.init_args.model={moved}"]))
    finally:
        moved.rename(model)
    assert list(tmp_path.rglob("test_results.json"))
    line = f"these settings override the checkpoint's: model: '{model}' -> '{moved}'"
    assert capsys.readouterr().err.count(line) == 1


def test_another_algorithm_than_the_checkpoints_is_refused(tmp_path, trained_ppo):
    with pytest.raises(CheckpointError, match=r"trained with PPO, but this run's config asks for AggreVaTeD"):
        main(_test_args(tmp_path, trained_ppo[0], config="aggrevated",
                        extra=[f"--model.init_args.model={trained_ppo[1]}"]))


def test_a_weight_layout_change_is_refused(tmp_path, trained_ppo):
    with pytest.raises(CheckpointError, match=r"critic_share_trunk: checkpoint False, config True"):
        main(_test_args(tmp_path, trained_ppo[0], extra=[f"--model.init_args.model={trained_ppo[1]}",
                                                         "--model.init_args.critic_share_trunk=true"]))


def test_a_model_of_another_architecture_is_named(tmp_path, trained_ppo):
    other = _toy_vocabulary_gpt2(tmp_path / "wider", n_positions=256, n_embd=48)
    with pytest.raises(CheckpointError, match=r"weights do not fit .*wider.*shapes differ \(policy\.model\..* \(\S+, 32\) in "
                                              r"the checkpoint, \(\S+, 48\) here"):
        main(_test_args(tmp_path, trained_ppo[0], extra=[f"--model.init_args.model={other}"]))


def test_the_console_script_prints_a_wrapped_config_error_in_one_line(tmp_path, toy_model_dir):
    # jsonargparse re-raises errors from a class's __init__ as its own ValueError; the message still comes first.
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {key: value for key, value in os.environ.items() if key != "RLGF_TRACEBACK"}
    env["PYTHONPATH"] = str(REPO)
    command = [str(Path(sys.executable).parent / "rlgf"),
               *fast_fit_args(tmp_path, toy_model_dir, extra=["--data.init_args.minibatch_size=0"])]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 1
    assert "rlgf: error: data.minibatch_size must be >= 1, got 0." in completed.stderr
    assert "Traceback" not in completed.stderr
