"""Style x content prompt pairing into sharded, seeded, resumable generation jobs (MegaStyle).

Each style prompt is paired with ``contents_per_style`` distinct content prompts. The draw for a
style depends only on (seed, style id), so adding styles or reordering the file leaves every
other style's jobs unchanged, and each job's generation seed depends only on (seed, job id).
Jobs are written as JSONL shards plus ``plan.json``; re-running skips shards already on disk,
and ``run_generation`` skips finished shards and, inside a shard, finished jobs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import string
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.errors import ConfigError, ResumeConflictError
from ..data.files import write_json, write_jsonl
from ..data.manifest import read_manifest
from .executor import Executor, LocalExecutor, WorkerFactory
from .resume import run_resumable

logger = logging.getLogger(__name__)

PLAN_FILE = "plan.json"
PLAN_FORMAT = "styleexpert.generation-plan/1"
RESULTS_DIR = "results"


@dataclass(frozen=True)
class PairingConfig:
    contents_per_style: int = 8  # MegaStyle: 1.4 M images from 170 K style prompts ~ 8 per style
    seed: int = 0
    shard_size: int = 10_000
    template: str = "{content}, in the style of {style}"

    def __post_init__(self) -> None:
        for name in ("contents_per_style", "shard_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}.")
        fields = {f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None}
        if fields != {"content", "style"}:
            raise ConfigError(
                f"template must use exactly the fields {{content}} and {{style}}, got {sorted(fields)} "
                f"in {self.template!r}."
            )


@dataclass(frozen=True)
class PromptItem:
    id: str
    prompt: str


@dataclass(frozen=True)
class GenerationJob:
    job_id: str
    style_id: str
    content_id: str
    style_prompt: str
    content_prompt: str
    prompt: str
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stable_int(*parts: object) -> int:
    """A 64-bit integer from the parts that is the same on every machine and Python run."""
    digest = hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def pair_prompts(
    styles: Sequence[PromptItem], contents: Sequence[PromptItem], config: PairingConfig
) -> list[GenerationJob]:
    k = config.contents_per_style
    if k > len(contents):
        raise ConfigError(
            f"contents_per_style is {k} but only {len(contents)} content prompts exist; "
            "lower --per-style or add content prompts."
        )
    jobs = []
    for style in styles:
        rng = np.random.default_rng(stable_int(config.seed, "pair", style.id))
        for c in rng.choice(len(contents), size=k, replace=False):
            content = contents[int(c)]
            job_id = f"{stable_int('job', style.id, content.id):016x}"
            jobs.append(GenerationJob(
                job_id=job_id,
                style_id=style.id,
                content_id=content.id,
                style_prompt=style.prompt,
                content_prompt=content.prompt,
                prompt=config.template.format(content=content.prompt, style=style.prompt),
                seed=stable_int(config.seed, "seed", job_id) % 2**32,
            ))
    return jobs


def read_prompts(path: str | Path, field: str = "prompt") -> list[PromptItem]:
    manifest = read_manifest(path)
    return [PromptItem(i, str(p)) for i, p in zip(manifest.ids, manifest.column(field))]


def inputs_fingerprint(styles: Sequence[PromptItem], contents: Sequence[PromptItem]) -> str:
    payload = json.dumps([[asdict(s) for s in styles], [asdict(c) for c in contents]], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class ShardReport:
    num_jobs: int
    num_shards: int
    written: tuple[str, ...]
    skipped: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"num_jobs": self.num_jobs, "num_shards": self.num_shards,
                "written": len(self.written), "skipped": len(self.skipped)}


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.jsonl"


def write_job_shards(
    jobs: Sequence[GenerationJob], out_dir: str | Path, config: PairingConfig, fingerprint: str
) -> ShardReport:
    """Write jobs into shards; shards already on disk with identical content are left alone."""
    out_dir = Path(out_dir)
    shards = [jobs[i : i + config.shard_size] for i in range(0, len(jobs), config.shard_size)]
    texts = [_shard_text(shard) for shard in shards]
    plan = {
        "format": PLAN_FORMAT,
        "config": asdict(config),
        "inputs_sha256": fingerprint,
        "num_jobs": len(jobs),
        "shards": [{"file": shard_name(i), "jobs": len(s), "sha256": _sha256(t)}
                   for i, (s, t) in enumerate(zip(shards, texts))],
    }
    _check_existing_plan(out_dir, plan)
    written, skipped = [], []
    for entry, text in zip(plan["shards"], texts):
        path = out_dir / entry["file"]
        if path.is_file() and _sha256(path.read_text(encoding="utf-8")) == entry["sha256"]:
            skipped.append(entry["file"])
            continue
        write_jsonl(path, (json.loads(line) for line in text.splitlines()))
        written.append(entry["file"])
    write_json(out_dir / PLAN_FILE, plan)
    logger.info("pairing: %d jobs in %d shards (%d written, %d already present)",
                len(jobs), len(shards), len(written), len(skipped))
    return ShardReport(len(jobs), len(shards), tuple(written), tuple(skipped))


def _shard_text(shard: Sequence[GenerationJob]) -> str:
    return "".join(json.dumps(job.to_dict(), ensure_ascii=False) + "\n" for job in shard)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_existing_plan(out_dir: Path, plan: Mapping[str, Any]) -> None:
    path = out_dir / PLAN_FILE
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise ResumeConflictError(f"{path} is not valid JSON; delete it to re-plan into {out_dir}.") from None
    for key in ("config", "inputs_sha256"):
        if old.get(key) != plan[key]:
            raise ResumeConflictError(
                f"{out_dir} already holds a plan made with a different {key.replace('_sha256', '')} "
                f"({old.get(key)!r} vs {plan[key]!r}). Use a new --out-dir, or delete {path} and its shards to re-plan."
            )


@dataclass(frozen=True)
class GenerationReport:
    shards_finished_before: int
    jobs_already_done: int  # including the jobs of finished shards
    jobs_ran: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def run_generation(
    out_dir: str | Path,
    make_worker: WorkerFactory,
    executor: Executor = LocalExecutor("generation"),
    batch_size: int = 4,
) -> GenerationReport:
    """Run the generator over the plan. ``make_worker()`` loads it (once per executor worker) and
    returns a batch function: a list of job dicts -> one result row with ``job_id`` per job. Wrap a
    function that loads nothing in ``Ready``.

    Results go to ``<out_dir>/results/<shard>.jsonl``; a ``.done`` file marks finished shards, so
    an interrupted run resumes at the first unfinished job.
    """
    out_dir = Path(out_dir)
    plan_path = out_dir / PLAN_FILE
    if not plan_path.is_file():
        raise ResumeConflictError(f"{plan_path} not found; run `python -m training.curate pair-prompts` first.")
    plan = json.loads(plan_path.read_text(encoding="utf-8"))
    finished_before = already = ran = 0
    for entry in plan["shards"]:
        results = out_dir / RESULTS_DIR / entry["file"]
        marker = results.with_suffix(".done")
        if marker.exists():
            finished_before += 1
            already += int(entry["jobs"])
            continue
        jobs = read_manifest_rows(out_dir / entry["file"])
        report = run_resumable(jobs, "job_id", make_worker, results, executor, batch_size)
        already += report.already_done
        ran += report.ran
        marker.write_text("done\n", encoding="utf-8")
    return GenerationReport(finished_before, already, ran)


def read_manifest_rows(path: Path) -> list[dict[str, Any]]:
    with path.open("r", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
