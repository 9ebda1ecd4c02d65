"""tools/compare.py and rlgf_pl.comparison: mean ± std tables and curves from run directories."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO
from torch.utils.tensorboard import SummaryWriter

from rlgf_pl.comparison import load_run, summary_table


def fake_run(root, name, seed, results, val_rewards):
    directory = root / name / f"seed{seed}"
    directory.mkdir(parents=True)
    (directory / "test_results.json").write_text(json.dumps(results))
    writer = SummaryWriter(str(directory))
    for step, value in enumerate(val_rewards):
        writer.add_scalar("val/reward", value, step, walltime=1000.0 + 10 * step)
        if step:  # the tokens the learner wrote by the end of each epoch, logged with its validation
            writer.add_scalar("train/learner_tokens", 100.0 * step * (seed + 1), step, walltime=1000.0 + 10 * step)
        writer.add_scalar("train/kl", value / 10, step + 1)
        writer.add_scalar("val/coverage", value / 2, step)
    writer.close()
    return directory


@pytest.fixture
def runs(tmp_path):
    return [
        fake_run(tmp_path, "ppo", 0, {"test/reward": 0.5, "test/bleu": 0.1, "test/guide/reward": 0.8,
                                      "test/perplexity": 40.0}, [0.1, 0.5]),
        fake_run(tmp_path, "ppo", 1, {"test/reward": 0.7, "test/bleu": 0.3, "test/guide/reward": 0.9,
                                      "test/perplexity": 60.0}, [0.1, 0.7]),
        fake_run(tmp_path, "d2lols", 0, {"test/reward": 0.9, "test/bleu": 0.2, "test/perplexity": 45.0}, [0.1, 0.9]),
    ]


def test_table_is_mean_and_std_over_seeds_with_a_guide_column(runs):
    table = summary_table([load_run(directory) for directory in runs])
    lines = table.splitlines()
    assert lines[0] == "| metric | ppo (n=2) | d2lols (n=1) | guide (n=2) |"
    # ppo reward: mean 0.6, sample std sqrt(0.02) = 0.1414; one d2lols seed: its value; guide: 0.85 ± 0.0707
    assert lines[2] == "| reward | 0.6000 ± 0.1414 | 0.9000 | 0.8500 ± 0.0707 |"  # n = 1: no '± 0'
    assert "| bleu | 0.2000 ± 0.1414 | 0.2000 | – |" in lines


def test_frontier_points_are_one_per_seed(runs):
    from rlgf_pl.comparison import frontier_points

    records = [load_run(directory) for directory in runs]
    assert frontier_points(records, "perplexity") == {"ppo": [(40.0, 0.5), (60.0, 0.7)], "d2lols": [(45.0, 0.9)]}
    kl = frontier_points(records, "kl")  # the last train/kl of each run: val rewards / 10 in fake_run
    assert kl["ppo"] == [(pytest.approx(0.05), 0.5), (pytest.approx(0.07), 0.7)]


def test_compare_tool_writes_the_table_and_png_plots(runs, tmp_path):
    out = tmp_path / "out"
    subprocess.run([sys.executable, str(REPO / "tools/compare.py"), *map(str, runs), "--out", str(out),
                    "--curves", "val/coverage"], check=True, capture_output=True)
    assert (out / "results.md").read_text() == summary_table([load_run(directory) for directory in runs])
    for image in ("val_reward.png", "train_kl.png", "reward_perplexity.png", "reward_kl.png", "val_coverage.png",
                  "efficiency.png"):
        assert (out / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sample_efficiency_puts_each_validation_at_the_learners_tokens_and_the_elapsed_time(runs, tmp_path):
    from rlgf_pl.comparison import efficiency_points, efficiency_table

    ppo_seed1 = load_run(runs[1])
    assert efficiency_points(ppo_seed1, "val/reward", "tokens") == [(0.0, pytest.approx(0.1)), (200.0, pytest.approx(0.7))]
    assert efficiency_points(ppo_seed1, "val/reward", "seconds") == [(0.0, pytest.approx(0.1)), (10.0, pytest.approx(0.7))]
    table = efficiency_table([load_run(directory) for directory in runs]).splitlines()
    assert table[0] == "| | ppo (n=2) | d2lols (n=1) |"
    assert table[2] == "| learner tokens | 150.0 ± 70.7 | 100.0 |"  # seeds 0 and 1 wrote 100 and 200
    with pytest.raises(ValueError, match="x must be one of"):
        efficiency_points(ppo_seed1, "val/reward", "epochs")


def test_elapsed_time_leaves_out_the_pause_before_a_resume(tmp_path):
    from rlgf_pl.utils.tensorboard import read_scalars_and_elapsed

    for start, steps in ((1000.0, (0, 1)), (9000.0, (2, 3))):  # the run, then its resume two hours later
        writer = SummaryWriter(str(tmp_path), filename_suffix=f".{int(start)}")
        for index, step in enumerate(steps):
            writer.add_scalar("val/reward", 0.1 * step, step, walltime=start + 30.0 * index)
        writer.close()
    values, elapsed = read_scalars_and_elapsed(tmp_path)
    assert [seconds for _, seconds in elapsed["val/reward"]] == [0.0, 30.0, 30.0, 60.0]
    assert [step for step, _ in elapsed["val/reward"]] == [step for step, _ in values["val/reward"]] == [0, 1, 2, 3]


def test_compare_names_the_missing_extra_when_matplotlib_is_not_installed(runs, tmp_path, monkeypatch, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("compare_tool", REPO / "tools/compare.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails as if not installed
    monkeypatch.setattr(sys, "argv", ["compare.py", *map(str, runs), "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as exit_info:
        tool.main()
    assert exit_info.value.code == 2
    assert "pip install -e '.[tools]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_run_without_test_results_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `rlgf test`"):
        load_run(tmp_path)


def test_validation_curves_are_placed_at_the_epochs_they_followed():
    from rlgf_pl.comparison import epochs_of

    # 16 steps per epoch, validation every second epoch and at step 0; Lightning logs `epoch` at each step.
    scalars = {"val/reward": [(0, 0.1), (32, 0.2), (64, 0.3)],
               "epoch": [(0, 0.0), (16, 0.0), (17, 1.0), (32, 1.0), (33, 2.0), (48, 2.0), (64, 3.0)]}
    assert epochs_of(scalars, "val/reward") == [0.0, 2.0, 4.0]
    assert epochs_of({"val/reward": [(0, 0.1), (5, 0.2)]}, "val/reward") == [0.0, 1.0]  # no epoch series: index


def test_a_suffix_sweep_groups_runs_by_series_and_setting(tmp_path):
    from rlgf_pl.comparison import plot_sweep, sweep_points

    directories = [fake_run(tmp_path, f"{name}_kl{kl}", seed, {"test/reward": reward, "test/perplexity": 50.0}, [0.1])
                   for name, kl, seed, reward in [("ppo", "0.01", 0, 0.8), ("ppo", "0.01", 1, 0.6),
                                                  ("ppo", "0.1", 0, 0.5), ("ppo_pp", "0.1", 0, 0.7)]]
    records = [load_run(directory) for directory in directories] + [load_run(fake_run(tmp_path, "ppo", 5, {}, [0.1]))]
    parameter, points = sweep_points(records, "reward")
    assert parameter == "kl"  # ppo_pp's own underscore stays in its series name; the plain "ppo" run is left out
    assert points == {"ppo": {0.01: [0.8, 0.6], 0.1: [0.5]}, "ppo_pp": {0.1: [0.7]}}
    assert plot_sweep(records, ["reward", "perplexity"], tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert plot_sweep(records[2:], ["reward"], tmp_path / "none.png") is None  # no series with two settings

    mixed = records + [load_run(fake_run(tmp_path, "ppo_lr0.001", 0, {"test/reward": 0.1}, [0.1]))]
    with pytest.raises(ValueError, match="more than one setting"):
        sweep_points(mixed, "reward")
