"""StyleExpertCheckpoint: what every checkpoint format reads into, whatever file it came from."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..config import MoEConfig, ProjectorConfig
from ..errors import CheckpointError, StyleExpertError
from ..keys import block_kind, is_flux_linear
from ..moe_lora import TENSOR_NAMES, ExpertTensors
from ..projector import StyleProjector, build_projector

# text_length: the T5 tokens the experts were trained with ("unknown" when not recorded).
INFO_DEFAULTS = {"module_naming": "diffusers", "base_model": "flux1-kontext-dev",
                 "style_token_concat": "unknown", "source": "native", "text_length": "unknown"}


@dataclass
class StyleExpertCheckpoint:
    """Expert layers and/or a style projector, with the configuration that gives them meaning."""

    config: MoEConfig | None = None
    layers: dict[str, ExpertTensors] = field(default_factory=dict)
    projector: dict[str, torch.Tensor] | None = None
    projector_config: ProjectorConfig | None = None
    info: dict[str, str] = field(default_factory=lambda: dict(INFO_DEFAULTS))

    def __post_init__(self) -> None:
        unknown = set(self.info) - set(INFO_DEFAULTS)
        if unknown:
            raise StyleExpertError(f"unknown checkpoint info field(s) {sorted(unknown)}; "
                                   f"expected {sorted(INFO_DEFAULTS)}.")
        self.info = {**INFO_DEFAULTS, **self.info}
        if self.layers and self.config is None:
            raise StyleExpertError("a checkpoint with expert layers needs an MoEConfig.")
        for name, tensors in self.layers.items():
            tensors.check(self.config, f"layer '{name}'")
        if (self.projector is None) != (self.projector_config is None):
            raise StyleExpertError("projector tensors and projector_config go together.")
        if self.config and self.projector_config and self.config.cond_dim != self.projector_config.cond_dim:
            raise StyleExpertError(
                f"the projector outputs {self.projector_config.cond_dim}-d style latents but the routers "
                f"expect cond_dim {self.config.cond_dim}; they were not trained together.")

    @property
    def has_experts(self) -> bool:
        return bool(self.layers)

    @property
    def precision(self) -> str:
        """The precision the style projector runs in: the router's (see MoEConfig.routing_precision);
        a projector-only file has none stored, so it goes by its source."""
        if self.config is not None:
            return self.config.routing_precision
        return "bf16" if self.info["source"] == "official" else "fp32"

    @property
    def text_length(self) -> int | None:
        """T5 tokens the experts were trained with, or None when not recorded."""
        value = self.info["text_length"]
        return int(value) if value.isdigit() else None

    def build_projector(self, *, operations=None, dtype: torch.dtype | None = None) -> StyleProjector:
        """The style projector, built from the stored configuration (layer order included)."""
        if self.projector is None:
            raise StyleExpertError("this checkpoint holds no style projector.")
        return build_projector(self.projector, "checkpoint", config=self.projector_config,
                               operations=operations, dtype=dtype)

    def summary(self) -> dict:
        """A JSON-friendly description (used by the CLI and the loader node)."""
        out: dict = {"info": dict(self.info), "layers": len(self.layers)}
        if self.config:
            out["moe"] = {**self.config.to_dict(), "scale": self.config.scale,
                          "folded_rank": self.config.folded_rank}
            out["parameters"] = sum(t.numel() for layer in self.layers.values() for t in layer.as_dict().values())
            out["layer_groups"] = _layer_groups(self.layers)
        if self.projector_config:
            out["projector"] = self.projector_config.to_dict()
        return out


def _layer_groups(layers: dict[str, ExpertTensors]) -> dict[str, int]:
    groups = {"double_blocks": 0, "single_blocks": 0, "other": 0}
    for name in layers:
        kind = block_kind(name)
        groups[f"{kind}_blocks" if kind else "other"] += 1
    return groups


def expert_layers(grouped: dict[str, dict[str, torch.Tensor]], config: MoEConfig,
                  source: str) -> dict[str, ExpertTensors]:
    """module -> ExpertTensors from the tensors of each layer by name; every file format ends here."""
    layers = {}
    for module, parts in grouped.items():
        if not is_flux_linear(module):
            raise CheckpointError(
                f"{source}: '{module}' is not a Flux linear layer in diffusers naming "
                "(expected e.g. 'transformer_blocks.0.attn.to_q').")
        missing = [n for n in TENSOR_NAMES if n not in parts]
        if missing:
            raise CheckpointError(f"{source}: layer '{module}' lacks tensor(s) {missing}.")
        tensors = ExpertTensors(**parts)
        tensors.check(config, f"{source}: layer '{module}'")
        layers[module] = tensors
    return layers
