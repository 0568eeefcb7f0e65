"""Recorded digests: the RBM and RNG outputs stay bit-identical across refactors.

The sha256 digests below were recorded from the code *before* issue 6's
reshaping of the engine (shared ``_blas`` / ``_fastmath`` modules, split
files, named constants, start-up work), with the Numba backend, and both
backends must still reproduce them for both dtypes.  A digest covers every
output array of a call (dtype, shape and bytes), for fixed seeds and inputs
that take the kernels' different paths: binary and tiled-GEMM layers,
serial and parallel work sizes, CD / PCD / scikit-learn-style chains,
r > 1, momentum, the three single-site scan modes, AIS over two tiles, the
exact and stochastic pseudo-likelihood, and a tiny estimator fit.

A failing digest means the numbers changed: either a bug or a deliberate
change of the kernels' arithmetic, which must then be stated and the digest
re-recorded (``python tests/test_digests.py`` prints the current table).
One such change so far: issue 10 (float64 Bernoulli draws from 32-bit
half-words, so that float32 and float64 models make the same decisions).

The kernels' own arithmetic is the same on every x86-64 machine, but two
things they call are not: the BLAS (OpenBLAS picks its kernels by CPU --
"Haswell" on an AVX2 machine, "SkylakeX" on an AVX-512 one -- and their
products differ in the last bits) and NumPy's float64 exp/log (AVX-512
builds of them, used by the AIS binding's final sums).  The digests were
recorded on an AVX2 machine (OpenBLAS Haswell kernels, NumPy without
AVX-512).  Elsewhere the table is computed in a subprocess with those
numerics switched on (``OPENBLAS_CORETYPE=Haswell`` and
``NPY_DISABLE_CPU_FEATURES`` naming NumPy's AVX-512 targets), and in this
process the two backends must still agree with each other bit for bit
(``test_backends_agree_on_this_machine``).  Measured on an AMD Zen 4
(AVX-512, OpenBLAS SkylakeX): 26 of the 56 digests differ in this process,
all 56 match in the subprocess.
"""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dlkernels import rbm, rng
from dlkernels.bindings import _backend

FAMILY = "rbm"


def _digest(arrays):
    h = hashlib.sha256()
    for x in arrays:
        x = np.asarray(x)
        h.update(x.dtype.str.encode())
        h.update(str(x.shape).encode())
        h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()[:32]


def _model(seed, m, n, dt, scale=0.5):
    g = np.random.default_rng(seed)
    W = (scale * g.standard_normal((m, n))).astype(dt)
    a = (0.3 * g.standard_normal(m)).astype(dt)
    b = (0.3 * g.standard_normal(n)).astype(dt)
    return W, a, b


def _states(seed, rows, cols, dt, p=0.5):
    g = np.random.default_rng(seed)
    return (g.random((rows, cols)) < p).astype(dt)


def _grey(seed, rows, cols, dt):
    return np.random.default_rng(seed).random((rows, cols)).astype(dt)


# ---- the recorded calls -------------------------------------------------------------
# Each case: name -> function(backend, dtype) returning a list of arrays.

def _c_energy(be, dt):
    W, a, b = _model(1, 40, 30, dt)
    v, h = _states(2, 9, 40, dt), _states(3, 9, 30, dt)
    return [rbm.energy(v, h, W, a, b, backend=be),
            rbm.free_energy(_grey(4, 9, 40, dt), W, a, b, backend=be)]


def _c_probs(be, dt):
    W, a, b = _model(5, 300, 280, dt)       # two column tiles, parallel (> 2**20 madds)
    v = _grey(6, 70, 300, dt)
    h = _states(7, 70, 280, dt)
    return [rbm.hidden_probs(v, W, b, backend=be), rbm.visible_probs(h, W, a, backend=be),
            rbm.free_energy(v, W, a, b, backend=be)]


def _c_sample(be, dt):
    W, a, b = _model(8, 50, 70, dt)
    v = _grey(9, 20, 50, dt)
    h = _states(10, 20, 70, dt)
    return [*rbm.sample_hidden(v, W, b, random_state=11, return_probs=True, backend=be),
            rbm.sample_visible(h, W, a, random_state=12, backend=be)]


