"""ComfyUI's SigLIP path (crop=False, all_hidden_states) matches the official HF path the
style encoder was trained on: same layers at the same negative indices, same preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from styleexpert_core import ProjectorConfig, StyleProjector

pytestmark = pytest.mark.comfyui


@pytest.fixture(scope="module")
def hf_twin(tiny_siglip):
    """A transformers SiglipVisionModel carrying the tiny ComfyUI SigLIP's weights."""
    from transformers import SiglipVisionConfig, SiglipVisionModel
    from comfy_harness.tiny_siglip import SiglipShape
    shape = SiglipShape()
    config = SiglipVisionConfig(hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size,
                                num_hidden_layers=shape.num_hidden_layers, num_attention_heads=shape.num_attention_heads,
                                image_size=shape.image_size, patch_size=shape.patch_size,
                                hidden_act="gelu_pytorch_tanh", vision_use_head=False)
    model = SiglipVisionModel(config).eval()
    expected = set(model.state_dict())
    source = tiny_siglip.model.state_dict()
    # transformers versions differ on whether the tower's keys carry the `vision_model.` prefix.
    if not expected & set(source):
        source = {k.removeprefix("vision_model."): v for k, v in source.items()}
    missing, unexpected = model.load_state_dict(source, strict=False)
    assert not missing, missing  # every HF tensor comes from the ComfyUI model
    assert all("encoder" not in k for k in unexpected), unexpected
    return model


def test_hidden_state_indices_and_projection_agree(tiny_siglip, hf_twin):
    pixels = torch.rand(2, 3, 56, 56) * 2 - 1
    with torch.inference_mode():
        hf = hf_twin(pixel_values=pixels, output_hidden_states=True).hidden_states  # embeddings + 27 layers
        comfy = tiny_siglip.model(pixel_values=pixels, intermediate_output="all")[1]  # 27 layers
    assert len(hf) == 28 and comfy.shape[1] == 27
    for i in (-2, -11, -20):
        torch.testing.assert_close(comfy[:, i], hf[i], rtol=1e-4, atol=1e-4)
    projector = StyleProjector(ProjectorConfig(num_tokens=16, style_tokens=2, width=32, out_dim=8))
    with torch.no_grad():
        torch.testing.assert_close(projector(comfy), projector(hf), rtol=1e-4, atol=1e-4)


def test_crop_none_preprocessing_matches_hf_processor(tiny_siglip):
    """ComfyUI's clip_preprocess with crop=False vs SiglipImageProcessor: resize to square, no crop."""
    import comfy.clip_vision
    from transformers import SiglipImageProcessor
    rng = np.random.default_rng(0)
    # A smooth, non-square image: resampling kernels differ only in detail.
    y, x = np.mgrid[0:84, 0:140]
    arr = np.stack([np.sin(x / 9.0), np.cos(y / 7.0), np.sin((x + y) / 11.0)], -1) * 0.4 + 0.5
    arr = (arr * 255 + rng.normal(0, 2, arr.shape)).clip(0, 255).astype(np.uint8)
    processor = SiglipImageProcessor(size={"height": 56, "width": 56}, resample=Image.BICUBIC,
                                     image_mean=[0.5] * 3, image_std=[0.5] * 3)
    hf = processor(images=Image.fromarray(arr), return_tensors="pt")["pixel_values"]
    image = torch.from_numpy(arr).float()[None] / 255
    ours = comfy.clip_vision.clip_preprocess(image, size=56, mean=[0.5] * 3, std=[0.5] * 3, crop=False)
    assert ours.shape == hf.shape == (1, 3, 56, 56)
    assert (ours - hf).abs().mean() < 0.02  # values span [-1, 1]
    # With crop=True (ComfyUI's default) the image would be cut to its centre: clearly different.
    cropped = comfy.clip_vision.clip_preprocess(image, size=56, mean=[0.5] * 3, std=[0.5] * 3, crop=True)
    assert (cropped - hf).abs().mean() > 3 * (ours - hf).abs().mean()
