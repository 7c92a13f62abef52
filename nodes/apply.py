"""StyleExpertApply: a MODEL with the experts of a style, merged (default) or routed per sample."""

from __future__ import annotations

from comfy_api.latest import io

from ..styleexpert_core import Strengths, check_style, fold_checkpoint
from ..styleexpert_core.config import ROUTING_PRECISIONS
from ..styleexpert_core.errors import InputError
from ..styleexpert_core.finite import check_finite_number
from .flux_patching import dynamic_into, merge_into
from .payloads import LoadedStyleExpert, StyleLatent
from .sockets import CATEGORY, EXPERT_TOOLTIP, STYLE_TOOLTIP, StyleExpert, StyleLatentSocket

KEEP = "from checkpoint"
MODES = ["merge", "dynamic"]
MODE_TOOLTIP = (
    "merge: the style becomes ordinary LoRA patches. No cost per step, but when sampling starts ComfyUI "
    "rewrites every touched weight and keeps a backup copy of each (for every attention projection of "
    "FLUX.1: 3.9 G parameters, 7.9 GB in bf16, in RAM), and redoes that whenever the style changes; "
    "patching fp8 weights is slower still. "
    "dynamic: nothing is patched or backed up, so applying and changing styles are instant; each step adds "
    "the low-rank products (on the CPU benchmark about what a rank-24 LoRA hook costs at the same layers, "
    "see docs/BENCHMARKS.md), and each sample of a batch may have its own style.")


def strength_input(name: str, tooltip: str, optional: bool = False) -> io.Float.Input:
    return io.Float.Input(name, default=1.0, min=-4.0, max=4.0, step=0.05, tooltip=tooltip, optional=optional)


def strength_inputs(optional: bool = False) -> list[io.Float.Input]:
    """The per-part strengths Apply and Bake share (after `strength`, which scales the whole delta)."""
    return [strength_input("shared_strength", "Weight of the shared expert (always active).", optional),
            strength_input("routed_strength", "Weight of the routed experts the style picked.", optional),
            strength_input("double_blocks", "Extra factor for the 19 double-stream blocks.", optional),
            strength_input("single_blocks", "Extra factor for the 38 single-stream blocks.", optional)]


def routing_inputs(optional: bool = False) -> list:
    """top_k, alignment and routing precision overrides (0 and KEEP keep the checkpoint's values)."""
    return [io.Int.Input("top_k", default=0, min=0, max=64, optional=optional,
                         tooltip="Routed experts per layer; 0 keeps the checkpoint's value."),
            io.Combo.Input("alignment", options=[KEEP, "official", "paper"], default=KEEP, optional=optional,
                           tooltip="How scores meet experts. Keep the checkpoint's value unless you know "
                                   "why (the official weights mean 'official')."),
            # Always optional: API prompts saved before this input existed keep working.
            io.Combo.Input("routing_precision", options=[KEEP, *ROUTING_PRECISIONS], default=KEEP, optional=True,
                           tooltip="Precision the router picks experts in. Keep the checkpoint's: the official "
                                   "weights were trained routing in bf16, and about 1% of styles pick a "
                                   "different expert in fp32.")]


def overrides(top_k: int, alignment: str, routing_precision: str = KEEP) -> dict:
    """The core's alignment/top_k/routing precision overrides from the nodes' widget values."""
    return {"alignment": None if alignment == KEEP else alignment, "top_k": top_k or None,
            "routing_precision": None if routing_precision == KEEP else routing_precision}


def percent_inputs() -> list[io.Float.Input]:
    """Optional, so API prompts saved before they existed keep working."""
    span = {"min": 0.0, "max": 1.0, "step": 0.01, "optional": True}
    return [io.Float.Input("start_percent", default=0.0, **span,
                           tooltip="dynamic mode: the style acts from this point of the sampling schedule "
                                   "(0 = the first step), like ControlNet's start percent."),
            io.Float.Input("end_percent", default=1.0, **span,
                           tooltip="dynamic mode: the style stops acting after this point of the schedule "
                                   "(1 = the last step). Merge mode needs 0 and 1.")]


