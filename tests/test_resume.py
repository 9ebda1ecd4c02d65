"""Resuming from a checkpoint reproduces the run that was never interrupted."""

from pathlib import Path

import pytest
import torch
from conftest import fast_fit_args

from rlgf_pl.cli import main
from rlgf_pl.utils.tensorboard import per_epoch, read_scalars

LINEAR = ["--model.init_args.lr_schedule=linear", "--model.init_args.kl_target=0.5", "--model.init_args.kl_horizon=200"]


def _last_checkpoint(root: Path) -> Path:
    (path,) = root.rglob("last.ckpt")
    return path


@pytest.mark.slow
def test_resume_equals_uninterrupted(tmp_path, toy_model_dir):
    straight, interrupted, resumed = tmp_path / "straight", tmp_path / "interrupted", tmp_path / "resumed"
    main(fast_fit_args(straight, toy_model_dir, epochs=4, extra=LINEAR))
    main(fast_fit_args(interrupted, toy_model_dir, epochs=4,
                       extra=[*LINEAR, "--trainer.callbacks+=helpers.StopAfterEpochs",
                              "--trainer.callbacks.init_args.epochs=2"]))
    stopped = torch.load(_last_checkpoint(interrupted), weights_only=False)
    assert not any(key.startswith("reference.") for key in stopped["state_dict"]), "reference must not be saved"
    main([*fast_fit_args(resumed, toy_model_dir, epochs=4, extra=LINEAR), f"--ckpt_path={_last_checkpoint(interrupted)}"])

    final_straight = torch.load(_last_checkpoint(straight), weights_only=False)
    final_resumed = torch.load(_last_checkpoint(resumed), weights_only=False)
    assert final_straight["global_step"] == final_resumed["global_step"] > stopped["global_step"] > 0
    assert final_straight["state_dict"].keys() == final_resumed["state_dict"].keys()
    for key, value in final_straight["state_dict"].items():
        torch.testing.assert_close(final_resumed["state_dict"][key], value, rtol=0, atol=0, msg=key)
    initial = torch.load(_last_checkpoint(interrupted), weights_only=False)["state_dict"]
    assert any(not torch.equal(initial[k], v) for k, v in final_straight["state_dict"].items()), "nothing trained"

    logs_straight = read_scalars(straight)
    logs_resumed = {tag: read_scalars(interrupted).get(tag, []) + read_scalars(resumed).get(tag, [])
                    for tag in logs_straight}
    for tag in ("train/reward", "val/reward", "train/kl", "train/kl_coef", "train/value_loss"):
        assert len(per_epoch(logs_straight, tag)) == 4, tag
        assert per_epoch(logs_resumed, tag) == pytest.approx(per_epoch(logs_straight, tag), abs=1e-7), tag
    assert len(set(per_epoch(logs_straight, "train/kl_coef"))) > 1, "the adaptive KL coefficient should move"
