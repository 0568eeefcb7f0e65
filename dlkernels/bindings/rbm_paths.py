"""The RBM layers' path rule: binary row sums or the tiled GEMM, measured per machine.

A product x W with 0/1 states x can be computed two ways (see
``dlkernels.engine.numba.rbm``): the binary path adds the rows of W of the
units that are on (about d / 2 of a GEMM's flops at density d, but at the
speed of streaming W), the tiled GEMM calls BLAS.  Which is faster depends
on the density, the batch, the layer's shape -- and on the machine: a
GEMM gains more from wider vectors than the row sums, which stream W from
cache (a 2-core AVX-512 Xeon runs the 784 x 500 GEMMs at 141-185 GFLOP/s,
this 2-core AVX2 Zen 3 at 120-137), so the crossover density moves.  The kernels take the rule as a table
``bin_max`` (``BIN_CLASSES`` int64 values, per mille): a layer whose input
has R rows (row class ``bin_class(R)`` = floor(log2 R), capped) takes the
binary path when its first ``min(R, BIN_SAMPLE_ROWS)`` rows are at most
``bin_max[class]`` per mille on.

``path_thresholds(m, n, dtype, rows)`` gives that table.  With calibration
on (the default, ``dlkernels.bindings._calibrate``) each entry a call needs
is measured once per machine, layer-shape class and dtype -- a few block
Gibbs sweeps of each path at two densities, single-threaded, 0.05-1 s
here -- and read back from the calibration file afterwards; with
``DLKERNELS_CALIBRATE=0`` it is the fixed default rule (fewer than 64 rows:
always binary; 64 and more: binary up to 40% on, the crossover measured on
an AMD Zen 3).  The two paths' results differ by rounding only; the table
is the same for both backends and every thread count (it is measured on one
thread and stored), so a machine gives the same bits for a seed with either
backend and any number of threads.
"""
import math
import os
import time

import numpy as np

from . import _calibrate
from .rng import as_streams
from ._checks import _describe, check_dtype, check_int

__all__ = ["path_thresholds"]

SECTION = "rbm.binary_path"
DENSITIES = (0.2, 0.6)      # the binary path is timed at these densities (linear in d)
_MAX_CAL_WORK = 1 << 27     # multiply-adds of one calibration layer (rows are cut to fit)
_MAX_CAL_WEIGHTS = 1 << 26  # larger layers are not timed (their W alone would be >= 256 MiB)
_SWEEP_WORK = 1 << 25       # multiply-adds per timed run (sweeps are added to reach it)
_REPEAT = 5                 # best of


def _constants(eng):
    return (int(eng.BIN_CLASSES), int(eng.BIN_SAMPLE_ROWS), int(eng.BIN_DEFAULT_SMALL),
            int(eng.BIN_DEFAULT_LARGE))


def default_table(eng):
    """The fixed rule (calibration off): classes of < 64 rows always binary,
    the others up to 40% on."""
    ncls, sample, small, large = _constants(eng)
    return np.array([small if (1 << c) < sample else large for c in range(ncls)], np.int64)


def _shape_class(x):
    return max(int(x), 1).bit_length() - 1


