"""Curation manifests: JSONL (``files.read_jsonl``), one object per line, each with a unique ``id``.

Fields named ``image`` or ending in ``_image`` hold file paths relative to the manifest file,
so a manifest and its images can move together. Writers re-express those paths relative to the
file they write, so derived manifests stay valid wherever they are saved.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import LabelError, ManifestError
from .files import read_jsonl, write_jsonl

ID_FIELD = "id"


def is_path_field(name: str) -> bool:
    return name == "image" or name.endswith("_image")


@dataclass(frozen=True)
class Manifest:
    """Records of one JSONL file, in file order, with the line each came from."""

    path: Path
    records: tuple[dict[str, Any], ...]
    line_numbers: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.records) != len(self.line_numbers):
            raise ValueError("records and line_numbers must have the same length")

    def __len__(self) -> int:
        return len(self.records)

    @property
    def ids(self) -> list[str]:
        return [r[ID_FIELD] for r in self.records]

    def resolve(self, value: str) -> Path:
        """A path stored in the manifest, made absolute against the manifest's folder."""
        p = Path(value)
        return p if p.is_absolute() else (self.path.parent / p)

    def column(self, field: str) -> list[Any]:
        """The value of ``field`` for every record; names the first record that lacks it."""
        values = []
        for record, line in zip(self.records, self.line_numbers):
            if field not in record:
                present = ", ".join(sorted(record)) or "none"
                raise LabelError(
                    f"{self.path}, line {line}: record {record.get(ID_FIELD)!r} has no field {field!r} "
                    f"(fields present: {present}). Add it to every line, or pass the field name that "
                    "holds this information."
                )
            values.append(record[field])
        return values

    def labels(self, field: str) -> list[str]:
        """A categorical field (style, content id, ...) as strings; lists, objects and null are refused."""
        values = self.column(field)
        for value, line in zip(values, self.line_numbers):
            if value is None or isinstance(value, (list, dict)):
                raise LabelError(
                    f"{self.path}, line {line}: field {field!r} must be a string or number label, got {value!r}."
                )
        return [str(v) for v in values]

    def path_column(self, field: str) -> list[Path]:
        return [self.resolve(str(v)) for v in self.column(field)]

    def subset(self, ids: Iterable[str]) -> "Manifest":
        """The records with these ids, in manifest order."""
        wanted = set(ids)
        keep = [i for i, r in enumerate(self.records) if r[ID_FIELD] in wanted]
        return Manifest(self.path, tuple(self.records[i] for i in keep),
                        tuple(self.line_numbers[i] for i in keep))


def read_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read a JSONL manifest; every problem names the file and line and says how to fix it."""
    path = Path(path)
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    first_line_of: dict[str, int] = {}
    for line_no, record in read_jsonl(path):
        record_id = _record_id(path, line_no, record)
        if record_id in first_line_of:
            raise ManifestError(
                f"{path}, line {line_no}: id {record_id!r} already used on line {first_line_of[record_id]}. "
                "Ids must be unique; rename or remove the duplicate."
            )
        first_line_of[record_id] = line_no
        record[ID_FIELD] = record_id
        records.append(record)
        lines.append(line_no)
    if not records:
        raise ManifestError(
            f"{path} holds no records. Expected one JSON object per line, e.g. "
            '{"id": "img_0001", "image": "images/0001.png", "style": "ukiyo-e"}.'
        )
    return Manifest(path, tuple(records), tuple(lines))


def _record_id(path: Path, line_no: int, record: Mapping[str, Any]) -> str:
    if ID_FIELD not in record:
        raise ManifestError(f'{path}, line {line_no}: missing "id". Give every record a unique string id.')
    value = record[ID_FIELD]
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise ManifestError(f"{path}, line {line_no}: id must be a non-empty string or integer, got {value!r}.")
    return str(value)


def rebase_paths(record: Mapping[str, Any], source: Manifest, destination: Path) -> dict[str, Any]:
    """Copy ``record`` with its path fields rewritten relative to ``destination``'s folder."""
    out = dict(record)
    for key, value in record.items():
        if is_path_field(key) and isinstance(value, str):
            absolute = source.resolve(value).resolve()
            out[key] = os.path.relpath(absolute, destination.parent.resolve())
    return out


def write_manifest(path: str | os.PathLike[str], records: Sequence[Mapping[str, Any]], source: Manifest) -> int:
    """Write records taken from ``source`` so their image paths still resolve from ``path``."""
    path = Path(path)
    return write_jsonl(path, (rebase_paths(r, source, path) for r in records))