def _c_gibbs_small(be, dt):
    W, a, b = _model(13, 24, 17, dt)
    v0 = _states(14, 5, 24, dt)
    return list(rbm.gibbs_chains(v0, W, a, b, 7, random_state=15, mean_last=3, backend=be))


def _c_gibbs_bin(be, dt):
    # sparse chains: the binary path; one chunk split into two column parts
    W, a, b = _model(16, 290, 300, dt, scale=0.05)
    v0 = _states(17, 12, 290, dt, p=0.2)
    return list(rbm.gibbs_chains(v0, W, a, b, 3, random_state=18, return_hidden=True, backend=be))


def _c_gibbs_gemm(be, dt):
    # >= 64 dense chains: the tiled-GEMM path, parallel
    W, a, b = _model(19, 200, 150, dt, scale=0.05)
    a += dt(2.0)
    b += dt(2.0)
    v0 = _states(20, 80, 200, dt, p=0.9)
    return list(rbm.gibbs_chains(v0, W, a, b, 2, random_state=21, return_hidden=True, backend=be))


def _c_cd(be, dt):
    W, a, b = _model(22, 30, 20, dt)
    vd = _states(23, 16, 30, dt)
    g = rbm.cd_gradient(vd, W, a, b, k=2, random_state=24, backend=be)
    g2 = rbm.cd_gradient(_grey(25, 16, 30, dt), W, a, b, k=1, r=3,
                         persistent=_states(26, 8, 30, dt), random_state=27, backend=be)
    g3 = rbm.cd_gradient(vd, W, a, b, persistent_hidden=_states(28, 6, 20, dt),
                         random_state=29, backend=be)
    return [*g, *g2, *g3]


def _c_cd_big(be, dt):
    W, a, b = _model(30, 160, 140, dt, scale=0.1)
    vd = _states(31, 96, 160, dt, p=0.55)
    return list(rbm.cd_gradient(vd, W, a, b, k=1, r=2, random_state=32, backend=be))


def _c_cd_update(be, dt):
    W, a, b = _model(33, 30, 20, dt)
    W, a, b = W.copy(), a.copy(), b.copy()
    chains = _states(34, 7, 30, dt)
    for t in range(3):
        rbm.cd_update(_states(35 + t, 10, 30, dt), W, a, b, learning_rate=0.05, k=2,
                      persistent=chains, weight_decay=1e-3, random_state=40 + t, backend=be)
    vel = (np.zeros_like(W), np.zeros_like(a), np.zeros_like(b))
    hch = _states(44, 10, 20, dt)
    for t in range(3):
        rbm.cd_update(_grey(45 + t, 10, 30, dt), W, a, b, learning_rate=0.1, momentum=0.5,
                      velocity=vel, persistent_hidden=hch, negative_scale="batch",
                      random_state=50 + t, backend=be)
    return [W, a, b, chains, hch, *vel]


def _c_single_site(be, dt):
    W, a, b = _model(55, 9, 6, dt, scale=1.0)
    v0, h0 = _states(56, 4, 9, dt), _states(57, 4, 6, dt)
    q = np.random.default_rng(58).random(15)
    q /= q.sum()
    out = []
    for scan, qq in (("random", None), ("systematic", None), ("random", q)):
        out += list(rbm.single_site_gibbs(v0, h0, W, a, b, 300, scan=scan, q=qq,
                                          random_state=59, backend=be))
    return out


def _c_ais(be, dt):
    W, a, b = _model(60, 12, 9, dt)
    data = _states(61, 30, 12, dt)
    r = rbm.ais_log_partition(W, a, b, n_runs=70, n_betas=60, base_visible_bias="data",
                              data=data, random_state=62, backend=be)
    return [np.array([r.log_z, r.stderr])]


