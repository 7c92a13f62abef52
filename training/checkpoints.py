"""What a training run writes to its out_dir: native StyleExpert files (via the core), resume state, metrics.

* Weights always go to the native format the StyleExpertLoader node reads, through
  ``styleexpert_core.formats.save_native``: a projector-only file after stage 1, an experts
  file (optionally with the stage-1 projector inside) after stage 2.
* Resume state (optimizer moments, step, sampler and RNG state, auxiliary heads) is a side
  file ``train_state.pt``. It is our own file, written by ``torch.save`` and read back with
  ``torch.load(weights_only=True)``, so no code is ever unpickled; ``rng_state`` therefore
  stores every RNG as tensors and plain values.
* Metrics are an append-only ``metrics.jsonl`` (``MetricsLog``).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from styleexpert_core.config import MoEConfig, ProjectorConfig
from styleexpert_core.errors import CheckpointError
from styleexpert_core.formats import StyleExpertCheckpoint, load_checkpoint, save_native
from styleexpert_core.moe_lora import TENSOR_NAMES, ExpertTensors

from .data.files import atomic_save

STATE_FILE = "train_state.pt"
MOE_SUFFIX = ".moe."


def save_projector(path: str | Path, projector: nn.Module, config: ProjectorConfig) -> Path:
    """A projector-only native file (stage 1 output)."""
    state = {k: v.detach().float().cpu() for k, v in projector.state_dict().items()}
    save_native(StyleExpertCheckpoint(projector=state, projector_config=config, info={"source": "native"}), path)
    return Path(path)


def load_projector_checkpoint(path: str | Path) -> StyleExpertCheckpoint:
    """A native file (or an official projector file) that holds a style projector.

    Build the projector with its ``build_projector()``: that honours the stored configuration,
    layer order included.
    """
    ckpt = load_checkpoint(path)
    if ckpt.projector is None:
        raise CheckpointError(f"{path} holds no style projector; give the stage-1 output file.")
    return ckpt


def experts_from_state_dict(state: dict[str, torch.Tensor]) -> dict[str, ExpertTensors]:
    """Group '<module>.moe.<A|B|shared_A|shared_B|gate>' entries of a model state dict by module."""
    grouped: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        module, sep, name = key.rpartition(MOE_SUFFIX)
        if sep and name in TENSOR_NAMES:
            grouped.setdefault(module.removeprefix("module."), {})[name] = value.detach().float().cpu()
    return {m: ExpertTensors(**parts) for m, parts in grouped.items()}


def export_experts(path: str | Path, config: MoEConfig, layers: dict[str, ExpertTensors], *,
                   projector_file: str | Path | None = None, base_model: str = "flux1-kontext-dev",
                   style_token_concat: bool = False, text_length: int | None = None) -> Path:
    """The stage-2 native file; with ``projector_file`` the stage-1 projector goes in the same file.
    ``text_length``: the T5 tokens per prompt trained with (the nodes cut ComfyUI's 256 to it)."""
    projector = projector_config = None
    if projector_file:
        stage1 = load_projector_checkpoint(projector_file)
        projector, projector_config = stage1.projector, stage1.projector_config
    info = {"base_model": base_model, "style_token_concat": "true" if style_token_concat else "false",
            "source": "native", "module_naming": "diffusers",
            **({"text_length": str(text_length)} if text_length else {})}
    save_native(StyleExpertCheckpoint(config, layers, projector, projector_config, info), path)
    return Path(path)


def save_state(out_dir: str | Path, state: dict) -> Path:
    return atomic_save(Path(out_dir) / STATE_FILE, lambda tmp: torch.save(state, tmp))


def load_state(out_dir: str | Path) -> dict | None:
    """The side state of a previous run in ``out_dir``, or None when there is none."""
    path = Path(out_dir) / STATE_FILE
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # the restricted unpickler raises many types
        raise CheckpointError(f"{path}: cannot read the resume state ({e}); delete it to start over.") from None


def rng_state() -> dict:
    """Every global RNG a run may draw from (python, numpy, torch, CUDA), readable with weights_only."""
    _, key, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(), "numpy_key": torch.from_numpy(key.astype(np.int64)),
            "numpy_rest": [int(pos), int(has_gauss), float(gauss)], "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` saved."""
    random.setstate(state["python"])
    pos, has_gauss, gauss = state["numpy_rest"]
    np.random.set_state(("MT19937", state["numpy_key"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class MetricsLog:
    """Append-only JSONL file of training records ({"step": ..., "loss": ...})."""

    def __init__(self, path: str | Path, enabled: bool = True, *, fresh: bool = False) -> None:
        """``fresh`` starts a new file (a new run); otherwise records are appended (a resumed run)."""
        self.path = Path(path)
        self.enabled = enabled
        self.start = time.time()
        if fresh and enabled:
            self.path.unlink(missing_ok=True)

    def write(self, **record) -> None:
        if self.enabled:
            record = {"time_s": round(time.time() - self.start, 3), **record}
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    def read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
