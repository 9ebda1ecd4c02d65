"""Evaluation through the `rlgf` command: metrics at validation and test, the guide baseline, the results
table and the sample logger."""

from __future__ import annotations

import json

import pytest
from conftest import REPO, fast_fit_args
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlgf_pl.cli import main
from rlgf_pl.utils.tensorboard import read_scalars


def text_summaries(directory) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for event_file in sorted(directory.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(event_file), size_guidance={"tensors": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["tensors"]:
            found.setdefault(tag, []).extend(
                event.tensor_proto.string_val[0].decode() for event in accumulator.Tensors(tag))
    return found


def test_validation_metrics_samples_and_a_learner_vs_guide_test_table(tmp_path, toy_model_dir,
                                                                       other_toy_model_dir, capsys):
    fit_dir = tmp_path / "fit"
    metrics = ["--data.init_args.metrics+=rlgf_pl.metrics.GenerationPerplexity",
               "--data.init_args.metrics+=rlgf_pl.metrics.Diversity",
               "--data.init_args.metrics+=rlgf_pl.metrics.METEOR"]
    main(fast_fit_args(fit_dir, toy_model_dir, epochs=1, config="d2lols", guide=other_toy_model_dir,
                       extra=["--trainer.callbacks+=callbacks.SampleLogger", "--trainer.num_sanity_val_steps=-1", *metrics]))
    scalars = read_scalars(fit_dir)
    for tag in ("val/reward", "val/reward_std", "val/perplexity", "val/distinct_1", "val/meteor"):
        # step 0 (the sanity validation of the untrained learner) and after the one epoch
        assert len(scalars[tag]) == 2, tag
    assert "val/bleu" not in scalars, "a config that lists metrics runs those only"
    (samples,) = [texts for tag, texts in text_summaries(fit_dir).items() if tag.startswith("samples")]
    assert len(samples) == 2
    header, rule, *rows = samples[-1].splitlines()
    assert header == "| prompt | guide | guide reward | learner | learner reward |"
    assert len(rows) == 4

    (checkpoint,) = fit_dir.rglob("last.ckpt")
    test_dir = tmp_path / "test"
    main(["test", "--config", str(REPO / "configs/toy/d2lols.yaml"), f"--model.init_args.model={toy_model_dir}",
          f"--data.init_args.guide.init_args.model={other_toy_model_dir}", "--data.init_args.evaluate_guide=true",
          "--data.init_args.reward.init_args.at_least=0",
          f"--trainer.default_root_dir={test_dir}", "--trainer.enable_progress_bar=false", f"--ckpt_path={checkpoint}",
          *metrics])
    (results_file,) = test_dir.rglob("test_results.json")
    results = json.loads(results_file.read_text())
    for name in ("reward", "reward_std", "perplexity", "distinct_1", "unique_2", "length_mean", "meteor"):
        assert f"test/{name}" in results and f"test/guide/{name}" in results, name
    # a different policy wrote the guide column: its continuations score and read differently
    assert results["test/guide/reward"] != results["test/reward"]
    assert results["test/guide/perplexity"] != results["test/perplexity"]
    table = results_file.with_suffix(".md").read_text()
    assert table.splitlines()[0] == "| metric | learner | guide |"
    assert f"| reward | {results['test/reward']:.4f} | {results['test/guide/reward']:.4f} |" in table
    assert table in capsys.readouterr().out


def test_guide_baseline_without_a_guide_is_refused(tmp_path, toy_model_dir):
    with pytest.raises(ValueError, match="evaluate_guide needs a guide"):
        main(fast_fit_args(tmp_path, toy_model_dir, epochs=1, extra=["--data.init_args.evaluate_guide=true"]))
