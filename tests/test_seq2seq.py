"""Seq2seq (T5) learners: padding-exact log-probs and values, batched handoff, and whole runs through `rlgf`."""

import json

import pytest
import torch
from conftest import fast_fit_args, run_rlgf
from helpers import switch_at

from rlgf_pl.cli import main
from rlgf_pl.policies.critic import ValueModel
from rlgf_pl.policies.generation import GenerationSettings
from rlgf_pl.policies.loading import load_backbone, load_policy
from rlgf_pl.policies.seq2seq import Seq2SeqPolicy
from rlgf_pl.utils.tensorboard import per_epoch, read_scalars

PROMPTS = ["good movie", "the film was very long and boring but it was fun"]


def _responses(policy):
    rows = [policy.tokenizer(text, add_special_tokens=False)["input_ids"] for text in ("was great", "not fun at all")]
    return policy._right_padded(rows)


def test_kind_follows_the_config_and_can_be_overridden(t5_dir, toy_model_dir):
    assert isinstance(load_policy(str(t5_dir)), Seq2SeqPolicy)
    assert load_policy(str(toy_model_dir)).kind == "causal"
    assert load_policy(str(t5_dir), kind="seq2seq").kind == "seq2seq"
    with pytest.raises(ValueError, match="Unknown policy kind 'decoder'"):
        load_policy(str(t5_dir), kind="decoder")


