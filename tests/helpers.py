"""Test-only callbacks, importable from YAML/CLI as `helpers.X` (pytest puts tests/ on sys.path)."""

from __future__ import annotations

from lightning.pytorch import Callback

from rlgf_pl.rewards.base import Reward


class StopAfterEpochs(Callback):
    """Ends fit after `epochs` epochs, as if the job had been interrupted there (after its checkpoint)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


class BrokenReward(Reward):
    """A reward that returns a bad value once it has been called `after` times (for error tests)."""

    def __init__(self, kind: str = "nan", after: int = 0) -> None:
        self.kind = kind
        self.after = after
        self.calls = 0

    def __call__(self, prompts, continuations, references):
        import torch

        self.calls += 1
        scores = torch.zeros(len(continuations))
        if self.calls <= self.after:
            return scores
        if self.kind == "nan":
            scores[0] = float("nan")
            return scores
        if self.kind == "huge":  # finite, but its square overflows float32
            return scores.fill_(1e30)
        return scores[:-1]  # wrong shape


class PoisonWeightsAt(Callback):
    """Writes a NaN into one learner weight after validation of epoch `epoch`, just before its checkpoint."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_validation_end(self, trainer, pl_module) -> None:  # callbacks run before ModelCheckpoint saves
        if trainer.current_epoch == self.epoch:
            import torch

            with torch.no_grad():
                next(pl_module.policy.parameters()).view(-1)[0] = float("nan")


def leave_mark(path: str) -> str:
    """Writes a file; a pickle that calls it on load shows the load ran code from the file."""
    from pathlib import Path

    Path(path).write_text("unpickled")
    return path


class RunsCodeWhenUnpickled:
    """An object whose unpickling calls `leave_mark(path)`: the shape of a hostile checkpoint."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return leave_mark, (self.path,)
