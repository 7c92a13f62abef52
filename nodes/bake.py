"""StyleExpertBakeLoRA: fold one style into a plain Flux LoRA file in models/loras."""

from __future__ import annotations

import os
import re

import folder_paths
from comfy_api.latest import io, ui

from ..styleexpert_core import Strengths, bake_style
from ..styleexpert_core.errors import InputError
from .apply import KEEP, overrides, routing_inputs, strength_inputs
from .payloads import LoadedStyleExpert, StyleLatent
from .sockets import CATEGORY, StyleExpert, StyleLatentSocket

SAFE_NAME = re.compile(r"[\w\-. ]+")  # used with fullmatch: no trailing newline slips through


def lora_file_name(filename: str) -> str:
    """The base name for models/loras, or an error: no path parts, no hidden (dot) files."""
    name = filename.strip().removesuffix(".safetensors")
    if not name or not SAFE_NAME.fullmatch(name):
        raise InputError(f"{filename!r} is not a usable file name: use letters, digits, spaces, '-', '_' and '.'.")
    if name.startswith("."):
        raise InputError(f"{filename!r} starts with '.', which makes a hidden file the LoRA list never shows; "
                         "start the name with a letter or digit.")
    return name


def bake_to_loras(expert: LoadedStyleExpert, style: StyleLatent, filename: str, strengths: Strengths,
                  overwrite: bool, top_k: int = 0, alignment: str = KEEP, routing_precision: str = KEEP) -> str:
    name = lora_file_name(filename)
    latents = style.check_for(expert)
    folder = folder_paths.get_folder_paths("loras")[0]
    path = os.path.join(folder, f"{name}.safetensors")
    if os.path.exists(path) and not overwrite:
        raise InputError(f"{path} already exists; enable overwrite or choose another name.")
    os.makedirs(folder, exist_ok=True)
    bake_style(expert.checkpoint, latents, path, name=expert.name, strengths=strengths,
               **overrides(top_k, alignment, routing_precision))
    return f"{name}.safetensors"


class StyleExpertBakeLoRA(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StyleExpertBakeLoRA",
            display_name="StyleExpert Bake LoRA",
            category=CATEGORY,
            description="Writes the experts of one style as a plain Flux LoRA into models/loras, for the stock "
                        "LoRA loaders (fp8/GGUF models, other tools). Same result as Apply in merge mode with "
                        "the same strengths, top_k and alignment.",
            inputs=[
                StyleExpert.Input("styleexpert"),
                StyleLatentSocket.Input("style"),
                io.String.Input("filename", default="styleexpert_baked"),
                io.Float.Input("strength", default=1.0, min=-4.0, max=4.0, step=0.05),
                io.Boolean.Input("overwrite", default=False),
                # Optional, so workflows saved before these inputs existed load unchanged.
                *strength_inputs(optional=True),
                *routing_inputs(optional=True),
            ],
            outputs=[io.String.Output(display_name="lora_name")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, styleexpert: LoadedStyleExpert, style: StyleLatent, filename: str, strength: float = 1.0,
                overwrite: bool = False, shared_strength: float = 1.0, routed_strength: float = 1.0,
                double_blocks: float = 1.0, single_blocks: float = 1.0, top_k: int = 0,
                alignment: str = KEEP, routing_precision: str = KEEP) -> io.NodeOutput:
        strengths = Strengths(strength, shared_strength, routed_strength, double_blocks, single_blocks)
        written = bake_to_loras(styleexpert, style, filename, strengths, overwrite, top_k, alignment,
                                routing_precision)
        return io.NodeOutput(written, ui=ui.PreviewText(f"wrote models/loras/{written}"))
