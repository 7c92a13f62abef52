"""MegaStyle-Encoder: SigLIP fine-tuned end to end on its pooled output (SupCon + image-text).

MegaStyle's style encoder is a full SigLIP fine-tune whose output is the L2-normalised
``pooler_output`` of the attention-pooling (MAP) head (``style_score.py``; the training code is
not released). Here every parameter of the vision tower trains, the last layer and the head
included, on

    loss = SupCon(pooled, style) + itc_weight * ITC(pooled, text(style prompt), learnable scale)

where the text side is the style prompt's embedding by the frozen SigLIP text tower (cached by
``python -m training.stage1.cache --style_text=...``, same width as the pooled output).

Negatives come from every rank: each step draws one global P x K batch (the same on every
rank), each rank encodes its slice, and the pooled embeddings are all-gathered with gradient
flow (``gather_with_grad``), so the loss on every rank is the loss of the whole global batch,
the same number a single process would compute on it. The batch is limited only by memory:
bf16 autocast (``mixed_precision=bf16``) and gradient checkpointing (on by default) shrink
activations, and more ranks add negatives.

    accelerate launch --num_processes 8 -m training.stage1.megastyle --manifest=data/train.jsonl \
        --siglip=/models/siglip-so400m-patch14-384 --text_cache_dir=cache/stage1 --out_dir=runs/megastyle

Output: ``megastyle_encoder/`` (a ``SiglipVisionModel`` folder: config + weights), which
``python -m training.evaluate ... --encoder megastyle --model runs/megastyle/megastyle_encoder
--weights runs/megastyle/megastyle_encoder/model.safetensors`` loads; ``metrics.jsonl``
(loss; mAP / Recall@k of the pooled embedding on held-out styles).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from accelerate import Accelerator
from torch import nn

from styleexpert_core.losses import LOGIT_SCALE_INIT, image_text_contrastive, supcon
from styleexpert_core.metrics import retrieval_metrics

from ..checkpoints import MetricsLog
from ..config import check, config_main, config_to_dict
from ..data.cache import CacheReader
from ..data.errors import InputError
from ..data.images import load_square
from ..data.samplers import PKSampler
from ..optim import OPTIMIZERS, build_optimizer, lr_factor
from .data import StyleItems, manifest_items, split_styles

log = logging.getLogger("training.stage1.megastyle")


@dataclass(frozen=True)
class MegaStyleConfig:
    manifest: str = ""  # triplet manifest: stylised images, style labels, style prompts
    siglip: str = ""  # local SiglipVisionModel folder with the attention-pooling head (vision_use_head)
    text_cache_dir: str = ""  # stage-1 cache with the style prompts' text embeddings (--style_text)
    out_dir: str = "runs/megastyle"
    val_fraction: float = 0.1  # held-out styles for retrieval
    temperature: float = 0.07
    itc_weight: float = 1.0
    styles_per_batch: int = 64  # P of the global batch (all ranks together)
    images_per_style: int = 4  # K
    optimizer: str = "adamw"
    lr: float = 1e-5
    weight_decay: float = 1e-4
    warmup_steps: int = 500
    steps: int = 10000
    grad_clip: float = 1.0
    mixed_precision: str = "bf16"  # "no" or "bf16" (autocast; the losses run in fp32)
    gradient_checkpointing: bool = True
    eval_every: int = 1000
    log_every: int = 50
    seed: int = 0
    device: str = "auto"  # "auto" (each rank's GPU when there is one) or "cpu"
    loss_check: bool = False  # write the first step's global and per-rank losses and grad norms (tests)

    def __post_init__(self) -> None:
        check(bool(self.manifest and self.siglip and self.text_cache_dir),
              "manifest, siglip and text_cache_dir are required.")
        check(self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}.")
        check(self.mixed_precision in ("no", "bf16"), "mixed_precision must be 'no' or 'bf16'.")
        check(self.device in ("auto", "cpu"), "device must be 'auto' or 'cpu'.")
        check(self.images_per_style >= 2, "SupCon needs images_per_style (K) >= 2 for positives.")
        check(self.styles_per_batch >= 2 and self.steps >= 1 and self.lr > 0, "P >= 2, steps and lr > 0.")


class GatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0 whose backward sums every rank's gradient of this rank's slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.rows = dist.get_rank(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # every rank's loss depends on this rank's rows
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    return GatherWithGrad.apply(x) if dist.is_available() and dist.is_initialized() else x


class MegaStyleEncoder(nn.Module):
    """The SigLIP vision tower (pooled output) and the image-text loss's learnable log logit scale."""

    def __init__(self, vision: nn.Module) -> None:
        super().__init__()
        self.vision = vision
        self.log_scale = nn.Parameter(torch.tensor(LOGIT_SCALE_INIT))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.vision(pixel_values=(images - 0.5) / 0.5).pooler_output