def _c_pl(be, dt):
    W, a, b = _model(63, 20, 15, dt)
    v = _states(64, 70, 20, dt)
    return [rbm.pseudo_likelihood(v, W, a, b, random_state=65, backend=be),
            rbm.pseudo_likelihood(v, W, a, b, exact=True, backend=be)]


def _c_rng(be, dt):
    key = rng.make_key(66)
    return [rng.uniform(key, 1000, counter=3, dtype=dt, backend=be),
            rng.uniform_streams(key, 37, 5, epoch=2, dtype=dt, backend=be),
            rng.raw(key, 41, counter=7, backend=be)]


def _c_estimator(be, dt):
    pytest.importorskip("sklearn")
    X = _states(67, 40, 16, dt, p=0.4)
    est = rbm.BernoulliRBM(n_components=8, n_iter=3, batch_size=10, learning_rate=0.1,
                           random_state=68, backend=be)
    est.fit(X)
    return [est.components_, est.intercept_hidden_, est.intercept_visible_, est.h_samples_,
            est.transform(X), est.score_samples(X), est.gibbs(X[:5])]


CASES = {name[3:]: fn for name, fn in sorted(globals().items()) if name.startswith("_c_")}

# Recorded with the Numba backend before issue 6 (commit 5bb924a); the float64
# entries of the sampling cases (ais, cd, cd_big, cd_update, estimator, gibbs_*,
# sample) re-recorded in issue 10, when float64 Bernoulli draws changed to one
# 32-bit half-word per draw (the float32 uniforms), as float32 draws always did.
DIGESTS = {
    "ais-float32": "7ae2140a55d408a17a04946298fef552",
    "ais-float64": "9359c6551e14049de7b96ed7f93aa4bf",
    "cd-float32": "9d486a293a7a18922ee3bb0df45de040",
    "cd-float64": "52729a512b5cd78df2e67c3f4ae3c4b6",
    "cd_big-float32": "4922cb3206720de6f2afe22e47adb9e1",
    "cd_big-float64": "44dfc3d1c8f38fbe3a0c9eb28ec518dd",
    "cd_update-float32": "7136918cd0fda3326384933e01f67856",
    "cd_update-float64": "5fb3708ae38d1856babcfccc6a1bb937",
    "energy-float32": "7245199babdac08bec9ac46240657483",
    "energy-float64": "94a0d37bf77a0641d04f6fc0779a49a5",
    "estimator-float32": "30c9470a70f58a4481ee2af337c52d1c",
    "estimator-float64": "9e20f9a1de2020c7aaa6cd336519bb30",
    "gibbs_bin-float32": "eb5436f4af8fecb1bb020c518928aa16",
    "gibbs_bin-float64": "a6b9df6d3f3dfc3a41afad8ce3227fa1",
    "gibbs_gemm-float32": "dd3d0a868460394a6f2390320bef0360",
    "gibbs_gemm-float64": "aa17ed1c8f55acb4e89abdb227290676",
    "gibbs_small-float32": "ae17a86e4b56061e1a1178e7c776f447",
    "gibbs_small-float64": "a90e5913a25555545ff7c5abf1ece059",
    "pl-float32": "1c1c5ab5fcaa7d9f67c20daa0facf8cc",
    "pl-float64": "a4020c1e772e12ba0e109296eb139789",
    "probs-float32": "fbf0ef2f528cf4e6a5421b56f39ae906",
    "probs-float64": "e90c8066e88ee3ed92c32cd55336835a",
    "rng-float32": "264890aa3658b5e09a33aef7a22dd01b",
    "rng-float64": "084a326c9ea73789138a87dd17df14d3",
    "sample-float32": "4aa8493da141755eb2738ee6d61fbbae",
    "sample-float64": "3dfaa06df7a108af60ecea16700fcf9f",
    "single_site-float32": "ad4e2b8164e8b585ba386d17ea7bd08e",
    "single_site-float64": "013676b94fea3e4b9b80d3a75c0949d9",
}


def _rbm_backends():
    return _backend.available_backends("rbm")


def _table_here(backends):
    """{"<backend>:<case>-<dtype>": digest} of this process."""
    return {f"{be}:{case}-{np.dtype(dt).name}": _digest(CASES[case](be, dt))
            for be in backends for case in sorted(CASES) for dt in (np.float32, np.float64)}


