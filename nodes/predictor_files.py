"""Which files in models/styleexpert are aesthetic predictors (for the Metrics node's dropdown).

Decided by the tensor names in each file's header (only `layers.<i>.weight/bias`), not by file
name: checkpoints and projector files never match, whatever they are called. Each file's answer
is kept until the file changes, so the dropdown (rebuilt on every /object_info) reads each header once.
"""

from __future__ import annotations

import folder_paths

from ..styleexpert_core.errors import StyleExpertError
from ..styleexpert_core.formats.files import tensor_file_keys
from ..styleexpert_core.metrics import is_aesthetic_predictor
from .loader import file_identity
from .model_folder import FOLDER

_answers: dict[str, tuple[tuple, bool]] = {}  # path -> (file identity, is a predictor)


def _is_predictor(path: str) -> bool:
    try:
        identity = file_identity(path)
    except OSError:
        return False
    known = _answers.get(path)
    if known is None or known[0] != identity:
        try:
            answer = is_aesthetic_predictor(tensor_file_keys(path))
        except StyleExpertError:  # unreadable or pickled: never offered (the loader explains such files)
            answer = False
        known = _answers[path] = (identity, answer)
    return known[1]


def aesthetic_predictors() -> list[str]:
    """The names in models/styleexpert that hold a LAION-style aesthetic MLP."""
    return [name for name in folder_paths.get_filename_list(FOLDER)
            if (path := folder_paths.get_full_path(FOLDER, name)) and _is_predictor(path)]
