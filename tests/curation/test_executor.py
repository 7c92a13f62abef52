import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from training.curate.executor import LocalExecutor, RayDataExecutor, Ready, collect, make_executor
from training.data.errors import ConfigError


def _square_all(batch):
    return [x * x for x in batch]


@dataclass(frozen=True)
class CountingModelFactory:
    """Stands in for a model loader: every construction and every batch appends a line to a log
    file, which is how the test sees work done inside separate Ray actor processes."""

    log: Path

    def __call__(self):
        with self.log.open("a") as f:
            f.write(f"construct {os.getpid()}\n")

        def run(batch):
            with self.log.open("a") as f:
                f.write(f"batch {os.getpid()} {len(batch)}\n")
            return _square_all(batch)

        return run


def _log_lines(log: Path, kind: str) -> list[list[str]]:
    return [line.split()[1:] for line in log.read_text().splitlines() if line.startswith(kind)]


def test_local_executor_builds_the_worker_once_and_batches_in_order(tmp_path):
    factory = CountingModelFactory(tmp_path / "log.txt")
    assert collect(LocalExecutor(), factory, list(range(7)), batch_size=3) == [0, 1, 4, 9, 16, 25, 36]
    assert len(_log_lines(factory.log, "construct")) == 1
    assert [int(n) for _, n in _log_lines(factory.log, "batch")] == [3, 3, 1]
    assert collect(LocalExecutor(), factory, [], batch_size=3) == []
    assert len(_log_lines(factory.log, "construct")) == 1  # nothing to do: no model is loaded


def test_batch_function_must_return_one_result_per_item():
    with pytest.raises(RuntimeError, match="returned 1 results for 2 items"):
        collect(LocalExecutor(), Ready(lambda b: b[:1]), [1, 2], batch_size=2)
    with pytest.raises(ConfigError, match="batch_size"):
        collect(LocalExecutor(), Ready(_square_all), [1], batch_size=0)
    with pytest.raises(ConfigError, match="unknown executor"):
        make_executor("spark")
    with pytest.raises(ConfigError, match="number of Ray actors"):
        RayDataExecutor(concurrency=0)
    with pytest.raises(ConfigError, match="num_gpus per actor"):
        RayDataExecutor(num_gpus=-1)


def test_ray_executor_without_ray_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "ray\[data\]"'):
        collect(RayDataExecutor(), Ready(_square_all), [1, 2], batch_size=1)


@pytest.mark.slow  # local Ray start-up alone takes ~30 s on 2 shared cores
def test_ray_actors_load_the_model_once_each_not_once_per_batch(tmp_path):
    ray = pytest.importorskip("ray", reason='Ray is an optional extra (pip install "ray[data]"); not installed here')
    pytest.importorskip("ray.data", reason="ray is installed without the [data] extra")
    # Ray workers cannot import this test module (pytest names it after the checkout folder),
    # so ship its helpers by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    try:
        factory = CountingModelFactory(tmp_path / "log.txt")
        executor = RayDataExecutor(concurrency=2, num_cpus=0.5)
        assert collect(executor, factory, list(range(16)), batch_size=2) == [x * x for x in range(16)]
    finally:
        ray.shutdown()
    constructions = _log_lines(factory.log, "construct")
    batches = _log_lines(factory.log, "batch")
    assert len(constructions) == 2  # one model per actor
    assert len({pid for (pid,) in constructions}) == 2  # in two separate actor processes
    assert sum(int(n) for _, n in batches) == 16 and len(batches) >= 8  # ... serving every batch
    assert {pid for pid, _ in batches} <= {pid for (pid,) in constructions}
    assert str(os.getpid()) not in {pid for (pid,) in constructions}  # nothing loaded on the driver
