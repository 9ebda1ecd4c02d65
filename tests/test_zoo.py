"""The offline IMDB zoo: a tiny-slice build in seconds, and (slow) the full build plus a short quickstart."""

import logging
from functools import partial

import pytest
import torch
from conftest import REPO
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from rlgf_pl.cli import build_cli
from rlgf_pl.policies.loading import load_tokenizer
from rlgf_pl.rewards import SentimentReward
from rlgf_pl.utils.tensorboard import per_epoch, read_scalars
from rlgf_pl.zoo import imdb, registry


def test_tiny_slice_build_loads_with_from_pretrained(tmp_path):
    tokenizer_dir, learner_dir, guide_dir, classifier_dir = (tmp_path / n for n in ("tok", "lm", "guide", "clf"))
    for directory in (tokenizer_dir, learner_dir, guide_dir, classifier_dir):
        directory.mkdir()
    imdb.build_tokenizer(tokenizer_dir, max_reviews=200, vocab_size=600)
    again = tmp_path / "tok-again"
    again.mkdir()
    imdb.build_tokenizer(again, max_reviews=200, vocab_size=600)
    assert load_tokenizer(str(tokenizer_dir)).get_vocab() == load_tokenizer(str(again)).get_vocab(), "deterministic"
    imdb.build_imdb_tiny(learner_dir, tokenizer_dir=tokenizer_dir, steps=2, max_reviews=64)
    imdb.build_imdb_tiny_sentiment(classifier_dir, tokenizer_dir=tokenizer_dir, epochs=1, max_reviews=200)
    imdb.build_imdb_tiny_guide(guide_dir, learner_dir=learner_dir, classifier_dir=classifier_dir, steps=2,
                               max_reviews=64)

    learner = AutoModelForCausalLM.from_pretrained(learner_dir)
    guide = AutoModelForCausalLM.from_pretrained(guide_dir)
    assert learner.config.vocab_size == len(load_tokenizer(str(learner_dir)))
    assert any(not torch.equal(a, b) for a, b in zip(learner.parameters(), guide.parameters(), strict=True))
    assert AutoModelForSequenceClassification.from_pretrained(classifier_dir).config.num_labels == 2
    scores = SentimentReward(str(classifier_dir))(["a fine film", "awful"], [" and great fun", " and boring"], [[], []])
    assert scores.shape == (2,) and ((scores >= 0) & (scores <= 1)).all()



def test_zoo_builds_are_bitwise_identical_across_thread_counts(tmp_path, monkeypatch):
    """The zoo is deterministic for its seed: `ensure_built` gives the same weights whatever thread count the
    calling process runs with (the training's float sums depend on it; the build pins it)."""
    tokenizer_dir = tmp_path / "tok"
    tokenizer_dir.mkdir()
    imdb.build_tokenizer(tokenizer_dir, max_reviews=200, vocab_size=600)
    monkeypatch.setitem(registry.ZOO, "test-tiny-lm", registry.ZooEntry(
        "test-tiny-lm", "imdb-tiny on a slice", partial(imdb.build_imdb_tiny, tokenizer_dir=tokenizer_dir, steps=3,
                                                        max_reviews=96)))
    threads = torch.get_num_threads()
    weights = []
    try:
        for count in (1, 3):
            monkeypatch.setenv("RLGF_CACHE", str(tmp_path / f"cache-{count}"))
            torch.set_num_threads(count)
            weights.append((registry.ensure_built("test-tiny-lm") / "model.safetensors").read_bytes())
            assert torch.get_num_threads() == count, "the caller's thread count is restored"
    finally:
        torch.set_num_threads(threads)
    assert weights[0] == weights[1]


def _validate_reward(model: str, tmp_path) -> float:
    cli = build_cli(["--config", str(REPO / "configs/demo/ppo.yaml"), f"--model.init_args.model={model}",
                     f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_progress_bar=false",
                     "--data.init_args.guide=null"], run=False)
    (metrics,) = cli.trainer.validate(cli.model, datamodule=cli.datamodule)
    return metrics["val/reward"]


