"""Write procedural triplets to disk as PNGs plus a JSONL manifest (the real data path)."""

from __future__ import annotations

from pathlib import Path

from ..data.images import save_image
from ..data.triplets import write_triplets
from .styles import TripletSet

PROMPT = "restyle the image"


def write_split(root: Path, name: str, data: TripletSet, *, label_offset: int = 0) -> Path:
    """PNGs under ``root/name/`` and ``root/name.jsonl``; style labels are ``style_<k + offset>``."""
    folder = root / name
    (folder / "content").mkdir(parents=True, exist_ok=True)
    (folder / "target").mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(len(data.labels)):
        save_image(data.content[i], folder / "content" / f"{i:05d}.png")
        save_image(data.target[i], folder / "target" / f"{i:05d}.png")
    for i, label in enumerate(data.labels):
        style = f"style_{int(label) + label_offset:04d}"
        records.append({"content": f"{name}/content/{i:05d}.png", "style": f"{name}/target/{data.reference[i]:05d}.png",
                        "target": f"{name}/target/{i:05d}.png", "style_label": style, "prompt": PROMPT,
                        "style_prompt": f"procedural {style}"})
    return write_triplets(root / f"{name}.jsonl", records)
