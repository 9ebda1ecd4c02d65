"""The D2LOLS switch callbacks: each rule on scripted validation metrics, resume, and the named errors."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from conftest import fast_fit_args

from callbacks import D2LOLSSwitch, GuideBaselineSwitch, PlateauSwitch
from rlgf_pl.cli import main
from rlgf_pl.errors import ConfigError
from rlgf_pl.utils.tensorboard import per_epoch, read_scalars


class PhasedModule:
    """What a switch callback sees of D2LOLS: the phase buffer and the method that changes it."""

    def __init__(self) -> None:
        self.switched = torch.tensor(False)
        self.evaluate_guide_in_next_validation = False

    def switch_to_ppo_plus_plus(self) -> None:
        self.switched.fill_(True)


def run_epochs(callback, module, validations, guide=None, first_epoch=0):
    """Drive the callback through epochs: each starts (the switch point), then its validation logs
    `validations[i]` (and the guide's value when the module asked for it). Returns the epoch of the switch."""
    switched_at = None
    for epoch, value in enumerate(validations, start=first_epoch):
        trainer = SimpleNamespace(current_epoch=epoch, sanity_checking=False, callback_metrics={})
        callback.on_train_epoch_start(trainer, module)
        if switched_at is None and bool(module.switched):
            switched_at = epoch
        callback.on_validation_epoch_start(trainer, module)
        trainer.callback_metrics["val/reward"] = torch.tensor(value)
        if module.evaluate_guide_in_next_validation and guide is not None:
            trainer.callback_metrics["val/guide/reward"] = torch.tensor(guide)
            module.evaluate_guide_in_next_validation = False
        callback.on_validation_end(trainer, module)
    return switched_at


def test_the_fixed_epoch_rule_switches_at_its_epoch_before_the_rollouts():
    module = PhasedModule()
    assert run_epochs(D2LOLSSwitch(switch_epoch=3), module, [0.0] * 6) == 3
    assert run_epochs(D2LOLSSwitch(switch_epoch=0), PhasedModule(), [0.0]) == 0
    with pytest.raises(ConfigError, match="switch epoch must be >= 0"):
        D2LOLSSwitch(switch_epoch=-1)


def test_the_plateau_rule_switches_after_patience_validations_without_improvement():
    # best 0.30 at epoch 1; epochs 2 (+0.005 <= min_delta) and 3 (lower) do not improve: decided after epoch 3
    rewards = [0.10, 0.30, 0.305, 0.25, 0.40, 0.50]
    assert run_epochs(PlateauSwitch(patience=2, min_delta=0.01), PhasedModule(), rewards) == 4
    assert run_epochs(PlateauSwitch(patience=3, min_delta=0.01), PhasedModule(), rewards) is None  # 0.40 improves
    falling = [0.9, 0.8, 0.7]  # mode 'min' (a loss): every validation improves, so no switch
    assert run_epochs(PlateauSwitch(monitor="val/reward", patience=1, mode="min"), PhasedModule(), falling) is None
    with pytest.raises(ConfigError, match="patience must be >= 1"):
        PlateauSwitch(patience=0)


def test_the_guide_rule_measures_the_guide_once_and_switches_when_the_learner_reaches_it():
    callback, module = GuideBaselineSwitch(), PhasedModule()
    assert run_epochs(callback, module, [0.30, 0.45, 0.52, 0.60], guide=0.5) == 3
    assert callback.guide_value == pytest.approx(0.5)
    # with a margin of 0.1 the learner's 0.52 is not enough; 0.61 is
    assert run_epochs(GuideBaselineSwitch(margin=0.1), PhasedModule(), [0.30, 0.52, 0.61, 0.7], guide=0.5) == 3


def test_a_decision_and_the_rules_counters_survive_resume():
    # plateau: two validations without improvement so far, the third after resume decides
    before = PlateauSwitch(patience=3)
    run_epochs(before, PhasedModule(), [0.5, 0.4, 0.4])
    after = PlateauSwitch(patience=3)
    after.load_state_dict(before.state_dict())
    assert run_epochs(after, PhasedModule(), [0.45, 0.6], first_epoch=3) == 4
    # a decision taken at the last validation before the checkpoint switches the resumed run's next epoch
    decided = GuideBaselineSwitch()
    run_epochs(decided, PhasedModule(), [0.2, 0.7], guide=0.5)
    resumed = GuideBaselineSwitch()
    resumed.load_state_dict(decided.state_dict())
    assert (resumed.decided_at, resumed.guide_value) == (1, pytest.approx(0.5))
    assert run_epochs(resumed, PhasedModule(), [0.1], first_epoch=2) == 2  # no guide needed again


def test_a_monitored_metric_that_validation_does_not_log_is_named():
    trainer = SimpleNamespace(current_epoch=0, sanity_checking=False, callback_metrics={"val/reward": torch.tensor(0.1)})
    with pytest.raises(ConfigError, match="monitors 'val/cider'.*it logged \\['val/reward'\\]"):
        PlateauSwitch(monitor="val/cider").on_validation_end(trainer, PhasedModule())


@pytest.mark.slow
def test_a_switch_rule_on_an_algorithm_without_phases_and_d2lols_without_a_rule_are_named_errors(
        tmp_path, toy_model_dir, toy_model_dir_guide):
    with pytest.raises(ConfigError, match="PPO has no phases: remove the callback"):
        main(fast_fit_args(tmp_path / "ppo", toy_model_dir, epochs=1, config="ppo",
                           extra=['--callbacks=[{"class_path": "callbacks.PlateauSwitch"}]']))
    with pytest.raises(ConfigError, match="(?s)this run has none.*class_path: callbacks.D2LOLSSwitch"):
        main(fast_fit_args(tmp_path / "d2lols", toy_model_dir, epochs=1, config="d2lols", guide=toy_model_dir_guide,
                           extra=["--callbacks=[]"]))


@pytest.mark.slow
def test_the_guide_rule_evaluates_the_guide_in_a_real_fit_and_switches_through_the_callback(
        tmp_path, toy_model_dir, toy_model_dir_guide):
    rule = '--callbacks=[{"class_path": "callbacks.GuideBaselineSwitch", "init_args": {"margin": -1.0}}]'
    main(fast_fit_args(tmp_path, toy_model_dir, epochs=3, config="d2lols", guide=toy_model_dir_guide, extra=[rule]))
    logs = read_scalars(tmp_path)
    assert len(per_epoch(logs, "val/guide/reward")) == 1, "the guide is evaluated once"
    assert per_epoch(logs, "train/phase") == [0.0, 1.0, 1.0]  # decided after epoch 0's validation
