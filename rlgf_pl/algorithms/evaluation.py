"""Validation and test for every algorithm: continue held-out prompts, score them, update the metrics."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import MetricCollection

from rlgf_pl.metrics.samples import EvaluationSamples
from rlgf_pl.rollout.containers import Rollout
from rlgf_pl.rollout.plan import GUIDE_ONLY, Plan


class EvaluationSteps:
    """The LightningModule hooks of validation and test, mixed into `RLGFModule`.

    Each batch is {'prompt': [B str], 'references': [B list[str]]} from the environment. The learner (and,
    at test with `evaluate_guide`, the guide) continues it with the evaluation decoding settings; the
    environment scores it and supplies the metric collections.
    """

    _evaluation_metrics: dict[str, MetricCollection]
    evaluate_guide_in_next_validation = False
    """Set by a callback (callbacks.GuideBaselineSwitch) for one validation that also evaluates the guide, as
    test does with `evaluate_guide`: its metrics are logged as `val/guide/...`."""

    def evaluation_rollout(self, batch: dict, batch_idx: int, plan: Plan | None = None) -> Rollout:
        """Learner (or `plan`) continuations of an evaluation batch, with the environment's fixed random
        stream for this batch and rank: every validation sees the same sampling noise, and training
        randomness is untouched."""
        environment = self.environment
        sampler = self.sampler(environment.eval_generation)
        return sampler.sample(batch["prompt"], batch["references"], plan or Plan(),
                              environment.evaluation_generator(batch_idx))

    def validation_step(self, batch: dict, batch_idx: int) -> dict:
        return self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict, batch_idx: int) -> dict:
        return self._evaluate(batch, batch_idx, "test")

    def on_validation_epoch_start(self) -> None:
        self._start_evaluation("val")

    def on_test_epoch_start(self) -> None:
        self._start_evaluation("test")

    def on_validation_epoch_end(self) -> None:
        self._finish_evaluation("val")

    def on_test_epoch_end(self) -> None:
        self._finish_evaluation("test")

    def _start_evaluation(self, stage: str) -> None:
        """Fresh metric collections (the learner's, and the guide baseline's when asked) for this pass."""
        with_guide = stage == "val" and self.evaluate_guide_in_next_validation
        collections = self.environment.metric_collections(stage, guide=with_guide)
        self.evaluate_guide_in_next_validation = False
        self._evaluation_metrics = {writer: collection.to(self.device) for writer, collection in collections.items()}

    def _evaluate(self, batch: dict, batch_idx: int, stage: str) -> dict:
        """Continue the batch's prompts with the learner (and the guide, for the baseline), score them and
        update the metrics. Returns the learner's rollout and rewards (for callbacks)."""
        environment = self.environment
        rollout = self.evaluation_rollout(batch, batch_idx)
        scores = environment.score(rollout)
        writers = {"learner": (self.policy, rollout, scores)}
        if "guide" in self._evaluation_metrics:
            guide_rollout = self.evaluation_rollout(batch, batch_idx, GUIDE_ONLY)
            writers["guide"] = (environment.guide.policy, guide_rollout, environment.score(guide_rollout))
        for writer, (policy, writer_rollout, writer_scores) in writers.items():
            self._evaluation_metrics[writer].update(EvaluationSamples(
                writer_rollout, writer_scores, policy, self.reference, environment.max_prompt_tokens))
        self.log(f"{stage}/response_length", rollout.response_mask.sum(-1).float().mean(), sync_dist=True,
                 batch_size=rollout.batch_size)
        return {"rollout": rollout, "scores": scores}

    def _finish_evaluation(self, stage: str) -> None:
        """Compute the metrics (torchmetrics reduces them over ranks) and log them. Lightning drops what the
        sanity check logs; with `num_sanity_val_steps: -1` the metrics of the learner before any training are
        worth keeping, so they are logged at step 0."""
        values: dict[str, Tensor] = {}
        for collection in self._evaluation_metrics.values():
            values.update(collection.compute())
        self._evaluation_metrics = {}
        values = {name: value.float().cpu() for name, value in values.items() if torch.isfinite(value).all()}
        if self.trainer.sanity_checking:
            if self.global_step == 0 and self.trainer.is_global_zero:
                for logger in self.loggers:
                    logger.log_metrics({name: float(value) for name, value in values.items()}, step=0)
            return
        reward = values.pop(f"{stage}/reward", None)
        if reward is not None:
            self.log(f"{stage}/reward", reward, prog_bar=True)
        self.log_dict(values)  # already reduced over ranks, so no sync_dist

    def configure_callbacks(self) -> list:
        from rlgf_pl.results import TestResultsWriter

        return [TestResultsWriter()]
