import sys

import pytest

from training.curate.executor import LocalExecutor, RayDataExecutor, collect, make_executor
from training.data.errors import ConfigError


def _square_all(batch):
    return [x * x for x in batch]


def test_local_executor_batches_in_order():
    seen = []

    def fn(batch):
        seen.append(list(batch))
        return _square_all(batch)

    assert collect(LocalExecutor(), fn, list(range(7)), batch_size=3) == [0, 1, 4, 9, 16, 25, 36]
    assert seen == [[0, 1, 2], [3, 4, 5], [6]]


def test_batch_function_must_return_one_result_per_item():
    with pytest.raises(RuntimeError, match="returned 1 results for 2 items"):
        collect(LocalExecutor(), lambda b: b[:1], [1, 2], batch_size=2)
    with pytest.raises(ConfigError, match="batch_size"):
        collect(LocalExecutor(), _square_all, [1], batch_size=0)
    with pytest.raises(ConfigError, match="unknown executor"):
        make_executor("spark")


def test_ray_executor_without_ray_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "ray\[data\]"'):
        collect(RayDataExecutor(), _square_all, [1, 2], batch_size=1)


def test_ray_executor_in_local_ray():
    ray = pytest.importorskip("ray", reason='Ray is an optional extra (pip install "ray[data]"); not installed here')
    pytest.importorskip("ray.data", reason="ray is installed without the [data] extra")
    # Ray workers cannot import this test module (pytest names it after the checkout folder),
    # so ship its helper functions by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=1, include_dashboard=False, ignore_reinit_error=True)
    try:
        assert collect(RayDataExecutor(), _square_all, list(range(10)), batch_size=3) == [x * x for x in range(10)]
    finally:
        ray.shutdown()
