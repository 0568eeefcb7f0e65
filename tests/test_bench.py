"""The benchmark runner's verdict logic and its NumPy peers.

The timings themselves are never asserted (no timed tests); what is checked
is that the tables judge targets correctly and that the peers compute what
they claim to, so a ratio against them compares like with like.
"""
import math

import numpy as np
import pytest

from bench import _peers, _runner
from dlkernels import rbm


def test_check_target_met_and_missed():
    tgt = [{"vs": "gemm", "frac": 0.85}, {"vs": "numpy", "ratio": 2.0}]
    assert _runner.check_target(tgt, {"numpy": 2.5}, 0.9) == "yes"
    verdict = _runner.check_target(tgt, {"numpy": 1.5}, 0.9)
    assert verdict.startswith("NO") and "1.5x numpy" in verdict and "GEMM" not in verdict
    verdict = _runner.check_target(tgt, {"numpy": 2.5}, 0.5)
    assert verdict == "NO (50% GEMM)"
    # an unmeasured goal is a miss, never a silent "yes"
    assert _runner.check_target(tgt, {}, None).count("not measured") == 2


def test_target_text_and_formatting():
    tgt = [{"vs": "gemm", "frac": 0.85}, {"vs": "sklearn", "ratio": 2.5}]
    assert _runner.target_text(tgt) == "≥85% GEMM, ≥2.5x sklearn"
    assert _runner.fmt_time(0.0123) == "12.3 ms"
    assert _runner.fmt_time(2.5) == "2.5 s"
    assert _runner.fmt_time(4.2e-6) == "4.2 µs"
    assert _runner.fmt_ratio(3.14159) == "3.14x"
    table = _runner.md_table(["a", "bb"], [["1", "2"], ["333", "4"]]).splitlines()
    assert len(table) == 4 and len({len(line) for line in table}) == 1


def _tiny_model(m=6, n=4, seed=3):
    g = np.random.default_rng(seed)
    return g.normal(0, 0.7, (m, n)), g.normal(0, 0.5, m), g.normal(0, 0.5, n)


def test_ais_peer_estimates_the_exact_partition_function():
    # The NumPy AIS peer starts from the uniform base model (log Z_A = (m+n) log 2).
    # 400 runs x 1000 temperatures on a 6x4 model: the estimate is within 0.1 nats
    # of the exact value (observed error ~0.01; the tolerance is 10x that).
    W, a, b = _tiny_model()
    betas = np.linspace(0.0, 1.0, 1000)
    logw = _peers.ais_numpy(W, a, b, 400, betas, np.random.default_rng(0))
    log_za = (W.shape[0] + W.shape[1]) * math.log(2.0)
    est = log_za + np.logaddexp.reduce(logw) - math.log(logw.size)
    assert abs(est - rbm.exact_log_partition(W, a, b)) < 0.1


def test_block_gibbs_peers_sample_the_rbm():
    # Visible marginal of 4000 chains after 30 sweeps vs the exact marginal of a
    # 4x3 model: total variation < 0.05 (the sampling noise of 4000 draws over
    # 16 states is ~0.03 in expectation).
    W, a, b = _tiny_model(4, 3, seed=5)
    p = rbm.boltzmann_distribution(W, a, b).reshape(2**3, 2**4).sum(axis=0)
    rng = np.random.default_rng(1)
    v0 = (rng.random((4000, 4)) < 0.5).astype(np.float64)
    v, _ = _peers.block_gibbs_numpy(v0, W, a, b, 30, rng)
    idx = (v @ (2 ** np.arange(4))).astype(int)
    emp = np.bincount(idx, minlength=16) / idx.size
    assert 0.5 * np.abs(emp - p).sum() < 0.05


def test_torch_peer_matches_numpy_peer_statistics():
    torch = pytest.importorskip("torch")
    W, a, b = _tiny_model(4, 3, seed=5)
    p = rbm.boltzmann_distribution(W, a, b).reshape(2**3, 2**4).sum(axis=0)
    gen = torch.Generator().manual_seed(0)
    v0 = (np.random.default_rng(2).random((4000, 4)) < 0.5)
    v, _ = _peers.block_gibbs_torch(torch.tensor(v0, dtype=torch.float64), torch.tensor(W),
                                 torch.tensor(a), torch.tensor(b), 30, gen)
    idx = (np.asarray(v) @ (2 ** np.arange(4))).astype(int)
    emp = np.bincount(idx, minlength=16) / idx.size
    assert 0.5 * np.abs(emp - p).sum() < 0.05
