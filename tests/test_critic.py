"""Critics whose trunk starts from another model (`critic_model`), such as the reward's bag-of-words trunk."""

from __future__ import annotations

import pytest
import torch
from conftest import built
from transformers import AutoModel, AutoModelForSequenceClassification

from rlgf_pl.algorithms import D2LOLS, PPO
from rlgf_pl.policies.bag_of_words import (
    BagOfWordsConfig,
    BagOfWordsForSequenceClassification,
    BagOfWordsModel,
)
from rlgf_pl.policies.loading import load_tokenizer
from rlgf_pl.zoo.toy import TOY_WORDS, build_toy_tokenizer


def _save_classifier(directory, tokenizer, seed: int = 0):
    torch.manual_seed(seed)
    config = BagOfWordsConfig(vocab_size=len(tokenizer), hidden_size=4, num_labels=2,
                              pad_token_id=tokenizer.pad_token_id)
    classifier = BagOfWordsForSequenceClassification(config)
    classifier.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return classifier


@pytest.fixture
def classifier_dir(tmp_path, toy_model_dir):
    _save_classifier(tmp_path / "classifier", load_tokenizer(str(toy_model_dir)))
    return tmp_path / "classifier"


def test_bag_of_words_trunk_is_the_causal_mean_of_the_classifiers_embeddings(classifier_dir):
    classifier = AutoModelForSequenceClassification.from_pretrained(classifier_dir)
    trunk = AutoModel.from_pretrained(classifier_dir)
    assert isinstance(trunk, BagOfWordsModel)
    assert torch.equal(trunk.embeddings.weight, classifier.embeddings.weight)
    ids = torch.tensor([[0, 0, 5, 6, 7], [3, 4, 5, 6, 7]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    hidden = trunk(input_ids=ids, attention_mask=mask).last_hidden_state
    table = classifier.embeddings.weight
    torch.testing.assert_close(hidden[0, 2], table[5])  # padding counts for nothing
    torch.testing.assert_close(hidden[0, 3], table[[5, 6]].mean(0))  # no later token is seen
    torch.testing.assert_close(hidden[1, 3], table[[3, 4, 5, 6]].mean(0))
    in_bf16 = AutoModel.from_pretrained(classifier_dir, dtype=torch.bfloat16)(input_ids=ids, attention_mask=mask)
    assert in_bf16.last_hidden_state.dtype == torch.bfloat16
    torch.testing.assert_close(in_bf16.last_hidden_state.float(), hidden, atol=1e-2, rtol=1e-2)
    # The last position is what the classifier pools: its head on it gives the classifier's logits.
    torch.testing.assert_close(classifier.classifier(hidden[:, -1]),
                               classifier(input_ids=ids, attention_mask=mask).logits)


def test_each_critic_gets_its_own_copy_of_the_critic_model_trunk(classifier_dir, toy_model_dir):
    module = built(D2LOLS(model=str(toy_model_dir), critic_model=str(classifier_dir)))
    trunk = AutoModel.from_pretrained(classifier_dir)
    for critic in (module.critic, module.guide_critic):
        assert isinstance(critic.backbone, BagOfWordsModel)
        assert torch.equal(critic.backbone.embeddings.weight, trunk.embeddings.weight)
        assert critic.head.in_features == 4
    assert module.critic.backbone is not module.guide_critic.backbone
    query = torch.tensor([[0, 3, 4]])
    response = torch.tensor([[5, 6]])
    values = module.critic(query, torch.ones_like(query), response, torch.ones_like(response))
    assert values.shape == (1, 2)


def test_critic_model_with_another_tokenizer_or_a_shared_trunk_is_refused(tmp_path, toy_model_dir, classifier_dir):
    _save_classifier(tmp_path / "reordered", build_toy_tokenizer(tuple(reversed(TOY_WORDS))))
    with pytest.raises(ValueError, match="different tokenizer"):
        PPO(model=str(toy_model_dir), critic_model=str(tmp_path / "reordered")).configure_model()
    with pytest.raises(ValueError, match="critic_share_trunk"):
        PPO(model=str(toy_model_dir), critic_model=str(classifier_dir), critic_share_trunk=True)


def _group_of(optimizer, parameter) -> int:
    (group,) = [i for i, group in enumerate(optimizer.param_groups) if any(p is parameter for p in group["params"])]
    return group


def test_critic_lr_puts_the_critics_and_only_them_in_their_own_group(toy_model_dir, classifier_dir):
    module = built(D2LOLS(model=str(toy_model_dir), critic_model=str(classifier_dir), lr=1e-4, critic_lr=1e-2,
                          lr_schedule="constant"))
    optimizer = module.configure_optimizers()["optimizer"]
    assert [group["lr"] for group in optimizer.param_groups] == [1e-4, 1e-2]
    for critic in (module.critic, module.guide_critic):
        assert all(_group_of(optimizer, p) == 1 for p in critic.parameters())
    assert all(_group_of(optimizer, p) == 0 for p in module.policy.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    assert sum(p.numel() for group in optimizer.param_groups for p in group["params"]) == trainable

    shared = built(PPO(model=str(toy_model_dir), critic_share_trunk=True, lr=1e-4, critic_lr=1e-2,
                       lr_schedule="constant"))
    optimizer = shared.configure_optimizers()["optimizer"]
    assert all(_group_of(optimizer, p) == 1 for p in shared.critic.head.parameters())
    assert all(_group_of(optimizer, p) == 0 for p in shared.policy.parameters()), "a shared trunk is the learner's"

    single = built(PPO(model=str(toy_model_dir), lr=1e-4, lr_schedule="constant")).configure_optimizers()["optimizer"]
    assert len(single.param_groups) == 1
