"""Style-reference selection for StyleExpert training triples.

For each stylised image t of style s, the reference is the image j of the same style with a
different content id that maximises  cos_style(t, j) - lambda * cos_content(t, j):  it shares the
style but not the content, so the model cannot learn to copy content from the reference.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from ..data.embeddings import l2_normalise, require_same_count
from ..data.errors import ConfigError, EmbeddingMismatchError

logger = logging.getLogger(__name__)

_ROW_CHUNK = 1024


@dataclass(frozen=True)
class ReferenceConfig:
    content_weight: float = 1.0  # lambda: how strongly shared content is penalised
    tie_tolerance: float = 1e-6  # scores this close to the best count as tied -> smallest id wins

    def __post_init__(self) -> None:
        if not np.isfinite(self.content_weight) or self.content_weight < 0:
            raise ConfigError(f"content_weight (lambda) must be a finite number >= 0, got {self.content_weight}.")
        if not 0 <= self.tie_tolerance < 1:
            raise ConfigError(f"tie_tolerance must be in [0, 1), got {self.tie_tolerance}.")


@dataclass(frozen=True)
class ReferenceChoice:
    id: str
    reference_id: str | None
    score: float | None
    style_similarity: float | None
    content_similarity: float | None
    reason: str | None = None  # why no reference could be chosen

    def to_dict(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if not (k == "reason" and v is None)}


def select_style_references(
    ids: Sequence[str],
    styles: Sequence[object],
    contents: Sequence[object],
    style_embeddings: np.ndarray,
    content_embeddings: np.ndarray | None = None,
    config: ReferenceConfig = ReferenceConfig(),
) -> list[ReferenceChoice]:
    """One choice per input id, in input order. Without content embeddings the score is style only."""
    n = len(ids)
    for name, seq in (("styles", styles), ("contents", contents)):
        if len(seq) != n:
            raise EmbeddingMismatchError(f"{len(seq)} {name} for {n} ids; give one per record.")
    if style_embeddings.shape[0] != n:
        raise EmbeddingMismatchError(f"style embeddings have {style_embeddings.shape[0]} rows for {n} records.")
    style = l2_normalise(np.asarray(style_embeddings, dtype=np.float64))
    content = None
    if content_embeddings is not None:
        require_same_count(style, content_embeddings, "style embeddings", "content embeddings")
        content = l2_normalise(np.asarray(content_embeddings, dtype=np.float64))

    groups: dict[object, list[int]] = defaultdict(list)
    for i, s in enumerate(styles):
        groups[s].append(i)
    choices: list[ReferenceChoice | None] = [None] * n
    for members in tqdm(groups.values(), desc="references", unit="style", disable=None):
        _choose_in_group(np.asarray(members), ids, contents, style, content, config, choices)
    filled = [c for c in choices if c is not None]
    assert len(filled) == n, "every record belongs to exactly one style group"
    missing = sum(c.reference_id is None for c in filled)
    if missing:
        logger.warning("%d of %d images have no same-style image with different content", missing, n)
    return filled


def _choose_in_group(
    members: np.ndarray,
    ids: Sequence[str],
    contents: Sequence[object],
    style: np.ndarray,
    content: np.ndarray | None,
    config: ReferenceConfig,
    choices: list[ReferenceChoice | None],
) -> None:
    member_ids = np.array([ids[i] for i in members], dtype=object)
    member_contents = [contents[i] for i in members]
    content_code = _codes(member_contents)
    # Rank candidates by id once, so "smallest id among tied" is a min over ranks.
    id_rank = np.empty(len(members), dtype=np.int64)
    id_rank[np.argsort(member_ids.astype(str), kind="stable")] = np.arange(len(members))
    for start in range(0, len(members), _ROW_CHUNK):
        rows = members[start : start + _ROW_CHUNK]
        s_sim = style[rows] @ style[members].T
        c_sim = content[rows] @ content[members].T if content is not None else np.zeros_like(s_sim)
        score = s_sim - config.content_weight * c_sim
        # Same content id covers the image itself, since it shares its own content.
        same_content = content_code[start : start + len(rows), None] == content_code[None, :]
        score[same_content] = -np.inf
        for r, i in enumerate(rows):
            best = score[r].max()
            if not np.isfinite(best):
                choices[i] = ReferenceChoice(ids[i], None, None, None, None,
                                             reason="no same-style image with a different content id")
                continue
            tied = np.flatnonzero(score[r] >= best - config.tie_tolerance)
            j = tied[np.argmin(id_rank[tied])]
            choices[i] = ReferenceChoice(
                ids[i], str(member_ids[j]), float(score[r, j]), float(s_sim[r, j]),
                float(c_sim[r, j]) if content is not None else None,
            )


def _codes(values: Sequence[object]) -> np.ndarray:
    index: dict[object, int] = {}
    return np.array([index.setdefault(v, len(index)) for v in values], dtype=np.int64)
