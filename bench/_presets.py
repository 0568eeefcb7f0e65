"""Benchmark presets: the runner-level settings of each preset, and how a
suite reads its own problem sizes.

The runner (``python -m bench``) exports the preset name and the thread
counts in the environment (``DLKBENCH_PRESET``, ``DLKBENCH_THREADS``,
``DLKBENCH_BLAS_THREADS``) before it starts pytest, so the suites see them
at collection time; running ``pytest bench/ -o python_files='bench_*.py'`` by
hand uses the quick preset.

Problem sizes belong to the suites: each ``bench/bench_<family>.py`` declares
``PRESETS = {"smoke": {...}, "quick": {...}, "full": {...}}`` and reads the
sizes in effect with ``P = _presets.sizes(PRESETS)`` (see bench/README.md,
"Adding a suite").  "full" holds the sizes of the issues' targets, "quick"
the same shapes with less work, "smoke" a seconds-long check that the runner
works end to end.

Runner-level settings (``current()``): rounds: timed calls per benchmark, cut
to fit ``budget`` seconds when one call (the untimed warm-up) is slow, never
below one; cap: seconds a call may take before the benchmark is skipped as
too slow (keeps a run's duration bounded when a kernel misbehaves);
probe_rounds: rounds of the (short) GEMM probes, whose best round is the
reference rate.
"""
import os

NAMES = ("smoke", "quick", "full")

PRESETS = {
    "smoke": dict(rounds=3, budget=1.0, cap=10.0, probe_rounds=5),
    "quick": dict(rounds=3, budget=2.0, cap=20.0, probe_rounds=15),
    "full": dict(rounds=5, budget=60.0, cap=900.0, probe_rounds=30),
}

DEFAULT_PRESET = "quick"
DEFAULT_THREADS = 2


def name():
    """The preset in effect ("smoke", "quick" or "full")."""
    p = os.environ.get("DLKBENCH_PRESET", DEFAULT_PRESET)
    if p not in PRESETS:
        raise ValueError(f"DLKBENCH_PRESET: expected one of {sorted(PRESETS)}, got {p!r}")
    return p


def current():
    """The runner-level settings of the preset in effect (a dict: rounds,
    budget, cap, probe_rounds)."""
    return PRESETS[name()]


def sizes(table, preset=None):
    """A suite's sizes for ``preset`` (default: the preset in effect).

    ``table`` is the suite's ``PRESETS`` dict, one entry per preset name;
    a missing entry is a mistake in the suite and raises KeyError naming it.
    """
    p = name() if preset is None else preset
    try:
        return table[p]
    except KeyError:
        raise KeyError(f"suite PRESETS: no sizes for the {p!r} preset (has {sorted(table)})") from None


def threads():
    """Threads for Numba, OpenMP and PyTorch in this run."""
    return int(os.environ.get("DLKBENCH_THREADS", DEFAULT_THREADS))


def blas_threads():
    """BLAS threads (threadpoolctl); the thread count unless set apart."""
    return int(os.environ.get("DLKBENCH_BLAS_THREADS") or threads())
