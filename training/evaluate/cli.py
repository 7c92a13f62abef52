"""``python -m training.evaluate <step>``: StyleRetrieval and the stylisation suite.

Models are read from local paths only. Bad input prints one ``error: ...`` line and exits 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import run_cli

DESCRIPTION = """Evaluation for StyleExpert style encoders and stylised outputs.

steps (run `python -m training.evaluate <step> --help` for each):
  retrieval  StyleRetrieval: mAP and Recall@k of same-style images ranked by cosine similarity
  suite      style similarity, content fidelity and aesthetics over (content, style, output) triples

encoders (--encoder / --style-encoder / --content-encoder), all from LOCAL folders:
  siglip       SigLIP vision folder; mean-pooled last hidden state
  megastyle    SigLIP config folder + --weights megastyle_encoder state dict; normalised pooler_output
  styleexpert  SigLIP so400m folder + --weights StyleExpert checkpoint holding the style projector
  csd          CLIP ViT-L/14 vision folder (transformers format) + --weights CSD style-head file

suite extras (StyleExpert paper metrics): --dino-model, --clip-model, --dreamsim-dir, --vlm-scores
"""


def _add_encoder(p: argparse.ArgumentParser, prefix: str, required: bool) -> None:
    dash = f"--{prefix}-" if prefix else "--"
    kinds = ("siglip", "megastyle", "styleexpert", "csd")
    p.add_argument(f"{dash}encoder", choices=kinds, required=required, help="encoder kind (see the top-level help)")
    p.add_argument(f"{dash}model", type=Path, required=required, help="local transformers folder of the backbone")
    p.add_argument(f"{dash}weights", type=Path, help="extra weight file for megastyle / styleexpert / csd")


def _ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,5,10, got {text!r}") from None
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError("k values must be positive integers")
    return ks


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="<step>")

    p = sub.add_parser("retrieval", help="StyleRetrieval mAP / Recall@k",
                       description="Every image queries all the others; a hit shares its label. Reports mAP over all "
                       "positives and Recall@k (a positive within the top k). Give precomputed --embeddings, or "
                       "an encoder to embed the manifest's images.")
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--label-field", default="style", help="field holding the style label (default style)")
    p.add_argument("--embeddings", type=Path, help=".safetensors/.npy embeddings aligned with the manifest")
    _add_encoder(p, "", required=False)
    p.add_argument("--image-field", default="image")
    p.add_argument("--ks", type=_ks, default=(1, 5, 10), help="k values for Recall@k (default 1,5,10)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--save-embeddings", type=Path, help="also save the computed embeddings (.safetensors with ids)")
    p.add_argument("--out", type=Path, required=True, help="report (JSON)")
    p.add_argument("-v", "--verbose", action="store_true")

    p = sub.add_parser("suite", help="stylisation metrics, CSV, plots, HTML",
                       description="Score (content, style, output) triples: style similarity of output vs style image "
                       "(and of the content image as a baseline), content fidelity of output vs content image, and an "
                       "aesthetic score when local predictor weights are given. Writes metrics.csv, summary.json, "
                       "plots/*.png and a self-contained report.html to --out-dir.")
    p.add_argument("--triples", type=Path, required=True,
                   help="folder with content/, style/, output/ (same file stems) or a JSONL manifest with "
                   "content_image, style_image, output_image")
    _add_encoder(p, "style", required=True)
    _add_encoder(p, "content", required=True)
    p.add_argument("--aesthetic-clip", type=Path, help="CLIP ViT-L/14 with projection (transformers folder)")
    p.add_argument("--aesthetic-weights", type=Path, help="LAION aesthetic MLP weights (sac+logos+ava1-l14-linearMSE)")
    p.add_argument("--dino-model", type=Path,
                   help="DINO / DINOv2 folder (transformers): adds dino, output vs content CLS cosine")
    p.add_argument("--clip-model", type=Path, help="full CLIP folder with tokenizer (transformers): adds clip_image "
                   "(output vs style) and, when every triple has a prompt, clip_text")
    p.add_argument("--dreamsim-dir", type=Path,
                   help="folder with the unzipped DreamSim release (needs pip install dreamsim): adds dreamsim, "
                   "output vs content distance")
    p.add_argument("--vlm-scores", type=Path, help="report of `python -m training.curate filter` on the same "
                   "triples: adds vlm_stylisation, vlm_layout, vlm_identity (0-10)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("-v", "--verbose", action="store_true")
    return parser


def run_retrieval(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from ..data.embeddings import load_aligned, save_embeddings
    from ..data.errors import ConfigError
    from ..data.files import write_json
    from ..data.manifest import read_manifest

    from .embed import encode_paths
    from .loaders import build_encoder
    from .retrieval import retrieval_report

    if (args.embeddings is None) == (args.encoder is None):
        raise ConfigError("give either --embeddings, or --encoder with --model (and --weights where needed).")
    manifest = read_manifest(args.manifest)
    labels = manifest.labels(args.label_field)
    if args.embeddings is not None:
        embeddings, source = torch.from_numpy(load_aligned(manifest, args.embeddings)), str(args.embeddings)
    else:
        if args.model is None:
            raise ConfigError(f"--encoder {args.encoder} needs --model (a local folder).")
        paths = manifest.path_column(args.image_field)
        encoder = build_encoder(args.encoder, args.model, args.weights)
        embeddings, source = encode_paths(encoder.encode, paths, args.batch_size, encoder.name), args.encoder
        if args.save_embeddings:
            save_embeddings(args.save_embeddings, embeddings.numpy(), manifest.ids)
    report = {"source": source, "label_field": args.label_field, **retrieval_report(embeddings, labels, args.ks)}
    write_json(args.out, report)
    return {**{k: round(v, 4) for k, v in report["metrics"].items()}, "queries": report["num_queries"],
            "out": str(args.out)}


def run_suite(args: argparse.Namespace) -> dict[str, Any]:
    from ..data.errors import ConfigError

    from .loaders import build_encoder, load_aesthetic_predictor
    from .paper_metrics import PaperMetrics, load_clip, load_dino, load_dreamsim
    from .suite import discover_triples, score_triples, write_suite_outputs
    from .vlm_scores import read_vlm_scores

    if (args.aesthetic_clip is None) != (args.aesthetic_weights is None):
        raise ConfigError("the aesthetic score needs both --aesthetic-clip and --aesthetic-weights.")
    triples = discover_triples(args.triples)
    vlm_scores = read_vlm_scores(args.vlm_scores, [t.id for t in triples]) if args.vlm_scores else None
    style_encoder = build_encoder(args.style_encoder, args.style_model, args.style_weights)
    content_encoder = build_encoder(args.content_encoder, args.content_model, args.content_weights)
    aesthetic = load_aesthetic_predictor(args.aesthetic_clip, args.aesthetic_weights) if args.aesthetic_clip else None
    paper = PaperMetrics(load_dino(args.dino_model) if args.dino_model else None,
                         load_clip(args.clip_model) if args.clip_model else None,
                         load_dreamsim(args.dreamsim_dir) if args.dreamsim_dir else None)
    scores = score_triples(triples, style_encoder, content_encoder, aesthetic, args.batch_size, paper, vlm_scores)
    outputs = write_suite_outputs(triples, scores, args.out_dir)
    means = {name: round(sum(s.row()[name] for s in scores) / len(scores), 4)
             for name in ("style_similarity", "content_fidelity", *scores[0].paper)}
    return {"triples": len(scores), **means, "report": outputs["report"]}


RUNNERS = {"retrieval": run_retrieval, "suite": run_suite}


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(build_parser(), RUNNERS, argv)
