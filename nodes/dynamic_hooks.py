"""Dynamic mode's per-step work: each style folded once, one down-projection per fused layer.

Routing sees only the style latent, so for each style the experts of every layer fold (the
core's fold_layers, the very function merge mode uses) into one rank-(k+1)r delta. The folds are
made once per style and kept for the device and dtype the model runs in. A model call then
costs, per patched module, one down-projection for all of its slices (q|k|v, or q|k|v|mlp of a
single block's linear1) and one in-place addmm per slice into the module's output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..styleexpert_core import MoEConfig, Strengths, fold_layers
from ..styleexpert_core.keys import BflTarget


@dataclass(frozen=True)
class ModuleSlice:
    """One checkpoint layer inside the module a hook sits on."""

    bank_index: int  # ExpertBank layer index
    name: str  # diffusers name (checkpoint)
    target: BflTarget


@dataclass(frozen=True)
class ModuleGroup:
    """Every checkpoint layer that writes into one model module (three for a fused q|k|v)."""

    module: str  # BFL module path in ComfyUI's Flux
    slices: tuple[ModuleSlice, ...]


def group_by_module(layers) -> list[ModuleGroup]:
    """LayerTargets (flux_patching) grouped by the module they patch, in first-seen order."""
    groups: dict[str, list[ModuleSlice]] = {}
    for index, layer in enumerate(layers):
        groups.setdefault(layer.target.module, []).append(ModuleSlice(index, layer.module, layer.target))
    return [ModuleGroup(module, tuple(slices)) for module, slices in groups.items()]


@dataclass(frozen=True)
class FoldedModule:
    """A module's delta for a batch: down [R, in] (one style) or [B, R, in] (one per sample), the
    slices' downs stacked; per slice, (output rows, rank columns of the down output, up)."""

    down: torch.Tensor
    ups: tuple[tuple[slice, slice, torch.Tensor], ...]

    def add_to(self, x: torch.Tensor, output: torch.Tensor) -> None:
        """output[..., rows] += up @ down @ x for every slice, in place (one down-projection)."""
        x = x.to(self.down.dtype)  # a no-op unless an input arrives in another dtype than the outputs
        if self.down.ndim == 2:  # one style for the whole batch: plain 2-D matmuls
            flat_out = output.view(-1, output.shape[-1])
            h = x.reshape(-1, x.shape[-1]) @ self.down.t()
            for rows, ranks, up in self.ups:
                flat_out[:, rows].addmm_(h[:, ranks], up.t())
            return
        batch = x.shape[0]
        out = output.view(batch, -1, output.shape[-1])
        h = torch.bmm(x.reshape(batch, -1, x.shape[-1]), self.down.transpose(1, 2))
        for rows, ranks, up in self.ups:
            out[..., rows].baddbmm_(h[..., ranks], up.transpose(1, 2))


def _output_rows(target: BflTarget, out_features: int) -> slice:
    return slice(0, out_features) if target.offset is None else slice(target.offset, target.offset + target.length)


def swap_halves(rows: torch.Tensor) -> torch.Tensor:
    """diffusers' (scale, shift) output rows in BFL's (shift, scale) order (norm_out, see keys.py)."""
    first, second = rows.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


class StyleFolds:
    """Every module's folded delta per style, made on first use for one (device, dtype) and kept
    until the model runs on another; batches mixing styles gather them per sample, once per layout."""

    def __init__(self, bank, groups: list[ModuleGroup], config: MoEConfig, latents: torch.Tensor,
                 strengths: Strengths) -> None:
        self.bank = bank
        self.groups = groups
        self.config = config
        self.latents = latents  # [N, cond_dim], checked once by check_style in Apply
        self.strengths = strengths
        self._where: tuple[torch.device, torch.dtype] | None = None
        self._per_style: list[list[FoldedModule]] = []
        self._per_layout: dict[tuple[int, ...], list[FoldedModule]] = {}

    def for_batch(self, styles: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> list[FoldedModule]:
        """Per group, the delta for a batch whose sample i has style styles[i] (all equal: one 2-D fold)."""
        if self._where != (device, dtype):
            self._where = (device, dtype)
            self._per_style = [self._fold_style(n, device, dtype) for n in range(self.latents.shape[0])]
            self._per_layout = {}
        if len(set(styles)) == 1:
            return self._per_style[styles[0]]
        if styles not in self._per_layout:
            self._per_layout[styles] = [self._stack(g, styles) for g in range(len(self.groups))]
        return self._per_layout[styles]

    def _fold_style(self, n: int, device: torch.device, dtype: torch.dtype) -> list[FoldedModule]:
        gate_device = self.bank.tensors(0).gate.device
        latent = self.latents[n:n + 1].to(gate_device)  # moved once per style, not once per layer
        folded = []
        for group in self.groups:
            layers = {s.name: self.bank.tensors(s.bank_index) for s in group.slices}
            # The same fold as merge mode (fp32), so both modes compute one delta.
            folds = fold_layers(layers, self.config, latent, strengths=self.strengths, dtype=torch.float32)
            downs, ups, start = [], [], 0
            for s in group.slices:
                up, down = folds[s.name]
                ranks = slice(start, start + down.shape[0])
                start = ranks.stop
                downs.append(down)
                up = (swap_halves(up) if s.target.transform == "swap_halves" else up).to(device=device, dtype=dtype)
                ups.append((_output_rows(s.target, up.shape[0]), ranks, up))
            folded.append(FoldedModule(torch.cat(downs).to(device=device, dtype=dtype), tuple(ups)))
        return folded

    def _stack(self, group: int, styles: tuple[int, ...]) -> FoldedModule:
        per_sample = [self._per_style[n][group] for n in styles]
        down = torch.stack([f.down for f in per_sample])
        ups = tuple((rows, ranks, torch.stack([f.ups[i][2] for f in per_sample]))
                    for i, (rows, ranks, _) in enumerate(per_sample[0].ups))
        return FoldedModule(down, ups)


class SigmaWindow:
    """The part of sampling a style acts in, as ComfyUI's ControlNet apply takes it: start/end percent
    of the schedule, turned into sigmas by the model's own model_sampling (percent_to_sigma). Resolved
    when Apply runs and again when sampling starts, so a later model-sampling node (shift) is heeded."""

    def __init__(self, start_percent: float, end_percent: float, model_sampling) -> None:
        self.start_percent = start_percent
        self.end_percent = end_percent
        self.resolve(model_sampling)

    def __deepcopy__(self, memo):  # shared by every clone of the model, like the wrapper holding it
        return self

    def resolve(self, model_sampling) -> None:
        self.high = model_sampling.percent_to_sigma(self.start_percent)
        self.low = model_sampling.percent_to_sigma(self.end_percent)

    def on_pre_run(self, patcher) -> None:  # CallbacksMP.ON_PRE_RUN: sampling is about to start
        self.resolve(patcher.get_model_object("model_sampling"))

    def contains(self, sigma: float) -> bool:
        return self.low <= sigma <= self.high