def _blas_core():
    """(internal api, core type) of the BLAS the kernels call (scipy's)."""
    import dlkernels

    used = [lib for lib in dlkernels.backend_info("rbm")["threads"]["blas"]
            if lib["used_by_kernels"]]
    return (used[0]["internal_api"], used[0]["architecture"]) if used else (None, None)


def _numpy_avx512():
    """NumPy's dispatch targets active here that use AVX-512."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:   # NumPy < 2
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    return [f for f in __cpu_dispatch__
            if __cpu_features__.get(f) and ("AVX512" in f or f == "X86_V4")], __cpu_features__


def _reference_env():
    """None when this process has the recording machine's numerics (OpenBLAS
    Haswell kernels, no AVX-512 NumPy loops); else the environment that gives
    them to a subprocess on this machine, or a string saying why none can."""
    api, core = _blas_core()
    if api != "openblas":
        return f"the kernels' BLAS is {api!r}: the digests are OpenBLAS's (Haswell kernels)"
    avx512, feats = _numpy_avx512()
    if core == "Haswell" and not avx512:
        return None
    if not (feats.get("AVX2") and feats.get("FMA3")):
        return f"no AVX2/FMA on this CPU (OpenBLAS core {core!r}): Haswell kernels cannot run"
    env = dict(os.environ, OPENBLAS_CORETYPE="Haswell")
    if avx512:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(avx512)
    return env


@pytest.fixture(scope="module")
def table_here():
    """The digests of this process (both backends), computed once per module."""
    return _table_here(_rbm_backends())


@pytest.fixture(scope="module")
def reference_table(table_here):
    """The digests under the recording machine's numerics: this process's, or
    a subprocess's (see the module docstring)."""
    env = _reference_env()
    backends = _rbm_backends()
    if env is None:
        return table_here
    if isinstance(env, str):
        pytest.skip(env)
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--json",
                           ",".join(backends)], cwd=root, env=env, capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("backend", ["numba", "cython"])
def test_digest(case, dtype, backend, reference_table):
    if backend not in _rbm_backends():
        pytest.skip(f"backend {backend!r} unavailable")
    key = f"{case}-{np.dtype(dtype).name}"
    got = reference_table[f"{backend}:{key}"]
    assert got == DIGESTS[key], f"{key}: outputs changed (digest {got})"


def test_backends_agree_on_this_machine(table_here):
    """Whatever this machine's BLAS and NumPy: both backends, same bits."""
    if len(_rbm_backends()) < 2:
        pytest.skip("one backend only")
    for case in sorted(CASES):
        for dt in (np.float32, np.float64):
            key = f"{case}-{np.dtype(dt).name}"
            assert table_here[f"numba:{key}"] == table_here[f"cython:{key}"], key


def test_reference_env_changes_only_the_blas_core_and_numpy_avx512():
    env = _reference_env()
    if env is None or isinstance(env, str):
        pytest.skip("this process has the recording numerics" if env is None else env)
    changed = {k for k in env if os.environ.get(k) != env[k]}
    assert changed <= {"OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES"}
    assert env["OPENBLAS_CORETYPE"] == "Haswell"
    disabled = env.get("NPY_DISABLE_CPU_FEATURES", "").split()
    assert all("AVX512" in f or f == "X86_V4" for f in disabled)


if __name__ == "__main__":
    # python tests/test_digests.py [numba|cython]: print the table of the current code;
    # python tests/test_digests.py --json numba,cython: the table as JSON (for the fixture)
    if len(sys.argv) > 1 and sys.argv[1] == "--json":
        print(json.dumps(_table_here(sys.argv[2].split(","))))
        sys.exit(0)
    be = sys.argv[1] if len(sys.argv) > 1 else "numba"
    for case in sorted(CASES):
        for dt in (np.float32, np.float64):
            print(f'    "{case}-{np.dtype(dt).name}": "{_digest(CASES[case](be, dt))}",')
