"""Tasks: where prompts and references come from."""

from rlgf_pl.data.tasks.base import PromptTask
from rlgf_pl.data.tasks.commongen import CommonGenTask, ConceptTask
from rlgf_pl.data.tasks.imdb import IMDBTask
from rlgf_pl.data.tasks.text_files import TextFilesTask
from rlgf_pl.data.tasks.toy import ToyTask

__all__ = ["CommonGenTask", "ConceptTask", "IMDBTask", "PromptTask", "TextFilesTask", "ToyTask"]
