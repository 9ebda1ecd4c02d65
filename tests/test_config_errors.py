"""Config typos and bad class paths: one message that names the key and a suggestion, exit 1, no run folder."""

from __future__ import annotations

import pytest
from conftest import REPO

from rlgf_pl.cli import main
from rlgf_pl.config_errors import explain, init_arguments
from rlgf_pl.errors import ConfigError

PPO_PP = str(REPO / "configs/toy/ppo_pp.yaml")

CASES = [
    ("model:\n  init_args:\n    learing_rate: 0.001\n", None,
     r"'model.init_args.learing_rate': rlgf_pl.algorithms.PPOPlusPlus has no argument 'learing_rate'\. Its "
     r"arguments: beta, model, .*, lr, "),
    ("model:\n  init_args:\n    kl_coeff: 0.1\n", None, r"'model.init_args.kl_coeff'.* Did you mean 'kl_coef'\?"),
    ("model:\n  class_path: rlgf_pl.algorithms.PPOO\n", None,
     r"'model.class_path': rlgf_pl.algorithms has no class 'PPOO'\. Did you mean 'rlgf_pl.algorithms.PPO'\?"),
    ("model:\n  class_path: nowhere.Algo\n", None, r"no module named 'nowhere'.*importable from the working directory"),
    ("trainr:\n  max_epochs: 2\n", None, r"unknown key 'trainr.max_epochs' in the config\. Did you mean "
                                         r"'trainer.max_epochs'\?"),
    ("trainer:\n  max_epoks: 2\n", None, r"Did you mean 'trainer.max_epochs'\?"),
    ("data:\n  init_args:\n    guide:\n      init_args:\n        modle: x\n", None,
     r"'data.init_args.guide.init_args.modle': rlgf_pl.policies.Guide has no argument 'modle'\. Did you mean "
     r"'model'\?"),
    ("trainer:\n  max_epochs: many\n", None, r"'trainer.max_epochs': expected int, got many\."),
    (None, "--trainer.max_epoks=3", r"unknown option '--trainer.max_epoks'\. Did you mean '--trainer.max_epochs'\?"),
    (None, "--model.init_args.lr=fast", r"'model.init_args.lr': expected float, got 'fast'\."),
    (None, "--callbacks+=callbacks.D2LOLSSwitc", r"Did you mean 'callbacks.D2LOLSSwitch'\?"),
]


@pytest.mark.parametrize(("yaml", "flag", "message"), CASES)
def test_a_typo_is_one_message_with_a_suggestion(tmp_path, yaml, flag, message):
    args = ["fit", "--config", PPO_PP, f"--trainer.default_root_dir={tmp_path}"]
    if yaml is not None:
        (tmp_path / "typo.yaml").write_text(yaml)
        args += ["--config", str(tmp_path / "typo.yaml")]
    with pytest.raises(ConfigError, match=message) as caught:
        main([*args, *([flag] if flag else [])])
    assert "\n" not in str(caught.value)
    assert not list(tmp_path.rglob("version_*"))


def test_the_command_exits_1_with_one_line_instead_of_the_usage_dump(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RLGF_TRACEBACK")
    (tmp_path / "typo.yaml").write_text("trainer:\n  max_epoks: 2\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", PPO_PP, "--config", str(tmp_path / "typo.yaml")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("rlgf: error: unknown key 'trainer.max_epoks'") and "usage:" not in err
    assert len(err.strip().splitlines()) == 2  # the message, and how to see the traceback
    with pytest.raises(SystemExit) as exit_info:
        main(["fitt"])
    assert exit_info.value.code == 1 and "Did you mean 'fit'?" in capsys.readouterr().err


def test_help_still_prints_and_exits_0(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help"])
    assert exit_info.value.code == 0 and "--trainer.max_epochs" in capsys.readouterr().out


def test_arguments_follow_kwargs_up_the_bases_and_unknown_messages_still_read():
    from rlgf_pl.algorithms import PPOPlusPlus

    names = init_arguments(PPOPlusPlus)
    assert names[0] == "beta" and "kl_coef" in names and "lora" in names
    assert explain("something jsonargparse says") == "something jsonargparse says"
