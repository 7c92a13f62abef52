"""Copies the example workflows' images into ComfyUI's input folder, so the templates' Load Image
nodes find their files (and pass validation) on the first run."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

log = logging.getLogger("styleexpert")
EXAMPLE_IMAGES = Path(__file__).resolve().parents[1] / "example_workflows" / "images"


def copy_example_images(input_dir: str | Path, source: Path = EXAMPLE_IMAGES) -> list[str]:
    """Copies each example image the input folder lacks; never replaces a file already there.

    Returns the names copied. A folder that cannot be written is logged, not raised: the pack
    must still load (the templates then ask the user to pick images).
    """
    input_dir = Path(input_dir)
    copied = []
    try:
        input_dir.mkdir(parents=True, exist_ok=True)
        for image in sorted(source.glob("*.png")):
            target = input_dir / image.name
            if not target.exists():
                shutil.copyfile(image, target)
                copied.append(image.name)
    except OSError as error:
        log.warning("StyleExpert: could not copy the example images into %s (%s); the example workflows "
                    "will ask for images instead.", input_dir, error)
    return copied
