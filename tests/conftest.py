"""Test setup: never touch the model hub; every model is built locally in a temporary cache."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
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


def fast_fit_args(tmp_path: Path, model_dir: Path | str, epochs: int = 2, extra: list[str] | None = None) -> list[str]:
    """`rlgf fit` arguments for a quick toy run that logs into tmp_path."""
    return [
        "fit",
        "--config", str(REPO / "configs/toy/ppo.yaml"),
        f"--model.init_args.model={model_dir}",
        f"--trainer.max_epochs={epochs}",
        f"--trainer.default_root_dir={tmp_path}",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        *(extra or []),
    ]
