"""Numba's on-disk cache of the RBM kernels across processes and thread counts.

The parallel RBM kernels are compiled with ``cache=True``.  Numba's cache of
``parallel=True`` functions has broken for users when a process with another
thread count loaded it, so these tests run the kernels in fresh interpreters
that share one cache directory with different ``NUMBA_NUM_THREADS``: the
first compiles and writes the cache, the next ones load it, and every
process must produce the same bits (the recorded digests of
``test_digests.py``).  No timing is asserted here (start-up times are
measured by ``python -m bench``'s start-up table).
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

FAMILY = "rbm"

ROOT = Path(__file__).resolve().parents[1]

_CHILD = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {tests!r})
    import numpy as np
    import numba
    import test_digests as td
    out = {{"threads": numba.config.NUMBA_NUM_THREADS}}
    for case in ("gibbs_gemm", "gibbs_bin", "single_site", "ais", "pl"):
        out[case] = td._digest(td.CASES[case]("numba", np.float32))
    print(json.dumps(out))
""")


def _run_child(cache_dir, threads):
    env = dict(os.environ)
    env["NUMBA_CACHE_DIR"] = str(cache_dir)
    env["NUMBA_NUM_THREADS"] = str(threads)
    env.pop("NUMBA_DISABLE_JIT", None)
    res = subprocess.run([sys.executable, "-c", _CHILD.format(tests=str(ROOT / "tests"))],
                         cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=1500)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_cached_parallel_kernels_other_thread_count(tmp_path):
    """Compile with 2 threads, then load the cache with 1 and with 3 threads:
    no crash, and the same bits as the recorded digests every time."""
    pytest.importorskip("numba")
    import test_digests as td

    runs = [_run_child(tmp_path, n) for n in (2, 1, 3)]
    assert [r["threads"] for r in runs] == [2, 1, 3]
    assert any(tmp_path.rglob("*.nbi")), "no cache index was written"
    for r in runs:
        for case in ("gibbs_gemm", "gibbs_bin", "single_site", "ais", "pl"):
            assert r[case] == td.DIGESTS[f"{case}-float32"], (r["threads"], case)