def load_vision(folder: str, checkpointing: bool) -> nn.Module:
    from transformers import SiglipVisionModel

    vision = SiglipVisionModel.from_pretrained(folder, local_files_only=True)
    if not getattr(vision.config, "vision_use_head", True):
        raise InputError(f"{folder}: MegaStyle-Encoder's output is the attention-pooling head's, but this SigLIP "
                         "has none (vision_use_head=false); use a SigLIP with its head (e.g. so400m-patch14-384).")
    if checkpointing:  # transformers 5 renamed it; 4.x only has the old name
        (getattr(vision, "activation_checkpointing_enable", None) or vision.gradient_checkpointing_enable)()
    return vision.train().requires_grad_(True)


def style_text(cfg: MegaStyleConfig, prompt_names: list[str], width: int) -> torch.Tensor:
    reader = CacheReader(cfg.text_cache_dir, kind="style_hidden")
    if reader.index["prompts"] != prompt_names:
        raise InputError(f"{cfg.text_cache_dir}: its style prompts differ from {cfg.manifest}'s; cache the text "
                         "embeddings from the same manifest.")
    text = reader.text()["style_text"]
    if text.shape[1] != width:
        raise InputError(f"the text embeddings are {text.shape[1]}-d but SigLIP's pooled output is {width}-d; "
                         "embed the style prompts with the text tower of the same SigLIP.")
    return text


@dataclass
class MegaStyleRun:
    accelerator: Accelerator
    model: nn.Module  # prepared MegaStyleEncoder
    optimizer: torch.optim.Optimizer
    paths: list[Path]  # the manifest's stylised images
    items: StyleItems  # their style labels and style-prompt ids
    text: torch.Tensor  # [prompts, width] on the device
    sampler: PKSampler
    train_idx: np.ndarray
    val_idx: np.ndarray
    image_size: int


