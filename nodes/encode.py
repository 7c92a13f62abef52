"""Making style latents: StyleExpertEncodeStyle (style images through SigLIP and the style projector) and
StyleExpertBlendStyles (a weighted mix of style latents)."""

from __future__ import annotations

import torch
import comfy.utils
from comfy_api.latest import io

from ..styleexpert_core.errors import InputError
from ..styleexpert_core.finite import check_finite_image
from .images import check_image_channels
from .payloads import LoadedStyleExpert, StyleLatent
from .sockets import CATEGORY, EXPERT_TOOLTIP, StyleExpert, StyleLatentSocket

ENCODE_MODES = ["mean", "per image"]
CHUNK = 4  # all hidden states of one so400m image are ~91 MB in fp32


def siglip_hidden_states(clip_vision, images: torch.Tensor) -> torch.Tensor:
    """All hidden states [B, L, T, W] with HF-style preprocessing (resize to square, no crop)."""
    if not getattr(clip_vision, "return_all_hidden_states", False):
        raise InputError(
            "the CLIP vision model is not SigLIP: StyleExpert needs siglip-so400m-patch14-384 "
            "(load it with Load CLIP Vision), whose hidden layers the style projector reads.")
    with torch.inference_mode():  # as under ComfyUI's executor, also when called directly
        return clip_vision.encode_image(images, crop=False)["all_hidden_states"]


def image_features(expert: LoadedStyleExpert, clip_vision, images: torch.Tensor,
                   empty_message: str, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(style latents [B, cond_dim], pooled last-layer SigLIP embeddings [B, W]) from one SigLIP
    pass, in chunks with a cancellable progress bar (`progress`: only inside a running prompt)."""
    if images is None or images.ndim != 4 or images.shape[0] == 0 or min(images.shape[1:3]) == 0:
        raise InputError(empty_message)
    check_finite_image(check_image_channels(images, "style"), "style")
    projector = expert.projector()
    bar = comfy.utils.ProgressBar(images.shape[0]) if progress else None
    styles, pooled = [], []
    for start in range(0, images.shape[0], CHUNK):
        chunk = images[start:start + CHUNK]
        hidden = siglip_hidden_states(clip_vision, chunk).float().cpu()
        with torch.inference_mode():
            styles.append(projector(hidden).float())
        pooled.append(hidden[:, -1].mean(dim=1))  # last layer, mean over tokens
        if bar is not None:
            bar.update(chunk.shape[0])  # also a cancel point
    return torch.cat(styles), torch.cat(pooled)


def encode_styles(expert: LoadedStyleExpert, clip_vision, images: torch.Tensor, progress: bool = True) -> torch.Tensor:
    """[B, cond_dim] style latents, one per image."""
    return image_features(expert, clip_vision, images, "no style image: connect at least one non-empty IMAGE.",
                          progress)[0]


class StyleExpertEncodeStyle(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StyleExpertEncodeStyle",
            display_name="StyleExpert Encode Style",
            category=CATEGORY,
            description="Encodes style reference image(s) into the style latent that routes the experts "
                        "(SigLIP layers -2/-11/-20 through the checkpoint's style projector).",
            inputs=[
                StyleExpert.Input("styleexpert", tooltip=EXPERT_TOOLTIP),
                io.ClipVision.Input("clip_vision", tooltip="SigLIP so400m-patch14-384 from Load CLIP Vision."),
                io.Image.Input("images", tooltip="One or more style reference images."),
                io.Combo.Input("mode", options=ENCODE_MODES, default="mean",
                               tooltip="mean: one latent for all images; per image: one latent each "
                                       "(for dynamic mode batches that mix styles)."),
            ],
            outputs=[StyleLatentSocket.Output(display_name="STYLE_LATENT",
                                              tooltip="The style latent that routes the experts (into Apply, Bake, "
                                                      "Save Style).")],
        )

    @classmethod
    def execute(cls, styleexpert: LoadedStyleExpert, clip_vision, images: torch.Tensor,
                mode: str = "mean") -> io.NodeOutput:
        if mode not in ENCODE_MODES:  # V3 combos are not validated by the server
            raise InputError(f"mode must be one of {ENCODE_MODES}, got {mode!r}.")
        latents = encode_styles(styleexpert, clip_vision, images)
        if mode == "mean":
            latents = latents.mean(dim=0, keepdim=True)
        return io.NodeOutput(StyleLatent(latents, styleexpert.encoder_id))


class StyleExpertBlendStyles(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        weight = {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.05}
        return io.Schema(
            node_id="StyleExpertBlendStyles",
            display_name="StyleExpert Blend Styles",
            category=CATEGORY,
            description="Weighted interpolation of two to four style latents (weights are normalised to sum 1).",
            inputs=[
                *(slot for name in "abcd" for slot in blend_slot(name, optional=name in "cd", weight=weight)),
            ],
            outputs=[StyleLatentSocket.Output(display_name="STYLE_LATENT", tooltip="The weighted mix of the styles.")],
        )

    @classmethod
    def execute(cls, style_a: StyleLatent, weight_a: float, style_b: StyleLatent, weight_b: float,
                style_c: StyleLatent | None = None, weight_c: float = 1.0, style_d: StyleLatent | None = None,
                weight_d: float = 1.0) -> io.NodeOutput:
        pairs = [(s, w) for s, w in ((style_a, weight_a), (style_b, weight_b), (style_c, weight_c),
                                     (style_d, weight_d)) if s is not None]
        return io.NodeOutput(blend_styles(pairs))


def blend_slot(name: str, optional: bool, weight: dict) -> tuple:
    """One style input of Blend Styles and its weight."""
    return (StyleLatentSocket.Input(f"style_{name}", optional=optional, tooltip=f"Style {name.upper()}" + (
                " (optional)." if optional else ".")),
            io.Float.Input(f"weight_{name}", optional=optional, tooltip=f"Weight of style {name.upper()}; the "
                           "weights are normalised to sum 1.", **weight))


def blend_styles(pairs: list[tuple[StyleLatent, float]]) -> StyleLatent:
    encoders = {s.encoder_id for s, _ in pairs}
    if len(encoders) > 1:
        raise InputError("these style latents come from different style projectors; blend latents encoded "
                         "with the same StyleExpert checkpoint.")
    for name, (s, _) in zip("abcd", pairs):
        if s.values.shape[0] != 1:
            raise InputError(f"style_{name} holds {s.values.shape[0]} latents; blend takes one latent per input "
                             "(encode with mode 'mean').")
    if len({s.values.shape[1] for s, _ in pairs}) > 1:
        raise InputError("style latents of different sizes cannot be blended.")
    total = sum(w for _, w in pairs)
    if total <= 0:
        raise InputError("blend weights sum to 0; give at least one style a positive weight.")
    values = sum(s.values * (w / total) for s, w in pairs)
    return StyleLatent(values, pairs[0][0].encoder_id)
