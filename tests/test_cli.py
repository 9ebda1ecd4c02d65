"""End to end through the `rlgf` command: learning, test results, DDP, and clear errors."""

import json
import os
from pathlib import Path

import pytest
import torch
from conftest import REPO, fast_fit_args, run_rlgf

from rlgf_pl.cli import main
from rlgf_pl.policies.loading import load_causal_lm
from rlgf_pl.utils.tensorboard import per_epoch, read_scalars


@pytest.mark.slow
def test_ppo_learns_the_toy_reward_and_test_writes_results(tmp_path, toy_model_dir):
    main(fast_fit_args(tmp_path, toy_model_dir, epochs=10))
    logs = read_scalars(tmp_path)
    val_reward = per_epoch(logs, "val/reward")
    assert len(val_reward) == 10
    assert val_reward[-1] > val_reward[0] + 0.25, val_reward
    for tag in ("train/reward", "train/kl", "train/kl_coef", "train/clip_frac", "train/approx_kl",
                "train/value_loss", "train/entropy", "train/explained_variance"):
        assert len(per_epoch(logs, tag)) == 10, tag

    (checkpoint,) = tmp_path.rglob("last.ckpt")
    state = torch.load(checkpoint, weights_only=False)["state_dict"]
    initial = load_causal_lm(str(toy_model_dir)).state_dict()
    changed = [k for k, v in initial.items() if not torch.equal(state[f"policy.model.{k}"], v)]
    assert len(changed) > len(initial) // 2, "most learner tensors should have moved"

    test_dir = tmp_path / "test"
    main(["test", "--config", str(REPO / "configs/toy/ppo.yaml"), f"--model.init_args.model={toy_model_dir}",
          "--data.init_args.guide=null", f"--trainer.default_root_dir={test_dir}",
          "--trainer.enable_progress_bar=false", f"--ckpt_path={checkpoint}"])
    (results_file,) = test_dir.rglob("test_results.json")
    results = json.loads(results_file.read_text())
    assert results["test/reward"] > val_reward[0] + 0.25
    # `rlgf test` writes every metric family by default; validation kept the cheap set.
    for key in ("test/perplexity", "test/reference_perplexity", "test/distinct_2", "test/bleu", "test/rougeL",
                "test/meteor", "test/cider_d", "test/semantic_cosine", "test/bertscore_f1"):
        assert key in results, key
    assert "val/semantic_cosine" not in read_scalars(tmp_path)


def test_unloadable_model_names_the_path_and_fix(tmp_path):
    with pytest.raises((OSError, ValueError), match=r"(?s)'/no/such/model' does not exist.*save_pretrained"):
        main(fast_fit_args(tmp_path, "/no/such/model"))
    assert not list(tmp_path.rglob("version_*"))  # the run folder it claimed went back


def test_minibatch_larger_than_rank_rollouts_is_refused(tmp_path, toy_model_dir):
    with pytest.raises(ValueError, match=r"minibatch_size=100 is larger than the rollouts per rank.*Lower"):
        main(fast_fit_args(tmp_path, toy_model_dir, extra=["--data.init_args.minibatch_size=100"]))


@pytest.mark.parametrize("kind, message", [("nan", "non-finite"), ("shape", r"returned shape \(63,\)")])
def test_bad_reward_stops_with_a_clear_message_and_keeps_the_checkpoint(tmp_path, toy_model_dir, kind, message):
    # The reward goes bad in the second epoch (after 1 training + 1 validation call).
    args = fast_fit_args(tmp_path, toy_model_dir, epochs=3, extra=[
        "--data.init_args.reward=helpers.BrokenReward", f"--data.init_args.reward.init_args.kind={kind}",
        "--data.init_args.reward.init_args.after=2"])
    with pytest.raises(ValueError, match=message):
        main(args)
    (checkpoint,) = tmp_path.rglob("last.ckpt")
    assert torch.load(checkpoint, weights_only=False)["global_step"] > 0  # epoch 0's checkpoint is intact


@pytest.mark.slow
def test_ddp_two_cpu_ranks_sample_different_prompts(tmp_path, toy_model_dir):
    run_rlgf(fast_fit_args(tmp_path, toy_model_dir, epochs=2, extra=[
        "--trainer.strategy=ddp", "--trainer.accelerator=cpu", "--trainer.devices=2",
        "--trainer.callbacks+=callbacks.RolloutWriter"]))
    for epoch in (0, 1):
        prompts = []
        for rank in (0, 1):
            (path,) = tmp_path.rglob(f"epoch{epoch:04d}_rank{rank}.jsonl")
            rows = [json.loads(line) for line in path.read_text().splitlines()]
            assert len(rows) == 32  # 64 rollouts split over 2 ranks
            prompts.append({row["prompt"] for row in rows})
        assert not prompts[0] & prompts[1], "ranks must sample disjoint prompt shards"
    assert per_epoch(read_scalars(tmp_path), "val/reward")


