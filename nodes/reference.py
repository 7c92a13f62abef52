"""StyleExpertReferenceLatents: Kontext reference tokens in the official or MegaStyle layout.

official:  content -> reference index 1; style (optional) -> index 2 with its rows shifted by
           +64 (the official `style_offset`), so it never overlaps the content grid.
megastyle: style -> index 0 placed right of the target grid (column + target width), at the
           target's size.
Both use ComfyUI's own hooks: reference latents with method "index" on the conditioning,
and a post-input patch on the model that rewrites the position ids before RoPE. References
already on the conditioning (a ReferenceLatent node earlier in the chain) count: with method
"index" reference j (1-based, in order) gets index j, so the style's index is computed from them.
"""

from __future__ import annotations

import torch
import comfy.utils
import node_helpers
from comfy_api.latest import io, ui

from ..styleexpert_core.errors import InputError
from ..styleexpert_core.finite import check_finite_image
from .images import check_image_channels
from ..styleexpert_core.reference_layout import STYLE_ROW_OFFSET
from .payloads import LoadedStyleExpert
from .sockets import CATEGORY, StyleExpert

LAYOUTS = ["official", "megastyle"]
TRIM, KEEP_TEXT = "checkpoint's length", "keep"


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
            check_megastyle_grid(shifted[target], shifted[style])
            width = shifted[..., 2][target].max() + 1
            shifted[..., 2] += width * style
            shifted[..., 0] = torch.where(style, torch.zeros_like(shifted[..., 0]), shifted[..., 0])
        return {**inputs, "img_ids": shifted, "txt_ids": inputs["txt_ids"].float()}


def check_megastyle_grid(target_ids: torch.Tensor, style_ids: torch.Tensor) -> None:
    """MegaStyle was trained with the style exactly as large as the target, side by side."""
    target = [int(target_ids[:, axis].max()) + 1 for axis in (1, 2)]
    style = [int(style_ids[:, axis].max()) + 1 for axis in (1, 2)]
    if target != style:
        raise InputError(
            f"MegaStyle layout: the style reference is {style[0]}x{style[1]} tokens but the image being made is "
            f"{target[0]}x{target[1]}; MegaStyle needs the style at the target's size. Connect the target LATENT "
            "to StyleExpert Reference Latents (it then resizes the style), or scale the style image to the "
            "output size.")


def encode_reference(vae, image: torch.Tensor, what: str) -> torch.Tensor:
    if image.ndim != 4 or image.shape[0] == 0 or min(image.shape[1:3]) < 16:
        raise InputError(f"the {what} image is empty or smaller than 16 px; connect a real image.")
    check_image_channels(image, what)
    return vae.encode(check_finite_image(image, what)[:, :, :, :3])


def existing_references(conditioning) -> int:
    """How many reference latents the conditioning already holds (the same on every entry)."""
    counts = {len(options.get("reference_latents") or []) for _, options in conditioning}
    if len(counts) > 1:
        raise InputError(f"the conditioning's entries hold different numbers of reference latents {sorted(counts)}; "
                         "StyleExpert cannot give the style one index. Add references to all entries alike.")
    return counts.pop() if counts else 0


def check_official_order(existing: int, content, style) -> None:
    """The official layout: the content is reference 1 and the style reference 2, nothing else."""
    if existing == 0 and content is None:
        raise InputError("the official layout needs the content image (reference index 1).")
    if existing and content is not None:
        raise InputError(
            f"the conditioning already holds {existing} reference latent(s) (e.g. from a ReferenceLatent node "
            "earlier in the chain), so the content would not be reference 1 as the official layout needs. Remove "
            "that node, or leave 'content' empty to use the existing reference as the content.")
    if existing > 1 or (existing == 1 and style is None):
        raise InputError(
            f"the conditioning already holds {existing} reference latent(s); the official layout is the content "
            "(reference 1) plus an optional style (reference 2). Remove the extra ReferenceLatent nodes.")


def fit_style_to_target(style: torch.Tensor, target: dict | None, vae) -> tuple[torch.Tensor, str]:
    """(the style image at the target latent's pixel size, a note for the UI) for the MegaStyle layout."""
    if target is None:
        return style, ""
    ratio = getattr(vae, "downscale_ratio", 8)
    ratio = ratio if isinstance(ratio, int) else 8
    height, width = (int(d) * ratio for d in target["samples"].shape[-2:])
    if tuple(style.shape[1:3]) == (height, width):
        return style, ""
    resized = comfy.utils.common_upscale(style.movedim(-1, 1), width, height, "bicubic", "disabled").movedim(1, -1)
    return resized.clamp(0, 1), f"style resized from {style.shape[2]}x{style.shape[1]} to {width}x{height} (target)"


