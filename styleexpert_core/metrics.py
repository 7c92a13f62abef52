"""Evaluation metrics on embeddings: style similarity, content fidelity, retrieval mAP / Recall@k.

Pure torch (numpy arrays are accepted through ``torch.as_tensor``); shared by the ComfyUI
Metrics node and ``training.evaluate``. Similarities are cosines of L2-normalised embeddings,
as in MegaStyle's ``style_score.py`` and CSD.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .errors import CheckpointError, InputError, ShapeMismatchError

_QUERY_CHUNK = 1024  # queries per similarity block: bounds memory at chunk x N


def _as_matrix(x: Any, name: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.ndim == 1:
        t = t.unsqueeze(0)
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise ShapeMismatchError(f"{name} must be a non-empty [N, D] (or [D]) embedding, got shape {tuple(t.shape)}.")
    if not t.is_floating_point():
        t = t.float()
    if not torch.isfinite(t).all():
        raise InputError(f"{name} contains NaN or inf; recompute the embeddings.")
    return t.to(torch.float32)


def normalise(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1, eps=1e-12)


def pairwise_cosine(a: Any, b: Any, *, names: tuple[str, str] = ("a", "b")) -> torch.Tensor:
    """Row-wise cosine of L2-normalised embeddings: [N, D] x [N, D] -> [N].

    A single row on either side ([D] or [1, D]) is compared against every row of the other.
    """
    ta, tb = _as_matrix(a, names[0]), _as_matrix(b, names[1])
    if ta.shape[1] != tb.shape[1]:
        raise ShapeMismatchError(
            f"{names[0]} has width {ta.shape[1]} but {names[1]} has width {tb.shape[1]}; "
            "both must come from the same encoder.")
    if ta.shape[0] != tb.shape[0] and 1 not in (ta.shape[0], tb.shape[0]):
        raise ShapeMismatchError(
            f"{names[0]} has {ta.shape[0]} rows and {names[1]} has {tb.shape[0]}; give the same number, "
            "or a single row to compare against all.")
    tb = tb.to(ta.device)
    return (normalise(ta) * normalise(tb)).sum(dim=-1)


def style_similarity(output_style: Any, reference_style: Any) -> torch.Tensor:
    """Cosine between style embeddings of outputs and their style references (higher = closer style)."""
    return pairwise_cosine(output_style, reference_style,
                           names=("output style embeddings", "reference style embeddings"))


def content_fidelity(output_content: Any, source_content: Any) -> torch.Tensor:
    """Cosine between content embeddings of outputs and their content images (higher = content kept)."""
    return pairwise_cosine(output_content, source_content,
                           names=("output content embeddings", "source content embeddings"))


def label_codes(labels: Sequence[Any] | torch.Tensor, n: int) -> torch.Tensor:
    """Integer code per label (any hashable labels, or an integer tensor)."""
    if isinstance(labels, torch.Tensor):
        if labels.ndim != 1:
            raise ShapeMismatchError(f"labels must be one-dimensional, got shape {tuple(labels.shape)}.")
        codes = labels.long()
    else:
        index: dict[Any, int] = {}
        codes = torch.tensor([index.setdefault(label, len(index)) for label in labels], dtype=torch.long)
    if codes.shape[0] != n:
        raise ShapeMismatchError(f"{codes.shape[0]} labels for {n} embeddings; give one label per embedding.")
    return codes


def retrieval_metrics(embeddings: Any, labels: Sequence[Any] | torch.Tensor,
                      ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Leave-one-out style retrieval by cosine similarity.

    Every embedding queries all the others (never itself); a hit is a gallery item with the same
    label. Returns ``map`` (mean over queries of average precision over all positives) and
    ``recall@k`` (fraction of queries with at least one positive in the top k). Queries whose
    label occurs once have no positive and are left out of both averages (they still serve as
    distractors). Equal similarities rank by gallery index, so results are deterministic.
    """
    x = _as_matrix(embeddings, "embeddings")
    n = x.shape[0]
    codes = label_codes(labels, n).to(x.device)
    ks = tuple(int(k) for k in ks)
    if any(k < 1 for k in ks):
        raise InputError(f"ks must be positive integers, got {ks}.")
    positives_per_query = torch.bincount(codes - codes.min())[codes - codes.min()] - 1
    valid = positives_per_query > 0
    if not bool(valid.any()):
        raise InputError("no label occurs more than once, so no query has a positive; "
                         "retrieval needs at least two embeddings per style.")
    z = normalise(x)
    ap_sum = torch.zeros((), dtype=torch.float64)
    hits = {k: torch.zeros((), dtype=torch.float64) for k in ks}
    for start in range(0, n, _QUERY_CHUNK):
        rows = torch.arange(start, min(start + _QUERY_CHUNK, n), device=x.device)
        rows = rows[valid[rows]]
        if rows.numel() == 0:
            continue
        sims = z[rows] @ z.T
        sims[torch.arange(rows.numel()), rows] = -torch.inf  # the query is not in its own gallery
        order = torch.sort(sims, dim=1, descending=True, stable=True).indices[:, : n - 1]
        relevant = (codes[order] == codes[rows, None]).to(torch.float64)  # [q, N-1] in rank order
        ranks = torch.arange(1, n, dtype=torch.float64, device=x.device)
        precision_at_hits = relevant.cumsum(dim=1) / ranks * relevant
        ap_sum += (precision_at_hits.sum(dim=1) / relevant.sum(dim=1)).sum().cpu()
        for k in ks:
            hits[k] += (relevant[:, :k].sum(dim=1) > 0).sum().cpu()
    num_queries = float(valid.sum())
    result = {"map": float(ap_sum / num_queries)}
    result.update({f"recall@{k}": float(hits[k] / num_queries) for k in ks})
    return result


