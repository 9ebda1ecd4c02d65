"""What an agent's checkpoint holds: what trains. The reference and frozen weights (a LoRA base) are rebuilt
from `model` and never saved; loading fills them back and names any key or shape that does not fit."""

from __future__ import annotations

from typing import Any

from rlgf_pl.checkpoints import state_mismatch
from rlgf_pl.errors import CheckpointError

REFERENCE_PREFIX = "reference."


class CheckpointState:
    """Checkpoint hooks of `RLGFModule` (a mixin: it reads the module's `reference`, `score_moments`, `hparams`
    and the `Safeguards` non-finite check)."""

    def frozen_parameter_names(self) -> set[str]:
        """State keys of the parameters that never train (under every name a shared one has)."""
        return {name for name, parameter in self.named_parameters(remove_duplicate=False) if not parameter.requires_grad}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        frozen = self.frozen_parameter_names()
        for key in [k for k in state if k.startswith(REFERENCE_PREFIX) or k in frozen]:
            del state[key]
        self._stop_if_non_finite(state, "saving a checkpoint (no file was written; the last one is intact)")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key, value in self.reference.state_dict(prefix=REFERENCE_PREFIX).items():
            state.setdefault(key, value)
        current = self.state_dict()
        for key in self.frozen_parameter_names():
            state.setdefault(key, current[key])
        for key, value in self.score_moments.state_dict(prefix="score_moments.").items():
            state.setdefault(key, value)  # checkpoints from before score scaling existed
        state.setdefault("tokens_written", self.tokens_written)  # checkpoints from before the token count
        mismatch = state_mismatch(state, self.state_dict())
        if mismatch:
            raise CheckpointError(
                f"The checkpoint's weights do not fit the models of this run (model={self.hparams.model!r}): "
                f"{mismatch}. Load it with the model it was trained with (see config.yaml in its version folder).")
