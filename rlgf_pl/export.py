"""`rlgf export`: the trained learner of a checkpoint as a Hugging Face model directory.

    rlgf export --config configs/imdb/ppo.yaml --ckpt_path runs/ppo/version_0/checkpoints/last.ckpt --out model/
    rlgf export --ckpt_path last.ckpt --out adapter/ --adapter-only

The directory loads with `AutoModelForCausalLM.from_pretrained(out)` (or `AutoModelForSeq2SeqLM`): LoRA
adapters are merged into the base weights by default; `--adapter-only` writes the adapters alone, which
`peft.PeftModel.from_pretrained(base, out)` loads. The tokenizer is written beside the model. The value
head is the critic's and is not part of the exported language model.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from rlgf_pl.checkpoints import merge_stored_settings, read_checkpoint
from rlgf_pl.errors import CheckpointError, ConfigError
from rlgf_pl.policies.base import Policy
from rlgf_pl.policies.loading import load_causal_lm, load_seq2seq_lm
from rlgf_pl.policies.lora import LoraSettings


def export_policy(policy: Policy, model_name: str, lora: LoraSettings | None, out: str | Path,
                  adapter_only: bool = False) -> Path:
    """Write `policy` to `out` with `save_pretrained` (model and tokenizer), all at once: the files are
    written into a temporary folder beside `out` and moved in place when complete.

    Args:
        policy: The trained learner.
        model_name: What the learner was loaded from (the base that LoRA adapters apply to).
        lora: The learner's LoRA settings, or None for a fully fine-tuned learner.
        out: A directory that does not exist yet, or is empty.
        adapter_only: Write the LoRA adapters alone (peft's format) instead of merged weights.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {str(out)!r} already exists and is not an empty directory; choose a new one "
                          "(export never overwrites a model).")
    if adapter_only and lora is None:
        raise ConfigError("--adapter-only writes LoRA adapters, but this checkpoint's learner was fully fine-tuned "
                          "(no model.init_args.lora); export it without --adapter-only.")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        exported = policy.model if lora is None else _with_adapters(policy, model_name, lora)
        if lora is not None and not adapter_only:
            exported = exported.merge_and_unload()
        exported.save_pretrained(staging)
        policy.tokenizer.save_pretrained(staging)
        shareable(staging)
        if out.exists():
            out.rmdir()
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def shareable(folder: Path) -> None:
    """Give `folder` and everything in it the modes a new folder and file get under the process's umask (0755
    and 0644 under the usual 022), not the 0700 of a temporary folder or the 0600 some writers use: an export is
    meant to be shared as it is."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def _with_adapters(policy: Policy, model_name: str, lora: LoraSettings):
    """A fresh peft model of the base with the policy's trained adapters, for peft's merge and save."""
    from peft import get_peft_model

    dtype = next(policy.model.parameters()).dtype
    loader = load_seq2seq_lm if policy.kind == "seq2seq" else load_causal_lm
    base = loader(model_name, dtype=str(dtype).removeprefix("torch."))
    peft_model = get_peft_model(base, lora.peft_config())
    peft_model.get_base_model().load_state_dict(policy.model.state_dict())  # the same modules, the same names
    return peft_model


def load_trained_module(ckpt_path: str | Path, configs: list[str] | None = None):
    """The checkpoint's agent with its trained weights, built with the settings it was trained with, except
    the model settings the given configs write (a moved model directory), as `rlgf fit/test` merge them."""
    checkpoint = read_checkpoint(ckpt_path)
    stored = dict(checkpoint.get("hyper_parameters") or {})
    stored.pop("_instantiator", None)
    stored_class = stored.pop("_class_path", None)
    given_class, given = _model_section(configs or [])
    merged, overrides = merge_stored_settings(stored_class, stored, given_class, given)
    if overrides:
        print(f"rlgf: these settings override the checkpoint's: {'; '.join(overrides)}", file=sys.stderr)
    class_path = stored_class or given_class
    if class_path is None:
        raise CheckpointError(f"{ckpt_path} does not say which algorithm wrote it; pass its --config.")
    module_name, _, class_name = class_path.rpartition(".")
    module = getattr(importlib.import_module(module_name), class_name)(**merged)
    module.configure_model()
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"])
    return module


def _model_section(configs: list[str]) -> tuple[str | None, dict[str, Any]]:
    """`model.class_path` and `model.init_args` of the config files (later files win)."""
    if not configs:
        return None, {}
    from omegaconf import OmegaConf

    try:
        merged = OmegaConf.merge(*[OmegaConf.load(path) for path in configs])
        model = OmegaConf.to_container(merged, resolve=True).get("model") or {}
    except (OSError, ValueError) as error:
        raise ConfigError(f"Could not read the config {configs}: {str(error).splitlines()[0]}") from error
    if not isinstance(model, dict):
        raise ConfigError(f"The config's `model` must be a mapping with class_path and init_args, got {model!r}.")
    return model.get("class_path"), dict(model.get("init_args") or {})


def export_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="rlgf export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", default=[], help="the run's config (repeatable; optional)")
    parser.add_argument("--ckpt_path", required=True, help="a checkpoint written by `rlgf fit`")
    parser.add_argument("--out", required=True, help="a new directory for the model and its tokenizer")
    parser.add_argument("--adapter-only", action="store_true", help="write LoRA adapters alone (peft format)")
    args = parser.parse_args(argv)
    with torch.no_grad():
        module = load_trained_module(args.ckpt_path, args.config)
        out = export_policy(module.policy, module.hparams.model, module.lora, args.out, args.adapter_only)
    what = "LoRA adapters" if args.adapter_only else "merged model" if module.lora is not None else "model"
    print(f"rlgf: wrote the learner's {what} and tokenizer to {out}")
