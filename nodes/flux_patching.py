"""Putting experts into a ComfyUI Flux MODEL: merged LoRA patches, or per-sample forward hooks.

Merge: for one style every layer's MoE is one rank-(k+1)r delta (core fold), added as ComfyUI
LoRA patches (with fused-slice offsets) on a clone, so bf16/fp8/lowvram and other LoRAs work.
Dynamic: a DIFFUSION_MODEL wrapper registers forward hooks for the duration of one model call;
each hook adds the delta of its sample's own style, folded once per style (dynamic_hooks), into
the output slices of its module.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
import torch

import comfy.patcher_extension
import comfy.utils
from comfy.weight_adapter import LoRAAdapter

from ..styleexpert_core import FluxShape, MoEConfig, Strengths
from ..styleexpert_core.errors import InputError, ShapeMismatchError
from ..styleexpert_core.keys import BflTarget, diffusers_to_bfl
from .dynamic_hooks import SigmaWindow, StyleFolds, group_by_module, swap_halves
from .payloads import LoadedStyleExpert

WRAPPER_KEY = "styleexpert"


@dataclass(frozen=True)
class LayerTarget:
    module: str  # diffusers name (checkpoint)
    target: BflTarget  # where it lives in ComfyUI's Flux
    weight_key: str  # ModelPatcher key of the weight


def flux_shape(model) -> FluxShape:
    """The Flux dimensions of a ComfyUI MODEL, or a clear error for any other model family."""
    diffusion = getattr(getattr(model, "model", None), "diffusion_model", None)
    params = getattr(diffusion, "params", None)
    if type(diffusion).__name__ != "Flux" or params is None or not hasattr(params, "depth_single_blocks"):
        raise InputError(
            f"StyleExpert experts are trained for FLUX.1 Kontext, but the MODEL is a "
            f"{type(getattr(model, 'model', model)).__name__} ({type(diffusion).__name__}). "
            "Load flux1-kontext-dev with a diffusion model loader.")
    return FluxShape(params.hidden_size, params.depth, params.depth_single_blocks, params.mlp_ratio)


def resolve_targets(model, expert: LoadedStyleExpert) -> list[LayerTarget]:
    """Map every checkpoint layer onto the model, checking depth and widths."""
    shape = flux_shape(model)
    table = diffusers_to_bfl(shape)  # built once, not per layer
    targets = []
    for module, tensors in expert.checkpoint.layers.items():
        target = table.get(module)
        if target is None:
            raise ShapeMismatchError(
                f"'{expert.name}' patches '{module}', which this Flux model ({shape.depth} double, "
                f"{shape.depth_single} single blocks) does not have; it was made for a different model.")
        key = f"diffusion_model.{target.module}.weight"
        weight = comfy.utils.get_attr(model.model, key)
        out_rows = target.length if target.offset is not None else weight.shape[0]
        if (tensors.in_features, tensors.out_features) != (weight.shape[1], out_rows):
            raise ShapeMismatchError(
                f"'{expert.name}' layer '{module}' is {tensors.in_features}->{tensors.out_features} but the model's "
                f"'{target.module}' is {weight.shape[1]}->{out_rows} (hidden size {shape.hidden_size}); the "
                "checkpoint was made for a different model width.")
        targets.append(LayerTarget(module, target, key))
    if not targets:
        raise InputError(f"'{expert.name}' has no expert layers to apply.")
    return targets


def _patch_key(layer: LayerTarget):
    t = layer.target
    if t.offset is not None:
        return (layer.weight_key, (0, t.offset, t.length))
    if t.transform == "swap_halves":
        return (layer.weight_key, None, swap_halves)
    return layer.weight_key


def merge_into(model, expert: LoadedStyleExpert, folded: dict[str, tuple[torch.Tensor, torch.Tensor]]):
    """A clone of `model` with one style's folded experts (core fold_checkpoint) added as LoRA patches."""
    patches = {}
    for layer in resolve_targets(model, expert):
        up, down = folded[layer.module]
        patches[_patch_key(layer)] = LoRAAdapter(set(), (up, down, None, None, None, None))
    patched = model.clone()
    applied = patched.add_patches(patches, 1.0)
    if len(applied) != len(patches):
        raise ShapeMismatchError(f"only {len(applied)} of {len(patches)} StyleExpert patches matched model weights.")
    return patched


