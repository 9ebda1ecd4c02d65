"""Read scalars back from TensorBoard event files (for tables, plots and tests)."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

Series = dict[str, list[tuple[int, float]]]


def read_scalars_and_elapsed(log_dir: str | Path) -> tuple[Series, Series]:
    """One pass over the event files under `log_dir` (one run, possibly several files): tag -> [(step, value)]
    in the order written, and tag -> [(step, elapsed seconds)] in the same order. Elapsed time is time within
    each event file from its first event, plus the spans of the files before it, so the pause between a run
    and its resume (or before `rlgf test`) does not count."""
    values: Series = {}
    elapsed: Series = {}
    offset = 0.0
    for event_file in sorted(Path(log_dir).rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(event_file), size_guidance={"scalars": 0})
        accumulator.Reload()
        events = [(tag, event) for tag in accumulator.Tags()["scalars"] for event in accumulator.Scalars(tag)]
        if not events:
            continue
        start = min(event.wall_time for _, event in events)
        for tag, event in events:
            values.setdefault(tag, []).append((event.step, event.value))
            elapsed.setdefault(tag, []).append((event.step, offset + event.wall_time - start))
        offset += max(event.wall_time for _, event in events) - start
    return values, elapsed


def read_scalars(log_dir: str | Path) -> Series:
    """All scalar series under `log_dir`, tag -> [(step, value)], in the order they were written."""
    return read_scalars_and_elapsed(log_dir)[0]


def per_epoch(scalars: Series, tag: str) -> list[float]:
    """The values of `tag` in logging order (one per epoch for epoch-level metrics)."""
    return [value for _, value in scalars.get(tag, [])]
