"""StyleExpertReferenceLatents: Kontext reference tokens in the official or MegaStyle layout.

official:  content -> reference index 1; style (optional) -> index 2 with its rows shifted by
           +64 (the official `style_offset`), so it never overlaps the content grid.
megastyle: style -> index 0 placed right of the target grid (column + target width).
Both use ComfyUI's own hooks: reference latents with method "index" on the conditioning,
and a post-input patch on the model that rewrites the position ids before RoPE.
"""

from __future__ import annotations

import torch
import node_helpers
from comfy_api.latest import io

from ..styleexpert_core.errors import InputError
from ..styleexpert_core.finite import check_finite_image
from .images import check_image_channels
from ..styleexpert_core.reference_layout import STYLE_ROW_OFFSET
from .sockets import CATEGORY

LAYOUTS = ["official", "megastyle"]


class ReferenceIdsPatch:
    """Post-input patch: moves the style reference's position ids (token units, before RoPE)."""

    def __init__(self, layout: str, style_index: int) -> None:
        self.layout = layout
        self.style_index = style_index

    def __call__(self, inputs: dict) -> dict:
        ids = inputs["img_ids"]
        style = ids[..., 0] == self.style_index
        if not bool(style.any()):
            return inputs
        shifted = ids.float()  # float32 keeps integer ids exact where bf16 ids would round
        if self.layout == "official":
            shifted[..., 1] += STYLE_ROW_OFFSET * style
        else:
            target = ids[..., 0] == 0
            width = shifted[..., 2][target].max() + 1
            shifted[..., 2] += width * style
            shifted[..., 0] = torch.where(style, torch.zeros_like(shifted[..., 0]), shifted[..., 0])
        return {**inputs, "img_ids": shifted, "txt_ids": inputs["txt_ids"].float()}


def encode_reference(vae, image: torch.Tensor, what: str) -> torch.Tensor:
    if image.ndim != 4 or image.shape[0] == 0 or min(image.shape[1:3]) < 16:
        raise InputError(f"the {what} image is empty or smaller than 16 px; connect a real image.")
    check_image_channels(image, what)
    return vae.encode(check_finite_image(image, what)[:, :, :, :3])


def add_references(model, conditioning, vae, content, style, layout: str):
    if layout not in LAYOUTS:
        raise InputError(f"layout must be one of {LAYOUTS}, got {layout!r}.")
    if content is None and style is None:
        raise InputError("connect a content image, a style image, or both.")
    if layout == "official" and content is None:
        raise InputError("the official layout needs the content image (reference index 1).")
    latents = []
    if content is not None:
        latents.append(encode_reference(vae, content, "content"))
    if style is not None:
        latents.append(encode_reference(vae, style, "style"))
    cond = node_helpers.conditioning_set_values(conditioning, {"reference_latents": latents}, append=True)
    cond = node_helpers.conditioning_set_values(cond, {"reference_latents_method": "index"})
    patched = model.clone()
    if style is not None:
        # With method "index", reference j (1-based, in order) gets index j.
        patched.set_model_post_input_patch(ReferenceIdsPatch(layout, len(latents)))
    return patched, cond


class StyleExpertReferenceLatents(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StyleExpertReferenceLatents",
            display_name="StyleExpert Reference Latents",
            category=CATEGORY,
            description="Adds the content (and optionally the style) image as Kontext reference tokens in "
                        "the official StyleExpert layout (content index 1, style index 2 with rows +64) or "
                        "MegaStyle's (style at index 0 to the right of the image). Scale images to a Kontext "
                        "resolution first (FluxKontextImageScale).",
            inputs=[
                io.Model.Input("model"),
                io.Conditioning.Input("conditioning"),
                io.Vae.Input("vae"),
                io.Image.Input("content", optional=True),
                io.Image.Input("style", optional=True,
                               tooltip="Also feed the style image as tokens (the checkpoint must have been "
                                       "trained with style tokens; otherwise the style reaches the model "
                                       "only through the router)."),
                io.Combo.Input("layout", options=LAYOUTS, default="official"),
            ],
            outputs=[io.Model.Output(), io.Conditioning.Output()],
        )

    @classmethod
    def execute(cls, model, conditioning, vae, content=None, style=None, layout: str = "official") -> io.NodeOutput:
        return io.NodeOutput(*add_references(model, conditioning, vae, content, style, layout))
