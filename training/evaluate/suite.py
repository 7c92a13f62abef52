"""Stylisation suite over (content, style, output) triples.

Per triple: style similarity (style encoder, output vs style image), the same for the untouched
content image as a baseline, content fidelity (content encoder, output vs content image), an
aesthetic score when a local predictor is given, and the StyleExpert paper's DINO, CLIP image,
CLIP text and DreamSim scores when their models are given (``paper_metrics.py``). Writes metrics.csv, summary.json, PNG plots and
a self-contained report.html.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
import torch

from styleexpert_core.metrics import content_fidelity, pairwise_cosine, style_similarity
from ..data.errors import InputError, MissingFileError
from ..data.files import write_json
from ..data.manifest import read_manifest

from .embed import encode_paths
from .encoders import AestheticPredictor, ImageEncoder
from .paper_metrics import PaperMetrics
from .html_report import render_report
from .plots import horizontal_bar_chart, scatter_plot

logger = logging.getLogger(__name__)

TRIPLE_FOLDERS = ("content", "style", "output")
TRIPLE_FIELDS = ("content_image", "style_image", "output_image")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
SCORE_COLUMNS = ("style_similarity", "baseline_style_similarity", "content_fidelity", "aesthetic")
METRIC_DESCRIPTIONS = {
    "style_similarity": "style encoder cosine, output vs style image (higher = closer style)",
    "baseline_style_similarity": "style encoder cosine, content image vs style image (where the output started)",
    "content_fidelity": "content encoder cosine, output vs content image (higher = content kept)",
    "aesthetic": "LAION aesthetic predictor, output (1-10)",
    "dino": "DINO CLS cosine, output vs content image (higher = structure kept)",
    "clip_image": "CLIP image cosine, output vs style image",
    "clip_text": "CLIP cosine, output vs its prompt (CLIPScore = 100 x max(cos, 0))",
    "dreamsim": "DreamSim distance, output vs content image (lower = perceptually closer)",
    "vlm_stylisation": "VLM judge (curate filter), 0-10: how fully the output takes on the style",
    "vlm_layout": "VLM judge (curate filter), 0-10: composition of the content image kept",
    "vlm_identity": "VLM judge (curate filter), 0-10: identity of the subjects kept",
}


@dataclass(frozen=True)
class Triple:
    id: str
    content_image: Path
    style_image: Path
    output_image: Path
    prompt: str | None = None  # what the output shows, for CLIP text alignment (JSONL field "prompt")


def discover_triples(source: str | Path) -> list[Triple]:
    """A folder with content/, style/, output/ (files matched by name stem), or a JSONL manifest
    with content_image, style_image, output_image per record."""
    source = Path(source)
    if source.is_dir():
        return _triples_from_folders(source)
    if source.is_file():
        manifest = read_manifest(source)
        columns = [manifest.path_column(f) for f in TRIPLE_FIELDS]
        prompts = [None if r.get("prompt") is None else str(r["prompt"]) for r in manifest.records]
        return [Triple(i, c, s, o, p) for i, c, s, o, p in zip(manifest.ids, *columns, prompts)]
    raise MissingFileError(f"Triples not found at {source}: pass a folder with {'/, '.join(TRIPLE_FOLDERS)}/ "
                           f"subfolders or a JSONL manifest with {', '.join(TRIPLE_FIELDS)}.")


def _images_by_stem(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise MissingFileError(f"{folder} is missing: a triples folder needs subfolders {', '.join(TRIPLE_FOLDERS)}.")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            if path.stem in found:
                raise InputError(f"{folder} has two images named {path.stem!r} ({found[path.stem].name}, {path.name}); "
                                 "stems must be unique.")
            found[path.stem] = path
    return found


def _triples_from_folders(root: Path) -> list[Triple]:
    content, style, output = (_images_by_stem(root / name) for name in TRIPLE_FOLDERS)
    if not output:
        raise InputError(f"{root / 'output'} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    triples = []
    for stem, out in output.items():
        missing = [name for name, table in (("content", content), ("style", style)) if stem not in table]
        if missing:
            raise InputError(f"output image {out.name} has no matching file named {stem!r} in "
                             f"{', '.join(str(root / m) for m in missing)}; each output needs a content and a style "
                             "image with the same name stem.")
        triples.append(Triple(stem, content[stem], style[stem], out))
    return triples


@dataclass(frozen=True)
class TripleScores:
    id: str
    style_similarity: float
    baseline_style_similarity: float  # content image vs style image: where the output started from
    content_fidelity: float
    aesthetic: float | None
    paper: dict[str, float] = field(default_factory=dict)  # dino, clip_image, clip_text, dreamsim

    def row(self) -> dict[str, object]:
        return {"id": self.id, **{c: getattr(self, c) for c in SCORE_COLUMNS}, **self.paper}


def score_triples(triples: Sequence[Triple], style_encoder: ImageEncoder, content_encoder: ImageEncoder,
                  aesthetic: AestheticPredictor | None = None, batch_size: int = 16,
                  paper: PaperMetrics | None = None,
                  vlm_scores: Sequence[dict[str, float]] | None = None) -> list[TripleScores]:
    """``vlm_scores``: one dict per triple from ``vlm_scores.read_vlm_scores``, merged into ``paper``."""
    if not triples:
        raise InputError("no triples to evaluate.")
    outputs = [t.output_image for t in triples]
    styles = [t.style_image for t in triples]
    contents = [t.content_image for t in triples]
    # Encode every distinct file once per encoder (style images are usually shared).
    style_table = encode_paths(style_encoder.encode, [*outputs, *styles, *contents], batch_size, "style encoder")
    n = len(triples)
    out_s, ref_s, content_s = style_table[:n], style_table[n : 2 * n], style_table[2 * n :]
    content_table = encode_paths(content_encoder.encode, [*outputs, *contents], batch_size, "content encoder")
    style_sim = style_similarity(out_s, ref_s)
    baseline = style_similarity(content_s, ref_s)
    fidelity = content_fidelity(content_table[:n], content_table[n:])
    scores = encode_paths(aesthetic.score, outputs, batch_size, "aesthetic") if aesthetic else None
    extra = paper_scores(triples, paper, batch_size) if paper else [{} for _ in triples]
    if vlm_scores is not None:
        extra = [{**e, **v} for e, v in zip(extra, vlm_scores, strict=True)]
    return [TripleScores(t.id, float(style_sim[i]), float(baseline[i]), float(fidelity[i]),
                         float(scores[i]) if scores is not None else None, extra[i]) for i, t in enumerate(triples)]


def paper_scores(triples: Sequence[Triple], paper: PaperMetrics, batch_size: int = 16) -> list[dict[str, float]]:
    """DINO (output vs content), CLIP image (output vs style), CLIP text (output vs prompt, when every
    triple has one) and DreamSim distance (output vs content), for the models that are given."""
    n = len(triples)
    outputs = [t.output_image for t in triples]
    contents = [t.content_image for t in triples]
    columns: dict[str, torch.Tensor] = {}
    if paper.dino:
        table = encode_paths(paper.dino.encode, [*outputs, *contents], batch_size, "dino")
        columns["dino"] = pairwise_cosine(table[:n], table[n:], names=("output DINO", "content DINO"))
    if paper.clip:
        table = encode_paths(paper.clip.encode, [*outputs, *(t.style_image for t in triples)], batch_size, "clip")
        columns["clip_image"] = pairwise_cosine(table[:n], table[n:], names=("output CLIP", "style CLIP"))
        if all(t.prompt for t in triples):
            texts = paper.clip.encode_texts([str(t.prompt) for t in triples])
            columns["clip_text"] = pairwise_cosine(table[:n], texts, names=("output CLIP", "prompt CLIP"))
        else:
            logger.warning("clip_text skipped: give every triple a \"prompt\" field to score text alignment")
    if paper.dreamsim:
        table = encode_paths(paper.dreamsim.encode, [*outputs, *contents], batch_size, "dreamsim")
        columns["dreamsim"] = 1.0 - pairwise_cosine(table[:n], table[n:], names=("output DreamSim", "content DreamSim"))
    return [{name: float(values[i]) for name, values in columns.items()} for i in range(n)]


def _columns(scores: Sequence[TripleScores]) -> list[str]:
    return [*SCORE_COLUMNS, *dict.fromkeys(name for s in scores for name in s.paper)]


def summarise(scores: Sequence[TripleScores]) -> dict[str, dict[str, float]]:
    summary = {}
    for column in _columns(scores):
        values = [v for v in (s.row().get(column) for s in scores) if v is not None]
        if not values:
            continue
        t = torch.tensor(values, dtype=torch.float64)
        summary[column] = {"mean": float(t.mean()), "std": float(t.std(unbiased=False)),
                           "min": float(t.min()), "max": float(t.max()), "n": len(values)}
    return summary


def write_suite_outputs(triples: Sequence[Triple], scores: Sequence[TripleScores], out_dir: str | Path,
                        title: str = "StyleExpert stylisation suite") -> dict[str, str]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [{**s.row(), **{f: str(getattr(t, f)) for f in TRIPLE_FIELDS}} for t, s in zip(triples, scores)]
    csv_path = out_dir / "metrics.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["id", *TRIPLE_FIELDS, *_columns(scores)])
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    summary = summarise(scores)
    write_json(out_dir / "summary.json", {"num_triples": len(scores), "metrics": summary})
    plots = [
        horizontal_bar_chart(list(summary), [m["mean"] for m in summary.values()], "mean score (+- std)",
                             out_dir / "plots" / "means.png", errors=[m["std"] for m in summary.values()]),
        scatter_plot([s.content_fidelity for s in scores], [s.style_similarity for s in scores],
                     "style vs content trade-off (one point per triple)", "content fidelity", "style similarity",
                     out_dir / "plots" / "style_vs_content.png"),
    ]
    columns = [c for c in _columns(scores) if c in summary]
    html_text = render_report(title, summary, plots, rows, list(TRIPLE_FIELDS), columns,
                              descriptions=METRIC_DESCRIPTIONS)
    report = out_dir / "report.html"
    report.write_text(html_text, encoding="utf-8")
    return {"csv": str(csv_path), "summary": str(out_dir / "summary.json"), "report": str(report),
            "plots": ", ".join(str(p) for p in plots)}
