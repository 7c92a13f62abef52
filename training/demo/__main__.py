"""End-to-end demo on CPU, no downloads: procedural styles -> stage 1 -> stage 2 -> native file.

    python -m training.demo --out runs/demo            # ~3-4 min on 2 CPU cores
    python -m training.demo --out runs/demo --stage1_steps=300 --stage2_steps=300   # faster

What runs, and what is measured (numbers in the final JSON line on stdout):

1. Data. Procedural styles (``styles.py``) over procedural content, written as PNGs and JSONL
   manifests. Stage-1 images use colour jitter 0.75: three of four images of a style get a
   random palette, so colour is a weak cue. Held-out styles never appear in training.
2. Frozen backbones built in code (``backbones.py``): a 20-layer SigLIP whose weights are a
   constructed Gabor-energy front end (its tokens carry local texture energy, as a pretrained
   SigLIP's carry semantics), a fixed invertible patchify "VAE", a byte-level text encoder.
3. Stage 1 trains the core ``StyleProjector`` (the module the ComfyUI nodes load) on cached
   SigLIP features with the label-masked InfoNCE. Retrieval mAP on the held-out styles:
   ``stage1_map_trained`` (final step) vs ``stage1_map_best_baseline`` = best of colour
   histogram, random-conv Gram and the *untrained* projector (step 0). Pooled SigLIP
   (mean+std) is reported too.
4. A tiny Flux is trained on the identity edit (a stand-in for pretrained Kontext,
   ``base_model.py``), then frozen. Stage 2 caches latents and frozen style latents (stage-1
   projector on the reference image) and trains MoE-LoRA experts (core ``inject_moe``) on the
   stylisation triplets of 16 training styles.
5. ``stage2_loss_correct_style`` / ``stage2_loss_shuffled_style``: flow-matching loss on
   held-out triplets (new contents) with the reference's own style latent vs. a latent of a
   different style, same noise and timesteps. The gap is how much the experts use the latent.

Plots go to ``<out>/plots``; the exported native checkpoint to ``<out>/stage2``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from styleexpert_core.metrics import retrieval_metrics

from ..checkpoints import load_projector_checkpoint
from ..config import check, config_main
from ..data.backbones import ProjectedStyle
from ..data.cache import CacheReader, cache_style_hidden, cache_triplets, TripletCacheSpec
from ..data.images import load_square
from ..data.triplets import read_triplets
from ..stage1.data import CachedHidden
from ..stage1.train import Stage1Config
from ..stage1.train import main as train_stage1
from ..stage2.train import Stage2Config
from ..stage2.train import main as train_stage2
from . import baselines, plots
from .backbones import ByteText, PatchVAE, gabor_siglip
from .base_model import pretrain_base
from .dataset import write_split
from .styles import make_triplets, sample_styles

log = logging.getLogger("training.demo")


@dataclass(frozen=True)
class DemoConfig:
    out: str = "runs/demo"
    seed: int = 0
    threads: int = 1  # intra-op threads; 1 is faster for these tiny ops and robust on a shared box
    image_size: int = 64
    # stage 1 data and training
    train_styles: int = 120
    heldout_styles: int = 40
    images_per_style: int = 16
    colour_jitter: float = 0.75
    stage1_steps: int = 400
    stage1_lr: float = 3e-3
    stage1_out_dim: int = 32
    styles_per_batch: int = 32
    # stage 2 data and training
    stage2_styles: int = 16
    stage2_train_per_style: int = 32
    stage2_val_per_style: int = 4
    base_steps: int = 300
    stage2_steps: int = 600
    stage2_lr: float = 2e-3
    stage2_experts: int = 16
    stage2_rank: int = 4
    stage2_batch: int = 8

    def __post_init__(self) -> None:
        check(self.stage2_styles <= self.train_styles, "stage2_styles must be <= train_styles.")
        check(self.image_size % 16 == 0, "image_size must be a multiple of 16.")


def write_data(cfg: DemoConfig, root: Path) -> dict[str, Path]:
    styles = sample_styles(cfg.train_styles + cfg.heldout_styles, seed=cfg.seed)
    train, held = styles[: cfg.train_styles], styles[cfg.train_styles:]
    size, jitter = cfg.image_size, cfg.colour_jitter
    s1_train = make_triplets(train, cfg.images_per_style, size=size, seed=cfg.seed + 1, colour_jitter=jitter)
    s1_held = make_triplets(held, cfg.images_per_style, size=size, seed=cfg.seed + 2, colour_jitter=jitter)
    s2 = train[: cfg.stage2_styles]  # stage 2 learns styles the encoder was trained on; contents are new
    s2_train = make_triplets(s2, cfg.stage2_train_per_style, size=size, seed=cfg.seed + 3)
    s2_val = make_triplets(s2, cfg.stage2_val_per_style, size=size, seed=cfg.seed + 4)
    plots.image_grid([s1_train.target[s * cfg.images_per_style: s * cfg.images_per_style + 8] for s in range(8)],
                     root / "plots" / "styles_grid.png")
    plots.image_grid([s2_val.content[:8], s2_val.target[:8]], root / "plots" / "stage2_content_vs_target.png")
    return {"stage1_train": write_split(root / "data", "stage1_train", s1_train),
            "stage1_heldout": write_split(root / "data", "stage1_heldout", s1_held, label_offset=cfg.train_styles),
            "stage2_train": write_split(root / "data", "stage2_train", s2_train),
            "stage2_val": write_split(root / "data", "stage2_val", s2_val)}


def frozen_baselines(held_cache: Path, image_size: int) -> dict[str, float]:
    reader = CacheReader(held_cache)
    labels = np.array([it["label"] for it in reader.items])
    images = torch.stack([load_square(it["path"], image_size) for it in reader.items])
    hidden = CachedHidden(reader).hidden(np.arange(len(reader)))
    return {"colour_histogram": retrieval_metrics(baselines.colour_histogram(images), labels)["map"],
            "gram": retrieval_metrics(baselines.gram(images), labels)["map"],
            "siglip_mean_std_pooled": retrieval_metrics(baselines.pooled_hidden(hidden), labels)["map"]}


def run_demo(cfg: DemoConfig) -> dict:
    start = time.time()
    torch.set_num_threads(cfg.threads)
    root = Path(cfg.out)
    (root / "plots").mkdir(parents=True, exist_ok=True)
    manifests = write_data(cfg, root)
    log.info("data written in %.1f s", time.time() - start)

    # ---- stage 1: cache frozen SigLIP features, train the projector
    siglip = gabor_siglip(image_size=cfg.image_size)
    caches = {name: cache_style_hidden(read_triplets(manifests[name]), siglip, root / "cache" / name,
                                       model_id="demo-gabor-siglip")
              for name in ("stage1_train", "stage1_heldout")}
    s1 = train_stage1(Stage1Config(
        cache_dir=str(caches["stage1_train"]), val_cache_dir=str(caches["stage1_heldout"]),
        out_dir=str(root / "stage1"), out_dim=cfg.stage1_out_dim, steps=cfg.stage1_steps, lr=cfg.stage1_lr,
        styles_per_batch=cfg.styles_per_batch, images_per_style=4, warmup_steps=min(50, cfg.stage1_steps // 10),
        eval_every=max(1, cfg.stage1_steps // 6), log_every=max(1, cfg.stage1_steps // 30), seed=cfg.seed))
    frozen = frozen_baselines(caches["stage1_heldout"], cfg.image_size)
    untrained, trained = s1["val"][0], s1["val"][-1]
    baseline_maps = {"colour histogram": frozen["colour_histogram"], "Gram (random conv)": frozen["gram"],
                     "untrained projector": untrained["map"]}
    log.info("stage 1 held-out mAP: trained %.3f; baselines %s; pooled SigLIP %.3f", trained["map"],
             baseline_maps, frozen["siglip_mean_std_pooled"])

    # ---- stage 2: cache latents + frozen style latents, tiny base, MoE-LoRA experts
    style = ProjectedStyle(siglip, load_projector_checkpoint(s1["projector"]).build_projector())
    vae, text = PatchVAE(), ByteText()
    spec = TripletCacheSpec(bucket_side=cfg.image_size)
    s2_caches = {name: cache_triplets(read_triplets(manifests[name]), vae, text, style, root / "cache" / name,
                                      spec=spec, model_id="demo-patch-vae", projector_id=s1["projector"],
                                      dtype=torch.float32)
                 for name in ("stage2_train", "stage2_val")}
    base_dir, base_losses = pretrain_base(s2_caches["stage2_train"], root / "base_flux", steps=cfg.base_steps,
                                          batch_size=cfg.stage2_batch, seed=cfg.seed)
    s2 = train_stage2(Stage2Config(
        cache_dir=str(s2_caches["stage2_train"]), val_cache_dir=str(s2_caches["stage2_val"]), model=str(base_dir),
        base_model="demo-tiny-flux", projector=s1["projector"], out_dir=str(root / "stage2"),
        num_experts=cfg.stage2_experts, rank=cfg.stage2_rank, top_k=2, alignment="paper", lr=cfg.stage2_lr,
        warmup_steps=min(50, cfg.stage2_steps // 10), steps=cfg.stage2_steps, batch_size=cfg.stage2_batch,
        gradient_checkpointing=False, log_every=max(1, cfg.stage2_steps // 40),
        eval_every=max(1, cfg.stage2_steps // 4),
        eval_batches=64, save_every=cfg.stage2_steps, seed=cfg.seed))
    final = s2["val"][-1]

    # ---- plots
    p = root / "plots"
    plots.line_plot({"stage 1 InfoNCE": ([r["step"] for r in s1["train"]], [r["loss"] for r in s1["train"]])},
                    "stage 1 training loss", p / "stage1_loss.png")
    plots.line_plot({"held-out mAP": ([r["step"] for r in s1["val"]], [r["map"] for r in s1["val"]])},
                    "stage 1 retrieval mAP on held-out styles", p / "stage1_val_map.png")
    plots.bar_plot({**baseline_maps, "pooled SigLIP": frozen["siglip_mean_std_pooled"],
                    "trained projector": trained["map"]}, "held-out style retrieval mAP", p / "retrieval.png")
    plots.line_plot({"base (identity edit)": (list(range(1, len(base_losses) + 1)), base_losses),
                     "stage 2 MoE-LoRA": ([len(base_losses) + r["step"] for r in s2["train"]],
                                          [r["loss"] for r in s2["train"]])},
                    "flow-matching loss: base pretraining, then stage 2", p / "stage2_loss.png")
    steps = [r["step"] for r in s2["val"]]
    plots.line_plot({"correct style latent": (steps, [r["loss_correct_style"] for r in s2["val"]]),
                     "shuffled style latent": (steps, [r["loss_shuffled_style"] for r in s2["val"]])},
                    "stage 2 held-out loss", p / "stage2_val.png")

    return {
        "stage1_map_trained": round(trained["map"], 4),
        "stage1_recall@1_trained": round(trained["recall@1"], 4),
        "stage1_map_best_baseline": round(max(baseline_maps.values()), 4),
        "stage1_map_baselines": {k: round(v, 4) for k, v in baseline_maps.items()},
        "stage1_map_siglip_pooled": round(frozen["siglip_mean_std_pooled"], 4),
        "stage2_loss_before_experts": round(s2["val"][0]["loss_correct_style"], 4),
        "stage2_loss_correct_style": round(final["loss_correct_style"], 4),
        "stage2_loss_shuffled_style": round(final["loss_shuffled_style"], 4),
        "checkpoint": s2["checkpoint"],
        "plots": str(p),
        "wall_s": round(time.time() - start, 1),
    }


if __name__ == "__main__":
    config_main(DemoConfig, lambda cfg: print(json.dumps(run_demo(cfg))))
