"""Files written whole or not at all, and the one JSONL reader/writer of training, curation and evaluation.

``atomic_save`` writes to a unique temporary file in the destination's folder, then renames it
over the destination (``os.replace`` is atomic on one file system), so a crash never leaves
half a file; the temporary file is removed when writing fails.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from styleexpert_core.safe_write import write_atomically

from .errors import ManifestError, MissingFileError


def atomic_save(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a fresh temporary path next to ``path``, then move it into place
    (the core's one atomic writer; this adds the parent folder and Path arguments)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: write(Path(tmp)))
    return path


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_save(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> int:
    """One JSON object per line, written atomically; returns the number of rows."""
    lines = [json.dumps(row, ensure_ascii=False) + "\n" for row in rows]
    write_text(path, "".join(lines))
    return len(lines)


def read_jsonl(path: str | os.PathLike[str]) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; a bad line names the file and line."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"Manifest not found: {path}. Pass an existing JSONL file (one JSON object per line).")
    rows = []
    with path.open("r", encoding="utf-8") as f:
        for line_no, raw in enumerate(f, start=1):
            if raw.strip():
                rows.append((line_no, _parse_line(path, line_no, raw)))
    return rows


def _parse_line(path: Path, line_no: int, raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ManifestError(
            f"{path}, line {line_no}: not valid JSON ({e.msg} at column {e.colno}). "
            "Each line must be one complete JSON object."
        ) from None
    if not isinstance(value, dict):
        raise ManifestError(
            f"{path}, line {line_no}: expected a JSON object ({{...}}), got {type(value).__name__}."
        )
    return value
