"""tools/study.py and study_report.py: the study's plan, each run's `rlgf fit` arguments, and the report from
finished runs."""

import importlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("study_tool", REPO / "tools/study.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["study_tool"] = module  # its dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    yield module
    del sys.modules["study_tool"]


@pytest.fixture(scope="module")
def study_report(study):
    return importlib.import_module("study_report")  # on the path that study.py set


def test_plan_sweeps_the_switch_beta_and_ladder_and_shares_the_runs_they_have_in_common(study):
    sweeps = study.plan("demo", epochs=8, betas=[0.3, 0.8], ladder=["imdb-tiny", "imdb-tiny-guide"])
    assert [run.switch_epoch for run in sweeps["switch"]] == [0, 2, 4, 6, 8]
    assert {run.rung for run in sweeps["switch"] + sweeps["beta"]} == {"imdb-tiny-guide"}
    assert [(run.algorithm, run.beta) for run in sweeps["beta"]] == [
        ("ppo_pp", 0.3), ("ppo_pp", 0.8), ("aggrevated", 0.3), ("aggrevated", 0.8)]
    assert sweeps["ladder"][0] == study.Run("ppo", None)
    assert len(sweeps["ladder"]) == 1 + 4 * 2
    # The ladder's D2LOLS with the task's guide is the switch sweep's middle point: one run, made once.
    assert study.Run("d2lols", "imdb-tiny-guide", switch_epoch=4) in sweeps["ladder"]
    assert len(study.unique_runs(sweeps)) == 5 + 4 + 9 - 1


def test_a_switch_run_hands_its_epoch_to_the_switch_callback(study, tmp_path):
    run = study.Run("d2lols", "imdb-tiny-guide-25", switch_epoch=6)
    arguments = study.fit_command("demo", run, seed=2, root=tmp_path, epochs=8, val_every=4)
    callbacks = json.loads(next(a for a in arguments if a.startswith("--callbacks="))[len("--callbacks="):])
    assert callbacks == [{"class_path": "callbacks.D2LOLSSwitch", "init_args": {"switch_epoch": 6}}]
    assert arguments[:3] == ["fit", "--config", str(REPO / "configs/demo/d2lols.yaml")]
    assert "--data.init_args.guide.init_args.model=zoo:imdb-tiny-guide-25" in arguments
    assert {"--seed_everything=2", "--trainer.max_epochs=8", "--trainer.check_val_every_n_epoch=4",
            "--trainer.enable_checkpointing=false"} <= set(arguments)
    assert run.name == "d2lols_switch6@imdb-tiny-guide-25"


def test_report_tabulates_mean_and_std_over_seeds_and_draws_the_four_plots(study, study_report, tmp_path):
    pytest.importorskip("matplotlib")
    sweeps = study.plan("demo", epochs=8, betas=[0.3, 0.6, 0.8], ladder=["imdb-tiny", "imdb-tiny-guide"])
    final = {"ppo": [0.70, 0.80, 0.75]}  # mean 0.750, std 0.050
    outcomes = {}
    for run in study.unique_runs(sweeps):
        for seed, value in enumerate(final.get(run.name, [0.6, 0.6, 0.6])):
            curve = [(0.0, 0.5), (4.0, (0.5 + value) / 2), (8.0, value)]
            outcomes[(run, seed)] = study_report.Outcome({"reward": curve}, seconds=10.0)
    text = study_report.report("demo", sweeps, outcomes, {"imdb-tiny": 0.61, "imdb-tiny-guide": 0.78}, epochs=8,
                               val_every=4, overrides=study.STUDY_ARGS["demo"], out=tmp_path,
                               command="python tools/study.py run --task demo")
    assert "untrained learner (the validation before training, every run): 0.500 ± 0.000" in text
    assert "PPO: 0.750 ± 0.050" in text
    assert "| 4 | 50 | 0.600 ± 0.000 | 3 |" in text  # the switch table: epoch, % of training, reward, n
    assert "| imdb-tiny (0.610) | imdb-tiny-guide (0.780) |" in text
    assert "each with 8 epochs (the configs: 20)" in text
    assert (tmp_path / "results.md").read_text() == text
    assert all((tmp_path / f"{name}.png").stat().st_size > 0 for name in ("switch", "beta", "ladder", "curves"))


def test_a_report_without_finished_runs_says_where_it_looked_and_writes_nothing(study, tmp_path, capsys):
    out = tmp_path / "out"
    assert study.main(["report", "--task", "demo", "--root", str(tmp_path), "--out", str(out)]) == 1
    assert f"No finished runs under {tmp_path / 'demo'}" in capsys.readouterr().err
    assert not out.exists()
