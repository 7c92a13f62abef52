"""Exact and near-duplicate image removal by hashing, run before semantic dedup.

* Exact: the SHA-256 of the file bytes. Byte-identical files are one image; the first in
  manifest order is kept.
* Near: a 64-bit perceptual hash (pHash: 32x32 grayscale, 2-D DCT-II, the 8x8 lowest frequencies
  against their median, as ``imagehash.phash``). Re-encodes, resizes and light edits stay within a
  few bits. Images are ranked largest first (pixel count, then manifest order), and an image is
  dropped when its hash is within ``max_distance`` bits of any higher-ranked one, so the
  highest-resolution copy of each group survives.

Candidate pairs come from the pigeonhole principle: split the 64 bits into ``max_distance + 1``
bands; two hashes within ``max_distance`` bits agree exactly on at least one band. Only images that
share a band value are compared, so the search is exact without comparing all N^2 pairs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.errors import ConfigError
from ..data.images import open_image

HASH_SIZE = 8  # 8x8 low frequencies -> 64 bits
HIGHFREQ_FACTOR = 4  # the DCT runs on a 32x32 thumbnail
MAX_DISTANCE = 16  # beyond this pHash stops meaning "the same picture"
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


@dataclass(frozen=True)
class HashDrop:
    id: str
    duplicate_of: str
    step: str  # "exact" or "near"
    distance: int  # differing pHash bits (0 for exact copies)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _dct_matrix(n: int) -> np.ndarray:
    """Unnormalised DCT-II (scipy.fftpack.dct's default): D[k, i] = 2 cos(pi k (2i + 1) / 2n)."""
    k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return 2.0 * np.cos(np.pi * k * (2 * i + 1) / (2 * n))


_DCT = _dct_matrix(HASH_SIZE * HIGHFREQ_FACTOR)


def phash(image: Image.Image) -> int:
    """The 64-bit perceptual hash of an image, row-major bits of the low-frequency block."""
    side = HASH_SIZE * HIGHFREQ_FACTOR
    pixels = np.asarray(image.convert("L").resize((side, side), Image.Resampling.LANCZOS), dtype=np.float64)
    low = (_DCT @ pixels @ _DCT.T)[:HASH_SIZE, :HASH_SIZE]
    bits = (low > np.median(low)).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Differing bits between uint64 hashes (broadcasting)."""
    x = np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64))
    return _POPCOUNT[x[..., None].view(np.uint8)].sum(axis=-1, dtype=np.int64)


def check_phash_distance(max_distance: int) -> None:
    if not 0 <= max_distance <= MAX_DISTANCE:
        raise ConfigError(f"the pHash distance must be 0..{MAX_DISTANCE} bits, got {max_distance}.")


def exact_duplicates(ids: Sequence[str], digests: Sequence[str]) -> list[HashDrop]:
    """Every record whose digest an earlier record (manifest order) already has."""
    first: dict[str, str] = {}
    dropped = []
    for item_id, digest in zip(ids, digests):
        if digest in first:
            dropped.append(HashDrop(item_id, first[digest], "exact", 0))
        else:
            first[digest] = item_id
    return dropped


def near_duplicates(ids: Sequence[str], hashes: Sequence[int], pixels: Sequence[int],
                    max_distance: int) -> list[HashDrop]:
    """Records within ``max_distance`` pHash bits of a larger (or equal, earlier) record."""
    check_phash_distance(max_distance)
    order = np.lexsort((np.arange(len(ids)), -np.asarray(pixels, dtype=np.int64)))  # largest first
    ranked = np.asarray(hashes, dtype=np.uint64)[order]
    best = np.full(len(ids), MAX_DISTANCE + 1, dtype=np.int64)  # by rank: distance to the closest better one
    match = np.full(len(ids), -1, dtype=np.int64)
    for band in _bands(ranked, max_distance + 1):
        _closest_earlier_in_groups(ranked, band, best, match)
    hits = sorted(np.flatnonzero(best <= max_distance), key=lambda r: order[r])  # report in manifest order
    return [HashDrop(ids[order[r]], ids[order[match[r]]], "near", int(best[r])) for r in hits]


def _bands(hashes: np.ndarray, n_bands: int) -> list[np.ndarray]:
    edges = np.linspace(0, 64, n_bands + 1).round().astype(int)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = np.uint64((1 << (hi - lo)) - 1)
        out.append((hashes >> np.uint64(lo)) & mask)
    return out


def _closest_earlier_in_groups(hashes: np.ndarray, keys: np.ndarray, best: np.ndarray, match: np.ndarray,
                               chunk: int = 2048) -> None:
    """Within each group of equal ``keys``, give every member its closest earlier (lower rank) member."""
    order = np.argsort(keys, kind="stable")  # ranks ascending inside each group
    bounds = np.flatnonzero(np.diff(keys[order])) + 1
    for group in np.split(order, bounds):
        for start in range(1, len(group), chunk):
            rows = group[start:start + chunk]
            earlier = group[:start + len(rows)]
            dist = hamming(hashes[rows][:, None], hashes[earlier][None, :])
            dist[np.arange(len(rows))[:, None] + start <= np.arange(len(earlier))[None, :]] = MAX_DISTANCE + 1
            pick = np.argmin(dist, axis=1)
            d = dist[np.arange(len(rows)), pick]
            candidate = earlier[pick]
            better = (d < best[rows]) | ((d == best[rows]) & (candidate < match[rows]))  # ties: the top-ranked
            best[rows[better]] = d[better]
            match[rows[better]] = candidate[better]


@dataclass(frozen=True)
class ImageHashes:
    digests: tuple[str, ...]
    phashes: tuple[int, ...]
    pixels: tuple[int, ...]


def hash_images(paths: Sequence[Path]) -> ImageHashes:
    digests, phashes, pixels = [], [], []
    for path in paths:
        digests.append(file_sha256(path))
        image = open_image(path)
        phashes.append(phash(image))
        pixels.append(image.width * image.height)
    return ImageHashes(tuple(digests), tuple(phashes), tuple(pixels))


def hash_dedup(ids: Sequence[str], hashes: ImageHashes, max_distance: int | None) -> list[HashDrop]:
    """Exact copies first, then (unless ``max_distance`` is None) near copies among the rest."""
    dropped = exact_duplicates(ids, hashes.digests)
    if max_distance is None:
        return dropped
    gone = {d.id for d in dropped}
    rest = [i for i, item_id in enumerate(ids) if item_id not in gone]
    return dropped + near_duplicates([ids[i] for i in rest], [hashes.phashes[i] for i in rest],
                                     [hashes.pixels[i] for i in rest], max_distance)
