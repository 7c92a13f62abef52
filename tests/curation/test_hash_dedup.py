import shutil

import numpy as np
import pytest
from PIL import Image

from training.curate.hash_dedup import (ImageHashes, exact_duplicates, file_sha256, hamming, hash_dedup,
                                        hash_images, near_duplicates, phash)
from training.data.errors import ConfigError


def _picture(seed: int, size: int = 96) -> Image.Image:
    """Smooth random structure (not white noise), so resizes and re-encodes keep its low frequencies."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)


def test_phash_is_imagehash_phash_and_survives_resizes_and_jpeg():
    from scipy.fftpack import dct  # the reference definition used by imagehash.phash

    image = _picture(0)
    pixels = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    low = dct(dct(pixels, axis=0), axis=1)[:8, :8]
    reference = int(np.packbits((low > np.median(low)).ravel()).view(">u8")[0])
    assert phash(image) == reference
    h = phash(image)
    assert hamming(h, phash(image.resize((61, 61), Image.Resampling.BILINEAR))) <= 4
    others = [hamming(h, phash(_picture(seed))) for seed in range(1, 30)]
    assert min(others) > 8  # unrelated pictures are far apart


def _hash_pairs_brute_force(hashes, pixels, max_distance):
    order = sorted(range(len(hashes)), key=lambda i: (-pixels[i], i))
    ranked = np.array([hashes[i] for i in order], dtype=np.uint64)
    out = {}
    for r in range(1, len(order)):
        d = hamming(ranked[r], ranked[:r])
        if d.min() <= max_distance:
            out[order[r]] = (order[int(np.argmin(d))], int(d.min()))
    return out


def test_near_duplicates_match_an_all_pairs_search():
    rng = np.random.default_rng(0)
    hashes = [int(h) for h in rng.integers(0, 2**63, size=600, dtype=np.int64)]
    for k in range(150):  # planted copies at 0..7 flipped bits, some of them copies of copies
        source = int(rng.integers(len(hashes)))
        flips = rng.choice(64, size=k % 8, replace=False)
        hashes.append(hashes[source] ^ int(sum(1 << int(b) for b in flips)))
    pixels = [int(p) for p in rng.choice([256, 1024, 4096], size=len(hashes))]
    ids = [f"i{k}" for k in range(len(hashes))]
    for max_distance in (0, 3, 5):
        found = {int(d.id[1:]): (int(d.duplicate_of[1:]), d.distance)
                 for d in near_duplicates(ids, hashes, pixels, max_distance)}
        assert found == _hash_pairs_brute_force(hashes, pixels, max_distance)
        assert len(found) >= 15  # at least the planted exact-hash copies
    with pytest.raises(ConfigError, match="0..16 bits"):
        near_duplicates(ids, hashes, pixels, 17)


def test_exact_then_near_keeps_the_first_copy_and_the_largest_image(tmp_path):
    paths = {}
    for name, seed, size in [("a", 0, 96), ("b", 1, 96), ("c_small", 2, 48), ("c_large", 2, 160)]:
        paths[name] = tmp_path / f"{name}.png"
        _picture(seed, size).save(paths[name])
    paths["a_copy"] = tmp_path / "a_copy.png"
    shutil.copyfile(paths["a"], paths["a_copy"])  # byte-identical under another name
    paths["b_jpeg"] = tmp_path / "b.jpg"
    _picture(1, 96).save(paths["b_jpeg"], quality=70)  # same picture, other bytes
    ids = ["a_copy", "a", "b", "b_jpeg", "c_small", "c_large"]
    hashes = hash_images([paths[i] for i in ids])
    assert file_sha256(paths["a"]) == file_sha256(paths["a_copy"]) != file_sha256(paths["b"])
    assert [(d.id, d.duplicate_of, d.step) for d in exact_duplicates(ids, hashes.digests)] == [
        ("a", "a_copy", "exact")]  # manifest order decides between identical files
    dropped = hash_dedup(ids, hashes, max_distance=4)
    assert [(d.id, d.duplicate_of, d.step) for d in dropped] == [
        ("a", "a_copy", "exact"), ("b_jpeg", "b", "near"), ("c_small", "c_large", "near")]
    assert [(d.id, d.step) for d in hash_dedup(ids, hashes, max_distance=None)] == [("a", "exact")]
    none = hash_dedup(["x", "y"], ImageHashes(("1", "2"), (0, (1 << 64) - 1), (1, 1)), max_distance=16)
    assert none == []
