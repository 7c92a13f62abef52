"""StyleExpertBakeLoRA: fold one style into a plain Flux LoRA file in models/loras."""

from __future__ import annotations

import os

import folder_paths
from comfy_api.latest import io, ui

from ..styleexpert_core import Strengths, bake_style
from .apply import KEEP, overrides, routing_inputs, strength_inputs
from .numbered_files import base_file_name, write_numbered
from .payloads import LoadedStyleExpert, StyleLatent
from .sockets import CATEGORY, EXPERT_TOOLTIP, STYLE_TOOLTIP, StyleExpert, StyleLatentSocket

def lora_file_name(filename: str) -> str:
    """The base name for models/loras, or an error: no path parts, no hidden (dot) files."""
    return base_file_name(filename, "the LoRA list")


def bake_to_loras(expert: LoadedStyleExpert, style: StyleLatent, filename: str, strengths: Strengths,
                  overwrite: bool, top_k: int = 0, alignment: str = KEEP, routing_precision: str = KEEP) -> str:
    """Bake into `<name>.safetensors` when overwriting, else into the next numbered file, so each run
    with other settings keeps its own file. Returns the file name."""
    name = lora_file_name(filename)
    latents = style.check_for(expert)
    folder = folder_paths.get_folder_paths("loras")[0]

    def write(path: str) -> None:
        bake_style(expert.checkpoint, latents, path, name=expert.name, strengths=strengths,
                   **overrides(top_k, alignment, routing_precision))

    if not overwrite:
        return os.path.basename(write_numbered(folder, name, write))
    os.makedirs(folder, exist_ok=True)
    write(os.path.join(folder, f"{name}.safetensors"))
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
                StyleExpert.Input("styleexpert", tooltip=EXPERT_TOOLTIP),
                StyleLatentSocket.Input("style", tooltip=STYLE_TOOLTIP),
                io.String.Input("filename", default="styleexpert_baked",
                                tooltip="Name of the LoRA file in models/loras; each run writes the next "
                                        "numbered file, <name>_00001_.safetensors, <name>_00002_..."),
                io.Float.Input("strength", default=1.0, min=-4.0, max=4.0, step=0.05,
                               tooltip="Multiplies the whole style delta baked into the file."),
                io.Boolean.Input("overwrite", default=False,
                                 tooltip="On: write exactly <name>.safetensors, replacing it. Off: a new "
                                         "numbered file each run, never replacing one."),
                # Optional, so workflows saved before these inputs existed load unchanged.
                *strength_inputs(optional=True),
                *routing_inputs(optional=True),
            ],
            outputs=[io.String.Output(display_name="lora_name",
                                      tooltip="The file written in models/loras (the LoRA loaders list it "
                                              "once the run ends).")],
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
