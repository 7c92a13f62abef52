"""Writing a file so that a failure leaves nothing behind and nothing else is touched."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from .errors import StyleExpertError


def _new_temp_file(path: Path) -> Path:
    """A file created exclusively next to `path` (never an existing one), with the umask's permissions."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def write_atomically(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call write(temp_path) on a new, uniquely named file in the folder of `path`, then rename it
    into place (atomic within one folder). The temp file is removed again if anything fails."""
    path = Path(path)
    if path.is_dir():
        raise StyleExpertError(f"{path} is a folder; give the name of a file to write.")
    tmp = _new_temp_file(path)
    try:
        write(str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def reserve_new_file(path: str | os.PathLike) -> bool:
    """Create `path` empty, exclusively: True if this call created it, False if it already existed.
    A writer that then replaces it atomically never replaces anyone else's file."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        return True
    except FileExistsError:
        return False
