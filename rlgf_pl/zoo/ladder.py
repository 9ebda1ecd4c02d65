"""Guide ladders: guides of graded strength for each offline task, to ask how much a guide's strength matters.

Each ladder is one recipe stopped at several fine-tuning stages: the task's learner itself (0 steps), two
partly fine-tuned guides, and the task's guide; `ReferenceGuide` (the task's own references, handed over from
the switch point) stands above them. `tools/guide_ladder.py` measures each rung's strength (its validation
reward as a writer) and runs guided algorithms against PPO across a ladder.
"""

from __future__ import annotations

from functools import partial

from rlgf_pl.zoo.concepts import build_concepts_t5_guide
from rlgf_pl.zoo.imdb import build_imdb_tiny_guide
from rlgf_pl.zoo.registry import ZooEntry, register

GUIDE_LADDERS: dict[str, tuple[tuple[str, int], ...]] = {
    "imdb": (("imdb-tiny", 0), ("imdb-tiny-guide-25", 25), ("imdb-tiny-guide-50", 50), ("imdb-tiny-guide", 100)),
    "concepts": (("concepts-t5", 0), ("concepts-t5-guide-250", 250), ("concepts-t5-guide-750", 750),
                 ("concepts-t5-guide", 2000)),
}
"""Per task: (zoo name, fine-tuning steps) from the weakest rung to the strongest."""

for _steps in (25, 50):
    register(ZooEntry(f"imdb-tiny-guide-{_steps}", f"imdb-tiny-guide's recipe stopped at {_steps} of its 100 steps "
                      "(guide ladder)", partial(build_imdb_tiny_guide, steps=_steps),
                      depends_on=("imdb-tiny", "imdb-tiny-sentiment")))
for _steps in (250, 750):
    register(ZooEntry(f"concepts-t5-guide-{_steps}", f"concepts-t5-guide's recipe stopped at {_steps} of its 2000 "
                      "steps (guide ladder)", partial(build_concepts_t5_guide, steps=_steps),
                      depends_on=("concepts-t5",), version=3))
