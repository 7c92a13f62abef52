"""Stage 2: train routed MoE-LoRA experts on a frozen FLUX.1-Kontext-dev.

Each patched linear gets experts whose mixture is chosen per sample by a router that sees
only the frozen stage-1 style latent of the style reference. The loss is Kontext's flow
matching: the noisy target is generated next to clean reference tokens of the content
(position index 1) and, optionally, of the style image (index 2, rows + 64).

    # once: cache VAE latents, text embeddings and frozen style latents
    python -m training.stage2.cache --manifest data/train.jsonl --flux /models/FLUX.1-Kontext-dev \
        --siglip /models/siglip-so400m --projector runs/stage1/projector.safetensors --out cache/stage2
    # one process
    python -m training.stage2 training/configs/stage2.yaml --cache_dir=cache/stage2 \
        --model=/models/flux1-kontext-dev.safetensors --projector=runs/stage1/projector.safetensors
    # 8 GPUs, replicated DDP (the default) / DeepSpeed ZeRO-2 / FSDP2
    accelerate launch --num_processes 8 -m training.stage2 training/configs/stage2.yaml ...
    accelerate launch --config_file training/configs/accelerate_deepspeed_zero2.yaml -m training.stage2 ...
    torchrun --nproc_per_node 8 -m training.stage2 ...

Only the MoE tensors train (fp32 master weights); the base can sit in bf16 under bf16
autocast. The routed experts are stacked tensors, so every one gets a gradient and DDP runs
with find_unused_parameters=False. Output: ``styleexpert.safetensors`` in the native format
(experts + metadata; with ``projector`` set, the stage-1 projector rides in the same file),
``train_state.pt`` + ``rng.rank<r>.pt`` (resume: trainable tensors, optimizer, data position and
RNG, never the frozen base; see ``state.py``), ``metrics.jsonl`` and ``config.json``.

Read top to bottom: ``build`` (accelerator, data, model, optimizer), ``resume``, ``train_step``,
``evaluate``, ``save``, then ``main``, the loop that calls them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator, skip_first_batches
from accelerate.utils import DistributedType, InitProcessGroupKwargs
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from styleexpert_core.config import ALIGNMENTS, MoEConfig
from styleexpert_core.formats import load_checkpoint
from styleexpert_core.moe_lora import StyleContext, inject_moe

from ..checkpoints import MetricsLog, experts_from_state_dict, export_experts, load_projector_checkpoint
from ..config import check, config_to_dict
from ..data.backbones import DTYPES
from ..data.workers import worker_count
from ..data.buckets import BucketBatchSampler
from ..data.errors import ConfigError
from ..optim import OPTIMIZERS, build_optimizer, lr_factor
from .data import TripletCache
from .flow_matching import flow_matching_loss, sample_sigmas
from .flux import load_transformer, moe_target_modules
from .validation import held_out_styles, load_vae, write_sample_grid
from .state import Position, load_train_state, save_train_state

log = logging.getLogger("training.stage2")
BASE_DTYPES = ("float32", "bfloat16")  # the frozen base's weights: full precision, or bf16 under autocast
EXPORT_NAME = "styleexpert.safetensors"


@dataclass(frozen=True)
class Stage2Config:
    # data and models
    cache_dir: str = ""  # stage-2 triplet cache (python -m training.stage2.cache)
    val_cache_dir: str = ""  # held-out triplets for the correct-vs-shuffled-style evaluation
    holdout_styles: int = 0  # or: this many styles of cache_dir never trained on, validated on (validation.py)
    model: str = ""  # flux1-kontext-dev.safetensors (BFL), a diffusers folder, or "tiny"
    model_config: str = ""  # folder with the transformer config.json for a single file (default: bundled Kontext-dev)
    base_model: str = "flux1-kontext-dev"  # recorded in the checkpoint metadata
    projector: str = ""  # stage-1 native file: embedded in the export (and checked against the cache)
    out_dir: str = "runs/stage2"
    # experts
    targets: str = "attention+mlp"  # the paper's (attention + FFN) | attention | csv:<file> | re:<regex>
    num_experts: int = 16
    rank: int = 8
    top_k: int = 2
    alignment: str = "paper"  # "paper" for new training; "official" to continue the released weights
    scale_rule: str = "official"
    init_from: str = ""  # official or native checkpoint whose experts initialise ours
    # flow matching
    guidance: float = 1.0  # embedded guidance during training (guidance-distilled models only)
    sigma_mean: float = 0.0
    sigma_std: float = 1.0
    sigma_shift: float = 1.0
    style_tokens: bool = False  # also feed the style image's latent as tokens (index 2, rows + 64)
    # optimisation
    optimizer: str = "adamw"
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 100
    steps: int = 1000
    batch_size: int = 4  # per process
    grad_accum: int = 1
    grad_clip: float = 1.0
    mixed_precision: str = "no"  # "no" or "bf16" (autocast)
    base_dtype: str = "float32"  # dtype of the frozen base weights: float32 or bfloat16
    gradient_checkpointing: bool = True
    num_workers: int = -1  # DataLoader workers; -1: up to 4 on a GPU, 0 on the CPU
    # bookkeeping
    log_every: int = 10
    eval_every: int = 200
    eval_batches: int = 8
    save_every: int = 500
    sample_every: int = 0  # every N steps a grid samples/step_N.png: reference | content | sample | target
    sample_count: int = 4  # rows of the grid (validation triplets)
    sample_steps: int = 20  # Euler steps of the sampler
    sample_vae: str = ""  # diffusers folder with vae/ to decode samples; empty: a false-colour latent preview
    resume: bool = False
    seed: int = 0
    device: str = "auto"  # "auto" (GPU when available, else CPU with gloo for multi-process) or "cpu"
    sync_check: bool = False  # write a per-rank checksum of the trained tensors (distributed tests)

    def __post_init__(self) -> None:
        check(bool(self.cache_dir), "cache_dir is required (run `python -m training.stage2.cache` first).")
        check(bool(self.model), "model is required: flux1-kontext-dev.safetensors, a diffusers folder, or 'tiny'.")
        check(self.alignment in ALIGNMENTS, f"alignment must be one of {ALIGNMENTS}, got {self.alignment!r}.")
        check(self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}.")
        check(self.mixed_precision in ("no", "bf16"), "mixed_precision must be 'no' or 'bf16'.")
        check(self.device in ("auto", "cpu"), "device must be 'auto' or 'cpu' (accelerate picks the GPU per rank).")
        check(self.base_dtype in BASE_DTYPES, f"base_dtype must be one of {BASE_DTYPES}.")
        check(self.base_dtype == "float32" or self.mixed_precision == "bf16",
              "base_dtype=bfloat16 needs mixed_precision=bf16 (the fp32 experts meet the bf16 base under autocast).")
        check(math.isfinite(self.sigma_mean) and 0 < self.sigma_std < math.inf and 0 < self.sigma_shift < math.inf,
              "sigma_mean must be finite and sigma_std, sigma_shift positive finite numbers (1.0 = no shift).")
        check(self.steps >= 1 and self.batch_size >= 1 and self.grad_accum >= 1 and self.lr > 0,
              "steps, batch_size, grad_accum and lr must be positive.")
        check(not (self.holdout_styles and self.val_cache_dir), "give either val_cache_dir (held-out triplets) "
              "or holdout_styles (styles of cache_dir kept out of training), not both.")
        check(self.sample_every == 0 or bool(self.holdout_styles or self.val_cache_dir),
              "sample_every samples validation triplets: set holdout_styles or val_cache_dir.")


@dataclass
class Stage2Run:
    """Everything a stage-2 run builds before its first step (model, optimizer, loader: accelerate-prepared)."""

    accelerator: Accelerator
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loader: DataLoader
    sampler: BucketBatchSampler  # the loader's own; accelerate's shard wrapper hides its set_epoch
    val_data: TripletCache | None
    context: StyleContext  # the routers read the style latent from it
    moe_config: MoEConfig
    targets: list[str]
    trainable: list[torch.nn.Parameter]  # of the prepared model (FSDP2 replaces the parameter objects)
    input_dtype: torch.dtype  # of the trainable weights: DeepSpeed casts the model to bf16 and turns autocast off
    guidance: float | None
    mode: str  # "ddp" (also one process), "fsdp2" or "deepspeed": how the resume state is saved
    out_dir: Path
    text_length: int  # T5 tokens per prompt in the cache, recorded in the export


def rank_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """Noise/timestep RNG that depends only on (seed, rank, step): resumable and distinct per rank."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0]))