def retrieval_query_count(labels: Sequence[Any] | torch.Tensor) -> int:
    """How many items have at least one other item with the same label (the scored queries)."""
    codes = label_codes(labels, len(labels))
    codes = codes - codes.min()
    return int((torch.bincount(codes)[codes] > 1).sum())


def is_aesthetic_predictor(keys: set[str]) -> bool:
    """Whether a file's tensor names are those of a LAION-style aesthetic MLP: only `layers.<i>.weight`
    and `layers.<i>.bias` (StyleExpert checkpoints and projectors never look like that)."""
    parts = [k.split(".") for k in keys]
    return bool(keys) and all(len(p) == 3 and p[0] == "layers" and p[1].isdigit() and p[2] in ("weight", "bias")
                              for p in parts)


def aesthetic_mlp_from_state_dict(sd: dict[str, torch.Tensor], source: str) -> torch.nn.Sequential:
    """The LAION predictor's Linear stack (its Dropouts are no-ops at eval; it has no activations)."""
    sd = {k.removeprefix("layers."): v for k, v in sd.items()}
    indices = sorted({int(k.split(".")[0]) for k in sd if k.split(".")[0].isdigit()})
    if not indices or len(sd) != 2 * len(indices):
        raise CheckpointError(
            f"{source}: expected keys layers.<i>.weight / layers.<i>.bias of Linear layers, got {sorted(sd)[:6]}.")
    layers: list[torch.nn.Module] = []
    for i in indices:
        weight, bias = sd[f"{i}.weight"], sd[f"{i}.bias"]
        if layers and weight.shape[1] != layers[-1].out_features:
            raise CheckpointError(f"{source}: layer {i} takes {weight.shape[1]} inputs but the previous layer gives "
                                  f"{layers[-1].out_features}.")
        linear = torch.nn.Linear(weight.shape[1], weight.shape[0])
        linear.load_state_dict({"weight": weight, "bias": bias})
        layers.append(linear)
    return torch.nn.Sequential(*layers)


def aesthetic_scores(mlp: torch.nn.Module, embeddings: Any) -> torch.Tensor:
    """[N] scores of the LAION-style aesthetic MLP over L2-normalised image embeddings [N, D]."""
    emb = _as_matrix(embeddings, "image embeddings")
    expected = next(mlp.parameters()).shape[1]
    if emb.shape[1] != expected:
        raise ShapeMismatchError(f"the aesthetic predictor takes {expected}-d image embeddings, got {emb.shape[1]}-d "
                                 "(the LAION predictor needs CLIP ViT-L/14).")
    with torch.inference_mode():
        return mlp(normalise(emb)).reshape(-1).float()
