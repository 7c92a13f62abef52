"""StyleExpertMetrics: scores for stylised outputs, and the annotated side-by-side sheet it shows."""

from __future__ import annotations

import folder_paths
import numpy as np
import torch
from comfy_api.latest import io, ui
from PIL import Image, ImageDraw

from ..styleexpert_core.drawing import ACCENT, BACKGROUND, MUTED, TEXT, draw_lines, font, line_height, wrap
from ..styleexpert_core.errors import InputError
from ..styleexpert_core.formats import read_tensor_file
from ..styleexpert_core.metrics import (aesthetic_mlp_from_state_dict, aesthetic_scores, content_fidelity,
                                        style_similarity)
from .encode import image_features
from .loader import NONE
from .model_folder import FOLDER
from .payloads import LoadedStyleExpert
from .predictor_files import aesthetic_predictors
from .sockets import CATEGORY, EXPERT_TOOLTIP, StyleExpert

THUMB = 224
MEANINGS = {
    "style": "style: cosine similarity of the output's style latent to the style images' mean latent, in the "
             "StyleExpert encoder space (what routes the experts). 1 = the same style; higher is closer.",
    "content": "content: cosine similarity of the output's and the content image's SigLIP embeddings (mean of "
               "the last layer). 1 = the same picture; it drops as the style changes the content.",
    "aesthetic": "aesthetic: the LAION-style aesthetic predictor's score over CLIP embeddings (about 1 to 10; "
                 "higher looks better to it).",
}


