"""Working with sets of style references: StyleExpertLoadStyleFolder (every image of a folder under
ComfyUI's input directory as one IMAGE batch) and StyleExpertStyleSimilarity (how alike they are,
before anything is sampled)."""

from __future__ import annotations

import os

import folder_paths
import numpy as np
import torch
from comfy_api.latest import io, ui
from PIL import Image, ImageOps

from ..styleexpert_core.errors import InputError
from ..styleexpert_core.similarity_chart import cosine_matrix, similarity_chart, similarity_summary
from .encode import image_features
from .payloads import LoadedStyleExpert
from .sockets import CATEGORY, StyleExpert

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
SPACES = ["style latent", "SigLIP embedding"]


def input_subfolders() -> list[str]:
    """Folders under the input directory (relative, '/'-separated), for the folder dropdown."""
    root = folder_paths.get_input_directory()
    found = []
    for here, dirs, _ in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.relpath(os.path.join(here, d), root).replace(os.sep, "/") for d in dirs]
    return found


def folder_images(folder: str) -> list[str]:
    """Paths of the images directly in `folder` (relative to the input directory), sorted by name;
    a clear error when the folder is outside the input directory, missing or has no images."""
    root = os.path.realpath(folder_paths.get_input_directory())
    path = os.path.realpath(os.path.join(root, folder))
    if os.path.commonpath([root, path]) != root:
        raise InputError(f"'{folder}' is outside ComfyUI's input directory; pick a folder inside {root}.")
    if not os.path.isdir(path):
        raise InputError(f"'{folder}' is not a folder in ComfyUI's input directory ({root}); create it there and "
                         "put the style images in it.")
    files = sorted(f for f in os.listdir(path) if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS)
    if not files:
        raise InputError(f"'{folder}' holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); put the style "
                         "reference images in it.")
    return [os.path.join(path, f) for f in files]


def load_batch(paths: list[str], size: int) -> torch.Tensor:
    """An IMAGE [N, size, size, 3]: each image upright (EXIF), RGB, stretched to a square the way the
    style encoder sees it (SigLIP without crop)."""
    images = []
    for path in paths:
        try:
            with Image.open(path) as opened:
                pil = ImageOps.exif_transpose(opened).convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
        except OSError as error:
            raise InputError(f"'{os.path.basename(path)}' could not be read as an image ({error}); remove or "
                             "replace it.") from error
        images.append(torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0))
    return torch.stack(images)


class StyleExpertLoadStyleFolder(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StyleExpertLoadStyleFolder",
            display_name="StyleExpert Load Style Folder",
            category=CATEGORY,
            description="Loads every image of a folder under ComfyUI's input directory (sorted by name) as one "
                        "IMAGE batch for Encode Style: mean mode makes one style of the whole set, per image "
                        "one style each.",
            inputs=[
                io.Combo.Input("folder", options=input_subfolders(),
                               tooltip="A folder inside ComfyUI's input directory holding the style images."),
                io.Int.Input("size", default=512, min=64, max=2048, step=8,
                             tooltip="Every image is stretched to size x size so they stack into one batch; the "
                                     "style encoder stretches to a square anyway (SigLIP, no crop)."),
                io.Int.Input("max_images", default=64, min=1, max=1024,
                             tooltip="Load at most this many images (the first by name)."),
            ],
            outputs=[io.Image.Output(display_name="images", tooltip="The folder's images as one batch."),
                     io.String.Output(display_name="names",
                                      tooltip="The file names, one per line, in batch order (labels for Style "
                                              "Similarity)."),
                     io.Int.Output(display_name="count", tooltip="How many images were loaded.")],
        )

    @classmethod
    def validate_inputs(cls, folder: str, **_) -> bool | str:
        try:
            folder_images(folder)
        except InputError as error:
            return str(error)
        return True

    @classmethod
    def fingerprint_inputs(cls, folder: str, **_):
        # Adding, removing or replacing an image reloads the batch.
        try:
            return tuple((p, os.stat(p).st_mtime_ns, os.stat(p).st_size) for p in folder_images(folder))
        except InputError:
            return None

    @classmethod
    def execute(cls, folder: str, size: int = 512, max_images: int = 64) -> io.NodeOutput:
        paths = folder_images(folder)[:max_images]
        names = "\n".join(os.path.basename(p) for p in paths)
        return io.NodeOutput(load_batch(paths, size), names, len(paths),
                             ui=ui.PreviewText(f"{len(paths)} style images from {folder}"))


def parse_names(names: str, count: int) -> list[str]:
    """One label per image from newline-separated names, or the image numbers when none are given."""
    labels = [line.strip() for line in names.splitlines() if line.strip()]
    if not labels:
        return [f"image {i + 1}" for i in range(count)]
    if len(labels) != count:
        raise InputError(f"names has {len(labels)} line(s) for {count} image(s); give one name per image (e.g. "
                         "the names output of Load Style Folder) or leave it empty.")
    return labels


class StyleExpertStyleSimilarity(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StyleExpertStyleSimilarity",
            display_name="StyleExpert Style Similarity",
            category=CATEGORY,
            description="Before sampling: how alike a batch of style references is, as a labelled cosine-"
                        "similarity matrix, its mean and a one-line summary (closest pair, most distant pair, "
                        "the odd one out). Drop or separate references that pull apart.",
            inputs=[
                StyleExpert.Input("styleexpert", tooltip="The checkpoint whose style encoder makes the latents."),
                io.ClipVision.Input("clip_vision", tooltip="SigLIP so400m-patch14-384 from Load CLIP Vision."),
                io.Image.Input("images", tooltip="Two or more style reference images as one batch."),
                io.Combo.Input("space", options=SPACES, default=SPACES[0],
                               tooltip="style latent: what routes the experts (the style as StyleExpert sees "
                                       "it). SigLIP embedding: the whole picture, content included."),
                io.String.Input("names", default="", multiline=True, optional=True,
                                tooltip="One label per image, one per line (connect Load Style Folder's names); "
                                        "empty numbers them."),
            ],
            outputs=[io.Image.Output(display_name="matrix", tooltip="The labelled similarity matrix."),
                     io.Float.Output(display_name="mean_similarity",
                                     tooltip="Mean cosine similarity between different references (1 = alike)."),
                     io.String.Output(display_name="summary", tooltip="The one-line summary.")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, styleexpert: LoadedStyleExpert, clip_vision, images: torch.Tensor, space: str = SPACES[0],
                names: str = "") -> io.NodeOutput:
        if space not in SPACES:  # V3 combos are not validated by the server
            raise InputError(f"space must be one of {SPACES}, got {space!r}.")
        latents, pooled = image_features(styleexpert, clip_vision, images,
                                         "no style image: connect a batch of style reference images.")
        labels = parse_names(names, images.shape[0])
        matrix = cosine_matrix(latents if space == SPACES[0] else pooled)
        thumbs = (images[..., :3].clamp(0, 1) * 255).to(torch.uint8).cpu().numpy()
        chart = similarity_chart(matrix, labels, thumbs, space=space)
        image = torch.from_numpy(chart.astype(np.float32) / 255.0)[None]
        n = matrix.shape[0]
        mean = float(matrix[~np.eye(n, dtype=bool)].mean()) if n > 1 else 1.0
        summary = similarity_summary(matrix, labels)
        return io.NodeOutput(image, mean, summary, ui={**ui.PreviewImage(image, cls=cls).as_dict(),
                                                       **ui.PreviewText(summary).as_dict()})