@pytest.mark.slow
def test_full_zoo_build_and_short_quickstart(tmp_path):
    from rlgf_pl.zoo.registry import ensure_built

    for name in ("imdb-tokenizer", "imdb-tiny", "imdb-tiny-guide", "imdb-tiny-sentiment"):
        assert (ensure_built(name) / "DONE").exists()
    accuracy = float((ensure_built("imdb-tiny-sentiment") / "heldout_accuracy.txt").read_text())
    assert accuracy >= 0.80
    learner_reward = _validate_reward("zoo:imdb-tiny", tmp_path / "learner")
    guide_reward = _validate_reward("zoo:imdb-tiny-guide", tmp_path / "guide")
    print(f"held-out accuracy {accuracy:.3f}; val/reward imdb-tiny {learner_reward:.3f}, guide {guide_reward:.3f}")
    assert guide_reward >= learner_reward + 0.15

    build_cli(["fit", "--config", str(REPO / "configs/quickstart.yaml"), "--trainer.max_epochs=2",
               "--trainer.check_val_every_n_epoch=1", f"--trainer.default_root_dir={tmp_path / 'quickstart'}",
               "--trainer.enable_progress_bar=false"])
    logs = read_scalars(tmp_path / "quickstart")
    val_reward = logs["val/reward"]
    assert len(val_reward) == 3 and val_reward[0][0] == 0, "step 0 (before training), then one per epoch"
    assert val_reward[0][1] == pytest.approx(learner_reward, abs=1e-4), "step 0 is the untrained learner"
    assert len(per_epoch(logs, "train/reward")) == 2
    assert per_epoch(logs, "train/phase") == [0.0, 0.0]  # D2LOLS starts with AggreVaTeD


def test_zoo_model_built_on_first_use_inside_the_cli(tmp_path, monkeypatch):
    """The README's first command builds the zoo while LightningCLI instantiates the learner; the zoo's SFT
    modules must get their own hyperparameters, not the run's."""
    monkeypatch.setenv("RLGF_CACHE", str(tmp_path / "cache"))
    cli = build_cli(["--config", str(REPO / "configs/toy/ppo.yaml"), "--model.init_args.model=zoo:toy-guide",
                     f"--trainer.default_root_dir={tmp_path / 'run'}", "--trainer.enable_progress_bar=false"],
                    run=False)
    assert (tmp_path / "cache" / "zoo" / "toy-guide" / "DONE").exists()
    assert cli.model.hparams.model == "zoo:toy-guide"


def test_a_cache_from_an_older_recipe_is_rebuilt_once(tmp_path, monkeypatch, capsys):
    """Raising a zoo entry's version replaces caches built by the old recipe; a current cache is reused."""
    monkeypatch.setenv("RLGF_CACHE", str(tmp_path / "cache"))
    builds = []

    def build(directory):
        builds.append(directory)
        (directory / "weights").write_text(f"recipe {len(builds)}")

    monkeypatch.setitem(registry.ZOO, "fake", registry.ZooEntry("fake", "a test entry", build))
    target = registry.ensure_built("fake")
    assert registry.built_version(target) == 1 and len(builds) == 1
    (target / "DONE").write_text("built in 1.0s\n")  # a build from before recipes had versions
    assert registry.ensure_built("fake") == target and len(builds) == 1, "version 1 is the unversioned recipe"

    monkeypatch.setitem(registry.ZOO, "fake", registry.ZooEntry("fake", "a test entry", build, version=2))
    assert registry.zoo_main(["list"]) == 0
    assert "zoo:fake" in (listed := capsys.readouterr().out) and "outdated" in listed.split("zoo:fake")[1].splitlines()[0]
    assert registry.ensure_built("fake") == target and len(builds) == 2
    assert registry.built_version(target) == 2 and (target / "weights").read_text() == "recipe 2"
    assert registry.ensure_built("fake") == target and len(builds) == 2, "the new build is reused"
    assert sorted(path.name for path in target.parent.iterdir()) == ["fake"], "no staging or retired copies left"


