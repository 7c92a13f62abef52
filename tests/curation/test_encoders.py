import numpy as np
import pytest
import torch
from PIL import Image

from styleexpert_core.errors import CheckpointError
from training.data.errors import ConfigError, InputError, MissingWeightsError
from training.evaluate.encoders import (AestheticPredictor, CSDEncoder, Preprocess, SiglipMeanPoolEncoder,
                                        StyleExpertEncoder)
from training.evaluate.loaders import (build_encoder, load_megastyle_encoder, load_siglip_vision,
                                       load_styleexpert_encoder, read_state_dict)
from styleexpert_core.metrics import aesthetic_mlp_from_state_dict


def _images(n, size=60):
    rng = np.random.default_rng(n)
    return [Image.fromarray(rng.integers(0, 256, (size, size + 10, 3), dtype=np.uint8)) for _ in range(n)]


def test_preprocess_siglip_and_clip_styles():
    image = Image.fromarray(np.full((20, 40, 3), 255, dtype=np.uint8))
    x = Preprocess(8)([image])
    assert x.shape == (1, 3, 8, 8)
    torch.testing.assert_close(x, torch.ones_like(x))  # (1 - 0.5) / 0.5
    assert Preprocess(8, center_crop=True)([image, image]).shape == (2, 3, 8, 8)
    with pytest.raises(InputError, match="no images"):
        Preprocess(8)([])


def test_siglip_mean_pool_matches_the_model(tiny_siglip):
    encoder = SiglipMeanPoolEncoder(tiny_siglip)
    images = _images(3)
    out = encoder.encode(images)
    assert out.shape == (3, 32)
    with torch.no_grad():
        expected = tiny_siglip(pixel_values=encoder.preprocess(images)).last_hidden_state.mean(1)
    torch.testing.assert_close(out, expected)


def test_megastyle_encoder_loads_an_old_style_state_dict(tiny_siglip, tiny_siglip_dir, tmp_path):
    # Checkpoints saved with older transformers carry a "vision_model." prefix (and DDP a "module." one).
    state = {f"module.vision_model.{k}": v.clone() for k, v in tiny_siglip.state_dict().items()}
    torch.save(state, tmp_path / "megastyle_encoder.pth")
    encoder = load_megastyle_encoder(tiny_siglip_dir, tmp_path / "megastyle_encoder.pth")
    images = _images(2)
    out = encoder.encode(images)
    with torch.no_grad():
        pooled = tiny_siglip(pixel_values=encoder.preprocess(images)).pooler_output
    torch.testing.assert_close(out, torch.nn.functional.normalize(pooled, dim=-1))
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2))


def test_megastyle_mismatched_weights_are_refused(tiny_siglip_dir, tmp_path):
    torch.save({"vision_model.embeddings.patch_embedding.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="missing key"):
        load_megastyle_encoder(tiny_siglip_dir, tmp_path / "bad.pth")
    with pytest.raises(MissingWeightsError, match="absent.pth"):
        load_megastyle_encoder(tiny_siglip_dir, tmp_path / "absent.pth")
    with pytest.raises(MissingWeightsError, match="weights not found at"):
        load_siglip_vision(tmp_path / "no_such_model")


def _tiny_projector(layers=(-2, -11, -20)):
    from styleexpert_core.config import ProjectorConfig
    from styleexpert_core.projector import StyleProjector

    torch.manual_seed(2)
    return StyleProjector(ProjectorConfig(layers=layers, num_tokens=16, style_tokens=2, width=32, out_dim=4))


def test_styleexpert_encoder_feeds_hf_hidden_states_to_the_projector(tiny_siglip):
    projector = _tiny_projector()
    encoder = StyleExpertEncoder(tiny_siglip, projector)
    images = _images(2)
    out = encoder.encode(images)
    assert out.shape == (2, 3 * 2 * 4)
    with torch.no_grad():
        hidden = tiny_siglip(pixel_values=encoder.preprocess(images), output_hidden_states=True).hidden_states
        expected = projector(tuple(hidden))  # the projector's per-layer (sequence) input path
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("layers", [(-2, -11, -20), (-20, -11, -2)])  # the official order, and a stored other one
def test_styleexpert_encoder_from_a_native_checkpoint(tiny_siglip_dir, tmp_path, layers):
    from styleexpert_core.formats import StyleExpertCheckpoint, save_native

    projector = _tiny_projector(layers)
    ckpt = StyleExpertCheckpoint(projector=projector.state_dict(), projector_config=projector.config)
    save_native(ckpt, tmp_path / "projector.safetensors")
    encoder = load_styleexpert_encoder(tiny_siglip_dir, tmp_path / "projector.safetensors")
    assert encoder.projector.config.layers == layers
    images = _images(2)
    direct = StyleExpertEncoder(load_siglip_vision(tiny_siglip_dir), projector).encode(images)
    torch.testing.assert_close(encoder.encode(images), direct)


def test_csd_encoder_and_aesthetic_predictor(tiny_clip, tmp_path):
    from transformers import CLIPVisionModel

    torch.manual_seed(3)
    clip = CLIPVisionModel(tiny_clip.config).eval()
    head = torch.randn(32, 8)
    csd = CSDEncoder(clip, head)
    images = _images(3)
    out = csd.encode(images)
    with torch.no_grad():
        pooled = clip(pixel_values=csd.preprocess(images)).pooler_output
    torch.testing.assert_close(out, torch.nn.functional.normalize(pooled @ head, dim=-1))
    with pytest.raises(InputError, match=r"expected \[32, style_dim\]"):
        CSDEncoder(clip, torch.randn(16, 8))

    # LAION layout: layers.{0,2,4,6,7} Linear, Dropouts in between (no weights).
    dims = [16, 12, 8, 6, 4, 1]
    sd = {}
    for index, (i, o) in zip([0, 2, 4, 6, 7], zip(dims, dims[1:])):
        sd[f"layers.{index}.weight"], sd[f"layers.{index}.bias"] = torch.randn(o, i), torch.randn(o)
    torch.save(sd, tmp_path / "aesthetic.pth")
    mlp = aesthetic_mlp_from_state_dict(read_state_dict(tmp_path / "aesthetic.pth", "aesthetic"), "aesthetic.pth")
    predictor = AestheticPredictor(tiny_clip, mlp)
    scores = predictor.score(images)
    with torch.no_grad():
        image_embeds = tiny_clip(pixel_values=predictor.preprocess(images)).image_embeds
        embeds = torch.nn.functional.normalize(image_embeds, dim=-1)
        expected = embeds
        for index in [0, 2, 4, 6, 7]:
            expected = expected @ sd[f"layers.{index}.weight"].T + sd[f"layers.{index}.bias"]
    torch.testing.assert_close(scores, expected.reshape(-1))


def test_encoder_factory_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown encoder"):
        build_encoder("dino", tmp_path)
    with pytest.raises(ConfigError, match="needs --weights"):
        build_encoder("csd", tmp_path)
    torch.save({"x": [1, 2]}, tmp_path / "not_tensors.pth")
    with pytest.raises(CheckpointError, match="dict of tensors"):
        read_state_dict(tmp_path / "not_tensors.pth", "thing")
