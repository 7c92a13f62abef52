"""A library of styles: StyleExpertSaveStyle writes a style latent with its name and a thumbnail of its
reference images into models/styleexpert_styles; StyleExpertLoadStyle picks one and shows its thumbnail."""

from __future__ import annotations

import os

import folder_paths
import numpy as np
import torch
from comfy_api.latest import io, ui

from ..styleexpert_core.style_file import load_style, png_to_array, save_style, thumbnail_png
from .loader import file_identity
from .model_folder import STYLES_FOLDER
from .numbered_files import base_file_name, write_numbered
from .payloads import StyleLatent
from .sockets import CATEGORY, STYLE_TOOLTIP, StyleLatentSocket


def thumbnail_image(png: bytes) -> torch.Tensor:
    """The thumbnail as an IMAGE [1, H, W, 3] for the node's preview."""
    return torch.from_numpy(np.ascontiguousarray(png_to_array(png)))[None]


def save_to_library(style: StyleLatent, images: torch.Tensor, name: str) -> tuple[str, bytes]:
    """(file name in models/styleexpert_styles, thumbnail PNG); a new numbered file each time."""
    base = base_file_name(name, "the Load Style list")
    thumbnail = thumbnail_png(images)
    folder = folder_paths.get_folder_paths(STYLES_FOLDER)[0]
    path = write_numbered(folder, base, lambda p: save_style(p, style.values, base, style.encoder_id, thumbnail))
    return os.path.basename(path), thumbnail


class StyleExpertSaveStyle(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StyleExpertSaveStyle",
            display_name="StyleExpert Save Style",
            category=CATEGORY,
            description="Saves a style latent with its name and a thumbnail of its reference images into "
                        "models/styleexpert_styles (<name>_00001_.safetensors, never replacing a file), for "
                        "StyleExpert Load Style and ComfyUI's Model Library.",
            inputs=[
                StyleLatentSocket.Input("style", tooltip=STYLE_TOOLTIP),
                io.Image.Input("images", tooltip="The style's reference image(s), for the thumbnail (up to 4)."),
                io.String.Input("name", default="my_style",
                                tooltip="The style's name; files are numbered <name>_00001_.safetensors, ..."),
            ],
            outputs=[io.String.Output(display_name="style_file",
                                      tooltip="The file written in models/styleexpert_styles.")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, style: StyleLatent, images: torch.Tensor, name: str = "my_style") -> io.NodeOutput:
        written, thumbnail = save_to_library(style, images, name)
        return io.NodeOutput(written, ui={**ui.PreviewImage(thumbnail_image(thumbnail), cls=cls).as_dict(),
                                          **ui.PreviewText(f"saved models/{STYLES_FOLDER}/{written}").as_dict()})


class StyleExpertLoadStyle(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StyleExpertLoadStyle",
            display_name="StyleExpert Load Style",
            category=CATEGORY,
            description="Loads a style saved by StyleExpert Save Style from models/styleexpert_styles and shows "
                        "its thumbnail. Use it with the checkpoint it was encoded with.",
            inputs=[io.Combo.Input("style_name", options=folder_paths.get_filename_list(STYLES_FOLDER),
                                   tooltip="A saved style in models/styleexpert_styles.")],
            outputs=[StyleLatentSocket.Output(display_name="STYLE_LATENT",
                                              tooltip="The saved style latent (into Apply, Bake, Blend).")],
        )

    @classmethod
    def validate_inputs(cls, style_name: str) -> bool | str:
        if folder_paths.get_full_path(STYLES_FOLDER, style_name) is None:  # V3 combos are not checked
            return (f"'{style_name}' is not in models/{STYLES_FOLDER}; save a style with StyleExpert Save Style "
                    "(or put the file there) and refresh.")
        return True

    @classmethod
    def fingerprint_inputs(cls, style_name: str):
        path = folder_paths.get_full_path(STYLES_FOLDER, style_name)
        return file_identity(path) if path else None

    @classmethod
    def execute(cls, style_name: str) -> io.NodeOutput:
        saved = load_style(folder_paths.get_full_path_or_raise(STYLES_FOLDER, style_name))
        preview = ui.PreviewImage(thumbnail_image(saved.thumbnail_png), cls=cls) if saved.thumbnail_png else None
        return io.NodeOutput(StyleLatent(saved.latents, saved.encoder_id), ui=preview)
