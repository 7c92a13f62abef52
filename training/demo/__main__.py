"""End-to-end demo on CPU, no downloads: procedural styles -> stage 1 -> stage 2 -> stylised images.

    python -m training.demo --out runs/demo            # a few minutes on 2 CPU cores
    python -m training.demo --out runs/demo --stage1_steps=300 --stage2_steps=300   # faster

What runs, and what is measured (numbers in the final JSON line on stdout):

1. Data. Procedural styles (``styles.py``) over procedural content, written as PNGs and JSONL
   manifests. Stage-1 images use colour jitter 0.25 (one image in four of a style gets a
   random palette). Held-out styles never appear in either training stage.
2. Frozen backbones built in code (``backbones.py``): a 20-layer SigLIP whose weights are a
   constructed Gabor-energy front end plus patch-mean colour (its tokens carry local texture
   energy and colour), a fixed invertible patchify "VAE" scaled to unit variance, a byte-level
   text encoder.
3. Stage 1 trains the core ``StyleProjector`` (the module the ComfyUI nodes load) on cached
   SigLIP features with the label-masked InfoNCE. Retrieval mAP on the held-out styles:
   ``stage1_map_trained`` (final step) vs ``stage1_map_best_baseline`` = the best of every
   baseline measured (``stage1_map_baselines``: colour histogram, random-conv Gram, pooled
   frozen SigLIP, the *untrained* projector at step 0).
4. A tiny Flux is trained on the identity edit (a stand-in for pretrained Kontext,
   ``base_model.py``), then frozen. Stage 2 caches latents and frozen style latents (stage-1
   projector on the reference image) and trains MoE-LoRA experts (core ``inject_moe``) on the
   stylisation triplets of most training styles, rendered flat (a tone map: no texture or grain,
   palette dark to light; one right answer per pair), with Flux's shifted noise levels; ``stage2_loss_correct_style`` /
   ``stage2_loss_shuffled_style`` compare held-out losses with the reference's own latent and
   another style's (same noise and timesteps).
5. Stylisation (``stylise.py``): held-out contents x styles neither stage saw (held-out styles
   that render unlike every stage-2 style), sampled with the
   trained model as the nodes run it (core fold merged into the weights, Kontext's Euler loop,
   28 steps, guidance 3.5) three ways -- base, experts with the reference's latent, experts
   with another unseen style's latent -- and scored against the procedural ground truth:
   ``stylise_target_mse_*`` (pixel MSE, [0, 1] RGB) and ``stylise_style_top1_*`` (nearest style
   class under the trained encoder is the reference's). ``stylise_grid`` is the picture.

Plots go to ``<out>/plots`` (``stylise_grid.png``, ``routing_two_styles.png``, training curves);
the exported native checkpoint to ``<out>/stage2``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from styleexpert_core.formats import load_native
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
from ..stage2.flux import load_transformer
from ..stage2.train import Stage2Config
from ..stage2.train import main as train_stage2
from . import baselines, plots
from .backbones import ByteText, PatchVAE, gabor_siglip
from .base_model import pretrain_base
from .dataset import write_split
from .styles import flat, make_triplets, sample_styles
from .stylise import make_stylise_set, routing_heatmaps, stylise

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
    colour_jitter: float = 0.25  # a quarter of stage-1 images get a random palette
    siglip_colour_gain: float = 2.0  # patch-mean colour channels in the demo SigLIP
    stage1_steps: int = 300
    stage1_lr: float = 3e-3
    stage1_out_dim: int = 32
    styles_per_batch: int = 32
    # stage 2 data and training
    stage2_styles: int = 96
    stage2_train_per_style: int = 8
    stage2_val_per_style: int = 2
    base_steps: int = 400
    base_batch: int = 16
    base_lr: float = 2e-3
    stage2_steps: int = 600
    stage2_lr: float = 2e-3
    stage2_experts: int = 16
    stage2_rank: int = 4
    stage2_batch: int = 8
    stage2_targets: str = "attention+mlp"
    # Stage 2 and stylisation render styles flat (palette dark to light, posterisation, outline;
    # no texture or grain): then each (content, style) pair has one right answer a tiny Flux can
    # learn to draw and pixel MSE can score. Stage 1 keeps the textures (the encoder must recognise them).
    stage2_flat_styles: bool = True
    # Flux's training shift: most stage-2 steps at high noise, where sampling lays out the image
    # (logit-normal alone left the experts predicting the mean image there).
    stage2_sigma_shift: float = 3.0
    guidance: float = 3.5  # embedded guidance in training and sampling: the example workflows' value
    # stylisation of unseen styles
    stylise_styles: int = 8
    stylise_per_style: int = 4
    sample_steps: int = 28  # the example workflows' KSampler steps

    def __post_init__(self) -> None:
        check(self.stage2_styles <= self.train_styles, "stage2_styles must be <= train_styles.")
        check(self.image_size % 16 == 0, "image_size must be a multiple of 16.")
        check(2 <= self.stylise_styles <= self.heldout_styles, "stylise_styles must be in [2, heldout_styles].")
        check(0 < self.stage2_sigma_shift < float("inf"), "stage2_sigma_shift must be a positive finite number.")


def write_data(cfg: DemoConfig, root: Path) -> dict[str, Path]:
    styles = sample_styles(cfg.train_styles + cfg.heldout_styles, seed=cfg.seed)
    train, held = styles[: cfg.train_styles], styles[cfg.train_styles:]
    size, jitter = cfg.image_size, cfg.colour_jitter
    s1_train = make_triplets(train, cfg.images_per_style, size=size, seed=cfg.seed + 1, colour_jitter=jitter)
    s1_held = make_triplets(held, cfg.images_per_style, size=size, seed=cfg.seed + 2, colour_jitter=jitter)
    s2 = stage2_styles(cfg, train[: cfg.stage2_styles])  # styles the encoder was trained on; new contents
    s2_train = make_triplets(s2, cfg.stage2_train_per_style, size=size, seed=cfg.seed + 3)
    s2_val = make_triplets(s2, cfg.stage2_val_per_style, size=size, seed=cfg.seed + 4)
    plots.image_grid([s1_train.target[s * cfg.images_per_style: s * cfg.images_per_style + 8] for s in range(8)],
                     root / "plots" / "styles_grid.png")
    plots.image_grid([s2_val.content[:8], s2_val.target[:8]], root / "plots" / "stage2_content_vs_target.png")
    splits = {"stage1_train": (s1_train, 0), "stage1_heldout": (s1_held, cfg.train_styles),
              "stage2_train": (s2_train, 0), "stage2_val": (s2_val, 0)}
    return {name: write_split(root / "data", name, data, label_offset=offset)
            for name, (data, offset) in splits.items()}


def stage2_styles(cfg: DemoConfig, styles: tuple) -> tuple:
    return tuple(flat(s) for s in styles) if cfg.stage2_flat_styles else styles


def unseen_styles(cfg: DemoConfig) -> tuple:
    """Styles for stylisation: held out of stage 1 and stage 2, each rendering unlike every stage-2 style.

    Flat styles have few attributes (palette, levels, outline), so a held-out draw can repeat a
    stage-2 style's; such a style would be seen, not new, and is skipped (as are repeats).
    """
    styles = sample_styles(cfg.train_styles + cfg.heldout_styles, seed=cfg.seed)
    seen = set(stage2_styles(cfg, styles[: cfg.stage2_styles]))
    novel = [s for s in dict.fromkeys(stage2_styles(cfg, styles[cfg.train_styles:])) if s not in seen]
    if len(novel) < cfg.stylise_styles:
        raise ValueError(f"only {len(novel)} of the {cfg.heldout_styles} held-out styles render unlike every "
                         f"stage-2 style; lower stylise_styles (now {cfg.stylise_styles}) or raise heldout_styles.")
    return tuple(novel[: cfg.stylise_styles])


def frozen_baselines(held_cache: Path, image_size: int) -> dict[str, float]:
    reader = CacheReader(held_cache)
    labels = np.array([it["label"] for it in reader.items])
    images = torch.stack([load_square(it["path"], image_size) for it in reader.items])
    hidden = CachedHidden(reader).hidden(np.arange(len(reader)))
    return {"colour histogram": retrieval_metrics(baselines.colour_histogram(images), labels)["map"],
            "Gram (random conv)": retrieval_metrics(baselines.gram(images), labels)["map"],
            "pooled SigLIP": retrieval_metrics(baselines.pooled_hidden(hidden), labels)["map"]}


def run_stage1(cfg: DemoConfig, root: Path, manifests: dict[str, Path], siglip) -> dict:
    """Cache frozen SigLIP features, train the projector, measure every baseline on held-out styles."""
    caches = {name: cache_style_hidden(read_triplets(manifests[name]), siglip, root / "cache" / name,
                                       model_id="demo-gabor-siglip")
              for name in ("stage1_train", "stage1_heldout")}
    s1 = train_stage1(Stage1Config(
        cache_dir=str(caches["stage1_train"]), val_cache_dir=str(caches["stage1_heldout"]),
        out_dir=str(root / "stage1"), out_dim=cfg.stage1_out_dim, steps=cfg.stage1_steps, lr=cfg.stage1_lr,
        styles_per_batch=cfg.styles_per_batch, images_per_style=4, warmup_steps=min(50, cfg.stage1_steps // 10),
        eval_every=max(1, cfg.stage1_steps // 6), log_every=max(1, cfg.stage1_steps // 30), seed=cfg.seed))
    baseline_maps = {**frozen_baselines(caches["stage1_heldout"], cfg.image_size),
                     "untrained projector": s1["val"][0]["map"]}
    log.info("stage 1 held-out mAP: trained %.3f; baselines %s", s1["val"][-1]["map"], baseline_maps)
    return {**s1, "baselines": baseline_maps}


def run_stage2(cfg: DemoConfig, root: Path, manifests: dict[str, Path], style: ProjectedStyle,
               projector_file: str) -> dict:
    """Cache latents + frozen style latents, train the tiny base, then the MoE-LoRA experts."""
    spec = TripletCacheSpec(bucket_side=cfg.image_size)
    caches = {name: cache_triplets(read_triplets(manifests[name]), PatchVAE(), ByteText(), style,
                                   root / "cache" / name, spec=spec, model_id="demo-patch-vae",
                                   projector_id=projector_file, dtype=torch.float32)
              for name in ("stage2_train", "stage2_val")}
    base_dir, base_losses = pretrain_base(caches["stage2_train"], root / "base_flux", steps=cfg.base_steps,
                                          batch_size=cfg.base_batch, lr=cfg.base_lr, guidance=cfg.guidance,
                                          seed=cfg.seed)
    s2 = train_stage2(Stage2Config(
        cache_dir=str(caches["stage2_train"]), val_cache_dir=str(caches["stage2_val"]), model=str(base_dir),
        base_model="demo-tiny-flux", projector=projector_file, out_dir=str(root / "stage2"),
        targets=cfg.stage2_targets, num_experts=cfg.stage2_experts, rank=cfg.stage2_rank, top_k=2, alignment="paper", lr=cfg.stage2_lr,
        guidance=cfg.guidance, sigma_shift=cfg.stage2_sigma_shift, warmup_steps=min(50, cfg.stage2_steps // 10),
        steps=cfg.stage2_steps,
        batch_size=cfg.stage2_batch, gradient_checkpointing=False, log_every=max(1, cfg.stage2_steps // 40),
        eval_every=max(1, cfg.stage2_steps // 2), eval_batches=64, save_every=cfg.stage2_steps, seed=cfg.seed))
    return {**s2, "base_dir": base_dir, "base_losses": base_losses}


def run_stylise(cfg: DemoConfig, root: Path, style: ProjectedStyle, s2: dict) -> dict:
    """Unseen styles x held-out contents through the trained model (base / experts / shuffled), scored."""
    data = make_stylise_set(unseen_styles(cfg), cfg.stylise_per_style, size=cfg.image_size, seed=cfg.seed + 5)
    model = load_transformer(str(s2["base_dir"])).eval().requires_grad_(False)
    ckpt = load_native(s2["checkpoint"])
    result = stylise(model, ckpt, style, PatchVAE(), ByteText(), data, steps=cfg.sample_steps,
                     guidance=cfg.guidance, seed=cfg.seed)
    first = lambda x: x[:, 0]  # noqa: E731  one content per style in the grid
    grid = plots.labelled_grid({"content": first(data.content), "style reference": data.reference,
                                "base": first(result["images"]["base"]),
                                "experts": first(result["images"]["experts"]),
                                "shuffled latent": first(result["images"]["shuffled"]),
                                "ground truth": first(data.target)}, root / "plots" / "stylise_grid.png")
    latents = style.encode_style_latent(torch.from_numpy(data.reference[:2]).permute(0, 3, 1, 2))
    maps = routing_heatmaps(ckpt, {"unseen style A": latents[:1], "unseen style B": latents[1:2]})
    plots.side_by_side(maps, root / "plots" / "routing_two_styles.png")
    log.info("stylise MSE to ground truth %s; style top-1 %s", result["mse"], result["top1"])
    return {**result, "grid": grid}


def write_plots(p: Path, s1: dict, s2: dict) -> None:
    plots.line_plot({"stage 1 InfoNCE": ([r["step"] for r in s1["train"]], [r["loss"] for r in s1["train"]])},
                    "stage 1 training loss", p / "stage1_loss.png")
    plots.line_plot({"held-out mAP": ([r["step"] for r in s1["val"]], [r["map"] for r in s1["val"]])},
                    "stage 1 retrieval mAP on held-out styles", p / "stage1_val_map.png")
    plots.bar_plot({**s1["baselines"], "trained projector": s1["val"][-1]["map"]}, "held-out style retrieval mAP",
                   p / "retrieval.png")
    base_losses = s2["base_losses"]
    plots.line_plot({"base (identity edit)": (list(range(1, len(base_losses) + 1)), base_losses),
                     "stage 2 MoE-LoRA": ([len(base_losses) + r["step"] for r in s2["train"]],
                                          [r["loss"] for r in s2["train"]])},
                    "flow-matching loss: base pretraining, then stage 2", p / "stage2_loss.png")
    steps = [r["step"] for r in s2["val"]]
    plots.line_plot({"correct style latent": (steps, [r["loss_correct_style"] for r in s2["val"]]),
                     "shuffled style latent": (steps, [r["loss_shuffled_style"] for r in s2["val"]])},
                    "stage 2 held-out loss", p / "stage2_val.png")


def run_demo(cfg: DemoConfig) -> dict:
    start = time.time()
    torch.set_num_threads(cfg.threads)
    root = Path(cfg.out)
    (root / "plots").mkdir(parents=True, exist_ok=True)
    manifests = write_data(cfg, root)
    log.info("data written in %.1f s", time.time() - start)
    siglip = gabor_siglip(image_size=cfg.image_size, colour_gain=cfg.siglip_colour_gain)
    s1 = run_stage1(cfg, root, manifests, siglip)
    style = ProjectedStyle(siglip, load_projector_checkpoint(s1["projector"]).build_projector())
    s2 = run_stage2(cfg, root, manifests, style, s1["projector"])
    st = run_stylise(cfg, root, style, s2)
    write_plots(root / "plots", s1, s2)
    trained, final = s1["val"][-1], s2["val"][-1]
    return {
        "stage1_map_trained": round(trained["map"], 4),
        "stage1_recall@1_trained": round(trained["recall@1"], 4),
        "stage1_map_best_baseline": round(max(s1["baselines"].values()), 4),
        "stage1_map_baselines": {k: round(v, 4) for k, v in s1["baselines"].items()},
        "stage2_loss_before_experts": round(s2["val"][0]["loss_correct_style"], 4),
        "stage2_loss_correct_style": round(final["loss_correct_style"], 4),
        "stage2_loss_shuffled_style": round(final["loss_shuffled_style"], 4),
        **{f"stylise_target_mse_{way}": round(v, 5) for way, v in st["mse"].items()},
        **{f"stylise_style_top1_{way}": round(v, 4) for way, v in st["top1"].items()},
        "stylise_grid": str(st["grid"]),
        "checkpoint": s2["checkpoint"],
        "plots": str(root / "plots"),
        "wall_s": round(time.time() - start, 1),
    }


if __name__ == "__main__":
    config_main(DemoConfig, lambda cfg: print(json.dumps(run_demo(cfg))))
