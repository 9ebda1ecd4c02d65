"""Text encoded as each tokenizer wants it: BOS, left cuts, references after their prompt, several end tokens."""

import math

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from rlgf_pl.metrics.perplexity import ReferencePerplexity
from rlgf_pl.metrics.samples import EvaluationSamples
from rlgf_pl.policies.generation import GenerationSettings
from rlgf_pl.policies.loading import load_policy
from rlgf_pl.zoo.toy import TOY_WORDS

CORPUS = ["the movie was good and the plot was great", "i really liked this film, it was fun",
          "the actor was bad but the music was good", "a boring story with a long end"] * 50


def _save_gpt2(directory, tokenizer, seed: int = 0):
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=2, n_head=2,
                        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    GPT2LMHeadModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def bos_model_dir(tmp_path_factory):
    """A word-level tokenizer that adds <bos> to every text (as Gemma's, Llama's and Mistral's do)."""
    vocab = {token: i for i, token in enumerate(["<pad>", "<eos>", "<unk>", "<bos>", *dict.fromkeys(TOY_WORDS)])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 3)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>",
                                        unk_token="<unk>", bos_token="<bos>")
    return _save_gpt2(tmp_path_factory.mktemp("bos-gpt2"), tokenizer)


@pytest.fixture(scope="module")
def bpe_model_dir(tmp_path_factory):
    """A byte-level BPE, where ' plot' and 'plot' are different tokens (as in GPT-2)."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, special_tokens=["<eos>"],
                                                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", pad_token="<eos>")
    return _save_gpt2(tmp_path_factory.mktemp("bpe-gpt2"), tokenizer)


def _model_logprobs(model, ids: list[int], start: int) -> torch.Tensor:
    """log p(ids[t] | ids[:t]) for t >= start, from the model on the unpadded sequence."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    logp = torch.log_softmax(logits.float(), -1)[:-1].gather(-1, torch.tensor(ids[1:])[:, None]).squeeze(-1)
    return logp[start - 1 :]


def test_prompts_keep_the_bos_and_logprobs_equal_the_models_own_encoding(bos_model_dir):
    policy = load_policy(str(bos_model_dir)).eval()
    tokenizer = policy.tokenizer
    response = torch.tensor([tokenizer.convert_tokens_to_ids(["was", "good", "<eos>"])])
    prompts = ["the movie was really fun", "a film"]
    query_ids, query_mask = policy.encode_prompts(prompts, max_tokens=16)
    for row, prompt in enumerate(prompts):
        own = tokenizer(prompt)["input_ids"]
        assert own[0] == tokenizer.bos_token_id
        assert query_ids[row][query_mask[row].bool()].tolist() == own
        with torch.no_grad():
            logp, _ = policy(query_ids[row : row + 1], query_mask[row : row + 1], response, torch.ones_like(response))
        expected = _model_logprobs(policy.model, own + response[0].tolist(), len(own))
        torch.testing.assert_close(logp[0], expected, atol=1e-5, rtol=1e-5)
    # A prompt cut from the left keeps its BOS and its last words.
    cut_ids, cut_mask = policy.encode_prompts(["the movie was really fun"], max_tokens=3)
    words = tokenizer.convert_tokens_to_ids(["really", "fun"])
    assert cut_ids[0].tolist() == [tokenizer.bos_token_id, *words]
    with torch.no_grad():
        logp, _ = policy(cut_ids, cut_mask, response, torch.ones_like(response))
    expected = _model_logprobs(policy.model, [tokenizer.bos_token_id, *words, *response[0].tolist()], 3)
    torch.testing.assert_close(logp[0], expected, atol=1e-5, rtol=1e-5)


def test_reference_perplexity_scores_the_first_tokens_with_the_leading_space(bpe_model_dir):
    policy = load_policy(str(bpe_model_dir)).eval()
    tokenizer = policy.tokenizer
    prompt, reference = "the movie was good and", "the plot was great and the music was good"
    prompt_ids = tokenizer(prompt)["input_ids"]
    spaced = tokenizer(" " + reference, add_special_tokens=False)["input_ids"]
    assert spaced[:3] != tokenizer(reference, add_special_tokens=False)["input_ids"][:3], "the space must matter"
    expected_logp = _model_logprobs(policy.model, prompt_ids + spaced[:3], len(prompt_ids))
    expected = math.exp(-float(expected_logp.double().mean()))
    metric = ReferencePerplexity(max_reference_tokens=3)
    rollout = type("R", (), {"prompts": [prompt], "continuations": [""], "references": [[reference]]})()
    metric.update(EvaluationSamples(rollout, torch.zeros(1), policy, policy, max_prompt_tokens=64))
    assert float(metric.compute()["reference_perplexity"]) == pytest.approx(expected, rel=1e-5)


def test_generation_stops_at_any_of_the_models_end_tokens(tmp_path, marker_guide_dir):
    """The marker model always writes 'good'. With 'good' listed as a second end token in its
    generation_config (as Llama-3-Instruct lists <|eot_id|>), every row stops after one token."""
    settings = GenerationSettings(max_new_tokens=5, top_k=0)
    plain = load_policy(str(marker_guide_dir))
    query = plain.encode_prompts(["the movie", "a film was"], max_tokens=8)
    tokens, lengths = plain.generate(*query, settings)
    assert lengths.tolist() == [5, 5], "without the second end token it never stops"
    good = plain.tokenizer.convert_tokens_to_ids("good")
    config = GenerationConfig.from_pretrained(marker_guide_dir)
    config.eos_token_id = [plain.tokenizer.eos_token_id, good]
    plain.model.save_pretrained(tmp_path)
    plain.tokenizer.save_pretrained(tmp_path)
    config.save_pretrained(tmp_path)
    policy = load_policy(str(tmp_path))
    assert set(policy.eos_token_ids) == {plain.tokenizer.eos_token_id, good}
    tokens, lengths = policy.generate(*query, settings)
    assert lengths.tolist() == [1, 1] and tokens[:, 0].tolist() == [good, good]
