"""The VLM score of the stylisation suite, read from the report of ``python -m training.curate filter``.

The StyleExpert paper reports a Qwen-VL "semantic score" whose prompt is not public. The suite
uses the filter step's judge instead: the VLM sees (content, style, output) and rates stylisation
(style taken on, semantics and material included), layout and identity from 0 to 10. Running the
VLM stays in ``training.curate`` (batched, resumable, on Ray); evaluation only joins its scores by
triple id, so the two packages do not import each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..data.errors import InputError
from ..data.files import read_jsonl

VLM_KEYS = ("stylisation", "layout", "identity")


def read_vlm_scores(path: str | Path, ids: Sequence[str]) -> list[dict[str, float]]:
    """``vlm_<key>`` columns for every id, in order; an id without scores is an error."""
    found: dict[str, dict[str, float]] = {}
    for line_no, row in read_jsonl(path):
        scores = row.get("scores")
        if "id" not in row or not (scores is None or isinstance(scores, dict)):
            raise InputError(f"{path}, line {line_no}: expected a filter report row {{id, scores: {{...}}}}.")
        if scores:  # None: the filter could not read that answer (--skip-unparseable)
            found[str(row["id"])] = {f"vlm_{k}": float(scores[k]) for k in VLM_KEYS if k in scores}
    missing = [i for i in ids if i not in found]
    if missing:
        raise InputError(f"{path} has no VLM scores for {len(missing)} triple(s) (e.g. {missing[:3]}); run "
                         "`python -m training.curate filter` on the same triples (same ids) first.")
    return [found[i] for i in ids]
