"""Prompts from local JSON, CSV or parquet files (or any `datasets.load_dataset` source)."""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset, load_dataset

from rlgf_pl.data.tasks.base import PromptTask
from rlgf_pl.errors import ConfigError, DataError

_FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


class TextFilesTask(PromptTask):
    """Prompts and references read from files, one file (or list of files) per split.

    Args:
        data_files: Split name -> file path(s), e.g. {train: data/train.jsonl, validation: data/val.jsonl}.
        prompt_column: Column that holds the prompt text.
        reference_column: Column with a reference string or a list of them; null for none.
    """

    def __init__(
        self,
        data_files: dict[str, str | list[str]],
        prompt_column: str = "prompt",
        reference_column: str | None = "reference",
    ) -> None:
        self.data_files = data_files
        self.prompt_column = prompt_column
        self.reference_column = reference_column

    def load(self, split: str) -> Dataset:
        if split not in self.data_files:
            raise ConfigError(f"No data file for split {split!r}; data_files has {sorted(self.data_files)}. Add "
                              f"data_files.{split}.")
        files = self.data_files[split]
        files = [files] if isinstance(files, str) else list(files)
        for file in files:
            check_has_rows(Path(file), split)
        suffix = Path(files[0]).suffix.lower()
        if suffix not in _FORMATS:
            raise ConfigError(f"Cannot tell the format of {files[0]}; use one of {sorted(_FORMATS)}.")
        source = ", ".join(files)
        no_rows = DataError(f"The {split!r} data file {source} has no rows; give it at least one prompt.")
        try:
            dataset = load_dataset(_FORMATS[suffix], data_files={split: files}, split=split)
        except ValueError as error:  # `datasets` says 'Instruction "train" corresponds to no data!'
            if "corresponds to no data" in str(error):
                raise no_rows from error
            raise
        if len(dataset) == 0:
            raise no_rows
        return to_prompt_dataset(dataset, self.prompt_column, self.reference_column, source=source)


def check_has_rows(path: Path, split: str) -> None:
    """Fail with the file and split named when a task file is missing, empty, or a CSV with only a header
    (the `datasets` loaders give a bare StopIteration or "corresponds to no data" for those)."""
    if not path.is_file():
        raise DataError(f"Data file for split {split!r} not found: {path}. Fix data_files.{split}.")
    lines = _first_non_blank_lines(path, 2)
    if not lines:
        raise DataError(f"The {split!r} data file {path} is empty; give it at least one prompt.")
    if path.suffix.lower() == ".csv" and len(lines) < 2:
        raise DataError(f"The {split!r} data file {path} holds only a CSV header ({lines[0][:80]!r}) and no rows; "
                        "give it at least one prompt.")


def _first_non_blank_lines(path: Path, count: int) -> list[str]:
    """Up to `count` non-blank lines from the start of a file, read lazily (a file may be large)."""
    if path.suffix.lower() == ".parquet":
        return ["<binary>"] if path.stat().st_size else []
    found = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.strip():
                found.append(line.strip())
                if len(found) == count:
                    break
    return found


def to_prompt_dataset(dataset: Dataset, prompt_column: str, reference_column: str | None, source: str) -> Dataset:
    """Rename/convert columns to `prompt` and `references` (list[str]); name any missing column."""
    for kind, column in (("prompt_column", prompt_column), ("reference_column", reference_column)):
        if column is not None and column not in dataset.column_names:
            raise DataError(
                f"Column {column!r} (set as {kind}) is missing from {source}; its columns are "
                f"{dataset.column_names}. Set {kind} to one of them."
            )

    def convert(row: dict) -> dict:
        references = row[reference_column] if reference_column is not None else []
        if isinstance(references, str):
            references = [references]
        return {"prompt": row[prompt_column] or "", "references": [str(r) for r in references or []]}

    return dataset.map(convert, remove_columns=dataset.column_names)
