"""The learner's weights as files a serving engine loads: the whole state dict, or LoRA adapters alone.

Full weights: one `model.safetensors` under the names of the model's Hugging Face checkpoint (a tied
embedding stored once, under the input embedding's name, as serving engines expect), loaded into the same
architecture. Adapters: peft's format (`adapter_model.safetensors` whose names read
`base_model.model.<module>.lora_A.weight`, and `adapter_config.json`), which vLLM's and SGLang's
`load_lora_adapter` read as well as `rlgf serve`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from torch import Tensor, nn

from rlgf_pl.errors import WeightSyncError
from rlgf_pl.policies.lora import has_adapters, tuner_layers

FULL_FILE = "model.safetensors"
ADAPTER_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
PEFT_PREFIX = "base_model.model."
ADAPTER_NAME = "default"


def checkpoint_tensors(model: nn.Module) -> dict[str, Tensor]:
    """`model`'s state dict as a Hugging Face checkpoint names it: a tensor that several names share (tied
    embeddings) once, under its first name in module order, the input embedding's. Serving engines load a tied
    model's embedding from that name and skip `lm_head.weight`, so a file that kept only the head's name would
    leave the server's embedding and head on the old weights."""
    kept: dict[str, Tensor] = {}
    seen: set[tuple] = set()
    for name, tensor in model.state_dict().items():
        place = (tensor.device, tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
                 tuple(tensor.stride()), tensor.dtype)
        if place not in seen:
            seen.add(place)
            kept[name] = tensor.detach().contiguous()
    return kept


def write_full_weights(model: nn.Module, folder: Path) -> Path:
    """Every tensor of `model` into `folder/model.safetensors`, under the names of its Hugging Face checkpoint
    (`checkpoint_tensors`). Returns the folder."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(checkpoint_tensors(model), str(folder / FULL_FILE), metadata={"format": "pt"})
    return folder


def load_full_weights(model: nn.Module, folder: Path) -> None:
    """Load `write_full_weights`' file into `model` (same architecture); a missing or extra tensor is an error."""
    from safetensors.torch import load_model

    path = Path(folder) / FULL_FILE
    if not path.is_file():
        raise WeightSyncError(f"{path} does not exist: the trainer writes the learner's weights there before it "
                              "asks for the update (the server must see the trainer's files).")
    try:
        load_model(model, str(path), strict=True)
    except RuntimeError as error:
        raise WeightSyncError(f"The weights in {path} do not fit the served model: {str(error).splitlines()[0]} "
                              "Serve the learner's own base model.") from error


def adapter_tensors(model: nn.Module) -> dict[str, Tensor]:
    """The LoRA tensors of a model with adapters injected in place, under peft's saved names."""
    marker = f".{ADAPTER_NAME}."
    return {PEFT_PREFIX + name.replace(marker, "."): tensor.detach()
            for name, tensor in model.state_dict().items() if "lora_" in name}


def adapter_config(model: nn.Module) -> dict:
    """peft's `adapter_config.json` for the adapters in `model` (rank, alpha and the adapted layers' names)."""
    layers = [(name, module) for name, module in model.named_modules() if module in set(tuner_layers(model))]
    first = layers[0][1]
    return {"peft_type": "LORA", "r": int(first.r[ADAPTER_NAME]), "lora_alpha": float(first.lora_alpha[ADAPTER_NAME]),
            "target_modules": sorted({name.rsplit(".", 1)[-1] for name, _ in layers}), "lora_dropout": 0.0,
            "bias": "none", "fan_in_fan_out": bool(getattr(first, "fan_in_fan_out", False)),
            "task_type": None, "base_model_name_or_path": None}


def write_adapters(model: nn.Module, folder: Path) -> Path:
    """The adapters of `model`, and nothing else, in peft's format. Returns the folder."""
    from safetensors.torch import save_file

    if not has_adapters(model):
        raise WeightSyncError("write_adapters: the model has no LoRA adapters; send its full weights instead.")
    folder.mkdir(parents=True, exist_ok=True)
    save_file({name: tensor.contiguous() for name, tensor in adapter_tensors(model).items()},
              str(folder / ADAPTER_FILE))
    (folder / ADAPTER_CONFIG).write_text(json.dumps(adapter_config(model), indent=1))
    return folder


def load_adapters(model: nn.Module, folder: Path) -> None:
    """Put the adapters in `folder` (peft's format) on `model`: injected in place the first time (from the
    folder's config), their tensors loaded every time. A tensor the model has no place for is an error."""
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / ADAPTER_FILE).is_file() or not (folder / ADAPTER_CONFIG).is_file():
        raise WeightSyncError(f"{folder} holds no LoRA adapters ({ADAPTER_FILE} and {ADAPTER_CONFIG}).")
    config = json.loads((folder / ADAPTER_CONFIG).read_text())
    if not has_adapters(model):
        known = set(LoraConfig.__dataclass_fields__)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="fan_in_fan_out is set to False")
            get_peft_model(model, LoraConfig(**{k: v for k, v in config.items() if k in known and k != "peft_type"}))
        model.requires_grad_(False)
    marker = f".{ADAPTER_NAME}."
    ours = {name.replace(marker, "."): name for name in model.state_dict() if "lora_" in name}
    tensors = load_file(str(folder / ADAPTER_FILE))
    names = {name.removeprefix(PEFT_PREFIX) for name in tensors}
    if names != set(ours):
        extra, missing = sorted(names - set(ours)), sorted(set(ours) - names)
        raise WeightSyncError(f"The adapters in {folder} do not fit the served model's (extra: {extra[:3]}, missing: "
                              f"{missing[:3]}): serve the learner's base model, with the learner's LoRA settings.")
    model.load_state_dict({ours[name.removeprefix(PEFT_PREFIX)]: tensor for name, tensor in tensors.items()},
                          strict=False)
