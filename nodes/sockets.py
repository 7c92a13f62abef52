"""The pack's custom socket types (matched by name in workflows: never rename them)."""

from comfy_api.latest import io

StyleExpert = io.Custom("STYLEEXPERT")
StyleLatentSocket = io.Custom("STYLE_LATENT")

CATEGORY = "StyleExpert"
# The same two sockets appear on most nodes: one wording for their tooltips.
EXPERT_TOOLTIP = "The StyleExpert checkpoint from StyleExpert Load Checkpoint."
STYLE_TOOLTIP = "A style latent (from StyleExpert Encode Style, Blend Styles or Load Style)."

