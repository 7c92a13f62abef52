"""What travels on the pack's custom sockets. Plain objects: ComfyUI caches them, never copies them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import nn

import comfy.model_management
import comfy.model_patcher

from ..styleexpert_core import ExpertTensors, StyleExpertCheckpoint, StyleProjector
from ..styleexpert_core.errors import InputError
from ..styleexpert_core.routing import ROUTING_DTYPES


def tensors_fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    """A short content hash, so latents from one projector are never routed by another's experts."""
    h = hashlib.sha1()
    for key in sorted(tensors):
        h.update(key.encode())
        h.update(tensors[key].detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:12]


class ExpertBank(nn.Module):
    """The expert tensors as frozen parameters of one module, so a ModelPatcher can load/offload
    them with the diffusion model. Wraps the checkpoint's tensors without copying them."""

    def __init__(self, layers: dict[str, ExpertTensors]) -> None:
        super().__init__()
        self.names = list(layers)
        self.layers = nn.ModuleList()
        for tensors in layers.values():
            holder = nn.Module()
            for name, t in tensors.as_dict().items():
                holder.register_parameter(name, nn.Parameter(t, requires_grad=False))
            self.layers.append(holder)

    def tensors(self, index: int) -> ExpertTensors:
        m = self.layers[index]
        return ExpertTensors(m.A, m.B, m.shared_A, m.shared_B, m.gate)


@dataclass(eq=False)
class LoadedStyleExpert:
    """A loaded checkpoint (STYLEEXPERT socket), with lazily built projector and expert bank."""

    checkpoint: StyleExpertCheckpoint
    name: str
    _projector: StyleProjector | None = field(default=None, repr=False)
    _bank: ExpertBank | None = field(default=None, repr=False)
    _bank_patcher: comfy.model_patcher.ModelPatcher | None = field(default=None, repr=False)

    @cached_property
    def encoder_id(self) -> str | None:
        ckpt = self.checkpoint
        return tensors_fingerprint(ckpt.projector) if ckpt.projector is not None else None

    def projector(self) -> StyleProjector:
        if self.checkpoint.projector is None:
            raise InputError(
                f"'{self.name}' has no style projector, so it cannot encode style images. Load a native "
                "StyleExpert file that includes one, or pick the official projector file in the loader.")
        if self._projector is None:
            # In the checkpoint's precision: bf16 for the release, whose router saw bf16 style latents.
            dtype = ROUTING_DTYPES[self.checkpoint.precision]
            self._projector = self.checkpoint.build_projector(dtype=dtype).eval().requires_grad_(False)
        return self._projector

    def bank(self) -> ExpertBank:
        if self._bank is None:
            self._bank = ExpertBank(self.checkpoint.layers)
        return self._bank

    def bank_patcher(self) -> comfy.model_patcher.ModelPatcher:
        """One ModelPatcher per bank, for as long as the bank lives. A new patcher per run would
        leave a dead entry in ComfyUI's loaded-model list each time (the bank outlives it), which
        /free cannot unload and which makes every later model load run a full gc."""
        if self._bank_patcher is None:
            self._bank_patcher = comfy.model_patcher.ModelPatcher(
                self.bank(), load_device=comfy.model_management.get_torch_device(),
                offload_device=comfy.model_management.unet_offload_device())
        return self._bank_patcher


@dataclass(frozen=True, eq=False)
class StyleLatent:
    """One or more style latents (STYLE_LATENT socket): values [N, cond_dim], float32, CPU."""

    values: torch.Tensor
    encoder_id: str | None = None

    def check_for(self, expert: LoadedStyleExpert) -> torch.Tensor:
        """The latents, once it is clear they come from `expert`'s own style projector; their shape and
        values are checked by the core (check_style)."""
        if self.encoder_id and expert.encoder_id and self.encoder_id != expert.encoder_id:
            raise InputError(
                f"this style latent was made by a different style projector than the one in '{expert.name}'; "
                "its experts would be routed at random. Encode the style with the same StyleExpert checkpoint.")
        return self.values
