"""The caching pass: run the frozen models once, write sharded safetensors, train from those.

Two caches, one layout:

    <dir>/index.json                 kind, fingerprint, items, shard sizes, extras (written last)
    <dir>/shard-00000.safetensors    per item i: "<i>.<field>" tensors
    <dir>/text-00000.safetensors     per unique prompt, stacked rows "<field>" [n, ...] (optional)

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

Sharded across processes (``Part``): under ``accelerate launch``/``torchrun`` rank r encodes
shards r, r + world, ... (items and text alike); after a barrier rank 0 checks that every
shard is there and writes ``index.json``, the file readers start from. Readers memory-map the
shards (``mapped.map_safetensors``): nothing is copied into RAM until a batch touches it.
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
from .files import atomic_save, write_json
from .images import image_size, load_batch, load_square
from .mapped import map_safetensors
from .triplets import Triplet, style_images

log = logging.getLogger(__name__)
CACHE_VERSION = 2
INDEX = "index.json"
LEGACY_TEXT_FILE = "text.safetensors"  # version 1: all prompts in one file
TEXT_SHARD_SIZE = 4096  # prompts per text shard

Encode = Callable[[list[dict]], dict[str, torch.Tensor]]  # items -> field -> [n, ...]


def fingerprint(*parts: object) -> str:
    """A short, stable hash of JSON-able parts (manifest content, model ids, settings)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Part:
    """Which shards this process writes: every ``world``-th from ``rank``; ``barrier`` waits for all."""

    rank: int = 0
    world: int = 1
    barrier: Callable[[], None] = lambda: None

    def mine(self, shards: range) -> list[int]:
        return [s for s in shards if s % self.world == self.rank]


def _shard_path(out_dir: Path, shard: int, prefix: str = "shard") -> Path:
    return out_dir / f"{prefix}-{shard:05d}.safetensors"


def _shard_done(path: Path, fp: str) -> bool:
    if not path.is_file():
        return False
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("fingerprint") == fp
    except Exception:  # a truncated file from a crash is simply redone
        return False


def _check_fingerprint(out_dir: Path, fp: str) -> None:
    index_path = out_dir / INDEX
    if index_path.is_file():
        old = json.loads(index_path.read_text())
        if old.get("fingerprint") != fp:
            raise InputError(f"{out_dir} holds a cache of other data or settings (fingerprint "
                             f"{old.get('fingerprint')} != {fp}); use a new cache directory or delete it.")