def _thumb(image: torch.Tensor) -> Image.Image:
    arr = (image[..., :3].detach().clamp(0, 1).cpu().numpy() * 255).astype(np.uint8)
    pil = Image.fromarray(arr)
    pil.thumbnail((THUMB, THUMB))
    canvas = Image.new("RGB", (THUMB, THUMB), (32, 32, 32))
    canvas.paste(pil, ((THUMB - pil.width) // 2, (THUMB - pil.height) // 2))
    return canvas


def metrics_sheet(outputs: torch.Tensor, style: torch.Tensor, content: torch.Tensor | None,
                  scores: dict[str, torch.Tensor]) -> torch.Tensor:
    """An IMAGE [1, H, W, 3]: one row per output, [content] | style | output with each output's scores
    under it, then one line per score saying what it means. `scores` maps "style"/"content"/"aesthetic"
    to per-output values."""
    columns = (["content"] if content is not None else []) + ["style", "output"]
    width = max(THUMB * len(columns), 560)
    row_h = THUMB + 2 * line_height() + 6
    notes = [line for name in scores for line in wrap(MEANINGS[name], width - 16)]
    height = row_h * outputs.shape[0] + line_height() * len(notes) + 16
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for row in range(outputs.shape[0]):
        y = row * row_h
        tiles = ([content[min(row, content.shape[0] - 1)]] if content is not None else []) + \
                [style[min(row, style.shape[0] - 1)], outputs[row]]
        for col, (name, tile) in enumerate(zip(columns, tiles)):
            sheet.paste(_thumb(tile), (col * THUMB, y))
            draw.text((col * THUMB + 4, y + THUMB + 2), name, font=font(), fill=MUTED)
        text = f"output {row + 1}:  " + "  ".join(f"{name} {float(values[row]):.3f}" for name, values in scores.items())
        draw.text((4, y + THUMB + 2 + line_height()), text, font=font(), fill=ACCENT)
    draw_lines(draw, (8, row_h * outputs.shape[0] + 8), notes, fill=TEXT)
    return torch.from_numpy(np.asarray(sheet, dtype=np.float32) / 255.0)[None]


class StyleExpertMetrics(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StyleExpertMetrics",
            display_name="StyleExpert Metrics",
            category=CATEGORY,
            description="Scores stylised outputs: style similarity to the style image(s) in the StyleExpert "
                        "encoder space, and content fidelity to the content image (SigLIP embedding cosine). "
                        "Shows an annotated side-by-side sheet.",
            inputs=[
                StyleExpert.Input("styleexpert", tooltip=EXPERT_TOOLTIP),
                io.ClipVision.Input("clip_vision", tooltip="SigLIP so400m-patch14-384 from Load CLIP Vision."),
                io.Image.Input("output", tooltip="The stylised image(s) to score (e.g. from VAE Decode)."),
                io.Image.Input("style", tooltip="The style reference image(s)."),
                io.Image.Input("content", optional=True,
                               tooltip="The content image, to score how much of it the output kept."),
                io.ClipVision.Input("aesthetic_clip_vision", optional=True,
                                    tooltip="CLIP ViT-L/14 for the aesthetic predictor (optional extra scorer)."),
                io.Combo.Input("aesthetic_predictor", options=[NONE, *aesthetic_predictors()],
                               default=NONE, optional=True,
                               tooltip="A LAION-style aesthetic MLP (layers.<i>.weight/bias) in "
                                       "models/styleexpert; only such files are listed."),
            ],
            outputs=[io.Float.Output(display_name="style_similarity",
                                     tooltip="Mean cosine of output and style in the style encoder's space "
                                             "(1 = same)."),
                     io.Float.Output(display_name="content_fidelity",
                                     tooltip="Mean SigLIP cosine of output and content (0 without content)."),
                     io.Image.Output(display_name="sheet", tooltip="Content | style | output side by side, scored."),
                     io.Float.Output(display_name="aesthetic",
                                     tooltip="Mean aesthetic predictor score (0 when no predictor is chosen).")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, styleexpert: LoadedStyleExpert, clip_vision, output: torch.Tensor, style: torch.Tensor,
                content: torch.Tensor | None = None, aesthetic_clip_vision=None,
                aesthetic_predictor: str = NONE) -> io.NodeOutput:
        empty = "an image input is empty; connect at least one image."
        out_style, out_pooled = image_features(styleexpert, clip_vision, output, empty)
        ref_style, _ = image_features(styleexpert, clip_vision, style, empty)
        style_scores = style_similarity(out_style, ref_style.mean(0, keepdim=True).expand_as(out_style))
        content_scores = None
        if content is not None:
            _, content_pooled = image_features(styleexpert, clip_vision, content, empty)
            if content_pooled.shape[0] not in (1, out_pooled.shape[0]):
                raise InputError(f"{content_pooled.shape[0]} content images for {out_pooled.shape[0]} outputs; "
                                 "give one content image, or one per output.")
            content_scores = content_fidelity(out_pooled, content_pooled.expand_as(out_pooled))
        scores = {"style": style_scores, **({"content": content_scores} if content_scores is not None else {})}
        if aesthetic_predictor != NONE:
            scores["aesthetic"] = aesthetic_score(aesthetic_clip_vision, aesthetic_predictor, output)
        sheet = metrics_sheet(output, style, content, scores)
        s = float(style_scores.mean())
        c = float(content_scores.mean()) if content_scores is not None else 0.0
        text = f"style similarity {s:.3f}" + (f", content fidelity {c:.3f}" if content_scores is not None else "")
        a = 0.0
        if "aesthetic" in scores:
            a = float(scores["aesthetic"].mean())
            text += f", aesthetic {a:.2f}"
        return io.NodeOutput(s, c, sheet, a, ui={**ui.PreviewImage(sheet, cls=cls).as_dict(),
                                                **ui.PreviewText(text).as_dict()})


def aesthetic_score(clip_vision, predictor_name: str, images: torch.Tensor) -> torch.Tensor:
    """Per-image aesthetic scores: the MLP over the (pooled) image embeddings of `clip_vision`."""
    if clip_vision is None:
        raise InputError("the aesthetic predictor needs its CLIP vision model (CLIP ViT-L/14): connect "
                         "aesthetic_clip_vision, or set aesthetic_predictor to (none).")
    path = folder_paths.get_full_path_or_raise(FOLDER, predictor_name)
    mlp = aesthetic_mlp_from_state_dict(read_tensor_file(path), predictor_name)
    with torch.inference_mode():
        embeds = clip_vision.encode_image(images, crop=True)["image_embeds"].float().cpu()
    if embeds.ndim == 3:  # SigLIP-style towers return token embeddings: pool them
        embeds = embeds.mean(dim=1)
    return aesthetic_scores(mlp, embeds)
