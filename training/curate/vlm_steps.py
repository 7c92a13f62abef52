"""Captioning and quality filtering over a manifest, resumable, on any executor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ..data.manifest import Manifest, write_manifest
from .executor import BatchFn, Executor
from .resume import read_results, run_resumable
from .vlm import CaptionWorker, QualityThresholds, QualityWorker, VisionLanguageModel, caption_request

QUALITY_IMAGE_FIELDS = ("content_image", "style_image", "output_image")

ModelLoader = Callable[[], VisionLanguageModel]  # picklable for Ray, e.g. vlm_backends.VLMLoader


@dataclass(frozen=True)
class ModelWorkerFactory:
    """Loads the model (once per executor worker: this process, or each Ray actor) and wraps it
    in a step's batch worker."""

    load_model: ModelLoader
    wrap: Callable[[VisionLanguageModel], BatchFn]

    def __call__(self) -> BatchFn:
        return self.wrap(self.load_model())


@dataclass(frozen=True)
class StepSummary:
    total: int
    already_done: int
    ran: int
    kept: int | None = None

    def to_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def caption_manifest(
    manifest: Manifest, load_model: ModelLoader, kind: str, out_path: Path, executor: Executor,
    *, batch_size: int = 8, image_field: str = "image",
) -> StepSummary:
    """Append {"id", "<kind>_caption"} rows to ``out_path`` for records not captioned yet."""
    caption_request(Path("."), kind)  # validates kind before any model work
    items = [{"id": i, "image": str(p)} for i, p in zip(manifest.ids, manifest.path_column(image_field))]
    worker = ModelWorkerFactory(load_model, partial(CaptionWorker, kind=kind))
    report = run_resumable(items, "id", worker, out_path, executor, batch_size)
    return StepSummary(report.total, report.already_done, report.ran)


def filter_manifest(
    manifest: Manifest, load_model: ModelLoader, thresholds: QualityThresholds, report_path: Path,
    out_path: Path, executor: Executor, *, batch_size: int = 8, skip_unparseable: bool = False,
) -> StepSummary:
    """Score every (content, style, output) triple, append scores to ``report_path`` and write
    the records that pass every threshold to ``out_path`` (manifest order)."""
    columns = {f: manifest.path_column(f) for f in QUALITY_IMAGE_FIELDS}
    items = [{"id": i, **{f: str(columns[f][n]) for f in QUALITY_IMAGE_FIELDS}} for n, i in enumerate(manifest.ids)]
    wrap = partial(QualityWorker, thresholds=thresholds, skip_unparseable=skip_unparseable)
    report = run_resumable(items, "id", ModelWorkerFactory(load_model, wrap), report_path, executor, batch_size)
    verdicts = read_results(report_path, "id")
    kept = [r for r in manifest.records if verdicts.get(r["id"], {}).get("keep") is True]
    write_manifest(out_path, kept, manifest)
    return StepSummary(report.total, report.already_done, report.ran, len(kept))
