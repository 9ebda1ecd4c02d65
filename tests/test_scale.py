"""Scale: LoRA adapters (what trains, the reference, resume, checkpoint size), export to a Hugging Face
directory, and generation under the trainer's precision."""

from pathlib import Path

import pytest
import torch
from conftest import built, fast_fit_args
from lightning.pytorch import Callback
from transformers import AutoModelForCausalLM

from rlgf_pl.algorithms import PPO
from rlgf_pl.cli import build_cli, main
from rlgf_pl.errors import ConfigError
from rlgf_pl.export import load_trained_module
from rlgf_pl.policies.causal_lm import CausalLMPolicy
from rlgf_pl.policies.loading import load_policy, load_tokenizer
from rlgf_pl.policies.lora import LoraSettings

LORA = "--model.init_args.lora={r: 4, alpha: 8}"


def _toy_batch(policy):
    query_ids, query_mask = policy.encode_prompts(["good movie", "the film was very long"], max_tokens=16)
    response = torch.tensor([[7, 8, 9, 1], [5, 6, 0, 0]])
    return query_ids, query_mask, response, (response != 0).long()


def _perturb_adapters(module) -> None:
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if "lora_B" in name:  # B starts at zero: the adapted network equals the base until it trains
                parameter.normal_(std=0.2)


def test_lora_trains_only_adapters_and_value_heads(toy_model_dir):
    module = built(PPO(model=str(toy_model_dir), lora=LoraSettings(r=4, alpha=8)))
    trainable = {name for name, p in module.named_parameters() if p.requires_grad}
    assert trainable, "something must train"
    for name in trainable:
        assert "lora_A.default" in name or "lora_B.default" in name or name.startswith("critic.head."), name
    assert any(name.startswith("policy.model.") and "lora_" in name for name in trainable)
    assert any(name.startswith("critic.backbone.") and "lora_" in name for name in trainable), "the critic's adapters"
    assert {"critic.head.weight", "critic.head.bias"} <= trainable
    assert module.reference.model is module.policy.model, "the reference is the learner's network, not a copy"
    frozen = sum(p.numel() for p in module.parameters() if not p.requires_grad)
    assert sum(p.numel() for n, p in module.named_parameters() if n in trainable) < 0.1 * frozen

    shared = built(PPO(model=str(toy_model_dir), lora=LoraSettings(r=4), critic_share_trunk=True))
    shared_trainable = {name for name, p in shared.named_parameters() if p.requires_grad}
    assert not any(name.startswith("critic.backbone.") for name in shared_trainable), "a shared trunk is the policy's"


def test_reference_is_the_base_model_with_adapters_disabled(toy_model_dir):
    module = built(PPO(model=str(toy_model_dir), lora=LoraSettings(r=4, alpha=8)))
    _perturb_adapters(module)
    base = CausalLMPolicy(load_policy(str(toy_model_dir)).model.eval(), load_tokenizer(str(toy_model_dir)))
    batch = _toy_batch(module.policy)
    module.eval()
    with torch.no_grad():
        reference, _ = module.reference(*batch)
        expected, _ = base(*batch)
        adapted, _ = module.policy(*batch)
        after, _ = module.reference(*batch)
    torch.testing.assert_close(reference, expected, rtol=0, atol=1e-6)
    assert not torch.allclose(adapted, expected, atol=1e-3), "the adapters change the learner"
    torch.testing.assert_close(after, reference, rtol=0, atol=0)
    assert all(p.requires_grad for n, p in module.named_parameters() if "lora_" in n), "adapters stay trainable"


def test_lora_settings_are_checked(toy_model_dir):
    with pytest.raises(ConfigError, match="lora.r"):
        LoraSettings(r=0)
    with pytest.raises(ConfigError, match="target_modules"):
        built(PPO(model=str(toy_model_dir), lora=LoraSettings(target_modules=["no_such_layer"])))


def _last(root: Path) -> Path:
    (path,) = root.rglob("last.ckpt")
    return path