def test_rebuilding_a_dependency_rebuilds_what_is_built_from_it(tmp_path, monkeypatch, capsys, caplog):
    """A guide built from an older learner is outdated once the learner is rebuilt; an unchanged learner
    leaves the guide cached."""
    monkeypatch.setenv("RLGF_CACHE", str(tmp_path / "cache"))
    builds = []

    def build(directory):
        builds.append(directory.name)
        (directory / "weights").write_text(f"build {len(builds)}")

    monkeypatch.setitem(registry.ZOO, "fake-learner", registry.ZooEntry("fake-learner", "a test entry", build))
    monkeypatch.setitem(registry.ZOO, "fake-guide", registry.ZooEntry("fake-guide", "a test entry", build,
                                                                      depends_on=("fake-learner",)))
    guide = registry.ensure_built("fake-guide")
    assert len(builds) == 2 and registry.ensure_built("fake-guide") == guide and len(builds) == 2

    monkeypatch.setitem(registry.ZOO, "fake-learner",
                        registry.ZooEntry("fake-learner", "a test entry", build, version=2))
    assert registry.zoo_main(["list"]) == 0
    listed = capsys.readouterr().out
    assert "outdated" in listed.split("zoo:fake-guide")[1].splitlines()[0], "the guide's learner is outdated"
    with caplog.at_level(logging.INFO):
        registry.ensure_built("fake-guide")
    assert len(builds) == 4 and (guide / "weights").read_text() == "build 4", "learner, then guide, rebuilt"
    assert "the cached 'fake-guide' was built from an older build of 'fake-learner'" in caplog.text
    assert registry.ensure_built("fake-guide") == guide and len(builds) == 4, "the new builds are reused"
    assert sorted(path.name for path in guide.parent.iterdir()) == ["fake-guide", "fake-learner"]


def test_a_failed_build_leaves_the_cache_as_it_was(tmp_path, monkeypatch):
    monkeypatch.setenv("RLGF_CACHE", str(tmp_path / "cache"))

    def build(directory):
        (directory / "weights").write_text("half a model")
        raise RuntimeError("out of disk")

    monkeypatch.setitem(registry.ZOO, "fake", registry.ZooEntry("fake", "a test entry", build))
    with pytest.raises(RuntimeError, match="out of disk"):
        registry.ensure_built("fake")
    zoo = tmp_path / "cache" / "zoo"
    assert not zoo.exists() or list(zoo.iterdir()) == [], "no staging directory and no half-built model"


def test_each_offline_task_has_a_guide_ladder_of_three_guides_from_one_recipe(capsys):
    import importlib.util

    from rlgf_pl.zoo.imdb import build_imdb_tiny_guide
    from rlgf_pl.zoo.ladder import GUIDE_LADDERS
    from rlgf_pl.zoo.registry import ZOO

    for task, ladder in GUIDE_LADDERS.items():
        steps = [count for _, count in ladder]
        assert steps == sorted(steps) and steps[0] == 0 and len([s for s in steps if s > 0]) >= 3, task
        assert all(name in ZOO for name, _ in ladder)
    rung = ZOO["imdb-tiny-guide-25"].build
    assert rung.func is build_imdb_tiny_guide and rung.keywords == {"steps": 25}
    spec = importlib.util.spec_from_file_location("guide_ladder", REPO / "tools/guide_ladder.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main(["commands", "--task", "concepts", "--algorithms", "ppo", "d2lols", "--seeds", "0", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 + 2 * 5  # PPO once per seed; D2LOLS per seed on 4 zoo rungs and the reference
    assert sum("ReferenceGuide" in line for line in lines) == 2
    assert any("--data.init_args.guide.init_args.model=zoo:concepts-t5-guide-250" in line for line in lines)
