"""The caching pass: run the frozen models once, write sharded safetensors, train from those.

Two caches, one layout:

    <dir>/index.json                 kind, fingerprint, items, shard size, extras
    <dir>/shard-00000.safetensors    per item i: "<i>.<field>" tensors
    <dir>/text.safetensors           per unique prompt (optional)

* ``cache_style_hidden`` (stage 1): for every unique stylised image of a manifest, the
  SigLIP hidden states of the projector's layers ("hidden", [L, T, W]); optionally the
  style-prompt text embeddings for the image-text loss.
* ``cache_triplets`` (stage 2): for every triplet, VAE latents of target / content (and of
  the style reference when style tokens are used) at the triplet's aspect bucket, the style
  latent of the reference through the *frozen* stage-1 projector, and the Flux text
  embeddings of each unique prompt.

Resumable: a shard that is already on disk with the same fingerprint is skipped, shards and
text files are written whole or not at all (``files.atomic_save``), and a cache whose
fingerprint differs (other manifest, models or settings) is refused instead of being mixed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from styleexpert_core.errors import InputError

from .backbones import LatentEncoder, ProjectedStyle, StyleHiddenEncoder, StyleTextEncoder, TextEncoder
from .buckets import assign_bucket, bucket_table
from .files import atomic_save
from .images import image_size, load_batch, load_square
from .triplets import Triplet, style_images

log = logging.getLogger(__name__)
CACHE_VERSION = 1
INDEX = "index.json"
TEXT_FILE = "text.safetensors"

Encode = Callable[[list[dict]], dict[str, torch.Tensor]]  # items -> field -> [n, ...]


def fingerprint(*parts: object) -> str:
    """A short, stable hash of JSON-able parts (manifest content, model ids, settings)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _shard_path(out_dir: Path, shard: int) -> Path:
    return out_dir / f"shard-{shard:05d}.safetensors"


def _shard_done(path: Path, fp: str) -> bool:
    if not path.is_file():
        return False
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("fingerprint") == fp
    except Exception:  # a truncated file from a crash is simply redone
        return False