def _measure(eng, dt, m, n, cls):
    """The crossover density (per mille) of block Gibbs at m x n, dtype dt,
    rows 2**cls (cut to _MAX_CAL_WORK), single-threaded: per mille on at
    which the binary sweep costs what the GEMM sweep costs."""
    from ._threads import blas_single_threaded, get_num_threads, set_num_threads

    R = 1 << cls
    R = max(1, min(R, _MAX_CAL_WORK // max(m * n, 1)))
    k = int(min(64, max(1, math.ceil(_SWEEP_WORK / (2 * R * m * n)))))
    ncls = int(eng.BIN_CLASSES)
    W = np.zeros((m, n), dt)          # sums of zeros cost what any sums cost
    WT = np.zeros((n, m), dt)         # the transpose kept, as by a caller with W_T
    streams = as_streams(12345)
    stop = np.zeros(1, np.int64)
    empty = np.empty((0, 0), dt)
    rng = np.random.default_rng(12345)

    cases = [(0.5, False)] + [(d, True) for d in DENSITIES]   # GEMM, binary at each density
    best = [math.inf] * len(cases)

    def run(i):
        d, binary = cases[i]
        bias_v = np.full(m, math.log(d / (1 - d)), dt)
        bias_h = np.full(n, math.log(d / (1 - d)), dt)
        table = np.full(ncls, 1000 if binary else 0, np.int64)
        v = (rng.random((R, m)) < d).astype(dt)
        h = np.empty((R, n), dt)
        ctr = streams.next_counter()
        t0 = time.perf_counter()
        eng.gibbs_chains(v=v, W=W, a=bias_v, b=bias_h, k=k, key=streams.key, ctr=ctr, h=h,
                         mean_last=0, mean_v=empty, mean_h=empty, WT=WT, bin_max=table,
                         stop=stop)
        best[i] = min(best[i], time.perf_counter() - t0)

    threads = get_num_threads()
    try:
        set_num_threads(1)
        with blas_single_threaded():
            for i in range(len(cases)):   # warm-up (compilation, caches), not kept
                run(i)
            best[:] = [math.inf] * len(cases)
            for _ in range(_REPEAT):      # interleaved: a drift of the machine's speed
                for i in range(len(cases)):   # hits every case alike
                    run(i)
    finally:
        set_num_threads(threads)
    return crossover(best[0], best[1], best[2])


def crossover(t_gemm, t_bin0, t_bin1, densities=DENSITIES):
    """Per mille on at which the binary path, timed t_bin0 / t_bin1 at the two
    densities (its cost is linear in the density), costs t_gemm (the GEMM's
    cost does not depend on it); clipped to 0 .. 1000.  A binary time that
    does not grow with the density (noise) gives 1000 when the binary path
    is the faster at the higher density, else 0."""
    d0, d1 = densities
    slope = (t_bin1 - t_bin0) / (d1 - d0)
    if not slope > 0:
        return 1000 if t_bin1 <= t_gemm else 0
    cross = d0 + (t_gemm - t_bin0) / slope
    return int(round(1000 * min(1.0, max(0.0, cross))))


def _valid(v):
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 1000


def path_thresholds(m, n, dtype=np.float32, rows=(), *, backend=None):
    """The binary-path table the RBM kernels use for an m x n layer.

    Parameters
    ----------
    m, n : int
        Visible and hidden units (>= 1).
    dtype : float32 or float64
        The model's dtype.
    rows : iterable of int
        The row counts (batch sizes, chains) of the calls to come: the
        entries of their row classes are measured (or read from the
        calibration file); the other entries hold the default rule, as do
        all entries of a layer of more than 2**26 weights (not timed).
    backend : str or None
        The backend whose kernels the table is for (it serves both: a
        measurement is timed with the Cython kernels when they are built,
        so that it never adds a JIT compilation, else with this backend's).

    Returns
    -------
    numpy.ndarray
        (BIN_CLASSES,) int64, per mille: the ``bin_max`` argument of the
        engine's ``gibbs_chains``, ``cd_step`` and ``cd_minibatches``.

    Raises
    ------
    TypeError, ValueError
        For a bad size, dtype or row count.
    ImportError
        If the requested backend cannot be imported.
    """
    from .rbm import _kernels

    m = check_int(m, "m", min=1)
    n = check_int(n, "n", min=1)
    dt = check_dtype(dtype)
    if isinstance(rows, (str, bytes)) or not hasattr(rows, "__iter__"):
        raise TypeError(f"rows: expected an iterable of integers, got {_describe(rows)}")
    rows = [check_int(r, "rows", min=0) for r in rows]
    eng = _kernels(backend)
    return bin_max(eng, dt, m, n, *rows).copy()


def row_class(R, ncls):
    """The engine's ``bin_class``: floor(log2(R)) capped at ncls - 1 (0 for R <= 1)."""
    return min(max(int(R), 1).bit_length() - 1, ncls - 1)


_tables = {}


def _timing_engine(eng):
    """The engine that times the paths: the Cython kernels when they are built
    (precompiled: a measurement never adds a JIT compilation -- the Numba
    ``gibbs_chains`` would cost a cold-cache user of ``cd_step`` alone
    seconds), else ``eng``.  Either gives the table for both backends."""
    from ._backend import resolve
    try:
        return resolve("auto", "rbm", prefer=("cython", "numba"))
    except ImportError:
        return eng


def _table(eng, dt, m, n, classes):
    """path_thresholds' table (memoised per process and calibration file)."""
    on = _calibrate.enabled()
    memo = (eng.__name__, dt.name, m, n, classes, on, _calibrate.cache_path(),
            _calibrate.generation())
    table = _tables.get(memo)
    if table is not None:
        return table
    table = default_table(eng)
    if on and m * n <= _MAX_CAL_WEIGHTS:
        for cls in classes:
            key = f"{dt.name} m{_shape_class(m)} n{_shape_class(n)} r{cls}"
            val = _calibrate.lookup(SECTION, key,
                                    lambda: _measure(_timing_engine(eng), dt, m, n, cls), _valid)
            if val is not None:
                table[cls] = val
    _tables[memo] = table
    return table


_fast = {}


def bin_max(eng, dt, m, n, *rows):
    """The bindings' table for engine ``eng`` (no validation, not copied: the
    kernels only read it).  Memoised on the call's sizes and the environment
    that decides the file (a few microseconds per call)."""
    env = os.environ
    key = (eng.__name__, dt, m, n, rows, env.get(_calibrate.ENV_SWITCH),
           env.get(_calibrate.ENV_DIR), env.get("XDG_CACHE_HOME"), env.get("HOME"),
           _calibrate.generation())
    table = _fast.get(key)
    if table is None:
        ncls = int(eng.BIN_CLASSES)
        table = _table(eng, np.dtype(dt), int(m), int(n),
                       tuple(sorted({row_class(r, ncls) for r in rows if r > 0})))
        if len(_fast) > 4096:   # many distinct row counts: start over
            _fast.clear()
        _fast[key] = table
    return table