def test_padded_logprobs_and_values_equal_unpadded(t5_dir):
    policy = load_policy(str(t5_dir)).eval()
    critic = ValueModel(load_backbone(str(t5_dir)), Seq2SeqPolicy).eval()
    torch.nn.init.normal_(critic.head.weight)
    query_ids, query_mask = policy.encode_prompts(PROMPTS, max_tokens=16)
    response_ids, response_mask = _responses(policy)
    assert query_mask[0, -1] == 0 and response_mask[0, -1] == 0, "row 0 is padded in both query and response"
    with torch.no_grad():
        batch_logp, batch_entropy = policy(query_ids, query_mask, response_ids, response_mask)
        batch_values = critic(query_ids, query_mask, response_ids, response_mask)
        for row, prompt in enumerate(PROMPTS):
            alone_q, alone_qm = policy.encode_prompts([prompt], max_tokens=16)
            length = int(response_mask[row].sum())
            alone_r, alone_rm = response_ids[row : row + 1, :length], response_mask[row : row + 1, :length]
            logp, entropy = policy(alone_q, alone_qm, alone_r, alone_rm)
            values = critic(alone_q, alone_qm, alone_r, alone_rm)
            torch.testing.assert_close(batch_logp[row, :length], logp[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(batch_entropy[row, :length], entropy[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(batch_values[row, :length], values[0], atol=1e-5, rtol=1e-5)
            # and both equal the model's own teacher-forced forward pass
            labels = alone_r.clone()
            logits = policy.model(input_ids=alone_q, attention_mask=alone_qm, labels=labels).logits
            expected = torch.log_softmax(logits.float(), -1).gather(-1, alone_r[..., None]).squeeze(-1)
            torch.testing.assert_close(logp, expected, atol=1e-5, rtol=1e-5)


def test_handoff_prefill_of_ragged_prefixes_equals_each_row_alone(t5_dir):
    """The roll-out continues every row after its own prefix in one batched generate (left-padded behind
    the decoder's start token); greedy decoding must match each row continued on its own."""
    policy = load_policy(str(t5_dir)).eval()
    query_ids, query_mask = policy.encode_prompts(PROMPTS, max_tokens=16)
    prefix_ids, prefix_mask = _responses(policy)
    greedy = GenerationSettings(max_new_tokens=6, min_new_tokens=6, do_sample=False)
    batch_tokens, _ = policy.generate(query_ids, query_mask, greedy, prefix_ids, prefix_mask)
    for row, prompt in enumerate(PROMPTS):
        length = int(prefix_mask[row].sum())
        alone, _ = policy.generate(*policy.encode_prompts([prompt], 16), greedy, prefix_ids[row : row + 1, :length],
                                   prefix_mask[row : row + 1, :length])
        assert batch_tokens[row].tolist() == alone[0].tolist()


@pytest.mark.slow
def test_ppo_with_a_seq2seq_learner_learns_and_resumes_exactly(tmp_path, t5_dir):
    straight, stopped, resumed = tmp_path / "straight", tmp_path / "stopped", tmp_path / "resumed"
    main(fast_fit_args(straight, t5_dir, epochs=8))
    rewards = per_epoch(read_scalars(straight), "val/reward")
    assert rewards[-1] > rewards[0] + 0.2, rewards
    main(fast_fit_args(stopped, t5_dir, epochs=8, extra=["--trainer.callbacks+=helpers.StopAfterEpochs",
                                                        "--trainer.callbacks.init_args.epochs=3"]))
    (checkpoint,) = stopped.rglob("last.ckpt")
    main([*fast_fit_args(resumed, t5_dir, epochs=8), f"--ckpt_path={checkpoint}"])
    (final_straight,), (final_resumed,) = straight.rglob("last.ckpt"), resumed.rglob("last.ckpt")
    state_straight = torch.load(final_straight, weights_only=False)["state_dict"]
    state_resumed = torch.load(final_resumed, weights_only=False)["state_dict"]
    assert any(key.startswith("policy.model.encoder.") for key in state_straight)
    assert not any(key.startswith("reference.") for key in state_straight)
    for key, value in state_straight.items():
        torch.testing.assert_close(state_resumed[key], value, rtol=0, atol=0, msg=key)
    resumed_rewards = per_epoch(read_scalars(stopped), "val/reward") + per_epoch(read_scalars(resumed), "val/reward")
    assert resumed_rewards == pytest.approx(rewards, abs=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("config", ["aggrevated", "d2lols"])
def test_guided_algorithms_run_with_a_seq2seq_learner_and_guide(tmp_path, t5_dir, marker_t5_guide_dir, config):
    main(fast_fit_args(tmp_path, t5_dir, epochs=2, config=config, guide=marker_t5_guide_dir,
                       extra=[switch_at(1)] if config == "d2lols" else []))
    logs = read_scalars(tmp_path)
    assert min(per_epoch(logs, "train/guide_token_fraction")) > 0.05
    if config == "d2lols":
        assert per_epoch(logs, "train/phase") == [0.0, 1.0]


@pytest.mark.slow
def test_ddp_two_cpu_ranks_with_a_seq2seq_learner(tmp_path, t5_dir, toy_model_dir_guide):
    run_rlgf(fast_fit_args(tmp_path, t5_dir, epochs=2, config="ppo_pp", guide=toy_model_dir_guide, extra=[
        "--trainer.strategy=ddp", "--trainer.accelerator=cpu", "--trainer.devices=2",
        "--trainer.callbacks+=callbacks.RolloutWriter"]))
    for rank in (0, 1):
        (path,) = tmp_path.rglob(f"epoch0001_rank{rank}.jsonl")
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert len(rows) == 32 and any(row["guide_tokens"] > 0 for row in rows)
    assert len(per_epoch(read_scalars(tmp_path), "val/reward")) == 2


def test_perplexities_and_a_shared_trunk_critic_work_for_seq2seq(t5_dir):
    from conftest import built

    from rlgf_pl.algorithms import PPO
    from rlgf_pl.metrics.perplexity import GenerationPerplexity, ReferencePerplexity
    from rlgf_pl.metrics.samples import EvaluationSamples
    from rlgf_pl.rollout.containers import Rollout

    module = built(PPO(model=str(t5_dir), critic_share_trunk=True))
    policy = module.policy.eval()
    assert module.critic.backbone is policy.model, "the value head reads the learner's own decoder states"
    query_ids, query_mask = policy.encode_prompts(PROMPTS, 16)
    response_ids, response_mask = _responses(policy)
    references = [["was great"], ["not fun at all"]]
    zeros = torch.zeros_like(response_mask)
    rollout = Rollout(query_ids, query_mask, response_ids, response_mask, response_mask, zeros, zeros[:, 0],
                      PROMPTS, ["was great", "not fun at all"], references)
    with torch.no_grad():
        losses = [policy.model(input_ids=policy.encode_prompts([p], 16)[0], labels=torch.tensor(
            [policy.tokenizer(r[0], add_special_tokens=False)["input_ids"]])).loss for p, r in zip(PROMPTS, references)]
        values = module.critic(query_ids, query_mask, response_ids, response_mask)
    counts = response_mask.sum(-1).double()
    expected = float(torch.exp((torch.stack(losses).double() * counts).sum() / counts.sum()))
    samples = EvaluationSamples(rollout, torch.zeros(2), policy, module.reference, max_prompt_tokens=16)
    for metric, name in ((GenerationPerplexity(), "perplexity"), (ReferencePerplexity(), "reference_perplexity")):
        metric.update(samples)
        assert float(metric.compute()[name]) == pytest.approx(expected, rel=1e-5), name
    assert values.shape == response_ids.shape