def per_sample_styles(n: int, batch: int, chunks: int) -> tuple[int, ...]:
    """Style index per sample of a model call: sample i of each cond/uncond chunk gets style i % n."""
    if n == 1:
        return (0,) * batch
    per_chunk = batch // max(chunks, 1)
    if per_chunk % n != 0:
        raise InputError(
            f"{n} style latents cannot be spread over a batch of {per_chunk}: use a batch size that is a "
            f"multiple of {n} (sample i gets style i mod {n}).")
    return tuple(i % n for i in range(batch))


class DynamicStyleWrapper:
    """DIFFUSION_MODEL wrapper: hooks live only for one call, so nothing is left on the modules."""

    def __init__(self, bank, layers: list[LayerTarget], config: MoEConfig, latents: torch.Tensor,
                 strengths: Strengths, window: SigmaWindow | None = None) -> None:
        self.groups = group_by_module(layers)
        self.folds = StyleFolds(bank, self.groups, config, latents, strengths)
        self.window = window

    def __deepcopy__(self, memo):  # model_options are deep-copied on clone; experts must not be
        return self

    def __call__(self, executor, x, timestep, context, y=None, guidance=None, ref_latents=None, control=None,
                 transformer_options=None, **kwargs):
        # The arguments of Flux._forward, which Flux.forward hands to DIFFUSION_MODEL wrappers
        # (comfy/ldm/flux/model.py); cond_or_uncond tells how many cond/uncond chunks x holds.
        options = {} if transformer_options is None else transformer_options
        sigmas = options.get("sigmas")  # set by sampling; a call outside sampling gets the style
        if self.window is not None and sigmas is not None and not self.window.contains(float(sigmas[0])):
            return executor(x, timestep, context, y, guidance, ref_latents, control, options, **kwargs)
        chunks = len(options.get("cond_or_uncond", [0]))
        styles = per_sample_styles(self.folds.latents.shape[0], x.shape[0], chunks)
        # x is in the model's compute dtype (apply_model casts it), the dtype of every hooked output.
        folded = self.folds.for_batch(styles, x.device, x.dtype)
        flux = executor.class_obj
        handles = []
        try:
            for group, delta in zip(self.groups, folded):
                hook = partial(_add_delta, delta)
                handles.append(flux.get_submodule(group.module).register_forward_hook(hook))
            return executor(x, timestep, context, y, guidance, ref_latents, control, options, **kwargs)
        finally:
            for h in handles:
                h.remove()


def _add_delta(delta, module, inputs, output):
    delta.add_to(inputs[0], output)  # in place: the hook returns None, so output is kept


def dynamic_into(model, expert: LoadedStyleExpert, latents: torch.Tensor, config: MoEConfig,
                 strengths: Strengths, start_percent: float = 0.0, end_percent: float = 1.0):
    """A clone of `model` that routes every sample by its own style latent at forward time, while the
    sampling sigma lies within [start_percent, end_percent] of the schedule (ControlNet's convention)."""
    layers = resolve_targets(model, expert)
    patched = model.clone()
    window = None
    if (start_percent, end_percent) != (0.0, 1.0):
        window = SigmaWindow(start_percent, end_percent, model.get_model_object("model_sampling"))
        patched.add_callback_with_key(comfy.patcher_extension.CallbacksMP.ON_PRE_RUN, WRAPPER_KEY, window.on_pre_run)
    patched.set_additional_models(WRAPPER_KEY, [expert.bank_patcher()])
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY,
                                 DynamicStyleWrapper(expert.bank(), layers, config, latents, strengths, window))
    return patched
