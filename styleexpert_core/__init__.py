"""StyleExpert core: pure-torch style projector, routed MoE-LoRA, fold, key table and file formats.

Never imports ComfyUI; the node pack and the training scripts both build on this package.
"""

from .config import MoEConfig, ProjectorConfig
from .errors import CheckpointError, InputError, ShapeMismatchError, StyleExpertError
from .fold import fold_checkpoint, fold_layer, fold_layers
from .formats import (StyleExpertCheckpoint, bake_style, load_checkpoint, load_native, load_official,
                      save_baked_lora, save_native)
from .keys import BflTarget, FluxShape, diffusers_to_bfl
from .moe_lora import ExpertTensors, MoELoRA, MoELoRALinear, StyleContext, inject_moe, moe_delta
from .projector import StyleProjector, build_projector
from .routing import Routing, route, route_latent, router_logits
from .style import Strengths, check_style, route_style

__all__ = [
    "BflTarget", "CheckpointError", "ExpertTensors", "FluxShape", "InputError", "MoEConfig", "MoELoRA",
    "MoELoRALinear", "ProjectorConfig", "Routing", "ShapeMismatchError", "Strengths", "StyleContext",
    "StyleExpertCheckpoint", "StyleExpertError", "StyleProjector", "bake_style", "build_projector", "check_style",
    "diffusers_to_bfl", "fold_checkpoint", "fold_layer", "fold_layers", "inject_moe", "load_checkpoint",
    "load_native", "load_official", "moe_delta", "route", "route_latent", "route_style", "router_logits", "save_baked_lora",
    "save_native",
]
