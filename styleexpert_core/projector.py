"""The SigLIP multi-layer style projector: hidden states of three layers -> style latent.

Per layer (in config order, officially -2, -11, -20):
    Linear(num_tokens -> style_tokens) + SiLU over the token axis,
    LayerNorm(width), Linear(width -> out_dim)
then concatenated on the token axis and flattened: [B, layers * style_tokens * out_dim].
`operations` lets ComfyUI inject its own Linear/LayerNorm (e.g. comfy.ops.manual_cast).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import nn

from .config import ProjectorConfig
from .errors import CheckpointError, InputError, ShapeMismatchError

OFFICIAL_PREFIX = "proj_model."
_KEY = re.compile(r"^(embedding_linears\.(-\d+)\.0|layer_norms\.(-\d+)|projections\.(-\d+))\.(weight|bias)$")


class StyleProjector(nn.Module):
    def __init__(self, config: ProjectorConfig = ProjectorConfig(), *, operations=None,
                 device=None, dtype=None) -> None:
        super().__init__()
        ops = operations or nn
        kw = {"device": device, "dtype": dtype}
        self.config = config
        names = [str(i) for i in config.layers]
        self.embedding_linears = nn.ModuleDict(
            {n: nn.Sequential(ops.Linear(config.num_tokens, config.style_tokens, **kw), nn.SiLU()) for n in names})
        self.layer_norms = nn.ModuleDict({n: ops.LayerNorm(config.width, **kw) for n in names})
        self.projections = nn.ModuleDict({n: ops.Linear(config.width, config.out_dim, **kw) for n in names})
        self._cast_input = operations is None

    def select_layers(self, hidden_states: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Pick the configured layers from [B, L, T, W] or a sequence of [B, T, W] (negative indices)."""
        cfg = self.config
        count = hidden_states.shape[1] if isinstance(hidden_states, torch.Tensor) else len(hidden_states)
        if isinstance(hidden_states, torch.Tensor) and hidden_states.ndim != 4:
            raise ShapeMismatchError(
                f"expected all hidden states as [batch, layers, tokens, width], got {tuple(hidden_states.shape)}.")
        if count < cfg.min_hidden_layers:
            raise InputError(
                f"the vision model exposes {count} hidden states but the style projector reads layers "
                f"{list(cfg.layers)}; it needs SigLIP so400m (27 layers) or another tower with at least "
                f"{cfg.min_hidden_layers} layers.")
        layers = [hidden_states[:, i] if isinstance(hidden_states, torch.Tensor) else hidden_states[i]
                  for i in cfg.layers]
        got = tuple(layers[0].shape[1:])
        if got != (cfg.num_tokens, cfg.width):
            raise ShapeMismatchError(
                f"hidden states have {got[0]} tokens of width {got[1]}, the style projector expects "
                f"{cfg.num_tokens} tokens of width {cfg.width} (SigLIP so400m-patch14-384 at 384x384: "
                "729 x 1152). Load the matching SigLIP vision model.")
        if layers[0].shape[0] == 0:
            raise InputError("no images to encode: the style image batch is empty.")
        return layers

    def forward(self, hidden_states: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Style latent [B, cond_dim] from all hidden states (see select_layers)."""
        return self.project(self.select_layers(hidden_states))

    def project(self, selected: Sequence[torch.Tensor]) -> torch.Tensor:
        """Style latent from the configured layers only, in config order (e.g. cached features)."""
        if len(selected) != len(self.config.layers):
            raise ShapeMismatchError(
                f"expected {len(self.config.layers)} layers {list(self.config.layers)}, got {len(selected)}.")
        tokens = []
        for idx, x in zip(self.config.layers, selected):
            name = str(idx)
            if self._cast_input:
                x = x.to(self.layer_norms[name].weight.dtype)
            x = self.embedding_linears[name](x.transpose(1, 2)).transpose(1, 2)  # [B, style_tokens, W]
            tokens.append(self.projections[name](self.layer_norms[name](x)))
        return torch.cat(tokens, dim=1).flatten(1)


def strip_official_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the optional `proj_model.` prefix of the official release (all keys or none)."""
    prefixed = [k.startswith(OFFICIAL_PREFIX) for k in state_dict]
    if any(prefixed) and not all(prefixed):
        raise CheckpointError(
            f"projector keys mix '{OFFICIAL_PREFIX}'-prefixed and bare names; expected one naming throughout.")
    if any(prefixed):
        return {k[len(OFFICIAL_PREFIX):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def projector_config_from_state_dict(state_dict: dict[str, torch.Tensor], source: str) -> ProjectorConfig:
    """Infer sizes and layer order from projector tensors (keys without prefix)."""
    layers: list[int] = []
    for key in state_dict:
        m = _KEY.match(key)
        if not m:
            raise CheckpointError(
                f"{source}: unexpected projector key '{key}'; expected 'embedding_linears.<layer>.0.weight', "
                "'layer_norms.<layer>.weight', 'projections.<layer>.weight' (and biases), optionally "
                f"prefixed '{OFFICIAL_PREFIX}'.")
        layer = int(next(g for g in m.groups()[1:4] if g is not None))
        if layer not in layers:
            layers.append(layer)
    if not layers:
        raise CheckpointError(f"{source}: no style projector tensors found.")
    # The official order is high -> low (-2, -11, -20); keep that whatever the file order was.
    layers.sort(reverse=True)
    first = str(layers[0])
    try:
        emb = state_dict[f"embedding_linears.{first}.0.weight"]
        proj = state_dict[f"projections.{first}.weight"]
    except KeyError as e:
        raise CheckpointError(f"{source}: projector tensor {e} is missing.") from None
    return ProjectorConfig(layers=tuple(layers), num_tokens=emb.shape[1], style_tokens=emb.shape[0],
                           width=proj.shape[1], out_dim=proj.shape[0])


def build_projector(state_dict: dict[str, torch.Tensor], source: str, *, config: ProjectorConfig | None = None,
                    operations=None, dtype: torch.dtype | None = None) -> StyleProjector:
    """A StyleProjector loaded strictly from `state_dict` (prefix tolerated).

    `config` is the stored configuration (its layer order is part of the meaning); without one,
    sizes and layers are inferred from the tensors in the official order (-2, -11, -20).
    """
    sd = strip_official_prefix(state_dict)
    if config is None:
        config = projector_config_from_state_dict(sd, source)
    projector = StyleProjector(config, operations=operations, dtype=dtype)
    expected = projector.state_dict()
    missing = sorted(set(expected) - set(sd))
    if missing:
        raise CheckpointError(f"{source}: projector tensors missing: {missing[:4]}.")
    for key, value in sd.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ShapeMismatchError(
                f"{source}: projector tensor '{key}' has shape {tuple(value.shape)}, expected "
                f"{tuple(expected[key].shape)}.")
    projector.load_state_dict(sd, strict=True)
    return projector
