"""Test setup: never touch the model hub; every model is built locally in a temporary cache."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RLGF_TRACEBACK"] = "1"  # `main` raises user-input errors here; the CLI test unsets it
os.environ.setdefault("RLGF_CACHE", tempfile.mkdtemp(prefix="rlgf-test-cache-"))

import pytest  # noqa: E402
import torch  # noqa: E402

from rlgf_pl.zoo.toy import build_toy_gpt2  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def toy_model_dir(tmp_path_factory) -> Path:
    """A tiny random GPT-2 and word-level tokenizer, written with save_pretrained."""
    directory = tmp_path_factory.mktemp("toy-gpt2")
    build_toy_gpt2(directory, seed=0)
    return directory


@pytest.fixture(scope="session")
def other_toy_model_dir(tmp_path_factory) -> Path:
    """A second tiny GPT-2 with different weights (a stand-in guide)."""
    directory = tmp_path_factory.mktemp("toy-gpt2-other")
    build_toy_gpt2(directory, seed=1)
    return directory


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


def built(module):
    """A module with its networks, as `Trainer.fit` has it after `configure_model`."""
    module.configure_model()
    return module


def fast_fit_args(tmp_path: Path, model_dir: Path | str, epochs: int = 2, extra: list[str] | None = None,
                  config: str = "ppo", guide: Path | str | None = None, dense: bool = True) -> list[str]:
    """`rlgf fit` arguments for a quick run of `configs/toy/{config}.yaml` that logs into tmp_path.

    PPO runs drop the guide; `dense` swaps the sparse toy reward for the dense word fraction."""
    args = [
        "fit",
        "--config", str(REPO / f"configs/toy/{config}.yaml"),
        f"--model.init_args.model={model_dir}",
        f"--trainer.max_epochs={epochs}",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
    ]
    if dense:
        args.append("--data.init_args.reward.init_args.at_least=0")
    if guide is not None:
        args.append(f"--data.init_args.guide.init_args.model={guide}")
    elif config == "ppo":
        args.append("--data.init_args.guide=null")
    return [*args, *(extra or [])]


def run_rlgf(args: list[str], timeout: int = 300):
    """The `rlgf` console script in a subprocess (for DDP runs, which spawn their own ranks)."""
    import subprocess
    import sys

    command = [str(Path(sys.executable).parent / "rlgf"), *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


def _constant_output_gpt2(directory: Path, tokenizer, marker: str, sign: float, seed: int) -> Path:
    """A tiny GPT-2 whose next-token distribution ignores its input: the final layer norm outputs a fixed
    vector b, and the marker's logit is +50|b| (always emitted) or -50|b| (never emitted)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=256, n_embd=32, n_layer=2, n_head=2,
                        tie_word_embeddings=False, eos_token_id=tokenizer.eos_token_id,
                        bos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = GPT2LMHeadModel(config)
    with torch.no_grad():
        direction = torch.randn(32)
        direction /= direction.norm()
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(direction)
        model.lm_head.weight.normal_(std=0.01)
        model.lm_head.weight[tokenizer.convert_tokens_to_ids(marker)] = sign * 50.0 * direction
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def marker_guide_dir(tmp_path_factory) -> Path:
    """A guide that always writes 'good' (toy vocabulary)."""
    from rlgf_pl.zoo.toy import build_toy_tokenizer

    return _constant_output_gpt2(tmp_path_factory.mktemp("marker-guide"), build_toy_tokenizer(), "good", 1.0, 0)


@pytest.fixture(scope="session")
def no_marker_learner_dir(tmp_path_factory) -> Path:
    """A learner that never writes 'good' (toy vocabulary)."""
    from rlgf_pl.zoo.toy import build_toy_tokenizer

    return _constant_output_gpt2(tmp_path_factory.mktemp("no-marker-learner"), build_toy_tokenizer(), "good", -1.0, 1)


@pytest.fixture(scope="session")
def reordered_marker_guide_dir(tmp_path_factory) -> Path:
    """A guide that always writes 'good', with its own tokenizer: the toy words in reverse id order."""
    from rlgf_pl.zoo.toy import TOY_WORDS, build_toy_tokenizer

    tokenizer = build_toy_tokenizer(tuple(reversed(TOY_WORDS)))
    return _constant_output_gpt2(tmp_path_factory.mktemp("reordered-guide"), tokenizer, "good", 1.0, 2)


@pytest.fixture(scope="session")
def toy_model_dir_guide() -> Path:
    """The zoo's toy guide (toy-gpt2 fine-tuned with SFT to say 'good'), built once into the test cache."""
    from rlgf_pl.zoo.registry import ensure_built

    return ensure_built("toy-guide")


@pytest.fixture(scope="session")
def t5_dir(tmp_path_factory) -> Path:
    """A tiny random T5 (encoder-decoder) over the toy vocabulary, written with save_pretrained."""
    from rlgf_pl.zoo.toy import build_toy_t5

    directory = tmp_path_factory.mktemp("toy-t5")
    build_toy_t5(directory, seed=0)
    return directory


def _t5_that_suppresses(directory: Path, allowed: str | None, banned: str | None) -> Path:
    """A tiny T5 whose generation config bans `banned`, or every token but `allowed` (a marker writer)."""
    from transformers import GenerationConfig

    from rlgf_pl.zoo.toy import build_toy_t5, build_toy_tokenizer

    build_toy_t5(directory, seed=3)
    tokenizer = build_toy_tokenizer()
    if allowed is not None:
        suppressed = [i for i in range(len(tokenizer)) if i != tokenizer.convert_tokens_to_ids(allowed)]
    else:
        suppressed = [tokenizer.convert_tokens_to_ids(banned)]
    config = GenerationConfig.from_pretrained(directory)
    config.suppress_tokens = suppressed
    config.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def no_marker_t5_dir(tmp_path_factory) -> Path:
    """A seq2seq learner that never writes 'good'."""
    return _t5_that_suppresses(tmp_path_factory.mktemp("no-marker-t5"), allowed=None, banned="good")


@pytest.fixture(scope="session")
def marker_t5_guide_dir(tmp_path_factory) -> Path:
    """A seq2seq guide that always writes 'good'."""
    return _t5_that_suppresses(tmp_path_factory.mktemp("marker-t5"), allowed="good", banned=None)
