"""StyleExpertRoutingPreview: which experts each layer picks for a style, as a heatmap and as text."""

from __future__ import annotations

import numpy as np
import torch
from comfy_api.latest import io, ui

from ..styleexpert_core import check_style
from ..styleexpert_core.errors import InputError
from ..styleexpert_core.routing_chart import routing_chart, style_fingerprint
from ..styleexpert_core.visualize import routing_summary, routing_table
from .apply import KEEP, overrides
from .payloads import LoadedStyleExpert, StyleLatent
from .sockets import CATEGORY, EXPERT_TOOLTIP, STYLE_TOOLTIP, StyleExpert, StyleLatentSocket


class StyleExpertRoutingPreview(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StyleExpertRoutingPreview",
            display_name="StyleExpert Routing Preview",
            category=CATEGORY,
            description="Shows which experts a style picks: a labelled chart with one row per Flux block (its "
                        "layers' gates averaged), one column per expert, a colour legend and a one-line style "
                        "fingerprint; the per-layer picks as text. The node's view refreshes when the style "
                        "image or checkpoint changes, before any sampling.",
            inputs=[
                StyleExpert.Input("styleexpert", tooltip=EXPERT_TOOLTIP),
                StyleLatentSocket.Input("style", tooltip=STYLE_TOOLTIP),
                io.Int.Input("index", default=0, min=0, max=4096, tooltip="Which latent of a batch to show."),
                io.Int.Input("top_k", default=0, min=0, max=64, tooltip="0 keeps the checkpoint's value."),
                io.Combo.Input("alignment", options=[KEEP, "official", "paper"], default=KEEP,
                               tooltip="How scores meet experts; keep the checkpoint's value."),
            ],
            outputs=[io.Image.Output(display_name="heatmap", tooltip="Layers x experts, brighter = larger gate."),
                     io.String.Output(display_name="routing", tooltip="The experts each layer picks, as text.")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, styleexpert: LoadedStyleExpert, style: StyleLatent, index: int = 0, top_k: int = 0,
                alignment: str = KEEP) -> io.NodeOutput:
        config, latents = check_style(styleexpert.checkpoint, style.check_for(styleexpert),
                                      **overrides(top_k, alignment))
        if index >= latents.shape[0]:
            raise InputError(f"index {index} is out of range: the style input holds {latents.shape[0]} latent(s).")
        image, text = routing_view(styleexpert, config, latents[index:index + 1], f"style {index}")
        return io.NodeOutput(image, text, ui={**ui.PreviewImage(image, cls=cls).as_dict(),
                                               **ui.PreviewText(text.split("\n", 1)[0]).as_dict()})


def routing_view(expert: LoadedStyleExpert, config, latent: torch.Tensor, what: str) -> tuple[torch.Tensor, str]:
    """(the chart as an IMAGE [1, H, W, 3], the fingerprint line + per-layer text) of one checked latent."""
    names, gates = routing_table(expert.checkpoint.layers, config, latent)
    chart = routing_chart(names, gates, f"{expert.name}: routing of {what}")
    text = style_fingerprint(names, gates) + "\n" + routing_summary(names, gates)
    return torch.from_numpy(chart.astype(np.float32) / 255.0)[None], text