def trainable_checksum(model: torch.nn.Module) -> str:
    """A hash of every trainable tensor, to compare ranks."""
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        if p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def launched_mode() -> str:
    """What ``accelerate launch`` asked for through its environment: "fsdp2", "deepspeed" or "ddp"."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        return "deepspeed"
    return "fsdp2" if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" else "ddp"


def accelerator_mode(accelerator: Accelerator) -> str:
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        return "deepspeed"
    if accelerator.distributed_type == DistributedType.FSDP:
        check(accelerator.is_fsdp2, "FSDP1 is not supported: set fsdp_version: 2 in the accelerate config.")
        return "fsdp2"
    return "ddp"


def start(cfg: Stage2Config) -> tuple[Accelerator, Path]:
    """The accelerator and the run folder (with config.json); seeds identical expert initialisation on every rank."""
    # accelerate only uses the multi-process CPU (gloo) backend when told to run on the CPU; DeepSpeed
    # (with its CPU accelerator, DS_ACCELERATOR=cpu) needs cpu=False and gloo named explicitly.
    cpu = cfg.device == "cpu" or not torch.cuda.is_available()
    deepspeed_on_cpu = cpu and launched_mode() == "deepspeed"
    accelerator = Accelerator(cpu=cpu and not deepspeed_on_cpu, mixed_precision=cfg.mixed_precision,
                              gradient_accumulation_steps=cfg.grad_accum,
                              kwargs_handlers=[InitProcessGroupKwargs(backend="gloo")] if deepspeed_on_cpu else None)
    if accelerator_mode(accelerator) != launched_mode():  # accelerate falls back to plain DDP without a word
        raise ConfigError(f"the launch asked for {launched_mode()} but accelerate set up "
                          f"{accelerator.distributed_type} (accelerate runs FSDP only on GPUs); use the DDP config "
                          "on this machine.")
    if not accelerator.is_main_process:
        log.setLevel(logging.WARNING)  # one copy of the progress log, from rank 0
    out_dir = Path(cfg.out_dir)
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(config_to_dict(cfg), indent=2))
    accelerator.wait_for_everyone()
    torch.manual_seed(cfg.seed)
    return accelerator, out_dir


def build_data(cfg: Stage2Config) -> tuple[TripletCache, TripletCache | None, DataLoader]:
    """Cached latents, text embeddings and frozen style latents, in bucket-uniform batches."""
    held = held_out_styles(cfg.cache_dir, cfg.holdout_styles, cfg.seed) if cfg.holdout_styles else frozenset()
    data = TripletCache(cfg.cache_dir, style_tokens=cfg.style_tokens, styles=held)
    val_data = TripletCache(cfg.val_cache_dir or cfg.cache_dir, style_tokens=cfg.style_tokens, styles=held,
                            keep_styles=bool(held)) if cfg.val_cache_dir or held else None
    if cfg.projector:
        pconfig = load_projector_checkpoint(cfg.projector).projector_config
        check(pconfig.cond_dim == data.cond_dim, f"the projector outputs {pconfig.cond_dim}-d latents but the cache "
              f"holds {data.cond_dim}-d ones; cache stage 2 with this projector.")
    workers = worker_count(cfg.num_workers, torch.device("cuda" if torch.cuda.is_available() and cfg.device == "auto"
                                                         else "cpu"))
    loader = DataLoader(data, batch_sampler=data.batch_sampler(cfg.batch_size, seed=cfg.seed),
                        collate_fn=data.collate, num_workers=workers, persistent_workers=workers > 0)
    return data, val_data, loader


def build_model(cfg: Stage2Config, cond_dim: int):
    """The frozen base with MoE-LoRA experts from the core injected (optionally initialised from a file)."""
    model = load_transformer(cfg.model, dtype=DTYPES[cfg.base_dtype], seed=cfg.seed,
                             **({"config_dir": cfg.model_config} if cfg.model_config else {}))
    model.requires_grad_(False)
    # The routers pick experts in the precision training computes in; the file records it, and
    # ComfyUI routes the same way (a near-tie resolved differently is a different expert).
    moe_config = MoEConfig(num_experts=cfg.num_experts, rank=cfg.rank, top_k=cfg.top_k, cond_dim=cond_dim,
                           alignment=cfg.alignment, scale_rule=cfg.scale_rule,
                           routing_precision="bf16" if cfg.mixed_precision == "bf16" else "fp32")
    targets = moe_target_modules(model, cfg.targets)
    context, wrapped = inject_moe(model, targets, moe_config, dtype=torch.float32)
    model.style_context = context
    if cfg.init_from:
        init = load_checkpoint(cfg.init_from)
        check(init.config is not None and init.config.alignment == cfg.alignment,
              f"{cfg.init_from} was trained with alignment {getattr(init.config, 'alignment', None)!r}; set "
              "alignment to match it (the released weights need 'official').")
        for name, tensors in init.layers.items():
            if name in wrapped:
                wrapped[name].moe.load_tensors(tensors, where=f"{cfg.init_from}: {name}")
    if cfg.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    model.train()
    log.info("%d MoE layers (%s), %.2f M trainable parameters, alignment=%s", len(wrapped), cfg.targets,
             sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6, cfg.alignment)
    return model, moe_config, targets


def build(cfg: Stage2Config) -> Stage2Run:
    accelerator, out_dir = start(cfg)
    data, val_data, loader = build_data(cfg)
    model, moe_config, targets = build_model(cfg, data.cond_dim)
    context, guidance = model.style_context, cfg.guidance if model.config.guidance_embeds else None
    optimizer = build_optimizer(cfg.optimizer, [p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                weight_decay=cfg.weight_decay)
    if accelerator.state.deepspeed_plugin is not None:  # DeepSpeed wants the micro batch before prepare
        accelerator.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = cfg.batch_size
    sampler = loader.batch_sampler
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    # after prepare: FSDP2 swaps every parameter for a sharded one, so a list taken before would
    # clip gradients that no longer exist
    trainable = [p for p in model.parameters() if p.requires_grad]
    return Stage2Run(accelerator, model, optimizer, loader, sampler, val_data, context, moe_config, targets,
                     trainable, trainable[0].dtype, guidance, accelerator_mode(accelerator), out_dir,
                     data.text_seq.shape[1])


def resume(run: Stage2Run, cfg: Stage2Config) -> Position:
    """Where to start: the saved position when resuming (weights, optimizer and RNG restored), else the start."""
    if not cfg.resume:
        return Position(num_processes=run.accelerator.num_processes)
    position = load_train_state(run.accelerator, run.model, run.optimizer, run.out_dir, run.mode)
    if position.batch >= len(run.loader):  # saved at the end of an epoch
        position.epoch, position.batch = position.epoch + 1, 0
    log.info("resuming at step %d (epoch %d, after its first %d batches)", position.step, position.epoch,
             position.batch)
    return position


def epoch_loader(loader: DataLoader, sampler: BucketBatchSampler, epoch: int, skip: int = 0) -> DataLoader:
    """The batches of ``epoch`` past the first ``skip`` (those a resumed run has trained already).

    accelerate's loader re-applies its own epoch counter to the batch sampler each time it is
    iterated, so that counter is set (a skipping copy inherits it); but it does not reach a
    batch sampler inside its shard wrapper (with several processes every epoch would repeat
    the first), so the epoch is also set on ours.
    """
    loader.set_epoch(epoch)
    sampler.set_epoch(epoch)
    return skip_first_batches(loader, skip) if skip else loader


def micro_batch_loss(model, context: StyleContext, batch, cfg: Stage2Config, *, rank: int, micro: int,
                     dtype: torch.dtype, guidance: float | None) -> torch.Tensor:
    """The flow-matching loss of one micro-batch, its noise and timesteps keyed by (seed, rank, micro).

    The batch (latents, text) is cast to ``dtype``, the trainable weights' dtype: under DeepSpeed
    accelerate casts the whole model to bf16 and turns autocast off, so fp32 batches would meet
    bf16 weights; with fp32 experts (DDP, FSDP2, autocast) the cast changes nothing.
    """
    batch = batch.to(batch.target.device, dtype=dtype)
    g = rank_generator(cfg.seed, rank, micro)
    x = batch.target
    noise = torch.randn(x.shape[0], x.shape[-2] * x.shape[-1] // 4, x.shape[1] * 4, generator=g)
    sigma = sample_sigmas(x.shape[0], g, mean=cfg.sigma_mean, std=cfg.sigma_std, shift=cfg.sigma_shift)
    context.set(batch.style_latent)
    return flow_matching_loss(model, batch, noise.to(x.device, x.dtype), sigma.to(x.device, x.dtype),
                              guidance=guidance)


def train_step(run: Stage2Run, cfg: Stage2Config, batch, step: int, micro: int) -> tuple[float, float | None]:
    """One micro-batch (an optimizer step when gradients sync): (loss averaged over ranks, gradient norm
    before clipping on a synchronising step, else None)."""
    accelerator, optimizer = run.accelerator, run.optimizer
    grad_norm = None
    with accelerator.accumulate(run.model):
        loss = micro_batch_loss(run.model, run.context, batch, cfg, rank=accelerator.process_index, micro=micro,
                                dtype=run.input_dtype, guidance=run.guidance)
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            if cfg.grad_clip > 0:  # DeepSpeed clips itself (its config) and returns the last norm or None
                norm = accelerator.clip_grad_norm_(run.trainable, cfg.grad_clip)
                grad_norm = None if norm is None else float(norm)
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * lr_factor(step, cfg.warmup_steps, cfg.steps)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return float(accelerator.reduce(loss.detach().float(), reduction="mean")), grad_norm


@torch.no_grad()
def evaluate(model, data: TripletCache, cfg: Stage2Config, guidance: float | None, device) -> dict[str, float]:
    """Held-out loss with each sample's own style latent vs. a latent from another style.

    The same noise and sigma are used for both, so the gap measures only how much the
    experts rely on the style latent. Every rank computes the same numbers.
    """
    sampler = data.batch_sampler(min(cfg.batch_size, len(data)), seed=0, shuffle=False, drop_last=False)
    totals = {"loss_correct_style": 0.0, "loss_shuffled_style": 0.0}
    batches = sampler.batches()[: cfg.eval_batches]
    context = model_context(model)
    for b, indices in enumerate(batches):
        batch = data.collate([data[i] for i in indices]).to(device)
        g = rank_generator(cfg.seed + 1, 0, b)
        x_shape = (len(indices), batch.target.shape[-2] * batch.target.shape[-1] // 4, batch.target.shape[1] * 4)
        noise = torch.randn(x_shape, generator=g).to(device)
        sigma = sample_sigmas(len(indices), g, mean=cfg.sigma_mean, std=cfg.sigma_std, shift=cfg.sigma_shift).to(device)
        for key, latent in (("loss_correct_style", batch.style_latent),
                            ("loss_shuffled_style", data.other_style_latents(indices, seed=b).to(device))):
            context.set(latent)
            totals[key] += float(flow_matching_loss(model, batch, noise, sigma, guidance=guidance)) / len(batches)
    return totals


def model_context(model):
    """The StyleContext attached to a (possibly wrapped) model by ``build_model``."""
    inner = model
    while not hasattr(inner, "style_context") and hasattr(inner, "module"):
        inner = inner.module
    return inner.style_context


def validate(run: Stage2Run, cfg: Stage2Config) -> dict[str, float]:
    """``evaluate`` on the held-out triplets, with the model in eval mode for the duration."""
    run.model.eval()
    result = evaluate(run.model, run.val_data, cfg, run.guidance, run.accelerator.device)
    run.model.train()
    return result


def save(run: Stage2Run, cfg: Stage2Config, position: Position, final: bool) -> None:
    """Resume state (trainable tensors only, see ``state.py``), progress.json and the exported native file."""
    accelerator, step = run.accelerator, position.step
    experts = save_train_state(accelerator, run.model, run.optimizer, run.out_dir, position, run.mode)
    if accelerator.is_main_process:
        (run.out_dir / "progress.json").write_text(json.dumps({"step": step, "final": final}))
        export_experts(run.out_dir / EXPORT_NAME, run.moe_config, experts_from_state_dict(experts),
                       projector_file=cfg.projector or None, base_model=cfg.base_model,
                       style_token_concat=cfg.style_tokens, text_length=run.text_length)
    accelerator.wait_for_everyone()


def finish(run: Stage2Run, cfg: Stage2Config, metrics_log: MetricsLog) -> dict:
    """Per-rank checksums (sync_check), then the run's records; all ranks end together."""
    accelerator = run.accelerator
    if cfg.sync_check:
        (run.out_dir / f"checksum.rank{accelerator.process_index}.txt").write_text(
            trainable_checksum(accelerator.unwrap_model(run.model)))
    records = metrics_log.read() if accelerator.is_main_process else []
    accelerator.wait_for_everyone()  # all ranks finish before the process group goes away
    accelerator.end_training()
    return {"checkpoint": str(run.out_dir / EXPORT_NAME), "train": [r for r in records if r["split"] == "train"],
            "val": [r for r in records if r["split"] == "val"], "targets": run.targets}