def test_building_a_run_loads_no_weights(tmp_path):
    """Models are built in `configure_model`: instantiating the whole config (what --print_config and config
    validation do, and more) loads nothing, so even a model that does not exist yet is no error here."""
    from rlgf_pl.cli import build_cli

    cli = build_cli([*fast_fit_args(tmp_path, "/not/yet/trained", config="d2lols")[1:],
                     "--data.init_args.guide.init_args.model=/not/yet/a/guide"], run=False)
    assert cli.model.policy is None and cli.model.critic is None
    assert cli.datamodule.guide._policy is None


def test_a_class_path_resolves_modules_in_the_working_directory(tmp_path):
    """The `rlgf` console script, unlike `python -m`, does not put the working directory on sys.path; a user's
    module beside the config must resolve without PYTHONPATH."""
    import subprocess
    import sys

    (tmp_path / "myrl_reward.py").write_text(
        "from rlgf_pl.rewards import WordFrequencyReward\n\n\nclass MyReward(WordFrequencyReward):\n    pass\n")
    command = [str(Path(sys.executable).parent / "rlgf"), "fit", "--config", str(REPO / "configs/toy/ppo.yaml"),
               "--data.init_args.reward.class_path=myrl_reward.MyReward", "--print_config"]
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    completed = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "class_path: myrl_reward.MyReward" in completed.stdout


@pytest.mark.slow
def test_a_resumed_fit_and_a_test_stay_in_the_runs_own_folder_and_keep_its_config(tmp_path, toy_model_dir):
    main(fast_fit_args(tmp_path, toy_model_dir, epochs=1))
    (run,) = (tmp_path / "ppo").iterdir()
    fit_config = (run / "config.yaml").read_bytes()
    checkpoint = run / "checkpoints" / "last.ckpt"
    main([*fast_fit_args(tmp_path, toy_model_dir, epochs=2), f"--ckpt_path={checkpoint}"])
    main(["test", "--config", str(REPO / "configs/toy/ppo.yaml"), f"--model.init_args.model={toy_model_dir}",
          "--data.init_args.guide=null", f"--trainer.default_root_dir={tmp_path}",
          "--trainer.enable_progress_bar=false", f"--ckpt_path={checkpoint}"])
    assert [path.name for path in (tmp_path / "ppo").iterdir()] == [run.name], "no version_1"
    assert (run / "config.yaml").read_bytes() == fit_config, "the fit's config is untouched"
    assert (run / "config.fit.yaml").is_file() and (run / "config.test.yaml").is_file()
    assert (run / "test_results.json").is_file()
    assert len(per_epoch(read_scalars(run), "train/reward")) == 2, "both halves of the fit in one TensorBoard run"


def test_run_folders_are_claimed_atomically_under_a_race(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from rlgf_pl.cli import reserve_run_folder

    (tmp_path / "ppo" / "version_3").mkdir(parents=True)
    with ThreadPoolExecutor(8) as pool:
        folders = list(pool.map(lambda _: reserve_run_folder(tmp_path / "ppo"), range(16)))
    assert sorted(int(folder.name.split("_")[1]) for folder in folders) == list(range(4, 20))



def test_a_run_folder_that_cannot_be_made_is_named_with_the_fix(tmp_path):
    from rlgf_pl.cli import reserve_run_folder
    from rlgf_pl.errors import ConfigError

    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(ConfigError, match=r"a-file/ppo .*trainer.default_root_dir"):
        reserve_run_folder(tmp_path / "a-file" / "ppo")
    assert (tmp_path / "a-file").read_text() == "not a folder"

@pytest.mark.slow
def test_two_fits_started_side_by_side_keep_their_own_folders(tmp_path, toy_model_dir):
    """Peers on one default_root_dir: each run claims its own version_N, so neither overwrites the other's
    checkpoints, config or logs."""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    command = [str(Path(sys.executable).parent / "rlgf"), *fast_fit_args(tmp_path, toy_model_dir, epochs=1)]
    runs = [subprocess.Popen([*command, f"--seed_everything={seed}"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    for run in runs:
        assert run.wait(timeout=300) == 0, run.stderr.read()[-3000:]
    folders = sorted((tmp_path / "ppo").iterdir())
    assert [folder.name for folder in folders] == ["version_0", "version_1"]
    seeds = set()
    for folder in folders:
        assert (folder / "checkpoints" / "last.ckpt").is_file() and len(list(folder.glob("events.out.*"))) == 1
        seeds.add((folder / "config.yaml").read_text().split("seed_everything:")[1].split()[0])
    assert seeds == {"1", "2"}
