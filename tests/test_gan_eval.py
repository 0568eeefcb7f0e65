"""Tests of dlkernels.gan's evaluation: mixture samplers, mode metrics
(high-quality share, modes captured, reverse KL) and the chunked Parzen-window
log-likelihood against a brute-force NumPy computation."""
import numpy as np
import pytest
from scipy.special import logsumexp

from dlkernels import gan

FAMILY = "gan"


def test_ring_and_grid_samplers():
    modes = gan.ring_modes()
    assert modes.shape == (8, 2)
    np.testing.assert_allclose(np.hypot(modes[:, 0], modes[:, 1]), 2.0)
    x = gan.sample_ring(4000, random_state=0)
    assert x.dtype == np.float32 and x.shape == (4000, 2)
    np.testing.assert_array_equal(x, gan.sample_ring(4000, random_state=0))
    m = gan.mode_metrics(x, modes, 0.02)
    # a 2-d Gaussian puts 1 - exp(-9/2) = 98.9% of its mass within 3 std
    assert abs(m["high_quality"] - (1 - np.exp(-4.5))) < 0.01 and m["modes_captured"] == 8
    assert m["reverse_kl"] < 0.01 and m["counts"].sum() == round(4000 * m["high_quality"])
    g = gan.grid_modes()
    assert g.shape == (25, 2) and set(np.unique(g)) == {-4.0, -2.0, 0.0, 2.0, 4.0}
    y = gan.sample_grid(5000, random_state=1, dtype=np.float64)
    m = gan.mode_metrics(y, g, 0.05)
    assert y.dtype == np.float64 and m["modes_captured"] == 25 and m["high_quality"] > 0.98


def test_mode_metrics_collapse_and_far_samples():
    modes = gan.ring_modes()
    one = np.repeat(modes[:1], 100, axis=0)
    m = gan.mode_metrics(one, modes, 0.02)
    assert m["modes_captured"] == 1 and m["high_quality"] == 1.0
    np.testing.assert_allclose(m["reverse_kl"], np.log(8))
    two = np.concatenate([one, np.repeat(modes[3:4], 100, axis=0)])
    np.testing.assert_allclose(gan.mode_metrics(two, modes, 0.02)["reverse_kl"], np.log(4))
    far = gan.mode_metrics(np.zeros((10, 2)), modes, 0.02)
    assert far["high_quality"] == 0.0 and far["modes_captured"] == 0
    assert far["reverse_kl"] == np.inf
    m = gan.mode_metrics(two, modes, 0.02, min_count=101)
    assert m["modes_captured"] == 0


def _parzen_brute(samples, x, sigma):
    d = samples.shape[1]
    d2 = ((x[:, None, :] - samples[None, :, :]) ** 2).sum(-1)
    return (logsumexp(-d2 / (2 * sigma ** 2), axis=1) - np.log(len(samples))
            - 0.5 * d * np.log(2 * np.pi * sigma ** 2))


def test_parzen_matches_brute_force_in_chunks():
    rng = np.random.default_rng(0)
    S = rng.standard_normal((300, 3))
    T = rng.standard_normal((101, 3))
    want = _parzen_brute(S, T, 0.4)
    for chunk in (1, 7, 1000):
        mean, se, sigma = gan.parzen_log_likelihood(S, T, sigma=0.4, chunk_size=chunk)
        assert sigma == 0.4
        np.testing.assert_allclose(mean, want.mean(), rtol=1e-10)
        np.testing.assert_allclose(se, want.std() / np.sqrt(len(T)), rtol=1e-8)
    V = rng.standard_normal((50, 3))
    grid = [0.05, 0.3, 0.6, 3.0]
    _, _, best = gan.parzen_log_likelihood(S, T, validation=V, sigmas=grid)
    assert best == grid[int(np.argmax([_parzen_brute(S, V, s).mean() for s in grid]))]


@pytest.mark.parametrize("call, exc, words", [
    (lambda: gan.parzen_log_likelihood(np.zeros((3, 2)), np.zeros((3, 3)), sigma=1.0),
     ValueError, "test: expected shape"),
    (lambda: gan.parzen_log_likelihood(np.zeros((3, 2)), np.zeros((3, 2))), ValueError,
     "validation"),
    (lambda: gan.parzen_log_likelihood(np.zeros((3, 2)), np.zeros((3, 2)), sigma=0.0),
     ValueError, "sigma"),
    (lambda: gan.parzen_log_likelihood(np.zeros((0, 2)), np.zeros((3, 2)), sigma=1.0),
     ValueError, "samples"),
    (lambda: gan.parzen_log_likelihood(np.full((3, 2), np.nan), np.zeros((3, 2)), sigma=1.0),
     ValueError, "samples: expected finite"),
    (lambda: gan.parzen_log_likelihood(np.zeros((3, 2)), np.zeros((3, 2)), sigma=1.0,
                                       chunk_size=0), ValueError, "chunk_size"),
    (lambda: gan.mode_metrics(np.zeros((3, 2)), np.zeros((4, 3)), 0.1), ValueError, "modes"),
    (lambda: gan.mode_metrics(np.zeros((3, 2)), gan.ring_modes(), -1.0), ValueError, "std"),
    (lambda: gan.mode_metrics(np.zeros((3, 2)), gan.ring_modes(), 0.1, min_count=0),
     ValueError, "min_count"),
    (lambda: gan.sample_ring(-1), ValueError, "n"),
    (lambda: gan.sample_ring(3, std=-0.1), ValueError, "std"),
    (lambda: gan.sample_grid(3, n_side=0), ValueError, "n_side"),
    (lambda: gan.ring_modes(radius=0), ValueError, "radius"),
])
def test_eval_errors(call, exc, words):
    with pytest.raises(exc, match=words):
        call()
