"""The environment: prompts, the guide, the reward and the randomness of sampling.

The agent (`RLGFModule`) reads it through `trainer.datamodule`; it never calls the agent.
"""

from __future__ import annotations

import os

import torch
from datasets import Dataset
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader
from torchmetrics import Metric, MetricCollection

from rlgf_pl.data.minibatches import MinibatchSchedule
from rlgf_pl.data.prompt_cursor import PromptCursor
from rlgf_pl.data.tasks.base import PromptTask, drop_empty_prompts
from rlgf_pl.errors import ConfigError, DataError
from rlgf_pl.metrics.collection import default_metrics, evaluation_collection, with_every_family
from rlgf_pl.policies.generation import GenerationSettings
from rlgf_pl.policies.guide import GuideBase
from rlgf_pl.rewards.base import Reward, check_scores
from rlgf_pl.rollout.containers import Rollout


def collate_prompts(rows: list[dict]) -> dict[str, list]:
    """Evaluation batches stay text: {'prompt': [B str], 'references': [B list[str]]}."""
    return {"prompt": [row["prompt"] for row in rows], "references": [row["references"] for row in rows]}


class RolloutDataModule(LightningDataModule):
    """The environment: owns the prompts, the frozen guide, the reward and the sampling randomness.

    What the agent reads: `next_prompts()`, `generator`, `guide`, `score()`, the decoding settings,
    `evaluation_generator()` and `metric_collections()`. The training loader yields, per optimizer step,
    which minibatch of the epoch's rollouts to train on (`MinibatchSchedule`).

    Args:
        task: Where prompts and references come from.
        reward: Scores each trajectory.
        guide: The frozen guide policy (needed by PPO++, AggreVaTeD, LOLS, D2LOLS).
        rollouts_per_epoch: Trajectories per epoch over all ranks; must split evenly across them.
        minibatch_size: Trajectories per optimizer step, per rank.
        ppo_epochs: Passes over each epoch's rollouts.
        generation: The learner's decoding settings for training rollouts.
        eval_generation: The learner's decoding settings for validation and test.
        max_prompt_tokens: Longer prompts are cut from the left.
        generation_batch_size: Prompts per `generate` call (memory bound); null = all of a rank's rollouts.
        eval_batch_size: Prompts per validation/test batch.
        seed: Seed of the rollout randomness; rank r uses seed + r. Null takes the run's `seed_everything`.
        metrics: Validation metrics (`rlgf_pl.metrics`), besides the reward's mean and std which always run.
            Null: the cheap defaults (diversity, BLEU, ROUGE, chrF, METEOR, CIDEr-D).
        test_metrics: Test metrics. Null (the default): `metrics` plus every family they lack (perplexities,
            diversity, lexical overlap, and the semantic scores), so `rlgf test` writes them all.
        evaluate_guide: At test, also evaluate the guide on the same prompts with the same metrics, logged as
            `test/guide/*`, so learner and guide share one results table.
    """

    def __init__(
        self,
        task: PromptTask,
        reward: Reward,
        guide: GuideBase | None = None,
        rollouts_per_epoch: int = 112,
        minibatch_size: int = 28,
        ppo_epochs: int = 5,
        generation: GenerationSettings | None = None,
        eval_generation: GenerationSettings | None = None,
        max_prompt_tokens: int = 64,
        generation_batch_size: int | None = None,
        eval_batch_size: int = 32,
        seed: int | None = None,
        metrics: list[Metric] | None = None,
        test_metrics: list[Metric] | None = None,
        evaluate_guide: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (("rollouts_per_epoch", rollouts_per_epoch), ("minibatch_size", minibatch_size),
                            ("ppo_epochs", ppo_epochs), ("max_prompt_tokens", max_prompt_tokens),
                            ("eval_batch_size", eval_batch_size)):
            if value < 1:
                raise ConfigError(f"data.{name} must be >= 1, got {value}.")
        self.task = task
        self.reward = reward
        self.guide = guide
        self.rollouts_per_epoch = rollouts_per_epoch
        self.minibatch_size = minibatch_size
        self.ppo_epochs = ppo_epochs
        self.generation = generation or GenerationSettings()
        self.eval_generation = eval_generation or self.generation
        self.max_prompt_tokens = max_prompt_tokens
        self.generation_batch_size = generation_batch_size
        self.eval_batch_size = eval_batch_size
        if evaluate_guide and guide is None:
            raise ConfigError("data.evaluate_guide needs a guide: set data.guide, or turn evaluate_guide off.")
        self.metrics = default_metrics() if metrics is None else list(metrics)
        self.test_metrics = with_every_family(self.metrics) if test_metrics is None else list(test_metrics)
        for metrics_list in (self.metrics, self.test_metrics):
            evaluation_collection(metrics_list, "")  # fail now on a bad list, not after training
        self.evaluate_guide = evaluate_guide
        self.seed = seed if seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))
        self.datasets: dict[str, Dataset] = {}
        self._generator: torch.Generator | None = None
        self._cursor: PromptCursor | None = None
        self._pending_state: dict | None = None

    # ---- distributed layout -------------------------------------------------------------
    @property
    def rank(self) -> int:
        return self.trainer.global_rank if self.trainer is not None else 0

    @property
    def world_size(self) -> int:
        return self.trainer.world_size if self.trainer is not None else 1

    @property
    def rollouts_per_rank(self) -> int:
        world = self.world_size
        if self.rollouts_per_epoch % world:
            raise ConfigError(
                f"data.rollouts_per_epoch={self.rollouts_per_epoch} does not split evenly over {world} ranks; "
                f"use a multiple of {world}."
            )
        per_rank = self.rollouts_per_epoch // world
        if self.minibatch_size > per_rank:
            raise ConfigError(
                f"data.minibatch_size={self.minibatch_size} is larger than the rollouts per rank "
                f"(rollouts_per_epoch={self.rollouts_per_epoch} / {world} rank(s) = {per_rank}). "
                f"Lower data.minibatch_size to at most {per_rank} or raise data.rollouts_per_epoch."
            )
        return per_rank

    # ---- Lightning hooks --------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        splits = {"fit": ("train", "validation"), "validate": ("validation",), "test": ("test",)}.get(stage, ())
        for split in splits:
            if split not in self.datasets:
                dataset, dropped = drop_empty_prompts(self.task.load(split))
                if dropped:
                    rank_zero_warn(f"Dropped {dropped} empty prompt(s) from the {split} split ({len(dataset)} remain).")
                if len(dataset) == 0:
                    raise DataError(f"The {split!r} split of {type(self.task).__name__} has no non-empty prompts; give it "
                                    "rows with a non-empty prompt.")
                self.datasets[split] = dataset
        if stage == "fit":
            self.rollouts_per_rank  # noqa: B018  (fail now, with the fix, rather than mid-epoch)
        device = self.device
        if self.guide is not None:
            self.guide.setup(device)  # loads its weights (or reaches its server) on first use
        self.reward.to(device)

    @property
    def device(self) -> torch.device:
        """Where guide and reward run: the trainer's device for this rank (CPU without a trainer)."""
        strategy = getattr(self.trainer, "strategy", None)
        return strategy.root_device if strategy is not None else torch.device("cpu")

    def train_dataloader(self) -> MinibatchSchedule:
        return MinibatchSchedule(self.rollouts_per_rank, self.minibatch_size, self.ppo_epochs)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("validation")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def _eval_loader(self, split: str) -> DataLoader:
        return DataLoader(self.datasets[split], batch_size=self.eval_batch_size, shuffle=False, collate_fn=collate_prompts)

    def state_dict(self) -> dict:
        self._ensure_rng()
        return {"generator": self._generator.get_state(), "cursor": self._cursor.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        self._pending_state = state_dict
        if self._generator is not None:
            self._apply_pending_state()

    # ---- rollouts ---------------------------------------------------------------------------
    @property
    def generator(self) -> torch.Generator:
        self._ensure_rng()
        return self._generator

    def _ensure_rng(self) -> None:
        if self._generator is None:
            self._generator = torch.Generator().manual_seed(self.seed + self.rank)
            self._cursor = PromptCursor(len(self.datasets["train"]), self.rank, self.world_size)
        if self._pending_state is not None:
            self._apply_pending_state()

    def _apply_pending_state(self) -> None:
        self._generator.set_state(self._pending_state["generator"])
        self._cursor.load_state_dict(self._pending_state["cursor"])
        self._pending_state = None

    def next_prompts(self, samples_per_prompt: int = 1) -> tuple[list[str], list[list[str]]]:
        """This rank's prompts and references for one training epoch (`rollouts_per_epoch / world_size` rows): with
        `samples_per_prompt` K, `rollouts_per_rank / K` prompts, each in K consecutive rows (a group)."""
        self.check_groups(samples_per_prompt)
        self._ensure_rng()
        rows = self.datasets["train"].select(self._cursor.take(self.rollouts_per_rank // samples_per_prompt,
                                                               self.generator))
        prompts, references = list(rows["prompt"]), list(rows["references"])
        return ([p for p in prompts for _ in range(samples_per_prompt)],
                [r for r in references for _ in range(samples_per_prompt)])

    def check_groups(self, samples_per_prompt: int) -> None:
        """A rank's rollouts, and each generation batch, must hold whole groups of `samples_per_prompt` rows."""
        per_rank = self.rollouts_per_rank
        if samples_per_prompt < 1 or per_rank % samples_per_prompt:
            raise ConfigError(
                f"model.init_args.samples_per_prompt={samples_per_prompt} must be >= 1 and divide the rollouts per rank "
                f"(data.rollouts_per_epoch={self.rollouts_per_epoch} / {self.world_size} rank(s) = {per_rank}); use a "
                f"rollouts_per_epoch that is a multiple of {max(samples_per_prompt, 1) * self.world_size}.")
        if self.generation_batch_size is not None and self.generation_batch_size % samples_per_prompt:
            raise ConfigError(f"data.generation_batch_size={self.generation_batch_size} must be a multiple of "
                              f"model.init_args.samples_per_prompt={samples_per_prompt}, so that the samples of a "
                              "prompt are generated together.")

    def score(self, rollout: Rollout) -> torch.Tensor:
        """The reward of each trajectory, validated, on the rollout's device."""
        scores = self.reward(rollout.prompts, rollout.continuations, rollout.references)
        return check_scores(scores, rollout.batch_size, self.reward).to(rollout.query_ids.device)

    def evaluation_generator(self, batch_idx: int) -> torch.Generator:
        """The random stream of evaluation batch `batch_idx` on this rank: the same at every validation."""
        return torch.Generator().manual_seed(10_007 * (self.seed + 1) + 1_000_003 * self.rank + batch_idx)

    def metric_collections(self, stage: str, guide: bool = False) -> dict[str, MetricCollection]:
        """Fresh metrics for one evaluation pass: the learner's, plus the guide's when `guide` is set or, at test,
        with `evaluate_guide`."""
        metrics = self.test_metrics if stage == "test" else self.metrics
        collections = {"learner": evaluation_collection(metrics, f"{stage}/")}
        if guide or (stage == "test" and self.evaluate_guide):
            collections["guide"] = evaluation_collection(metrics, f"{stage}/guide/")
        return collections
