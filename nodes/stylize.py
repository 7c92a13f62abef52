"""StyleExpertStylize: the whole basic chain in one node, for artists. It runs the detailed nodes'
own code (load, encode, reference latents, apply in merge mode), so the result is exactly theirs."""

from __future__ import annotations

import folder_paths
import torch
from comfy_api.latest import io

from ..styleexpert_core import Strengths
from ..styleexpert_core.errors import InputError
from .apply import apply_styleexpert
from .encode import encode_styles
from .loader import check_model_file, file_identity, load_styleexpert
from .model_folder import FOLDER
from .payloads import LoadedStyleExpert, StyleLatent
from .reference import TRIM, add_references, trim_text
from .sockets import CATEGORY

_last_loaded: dict[tuple, LoadedStyleExpert] = {}  # one checkpoint: a new strength must not reread the file


def cached_styleexpert(ckpt_name: str) -> LoadedStyleExpert:
    """The checkpoint, reread only when another file is picked or the file changed on disk."""
    key = (ckpt_name, file_identity(folder_paths.get_full_path_or_raise(FOLDER, ckpt_name)))
    if key not in _last_loaded:
        _last_loaded.clear()
        _last_loaded[key] = load_styleexpert(ckpt_name)
    return _last_loaded[key]


def stylize(model, clip_vision, vae, conditioning, content: torch.Tensor, style: torch.Tensor,
            expert: LoadedStyleExpert, strength: float) -> tuple:
    """(MODEL, CONDITIONING, LATENT) as Encode Style (mean) -> Apply (merge) -> Reference Latents
    (official layout, the checkpoint's text length) give them, plus an empty latent of the content's size."""
    if expert.checkpoint.projector is None:
        raise InputError(f"'{expert.name}' has no style projector (an official MoE file alone). Convert the official "
                         "pair into one native file (python -m styleexpert_core convert-official), or use StyleExpert "
                         "Load Checkpoint with its projector_name and the detailed nodes.")
    latents = encode_styles(expert, clip_vision, style).mean(dim=0, keepdim=True)
    styled = apply_styleexpert(model, expert, StyleLatent(latents, expert.encoder_id), "merge", Strengths(strength))
    conditioning, _ = trim_text(conditioning, expert, TRIM)
    patched, conditioning, _ = add_references(styled, conditioning, vae, content, None, "official")
    content_latent = conditioning[0][1]["reference_latents"][-1]
    return patched, conditioning, {"samples": torch.zeros_like(content_latent)}


class StyleExpertStylize(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StyleExpertStylize",
            display_name="StyleExpert Stylize",
            category=CATEGORY,
            description="One node for the whole style transfer: redraws the content image in the style of the "
                        "style image(s). Connect its three outputs to a KSampler (cfg 1, denoise 1; FluxGuidance "
                        "3.5 on the prompt). The detailed nodes (Load Checkpoint, Encode Style, Apply, Reference "
                        "Latents) do the same with every control exposed.",
            inputs=[
                io.Model.Input("model", tooltip="FLUX.1 Kontext [dev] from Load Diffusion Model."),
                io.ClipVision.Input("clip_vision", tooltip="SigLIP so400m-patch14-384 from Load CLIP Vision."),
                io.Vae.Input("vae", tooltip="The Flux VAE (ae.safetensors) from Load VAE."),
                io.Conditioning.Input("conditioning",
                                      tooltip="The prompt (CLIP Text Encode, then FluxGuidance 3.5), e.g. 'Restyle "
                                              "the image in the style of the reference'."),
                io.Image.Input("content", tooltip="The picture to restyle (one image). Scale it with "
                                                  "FluxKontextImageScale first for the best results."),
                io.Image.Input("style", tooltip="The style reference image; several images (a batch) are "
                                                "averaged into one style."),
                io.Combo.Input("ckpt_name", options=folder_paths.get_filename_list(FOLDER),
                               tooltip="The StyleExpert checkpoint in models/styleexpert (a native file, with its "
                                       "style projector)."),
                io.Float.Input("strength", default=1.0, min=0.0, max=2.0, step=0.05,
                               tooltip="How strongly the style is applied: 1 as trained, 0 leaves the model "
                                       "as it was."),
            ],
            outputs=[io.Model.Output(tooltip="The model with the style; connect to KSampler's model."),
                     io.Conditioning.Output(tooltip="The prompt with the content as Kontext reference; connect to "
                                                    "KSampler's positive (ConditioningZeroOut of it as negative)."),
                     io.Latent.Output(tooltip="An empty latent of the content's size; connect to KSampler's "
                                              "latent_image (denoise 1).")],
        )

    @classmethod
    def validate_inputs(cls, ckpt_name: str) -> bool | str:
        return check_model_file(ckpt_name)

    @classmethod
    def fingerprint_inputs(cls, ckpt_name: str, **_):
        # The file's identity: a checkpoint replaced on disk reruns the node.
        path = folder_paths.get_full_path(FOLDER, ckpt_name)
        return file_identity(path) if path else None

    @classmethod
    def execute(cls, model, clip_vision, vae, conditioning, content: torch.Tensor, style: torch.Tensor,
                ckpt_name: str, strength: float = 1.0) -> io.NodeOutput:
        return io.NodeOutput(*stylize(model, clip_vision, vae, conditioning, content, style,
                                      cached_styleexpert(ckpt_name), strength))
