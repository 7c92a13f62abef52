"""The V3 extension: the list of nodes this pack registers."""

from comfy_api.latest import ComfyExtension, io

from .apply import StyleExpertApply
from .bake import StyleExpertBakeLoRA
from .encode import StyleExpertBlendStyles, StyleExpertEncodeStyle
from .loader import StyleExpertLoader
from .metrics import StyleExpertMetrics
from .reference import StyleExpertReferenceLatents
from .routing_preview import StyleExpertRoutingPreview
from .style_library import StyleExpertLoadStyle, StyleExpertSaveStyle
from .style_references import StyleExpertLoadStyleFolder, StyleExpertStyleSimilarity
from .stylize import StyleExpertStylize

NODES = [StyleExpertLoader, StyleExpertEncodeStyle, StyleExpertApply, StyleExpertReferenceLatents,
         StyleExpertRoutingPreview, StyleExpertBlendStyles, StyleExpertMetrics, StyleExpertBakeLoRA,
         StyleExpertStylize, StyleExpertSaveStyle, StyleExpertLoadStyle, StyleExpertLoadStyleFolder, StyleExpertStyleSimilarity]


class StyleExpertExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES
