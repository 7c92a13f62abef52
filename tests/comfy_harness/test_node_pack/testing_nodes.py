"""V3 nodes for end-to-end tests: seeded conditioning, tiny Flux/SigLIP models, test images and
an output node that reports what it was given (shapes, stats, patches) through /history."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import folder_paths
import torch
from comfy_api.latest import ComfyExtension, io, ui

CATEGORY = "StyleExpert/testing"


def _harness_module(name: str):
    """Load tests/comfy_harness/<name>.py, which sits next to this pack in the repository.

    The pack is symlinked into custom_nodes, so resolve() finds the repository copy; the module
    gets a private name so it never clashes with the harness's own import in the test process.
    """
    module_name = f"styleexpert_testing_{name}"
    if module_name not in sys.modules:
        path = Path(__file__).resolve().parent.parent / f"{name}.py"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


class SeededConditioning(io.ComfyNode):
    """Replaces CLIPTextEncode: T5/CLIP-L cannot be loaded at a tiny size."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StyleExpertTestConditioning",
            display_name="Test conditioning (seeded noise)",
            category=CATEGORY,
            inputs=[
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1, control_after_generate=False),
                io.Int.Input("tokens", default=4, min=1, max=512),
                io.Int.Input(
                    "context_dim", default=32, min=1, max=8192, tooltip="T5 width of the model (4096 for FLUX.1)"
                ),
                io.Int.Input("pooled_dim", default=32, min=1, max=4096, tooltip="CLIP-L pooled width (768 for FLUX.1)"),
                io.Float.Input("guidance", default=3.5, min=0.0, max=100.0),
            ],
            outputs=[io.Conditioning.Output()],
        )

    @classmethod
    def execute(cls, seed, tokens, context_dim, pooled_dim, guidance) -> io.NodeOutput:
        tiny_flux = _harness_module("tiny_flux")
        return io.NodeOutput(tiny_flux.random_conditioning(seed, tokens, context_dim, pooled_dim, guidance=guidance))


class TinyFluxModel(io.ComfyNode):
    """A tiny comfy.model_base.Flux with deterministic weights, as a MODEL."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StyleExpertTestTinyFlux",
            display_name="Test tiny Flux model",
            category=CATEGORY,
            inputs=[
                io.Int.Input("hidden_size", default=64, min=8, max=4096),
                io.Int.Input("num_heads", default=2, min=1, max=64),
                io.Int.Input("depth", default=2, min=1, max=64),
                io.Int.Input("depth_single_blocks", default=2, min=0, max=64),
                io.String.Input("axes_dim", default="8,12,12", tooltip="even numbers summing to hidden_size/num_heads"),
                io.Int.Input("context_in_dim", default=32, min=1, max=8192),
                io.Int.Input("vec_in_dim", default=32, min=1, max=4096),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1, control_after_generate=False),
            ],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def execute(cls, hidden_size, num_heads, depth, depth_single_blocks, axes_dim, context_in_dim, vec_in_dim, seed):
        tiny_flux = _harness_module("tiny_flux")
        axes = tuple(int(part) for part in axes_dim.split(","))
        model = tiny_flux.tiny_flux_patcher(
            hidden_size,
            num_heads,
            depth,
            depth_single_blocks,
            axes,
            seed,
            context_in_dim=context_in_dim,
            vec_in_dim=vec_in_dim,
        )
        return io.NodeOutput(model)


class TinyClipVision(io.ComfyNode):
    """A tiny SigLIP ClipVisionModel (CLIP_VISION): the full-size encode takes ~10 s on CPU."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StyleExpertTestTinyClipVision",
            display_name="Test tiny SigLIP vision model",
            category=CATEGORY,
            inputs=[
                io.Int.Input("num_hidden_layers", default=27, min=1, max=64),
                io.Int.Input("hidden_size", default=32, min=8, max=2048),
                io.Int.Input("num_attention_heads", default=2, min=1, max=32),
                io.Int.Input("intermediate_size", default=64, min=8, max=8192),
                io.Int.Input("image_size", default=56, min=14, max=512),
                io.Int.Input("patch_size", default=14, min=1, max=64),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1, control_after_generate=False),
            ],
            outputs=[io.ClipVision.Output()],
        )

    @classmethod
    def execute(
        cls, num_hidden_layers, hidden_size, num_attention_heads, intermediate_size, image_size, patch_size, seed
    ):
        tiny_siglip = _harness_module("tiny_siglip")
        shape = tiny_siglip.SiglipShape(
            num_hidden_layers, hidden_size, num_attention_heads, intermediate_size, image_size, patch_size
        )
        config_dir = Path(folder_paths.get_temp_directory()) / "styleexpert_test_configs"
        return io.NodeOutput(tiny_siglip.tiny_siglip_model(config_dir, shape, seed))


class SeededImage(io.ComfyNode):
    """A deterministic IMAGE (smooth seeded colour noise), so tests need no uploaded files."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StyleExpertTestImage",
            display_name="Test image (seeded)",
            category=CATEGORY,
            inputs=[
                io.Int.Input("width", default=64, min=8, max=4096, step=8),
                io.Int.Input("height", default=64, min=8, max=4096, step=8),
                io.Int.Input("batch_size", default=1, min=1, max=64),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1, control_after_generate=False),
            ],
            outputs=[io.Image.Output()],
        )

    @classmethod
    def execute(cls, width, height, batch_size, seed):
        generator = torch.Generator().manual_seed(seed)
        coarse = torch.rand(batch_size, 3, max(1, height // 8), max(1, width // 8), generator=generator)
        image = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
        return io.NodeOutput(image.movedim(1, -1).clamp(0, 1))


class InspectValue(io.ComfyNode):
    """Output node: reports a JSON summary of any input in /history (`outputs[id]["text"][0]`)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StyleExpertTestInspect",
            display_name="Test inspect (JSON summary)",
            category=CATEGORY,
            inputs=[io.AnyType.Input("value")],
            outputs=[],
            is_output_node=True,
        )

    @classmethod
    def fingerprint_inputs(cls, **kwargs):
        return float("nan")  # always re-run: the summary is the point of the node

    @classmethod
    def execute(cls, value):
        return io.NodeOutput(ui=ui.PreviewText(json.dumps(summarize(value))))


class CorruptImage(io.ComfyNode):
    """An IMAGE made bad on purpose: NaN or Inf in its first pixel, and/or fewer channels."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StyleExpertTestCorruptImage",
            display_name="Test corrupt image",
            category=CATEGORY,
            inputs=[
                io.Image.Input("image"),
                io.Combo.Input("fill", options=["none", "nan", "inf"], default="none"),
                io.Int.Input("channels", default=3, min=1, max=4),
            ],
            outputs=[io.Image.Output()],
        )

    @classmethod
    def execute(cls, image, fill, channels):
        image = image[..., :channels].clone()
        if fill != "none":
            image[0, 0, 0, 0] = float(fill)
        return io.NodeOutput(image)


class TruncateFile(io.ComfyNode):
    """Passes `value` through after shortening models/<folder>/<name> in place, keeping its mtime:
    a checkpoint changed on disk while the server holds it."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StyleExpertTestTruncateFile",
            display_name="Test truncate file in place",
            category=CATEGORY,
            inputs=[
                io.AnyType.Input("value"),
                io.String.Input("folder", default="styleexpert"),
                io.String.Input("name"),
                io.Int.Input("size", default=1000, min=0),
            ],
            outputs=[io.AnyType.Output()],
        )

    @classmethod
    def execute(cls, value, folder, name, size):
        import os

        path = folder_paths.get_full_path_or_raise(folder, name)
        stat = os.stat(path)
        os.truncate(path, size)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        return io.NodeOutput(value)


class LoadedModels(io.ComfyNode):
    """Output node: ComfyUI's loaded-model list after its input ran, as JSON: one entry per model,
    {"class": real model class or null, "dead": patcher gone but model alive (a leak)}."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StyleExpertTestLoadedModels",
            display_name="Test loaded models (JSON)",
            category=CATEGORY,
            inputs=[io.AnyType.Input("after", optional=True)],
            outputs=[],
            is_output_node=True,
        )

    @classmethod
    def fingerprint_inputs(cls, **kwargs):
        return float("nan")

    @classmethod
    def execute(cls, after=None):
        import comfy.model_management as mm

        models = []
        for loaded in mm.current_loaded_models:
            real = loaded.real_model() if loaded.real_model is not None else None
            models.append({"class": type(real).__name__ if real is not None else None, "dead": real is not None and loaded.model is None})
        return io.NodeOutput(ui=ui.PreviewText(json.dumps(models)))


def summarize(value, depth: int = 0):
    """JSON-able description of ComfyUI values: tensors by shape/dtype/stats, models by config and patches."""
    if depth > 6:
        return {"type": type(value).__name__}
    if isinstance(value, torch.Tensor):
        summary = {"type": "tensor", "shape": list(value.shape), "dtype": str(value.dtype).replace("torch.", "")}
        if value.numel() and not value.is_complex():
            as_float = value.detach().float()
            summary.update(
                mean=as_float.mean().item(),
                std=as_float.std().item() if value.numel() > 1 else 0.0,
                min=as_float.min().item(),
                max=as_float.max().item(),
            )
        return summary
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): summarize(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [summarize(v, depth + 1) for v in value[:16]]
    if hasattr(value, "model") and hasattr(value, "patches") and hasattr(value, "model_options"):
        return _summarize_model_patcher(value)
    kind = type(value).__name__
    if kind == "ClipVisionModel":
        return {
            "type": "CLIP_VISION",
            "image_size": value.image_size,
            "all_hidden_states": value.return_all_hidden_states,
        }
    if kind == "Output":  # comfy.clip_vision.Output
        return {"type": "CLIP_VISION_OUTPUT", **{k: summarize(v, depth + 1) for k, v in vars(value).items()}}
    if kind == "VAE":
        return {
            "type": "VAE",
            "model": type(value.first_stage_model).__name__,
            "latent_channels": value.latent_channels,
        }
    return {"type": kind, "repr": repr(value)[:200]}


def _summarize_model_patcher(patcher) -> dict:
    config = getattr(patcher.model, "model_config", None)
    unet_config = {
        k: v
        for k, v in (getattr(config, "unet_config", None) or {}).items()
        if isinstance(v, (int, float, str, bool, list))
    }
    transformer_options = patcher.model_options.get("transformer_options", {})
    return {
        "type": "MODEL",
        "class": type(patcher.model).__name__,
        "unet_config": unet_config,
        "patch_keys": sorted(str(k) for k in patcher.patches),
        "object_patches": sorted(patcher.object_patches),
        "wrappers": {str(k): sorted(v) for k, v in patcher.wrappers.items()},
        "additional_models": sorted(patcher.additional_models),
        "transformer_options": sorted(transformer_options),
        "patches": {k: len(v) for k, v in transformer_options.get("patches", {}).items()},
    }


class TestingExtension(ComfyExtension):
    async def get_node_list(self):
        return [SeededConditioning, TinyFluxModel, TinyClipVision, SeededImage, InspectValue, LoadedModels,
                CorruptImage, TruncateFile]


async def comfy_entrypoint() -> TestingExtension:
    return TestingExtension()
