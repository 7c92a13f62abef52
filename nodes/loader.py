"""StyleExpertLoader: a checkpoint from models/styleexpert (native file, or the official pair)."""

from __future__ import annotations

import os

import comfy.utils
import folder_paths
from comfy_api.latest import io, ui

from ..styleexpert_core import load_checkpoint
from .model_folder import FOLDER
from .payloads import LoadedStyleExpert
from .sockets import CATEGORY, StyleExpert

NONE = "(none)"


def file_identity(path: str) -> tuple[int, int, int, int]:
    """What changes when a file is replaced, rewritten or cut: device, inode, size, mtime in ns."""
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


def describe(expert: LoadedStyleExpert) -> str:
    s = expert.checkpoint.summary()
    lines = [expert.name]
    if "moe" in s:
        m, g = s["moe"], s["layer_groups"]
        lines.append(f"{m['num_experts']} experts x rank {m['rank']}, top_k {m['top_k']} + shared, "
                     f"alignment {m['alignment']}")
        lines.append(f"{s['layers']} layers ({g['double_blocks']} double, {g['single_blocks']} single)")
    else:
        lines.append("no experts (style projector only)")
    lines.append("style projector: " + (f"SigLIP layers {s['projector']['layers']}" if "projector" in s else "none"))
    return "\n".join(lines)


class StyleExpertLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        files = folder_paths.get_filename_list(FOLDER)
        return io.Schema(
            node_id="StyleExpertLoader",
            display_name="StyleExpert Load Checkpoint",
            category=CATEGORY,
            description="Loads StyleExpert experts (and style projector) from models/styleexpert: a native "
                        "StyleExpert file, or the official release's MoE file plus its projector file.",
            inputs=[
                io.Combo.Input("ckpt_name", options=files, tooltip="Native StyleExpert file or official MoE file."),
                io.Combo.Input("projector_name", options=[NONE, *files], default=NONE, optional=True,
                               tooltip="Official style projector file, only when the checkpoint lacks one."),
            ],
            outputs=[StyleExpert.Output(display_name="STYLEEXPERT",
                                         tooltip="The loaded experts (and style projector), for the other "
                                                 "StyleExpert nodes.")],
        )

    @classmethod
    def validate_inputs(cls, ckpt_name: str, projector_name: str = NONE) -> bool | str:
        # V3 combos are not checked by the server: check the files exist before anything runs.
        problems = [p for p in map(check_model_file, (ckpt_name, projector_name)) if p is not True]
        return problems[0] if problems else True

    @classmethod
    def fingerprint_inputs(cls, ckpt_name: str, projector_name: str = NONE):
        # Any change on disk (also a file shortened with its mtime kept) reloads the checkpoint, which
        # then loads or says clearly what is wrong; the loaded tensors own their memory either way.
        return tuple(file_identity(p) for n in (ckpt_name, projector_name) if n != NONE
                     and (p := folder_paths.get_full_path(FOLDER, n)))

    @classmethod
    def execute(cls, ckpt_name: str, projector_name: str = NONE) -> io.NodeOutput:
        expert = load_styleexpert(ckpt_name, projector_name)
        return io.NodeOutput(expert, ui=ui.PreviewText(describe(expert)))


def check_model_file(name: str) -> bool | str:
    """validate_inputs' answer for a file picked from models/styleexpert (V3 combos are not checked
    by the server)."""
    if name != NONE and folder_paths.get_full_path(FOLDER, name) is None:
        return f"'{name}' is not in models/{FOLDER}; put the file there and refresh."
    return True


def load_styleexpert(ckpt_name: str, projector_name: str = NONE) -> LoadedStyleExpert:
    """What the loader node outputs; StyleExpert Stylize loads through this too."""
    path = folder_paths.get_full_path_or_raise(FOLDER, ckpt_name)
    projector = folder_paths.get_full_path_or_raise(FOLDER, projector_name) if projector_name != NONE else None
    # ComfyUI's --disable-mmap: read the files without memory-mapping them.
    return LoadedStyleExpert(load_checkpoint(path, projector, mmap=not comfy.utils.DISABLE_MMAP), ckpt_name)
