"""Stage-1 caching pass: SigLIP hidden states of every stylised image (the frozen tower runs here only).

    python -m training.stage1.cache --manifest=data/train.jsonl --siglip=/models/siglip-so400m-patch14-384 \
        --out=cache/stage1 [--style_text=/models/siglip-so400m-patch14-384]

Resumable: run the same command again after an interruption and finished shards are skipped.
Models load from local folders only. Sharded over processes: ``accelerate launch -m
training.stage1.cache ...`` (or ``torchrun --nproc_per_node N``) has each rank encode its
shards on its own GPU; rank 0 writes the index when all are done.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import check, config_main, load_config
from ..data.backbones import DTYPES, SiglipHidden, SiglipStyleText
from ..data.cache import cache_style_hidden
from ..data.ranks import launched_part
from ..data.triplets import read_triplets


@dataclass(frozen=True)
class Stage1CacheConfig:
    manifest: str = ""
    siglip: str = ""  # local SiglipVisionModel / SiglipModel folder
    out: str = ""
    style_text: str = ""  # local SigLIP folder whose text tower embeds the style prompts (megastyle loss)
    layers: tuple[int, ...] = (-2, -11, -20)
    batch_size: int = 32
    shard_size: int = 1024
    dtype: str = "float16"
    device: str = "auto"  # "auto": each rank's GPU when there is one, else the CPU

    def __post_init__(self) -> None:
        check(bool(self.manifest and self.siglip and self.out), "manifest, siglip and out are required.")
        check(self.dtype in DTYPES, f"dtype must be one of {tuple(DTYPES)}.")


def run(cfg: Stage1CacheConfig) -> None:
    part, device = launched_part(cfg.device)
    siglip = SiglipHidden.from_pretrained(cfg.siglip, layers=cfg.layers)
    siglip.model.to(device)
    style_text = SiglipStyleText.from_pretrained(cfg.style_text) if cfg.style_text else None
    if style_text is not None:
        style_text.model.to(device)
    cache_style_hidden(read_triplets(cfg.manifest), siglip, cfg.out, style_text=style_text, model_id=cfg.siglip,
                       shard_size=cfg.shard_size, batch_size=cfg.batch_size, dtype=DTYPES[cfg.dtype], part=part)


def main(argv: list[str]) -> None:
    run(load_config(Stage1CacheConfig, argv))


if __name__ == "__main__":
    config_main(Stage1CacheConfig, run)
