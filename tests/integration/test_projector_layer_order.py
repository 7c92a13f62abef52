"""Encode Style builds the projector in the checkpoint's stored layer order (real ComfyUI, in process)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from styleexpert_core import StyleProjector, load_native
from styleexpert_files import TINY_PROJECTOR, write_tiny_checkpoint

pytestmark = pytest.mark.comfyui
REVERSED = dataclasses.replace(TINY_PROJECTOR, layers=(-20, -11, -2))


def run(node_class, **inputs):
    from comfy_api.latest import io
    return node_class.PREPARE_CLASS_CLONE({io.Hidden.unique_id: "1"}).execute(**inputs)


def test_encode_style_follows_the_stored_projector_layer_order(pack, comfy, tiny_siglip):
    folder = Path(comfy.folder_paths.get_folder_paths("styleexpert")[0])
    path = write_tiny_checkpoint(folder, "reversed_projector.safetensors", projector=REVERSED)
    expert = run(pack["StyleExpertLoader"], ckpt_name=path.name).result[0]
    images = torch.rand(2, 56, 56, 3, generator=torch.Generator().manual_seed(11))
    latents = run(pack["StyleExpertEncodeStyle"], styleexpert=expert, clip_vision=tiny_siglip, images=images,
                  mode="per image").result[0].values

    trained = StyleProjector(REVERSED)
    trained.load_state_dict(load_native(path).projector)
    with torch.inference_mode():
        hidden = tiny_siglip.encode_image(images, crop=False)["all_hidden_states"].float()
        torch.testing.assert_close(latents, trained(hidden), rtol=1e-5, atol=1e-5)
