"""The training triplet manifest: JSONL (``files.read_jsonl``), paths relative to the manifest file.

    {"content": "content/0001.png", "style": "styles/ukiyoe_03.png",
     "target": "targets/0001_ukiyoe.png", "style_label": "ukiyoe",
     "prompt": "a harbour at dusk", "style_prompt": "ukiyo-e woodblock print"}

Required: content, style, target (image paths), style_label (a name; images sharing it are
positives for the style encoder), prompt (the text the generator sees). Optional:
style_prompt (a sentence describing the style, for the image-text loss; defaults to the
label) and id (free text, for your own bookkeeping). Any other key is an error, so a typo
such as "traget" is caught rather than silently ignored.

Every problem is reported as ``<file>, line <n>, field '<name>': expected ..., got ...``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import ManifestError
from .files import read_jsonl, write_jsonl

IMAGE_FIELDS = ("content", "style", "target")
TEXT_FIELDS = ("style_label", "prompt")
OPTIONAL_FIELDS = ("style_prompt", "id")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass(frozen=True)
class Triplet:
    content: Path
    style: Path
    target: Path
    style_label: str
    prompt: str
    style_prompt: str
    line: int


def _where(path: Path, line: int, field: str | None = None) -> str:
    return f"{path}, line {line}" + (f", field '{field}'" if field else "")


def _triplet(path: Path, number: int, record: dict, check_files: bool) -> Triplet:
    unknown = sorted(set(record) - set(IMAGE_FIELDS + TEXT_FIELDS + OPTIONAL_FIELDS))
    if unknown:
        raise ManifestError(
            f"{_where(path, number, unknown[0])}: unknown field; expected only "
            f"{', '.join(IMAGE_FIELDS + TEXT_FIELDS + OPTIONAL_FIELDS)}.")
    for field in IMAGE_FIELDS + TEXT_FIELDS:
        if field not in record:
            raise ManifestError(f"{_where(path, number, field)}: missing; every line needs "
                                f"{', '.join(IMAGE_FIELDS + TEXT_FIELDS)}.")
    for field in IMAGE_FIELDS + TEXT_FIELDS + OPTIONAL_FIELDS:
        value = record.get(field, "")
        if not isinstance(value, str):
            raise ManifestError(f"{_where(path, number, field)}: expected a string, got {json.dumps(value)}.")
    if not record["style_label"].strip():
        raise ManifestError(f"{_where(path, number, 'style_label')}: expected a non-empty style name, got \"\".")
    images = {}
    for field in IMAGE_FIELDS:
        rel = record[field]
        if not rel or Path(rel).is_absolute():
            raise ManifestError(f"{_where(path, number, field)}: expected an image path relative to the "
                                f"manifest's folder, got {json.dumps(rel)}.")
        if Path(rel).suffix.lower() not in IMAGE_SUFFIXES:
            raise ManifestError(f"{_where(path, number, field)}: expected an image file "
                                f"({', '.join(IMAGE_SUFFIXES)}), got {json.dumps(rel)}.")
        full = path.parent / rel
        if check_files and not full.is_file():
            raise ManifestError(f"{_where(path, number, field)}: expected an existing file, "
                                f"{full} does not exist.")
        images[field] = full
    return Triplet(**images, style_label=record["style_label"], prompt=record["prompt"],
                   style_prompt=record.get("style_prompt") or record["style_label"], line=number)


def read_triplets(path: str | Path, *, check_files: bool = True) -> list[Triplet]:
    """All triplets of a JSONL manifest; blank lines are skipped; the first bad line raises."""
    path = Path(path)
    triplets = [_triplet(path, number, record, check_files) for number, record in read_jsonl(path)]
    if not triplets:
        raise ManifestError(f"{path}: the manifest has no triplets.")
    return triplets


def write_triplets(path: str | Path, records: list[dict[str, str]]) -> Path:
    """Write records (dicts with the manifest fields, paths relative to ``path``'s folder)."""
    write_jsonl(path, records)
    return Path(path)


@dataclass(frozen=True)
class StyleImage:
    """One stylised image (a target or a style reference) with its style."""

    path: Path
    style_label: str
    style_prompt: str


def style_images(triplets: list[Triplet]) -> list[StyleImage]:
    """Unique stylised images of a manifest (targets and references), in first-seen order."""
    seen: dict[Path, StyleImage] = {}
    for t in triplets:
        for p in (t.target, t.style):
            if p not in seen:
                seen[p] = StyleImage(p, t.style_label, t.style_prompt)
            elif seen[p].style_label != t.style_label:
                raise ManifestError(
                    f"line {t.line}: image {p} is labelled '{t.style_label}' here but "
                    f"'{seen[p].style_label}' on an earlier line; an image has one style.")
    return list(seen.values())
