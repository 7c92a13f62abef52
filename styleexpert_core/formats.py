"""Checkpoint files: the native format, the official release, and baked LoRAs.

Native (`format = styleexpert` in the safetensors metadata):
    moe.<diffusers module>.{A,B,shared_A,shared_B,gate}   expert layers (optional)
    projector.<projector key>                               style projector (optional)
    metadata styleexpert.version / .moe / .projector / .module_naming / .base_model /
             .style_token_concat / .source   (JSON values)
Official release (HH-LG/StyleExpert):
    [transformer.]<diffusers module>.lora_layer.{loraA,loraB,shared_A,shared_B,cond_gate.weight}
    plus a projector file ([proj_model.]embedding_linears..., .safetensors or a .pt state dict).
Every tensor key is accounted for; anything unknown, missing or mis-shaped is an error
that names the file, the key and the expected format. Pickles are never unpickled:
only a `.pt` projector is read, through torch.load(weights_only=True).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .config import MoEConfig, ProjectorConfig
from .errors import CheckpointError, StyleExpertError
from .keys import is_flux_linear
from .moe_lora import TENSOR_NAMES, ExpertTensors
from .projector import StyleProjector, build_projector, projector_config_from_state_dict, strip_official_prefix
from .safe_write import write_atomically

FORMAT_NAME = "styleexpert"
FORMAT_VERSION = 1
MOE_PREFIX = "moe."
PROJECTOR_PREFIX = "projector."
OFFICIAL_TENSORS = {"loraA": "A", "loraB": "B", "shared_A": "shared_A", "shared_B": "shared_B",
                    "cond_gate.weight": "gate"}
OFFICIAL_MARK = ".lora_layer."
OFFICIAL_TOP_K = 2  # not stored in the release; the official inference config uses 2
INFO_DEFAULTS = {"module_naming": "diffusers", "base_model": "flux1-kontext-dev",
                 "style_token_concat": "unknown", "source": "native"}
PICKLE_MAGIC = (b"PK\x03\x04", b"\x80")  # torch zip archive, raw pickle protocol 2+


@dataclass
class StyleExpertCheckpoint:
    """Expert layers and/or a style projector, with the configuration that gives them meaning."""

    config: MoEConfig | None = None
    layers: dict[str, ExpertTensors] = field(default_factory=dict)
    projector: dict[str, torch.Tensor] | None = None
    projector_config: ProjectorConfig | None = None
    info: dict[str, str] = field(default_factory=lambda: dict(INFO_DEFAULTS))

    def __post_init__(self) -> None:
        unknown = set(self.info) - set(INFO_DEFAULTS)
        if unknown:
            raise StyleExpertError(f"unknown checkpoint info field(s) {sorted(unknown)}; "
                                   f"expected {sorted(INFO_DEFAULTS)}.")
        self.info = {**INFO_DEFAULTS, **self.info}
        if self.layers and self.config is None:
            raise StyleExpertError("a checkpoint with expert layers needs an MoEConfig.")
        for name, tensors in self.layers.items():
            tensors.check(self.config, f"layer '{name}'")
        if (self.projector is None) != (self.projector_config is None):
            raise StyleExpertError("projector tensors and projector_config go together.")
        if self.config and self.projector_config and self.config.cond_dim != self.projector_config.cond_dim:
            raise StyleExpertError(
                f"the projector outputs {self.projector_config.cond_dim}-d style latents but the routers "
                f"expect cond_dim {self.config.cond_dim}; they were not trained together.")

    @property
    def has_experts(self) -> bool:
        return bool(self.layers)

    def build_projector(self, *, operations=None, dtype: torch.dtype | None = None) -> StyleProjector:
        """The style projector, built from the stored configuration (layer order included)."""
        if self.projector is None:
            raise StyleExpertError("this checkpoint holds no style projector.")
        return build_projector(self.projector, "checkpoint", config=self.projector_config,
                               operations=operations, dtype=dtype)

    def summary(self) -> dict:
        """A JSON-friendly description (used by the CLI and the loader node)."""
        out: dict = {"info": dict(self.info), "layers": len(self.layers)}
        if self.config:
            out["moe"] = {**self.config.to_dict(), "scale": self.config.scale,
                          "folded_rank": self.config.folded_rank}
            out["parameters"] = sum(t.numel() for layer in self.layers.values() for t in layer.as_dict().values())
            out["layer_groups"] = _layer_groups(self.layers)
        if self.projector_config:
            out["projector"] = self.projector_config.to_dict()
        return out


def _layer_groups(layers: dict[str, ExpertTensors]) -> dict[str, int]:
    groups = {"double_blocks": 0, "single_blocks": 0, "other": 0}
    for name in layers:
        key = ("double_blocks" if name.startswith("transformer_blocks.") else
               "single_blocks" if name.startswith("single_transformer_blocks.") else "other")
        groups[key] += 1
    return groups


# --------------------------------------------------------------------------- reading files

def _check_not_pickle(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(9)
    # A safetensors file is an 8-byte header length followed by a JSON object.
    if head[8:9] != b"{" and head.startswith(PICKLE_MAGIC):
        raise CheckpointError(
            f"{path}: this is a pickled PyTorch file, which can run arbitrary code when loaded; "
            "refusing to unpickle it. Convert it to .safetensors (StyleExpert files are safetensors).")
    if len(head) < 9:
        raise CheckpointError(f"{path}: file is empty or truncated ({len(head)} bytes); download it again.")


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors (on CPU) and the metadata of a safetensors file, with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found.")
    _check_not_pickle(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"{path}: not a readable .safetensors file ({e}); it may be truncated or corrupt.") from None
    return tensors, metadata


WRAPPER_KEYS = ("model_state_dict", "state_dict", "model")  # how training scripts nest state dicts


def read_tensor_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file, or of a .pt/.pth/.bin state dict read with weights_only=True
    (optionally nested under one of WRAPPER_KEYS). Used for the official projector and for
    evaluation encoders' local weights."""
    path = Path(path)
    if path.suffix.lower() not in (".pt", ".pth", ".bin"):
        return read_safetensors(path)[0]
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # the restricted unpickler raises many types
        raise CheckpointError(
            f"{path}: cannot be read as a plain tensor state dict with weights_only=True ({e}). "
            "Only tensor dictionaries are accepted; convert the file to .safetensors.") from None
    for key in WRAPPER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a dict of tensors (optionally under one of {WRAPPER_KEYS}).")
    return obj


