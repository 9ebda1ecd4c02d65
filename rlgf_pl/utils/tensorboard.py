"""Read scalars back from TensorBoard event files (for tables, plots and tests)."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def read_scalars(log_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """All scalar series under `log_dir` (event files of one run, possibly several), tag -> [(step, value)],
    in the order they were written."""
    series: dict[str, list[tuple[int, float]]] = {}
    for event_file in sorted(Path(log_dir).rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(event_file), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            series.setdefault(tag, []).extend((event.step, event.value) for event in accumulator.Scalars(tag))
    return series


def per_epoch(scalars: dict[str, list[tuple[int, float]]], tag: str) -> list[float]:
    """The values of `tag` in logging order (one per epoch for epoch-level metrics)."""
    return [value for _, value in scalars.get(tag, [])]
