"""The guided algorithms end to end: gradients, the frozen guide, phases, resume and learning speed."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import built, fast_fit_args
from helpers import StopAfterEpochs, switch_at  # noqa: F401  (StopAfterEpochs: a class path in CLI args)

from rlgf_pl.algorithms import D2LOLS, LOLS, AggreVaTeD
from rlgf_pl.cli import build_cli
from rlgf_pl.data.datamodule import RolloutDataModule
from rlgf_pl.data.tasks import ToyTask
from rlgf_pl.errors import ConfigError
from rlgf_pl.policies.generation import GenerationSettings
from rlgf_pl.policies.guide import Guide
from rlgf_pl.policies.loading import load_causal_lm
from rlgf_pl.rewards import WordFrequencyReward
from rlgf_pl.utils.tensorboard import per_epoch, read_scalars


def _fit(args):
    return build_cli(args)


def _last(root: Path) -> dict:
    (path,) = root.rglob("last.ckpt")
    return torch.load(path, weights_only=False)


def _policy_gradients(module, batch):
    module.zero_grad()
    module.ppo_step(batch).backward()
    return {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}


def test_gradient_flows_only_from_learner_tokens(toy_model_dir, marker_guide_dir):
    module = built(AggreVaTeD(model=str(toy_model_dir), beta=0.8))
    datamodule = RolloutDataModule(ToyTask({"train": 32, "validation": 4}), WordFrequencyReward(), rollouts_per_epoch=16,
                                   minibatch_size=16, ppo_epochs=1, guide=Guide(str(marker_guide_dir)),
                                   generation=GenerationSettings(max_new_tokens=8, top_k=0))
    datamodule.trainer = SimpleNamespace(global_rank=0, world_size=1, current_epoch=0)
    datamodule.setup("fit")
    batch = module.collect(datamodule)
    assert batch.policy_mask.any() and (batch.response_mask.bool() & ~batch.policy_mask.bool()).any()
    with pytest.warns(UserWarning):  # self.log without a Trainer warns and does nothing
        reference = _policy_gradients(module, batch)
    off_policy = ~batch.policy_mask.bool()
    off_critic = ~batch.critic_mask.bool()
    noisy = type(batch)(**{**vars(batch)})
    noisy.old_logprobs = torch.where(off_policy, torch.randn_like(batch.old_logprobs) * 5, batch.old_logprobs)
    noisy.advantages = torch.where(off_policy, torch.randn_like(batch.advantages) * 5, batch.advantages)
    noisy.returns = torch.where(off_critic, torch.randn_like(batch.returns) * 5, batch.returns)
    noisy.old_values = torch.where(off_critic, torch.randn_like(batch.old_values) * 5, batch.old_values)
    with pytest.warns(UserWarning):
        perturbed = _policy_gradients(module, noisy)
    assert reference.keys() == perturbed.keys()
    assert any(name.startswith("policy.") for name in reference)
    assert any(name.startswith("guide_critic.") for name in reference)
    assert not any(name.startswith(("reference.", "critic.")) for name in reference), "only active parts learn"
    for name in reference:
        torch.testing.assert_close(perturbed[name], reference[name], rtol=0, atol=0, msg=name)


@pytest.mark.slow
def test_guide_is_frozen_and_not_checkpointed_and_other_tokenizers_work(tmp_path, toy_model_dir,
                                                                       reordered_marker_guide_dir):
    cli = _fit(fast_fit_args(tmp_path, toy_model_dir, epochs=2, config="ppo_pp", guide=reordered_marker_guide_dir))
    guide = cli.datamodule.guide
    on_disk = load_causal_lm(str(reordered_marker_guide_dir)).state_dict()
    for name, value in guide.policy.model.state_dict().items():
        assert torch.equal(value.cpu(), on_disk[name]), name
    assert not any(p.requires_grad for p in guide.policy.model.parameters())
    checkpoint = _last(tmp_path)
    module_keys = set(cli.model.state_dict())
    assert set(checkpoint["state_dict"]) == {k for k in module_keys if not k.startswith("reference.")}
    assert not any(k.startswith("guide") for k in checkpoint["state_dict"])
    logs = read_scalars(tmp_path)
    assert min(per_epoch(logs, "train/guide_token_fraction")) > 0.05
    assert min(per_epoch(logs, "train/rollin_fraction")) > 0.05


@pytest.mark.slow
def test_ppo_plus_plus_with_beta_zero_is_ppo(tmp_path, toy_model_dir, toy_model_dir_guide):
    _fit(fast_fit_args(tmp_path / "ppo", toy_model_dir, epochs=2))
    _fit(fast_fit_args(tmp_path / "pp", toy_model_dir, epochs=2, config="ppo_pp", guide=toy_model_dir_guide,
                       extra=["--model.init_args.beta=0.0"]))
    ppo, pp = _last(tmp_path / "ppo")["state_dict"], _last(tmp_path / "pp")["state_dict"]
    assert ppo.keys() == pp.keys()
    for key in ppo:
        torch.testing.assert_close(pp[key], ppo[key], rtol=0, atol=0, msg=key)
    for tag in ("train/reward", "val/reward", "train/value_loss"):
        assert per_epoch(read_scalars(tmp_path / "pp"), tag) == per_epoch(read_scalars(tmp_path / "ppo"), tag)


@pytest.mark.slow
@pytest.mark.parametrize("config, expected_phases", [("d2lols", [0, 0, 1, 1]), ("lols", None)])
def test_phases_follow_the_schedule_and_survive_resume(tmp_path, toy_model_dir, toy_model_dir_guide, config,
                                                       expected_phases):
    extra = ([switch_at(2), "--model.init_args.beta=0.0", "--model.init_args.aggrevated_beta=1.0"]
             if config == "d2lols" else ["--model.init_args.tau=0.5"])
    straight, stopped, resumed = tmp_path / "straight", tmp_path / "stopped", tmp_path / "resumed"
    _fit(fast_fit_args(straight, toy_model_dir, epochs=4, config=config, guide=toy_model_dir_guide, extra=extra))
    _fit(fast_fit_args(stopped, toy_model_dir, epochs=4, config=config, guide=toy_model_dir_guide,
                       extra=[*extra, "--trainer.callbacks+=helpers.StopAfterEpochs",
                              "--trainer.callbacks.init_args.epochs=1"]))
    (checkpoint,) = stopped.rglob("last.ckpt")
    _fit([*fast_fit_args(resumed, toy_model_dir, epochs=4, config=config, guide=toy_model_dir_guide, extra=extra),
          f"--ckpt_path={checkpoint}"])
    phases = per_epoch(read_scalars(straight), "train/phase")
    if expected_phases is not None:
        assert phases == expected_phases
        rollins = per_epoch(read_scalars(straight), "train/rollin_fraction")
        # the share of tokens written before the switch: about half when every trajectory mixes, 0 when none
        assert min(rollins[:2]) > 0.3 and rollins[2:] == [0.0, 0.0], "each phase mixes with its own beta"
    else:
        assert set(phases) == {0.0, 1.0}, "tau = 0.5 over 4 epochs should give both phases with this seed"
    assert per_epoch(read_scalars(stopped), "train/phase") + per_epoch(read_scalars(resumed), "train/phase") == phases
    final_straight, final_resumed = _last(straight)["state_dict"], _last(resumed)["state_dict"]
    for key in final_straight:
        torch.testing.assert_close(final_resumed[key], final_straight[key], rtol=0, atol=0, msg=key)
    if config == "d2lols":
        assert bool(final_resumed["switched"])


def test_each_phase_mixes_with_its_own_beta(toy_model_dir):
    d2lols = D2LOLS(model=str(toy_model_dir), beta=0.3, aggrevated_beta=0.8)
    assert (d2lols.plan.rollin, d2lols.plan.rollout, d2lols.plan.beta) == ("learner", "guide", 0.8)
    d2lols.switched.fill_(True)  # what the switch at `switch_epoch` sets
    assert (d2lols.plan.rollin, d2lols.plan.rollout, d2lols.plan.beta) == ("guide", "learner", 0.3)
    lols = LOLS(model=str(toy_model_dir), beta=0.6, tau=1.0)
    assert lols.plan.beta == lols.aggrevated_beta == 0.6, "without aggrevated_beta both phases take beta"
    with pytest.raises(ConfigError, match=r"beta must lie in \[0, 1\], got 1.5"):
        D2LOLS(model=str(toy_model_dir), beta=0.3, aggrevated_beta=1.5)


def _epochs_to_threshold(root: Path, threshold: float) -> int:
    rewards = per_epoch(read_scalars(root), "val/reward")
    return next((epoch for epoch, reward in enumerate(rewards) if reward >= threshold), len(rewards) + 1)


@pytest.mark.slow
def test_guided_algorithms_learn_the_sparse_task_faster_than_ppo(tmp_path, toy_model_dir, toy_model_dir_guide):
    """The toy guide says 'good' half the time; the reward is 1 only for >= 3 'good's in 12 words, which a
    random learner almost never writes. Guidance should find the reward in fewer epochs."""
    epochs, threshold = 16, 0.5
    reached = {}
    for config in ("ppo", "ppo_pp", "d2lols"):
        reached[config] = []
        for seed in (0, 1, 2):
            root = tmp_path / f"{config}-{seed}"
            _fit(fast_fit_args(root, toy_model_dir, epochs=epochs, config=config, dense=False,
                               guide=None if config == "ppo" else toy_model_dir_guide,
                               extra=[f"--seed_everything={seed}"]))
            reached[config].append(_epochs_to_threshold(root, threshold))
    mean = {config: sum(values) / len(values) for config, values in reached.items()}
    print("epochs to val/reward >= 0.5 (per seed):", reached, "mean:", mean)
    assert mean["ppo_pp"] <= mean["ppo"] - 2, reached
    assert mean["d2lols"] <= mean["ppo"] - 2, reached