def _write_shards(out_dir: Path, prefix: str, n: int, shard_size: int, fp: str, part: Part,
                  encode_shard: Callable[[int, int], dict[str, torch.Tensor]], desc: str) -> None:
    """Encode and save this process's shards of ``n`` rows (``encode_shard(first, stop)``), skipping done ones."""
    shards = range((n + shard_size - 1) // shard_size)
    mine = part.mine(shards)
    todo = [s for s in mine if not _shard_done(_shard_path(out_dir, s, prefix), fp)]
    if part.world > 1:
        log.info("rank %d of %d writes %s-* %s", part.rank, part.world, prefix, mine)
    if len(todo) < len(mine):
        log.info("%s: %d of %d %s shards already cached, resuming", out_dir, len(mine) - len(todo), len(mine), prefix)
    bar = tqdm(total=sum(min(n, (s + 1) * shard_size) - s * shard_size for s in todo), desc=desc, unit="item",
               disable=part.rank != 0)
    for shard in todo:
        first, stop = shard * shard_size, min(n, (shard + 1) * shard_size)
        tensors = encode_shard(first, stop)
        atomic_save(_shard_path(out_dir, shard, prefix),
                    lambda tmp: save_file(tensors, str(tmp), metadata={"fingerprint": fp}))
        bar.update(stop - first)
    bar.close()


def write_sharded(out_dir: str | Path, kind: str, items: list[dict], encode: Encode, *, shard_size: int,
                  batch_size: int, fp: str, extra: dict | None = None, dtype: torch.dtype = torch.float16,
                  fp32_fields: tuple[str, ...] = (), texts: tuple[list[str], Encode] | None = None,
                  text_shard_size: int = TEXT_SHARD_SIZE, part: Part = Part()) -> Path:
    """Encode ``items`` in batches and store them shard by shard; skip shards already done.

    Tensors are stored in ``dtype`` except the ``fp32_fields`` (e.g. router inputs). ``texts``
    (names, encode) adds text shards of stacked rows. Each process of ``part`` writes its
    shards; rank 0 writes the index once all are on disk.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_fingerprint(out_dir, fp)

    def item_shard(first: int, stop: int) -> dict[str, torch.Tensor]:
        tensors = {}
        for start in range(first, stop, batch_size):
            for field, values in encode(items[start:min(stop, start + batch_size)]).items():
                for j, value in enumerate(values):
                    keep = torch.float32 if field in fp32_fields else dtype
                    tensors[f"{start + j}.{field}"] = value.to(keep).contiguous()
        return tensors

    _write_shards(out_dir, "shard", len(items), shard_size, fp, part, item_shard, f"cache {kind}")
    index = {"version": CACHE_VERSION, "kind": kind, "fingerprint": fp, "shard_size": shard_size,
             "dtype": str(dtype).removeprefix("torch."), "items": items, **(extra or {})}
    if texts is not None:
        names, encode_text = texts

        def text_shard(first: int, stop: int) -> dict[str, torch.Tensor]:
            rows: dict[str, list[torch.Tensor]] = defaultdict(list)
            for start in range(first, stop, batch_size):
                for field, values in encode_text(names[start:min(stop, start + batch_size)]).items():
                    rows[field].append(values)
            return {field: torch.cat(v).to(torch.float32 if field in fp32_fields else dtype).contiguous()
                    for field, v in rows.items()}

        _write_shards(out_dir, "text", len(names), text_shard_size, fp, part, text_shard, f"cache {kind} text")
        index.update(text_count=len(names), text_shard_size=text_shard_size)
    part.barrier()
    if part.rank == 0:
        CacheReader.missing_shards(out_dir, index, raise_error=True)
        write_json(out_dir / INDEX, index)
    part.barrier()
    return out_dir


class MappedRows:
    """Rows of one text field across text shards, memory-mapped; ``rows[ids]`` gathers (a copy of) those rows."""

    def __init__(self, shards: list[torch.Tensor]) -> None:
        self.shards = shards
        self.rows_per_shard = shards[0].shape[0]
        self.shape = (sum(t.shape[0] for t in shards), *shards[0].shape[1:])
        self.dtype = shards[0].dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, ids) -> torch.Tensor:
        ids = torch.as_tensor(ids).reshape(-1).tolist()
        return torch.stack([self.shards[i // self.rows_per_shard][i % self.rows_per_shard] for i in ids])


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
        self.missing_shards(self.dir, self.index, raise_error=True)
        self._shards: dict[tuple[str, int], dict[str, torch.Tensor]] = {}

    @staticmethod
    def missing_shards(cache_dir: Path, index: dict, raise_error: bool = False) -> list[str]:
        """Names of the item and text shards an index needs that are not on disk with its fingerprint."""
        def need(prefix: str, n: int, size: int) -> list[Path]:
            return [_shard_path(cache_dir, s, prefix) for s in range((n + size - 1) // size)]

        paths = need("shard", len(index["items"]), index["shard_size"])
        if "text_shard_size" in index:
            paths += need("text", index["text_count"], index["text_shard_size"])
        missing = [p.name for p in paths if not _shard_done(p, index["fingerprint"])]
        if missing and raise_error:
            raise InputError(f"{cache_dir}: shard(s) {missing[:5]} are missing or incomplete; re-run the "
                             "caching pass on the same directory (with as many processes as you like) to finish it.")
        return missing

    def __getstate__(self) -> dict:
        """Pickled (DataLoader workers under spawn / forkserver) without the maps: each process maps for itself."""
        return {**self.__dict__, "_shards": {}}

    def _mapped(self, prefix: str, shard: int) -> dict[str, torch.Tensor]:
        if (prefix, shard) not in self._shards:
            self._shards[prefix, shard] = map_safetensors(_shard_path(self.dir, shard, prefix))[0]
        return self._shards[prefix, shard]

    def __len__(self) -> int:
        return len(self.items)

    def get(self, i: int, field: str) -> torch.Tensor:
        """Item ``i``'s ``field``: a read-only view into the memory-mapped shard (copy it before writing)."""
        return self._mapped("shard", i // self.shard_size)[f"{i}.{field}"]

    def stack(self, indices, field: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.stack([self.get(int(i), field) for i in indices]).to(dtype)

    def text_rows(self) -> dict[str, MappedRows]:
        """Per text field, the rows of every prompt, memory-mapped in the cache's dtype."""
        if "text_shard_size" in self.index:
            shards = [self._mapped("text", s) for s in range((self.index["text_count"] + self.index[
                "text_shard_size"] - 1) // self.index["text_shard_size"])]
        elif (self.dir / LEGACY_TEXT_FILE).is_file():
            if ("legacy", 0) not in self._shards:
                self._shards["legacy", 0] = map_safetensors(self.dir / LEGACY_TEXT_FILE)[0]
            shards = [self._shards["legacy", 0]]
        else:
            raise InputError(f"{self.dir} has no text embeddings; cache with a text encoder.")
        return {field: MappedRows([s[field] for s in shards]) for field in shards[0]}

    def text(self) -> dict[str, torch.Tensor]:
        """Every text field as one float32 tensor in memory (small tables: stage 1's style prompts)."""
        return {field: torch.cat(rows.shards).float() for field, rows in self.text_rows().items()}


# --------------------------------------------------------------------------- stage 1

def cache_style_hidden(triplets: list[Triplet], siglip: StyleHiddenEncoder, out_dir: str | Path, *,
                       style_text: StyleTextEncoder | None = None, model_id: str = "siglip",
                       shard_size: int = 1024, batch_size: int = 32, dtype: torch.dtype = torch.float16,
                       part: Part = Part()) -> Path:
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
    texts = None if style_text is None else (prompts, lambda names: {"style_text": style_text.encode_style_text(names)})
    return write_sharded(out_dir, "style_hidden", items, encode, shard_size=shard_size, batch_size=batch_size,
                         fp=fp, extra=extra, dtype=dtype, texts=texts, part=part, fp32_fields=("style_text",))


# --------------------------------------------------------------------------- stage 2

@dataclass(frozen=True)
class TripletCacheSpec:
    """What the stage-2 cache holds and at which size."""

    bucket_side: int = 1024  # Kontext table scaled so its square entry is this size
    style_reference_latents: bool = False  # also cache VAE latents of the style image (style tokens)


def cache_triplets(triplets: list[Triplet], vae: LatentEncoder, text: TextEncoder, style: ProjectedStyle,
                   out_dir: str | Path, *, spec: TripletCacheSpec = TripletCacheSpec(), model_id: str = "flux",
                   projector_id: str = "projector", shard_size: int = 512, batch_size: int = 8,
                   dtype: torch.dtype = torch.bfloat16, text_shard_size: int = TEXT_SHARD_SIZE,
                   part: Part = Part()) -> Path:
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
                     str(dtype), text_shard_size)
    extra = {"prompts": prompts, "labels": labels, "fields": fields, "bucket_side": spec.bucket_side,
             "style_reference_latents": spec.style_reference_latents, "model": model_id,
             "projector": projector_id}
    def encode_text(names: list[str]) -> dict[str, torch.Tensor]:
        emb = text.encode_text(names)
        return {"seq": emb.seq, "pooled": emb.pooled}

    return write_sharded(out_dir, "triplets", items, encode, shard_size=shard_size, batch_size=batch_size,
                         fp=fp, extra=extra, dtype=dtype, fp32_fields=("style_latent",),
                         texts=(prompts, encode_text), text_shard_size=text_shard_size, part=part)
