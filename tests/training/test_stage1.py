"""Stage 1 smoke runs: saved keys and metadata, resume, the MegaStyle objective, full fine-tune."""

import json

import torch
from safetensors import safe_open

from styleexpert_core.formats import load_native
from training.stage1.train import Stage1Config, main

SMALL = dict(style_tokens=2, out_dim=4, styles_per_batch=3, images_per_style=2, val_fraction=0.34,
             steps=2, eval_every=1, log_every=1, warmup_steps=1)


def test_two_steps_save_a_native_projector_and_resume(tiny, tmp_path):
    out = tmp_path / "s1"
    result = main(Stage1Config(cache_dir=str(tiny["stage1_cache"]), out_dir=str(out), **SMALL))
    ckpt = load_native(result["projector"])
    assert ckpt.config is None and not ckpt.layers  # projector only
    assert ckpt.projector_config.layers == (-2, -11, -20) and ckpt.projector_config.cond_dim == 3 * 2 * 4
    assert sorted(ckpt.projector) == sorted(
        f"{kind}.{layer}{sub}.{p}" for layer in (-2, -11, -20) for p in ("weight", "bias")
        for kind, sub in (("embedding_linears", ".0"), ("layer_norms", ""), ("projections", "")))
    with safe_open(result["projector"], "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "styleexpert" and json.loads(meta["styleexpert.projector"])["num_tokens"] == 16
    assert [r["step"] for r in result["val"]] == [0, 1, 2]
    assert {"map", "recall@1", "recall@5", "recall@10"} <= set(result["val"][-1])
    assert (out / "train_state.pt").is_file()

    again = main(Stage1Config(cache_dir=str(tiny["stage1_cache"]), out_dir=str(out), resume=True,
                              **{**SMALL, "steps": 3}))
    assert [r["step"] for r in again["train"]] == [1, 2, 3]  # continued at step 3, not from 0
    assert not torch.equal(load_native(again["projector"]).projector["projections.-2.weight"],
                           ckpt.projector["projections.-2.weight"])


def test_megastyle_objective_with_cached_text(tiny, tmp_path):
    result = main(Stage1Config(cache_dir=str(tiny["stage1_cache"]), out_dir=str(tmp_path), loss="megastyle",
                               optimizer="adamw", **SMALL))
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in result["train"])
    assert "text_align" in torch.load(tmp_path / "train_state.pt", weights_only=True)


def test_full_siglip_finetune_reads_images_and_saves_the_tower(tiny, tmp_path):
    siglip_dir = tmp_path / "siglip"
    tiny["siglip"].model.save_pretrained(siglip_dir)
    before = tiny["siglip"].model.state_dict()["embeddings.patch_embedding.weight"].clone()
    main(Stage1Config(manifest=str(tiny["manifest"]), siglip=str(siglip_dir), finetune_siglip=True, siglip_lr=1e-2,
                      out_dir=str(tmp_path / "ft"), **SMALL))
    from transformers import SiglipVisionModel

    tuned = SiglipVisionModel.from_pretrained(tmp_path / "ft" / "siglip_finetuned")
    assert not torch.equal(tuned.state_dict()["embeddings.patch_embedding.weight"], before)