def build(cfg: MegaStyleConfig) -> MegaStyleRun:
    accelerator = Accelerator(cpu=cfg.device == "cpu" or not torch.cuda.is_available(),
                              mixed_precision=cfg.mixed_precision)
    torch.manual_seed(cfg.seed)
    vision = load_vision(cfg.siglip, cfg.gradient_checkpointing)
    paths, items = manifest_items(cfg.manifest)
    text = style_text(cfg, items.prompt_names, vision.config.hidden_size).to(accelerator.device)
    train_idx, val_idx = split_styles(items.labels, cfg.val_fraction, cfg.seed)
    global_batch = cfg.styles_per_batch * cfg.images_per_style
    if global_batch % accelerator.num_processes:
        raise InputError(f"the global batch P x K = {global_batch} must split evenly over "
                         f"{accelerator.num_processes} processes.")
    sampler = PKSampler(items.labels[train_idx], cfg.styles_per_batch, cfg.images_per_style, seed=cfg.seed)
    model = MegaStyleEncoder(vision)
    optimizer = build_optimizer(cfg.optimizer, list(model.parameters()), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    return MegaStyleRun(accelerator, model, optimizer, paths, items, text, sampler, train_idx, val_idx,
                        vision.config.image_size)


def pixels(run: MegaStyleRun, indices: np.ndarray) -> torch.Tensor:
    return torch.stack([load_square(run.paths[int(i)], run.image_size) for i in indices]).to(
        run.accelerator.device)


def loss_of(run: MegaStyleRun, cfg: MegaStyleConfig, pooled: torch.Tensor, indices: np.ndarray) -> torch.Tensor:
    """SupCon + image-text loss of pooled embeddings of ``indices`` (fp32 inside the core losses)."""
    device = pooled.device
    labels = torch.as_tensor(run.items.labels[indices], device=device)
    prompts = torch.as_tensor(run.items.prompts[indices], device=device)
    scale = run.accelerator.unwrap_model(run.model).log_scale
    return supcon(pooled, labels, cfg.temperature) + cfg.itc_weight * image_text_contrastive(
        pooled, run.text[prompts], scale, prompts)


def train_step(run: MegaStyleRun, cfg: MegaStyleConfig, step: int) -> dict[str, float]:
    """One step on this rank's slice of the global batch, with every rank's embeddings as negatives."""
    accelerator = run.accelerator
    for group in run.optimizer.param_groups:
        group["lr"] = cfg.lr * lr_factor(step, cfg.warmup_steps, cfg.steps)
    batch = run.train_idx[run.sampler.batch()]  # the same global batch on every rank
    mine = np.split(batch, accelerator.num_processes)[accelerator.process_index]
    pooled = run.model(pixels(run, mine)).float()
    loss = loss_of(run, cfg, gather_with_grad(pooled), batch)
    run.optimizer.zero_grad(set_to_none=True)
    accelerator.backward(loss)
    grad_norm = accelerator.clip_grad_norm_(run.model.parameters(), cfg.grad_clip) if cfg.grad_clip > 0 else 0.0
    result = {"loss": float(loss.detach()), "grad_norm": float(grad_norm)}
    if cfg.loss_check and step == 0:
        with torch.no_grad():
            result["local_loss"] = float(loss_of(run, cfg, pooled, mine))
        result["grad_norms"] = grad_norms(accelerator.unwrap_model(run.model).vision)
    run.optimizer.step()
    return result


def grad_norms(vision: nn.Module) -> dict[str, float]:
    """Gradient norms of the pooling head, the last and the first encoder layer (what reaches where)."""
    names = {n.removeprefix("vision_model."): p for n, p in vision.named_parameters()}  # transformers 4 and 5
    last = max(int(n.split(".")[2]) for n in names if n.startswith("encoder.layers."))
    parts = {"head": "head.", "last_layer": f"encoder.layers.{last}.", "first_layer": "encoder.layers.0."}
    return {name: float(torch.sqrt(sum((p.grad.float() ** 2).sum() for n, p in names.items()
                                       if n.startswith(prefix) and p.grad is not None)))
            for name, prefix in parts.items()}


@torch.no_grad()
def evaluate(run: MegaStyleRun, chunk: int = 64) -> dict[str, float]:
    """Retrieval on held-out styles with the L2-normalised pooled output (what MegaStyle's style score uses)."""
    model = run.accelerator.unwrap_model(run.model)
    model.eval()
    emb = torch.cat([nn.functional.normalize(model(pixels(run, run.val_idx[i:i + chunk])).float(), dim=-1).cpu()
                     for i in range(0, len(run.val_idx), chunk)])
    model.train()
    return retrieval_metrics(emb, run.items.labels[run.val_idx], ks=(1, 5, 10))


def main(cfg: MegaStyleConfig) -> dict:
    run = build(cfg)
    accelerator, out_dir = run.accelerator, Path(cfg.out_dir)
    main_process = accelerator.is_main_process
    out_dir.mkdir(parents=True, exist_ok=True)
    if main_process:
        (out_dir / "config.json").write_text(json.dumps(config_to_dict(cfg), indent=2))
    metrics_log = MetricsLog(out_dir / "metrics.jsonl", enabled=main_process, fresh=True)
    for step in range(cfg.steps):
        result = train_step(run, cfg, step)
        if cfg.loss_check and step == 0:
            (out_dir / f"loss_check.rank{accelerator.process_index}.json").write_text(json.dumps(result))
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            log.info("step %d/%d loss %.4f", step + 1, cfg.steps, result["loss"])
            metrics_log.write(step=step + 1, split="train", loss=result["loss"], grad_norm=result["grad_norm"])
        if main_process and len(run.val_idx) and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps):
            metrics_log.write(step=step + 1, split="val", **evaluate(run))
    if main_process:
        accelerator.unwrap_model(run.model).vision.save_pretrained(out_dir / "megastyle_encoder")
    records = metrics_log.read() if main_process else []
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return {"encoder": str(out_dir / "megastyle_encoder"), "train": [r for r in records if r["split"] == "train"],
            "val": [r for r in records if r["split"] == "val"]}


if __name__ == "__main__":
    config_main(MegaStyleConfig, main)
