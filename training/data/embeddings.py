"""Embedding files and their alignment with manifests.

Formats:
* ``.safetensors`` with a tensor named ``embeddings`` of shape [N, D] (float16/float32/float64).
  Optional metadata field ``ids``: a JSON list of N strings naming each row's record id.
* ``.npy`` holding a 2-D float array (read with ``allow_pickle=False``; no ids).

With ids, rows are matched to manifest records by id (the file may hold extra rows, e.g. after
dedup). Without ids, row i belongs to the manifest's i-th record and the counts must match.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import EmbeddingError, EmbeddingMismatchError, MissingFileError
from .manifest import Manifest

TENSOR_NAME = "embeddings"
IDS_METADATA_KEY = "ids"


@dataclass(frozen=True)
class EmbeddingTable:
    path: Path
    vectors: np.ndarray  # float32 [N, D]
    ids: tuple[str, ...] | None


def load_embeddings(path: str | os.PathLike[str]) -> EmbeddingTable:
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"Embeddings file not found: {path}. Pass a .safetensors or .npy file.")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        vectors, ids = _read_safetensors(path)
    elif suffix == ".npy":
        vectors, ids = _read_npy(path), None
    else:
        raise EmbeddingError(
            f"Unsupported embeddings file {path}: expected .safetensors (tensor 'embeddings') or .npy."
        )
    vectors = _validated(path, vectors)
    if ids is not None and len(ids) != vectors.shape[0]:
        raise EmbeddingMismatchError(
            f"{path}: metadata 'ids' lists {len(ids)} ids but 'embeddings' has {vectors.shape[0]} rows; "
            "re-export the file so both agree."
        )
    return EmbeddingTable(path, vectors, ids)


def _read_safetensors(path: Path) -> tuple[np.ndarray, tuple[str, ...] | None]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            names = list(f.keys())
            if TENSOR_NAME not in names:
                raise EmbeddingError(
                    f"{path} has no tensor named {TENSOR_NAME!r} (found: {names}). "
                    f"Save the [N, D] matrix under the name {TENSOR_NAME!r}."
                )
            vectors = f.get_tensor(TENSOR_NAME)
            metadata = f.metadata() or {}
    except EmbeddingError:
        raise
    except Exception as e:  # safetensors raises several types for corrupt headers / bf16 in numpy
        raise EmbeddingError(
            f"Could not read {path} as safetensors ({e}). Store 'embeddings' as float16/float32."
        ) from None
    return vectors, _parse_ids(path, metadata.get(IDS_METADATA_KEY))


def _parse_ids(path: Path, raw: str | None) -> tuple[str, ...] | None:
    if raw is None:
        return None
    try:
        ids = json.loads(raw)
    except json.JSONDecodeError:
        ids = None
    if not isinstance(ids, list) or not all(isinstance(i, (str, int)) for i in ids):
        raise EmbeddingError(f"{path}: metadata 'ids' must be a JSON list of strings, got {raw[:80]!r}.")
    ids = tuple(str(i) for i in ids)
    if len(set(ids)) != len(ids):
        raise EmbeddingError(f"{path}: metadata 'ids' contains duplicates; each row needs its own id.")
    return ids


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:  # object arrays need pickle, which we refuse
        raise EmbeddingError(f"{path} is not a plain numeric .npy array ({e}).") from None
    except OSError as e:
        raise EmbeddingError(f"Could not read {path} as .npy ({e}).") from None


def _validated(path: Path, vectors: np.ndarray) -> np.ndarray:
    if vectors.ndim != 2 or vectors.shape[0] == 0 or vectors.shape[1] == 0:
        raise EmbeddingError(f"{path}: expected a non-empty [N, D] matrix, got shape {tuple(vectors.shape)}.")
    if not np.issubdtype(vectors.dtype, np.floating):
        raise EmbeddingError(f"{path}: expected floating-point embeddings, got dtype {vectors.dtype}.")
    vectors = vectors.astype(np.float32, copy=False)
    bad_rows = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if bad_rows.size:
        raise EmbeddingError(
            f"{path}: {bad_rows.size} row(s) contain NaN or inf (first: row {int(bad_rows[0])}). "
            "Recompute those embeddings."
        )
    return vectors


def aligned_embeddings(manifest: Manifest, table: EmbeddingTable) -> np.ndarray:
    """Rows of ``table`` in manifest order."""
    n = len(manifest)
    if table.ids is None:
        if table.vectors.shape[0] != n:
            raise EmbeddingMismatchError(
                f"{table.path} has {table.vectors.shape[0]} rows but {manifest.path} has {n} records. "
                f"Without ids (safetensors metadata {IDS_METADATA_KEY!r}) row i must belong to record i, "
                "so the counts must match; re-export the embeddings for this manifest or add ids."
            )
        return table.vectors
    row_of = {record_id: row for row, record_id in enumerate(table.ids)}
    missing = [record_id for record_id in manifest.ids if record_id not in row_of]
    if missing:
        raise EmbeddingMismatchError(
            f"{table.path} has no embedding for {len(missing)} of {n} manifest ids "
            f"(first: {missing[:3]}). Compute embeddings for those records."
        )
    return table.vectors[[row_of[i] for i in manifest.ids]]


def load_aligned(manifest: Manifest, path: str | os.PathLike[str]) -> np.ndarray:
    return aligned_embeddings(manifest, load_embeddings(path))


def save_embeddings(path: str | os.PathLike[str], vectors: np.ndarray, ids: Sequence[str] | None = None) -> None:
    """Write the .safetensors layout this module reads (ids go into the metadata)."""
    from safetensors.numpy import save_file

    vectors = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    metadata = None
    if ids is not None:
        if len(ids) != vectors.shape[0]:
            raise EmbeddingMismatchError(f"{len(ids)} ids for {vectors.shape[0]} embedding rows.")
        metadata = {IDS_METADATA_KEY: json.dumps([str(i) for i in ids])}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file({TENSOR_NAME: vectors}, str(path), metadata=metadata)


def l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def require_same_count(a: np.ndarray, b: np.ndarray, what_a: str, what_b: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise EmbeddingMismatchError(f"{what_a} has {a.shape[0]} rows but {what_b} has {b.shape[0]}.")
