"""Tiny Flux models built through ComfyUI's own model classes, plus forward and sampling helpers.

ComfyUI must already be imported with args.cpu set (the `comfy` fixture does that); comfy
modules are imported inside the functions so that importing this file never triggers
comfy.model_management. The test-only node pack loads this file in the server process too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

FLUX_DEV_AXES_DIM = (16, 56, 56)


@dataclass(frozen=True)
class FluxShape:
    """The `unet_config` of a Flux model; defaults are the tiny test model."""

    hidden_size: int = 64
    num_heads: int = 2
    depth: int = 2
    depth_single_blocks: int = 2
    axes_dim: tuple[int, ...] = (8, 12, 12)
    context_in_dim: int = 32
    vec_in_dim: int = 32
    in_channels: int = 16
    out_channels: int = 16
    mlp_ratio: float = 4.0
    theta: int = 10000
    patch_size: int = 2
    qkv_bias: bool = True
    guidance_embed: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        head_dim = self.hidden_size // self.num_heads
        if self.hidden_size % self.num_heads or sum(self.axes_dim) != head_dim or any(d % 2 for d in self.axes_dim):
            raise ValueError(
                f"axes_dim {self.axes_dim} must be even and sum to hidden_size/num_heads = {head_dim} "
                "(RoPE splits each head over the (index, row, column) axes)"
            )

    def unet_config(self) -> dict:
        return dict(
            image_model="flux",
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            vec_in_dim=self.vec_in_dim,
            context_in_dim=self.context_in_dim,
            hidden_size=self.hidden_size,
            mlp_ratio=self.mlp_ratio,
            num_heads=self.num_heads,
            depth=self.depth,
            depth_single_blocks=self.depth_single_blocks,
            axes_dim=list(self.axes_dim),
            theta=self.theta,
            patch_size=self.patch_size,
            qkv_bias=self.qkv_bias,
            guidance_embed=self.guidance_embed,
            **self.extra,
        )


# What comfy.model_detection assumes for any BFL-named Flux file: only depth and the
# vec/in widths are read from the weights, everything else is fixed to FLUX.1-dev values.
def flux_dev_width_shape(depth: int = 1, depth_single_blocks: int = 1, vec_in_dim: int = 768) -> FluxShape:
    return FluxShape(
        hidden_size=3072,
        num_heads=24,
        depth=depth,
        depth_single_blocks=depth_single_blocks,
        axes_dim=FLUX_DEV_AXES_DIM,
        context_in_dim=4096,
        vec_in_dim=vec_in_dim,
    )


def build_flux_base_model(shape: FluxShape, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    """An uninitialised comfy.model_base.Flux of the given shape (weights are torch.empty)."""
    import comfy.supported_models

    config = comfy.supported_models.Flux(shape.unet_config())
    config.set_inference_dtype(dtype, None)
    return config.get_model({}, device=torch.device(device))


def deterministic_parameter_values(named_parameters, seed: int, std: float = 0.05):
    """Yield (name, float32 value) per parameter: RMSNorm `*.scale` 1, the rest ~ N(0, std),
    drawn in order from one seeded CPU generator. Works on meta-device skeletons too."""
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in named_parameters:
        if name.endswith(".scale"):
            yield name, torch.ones(parameter.shape)
        else:
            yield name, torch.randn(parameter.shape, generator=generator, dtype=torch.float32) * std


def init_weights_deterministically_(module: torch.nn.Module, seed: int, std: float = 0.05) -> torch.nn.Module:
    """ComfyUI's ops skip weight init (torch.empty); this makes the model usable and reproducible
    across processes."""
    parameters = dict(module.named_parameters())
    with torch.no_grad():
        for name, value in deterministic_parameter_values(parameters.items(), seed, std):
            parameters[name].copy_(value.to(parameters[name].dtype))
    return module


def tiny_flux_patcher(
    hidden_size: int = 64,
    num_heads: int = 2,
    depth: int = 2,
    depth_single_blocks: int = 2,
    axes_dim: tuple[int, ...] = (8, 12, 12),
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    *,
    context_in_dim: int = 32,
    vec_in_dim: int = 32,
    guidance_embed: bool = True,
):
    """A ModelPatcher over a tiny comfy.model_base.Flux with deterministic weights (the MODEL type)."""
    import comfy.model_patcher

    shape = FluxShape(
        hidden_size=hidden_size,
        num_heads=num_heads,
        depth=depth,
        depth_single_blocks=depth_single_blocks,
        axes_dim=tuple(axes_dim),
        context_in_dim=context_in_dim,
        vec_in_dim=vec_in_dim,
        guidance_embed=guidance_embed,
    )
    base_model = init_weights_deterministically_(build_flux_base_model(shape, dtype), seed)
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(base_model, load_device=cpu, offload_device=cpu)


def flux_shape_of(patcher) -> FluxShape:
    config = patcher.model.model_config.unet_config
    return FluxShape(
        **{
            k: (tuple(v) if k == "axes_dim" else v)
            for k, v in config.items()
            if k in FluxShape.__dataclass_fields__ and k != "extra"
        }
    )


def random_conditioning(
    seed: int,
    tokens: int = 4,
    context_dim: int = 32,
    pooled_dim: int = 32,
    batch: int = 1,
    guidance: float | None = 3.5,
    **extra,
) -> list:
    """A CONDITIONING value ([[context, {pooled_output, guidance, ...extra}]]) from seeded noise.

    Stands in for CLIPTextEncode with T5/CLIP-L, which cannot be loaded at a tiny size.
    """
    generator = torch.Generator().manual_seed(seed)
    context = torch.randn(batch, tokens, context_dim, generator=generator)
    pooled = torch.randn(batch, pooled_dim, generator=generator)
    options = {"pooled_output": pooled, **extra}
    if guidance is not None:
        options["guidance"] = guidance
    return [[context, options]]


def zero_conditioning(conditioning: list) -> list:
    """Like the core ConditioningZeroOut node: same structure, zero tensors."""
    zeroed = []
    for context, options in conditioning:
        options = dict(options)
        if options.get("pooled_output") is not None:
            options["pooled_output"] = torch.zeros_like(options["pooled_output"])
        zeroed.append([torch.zeros_like(context), options])
    return zeroed


def model_transformer_options(patcher) -> dict:
    """transformer_options as sampling builds them: a clone of the patcher's model_options with
    its wrappers and callbacks merged in (comfy.sampler_helpers.prepare_model_patcher)."""
    import comfy.model_patcher
    import comfy.patcher_extension

    model_options = comfy.model_patcher.create_model_options_clone(patcher.model_options)
    options = model_options.setdefault("transformer_options", {})
    comfy.patcher_extension.merge_nested_dicts(options.setdefault("wrappers", {}), patcher.wrappers, copy_dict1=False)
    comfy.patcher_extension.merge_nested_dicts(options.setdefault("callbacks", {}), patcher.callbacks, copy_dict1=False)
    return options


def flux_forward(
    patcher,
    x: torch.Tensor,
    sigma: float | torch.Tensor,
    context: torch.Tensor,
    pooled: torch.Tensor,
    *,
    guidance: float = 3.5,
    ref_latents: list[torch.Tensor] | None = None,
    ref_latents_method: str | None = None,
    transformer_options: dict | None = None,
) -> torch.Tensor:
    """One raw BaseModel.apply_model call (the denoised prediction), with the patcher's weight
    patches, object patches, wrappers and transformer_options applied as during sampling.

    `ref_latents` are LATENT["samples"]-style tensors; like Flux.extra_conds they go through
    process_latent_in. The model stays loaded (comfy.model_management) after the call.
    """
    import comfy.model_management

    comfy.model_management.load_models_gpu([patcher] + patcher.get_nested_additional_models())
    base_model = patcher.model
    batch = x.shape[0]
    sigma = torch.as_tensor(sigma, dtype=torch.float32).reshape(-1).expand(batch)
    kwargs = {"c_crossattn": context, "y": pooled, "guidance": torch.full((batch,), float(guidance))}
    if ref_latents is not None:
        kwargs["ref_latents"] = [base_model.process_latent_in(latent) for latent in ref_latents]
    if ref_latents_method is not None:
        kwargs["ref_latents_method"] = ref_latents_method
    options = model_transformer_options(patcher)
    options.update(transformer_options or {})
    with torch.no_grad():
        return base_model.apply_model(x, sigma, transformer_options=options, **kwargs)


def flux_sample(
    patcher,
    latent: torch.Tensor,
    positive: list,
    negative: list | None = None,
    *,
    steps: int = 2,
    cfg: float = 1.0,
    seed: int = 0,
    sampler_name: str = "euler",
    scheduler: str = "simple",
    denoise: float = 1.0,
) -> torch.Tensor:
    """comfy.sample.sample as KSampler calls it; returns the sampled LATENT["samples"]."""
    import comfy.sample

    latent = comfy.sample.fix_empty_latent_channels(patcher, latent)
    noise = comfy.sample.prepare_noise(latent, seed)
    negative = zero_conditioning(positive) if negative is None else negative
    with torch.no_grad():
        return comfy.sample.sample(
            patcher,
            noise,
            steps,
            cfg,
            sampler_name,
            scheduler,
            positive,
            negative,
            latent,
            denoise=denoise,
            seed=seed,
            disable_pbar=True,
        )
