"""Append-only JSONL result files that let long runs resume where they stopped.

Each finished item is appended as one line and flushed, so after a crash every complete line is
a finished item. A last line cut off mid-write is dropped (and logged) on the next run.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.errors import ManifestError
from .executor import Executor, WorkerFactory

logger = logging.getLogger(__name__)


def read_results(path: Path, key: str) -> dict[str, dict[str, Any]]:
    """Rows already written to ``path``, by ``key``; repairs a truncated final line."""
    if not path.exists():
        return {}
    rows: dict[str, dict[str, Any]] = {}
    data = path.read_bytes()
    lines = data.split(b"\n")
    complete, tail = lines[:-1], lines[-1]  # tail is b"" when the file ends with a newline
    for line_no, raw in enumerate(complete, start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ManifestError(
                f"{path}, line {line_no}: not valid JSON ({e.msg}). This results file is damaged; "
                "delete the line (that item will be redone) or the file."
            ) from None
        if not isinstance(row, dict) or key not in row:
            raise ManifestError(f"{path}, line {line_no}: expected a JSON object with {key!r}.")
        rows[str(row[key])] = row
    if tail.strip():
        logger.warning("%s: dropping an unfinished last line left by an interrupted run", path)
        with path.open("r+b") as f:
            f.truncate(len(data) - len(tail))
    return rows


def append_rows(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


@dataclass(frozen=True)
class ResumeReport:
    already_done: int
    ran: int
    total: int


def run_resumable(
    items: Sequence[Mapping[str, Any]],
    key: str,
    make_worker: WorkerFactory,
    results_path: Path,
    executor: Executor,
    batch_size: int,
) -> ResumeReport:
    """Run the worker on the items whose ``key`` is not yet in ``results_path``; append its rows.

    ``make_worker()`` builds the worker once per executor worker (not at all when nothing is
    pending); the worker gets a batch of items and returns one result row per item, carrying ``key``.
    """
    done = read_results(results_path, key)
    pending = [item for item in items if str(item[key]) not in done]
    if len(pending) < len(items):
        logger.info("%s: %d of %d already done, running %d",
                    results_path, len(items) - len(pending), len(items), len(pending))
    ran = 0
    for _, rows in executor.map_batches(make_worker, pending, batch_size):
        for row in rows:
            if key not in row:
                raise RuntimeError(f"worker result {row!r} lacks the key {key!r}")
        append_rows(results_path, rows)
        ran += len(rows)
    return ResumeReport(len(items) - len(pending), ran, len(items))