@pytest.mark.slow
def test_lora_resume_is_exact_and_checkpoints_hold_only_what_trains(tmp_path, toy_model_dir):
    straight, interrupted, resumed, full = (tmp_path / name for name in ("straight", "interrupted", "resumed", "full"))
    main(fast_fit_args(straight, toy_model_dir, epochs=3, extra=[LORA]))
    main(fast_fit_args(interrupted, toy_model_dir, epochs=3, extra=[
        LORA, "--trainer.callbacks+=helpers.StopAfterEpochs", "--trainer.callbacks.init_args.epochs=2"]))
    main([*fast_fit_args(resumed, toy_model_dir, epochs=3, extra=[LORA]), f"--ckpt_path={_last(interrupted)}"])
    final = torch.load(_last(straight), weights_only=True)
    again = torch.load(_last(resumed), weights_only=True)
    assert final["global_step"] == again["global_step"] > 0
    assert final["state_dict"].keys() == again["state_dict"].keys()
    for key, value in final["state_dict"].items():
        torch.testing.assert_close(again["state_dict"][key], value, rtol=0, atol=0, msg=key)
    weights = [key for key in final["state_dict"] if not key.startswith(("kl_controller", "score_moments", "tokens_written"))]
    assert weights and all("lora_" in key or key.startswith("critic.head.") for key in weights), weights
    assert any(final["state_dict"][key].abs().sum() > 0 for key in weights if "lora_B" in key), "nothing trained"

    main(fast_fit_args(full, toy_model_dir, epochs=1))
    assert _last(straight).stat().st_size <= 0.10 * _last(full).stat().st_size


@pytest.mark.slow
def test_export_round_trip_gives_the_checkpoint_policy_logprobs(tmp_path, toy_model_dir):
    main(fast_fit_args(tmp_path / "run", toy_model_dir, epochs=1, extra=[LORA]))
    checkpoint = _last(tmp_path / "run")
    module = load_trained_module(checkpoint)
    assert module.lora == LoraSettings(r=4, alpha=8)
    batch = _toy_batch(module.policy)
    with torch.no_grad():
        trained, _ = module.policy(*batch)
        base, _ = module.reference(*batch)
    assert not torch.allclose(trained, base, atol=1e-4), "the checkpoint's learner has trained"

    main(["export", "--config", str(Path(__file__).parents[1] / "configs/toy/ppo.yaml"),
          "--ckpt_path", str(checkpoint), "--out", str(tmp_path / "merged")])
    merged = CausalLMPolicy(AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval(),
                            load_tokenizer(str(tmp_path / "merged")))
    with torch.no_grad():
        torch.testing.assert_close(merged(*batch)[0], trained, rtol=0, atol=1e-5)

    from peft import PeftModel

    main(["export", "--ckpt_path", str(checkpoint), "--out", str(tmp_path / "adapter"), "--adapter-only"])
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(toy_model_dir), tmp_path / "adapter")
    adapted_policy = CausalLMPolicy(adapted.merge_and_unload().eval(), load_tokenizer(str(tmp_path / "adapter")))
    with torch.no_grad():
        torch.testing.assert_close(adapted_policy(*batch)[0], trained, rtol=0, atol=1e-5)

    with pytest.raises(ConfigError, match="not an empty directory"):
        main(["export", "--ckpt_path", str(checkpoint), "--out", str(tmp_path / "adapter")])


def test_an_export_folder_gets_the_modes_of_a_shared_folder(tmp_path):
    """A temporary folder is 0700 and some writers make 0600 files; the export takes the umask's 0755 / 0644."""
    import os
    import stat
    import tempfile

    from rlgf_pl.export import shareable

    previous = os.umask(0o022)
    try:
        folder = Path(tempfile.mkdtemp(dir=tmp_path))
        (folder / "model.safetensors").write_bytes(b"x")
        (folder / "model.safetensors").chmod(0o600)
        (folder / "sub").mkdir(mode=0o700)
        (folder / "sub" / "vocab.json").write_text("{}")
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        shareable(folder)
    finally:
        os.umask(previous)
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in [folder, *folder.rglob("*")]}
    assert modes == {folder.name: 0o755, "model.safetensors": 0o644, "sub": 0o755, "vocab.json": 0o644}


@pytest.mark.slow
def test_full_export_round_trip_is_exact(tmp_path, toy_model_dir):
    main(fast_fit_args(tmp_path / "run", toy_model_dir, epochs=1))
    module = load_trained_module(_last(tmp_path / "run"))
    main(["export", "--ckpt_path", str(_last(tmp_path / "run")), "--out", str(tmp_path / "model")])
    exported = CausalLMPolicy(AutoModelForCausalLM.from_pretrained(tmp_path / "model").eval(),
                              load_tokenizer(str(tmp_path / "model")))
    batch = _toy_batch(module.policy)
    with torch.no_grad():
        torch.testing.assert_close(exported(*batch)[0], module.policy(*batch)[0], rtol=0, atol=0)
    with pytest.raises(ConfigError, match="adapter-only"):
        main(["export", "--ckpt_path", str(_last(tmp_path / "run")), "--out", str(tmp_path / "x"), "--adapter-only"])


