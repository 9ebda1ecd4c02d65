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


def read_elapsed(log_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Like `read_scalars`, with the run's elapsed seconds at each value instead of the value: time within
    each event file from its first event, plus the spans of the files before it, so the pause between a run
    and its resume (or before `rlgf test`) does not count."""
    series: dict[str, list[tuple[int, float]]] = {}
    offset = 0.0
    for event_file in sorted(Path(log_dir).rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(event_file), size_guidance={"scalars": 0})
        accumulator.Reload()
        events = [(tag, event) for tag in accumulator.Tags()["scalars"] for event in accumulator.Scalars(tag)]
        if not events:
            continue
        start = min(event.wall_time for _, event in events)
        for tag, event in events:
            series.setdefault(tag, []).append((event.step, offset + event.wall_time - start))
        offset += max(event.wall_time for _, event in events) - start
    return {tag: sorted(points, key=lambda point: point[1]) for tag, points in series.items()}

