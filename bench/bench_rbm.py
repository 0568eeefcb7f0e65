"""RBM suite: the speed targets of issue 3 (float32, the runner's thread count).

Cases (sizes of the "full" preset; "quick" runs less work of the same shapes):
  PCD-1 epoch, 10000 x 784 -> 500, batch 100 and batch 10: dlkernels.rbm.BernoulliRBM
      vs sklearn.neural_network.BernoulliRBM, both fit(X) with n_iter=1 on synthetic binary data;
  digits (64 -> 100, batch 10): the same estimators on scikit-learn's bundled digits;
  block Gibbs, 1000 chains, 784 x 500, 100 sweeps: gibbs_chains vs a NumPy and a PyTorch loop;
  single-site Gibbs, 784 x 500, 64 chains: single_site_gibbs vs a NumPy per-site loop (and a
      NumPy loop vectorised over chains), in site updates per second;
  AIS, 784 x 500, 100 runs x 10,000 temperatures: ais_log_partition vs NumPy, same schedule.
Functions not importable yet are skipped with the reason in the table.

Flop counts (for the "GEMM %" column), m = 784 visible, n = 500 hidden:
  PCD-1 / CD-1 epoch: 5 products of 2*batch*m*n per minibatch (v W for the data term, h W^T and
      v' W for the negative phase, v^T h for each of the two gradient terms) = 10*N*m*n per epoch;
  block Gibbs: 2 products of 2*chains*m*n per sweep;  AIS: 2 products of 2*runs*m*n per temperature.
"""
import functools

import numpy as np
import pytest

from bench import _peers, _presets
from bench.conftest import gemm_key

FAMILY = "rbm"
TITLE = "RBM sampling and training"
ORDER = 20
FOOTNOTES = (
    "GEMM % = (flops of the case / our time) / (rate of the GEMM probe of the same dtype and "
    "batch/chain/run count x 784 x 500, measured in this run). Flops counted: PCD-1 epoch 5 "
    "products of 2·batch·m·n per minibatch (v W, h W^T, v' W and the two gradient products "
    "v^T h); block Gibbs 2 products of 2·chains·m·n per sweep; AIS 2 of 2·runs·m·n per "
    "temperature. Single-site NumPy peers and the NumPy AIS run less work (fewer updates / "
    "temperatures) and their time is scaled to the case's work. sklearn = "
    "sklearn.neural_network.BernoulliRBM(n_iter=...).fit on the same data and settings.",
)
PRESETS = {
    "smoke": dict(
        cd_samples=500, digits_iter=1,
        gibbs_chains=200, gibbs_sweeps=2,
        ss_chains=64, ss_steps=2_000, ss_numpy_updates=300, ss_numpy_vec_steps=50,
        ais_runs=100, ais_betas=20, ais_numpy_betas=20,
    ),
    "quick": dict(
        cd_samples=1_000, digits_iter=2,
        gibbs_chains=1_000, gibbs_sweeps=5,
        ss_chains=64, ss_steps=20_000, ss_numpy_updates=2_000, ss_numpy_vec_steps=300,
        ais_runs=100, ais_betas=50, ais_numpy_betas=50,
    ),
    "full": dict(
        cd_samples=10_000, digits_iter=10,
        gibbs_chains=1_000, gibbs_sweeps=100,
        ss_chains=64, ss_steps=200_000, ss_numpy_updates=20_000, ss_numpy_vec_steps=3_000,
        ais_runs=100, ais_betas=10_000, ais_numpy_betas=2_000,
    ),
}
STARTUP_PRESETS = ("quick", "full")


def gemm_shapes(sizes):
    """The probes of the GEMM % column: batch 10 and 100 (PCD fits), the
    chain and run counts, x 784 x 500; and the digits shape 10 x 64 x 100."""
    batches = {sizes["ais_runs"], 100, 10, sizes["gibbs_chains"]}
    return [(np.float32, b, 784, 500) for b in sorted(batches)] + [(np.float32, 10, 64, 100)]


def startup(backend):
    """Start-up probe (bench/_startup.py): the first gibbs_chains call."""
    import numpy as np

    import dlkernels.rbm as fam

    rng = np.random.default_rng(0)
    W = (0.1 * rng.standard_normal((16, 8))).astype(np.float32)
    a, b = np.zeros(16, np.float32), np.zeros(8, np.float32)
    v0 = (rng.random((4, 16)) < 0.5).astype(np.float32)

    def call():
        fam.gibbs_chains(v0, W, a, b, 1, random_state=0, backend=backend)
    return "rbm.gibbs_chains(float32, 4 chains 16x8, k=1)", call


P = _presets.sizes(PRESETS)
M, NH = 784, 500
F32 = np.float32
OURS = ("numba", "cython")
CD_GEMMS = 5       # products of 2*batch*m*n per PCD-1 minibatch (see the module docstring)


