"""Stage-2 caching pass: VAE latents, Flux text embeddings and frozen stage-1 style latents.

    python -m training.stage2.cache --manifest=data/train.jsonl --flux=/models/FLUX.1-Kontext-dev \
        --siglip=/models/siglip-so400m-patch14-384 --projector=runs/stage1/projector.safetensors \
        --out=cache/stage2 [--bucket_side=512] [--style_reference_latents=true]

Resumable: run the same command again after an interruption and finished shards are skipped.
Sharded over processes: ``accelerate launch -m training.stage2.cache ...`` has each rank encode
its shards (latents and text) on its own GPU; rank 0 writes the index when all are done.
Models load from local folders only. ``--flux`` is a diffusers FLUX.1-Kontext-dev folder
(``vae/``, ``text_encoder/``, ``text_encoder_2/`` and tokenizers); the transformer itself is
not needed here. The projector is built from the file's stored configuration (layer order
included), and SigLIP is tapped at exactly those layers.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..checkpoints import load_projector_checkpoint
from ..config import check, config_main, load_config
from ..data.backbones import DTYPES, FluxText, ProjectedStyle, SiglipHidden, VaeLatents
from ..data.cache import TripletCacheSpec, cache_triplets
from ..data.ranks import launched_part
from ..data.triplets import read_triplets


@dataclass(frozen=True)
class Stage2CacheConfig:
    manifest: str = ""
    flux: str = ""  # diffusers FLUX.1-Kontext-dev folder (vae + text encoders)
    siglip: str = ""
    projector: str = ""  # stage-1 native file (frozen)
    out: str = ""
    bucket_side: int = 1024
    style_reference_latents: bool = False
    max_text_length: int = 128
    batch_size: int = 8
    shard_size: int = 512
    dtype: str = "bfloat16"
    device: str = "auto"  # "auto": each rank's GPU when there is one, else the CPU

    def __post_init__(self) -> None:
        check(bool(self.manifest and self.flux and self.siglip and self.projector and self.out),
              "manifest, flux, siglip, projector and out are required.")
        check(self.dtype in DTYPES, f"dtype must be one of {tuple(DTYPES)}.")


def projected_style(siglip_dir: str, projector_file: str, device: str = "cpu") -> ProjectedStyle:
    """SigLIP tapped at the layers the stored projector reads, then that projector (frozen)."""
    projector = load_projector_checkpoint(projector_file).build_projector()
    siglip = SiglipHidden.from_pretrained(siglip_dir, layers=projector.config.layers)
    siglip.model.to(device)
    return ProjectedStyle(siglip, projector.to(device))


def run(cfg: Stage2CacheConfig) -> None:
    part, device = launched_part(cfg.device)
    style = projected_style(cfg.siglip, cfg.projector, device)
    vae = VaeLatents.from_pretrained(cfg.flux)
    vae.vae.to(device)
    text = FluxText.from_pretrained(cfg.flux, max_length=cfg.max_text_length)
    text.t5.to(device)
    text.clip.to(device)
    cache_triplets(read_triplets(cfg.manifest), vae, text, style, cfg.out,
                   spec=TripletCacheSpec(cfg.bucket_side, cfg.style_reference_latents), model_id=cfg.flux,
                   projector_id=cfg.projector, shard_size=cfg.shard_size, batch_size=cfg.batch_size,
                   dtype=DTYPES[cfg.dtype], part=part)


def main(argv: list[str]) -> None:
    run(load_config(Stage2CacheConfig, argv))


if __name__ == "__main__":
    config_main(Stage2CacheConfig, run)