def main(cfg: Stage2Config) -> dict:
    run = build(cfg)
    position = resume(run, cfg)
    accelerator, step, micro = run.accelerator, position.step, position.micro
    metrics_log = MetricsLog(run.out_dir / "metrics.jsonl", enabled=accelerator.is_main_process, fresh=not cfg.resume)
    if run.val_data is not None and step == 0:  # the untrained experts add nothing: the base model's loss
        metrics_log.write(step=0, split="val", **validate(run, cfg))
    vae = load_vae(cfg.sample_vae).to(accelerator.device) if cfg.sample_every and cfg.sample_vae else None
    bar = tqdm(total=cfg.steps, initial=step, desc="stage 2", disable=not accelerator.is_local_main_process)
    # a resumed run continues its epoch after the batches it has trained (noise is keyed by micro)
    epoch, seen, recent = position.epoch, position.batch, []
    while step < cfg.steps:
        for batch in epoch_loader(run.loader, run.sampler, epoch, skip=seen):
            loss, grad_norm = train_step(run, cfg, batch, step, micro)
            recent.append(loss)
            micro, seen = micro + 1, seen + 1
            if not accelerator.sync_gradients:
                continue
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            if step % cfg.log_every == 0 or step == cfg.steps:
                log.info("step %d/%d loss %.4f", step, cfg.steps, float(np.mean(recent)))
                metrics_log.write(step=step, split="train", loss=float(np.mean(recent)),
                                  **({"grad_norm": grad_norm} if grad_norm is not None else {}))
                recent = []
            if run.val_data is not None and (step % cfg.eval_every == 0 or step == cfg.steps):
                result = validate(run, cfg)
                log.info("step %d held-out loss: correct style %.4f, shuffled style %.4f", step,
                         result["loss_correct_style"], result["loss_shuffled_style"])
                metrics_log.write(step=step, split="val", **result)
            if cfg.sample_every and step % cfg.sample_every == 0:
                write_sample_grid(run.model, run.context, run.val_data, run.out_dir / "samples" / f"step_{step:06d}.png",
                                  count=cfg.sample_count, steps=cfg.sample_steps, guidance=run.guidance, seed=cfg.seed,
                                  vae=vae, write=accelerator.is_main_process)
            if step % cfg.save_every == 0 or step == cfg.steps:
                save(run, cfg, Position(step, epoch, seen, micro, accelerator.num_processes),
                     final=step == cfg.steps)
            if step >= cfg.steps:
                break
        epoch, seen = epoch + 1, 0
    bar.close()
    return finish(run, cfg, metrics_log)
