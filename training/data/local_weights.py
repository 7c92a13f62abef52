"""Model weights are only ever read from local folders; this check says so clearly."""

from __future__ import annotations

from pathlib import Path

from .errors import MissingWeightsError


def check_local_weights(path: Path, what: str) -> None:
    """Refuse anything but a local folder with a config.json (the hub is never contacted)."""
    path = Path(path)
    if not path.is_dir():
        raise MissingWeightsError(
            f"{what} weights not found at {path}. Download the model once (e.g. `hf download <repo> "
            f"--local-dir {path}`) and pass that folder; nothing is downloaded at run time."
        )
    if not (path / "config.json").is_file():
        raise MissingWeightsError(
            f"{path} has no config.json, so it is not a transformers model folder. Pass the folder that "
            f"holds config.json and the weight files of the {what}."
        )
