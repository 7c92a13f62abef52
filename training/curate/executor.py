"""Where batch work runs: one small interface, a local loop, and an optional Ray Data backend.

Curation steps hand an ``Executor`` a *worker factory* and a list of items. The factory builds the
batch function (loading any model) once per worker: once in this process for ``LocalExecutor``,
once per actor for ``RayDataExecutor``, never once per batch. The executor yields
``(indices, results)`` per batch. Batches may arrive in any order (Ray streams them as actors
finish), so callers key results by index or id; ``collect`` restores input order.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tqdm import tqdm

from ..data.errors import ConfigError

logger = logging.getLogger(__name__)

BatchFn = Callable[[list[Any]], list[Any]]
WorkerFactory = Callable[[], BatchFn]  # must be picklable for Ray (a module-level class or function)

RAY_INSTALL_HINT = 'RayDataExecutor needs Ray Data, which is not installed. Install it with: pip install "ray[data]"'


class Executor(Protocol):
    def map_batches(
        self, make_worker: WorkerFactory, items: Sequence[Any], batch_size: int
    ) -> Iterator[tuple[list[int], list[Any]]]:
        """Build the batch function once per worker; yield each batch's item indices and its results."""
        ...


@dataclass(frozen=True)
class Ready:
    """The factory of a batch function that loads nothing (a plain function or a built object)."""

    fn: BatchFn

    def __call__(self) -> BatchFn:
        return self.fn


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}.")


def _checked_results(fn: BatchFn, batch: list[Any]) -> list[Any]:
    results = list(fn(batch))
    if len(results) != len(batch):
        raise RuntimeError(
            f"batch function returned {len(results)} results for {len(batch)} items; it must return one per item."
        )
    return results


@dataclass(frozen=True)
class LocalExecutor:
    """Builds the worker once and runs batches one after another in this process, with a progress bar."""

    description: str = "batches"

    def map_batches(
        self, make_worker: WorkerFactory, items: Sequence[Any], batch_size: int
    ) -> Iterator[tuple[list[int], list[Any]]]:
        _check_batch_size(batch_size)
        if not items:
            return
        fn = make_worker()
        starts = range(0, len(items), batch_size)
        for start in tqdm(starts, desc=self.description, unit="batch", disable=None):
            indices = list(range(start, min(start + batch_size, len(items))))
            yield indices, _checked_results(fn, [items[i] for i in indices])


class BatchActor:
    """A Ray Data actor: builds the batch function (loads the model) once, then serves many batches.

    Items and results travel as pickled bytes: Arrow cannot hold arbitrary Python objects (nested
    dicts of mixed types, Paths), but a binary column holds anything picklable.
    """

    def __init__(self, make_worker: WorkerFactory) -> None:
        self._fn = make_worker()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        results = _checked_results(self._fn, [pickle.loads(b) for b in batch["item"]])
        return {"index": batch["index"], "result": np.array([pickle.dumps(r) for r in results], dtype=object)}


@dataclass(frozen=True)
class RayDataExecutor:
    """Runs batches on a fixed pool of ``concurrency`` Ray Data actors (local Ray, or a cluster via ``address``).

    Each actor reserves ``num_gpus`` GPUs and ``num_cpus`` CPUs and builds the worker once. The
    worker factory and the items must be picklable.
    """

    address: str | None = None
    concurrency: int = 1  # actors, i.e. model copies
    num_cpus: float | None = None
    num_gpus: float | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ConfigError(f"concurrency (the number of Ray actors) must be >= 1, got {self.concurrency}.")
        for name in ("num_cpus", "num_gpus"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{name} per actor must be >= 0, got {value}.")

    def map_batches(
        self, make_worker: WorkerFactory, items: Sequence[Any], batch_size: int
    ) -> Iterator[tuple[list[int], list[Any]]]:
        _check_batch_size(batch_size)
        if not items:
            return
        ray = _import_ray()
        if not ray.is_initialized():
            ray.init(address=self.address, ignore_reinit_error=True, log_to_driver=False)
        dataset = ray.data.from_items([{"index": i, "item": pickle.dumps(item)} for i, item in enumerate(items)])
        resources = {k: v for k, v in (("num_cpus", self.num_cpus), ("num_gpus", self.num_gpus)) if v is not None}
        mapped = dataset.map_batches(
            BatchActor, fn_constructor_args=(make_worker,), batch_size=batch_size, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=self.concurrency), **resources,
        )
        for batch in mapped.iter_batches(batch_size=batch_size, batch_format="numpy"):
            yield [int(i) for i in batch["index"]], [pickle.loads(r) for r in batch["result"]]


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401  (ray without the [data] extra lacks pyarrow/pandas)
    except ImportError as e:
        raise ImportError(f"{RAY_INSTALL_HINT} ({e}).") from e
    return ray


def collect(executor: Executor, make_worker: WorkerFactory, items: Sequence[Any], batch_size: int) -> list[Any]:
    """All results in input order, whatever order the executor produced them in."""
    results: list[Any] = [None] * len(items)
    seen = 0
    for indices, batch_results in executor.map_batches(make_worker, items, batch_size):
        for i, r in zip(indices, batch_results):
            results[i] = r
        seen += len(indices)
    if seen != len(items):
        raise RuntimeError(f"executor returned {seen} results for {len(items)} items.")
    return results


def make_executor(name: str, **options: Any) -> Executor:
    if name == "local":
        return LocalExecutor(**options)
    if name == "ray":
        return RayDataExecutor(**options)
    raise ConfigError(f"unknown executor {name!r}; choose 'local' or 'ray'.")
