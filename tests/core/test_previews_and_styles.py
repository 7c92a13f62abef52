"""Preview cards for checkpoints (CLI and export), saved style files, and which files are aesthetic predictors."""

import io

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from styleexpert_core import MoEConfig, ProjectorConfig, StyleExpertCheckpoint, StyleProjector, save_native
from styleexpert_core.cli import main
from styleexpert_core.errors import CheckpointError, InputError
from styleexpert_core.formats.files import tensor_file_keys
from styleexpert_core.metrics import is_aesthetic_predictor
from styleexpert_core.preview_card import checkpoint_card, router_fingerprint
from styleexpert_core.style_file import load_style, save_style, thumbnail_png

from .helpers import random_tensors

PROJ = ProjectorConfig(num_tokens=16, style_tokens=2, width=32, out_dim=4)
CONFIG = MoEConfig(num_experts=6, rank=4, top_k=2, cond_dim=PROJ.cond_dim)


def checkpoint(seed: int) -> StyleExpertCheckpoint:
    layers = {f"transformer_blocks.{i}.attn.to_q": random_tensors(CONFIG, 16, 16, seed=seed + i) for i in range(3)}
    torch.manual_seed(seed)
    return StyleExpertCheckpoint(CONFIG, layers, StyleProjector(PROJ).state_dict(), PROJ, {"source": "native"})


def test_cli_preview_writes_a_card_beside_the_file_and_never_overwrites(tmp_path, capsys):
    ckpt = tmp_path / "my_styles.safetensors"
    save_native(checkpoint(0), ckpt)
    assert main(["preview", str(ckpt)]) == 0
    card = tmp_path / "my_styles.preview.png"  # the name ComfyUI's Model Library looks for
    with Image.open(card) as img:
        assert img.size == (384, 384) and len(np.unique(np.asarray(img.convert("RGB")).reshape(-1, 3), axis=0)) > 20
    before = card.read_bytes()
    assert main(["preview", str(ckpt)]) == 2 and "--force" in capsys.readouterr().err
    save_native(checkpoint(7), ckpt)  # other weights: another fingerprint
    assert main(["preview", str(ckpt), "--force"]) == 0
    assert card.read_bytes() != before


def test_router_fingerprint_tells_checkpoints_apart():
    a, b = router_fingerprint(checkpoint(0)), router_fingerprint(checkpoint(1))
    assert a.shape == (3, 6) and a.min() == 0 and a.max() == 1
    assert not np.allclose(a, b)
    assert checkpoint_card(checkpoint(0), "x.safetensors").size == (384, 384)


@pytest.mark.bad_input
def test_cli_preview_of_a_non_checkpoint_fails_cleanly(tmp_path, capsys):
    other = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(2, 2)}, str(other))
    assert main(["preview", str(other)]) == 2
    assert "not a StyleExpert checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "other.preview.png").exists()


def test_style_file_round_trip(tmp_path):
    latents = torch.randn(2, 24)
    images = torch.rand(3, 40, 60, 3)
    png = thumbnail_png(images)
    path = tmp_path / "ink_00001_.safetensors"
    save_style(path, latents, "ink", "0123456789ab", png)
    saved = load_style(path)
    assert torch.equal(saved.latents, latents) and saved.name == "ink" and saved.encoder_id == "0123456789ab"
    assert saved.thumbnail_png == png
    with Image.open(io.BytesIO(png)) as img:
        assert img.size == (256, 256)
    # The CLI's bake reads the same tensor name: a saved style is a valid --style-latent file.
    assert tensor_file_keys(path) == {"style_latent"}


@pytest.mark.bad_input
def test_style_files_refuse_bad_input(tmp_path):
    with pytest.raises(InputError, match="empty or not RGB"):
        thumbnail_png(torch.zeros(0, 8, 8, 3))
    with pytest.raises(InputError, match=r"\[N, cond_dim\]"):
        save_style(tmp_path / "a.safetensors", torch.zeros(24), "a", None, b"")
    with pytest.raises(Exception, match="NaN|Inf|finite"):
        save_style(tmp_path / "b.safetensors", torch.full((1, 24), float("nan")), "b", None, b"")
    assert not any(tmp_path.iterdir())  # nothing half-written
    save_file({"layers.0.weight": torch.zeros(1, 2)}, str(tmp_path / "c.safetensors"))
    with pytest.raises(CheckpointError, match="not a saved StyleExpert style"):
        load_style(tmp_path / "c.safetensors")


def test_aesthetic_predictors_are_told_from_checkpoints_by_their_keys(tmp_path):
    mlp = {"layers.0.weight": torch.zeros(4, 8), "layers.0.bias": torch.zeros(4),
           "layers.2.weight": torch.zeros(1, 4), "layers.2.bias": torch.zeros(1)}
    save_file(mlp, str(tmp_path / "predictor.safetensors"))
    torch.save(mlp, tmp_path / "sac+logos+ava1-l14-linearMSE.pth")
    save_native(checkpoint(0), tmp_path / "ckpt.safetensors")
    torch.save({"model_state_dict": {"proj_model.x": torch.zeros(1)}}, tmp_path / "encoder.pt")
    found = {p.name: is_aesthetic_predictor(tensor_file_keys(p)) for p in tmp_path.iterdir()}
    assert found == {"predictor.safetensors": True, "sac+logos+ava1-l14-linearMSE.pth": True,
                     "ckpt.safetensors": False, "encoder.pt": False}
    assert not is_aesthetic_predictor(set()) and not is_aesthetic_predictor({"layers.0.weight", "head.weight"})
