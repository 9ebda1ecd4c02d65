"""Prompts from local JSON, CSV or parquet files (or any `datasets.load_dataset` source)."""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset, load_dataset

from rlgf_pl.data.tasks.base import PromptTask

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
            raise KeyError(f"No data file for split {split!r}; data_files has {sorted(self.data_files)}.")
        files = self.data_files[split]
        files = [files] if isinstance(files, str) else list(files)
        for file in files:
            if not Path(file).exists():
                raise FileNotFoundError(f"Data file for split {split!r} not found: {file}")
        suffix = Path(files[0]).suffix.lower()
        if suffix not in _FORMATS:
            raise ValueError(f"Cannot tell the format of {files[0]}; use one of {sorted(_FORMATS)}.")
        dataset = load_dataset(_FORMATS[suffix], data_files={split: files}, split=split)
        return to_prompt_dataset(dataset, self.prompt_column, self.reference_column, source=", ".join(files))


def to_prompt_dataset(dataset: Dataset, prompt_column: str, reference_column: str | None, source: str) -> Dataset:
    """Rename/convert columns to `prompt` and `references` (list[str]); name any missing column."""
    for kind, column in (("prompt_column", prompt_column), ("reference_column", reference_column)):
        if column is not None and column not in dataset.column_names:
            raise KeyError(
                f"Column {column!r} (set as {kind}) is missing from {source}; its columns are "
                f"{dataset.column_names}. Set {kind} to one of them."
            )

    def convert(row: dict) -> dict:
        references = row[reference_column] if reference_column is not None else []
        if isinstance(references, str):
            references = [references]
        return {"prompt": row[prompt_column] or "", "references": [str(r) for r in references or []]}

    return dataset.map(convert, remove_columns=dataset.column_names)