def write_sharded(out_dir: str | Path, kind: str, items: list[dict], encode: Encode, *, shard_size: int,
                  batch_size: int, fp: str, extra: dict | None = None, dtype: torch.dtype = torch.float16,
                  fp32_fields: tuple[str, ...] = ()) -> Path:
    """Encode ``items`` in batches and store them shard by shard; skip shards already done.

    Tensors are stored in ``dtype`` except the ``fp32_fields`` (e.g. router inputs).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    index_path = out_dir / INDEX
    if index_path.is_file():
        old = json.loads(index_path.read_text())
        if old.get("fingerprint") != fp:
            raise InputError(f"{out_dir} holds a cache of other data or settings (fingerprint "
                             f"{old.get('fingerprint')} != {fp}); use a new cache directory or delete it.")
    index = {"version": CACHE_VERSION, "kind": kind, "fingerprint": fp, "shard_size": shard_size,
             "dtype": str(dtype).removeprefix("torch."), "items": items, **(extra or {})}
    index_path.write_text(json.dumps(index))
    shards = range((len(items) + shard_size - 1) // shard_size)
    todo = [s for s in shards if not _shard_done(_shard_path(out_dir, s), fp)]
    if len(todo) < len(shards):
        log.info("%s: %d of %d shards already cached, resuming", out_dir, len(shards) - len(todo), len(shards))
    remaining = sum(len(items[s * shard_size:(s + 1) * shard_size]) for s in todo)
    bar = tqdm(total=len(items), initial=len(items) - remaining, desc=f"cache {kind}", unit="img")
    for shard in todo:
        first = shard * shard_size
        chunk = items[first:first + shard_size]
        tensors: dict[str, torch.Tensor] = {}
        for start in range(0, len(chunk), batch_size):
            batch = chunk[start:start + batch_size]
            for field, values in encode(batch).items():
                for j, value in enumerate(values):
                    keep = torch.float32 if field in fp32_fields else dtype
                    tensors[f"{first + start + j}.{field}"] = value.to(keep).contiguous()
            bar.update(len(batch))
        atomic_save(_shard_path(out_dir, shard),
                    lambda tmp: save_file(tensors, str(tmp), metadata={"fingerprint": fp}))
    bar.close()
    return out_dir


class CacheReader:
    """Read access to a cache directory: ``get(i, field)``, ``stack(indices, field)``, ``text``."""

    def __init__(self, cache_dir: str | Path, kind: str | None = None) -> None:
        self.dir = Path(cache_dir)
        index_path = self.dir / INDEX
        if not index_path.is_file():
            raise InputError(f"{self.dir} is not a feature cache (no {INDEX}); run the caching pass first "
                             "(python -m training.stage1.cache or python -m training.stage2.cache).")
        self.index = json.loads(index_path.read_text())
        if kind and self.index.get("kind") != kind:
            raise InputError(f"{self.dir} is a '{self.index.get('kind')}' cache, expected '{kind}'.")
        self.items: list[dict] = self.index["items"]
        self.shard_size: int = self.index["shard_size"]
        missing = [s for s in range((len(self.items) + self.shard_size - 1) // self.shard_size)
                   if not _shard_done(_shard_path(self.dir, s), self.index["fingerprint"])]
        if missing:
            raise InputError(f"{self.dir}: shard(s) {missing[:5]} are missing or incomplete; re-run the "
                             "caching pass on the same directory to finish it.")
        self._handles: dict[int, object] = {}

    def __len__(self) -> int:
        return len(self.items)

    def get(self, i: int, field: str) -> torch.Tensor:
        shard = i // self.shard_size
        if shard not in self._handles:
            self._handles[shard] = safe_open(str(_shard_path(self.dir, shard)), framework="pt")
        return self._handles[shard].get_tensor(f"{i}.{field}")

    def stack(self, indices, field: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.stack([self.get(int(i), field) for i in indices]).to(dtype)

    def text(self) -> dict[str, torch.Tensor]:
        path = self.dir / TEXT_FILE
        if not path.is_file():
            raise InputError(f"{self.dir} has no text embeddings ({TEXT_FILE}); cache with a text encoder.")
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k).float() for k in f.keys()}


# --------------------------------------------------------------------------- stage 1

def cache_style_hidden(triplets: list[Triplet], siglip: StyleHiddenEncoder, out_dir: str | Path, *,
                       style_text: StyleTextEncoder | None = None, model_id: str = "siglip",
                       shard_size: int = 1024, batch_size: int = 32, dtype: torch.dtype = torch.float16) -> Path:
    """Stage-1 cache: SigLIP hidden states of every unique stylised image, plus labels."""
    images = style_images(triplets)
    labels = sorted({im.style_label for im in images})
    prompts = sorted({im.style_prompt for im in images})
    items = [{"path": str(im.path), "label": labels.index(im.style_label),
              "prompt": prompts.index(im.style_prompt)} for im in images]
    size = siglip.image_size

    def encode(batch: list[dict]) -> dict[str, torch.Tensor]:
        # SigLIP preprocessing resizes to a square without cropping (as ComfyUI's crop="none").
        pixels = torch.stack([load_square(p["path"], size) for p in batch])
        return {"hidden": siglip.encode_style_hidden(pixels)}

    fp = fingerprint("style_hidden", items, model_id, list(siglip.layers), size, str(dtype),
                     style_text is not None)
    extra = {"labels": labels, "prompts": prompts, "layers": list(siglip.layers), "image_size": size,
             "fields": ["hidden"], "model": model_id}
    out = write_sharded(out_dir, "style_hidden", items, encode, shard_size=shard_size, batch_size=batch_size,
                        fp=fp, extra=extra, dtype=dtype)
    if style_text is not None and not _shard_done(out / TEXT_FILE, fp):
        emb = torch.cat([style_text.encode_style_text(prompts[i:i + batch_size])
                         for i in range(0, len(prompts), batch_size)])
        tensors = {"style_text": emb.float().contiguous()}
        atomic_save(out / TEXT_FILE, lambda tmp: save_file(tensors, str(tmp), metadata={"fingerprint": fp}))
    return out


# --------------------------------------------------------------------------- stage 2

@dataclass(frozen=True)
class TripletCacheSpec:
    """What the stage-2 cache holds and at which size."""

    bucket_side: int = 1024  # Kontext table scaled so its square entry is this size
    style_reference_latents: bool = False  # also cache VAE latents of the style image (style tokens)


def cache_triplets(triplets: list[Triplet], vae: LatentEncoder, text: TextEncoder, style: ProjectedStyle,
                   out_dir: str | Path, *, spec: TripletCacheSpec = TripletCacheSpec(), model_id: str = "flux",
                   projector_id: str = "projector", shard_size: int = 512, batch_size: int = 8,
                   dtype: torch.dtype = torch.bfloat16) -> Path:
    """Stage-2 cache: latents at each triplet's aspect bucket, frozen style latents, text embeddings."""
    table = bucket_table(spec.bucket_side)
    prompts = sorted({t.prompt for t in triplets})
    labels = sorted({t.style_label for t in triplets})
    items = []
    for t in triplets:
        w, h = assign_bucket(*image_size(t.content), table)  # the content decides (Kontext snaps it)
        items.append({"content": str(t.content), "style": str(t.style), "target": str(t.target),
                      "prompt": prompts.index(t.prompt), "label": labels.index(t.style_label), "bucket": [w, h]})
    fields = ["target", "content", "style_latent"] + (["style_ref"] if spec.style_reference_latents else [])

    def encode(batch: list[dict]) -> dict[str, torch.Tensor]:
        out: dict[str, list] = defaultdict(lambda: [None] * len(batch))
        groups: dict[tuple, list[int]] = defaultdict(list)
        for j, item in enumerate(batch):
            groups[tuple(item["bucket"])].append(j)
        for (w, h), rows in groups.items():
            sub = [batch[j] for j in rows]
            encoded = {"target": vae.encode_latents(load_batch([s["target"] for s in sub], w, h)),
                       "content": vae.encode_latents(load_batch([s["content"] for s in sub], w, h))}
            if spec.style_reference_latents:
                encoded["style_ref"] = vae.encode_latents(load_batch([s["style"] for s in sub], w, h))
            for field, values in encoded.items():
                for j, v in zip(rows, values):
                    out[field][j] = v
        size = style.image_size
        latents = style.encode_style_latent(torch.stack([load_square(b["style"], size) for b in batch]))
        out["style_latent"] = list(latents)
        return {k: list(v) for k, v in out.items()}

    fp = fingerprint("triplets", items, model_id, projector_id, spec.bucket_side, spec.style_reference_latents,
                     str(dtype))
    extra = {"prompts": prompts, "labels": labels, "fields": fields, "bucket_side": spec.bucket_side,
             "style_reference_latents": spec.style_reference_latents, "model": model_id,
             "projector": projector_id}
    out = write_sharded(out_dir, "triplets", items, encode, shard_size=shard_size, batch_size=batch_size,
                        fp=fp, extra=extra, dtype=dtype, fp32_fields=("style_latent",))
    if not _shard_done(out / TEXT_FILE, fp):
        seqs, pooled = [], []
        for i in range(0, len(prompts), batch_size):
            emb = text.encode_text(prompts[i:i + batch_size])
            seqs.append(emb.seq)
            pooled.append(emb.pooled)
        tensors = {"seq": torch.cat(seqs).to(dtype).contiguous(), "pooled": torch.cat(pooled).to(dtype).contiguous()}
        atomic_save(out / TEXT_FILE, lambda tmp: save_file(tensors, str(tmp), metadata={"fingerprint": fp}))
    return out
