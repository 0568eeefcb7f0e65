"""pytest-benchmark plumbing shared by the suites in bench/.

Each benchmark describes itself with ``bench.describe(family=..., case=...,
impl=..., ...)`` before it runs (or skips): the description goes into the
benchmark's ``extra_info`` (hence into the JSON) and into the test report's
``user_properties`` (so the runner can show *why* a case was skipped).
``bench.run(fn)`` makes one untimed warm-up call (JIT compilation, first-touch
page faults; a cheaper call of the same kernel where the suite gives one) and
then times the preset's ``rounds`` calls of ``fn`` (fewer when they would
exceed the preset's time budget per benchmark).

Thread counts are set once for the whole session from ``DLKBENCH_THREADS``:
Numba and OpenMP through ``dlkernels.set_num_threads``, BLAS through
threadpoolctl, PyTorch through ``torch.set_num_threads``.
"""
import importlib.util
import time

import pytest

from bench import _presets

BACKENDS = ("numba", "cython")
_limits = []   # keeps the threadpoolctl limiter alive for the session


def set_threads(n, blas=None):
    """Set every thread pool the suites touch to ``n`` (BLAS to ``blas``,
    default ``n``); returns what was set."""
    import dlkernels
    from threadpoolctl import threadpool_limits

    import scipy.linalg.cython_blas  # noqa: F401  (load scipy's BLAS, which both backends use,
    #                                  before limiting: threadpoolctl acts on loaded libraries only)

    blas = n if blas is None else blas
    dlkernels.set_num_threads(n)           # numba.set_num_threads + OpenMP (Cython kernels)
    _limits.append(threadpool_limits(limits=blas, user_api="blas"))
    out = {"dlkernels (numba + OpenMP)": n, "BLAS (threadpoolctl)": blas}
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(n)
        out["torch"] = n
    return out


def pytest_configure(config):
    config._dlkbench_threads = set_threads(_presets.threads(), _presets.blas_threads())


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["dlkbench_preset"] = _presets.name()
    machine_info["dlkbench_threads"] = getattr(config, "_dlkbench_threads", {})


class Bench:
    def __init__(self, request, benchmark):
        self.request = request
        self.benchmark = benchmark
        self.preset = _presets.current()
        self.meta = None

    def describe(self, *, family, case, impl, flops=None, work=None, unit=None, norm=1.0,
                 gemm=None, target=None, note=None):
        """Say what this benchmark measures.

        family, case, impl: the table, its row and the column ("numba",
          "cython" for ours; "numpy", "sklearn", "torch" for peers; "gemm"
          for a GEMM probe).
        flops: floating-point operations of the *case* (used for the GEMM
          fraction and, for probes, the GEMM rate).
        work, unit: amount of work of the case in ``unit``s (uniforms,
          site updates...), shown as a rate.
        norm: factor from this impl's measured time to the time of the whole
          case (a slow peer may run 1/norm of the work).
        gemm: key of the GEMM probe of similar shape (see gemm_key).
        target: list of {"vs": peer, "ratio": x} / {"vs": "gemm", "frac": f}.
        """
        self.meta = dict(family=family, case=case, impl=impl, flops=flops, work=work, unit=unit,
                         norm=norm, gemm=gemm, target=target, note=note)
        self.benchmark.extra_info.update(self.meta)
        self.request.node.user_properties.append(("dlkbench", self.meta))

    def require_backend(self, family):
        """Skip unless our backend ``self.meta['impl']`` is available for ``family``."""
        import dlkernels

        impl = self.meta["impl"]
        info = dlkernels.backend_info(family)["backends"][impl]
        if not info["available"]:
            pytest.skip(f"not importable: {info['module']} ({info['error']})")

    def require_module(self, module):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"not installed: {module}")

    def run(self, fn, rounds=None, warmup=None, scale=1.0):
        """An untimed warm-up call, then ``rounds`` timed calls of ``fn`` (the
        preset's, fewer when they would not fit the preset's time budget).

        warmup: a cheaper call of the same kernel (same dtypes, so the same
        compiled code) used instead of a full call of ``fn``; it runs twice
        (compilation, then a timing) and ``scale`` = full work / warm-up work
        turns its time into an estimate of a round.  A benchmark whose round
        would exceed the preset's ``cap`` is skipped, saying so.
        """
        if self.meta is None:
            raise RuntimeError("call bench.describe(...) before bench.run(...)")
        if warmup is None:
            warmup, scale = fn, 1.0
        else:
            warmup()
        t0 = time.perf_counter()
        warmup()
        estimate = (time.perf_counter() - t0) * scale
        if estimate > self.preset["cap"]:
            pytest.skip(f"too slow: ~{estimate:.0f} s a call, over the {self.preset['cap']:g} s "
                        f"cap of the {_presets.name()} preset")
        rounds = rounds or self.preset["rounds"]
        rounds = max(1, min(rounds, int(self.preset["budget"] / max(estimate, 1e-9))))
        return self.benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0)


@pytest.fixture
def bench(request, benchmark):
    return Bench(request, benchmark)


@pytest.fixture(scope="session")
def preset():
    return _presets.current()


def gemm_key(dtype, m, k, n):
    """Key of the GEMM probe (m x k) @ (k x n) in ``dtype``."""
    import numpy as np

    return f"{np.dtype(dtype).name} ({m}x{k})@({k}x{n})"
