"""Start-up cost of one kernel in a fresh interpreter (run by the runner in a
subprocess; prints one JSON line).

usage: python -m bench._startup {rng|rbm} {numba|cython}

Times ``import dlkernels``, the import of the family's public module, the
first call of a small kernel (engine import + Numba compilation or cache
load) and the best of three later calls.  The runner points NUMBA_CACHE_DIR at a fresh
directory for the empty-cache measurement and reuses it for the warm one.
"""
import json
import sys
import time


def main(family, backend):
    t0 = time.perf_counter()
    import dlkernels
    t1 = time.perf_counter()
    import numpy as np

    t2 = time.perf_counter()
    if family == "rng":
        import dlkernels.rng as fam

        key = fam.make_key(0)

        def call():
            fam.uniform(key, 1000, dtype=np.float32, backend=backend)
        kernel = "rng.uniform(float32, n=1000)"
    else:
        import dlkernels.rbm as fam

        rng = np.random.default_rng(0)
        W = (0.1 * rng.standard_normal((16, 8))).astype(np.float32)
        a, b = np.zeros(16, np.float32), np.zeros(8, np.float32)
        v0 = (rng.random((4, 16)) < 0.5).astype(np.float32)

        def call():
            fam.gibbs_chains(v0, W, a, b, 1, random_state=0, backend=backend)
        kernel = "rbm.gibbs_chains(float32, 4 chains 16x8, k=1)"
    t3 = time.perf_counter()
    call()
    t4 = time.perf_counter()
    later = []
    for _ in range(3):
        t5 = time.perf_counter()
        call()
        later.append(time.perf_counter() - t5)
    return dict(kernel=kernel, import_dlkernels=t1 - t0, import_family=t3 - t2, first_call=t4 - t3,
                second_call=min(later), version=dlkernels.__version__)


if __name__ == "__main__":
    try:
        res = main(sys.argv[1], sys.argv[2])
    except Exception as exc:   # reported in the table, not fatal for the run
        res = dict(error=f"{type(exc).__name__}: {exc}")
    print(json.dumps(res))
