"""Every shipped YAML config parses and instantiates against the code (tiny local models for hub ids)."""

from pathlib import Path

import pytest
import yaml
from conftest import REPO

from rlgf_pl.cli import build_cli

FRAGMENTS = {"trainer.yaml", "data.yaml"}  # composed into the algorithm configs, not run on their own
CONFIGS = sorted(p for p in (REPO / "configs").rglob("*.yaml") if p.name not in FRAGMENTS)


def _resolve_includes(config: dict, base: Path) -> dict:
    """Inline `key: other.yaml` references the way the CLI does (paths relative to the including file)."""
    for key, value in list(config.items()):
        if isinstance(value, str) and value.endswith(".yaml"):
            config[key] = yaml.safe_load((base / value).read_text())
    return config


def _substitute_models(node, replacements: dict[str, str], parent_class: str = ""):
    """Swap every model name (hub id or non-toy zoo name) for a tiny local model of the right kind."""
    if isinstance(node, dict):
        class_path = node.get("class_path", parent_class)
        for key, value in node.items():
            if key in ("model", "critic_model") and isinstance(value, str) and not value.startswith("zoo:toy-"):
                is_classifier = "Reward" in class_path or key == "critic_model"  # a critic may start from a reward
                node[key] = replacements["classifier" if is_classifier else "causal_lm"]
            else:
                _substitute_models(value, replacements, class_path)
    elif isinstance(node, list):
        for item in node:
            _substitute_models(item, replacements, parent_class)
    return node


@pytest.fixture(scope="module")
def tiny_classifier_dir(tmp_path_factory) -> Path:
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from rlgf_pl.zoo.toy import build_toy_tokenizer

    directory = tmp_path_factory.mktemp("tiny-classifier")
    tokenizer = build_toy_tokenizer()
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=16, n_layer=1, n_head=2, num_labels=2,
                        pad_token_id=tokenizer.pad_token_id, id2label={0: "NEGATIVE", 1: "POSITIVE"},
                        label2id={"NEGATIVE": 0, "POSITIVE": 1})
    GPT2ForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_configs_exist():
    names = {p.relative_to(REPO / "configs").as_posix() for p in CONFIGS}
    assert {f"toy/{a}.yaml" for a in ("ppo", "ppo_pp", "aggrevated", "lols", "d2lols")} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(REPO / "configs").as_posix())
def test_config_instantiates(path, tmp_path, toy_model_dir, tiny_classifier_dir):
    config = _resolve_includes(yaml.safe_load(path.read_text()), path.parent)
    config = _substitute_models(config, {"causal_lm": str(toy_model_dir), "classifier": str(tiny_classifier_dir)})
    local = tmp_path / path.name
    local.write_text(yaml.safe_dump(config))
    cli = build_cli(["--config", str(local), f"--trainer.default_root_dir={tmp_path}"], run=False)
    assert cli.model is not None and cli.datamodule is not None
    assert type(cli.model).__name__ == config["model"]["class_path"].rsplit(".", 1)[-1]
    if config["data"]["init_args"].get("guide"):
        assert cli.datamodule.guide is not None
