"""MegaStyle-Encoder: SigLIP fine-tuned end to end on its pooled output, negatives gathered over ranks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.config import build_config
from training.stage1.megastyle import MegaStyleConfig, main
from tests.training.test_cache_scale import free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def siglip_with_head(tmp_path):
    """A tiny SigLIP with its attention-pooling head, 16 wide like the cached style-text embeddings."""
    from transformers import SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    config = SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                                image_size=32, patch_size=8, vision_use_head=True)
    SiglipVisionModel(config).save_pretrained(tmp_path / "siglip")
    return tmp_path / "siglip"


def args(tiny, siglip, out, **kw):
    values = dict(manifest=tiny["manifest"], siglip=siglip, text_cache_dir=tiny["stage1_cache"], out_dir=out,
                  styles_per_batch=2, images_per_style=2, val_fraction=0.34, steps=1, warmup_steps=1,
                  mixed_precision="no", device="cpu", loss_check=True, lr=1e-3, **kw)
    return {k: str(v) for k, v in values.items()}


def test_two_ranks_gather_negatives_and_train_head_and_last_layer(tiny, siglip_with_head, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "-m", "training.stage1.megastyle",
           *(f"--{k}={v}" for k, v in args(tiny, siglip_with_head, tmp_path / "two").items())]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / "two" / f"loss_check.rank{r}.json").read_text()) for r in (0, 1)]
    # every rank computes the loss of the whole global batch (its own rows + the other rank's negatives) ...
    assert ranks[0]["loss"] == pytest.approx(ranks[1]["loss"], abs=1e-6)
    assert all(abs(r["local_loss"] - r["loss"]) > 1e-3 for r in ranks)  # ... not of its own rows alone
    # ... which is the loss one process computes on that global batch
    one = main(build_config(MegaStyleConfig, {**args(tiny, siglip_with_head, tmp_path / "one"),
                                              "gradient_checkpointing": "false"}))
    assert one["train"][0]["loss"] == pytest.approx(ranks[0]["loss"], rel=1e-5)
    # end to end: the pooling head, the last and the first layer get gradients (checkpointing on)
    assert all(norm > 0 for r in ranks for norm in r["grad_norms"].values())

    from training.evaluate.loaders import load_megastyle_encoder

    folder = tmp_path / "two" / "megastyle_encoder"
    encoder = load_megastyle_encoder(folder, folder / "model.safetensors")  # what evaluation loads
    from transformers import SiglipVisionModel

    start = SiglipVisionModel.from_pretrained(siglip_with_head).state_dict()
    assert not torch.equal(encoder.model.state_dict()["head.probe"], start["head.probe"])  # the head trained


def test_bf16_autocast_step(tiny, siglip_with_head, tmp_path):
    result = main(build_config(MegaStyleConfig, {**args(tiny, siglip_with_head, tmp_path / "bf16"),
                                                 "mixed_precision": "bf16"}))
    assert torch.isfinite(torch.tensor(result["train"][0]["loss"])) and len(result["val"]) == 1
    check = json.loads((tmp_path / "bf16" / "loss_check.rank0.json").read_text())
    assert check["grad_norms"]["head"] > 0