def detect_format(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """'native', 'official-moe' or 'official-projector'; anything else is an error."""
    if metadata.get("format") == FORMAT_NAME:
        return "native"
    if tensors and all(OFFICIAL_MARK in k for k in tensors):
        return "official-moe"
    try:
        projector_config_from_state_dict(strip_official_prefix(tensors), "file")
        return "official-projector"
    except StyleExpertError:
        pass
    sample = sorted(tensors)[:3]
    raise CheckpointError(
        f"not a StyleExpert checkpoint (keys like {sample}). Expected a native StyleExpert file "
        "(metadata format=styleexpert), an official MoE file (keys '<module>.lora_layer.loraA', ...) "
        "or an official projector file (keys 'embedding_linears.-2.0.weight', ...).")


# --------------------------------------------------------------------------- native format

def save_native(ckpt: StyleExpertCheckpoint, path: str | os.PathLike, *, dtype: torch.dtype | None = None) -> None:
    """Write a native file (atomically: a crash never leaves a half-written checkpoint)."""
    tensors: dict[str, torch.Tensor] = {}
    for module, layer in ckpt.layers.items():
        for name, t in layer.as_dict().items():
            tensors[f"{MOE_PREFIX}{module}.{name}"] = t
    for key, t in (ckpt.projector or {}).items():
        tensors[f"{PROJECTOR_PREFIX}{key}"] = t
    if not tensors:
        raise StyleExpertError("nothing to save: the checkpoint has neither expert layers nor a projector.")
    tensors = {k: (v.to(dtype) if dtype else v).detach().cpu().contiguous() for k, v in tensors.items()}
    metadata = {
        "format": FORMAT_NAME,
        "styleexpert.version": str(FORMAT_VERSION),
        "styleexpert.moe": json.dumps(ckpt.config.to_dict() if ckpt.config else None),
        "styleexpert.projector": json.dumps(ckpt.projector_config.to_dict() if ckpt.projector_config else None),
        **{f"styleexpert.{k}": v for k, v in ckpt.info.items()},
    }
    write_atomically(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def _native_from_tensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str], source: str) -> StyleExpertCheckpoint:
    version = metadata.get("styleexpert.version")
    if version != str(FORMAT_VERSION):
        raise CheckpointError(
            f"{source}: StyleExpert format version {version!r}; this version of the pack reads "
            f"version {FORMAT_VERSION}. Update the node pack.")
    try:
        moe = json.loads(metadata.get("styleexpert.moe", "null"))
        proj = json.loads(metadata.get("styleexpert.projector", "null"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{source}: corrupt StyleExpert metadata ({e}).") from None
    info = {k.removeprefix("styleexpert."): v for k, v in metadata.items()
            if k.startswith("styleexpert.") and k.removeprefix("styleexpert.") in INFO_DEFAULTS}
    config = MoEConfig.from_dict(moe) if moe else None

    grouped: dict[str, dict[str, torch.Tensor]] = {}
    projector: dict[str, torch.Tensor] = {}
    for key, t in tensors.items():
        if key.startswith(MOE_PREFIX):
            module, _, name = key[len(MOE_PREFIX):].rpartition(".")
            if name not in TENSOR_NAMES or not module:
                raise CheckpointError(f"{source}: unknown expert tensor '{key}'; expected "
                                      f"'moe.<module>.{{{','.join(TENSOR_NAMES)}}}'.")
            grouped.setdefault(module, {})[name] = t
        elif key.startswith(PROJECTOR_PREFIX):
            projector[key[len(PROJECTOR_PREFIX):]] = t
        else:
            raise CheckpointError(f"{source}: unknown key '{key}'; native files hold only 'moe.*' and "
                                  "'projector.*' tensors.")
    if grouped and config is None:
        raise CheckpointError(f"{source}: expert tensors present but no 'styleexpert.moe' metadata.")
    layers = _expert_layers(grouped, config, source) if grouped else {}
    projector_config = None
    if projector:
        projector_config = ProjectorConfig.from_dict(proj) if proj else None
        if projector_config is None:
            raise CheckpointError(f"{source}: projector tensors present but no 'styleexpert.projector' metadata.")
        _check_projector(projector, projector_config, source)
    return StyleExpertCheckpoint(config, layers, projector or None, projector_config, info)


def _expert_layers(grouped: dict[str, dict[str, torch.Tensor]], config: MoEConfig,
                   source: str) -> dict[str, ExpertTensors]:
    layers = {}
    for module, parts in grouped.items():
        if not is_flux_linear(module):
            raise CheckpointError(
                f"{source}: '{module}' is not a Flux linear layer in diffusers naming "
                "(expected e.g. 'transformer_blocks.0.attn.to_q').")
        missing = [n for n in TENSOR_NAMES if n not in parts]
        if missing:
            raise CheckpointError(f"{source}: layer '{module}' lacks tensor(s) {missing}.")
        tensors = ExpertTensors(**parts)
        tensors.check(config, f"{source}: layer '{module}'")
        layers[module] = tensors
    return layers


def _check_projector(projector: dict[str, torch.Tensor], config: ProjectorConfig, source: str) -> None:
    inferred = projector_config_from_state_dict(projector, source)
    # Layer order is part of the meaning; compare as sets here, order comes from metadata.
    if inferred.to_dict() | {"layers": sorted(inferred.layers)} != config.to_dict() | {"layers": sorted(config.layers)}:
        raise CheckpointError(f"{source}: projector tensors describe {inferred}, metadata says {config}.")
    build_projector(projector, source)  # strict key/shape check


def load_native(path: str | os.PathLike) -> StyleExpertCheckpoint:
    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != FORMAT_NAME:
        detect_format(tensors, metadata)  # raises with the list of expected formats if unknown
        raise CheckpointError(f"{path}: this is an official StyleExpert release file, not a native one; "
                              "load it with load_official or convert it with `convert-official`.")
    return _native_from_tensors(tensors, metadata, str(path))


# --------------------------------------------------------------------------- official release

def official_to_layers(tensors: dict[str, torch.Tensor], source: str,
                       top_k: int = OFFICIAL_TOP_K) -> tuple[MoEConfig, dict[str, ExpertTensors]]:
    grouped: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in tensors.items():
        module, mark, name = key.partition(OFFICIAL_MARK)
        if not mark or name not in OFFICIAL_TENSORS:
            raise CheckpointError(
                f"{source}: unknown key '{key}'; official MoE keys look like "
                f"'<module>{OFFICIAL_MARK}{{{','.join(OFFICIAL_TENSORS)}}}'.")
        module = module.removeprefix("transformer.")
        grouped.setdefault(module, {})[OFFICIAL_TENSORS[name]] = t
    if not grouped:
        raise CheckpointError(f"{source}: no expert layers found.")
    first = next(iter(grouped.values()))
    if "A" not in first or "gate" not in first or first["A"].ndim != 3:
        raise CheckpointError(f"{source}: cannot read the expert count and rank (need loraA [E, r, in] "
                              "and cond_gate.weight [E, cond_dim]).")
    e, r, _ = first["A"].shape
    config = MoEConfig(num_experts=e, rank=r, top_k=top_k, cond_dim=first["gate"].shape[1],
                       alignment="official", scale_rule="official")
    return config, _expert_layers(grouped, config, source)


def load_official(moe_path: str | os.PathLike | None, projector_path: str | os.PathLike | None = None,
                  *, top_k: int = OFFICIAL_TOP_K) -> StyleExpertCheckpoint:
    """The official release, losslessly: MoE file and/or projector file."""
    if moe_path is None and projector_path is None:
        raise StyleExpertError("give the official MoE file, the projector file, or both.")
    config, layers = None, {}
    if moe_path is not None:
        tensors, metadata = read_safetensors(moe_path)
        if detect_format(tensors, metadata) != "official-moe":
            raise CheckpointError(f"{moe_path}: not an official StyleExpert MoE file "
                                  "(keys '<module>.lora_layer.loraA', ...).")
        config, layers = official_to_layers(tensors, str(moe_path), top_k)
    projector = projector_config = None
    if projector_path is not None:
        sd = strip_official_prefix(read_tensor_file(projector_path))
        projector_config = projector_config_from_state_dict(sd, str(projector_path))
        build_projector(sd, str(projector_path))
        projector = sd
    return StyleExpertCheckpoint(config, layers, projector, projector_config, {"source": "official"})


def load_checkpoint(path: str | os.PathLike, projector_path: str | os.PathLike | None = None) -> StyleExpertCheckpoint:
    """Any supported file: a native file, or an official MoE file (plus optional projector file)."""
    if Path(path).suffix.lower() in (".pt", ".pth", ".bin"):  # only an official projector comes as .pt
        tensors, metadata = read_tensor_file(path), {}
    else:
        tensors, metadata = read_safetensors(path)
    kind = detect_format(tensors, metadata)
    if kind == "native":
        ckpt = _native_from_tensors(tensors, metadata, str(path))
        if projector_path is not None:
            if ckpt.projector is not None:
                raise CheckpointError(f"{path} already holds a style projector; do not pass a second one.")
            extra = load_official(None, projector_path)
            ckpt = StyleExpertCheckpoint(ckpt.config, ckpt.layers, extra.projector, extra.projector_config, ckpt.info)
        return ckpt
    if kind == "official-moe":
        return load_official(path, projector_path)
    return load_official(None, path)


# --------------------------------------------------------------------------- baked LoRA

BAKED_PREFIX = "transformer."


def save_baked_lora(folded: dict[str, tuple[torch.Tensor, torch.Tensor]], path: str | os.PathLike,
                    *, dtype: torch.dtype = torch.float32, metadata: dict[str, str] | None = None) -> None:
    """A plain Flux LoRA in diffusers/peft naming that ComfyUI's stock LoRA loader reads.

    alpha is written equal to the rank, so the loader's alpha/rank scale is exactly 1.
    """
    tensors = {}
    for module, (up, down) in folded.items():
        if not is_flux_linear(module):
            raise StyleExpertError(f"cannot bake '{module}': not a Flux linear in diffusers naming.")
        key = f"{BAKED_PREFIX}{module}"
        tensors[f"{key}.lora_A.weight"] = down.to(dtype).contiguous()
        tensors[f"{key}.lora_B.weight"] = up.to(dtype).contiguous()
        tensors[f"{key}.alpha"] = torch.tensor(float(down.shape[0]))
    write_atomically(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt", **(metadata or {})}))


def read_baked_lora(path: str | os.PathLike) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """module -> (up, down, alpha) from a baked LoRA (used by tests and `inspect`)."""
    tensors, _ = read_safetensors(path)
    out: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}
    for key in tensors:
        if key.endswith(".lora_A.weight"):
            module = key[: -len(".lora_A.weight")]
            out[module.removeprefix(BAKED_PREFIX)] = (
                tensors[f"{module}.lora_B.weight"], tensors[key], float(tensors[f"{module}.alpha"]))
    return out