class RecordsCollectionDtypes(Callback):
    """The dtype of the learner's logits while the epoch's rollouts are collected (before the first batch)."""

    def __init__(self) -> None:
        self.dtypes: set[torch.dtype] = set()
        self._handle = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:  # runs before the module's own hook
        head = pl_module.policy.model.get_output_embeddings()
        self._handle = head.register_forward_hook(lambda module, inputs, output: self.dtypes.add(output.dtype))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


@pytest.mark.parametrize("precision", ["bf16-mixed", "bf16-true"])
def test_rollouts_are_collected_under_the_trainer_precision(tmp_path, toy_model_dir, precision):
    recorder = RecordsCollectionDtypes()
    cli = build_cli([*fast_fit_args(tmp_path, toy_model_dir, epochs=1)[1:], f"--trainer.precision={precision}",
                     "--data.init_args.rollouts_per_epoch=16", "--trainer.limit_val_batches=0"], run=False)
    cli.trainer.callbacks.append(recorder)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert recorder.dtypes == {torch.bfloat16}
    assert cli.trainer.global_step > 0


def test_throughput_callback_logs_time_tokens_and_memory(tmp_path, toy_model_dir):
    from callbacks import Throughput
    from rlgf_pl.utils.tensorboard import read_scalars

    timer = Throughput(verbose=False)
    cli = build_cli([*fast_fit_args(tmp_path, toy_model_dir, epochs=2)[1:], "--data.init_args.rollouts_per_epoch=16",
                     "--trainer.limit_val_batches=0"], run=False)
    cli.trainer.callbacks.append(timer)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert len(timer.history) == 2
    for stats in timer.history:
        assert stats["perf/epoch_s"] == pytest.approx(stats["perf/rollout_s"] + stats["perf/update_s"])
        assert stats["perf/rollout_s"] > 0 and stats["perf/update_s"] > 0
        assert stats["perf/generation_tokens_per_s"] > 0 and stats["perf/update_tokens_per_s"] > 0
        assert stats["perf/peak_rss_gib"] > 0.1
    logged = read_scalars(tmp_path)
    assert len(logged["perf/update_tokens_per_s"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_fsdp_two_cpu_ranks(tmp_path, toy_model_dir, lora):
    """FSDP (torch's FullyShardedDataParallel over gloo) on 2 CPU ranks: collection under the gathered
    parameters, synced generation in validation, and a full-state checkpoint that loads on one process."""
    from conftest import run_rlgf

    from rlgf_pl.utils.tensorboard import per_epoch, read_scalars

    run_rlgf(fast_fit_args(tmp_path, toy_model_dir, epochs=2, extra=[
        '--trainer.strategy={"class_path": "helpers.CPUFSDPStrategy"}', "--trainer.accelerator=cpu", "--trainer.devices=2",
        *([LORA] if lora else [])]))
    assert len(per_epoch(read_scalars(tmp_path), "train/reward")) == 2
    assert per_epoch(read_scalars(tmp_path), "val/reward")
    module = load_trained_module(_last(tmp_path))
    initial = built(PPO(model=str(toy_model_dir), lora=module.lora))
    trained = dict(module.named_parameters())
    changed = [name for name, parameter in initial.named_parameters()
               if parameter.requires_grad and not torch.equal(parameter, trained[name])]
    assert any(name.startswith("policy.") for name in changed), "the policy trained under FSDP"


def test_fsdp_is_told_to_keep_original_parameters():
    from helpers import CPUFSDPStrategy
    from lightning.pytorch import Trainer

    from rlgf_pl.algorithms.sharding import prepare_strategy

    trainer = Trainer(strategy=CPUFSDPStrategy(), accelerator="cpu", devices=1, logger=False)
    prepare_strategy(trainer)
    assert trainer.strategy.kwargs["use_orig_params"] is True
    refused = Trainer(strategy=CPUFSDPStrategy(use_orig_params=False), accelerator="cpu", devices=1, logger=False)
    with pytest.raises(ConfigError, match="use_orig_params"):
        prepare_strategy(refused)


def test_checkpoint_lora_settings_are_compared_in_full():
    from rlgf_pl.checkpoints import merge_stored_settings
    from rlgf_pl.errors import CheckpointError

    stored = {"model": "/m", "lora": {"r": 4, "alpha": 8.0, "dropout": 0.0, "target_modules": None}}
    merged, overrides = merge_stored_settings("x.PPO", stored, "x.PPO", {"lora": {"r": 4, "alpha": 8}})
    assert overrides == [] and merged["lora"]["r"] == 4, "the same adapters, written with defaults left out"
    with pytest.raises(CheckpointError, match="lora"):
        merge_stored_settings("x.PPO", stored, "x.PPO", {"lora": {"r": 8}})
    with pytest.raises(CheckpointError, match="lora"):
        merge_stored_settings("x.PPO", stored, "x.PPO", {"lora": None})
