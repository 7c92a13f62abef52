"""Stage 1: train the style encoder (the core StyleProjector) on frozen SigLIP features.

The projector reads SigLIP hidden states of three layers (officially -2, -11, -20) and
returns the style latent the stage-2 routers see. It is trained contrastively so that
images of one style land together and other styles apart; retrieval on *held-out styles*
(mAP, Recall@1/5/10) measures whether it learned style rather than memorising styles.

    # once: cache SigLIP features of the manifest's stylised images
    python -m training.stage1.cache --manifest data/train.jsonl --siglip /models/siglip-so400m \
        --out cache/stage1
    # train (config file optional; --key=value overrides; unknown keys are errors)
    python -m training.stage1 training/configs/stage1.yaml --cache_dir=cache/stage1 \
        --out_dir=runs/stage1
    # resume an interrupted run: same command plus --resume=true

Objectives (``loss``):
* ``infonce`` (StyleExpert): label-masked InfoNCE between two independent P x K batches over
  the same styles, so every anchor has positives (styleexpert_core.losses).
* ``megastyle``: SupCon within a P x K batch + ``itc_weight`` x image-text contrastive against
  the style prompt's text embedding (cached from a frozen text tower; learnable logit scale
  initialised to 1/0.07 and clamped at 100). With ``finetune_siglip=true`` the vision tower
  under the projector is trained too; then features cannot come from the cache and are
  computed from the manifest's images every step. (MegaStyle-Encoder itself, SigLIP trained
  on its pooled output, is ``megastyle.py``.)

Features come from the cache, or with ``live_encoder=true`` from the frozen tower run on the
device every step; DataLoader workers read ahead either way (``loader.py``).

Outputs in ``out_dir``: ``projector.safetensors`` (native StyleExpert file, projector only,
the file stage 2 and the ComfyUI nodes load), ``train_state.pt`` (resume state),
``metrics.jsonl``, ``config.json`` and, when fine-tuning, ``siglip_finetuned/``.

Read top to bottom: ``build`` (data, projector, optimizer), ``resume``, ``train_step``,
``evaluate``, ``save``, then ``main``, the loop that calls them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from styleexpert_core.config import ProjectorConfig
from styleexpert_core.losses import LOGIT_SCALE_INIT, image_text_contrastive, label_masked_infonce, supcon
from styleexpert_core.metrics import retrieval_metrics
from styleexpert_core.projector import StyleProjector

from ..checkpoints import MetricsLog, load_state, rng_state, save_projector, save_state, set_rng_state
from ..config import check, config_to_dict
from ..data.backbones import SiglipHidden, project
from ..data.cache import CacheReader
from ..data.samplers import PKSampler
from ..data.workers import worker_count
from ..optim import OPTIMIZERS, build_optimizer, lr_factor
from .data import CachedHidden, LiveHidden, split_styles
from .loader import Prefetched, StepBatches

log = logging.getLogger("training.stage1")
LOSSES = ("infonce", "megastyle")


@dataclass(frozen=True)
class Stage1Config:
    # data
    cache_dir: str = ""  # stage-1 feature cache (frozen SigLIP); empty when finetune_siglip or live_encoder
    manifest: str = ""  # triplet manifest; only read when finetune_siglip or live_encoder
    siglip: str = ""  # local SigLIP folder; only for finetune_siglip or live_encoder
    live_encoder: bool = False  # run the frozen SigLIP on the device every step instead of reading a cache
    num_workers: int = -1  # DataLoader workers reading ahead; -1: 4 on a GPU, 0 on the CPU (loader.py)
    text_cache_dir: str = ""  # cache holding style-prompt text embeddings (default: cache_dir)
    val_cache_dir: str = ""  # held-out styles; empty = hold out val_fraction of the styles
    val_fraction: float = 0.1
    out_dir: str = "runs/stage1"
    # projector (layers, token count and width come from the features)
    style_tokens: int = 8
    out_dim: int = 128
    # objective
    loss: str = "infonce"
    temperature: float = 0.07
    itc_weight: float = 1.0
    # P x K sampling
    styles_per_batch: int = 64
    images_per_style: int = 4
    # optimisation
    optimizer: str = "adabelief"
    lr: float = 1e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 500
    steps: int = 20000
    grad_clip: float = 1.0
    finetune_siglip: bool = False
    siglip_lr: float = 1e-5
    # bookkeeping
    eval_every: int = 1000
    log_every: int = 50
    resume: bool = False
    seed: int = 0
    device: str = "auto"  # "auto": the GPU when there is one, else the CPU; or a torch device name

    def __post_init__(self) -> None:
        check(self.loss in LOSSES, f"loss must be one of {LOSSES}, got {self.loss!r}.")
        check(self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}.")
        check(self.steps >= 1 and self.lr > 0 and self.temperature > 0, "steps, lr and temperature must be > 0.")
        check(self.styles_per_batch >= 2, "styles_per_batch (P) must be >= 2 so a batch has negatives.")
        check(self.loss != "megastyle" or self.images_per_style >= 2,
              "SupCon (loss=megastyle) needs images_per_style (K) >= 2 for positives inside one batch.")
        check(0 <= self.val_fraction < 1, f"val_fraction must be in [0, 1), got {self.val_fraction}.")
        if self.finetune_siglip:
            check(not self.cache_dir, "finetune_siglip=true trains the vision tower, so cached SigLIP features "
                  "would be stale: leave cache_dir empty and give manifest (images) and siglip (model folder).")
            check(bool(self.manifest and self.siglip), "finetune_siglip=true needs manifest and siglip.")
            check(not self.val_cache_dir, "finetune_siglip=true evaluates on held-out styles of the manifest "
                  "(val_fraction), not on a frozen-feature cache.")
        elif self.live_encoder:
            check(bool(self.manifest and self.siglip) and not self.cache_dir and not self.val_cache_dir,
                  "live_encoder=true runs SigLIP on the manifest's images: give manifest and siglip, no cache_dir "
                  "or val_cache_dir (held-out styles come from val_fraction).")
        else:
            check(bool(self.cache_dir), "cache_dir is required (run `python -m training.stage1.cache` first), "
                  "or set live_encoder=true or finetune_siglip=true.")


class TextAlign(nn.Module):
    """Maps the style latent into the text tower's space for the image-text loss (training only)."""

    def __init__(self, cond_dim: int, text_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(cond_dim, text_dim)
        self.log_scale = nn.Parameter(torch.tensor(LOGIT_SCALE_INIT))


def embed(projector: nn.Module, source, indices: np.ndarray, chunk: int = 256) -> torch.Tensor:
    """Style latents of ``indices`` without gradients (evaluation)."""
    device = next(projector.parameters()).device
    with torch.no_grad():
        return torch.cat([project(projector, source.hidden(indices[i:i + chunk]).to(device)).cpu()
                          for i in range(0, len(indices), chunk)])


def evaluate(projector: nn.Module, source, indices: np.ndarray) -> dict[str, float]:
    was_training = projector.training
    projector.eval()
    metrics = retrieval_metrics(embed(projector, source, indices), source.items.labels[indices], ks=(1, 5, 10))
    projector.train(was_training)
    return metrics


@dataclass
class Stage1Run:
    """Everything a stage-1 run builds before its first step."""

    source: CachedHidden | LiveHidden
    val_source: CachedHidden | LiveHidden
    train_idx: np.ndarray
    val_idx: np.ndarray
    labels: torch.Tensor
    sampler: PKSampler
    pconfig: ProjectorConfig
    projector: StyleProjector
    optimizer: torch.optim.Optimizer
    base_lrs: list[float]
    device: torch.device
    siglip: SiglipHidden | None = None
    text_emb: torch.Tensor | None = None
    text_align: TextAlign | None = None
    features: Prefetched | None = None  # the read-ahead loader (main); evaluation reads the source directly


def build_data(cfg: Stage1Config, device: torch.device):
    """Hidden states of SigLIP's layers, from the cache or from a live tower; train / held-out indices."""
    siglip = None
    if cfg.finetune_siglip or cfg.live_encoder:
        tower = SiglipHidden.from_pretrained(cfg.siglip)  # frozen unless fine-tuned
        tower.model.to(device)
        if cfg.finetune_siglip:
            siglip = tower
            siglip.model.train().requires_grad_(True)
        source = LiveHidden(tower, cfg.manifest)
    else:
        source = CachedHidden(CacheReader(cfg.cache_dir, kind="style_hidden"))
    if cfg.val_cache_dir:
        val_source = CachedHidden(CacheReader(cfg.val_cache_dir, kind="style_hidden"))
        train_idx, val_idx = np.arange(len(source.items.labels)), np.arange(len(val_source.items.labels))
    else:
        val_source = source
        train_idx, val_idx = split_styles(source.items.labels, cfg.val_fraction, cfg.seed)
    log.info("%d training images (%d styles), %d validation images (%d held-out styles); features %s",
             len(train_idx), len(np.unique(source.items.labels[train_idx])), len(val_idx),
             len(np.unique(val_source.items.labels[val_idx])) if len(val_idx) else 0, source.shape)
    return siglip, source, val_source, train_idx, val_idx


def build_text_head(cfg: Stage1Config, source, cond_dim: int, device: torch.device):
    """The cached style-prompt embeddings and the head that maps style latents to them (megastyle loss)."""
    text_reader = CacheReader(cfg.text_cache_dir or cfg.cache_dir, kind="style_hidden")
    if text_reader.index["prompts"] != source.items.prompt_names:
        raise ValueError(f"{text_reader.dir}: its style prompts differ from the training data's; cache the "
                         "text embeddings from the same manifest.")
    text_emb = text_reader.text()["style_text"].to(device)
    return text_emb, TextAlign(cond_dim, text_emb.shape[1]).to(device)


def build(cfg: Stage1Config) -> Stage1Run:
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)
    siglip, source, val_source, train_idx, val_idx = build_data(cfg, device)
    labels = torch.as_tensor(source.items.labels)
    sampler = PKSampler(source.items.labels[train_idx], cfg.styles_per_batch, cfg.images_per_style, seed=cfg.seed)
    # the core projector (layers, token count and width come from the features)
    num_layers, num_tokens, width = source.shape
    pconfig = ProjectorConfig(layers=source.layers, num_tokens=num_tokens, width=width,
                              style_tokens=cfg.style_tokens, out_dim=cfg.out_dim)
    projector = StyleProjector(pconfig).to(device)
    text_emb, text_align = build_text_head(cfg, source, pconfig.cond_dim, device) if cfg.loss == "megastyle" \
        else (None, None)
    # projector + text head at lr; the vision tower at siglip_lr
    groups = [{"params": list(projector.parameters()) + (list(text_align.parameters()) if text_align else []),
               "lr": cfg.lr}]
    if siglip is not None:
        groups.append({"params": list(siglip.model.parameters()), "lr": cfg.siglip_lr})
    optimizer = build_optimizer(cfg.optimizer, groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return Stage1Run(source, val_source, train_idx, val_idx, labels, sampler, pconfig, projector, optimizer,
                     [g["lr"] for g in groups], device, siglip, text_emb, text_align)


def resume(run: Stage1Run, cfg: Stage1Config, out_dir: Path) -> int:
    """The step to start at: that of ``train_state.pt`` when resuming, else 0."""
    state = load_state(out_dir) if cfg.resume else None
    if state is None:
        if cfg.resume:
            log.warning("resume=true but %s has no train_state.pt; starting from scratch", out_dir)
        return 0
    run.projector.load_state_dict(state["projector"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.sampler.load_state_dict(state["sampler"])
    set_rng_state(state["rng"])
    if run.text_align is not None:
        run.text_align.load_state_dict(state["text_align"])
    if run.siglip is not None:
        run.siglip.model.load_state_dict(state["siglip"])
    log.info("resumed from step %d", state["step"])
    return state["step"]


def loss_on(run: Stage1Run, cfg: Stage1Config, indices_a: np.ndarray, indices_b: np.ndarray | None) -> torch.Tensor:
    device, train_idx, labels = run.device, run.train_idx, run.labels
    ia, ya = train_idx[indices_a], labels[train_idx[indices_a]].to(device)
    features = run.features or run.source
    za = project(run.projector, features.hidden(ia).to(device))
    if cfg.loss == "infonce":
        ib = train_idx[indices_b]
        zb = project(run.projector, features.hidden(ib).to(device))
        return label_masked_infonce(za, ya, zb, labels[ib].to(device), cfg.temperature)
    prompts = torch.as_tensor(run.source.items.prompts[ia], device=device)
    itc = image_text_contrastive(run.text_align.proj(za), run.text_emb[prompts], run.text_align.log_scale, prompts)
    return supcon(za, ya, cfg.temperature) + cfg.itc_weight * itc


def train_step(run: Stage1Run, cfg: Stage1Config, step: int) -> tuple[float, float]:
    """One optimizer step at ``step``: (loss, gradient norm before clipping)."""
    optimizer = run.optimizer
    for group, base in zip(optimizer.param_groups, run.base_lrs):
        group["lr"] = base * lr_factor(step, cfg.warmup_steps, cfg.steps)
    a, b = run.sampler.pair() if cfg.loss == "infonce" else (run.sampler.batch(), None)
    loss = loss_on(run, cfg, a, b)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)) if cfg.grad_clip > 0 else 0.0
    optimizer.step()
    return float(loss.detach()), grad_norm


def save(run: Stage1Run, out_dir: Path, step: int) -> None:
    """The native projector file, the resume state and (when fine-tuning) the SigLIP tower."""
    save_projector(out_dir / "projector.safetensors", run.projector, run.pconfig)
    save_state(out_dir, {
        "step": step, "projector": run.projector.state_dict(), "optimizer": run.optimizer.state_dict(),
        "sampler": run.sampler.state_dict(), "rng": rng_state(),
        **({"text_align": run.text_align.state_dict()} if run.text_align else {}),
        **({"siglip": run.siglip.model.state_dict()} if run.siglip else {})})
    if run.siglip is not None:
        run.siglip.model.save_pretrained(out_dir / "siglip_finetuned")


def main(cfg: Stage1Config) -> dict:
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(config_to_dict(cfg), indent=2))
    torch.manual_seed(cfg.seed)
    run = build(cfg)
    metrics_log = MetricsLog(out_dir / "metrics.jsonl", fresh=not cfg.resume)
    step = resume(run, cfg, out_dir)
    run.features = Prefetched(run.source, StepBatches(run.sampler, run.train_idx, cfg.loss == "infonce", step,
                                                      cfg.steps), worker_count(cfg.num_workers, run.device))
    if step == 0 and len(run.val_idx):
        metrics_log.write(step=0, split="val", **evaluate(run.projector, run.val_source, run.val_idx))

    run.projector.train()
    history = []
    bar = tqdm(total=cfg.steps, initial=step, desc="stage 1", unit="step")
    while step < cfg.steps:
        loss, grad_norm = train_step(run, cfg, step)
        step += 1
        history.append(loss)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")
        if step % cfg.log_every == 0 or step == cfg.steps:
            mean = float(np.mean(history[-cfg.log_every:]))
            log.info("step %d/%d loss %.4f grad %.3f lr %.2e", step, cfg.steps, mean, grad_norm,
                     run.optimizer.param_groups[0]["lr"])
            metrics_log.write(step=step, split="train", loss=mean, grad_norm=grad_norm)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            if len(run.val_idx):
                metrics = evaluate(run.projector, run.val_source, run.val_idx)
                log.info("step %d held-out styles: mAP %.4f R@1 %.3f R@5 %.3f R@10 %.3f", step, metrics["map"],
                         metrics["recall@1"], metrics["recall@5"], metrics["recall@10"])
                metrics_log.write(step=step, split="val", **metrics)
            save(run, out_dir, step)
    bar.close()

    records = metrics_log.read()
    return {"projector": str(out_dir / "projector.safetensors"), "projector_config": run.pconfig,
            "val": [r for r in records if r.get("split") == "val"],
            "train": [r for r in records if r.get("split") == "train"]}
