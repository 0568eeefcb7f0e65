"""Problem sizes of the benchmark presets.

The runner (``python -m bench``) exports the preset name and the thread
count in the environment (``DLKBENCH_PRESET``, ``DLKBENCH_THREADS``) before
it starts pytest, so the suites see them at collection time; running
``pytest bench/ -o python_files='bench_*.py'`` by hand uses the quick preset.

"full" holds the sizes of issues 2 and 3; "quick" keeps the shapes that set
the GEMM rate (784 x 500, the chain and batch counts) and cuts the amount of
work (samples, sweeps, temperatures); "smoke" is a seconds-long check that
the runner works end to end.

rounds: timed calls per benchmark, cut to fit ``budget`` seconds when one
call (the untimed warm-up) is slow, never below one; cap: seconds a call may
take before the benchmark is skipped as too slow (keeps a run's duration
bounded when a kernel misbehaves); probe_rounds: rounds of the (short) GEMM
probes, whose best round is the reference rate.
"""
import os

PRESETS = {
    "smoke": dict(
        rounds=3, budget=1.0, cap=10.0, probe_rounds=5,
        rng_n=10**6,
        cd_samples=500, digits_iter=1,
        gibbs_chains=200, gibbs_sweeps=2,
        ss_chains=64, ss_steps=2_000, ss_numpy_updates=300, ss_numpy_vec_steps=50,
        ais_runs=100, ais_betas=20, ais_numpy_betas=20,
        startup_kernels=("rng",),
    ),
    "quick": dict(
        rounds=3, budget=2.0, cap=20.0, probe_rounds=15,
        rng_n=10**7,
        cd_samples=1_000, digits_iter=2,
        gibbs_chains=1_000, gibbs_sweeps=5,
        ss_chains=64, ss_steps=20_000, ss_numpy_updates=2_000, ss_numpy_vec_steps=300,
        ais_runs=100, ais_betas=50, ais_numpy_betas=50,
        startup_kernels=("rng", "rbm"),
    ),
    "full": dict(
        rounds=5, budget=60.0, cap=900.0, probe_rounds=30,
        rng_n=10**8,
        cd_samples=10_000, digits_iter=10,
        gibbs_chains=1_000, gibbs_sweeps=100,
        ss_chains=64, ss_steps=200_000, ss_numpy_updates=20_000, ss_numpy_vec_steps=3_000,
        ais_runs=100, ais_betas=10_000, ais_numpy_betas=2_000,
        startup_kernels=("rng", "rbm"),
    ),
}

DEFAULT_PRESET = "quick"
DEFAULT_THREADS = 2


def name():
    p = os.environ.get("DLKBENCH_PRESET", DEFAULT_PRESET)
    if p not in PRESETS:
        raise ValueError(f"DLKBENCH_PRESET: expected one of {sorted(PRESETS)}, got {p!r}")
    return p


def current():
    """The sizes of the preset in effect (a dict)."""
    return PRESETS[name()]


def threads():
    return int(os.environ.get("DLKBENCH_THREADS", DEFAULT_THREADS))


def blas_threads():
    """BLAS threads (threadpoolctl); the thread count unless set apart."""
    return int(os.environ.get("DLKBENCH_BLAS_THREADS") or threads())
