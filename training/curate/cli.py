"""``python -m training.curate <step>``: the curation steps as a command line.

Every step reads JSONL manifests (paths relative to the manifest) and .safetensors/.npy
embeddings, writes JSONL/JSON outputs, and prints a one-line JSON summary to stdout. Bad input
prints one ``error: ...`` line to stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..config import run_cli
from ..data.errors import ConfigError

DESCRIPTION = """Data curation for StyleExpert / MegaStyle training sets.

steps (run `python -m training.curate <step> --help` for each):
  select-references  pick, for each stylised image, a same-style reference with different content
  dedup              drop exact (SHA-256), near (pHash) and semantic (SemDeDup) duplicates
  balance            sample a concept-balanced subset with hierarchical k-means
  pair-prompts       pair style prompts with content prompts into sharded generation jobs
  caption            style-only or content-only captions from a local vision-language model
  filter             keep stylised triples whose VLM quality scores pass the thresholds

manifests: JSONL, one object per line with a unique "id"; fields "image" / "*_image" are paths
relative to the manifest. embeddings: .safetensors (tensor "embeddings" [N, D], optional metadata
"ids" = JSON list) or .npy [N, D]; without ids, row i belongs to manifest line i.
"""


def _csv_ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 80,10, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")


def _add_executor(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help='where batches run: this process, or a pool of Ray Data actors (needs pip install "ray[data]")')
    p.add_argument("--ray-address", default=None, help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--batch-size", type=int, default=8, help="requests per model call (default 8)")
    p.add_argument("--concurrency", type=int, default=1,
                   help="Ray actors, each loading its own copy of the model once (default 1)")
    p.add_argument("--num-gpus", type=float, default=None, help="GPUs each Ray actor reserves (e.g. 1)")
    p.add_argument("--num-cpus", type=float, default=None, help="CPUs each Ray actor reserves (Ray's default: 1)")


def _add_vlm(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-path", type=Path, required=True,
                   help="local folder of a transformers vision-language model (config.json + weights)")
    p.add_argument("--backend", choices=("transformers", "vllm"), default="transformers",
                   help="transformers (batched generate) or vLLM's offline engine (pip install vllm; CUDA)")
    p.add_argument("--device", default="cpu", help="torch device for the transformers backend (default cpu)")
    p.add_argument("--tensor-parallel-size", type=int, default=1, help="GPUs per model for the vllm backend")
    p.add_argument("--max-new-tokens", type=int, default=128)


def _add_select_references(sub, fmt) -> None:
    p = sub.add_parser("select-references", formatter_class=fmt, help="choose same-style references",
                       description="For each record, choose the record of the same style with a different content id "
                       "that maximises style_cos - lambda * content_cos. Never the record itself; among scores "
                       "within the tie tolerance the smallest id wins, so results are deterministic. Writes the "
                       "manifest with reference_id / reference_score (and reference_image) added.")
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--style-embeddings", type=Path, required=True, help="style embeddings (e.g. CSD, SigLIP)")
    p.add_argument("--content-embeddings", type=Path, help="content embeddings (e.g. DINO); omit to rank by style only")
    p.add_argument("--style-field", default="style", help="manifest field holding the style label (default style)")
    p.add_argument("--content-field", default="content", help="manifest field holding the content id (default content)")
    p.add_argument("--content-weight", type=float, default=1.0, help="lambda, the penalty on content similarity")
    p.add_argument("--out", type=Path, required=True, help="output JSONL manifest")
    _add_common(p)


def _add_dedup(sub, fmt) -> None:
    p = sub.add_parser("dedup", formatter_class=fmt, help="exact, perceptual-hash and semantic dedup",
                       description="Three steps, as MegaStyle ran them. 1) exact: byte-identical image files "
                       "(SHA-256), the first in manifest order is kept. 2) near: images within --phash-distance "
                       "bits of 64-bit pHash, the largest image is kept. 3) SemDeDup: L2-normalised embeddings are "
                       "clustered with k-means; inside a cluster records are ranked by distance to the centroid "
                       "(--keep hard: farthest first, the paper's default; easy: closest first) and a record is "
                       "dropped when its cosine similarity to any record ranked before it is >= --threshold. "
                       "Writes the kept manifest and a report line per dropped record (step, duplicate_of, ...).")
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--embeddings", type=Path, required=True)
    p.add_argument("--threshold", type=float, default=0.95,
                   help="cosine similarity counted as duplicate (default 0.95)")
    p.add_argument("--clusters", type=int, default=16, help="k-means clusters (default 16; ~N/1000 at scale)")
    p.add_argument("--keep", choices=("hard", "easy"), default="hard",
                   help="which member of a semantic duplicate group survives: farthest from (hard, default) or "
                   "closest to (easy) the cluster centroid")
    p.add_argument("--image-field", default="image", help="field with the image path for the hash steps")
    p.add_argument("--phash-distance", type=int, default=4,
                   help="pHash bits (0-16) within which two images are near-duplicates (default 4)")
    p.add_argument("--no-image-hash", action="store_true",
                   help="skip the exact and pHash steps (semantic dedup only; no image files needed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="kept records (JSONL manifest)")
    p.add_argument("--report", type=Path, required=True, help="dropped records (JSONL)")
    _add_common(p)


def _add_balance(sub, fmt) -> None:
    p = sub.add_parser("balance", formatter_class=fmt, help="hierarchical k-means balanced sampling",
                       description="Build a k-means hierarchy (level 1 clusters the records, level l clusters the "
                       "level l-1 centroids; each level is resampled k-means: refit on the points closest to every "
                       "centroid, so centroids spread evenly over concepts), then split --target top-down with water-filling quotas "
                       "q_i = min(size_i, t), so rare concepts are kept whole and big ones are capped. Reports label "
                       "entropy (nats) and the largest label share before and after.")
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--embeddings", type=Path, required=True)
    p.add_argument("--levels", type=_csv_ints, default=(80, 10),
                   help="clusters per level, bottom first (default 80,10)")
    p.add_argument("--resample-steps", type=int, default=10,
                   help="resampled k-means refits per level (Vo et al.; default 10, 0 = plain k-means)")
    p.add_argument("--sample-sizes", type=_csv_ints, default=None,
                   help="points taken per cluster in each refit, one per level (default: half the mean cluster size)")
    p.add_argument("--target", type=int, required=True, help="number of records to keep")
    p.add_argument("--label-field", help="field used for the before/after statistics (default: level-1 clusters)")
    p.add_argument("--strategy", choices=("random", "closest"), default="random",
                   help="how points are drawn inside a level-1 cluster (default random)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="sampled records (JSONL manifest)")
    p.add_argument("--report", type=Path, required=True, help="statistics (JSON)")
    _add_common(p)


def _add_pair_prompts(sub, fmt) -> None:
    p = sub.add_parser("pair-prompts", formatter_class=fmt, help="style x content generation jobs",
                       description="Pair each style prompt with --per-style distinct content prompts (a seeded draw "
                       "that depends only on the seed and the style id) and write jobs as JSONL shards plus plan.json. "
                       "Re-running with the same inputs skips shards already written; different inputs or settings "
                       "in the same --out-dir are refused.")
    p.add_argument("--styles", type=Path, required=True, help="JSONL of {id, prompt} style prompts")
    p.add_argument("--contents", type=Path, required=True, help="JSONL of {id, prompt} content prompts")
    p.add_argument("--prompt-field", default="prompt")
    p.add_argument("--per-style", type=int, default=8, help="content prompts per style prompt (default 8)")
    p.add_argument("--shard-size", type=int, default=10_000)
    p.add_argument("--template", default="{content}, in the style of {style}",
                   help="how the two prompts combine (fields {content} and {style})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", type=Path, required=True)
    _add_common(p)


def _add_caption(sub, fmt) -> None:
    p = sub.add_parser("caption", formatter_class=fmt, help="style-only / content-only VLM captions",
                       description="Ask a local vision-language model for a caption that describes only the style "
                       "(--kind style) or only the content (--kind content) of each image. Appends "
                       "{id, <kind>_caption} rows to --out; re-running skips ids already there.")
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--kind", choices=("style", "content"), required=True)
    p.add_argument("--image-field", default="image")
    p.add_argument("--out", type=Path, required=True)
    _add_vlm(p)
    _add_executor(p)
    _add_common(p)


def _add_filter(sub, fmt) -> None:
    p = sub.add_parser("filter", formatter_class=fmt, help="VLM quality filter for stylised triples",
                       description="Show the model (content_image, style_image, output_image) and parse 0-10 scores "
                       "for stylisation, layout and identity (JSON or 'key: score' lines). Records whose scores "
                       "all reach the minimums are written to --out; every score goes to --report (resumable).")
    p.add_argument("--manifest", type=Path, required=True,
                   help="JSONL with content_image, style_image, output_image per record")
    p.add_argument("--min-stylisation", type=float, default=6.0)
    p.add_argument("--min-layout", type=float, default=6.0)
    p.add_argument("--min-identity", type=float, default=6.0)
    p.add_argument("--skip-unparseable", action="store_true",
                   help="record unreadable model answers as dropped instead of stopping")
    p.add_argument("--report", type=Path, required=True, help="scores per record (JSONL, appended)")
    p.add_argument("--out", type=Path, required=True, help="records that pass (JSONL manifest)")
    _add_vlm(p)
    _add_executor(p)
    _add_common(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.curate", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="<step>")
    fmt = argparse.HelpFormatter  # wraps the long step descriptions
    for add_step in (_add_select_references, _add_dedup, _add_balance, _add_pair_prompts, _add_caption,
                     _add_filter):
        add_step(sub, fmt)
    return parser


# ---------------------------------------------------------------- step runners


def run_select_references(args: argparse.Namespace) -> dict[str, Any]:
    from ..data.embeddings import load_aligned
    from ..data.manifest import read_manifest, write_manifest
    from .references import ReferenceConfig, select_style_references

    config = ReferenceConfig(content_weight=args.content_weight)
    manifest = read_manifest(args.manifest)
    styles = manifest.labels(args.style_field)
    contents = manifest.labels(args.content_field)
    style_emb = load_aligned(manifest, args.style_embeddings)
    content_emb = load_aligned(manifest, args.content_embeddings) if args.content_embeddings else None
    choices = select_style_references(manifest.ids, styles, contents, style_emb, content_emb, config)
    by_id = {r["id"]: r for r in manifest.records}
    rows = []
    for record, choice in zip(manifest.records, choices):
        row = {**record, "reference_id": choice.reference_id, "reference_score": choice.score}
        if choice.reference_id is not None and "image" in record:
            row["reference_image"] = by_id[choice.reference_id]["image"]
        rows.append(row)
    write_manifest(args.out, rows, manifest)
    missing = sum(c.reference_id is None for c in choices)
    return {"records": len(rows), "with_reference": len(rows) - missing, "without_reference": missing,
            "out": str(args.out)}


def run_dedup(args: argparse.Namespace) -> dict[str, Any]:
    from .dedup import DedupConfig, semantic_dedup
    from .hash_dedup import check_phash_distance, hash_dedup, hash_images
    from ..data.embeddings import load_aligned
    from ..data.files import write_jsonl
    from ..data.manifest import read_manifest, write_manifest

    config = DedupConfig(similarity_threshold=args.threshold, n_clusters=args.clusters, keep=args.keep,
                         seed=args.seed)
    check_phash_distance(args.phash_distance)
    manifest = read_manifest(args.manifest)
    embeddings = load_aligned(manifest, args.embeddings)
    hash_drops = []
    if not args.no_image_hash:
        hashes = hash_images(manifest.path_column(args.image_field))
        hash_drops = hash_dedup(manifest.ids, hashes, args.phash_distance)
    gone = {d.id for d in hash_drops}
    rest = [i for i, item_id in enumerate(manifest.ids) if item_id not in gone]
    result = semantic_dedup([manifest.ids[i] for i in rest], embeddings[rest], config)
    write_manifest(args.out, manifest.subset(result.kept_ids).records, manifest)
    write_jsonl(args.report, [*(d.__dict__ for d in hash_drops),
                              *({"step": "semantic", **d.__dict__} for d in result.dropped)])
    steps = [d.step for d in hash_drops]
    return {"records": len(manifest), "kept": len(result.kept_ids), "dropped": len(gone) + len(result.dropped),
            "exact": steps.count("exact"), "near": steps.count("near"), "semantic": len(result.dropped),
            "out": str(args.out)}


def run_balance(args: argparse.Namespace) -> dict[str, Any]:
    from .balance import HierarchyConfig, balance_report, balanced_sample, hierarchical_kmeans
    from ..data.embeddings import load_aligned
    from ..data.files import write_json
    from ..data.manifest import read_manifest, write_manifest

    config = HierarchyConfig(level_sizes=args.levels, seed=args.seed, resample_steps=args.resample_steps,
                             sample_sizes=args.sample_sizes)
    manifest = read_manifest(args.manifest)
    labels = manifest.labels(args.label_field) if args.label_field else None
    tree = hierarchical_kmeans(load_aligned(manifest, args.embeddings), config)
    selected = balanced_sample(tree, args.target, seed=args.seed, strategy=args.strategy)
    if labels is None:
        labels, source = [str(c) for c in tree.parents[0]], "level-1 clusters"
    else:
        source = f"field {args.label_field!r}"
    report = balance_report(labels, selected, source)
    write_manifest(args.out, [manifest.records[i] for i in selected], manifest)
    write_json(args.report, {"levels": list(config.level_sizes), "resample_steps": config.resample_steps,
                             "target": args.target, **report.to_dict()})
    return {"records": len(manifest), "kept": int(selected.size),
            "entropy_before": round(report.before.entropy, 4), "entropy_after": round(report.after.entropy, 4),
            "largest_share_before": round(report.before.largest_share, 4),
            "largest_share_after": round(report.after.largest_share, 4), "out": str(args.out)}


def run_pair_prompts(args: argparse.Namespace) -> dict[str, Any]:
    from .pairing import PairingConfig, inputs_fingerprint, pair_prompts, read_prompts, write_job_shards

    config = PairingConfig(contents_per_style=args.per_style, seed=args.seed, shard_size=args.shard_size,
                           template=args.template)
    styles = read_prompts(args.styles, args.prompt_field)
    contents = read_prompts(args.contents, args.prompt_field)
    jobs = pair_prompts(styles, contents, config)
    report = write_job_shards(jobs, args.out_dir, config, inputs_fingerprint(styles, contents))
    return {**report.to_dict(), "out_dir": str(args.out_dir)}


def _executor(args: argparse.Namespace):
    from .executor import make_executor

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}.")
    if args.executor == "ray":
        return make_executor("ray", address=args.ray_address, concurrency=args.concurrency,
                             num_gpus=args.num_gpus, num_cpus=args.num_cpus)
    return make_executor("local", description=args.command)


def _vlm_loader(args: argparse.Namespace):
    """A recipe each worker calls once; the folder is checked here so a bad path fails before any work."""
    from ..data.local_weights import check_local_weights
    from .vlm_backends import VLMLoader

    check_local_weights(args.model_path, "vision-language model")
    return VLMLoader(args.backend, args.model_path, device=args.device, max_new_tokens=args.max_new_tokens,
                     tensor_parallel_size=args.tensor_parallel_size)


def run_caption(args: argparse.Namespace) -> dict[str, Any]:
    from ..data.manifest import read_manifest
    from .vlm_steps import caption_manifest

    manifest = read_manifest(args.manifest)
    manifest.path_column(args.image_field)  # fail on a missing field before loading the model
    executor = _executor(args)
    summary = caption_manifest(manifest, _vlm_loader(args), args.kind, args.out, executor,
                               batch_size=args.batch_size, image_field=args.image_field)
    return {**summary.to_dict(), "out": str(args.out)}


def run_filter(args: argparse.Namespace) -> dict[str, Any]:
    from ..data.manifest import read_manifest
    from .vlm import QualityThresholds
    from .vlm_steps import QUALITY_IMAGE_FIELDS, filter_manifest

    thresholds = QualityThresholds({"stylisation": args.min_stylisation, "layout": args.min_layout,
                                    "identity": args.min_identity})
    manifest = read_manifest(args.manifest)
    for field in QUALITY_IMAGE_FIELDS:
        manifest.column(field)
    executor = _executor(args)
    summary = filter_manifest(manifest, _vlm_loader(args), thresholds, args.report, args.out, executor,
                              batch_size=args.batch_size, skip_unparseable=args.skip_unparseable)
    return {**summary.to_dict(), "out": str(args.out)}


RUNNERS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "select-references": run_select_references,
    "dedup": run_dedup,
    "balance": run_balance,
    "pair-prompts": run_pair_prompts,
    "caption": run_caption,
    "filter": run_filter,
}


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(build_parser(), RUNNERS, argv)