def ours(bench, name):
    """dlkernels.rbm.<name>, or skip this case saying what is missing."""
    bench.require_backend("rbm")
    try:
        import dlkernels.rbm as rbm

        return getattr(rbm, name)
    except (ImportError, AttributeError) as exc:
        pytest.skip(f"not importable: dlkernels.rbm.{name} ({type(exc).__name__}: {exc})")


@functools.lru_cache(maxsize=None)
def model(dtype=F32, seed=0):
    """A 784 x 500 RBM with weights of the size training gives (W ~ N(0, 0.05^2))."""
    rng = np.random.default_rng(seed)
    W = (0.05 * rng.standard_normal((M, NH))).astype(dtype)
    a = rng.normal(-1.0, 0.5, M).astype(dtype)
    b = np.full(NH, -0.5, dtype)
    return W, a, b


@functools.lru_cache(maxsize=None)
def binary_data(n_samples, dtype=F32, seed=1):
    """Synthetic binary "images": pixel probabilities from smooth random blobs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28] / 27.0
    centres = rng.random((8, 2))
    proto = np.stack([np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.05).ravel() for cx, cy in centres])
    p = 0.9 * proto[rng.integers(0, 8, n_samples)] + 0.02
    return (rng.random((n_samples, M)) < p).astype(dtype)


@functools.lru_cache(maxsize=None)
def digits(dtype=F32):
    from sklearn.datasets import load_digits

    return (load_digits().data / 16.0).astype(dtype)


def make_estimator(impl, **params):
    if impl == "sklearn":
        from sklearn.neural_network import BernoulliRBM

        return BernoulliRBM(**params)
    try:
        from dlkernels.rbm import BernoulliRBM
    except ImportError as exc:
        pytest.skip(f"not importable: dlkernels.rbm.BernoulliRBM ({type(exc).__name__}: {exc})")
    try:
        return BernoulliRBM(backend=impl, **params)
    except TypeError as exc:
        pytest.skip(f"not accepted: BernoulliRBM(backend=...) ({exc})")


def path_note(impl, m, n, rows):
    """What the binary-path rule is for these row counts (calibrated on this
    machine on first use, or the default rule), for the table's notes; the
    calibration itself happens here, before anything is timed."""
    if impl not in OURS:
        return None
    try:
        import dlkernels.rbm as rbm
        from dlkernels.bindings import _calibrate
        from dlkernels.bindings.rbm_paths import row_class

        tab = rbm.path_thresholds(m, n, F32, rows, backend=impl)
    except Exception:   # the case itself reports a missing backend
        return None
    how = "calibrated on this machine" if _calibrate.enabled() else "default rule"
    parts = [f"{r} rows: binary path up to {tab[row_class(r, len(tab))] / 10:g}% on"
             for r in rows]
    return "; ".join(parts) + f" ({how})"


# --- PCD-1 epochs through the estimators ---------------------------------------------------------

FIT_CASES = [
    # (id, data, n_components, batch, n_iter, targets)
    ("b100", "synthetic", NH, 100, 1, [{"vs": "sklearn", "ratio": 2.5}, {"vs": "gemm", "frac": 0.85}]),
    ("b10", "synthetic", NH, 10, 1, [{"vs": "sklearn", "ratio": 3.0}]),
    ("digits", "digits", 100, 10, P["digits_iter"], [{"vs": "sklearn", "ratio": 5.0}]),
]


@pytest.mark.parametrize("impl", OURS + ("sklearn",))
@pytest.mark.parametrize("cfg", FIT_CASES, ids=[c[0] for c in FIT_CASES])
def test_fit(bench, cfg, impl):
    _, data, n_comp, batch, n_iter, target = cfg
    if data == "digits":
        bench.require_module("sklearn")
        X = digits()
        what = f"digits {X.shape[0]}x64->100"
    else:
        X = binary_data(P["cd_samples"])
        what = f"{X.shape[0]}x{M}->{n_comp}"
    m = X.shape[1]
    epochs = f"{n_iter} epochs" if n_iter > 1 else "1 epoch"
    bench.describe(family="rbm", case=f"PCD-1 fit {what}, batch {batch}, {epochs}", impl=impl,
                   flops=CD_GEMMS * 2.0 * X.shape[0] * m * n_comp * n_iter,
                   gemm=gemm_key(F32, batch, m, n_comp), target=target,
                   note=path_note(impl, m, n_comp, sorted({batch, X.shape[0] % batch} - {0})))
    if impl == "sklearn":
        bench.require_module("sklearn")
    else:
        bench.require_backend("rbm")
    params = dict(n_components=n_comp, learning_rate=0.1, batch_size=batch, random_state=0)
    est = make_estimator(impl, n_iter=n_iter, **params)
    if impl == "sklearn":
        bench.run(lambda: est.fit(X))
    else:                                    # warm up (compile) on a few batches
        small, est_small = X[: 4 * batch], make_estimator(impl, n_iter=1, **params)
        bench.run(lambda: est.fit(X), warmup=lambda: est_small.fit(small),
                  scale=X.shape[0] * n_iter / small.shape[0])


# --- block Gibbs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("impl", OURS + ("numpy", "torch"))
def test_block_gibbs(bench, impl):
    C, k = P["gibbs_chains"], P["gibbs_sweeps"]
    W, a, b = model()
    v0 = binary_data(C)
    bench.describe(family="rbm", case=f"block Gibbs {C} chains {M}x{NH}, {k} sweeps", impl=impl,
                   flops=2 * 2.0 * C * M * NH * k, gemm=gemm_key(F32, C, M, NH),
                   target=[{"vs": "gemm", "frac": 0.85}, {"vs": "numpy", "ratio": 2.0},
                           {"vs": "torch", "ratio": 2.0}],
                   note=path_note(impl, M, NH, [C]))
    if impl == "numpy":
        rng = np.random.default_rng(0)
        bench.run(lambda: _peers.block_gibbs_numpy(v0, W, a, b, k, rng))
    elif impl == "torch":
        bench.require_module("torch")
        import torch

        gen = torch.Generator().manual_seed(0)
        tv, tW, ta, tb = (torch.from_numpy(x) for x in (v0, W, a, b))
        bench.run(lambda: _peers.block_gibbs_torch(tv, tW, ta, tb, k, gen))
    else:
        gibbs_chains = ours(bench, "gibbs_chains")
        bench.run(lambda: gibbs_chains(v0, W, a, b, k, random_state=0, backend=impl),
                  warmup=lambda: gibbs_chains(v0, W, a, b, 1, random_state=0, backend=impl), scale=k)


# --- single-site Gibbs ---------------------------------------------------------------------------

@pytest.mark.parametrize("impl", OURS + ("numpy",))
@pytest.mark.parametrize("peer", ["loop", "vec"])
def test_single_site(bench, peer, impl):
    C, steps = P["ss_chains"], P["ss_steps"]
    W, a, b = model()
    updates = C * steps                     # n_steps site updates in each of the C chains
    v0 = binary_data(C)
    h0 = np.zeros((C, NH), F32)
    if peer == "loop":
        case = f"single-site Gibbs {M}x{NH}, {C} chains (NumPy: per-site loop)"
        np_updates = P["ss_numpy_updates"]
        target = [{"vs": "numpy", "ratio": 50.0}]
    else:
        case = f"single-site Gibbs {M}x{NH}, {C} chains (NumPy: vectorised over chains)"
        np_updates = C * P["ss_numpy_vec_steps"]
        target = None
    norm = updates / np_updates if impl == "numpy" else 1.0
    bench.describe(family="rbm", case=case, impl=impl, work=updates, unit="site updates",
                   norm=norm, target=target,
                   note=f"numpy runs {np_updates:,} updates, time scaled to {updates:,}")
    if impl == "numpy":
        rng = np.random.default_rng(0)
        if peer == "loop":
            fn = lambda: _peers.single_site_numpy(v0.copy(), h0.copy(), W, a, b, np_updates, rng)  # noqa: E731
        else:
            fn = lambda: _peers.single_site_numpy_vec(v0.copy(), h0.copy(), W, a, b,  # noqa: E731
                                                      P["ss_numpy_vec_steps"], rng)
        bench.run(fn)
    else:
        single_site_gibbs = ours(bench, "single_site_gibbs")
        bench.run(lambda: single_site_gibbs(v0, h0, W, a, b, steps, random_state=0, backend=impl),
                  warmup=lambda: single_site_gibbs(v0, h0, W, a, b, 100, random_state=0, backend=impl),
                  scale=steps / 100)


# --- AIS -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("impl", OURS + ("numpy",))
def test_ais(bench, impl):
    R, T = P["ais_runs"], P["ais_betas"]
    W, a, b = model()
    t_np = P["ais_numpy_betas"] if impl == "numpy" else T
    bench.describe(family="rbm", case=f"AIS {M}x{NH}, {R} runs x {T:,} temperatures", impl=impl,
                   flops=2 * 2.0 * R * M * NH * T, gemm=gemm_key(F32, R, M, NH),
                   norm=(T - 1) / (t_np - 1), target=[{"vs": "numpy", "ratio": 3.0}],
                   note=f"numpy runs {t_np:,} temperatures, time scaled per temperature")
    if impl == "numpy":
        rng = np.random.default_rng(0)
        try:                                  # the same (Salakhutdinov & Murray) spacing as ours
            from dlkernels.rbm import ais_betas
            betas = ais_betas(t_np)
        except ImportError:
            betas = np.linspace(0.0, 1.0, t_np)
        bench.run(lambda: _peers.ais_numpy(W, a, b, R, betas, rng))
    else:
        ais_log_partition = ours(bench, "ais_log_partition")
        bench.run(lambda: ais_log_partition(W, a, b, n_runs=R, n_betas=T, random_state=0, backend=impl),
                  warmup=lambda: ais_log_partition(W, a, b, n_runs=R, n_betas=10, random_state=0,
                                                   backend=impl),
                  scale=(T - 1) / 9)
