"""Put a stage-1 projector into a stage-2 experts file (or re-export), in the native format.

    python -m training.stage2.export --experts=runs/stage2/styleexpert.safetensors \
        --projector=runs/stage1/projector.safetensors --out=models/styleexpert/my_styles.safetensors

The result is one file the StyleExpertLoader node reads: expert layers, the projector that
produced the router inputs, and metadata (experts, rank, top_k, cond_dim, scale rule,
alignment, SigLIP layers, key naming, base model); beside it, `<name>.preview.png`, the file's
card in ComfyUI's Model Library. Routers and projector must agree on
cond_dim; the core refuses the file otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from styleexpert_core.formats import StyleExpertCheckpoint, load_checkpoint, save_native
from styleexpert_core.preview_card import write_preview

from ..checkpoints import load_projector_checkpoint
from ..config import check, config_main


@dataclass(frozen=True)
class ExportConfig:
    experts: str = ""  # stage-2 native file (or an official MoE file)
    projector: str = ""  # stage-1 native file (or an official projector file)
    out: str = ""

    def __post_init__(self) -> None:
        check(bool(self.experts and self.projector and self.out), "experts, projector and out are required.")


def merge(experts: str | Path, projector: str | Path, out: str | Path) -> Path:
    """Write the merged file, and its Model Library preview card `<name>.preview.png` beside it."""
    ckpt = load_checkpoint(experts)
    stage1 = load_projector_checkpoint(projector)
    merged = StyleExpertCheckpoint(ckpt.config, ckpt.layers, stage1.projector, stage1.projector_config, ckpt.info)
    save_native(merged, out)
    write_preview(merged, out)
    return Path(out)


if __name__ == "__main__":
    config_main(ExportConfig, lambda cfg: merge(cfg.experts, cfg.projector, cfg.out))