def trim_text(conditioning, expert: LoadedStyleExpert | None, mode: str) -> tuple[list, str]:
    """(conditioning with its text tokens cut to the checkpoint's training length, a note for the UI).
    ComfyUI pads Flux's T5 to 256 tokens, the release trained and runs at 128, and Flux attends to
    the padding, so the extra 128 pad tokens change the image (docs/DESIGN.md has the figure)."""
    length = expert.checkpoint.text_length if expert is not None and mode == TRIM else None
    if length is None or all(context.shape[1] <= length for context, _ in conditioning):
        return conditioning, ""
    return [[context[:, :length], options] for context, options in conditioning], f"text trimmed to {length} tokens"


def add_references(model, conditioning, vae, content, style, layout: str, target: dict | None = None):
    """(patched model, conditioning, a note for the UI)."""
    if layout not in LAYOUTS:
        raise InputError(f"layout must be one of {LAYOUTS}, got {layout!r}.")
    existing = existing_references(conditioning)
    if content is None and style is None:
        raise InputError("connect a content image, a style image, or both.")
    if layout == "official":
        check_official_order(existing, content, style)
    note = ""
    if layout == "megastyle" and style is not None:
        style, note = fit_style_to_target(style, target, vae)
    latents = []
    if content is not None:
        latents.append(encode_reference(vae, content, "content"))
    if style is not None:
        latents.append(encode_reference(vae, style, "style"))
    cond = node_helpers.conditioning_set_values(conditioning, {"reference_latents": latents}, append=True)
    cond = node_helpers.conditioning_set_values(cond, {"reference_latents_method": "index"})
    patched = model.clone()
    if style is not None:
        # With method "index", reference j (1-based, in order, those already there first) gets index j.
        patched.set_model_post_input_patch(ReferenceIdsPatch(layout, existing + len(latents)))
    return patched, cond, note


class StyleExpertReferenceLatents(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StyleExpertReferenceLatents",
            display_name="StyleExpert Reference Latents",
            category=CATEGORY,
            description="Adds the content (and optionally the style) image as Kontext reference tokens in "
                        "the official StyleExpert layout (content index 1, style index 2 with rows +64) or "
                        "MegaStyle's (style at index 0 to the right of the image, at the image's size). Scale "
                        "images to a Kontext resolution first (FluxKontextImageScale).",
            inputs=[
                io.Model.Input("model", tooltip="The FLUX.1 Kontext MODEL."),
                io.Conditioning.Input("conditioning", tooltip="The positive prompt (CLIP Text Encode)."),
                io.Vae.Input("vae", tooltip="The Flux VAE, to encode the reference images."),
                io.Image.Input("content", optional=True,
                               tooltip="Leave empty when a ReferenceLatent node earlier in the chain already "
                                       "added the content."),
                io.Image.Input("style", optional=True,
                               tooltip="Also feed the style image as tokens (the checkpoint must have been "
                                       "trained with style tokens; otherwise the style reaches the model "
                                       "only through the router)."),
                io.Combo.Input("layout", options=LAYOUTS, default="official",
                               tooltip="official: the StyleExpert release's layout; megastyle: MegaStyle's "
                                       "(style beside the image)."),
                io.Latent.Input("target", optional=True,
                                tooltip="MegaStyle layout: the LATENT being sampled. The style image is resized "
                                        "to its size, as MegaStyle was trained (without it, a style of another "
                                        "size stops sampling with an error)."),
                StyleExpert.Input("styleexpert", optional=True,
                                  tooltip="The checkpoint, to cut the text to the length it was trained with."),
                io.Combo.Input("text_length", options=[TRIM, KEEP_TEXT], default=TRIM, optional=True,
                               tooltip="ComfyUI pads Flux text to 256 tokens; the official checkpoints were "
                                       "trained with 128 and Flux attends to the padding. 'checkpoint's length' "
                                       "cuts the conditioning to the length stored in the connected checkpoint "
                                       "(128 for the official release; native files without it are kept)."),
            ],
            outputs=[io.Model.Output(tooltip="The MODEL with the style reference's position ids (unchanged "
                                             "without a style image)."),
                     io.Conditioning.Output(tooltip="The conditioning with the reference latents; connect to "
                                                    "the sampler's positive input.")],
        )

    @classmethod
    def execute(cls, model, conditioning, vae, content=None, style=None, layout: str = "official", target=None,
                styleexpert: LoadedStyleExpert | None = None, text_length: str = TRIM) -> io.NodeOutput:
        conditioning, text_note = trim_text(conditioning, styleexpert, text_length)
        patched, cond, note = add_references(model, conditioning, vae, content, style, layout, target)
        notes = "; ".join(n for n in (note, text_note) if n)
        return io.NodeOutput(patched, cond, ui=ui.PreviewText(notes) if notes else None)
