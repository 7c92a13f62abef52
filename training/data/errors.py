"""The errors training, curation and evaluation raise on bad user input (one module for all three).

All derive from ``styleexpert_core.errors.StyleExpertError`` (a ``ValueError``), so the CLIs can
turn any of them into one clear line and exit code 2, and the ComfyUI side can catch them too.
"""

from __future__ import annotations

from styleexpert_core.errors import InputError, ShapeMismatchError, StyleExpertError

__all__ = [
    "StyleExpertError", "InputError", "ShapeMismatchError", "ManifestError", "MissingFileError",
    "MissingWeightsError", "EmbeddingError", "EmbeddingMismatchError", "LabelError", "ConfigError",
    "VLMOutputError", "ResumeConflictError",
]


class ManifestError(InputError):
    """A JSONL manifest is empty, has a bad line, a missing field, or duplicate ids."""


class MissingFileError(InputError, FileNotFoundError):
    """A file the user named (manifest, embeddings, image, model weights) does not exist."""


class MissingWeightsError(MissingFileError):
    """Model weights are not at the local path given; nothing is ever downloaded."""


class EmbeddingError(InputError):
    """An embeddings file is unreadable, has the wrong tensor name or rank, or holds NaN/inf."""


class EmbeddingMismatchError(ShapeMismatchError):
    """Embeddings and manifest disagree: row count, missing ids, or embedding width."""


class LabelError(InputError):
    """A label/score field is missing from a record, or a name is not one of the known ones."""


class ConfigError(InputError):
    """A configuration file, option or value that cannot be used as given (unknown key, out of range, ...)."""


class VLMOutputError(InputError):
    """The vision-language model's answer could not be parsed into the expected scores."""


class ResumeConflictError(InputError):
    """An output folder holds results from a run with different inputs or settings."""
