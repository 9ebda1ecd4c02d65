"""Text joins shared by training targets and metrics."""

from __future__ import annotations


def joined_reference(prompt: str, reference: str) -> str:
    """A reference as it reads after its prompt: tasks store the two apart, so a separating space is put back
    when neither side has one (the reference's first word is then tokenized as it was in the text)."""
    if prompt[-1:].isspace() or reference[:1].isspace() or not prompt:
        return reference
    return " " + reference
