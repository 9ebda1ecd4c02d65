"""The critic-free algorithms end to end: grouped sampling, shared guide prefixes, guide baselines from the same
state, distillation's log-ratio, no critic anywhere, and exact resume."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import built, fast_fit_args
from helpers import StopAfterEpochs, switch_at  # noqa: F401  (StopAfterEpochs: a class path in CLI args)

from rlgf_pl.algorithms import AggreVaTeDMC, Distill
from rlgf_pl.cli import main
from rlgf_pl.data.datamodule import RolloutDataModule
from rlgf_pl.data.tasks import ToyTask
from rlgf_pl.errors import ConfigError
from rlgf_pl.policies.api_guide import APIGuide
from rlgf_pl.policies.generation import GenerationSettings
from rlgf_pl.policies.guide import Guide
from rlgf_pl.policies.loading import load_policy
from rlgf_pl.rewards import WordFrequencyReward
from rlgf_pl.rollout.plan import Plan
from rlgf_pl.rollout.sampler import RolloutSampler

K = 4


def _environment(guide_dir=None, rollouts=16, **options):
    datamodule = RolloutDataModule(ToyTask({"train": 32, "validation": 4}), WordFrequencyReward(min_words=1),
                                   rollouts_per_epoch=rollouts, minibatch_size=rollouts, ppo_epochs=1,
                                   guide=Guide(str(guide_dir)) if guide_dir else None,
                                   generation=GenerationSettings(max_new_tokens=8, top_k=0), **options)
    datamodule.trainer = SimpleNamespace(global_rank=0, world_size=1, current_epoch=0)
    datamodule.setup("fit")
    return datamodule


def _grouped_rollout(learner_dir, guide_dir, plan, groups=6):
    sampler = RolloutSampler(load_policy(str(learner_dir)), GenerationSettings(max_new_tokens=10, top_k=0),
                             Guide(str(guide_dir)), max_prompt_tokens=8)
    prompts = [p for p in ["the movie was", "a long film", "i liked it"] * (groups // 3) for _ in range(K)]
    return sampler.sample(prompts, [[]] * len(prompts), plan, torch.Generator().manual_seed(0), group_size=K)


def test_environment_draws_each_prompt_k_times_in_consecutive_rows():
    datamodule = _environment(rollouts=16)
    prompts, references = datamodule.next_prompts(samples_per_prompt=K)
    assert len(prompts) == 16 and len(set(prompts)) == 4
    assert all(len(set(prompts[i : i + K])) == 1 for i in range(0, 16, K))
    assert len(references) == 16
    with pytest.raises(ConfigError, match="multiple of 3"):
        datamodule.next_prompts(samples_per_prompt=3)


@pytest.mark.parametrize("learner", ["no_marker_learner_dir", "no_marker_t5_dir"])
def test_grpo_plus_plus_groups_share_their_guide_prefix_exactly(learner, marker_guide_dir, marker_t5_guide_dir,
                                                                 request):
    guide = marker_t5_guide_dir if learner.endswith("t5_dir") else marker_guide_dir
    rollout = _grouped_rollout(request.getfixturevalue(learner), guide, Plan("guide", "learner", 0.5,
                                                                             shared_rollin=True))
    h = rollout.switch_index.view(-1, K)
    assert (h == h[:, :1]).all(), "one switch point per group"
    assert (h[:, 0] > 0).any() and (h[:, 0] == 0).any()
    positions = torch.arange(rollout.response_ids.shape[1])[None, :]
    prefix = (positions < rollout.switch_index[:, None]).long()
    assert torch.equal(rollout.guide_mask, prefix * rollout.response_mask), "the guide wrote exactly the prefix"
    ids = torch.where(prefix.bool(), rollout.response_ids, -1).view(-1, K, rollout.response_ids.shape[1])
    assert (ids == ids[:, :1]).all(), "every row of a group continues from the same guide tokens"
    assert (rollout.learner_mask.sum(-1) > 0).all()


@pytest.mark.parametrize("learner", ["no_marker_learner_dir", "no_marker_t5_dir"])
def test_aggrevated_mc_groups_are_the_learner_trajectory_and_guide_rollouts_from_its_state(
        learner, marker_guide_dir, marker_t5_guide_dir, request):
    guide = marker_t5_guide_dir if learner.endswith("t5_dir") else marker_guide_dir
    rollout = _grouped_rollout(request.getfixturevalue(learner), guide,
                               Plan("learner", "guide", 0.5, shared_rollin=True, leader_keeps_rollin=True), groups=12)
    width = rollout.response_ids.shape[1]
    h = rollout.switch_index.view(-1, K)
    assert (h == h[:, :1]).all() and (h[:, 0] > 0).any() and (h[:, 0] == 0).any()
    leaders = torch.arange(rollout.batch_size) % K == 0
    assert torch.equal(rollout.learner_mask[leaders], rollout.response_mask[leaders]), "the leader is all learner"
    positions = torch.arange(width)[None, :]
    prefix = positions < rollout.switch_index[:, None]
    followers = ~leaders
    assert torch.equal(rollout.learner_mask[followers].bool(), prefix[followers] & rollout.response_mask[followers].bool())
    assert (rollout.guide_mask[followers].sum(-1) > 0).all(), "the guide rolls out from every state"
    ids = torch.where(prefix, rollout.response_ids, -1).view(-1, K, width)
    assert (ids == ids[:, :1]).all(), "the guide roll-outs start from the leader's own first h tokens"


def test_aggrevated_mc_baseline_is_the_mean_of_the_guide_rollouts_from_the_same_state(no_marker_learner_dir,
                                                                                      marker_guide_dir):
    module = built(AggreVaTeDMC(model=str(no_marker_learner_dir), beta=0.7, samples_per_prompt=K, kl_coef=0.0,
                                whiten_advantages=False))
    environment = _environment(marker_guide_dir, rollouts=24)
    seen = {}
    original = environment.score
    environment.score = lambda rollout: seen.setdefault("scores", original(rollout))
    batch = module.collect(environment)
    scores = seen["scores"].view(-1, K)
    assert (scores[:, 1:] > scores[:, :1]).all(), "the marker guide beats the learner that never says it"
    expected = (scores[:, 0] - scores[:, 1:].mean(1))
    leaders = torch.arange(len(batch)) % K == 0
    for group, row in enumerate(leaders.nonzero().squeeze(-1).tolist()):
        trained = batch.policy_mask[row].bool()
        assert trained.any()
        torch.testing.assert_close(batch.advantages[row][trained], expected[group].expand(int(trained.sum())))
    assert not batch.policy_mask[~leaders].any() and not batch.advantages[~leaders].any()


def test_distillation_advantage_is_the_hand_computed_log_ratio(toy_model_dir, other_toy_model_dir):
    module = built(Distill(model=str(toy_model_dir)))
    environment = _environment(other_toy_model_dir)
    batch = module.collect(environment)
    parts = (batch.query_ids, batch.query_mask, batch.response_ids, batch.response_mask)
    with torch.no_grad():
        learner = load_policy(str(toy_model_dir))(*parts)[0]
        guide = load_policy(str(other_toy_model_dir))(*parts)[0]
    expected = -(learner - guide) * batch.response_mask
    torch.testing.assert_close(batch.advantages, expected, rtol=1e-5, atol=1e-5)
    assert module.critic is None and module.guide_critic is None


def test_distillation_names_why_a_guide_cannot_be_distilled(toy_model_dir, reordered_marker_guide_dir):
    module = built(Distill(model=str(toy_model_dir)))
    with pytest.raises(ConfigError, match="vocabulary"):
        module.collect(_environment(reordered_marker_guide_dir))
    api = _environment(None)
    api.guide = APIGuide(base_url="http://127.0.0.1:9/v1", model="remote")
    with pytest.raises(ConfigError, match="local model"):
        module.collect(api)
    with pytest.raises(ConfigError, match="needs a guide"):
        module.collect(_environment(None))


NEW_ALGORITHMS = ["grpo", "rloo", "grpo_pp", "aggrevated_mc", "d2lols_mc", "distill"]


def _last(root: Path) -> dict:
    (path,) = root.rglob("last.ckpt")
    return torch.load(path, weights_only=False)


@pytest.mark.slow
@pytest.mark.parametrize("config", NEW_ALGORITHMS)
def test_resume_equals_uninterrupted_and_no_critic_is_built(config, tmp_path, toy_model_dir, toy_model_dir_guide):
    extra = [switch_at(2)] if config == "d2lols_mc" else []
    if config == "aggrevated_mc":
        extra.append("--model.init_args.samples_per_prompt=4")

    def run(root, stop=None):
        stopper = [] if stop is None else ["--trainer.callbacks+=helpers.StopAfterEpochs",
                                           f"--trainer.callbacks.init_args.epochs={stop}"]
        main(fast_fit_args(root, toy_model_dir, epochs=3, config=config, guide=toy_model_dir_guide,
                           extra=[*extra, "--trainer.check_val_every_n_epoch=3", *stopper]))

    run(tmp_path / "straight")
    run(tmp_path / "interrupted", stop=2)
    stopped = _last(tmp_path / "interrupted")
    main([*fast_fit_args(tmp_path / "resumed", toy_model_dir, epochs=3, config=config, guide=toy_model_dir_guide,
                         extra=[*extra, "--trainer.check_val_every_n_epoch=3"]),
          f"--ckpt_path={next((tmp_path / 'interrupted').rglob('last.ckpt'))}"])
    straight, resumed = _last(tmp_path / "straight"), _last(tmp_path / "resumed")
    assert straight["global_step"] == resumed["global_step"] > stopped["global_step"] > 0
    assert not any("critic" in key for key in straight["state_dict"]), "a critic-free run checkpoints no critic"
    trained = len({value.data_ptr() for key, value in straight["state_dict"].items() if key.startswith("policy.")})
    (state,) = straight["optimizer_states"]
    assert sum(len(group["params"]) for group in state["param_groups"]) == trained, "the optimizer holds the policy only"
    assert straight["state_dict"].keys() == resumed["state_dict"].keys()
    for key, value in straight["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][key], value, rtol=0, atol=0, msg=key)
    initial = stopped["state_dict"]
    assert any(not torch.equal(initial[k], v) for k, v in straight["state_dict"].items() if k.startswith("policy."))
    if config == "d2lols_mc":
        assert bool(straight["state_dict"]["switched"]) and not bool(stopped["state_dict"]["switched"])