def check_percents(mode: str, start_percent: float, end_percent: float) -> tuple[float, float]:
    for value, name in ((start_percent, "start_percent"), (end_percent, "end_percent")):
        check_finite_number(value, name)
        if not 0.0 <= value <= 1.0:
            raise InputError(f"{name} must lie between 0 and 1 (a fraction of the sampling schedule), got {value}.")
    if start_percent > end_percent:
        raise InputError(f"start_percent ({start_percent}) is after end_percent ({end_percent}); the style would "
                         "never act. Set start_percent <= end_percent.")
    if mode == "merge" and (start_percent, end_percent) != (0.0, 1.0):
        raise InputError("start_percent/end_percent limit the style to part of the sampling steps only in dynamic "
                         "mode: merged experts are part of the weights for every step. Set mode to dynamic, or "
                         "keep start_percent 0 and end_percent 1.")
    return float(start_percent), float(end_percent)


def apply_styleexpert(model, expert: LoadedStyleExpert, style: StyleLatent, mode: str, strengths: Strengths,
                      top_k: int = 0, alignment: str = KEEP, routing_precision: str = KEEP,
                      start_percent: float = 0.0, end_percent: float = 1.0):
    if mode not in MODES:  # V3 combos are not validated by the server
        raise InputError(f"mode must be one of {MODES}, got {mode!r}.")
    window = check_percents(mode, start_percent, end_percent)
    latents = style.check_for(expert)
    chosen = overrides(top_k, alignment, routing_precision)
    if mode == "merge":
        return merge_into(model, expert, fold_checkpoint(expert.checkpoint, latents, strengths=strengths, **chosen))
    config, latents = check_style(expert.checkpoint, latents, **chosen)
    return dynamic_into(model, expert, latents, config, strengths, *window)


class StyleExpertApply(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StyleExpertApply",
            display_name="StyleExpert Apply",
            category=CATEGORY,
            description="Adds the StyleExpert experts routed by a style latent to a FLUX.1 Kontext MODEL. "
                        "merge: one LoRA-style patch per style (no per-step cost; ComfyUI patches and backs up "
                        "the touched weights when sampling starts; fp8/lowvram/other LoRAs work). "
                        "dynamic: instant apply, no weight backups, a small per-step cost; each sample may be "
                        "routed by its own latent (batches mixing styles).",
            inputs=[
                io.Model.Input("model", tooltip="The FLUX.1 Kontext MODEL (from Load Diffusion Model)."),
                StyleExpert.Input("styleexpert", tooltip=EXPERT_TOOLTIP),
                StyleLatentSocket.Input("style", tooltip=STYLE_TOOLTIP),
                io.Combo.Input("mode", options=MODES, default="merge", tooltip=MODE_TOOLTIP),
                strength_input("strength", "Multiplies the whole style delta."),
                *strength_inputs(),
                *routing_inputs(),
                *percent_inputs(),
            ],
            outputs=[io.Model.Output(tooltip="The MODEL with the style's experts added; sample it as usual.")],
        )

    @classmethod
    def execute(cls, model, styleexpert: LoadedStyleExpert, style: StyleLatent, mode: str = "merge",
                strength: float = 1.0, shared_strength: float = 1.0, routed_strength: float = 1.0,
                double_blocks: float = 1.0, single_blocks: float = 1.0, top_k: int = 0,
                alignment: str = KEEP, routing_precision: str = KEEP, start_percent: float = 0.0,
                end_percent: float = 1.0) -> io.NodeOutput:
        strengths = Strengths(strength, shared_strength, routed_strength, double_blocks, single_blocks)
        return io.NodeOutput(apply_styleexpert(model, styleexpert, style, mode, strengths, top_k, alignment,
                                               routing_precision, start_percent, end_percent))
