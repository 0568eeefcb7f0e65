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

FAMILY = "rbm"


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


# --- the family-blind registry (bench/_registry.py, bench/_startup.py) -----------------------------

def test_registry_finds_the_suites_in_order():
    from bench import _presets, _registry

    suites, broken = _registry.discover()
    fams = [s.family for s in suites]
    assert {"rng", "rbm"} <= set(fams)
    assert fams.index("rng") < fams.index("rbm")
    assert [(s.order, s.family) for s in suites] == sorted((s.order, s.family) for s in suites)
    for s in suites:
        assert set(_presets.NAMES) <= set(s.presets), s
        assert s.tables() and all(spec["title"] for spec in s.tables().values())
    for preset in _presets.NAMES:
        shapes = _registry.gemm_shapes(preset, suites)
        assert shapes == sorted(set(shapes)) and all(len(t) == 4 for t in shapes)


TOY_SUITE = '''
import numpy as np
FAMILY = "toy"
TITLE = "Toy kernels"
ORDER = 1
FOOTNOTES = ("toy footnote",)
PRESETS = {"smoke": dict(n=1), "quick": dict(n=2), "full": dict(n=3)}
STARTUP_PRESETS = ("full",)
PEERS = {"toypeer": "numpy"}


def gemm_shapes(sizes):
    return [(np.float64, sizes["n"], 7, 5)]


def startup(backend):
    import math

    return "toy." + backend, lambda: math.sqrt(2.0)
'''


def test_a_new_suite_needs_no_edit_elsewhere(tmp_path):
    from bench import _registry

    (tmp_path / "bench_toy.py").write_text(TOY_SUITE)
    (tmp_path / "bench_probe.py").write_text("X = 1\n")                      # no FAMILY: not a suite
    (tmp_path / "bench_broken.py").write_text("raise RuntimeError('half written')\n")
    (tmp_path / "bench_twin.py").write_text(TOY_SUITE.replace('ORDER = 1', 'ORDER = 2'))
    suites, broken = _registry.discover(tmp_path, package=None)
    assert [s.family for s in suites] == ["toy"]
    assert set(broken) == {"bench_broken.py", "bench_twin.py"}
    assert "half written" in str(broken["bench_broken.py"])
    assert "FAMILY: expected a name no other suite uses" in str(broken["bench_twin.py"])
    toy = suites[0]
    assert toy.tables() == {"toy": {"title": "Toy kernels", "footnotes": ("toy footnote",)}}
    assert _registry.gemm_shapes("quick", suites) == [("float64", 2, 7, 5)]
    assert toy.measures_startup("full") and not toy.measures_startup("quick")


def test_render_takes_titles_and_footnotes_from_the_suites(tmp_path):
    from bench import _registry

    (tmp_path / "bench_toy.py").write_text(TOY_SUITE)
    suites, _ = _registry.discover(tmp_path, package=None)
    fams = {"toy": {"case 1": {"impls": {"numba": {"time": 2e-3, "note": "path X"},
                                         "cython": {"reason": "not built"}},
                               "meta": {}},
                    "case 3": {"impls": {"numba": {"time": 1e-3, "note": "same"},
                                         "cython": {"time": 1e-3, "note": "same"}}, "meta": {}}},
            "stray": {"case 2": {"impls": {"numba": {"time": 1.0}}, "meta": {}}}}
    env = dict(preset="smoke", threads=2, blas_threads=2, machine="m", versions={}, blas=[],
               threads_in_effect={}, command="python -m bench", date="today")
    text = _runner.render({}, fams, [], env, suites)
    assert "## Toy kernels" in text and "toy footnote" in text
    assert "## stray" in text                       # an undeclared table still shows, under its key
    assert text.index("## Toy kernels") < text.index("## stray")
    assert "skipped: not built" in text
    # notes recorded by the cases are listed under their table, a shared one once
    assert "* case 1 (numba): path X" in text and "* case 3 (numba, cython): same" in text
    assert text.index("* case 1") < text.index("## stray")


def test_startup_runs_only_the_startup_function(tmp_path):
    from bench import _startup

    path = tmp_path / "bench_toy.py"
    path.write_text("raise RuntimeError('the suite body must not run')\n" + TOY_SUITE)
    label, call = _startup.load_startup(path)("numba")
    assert label == "toy.numba" and call() == math.sqrt(2.0)
    (tmp_path / "bench_none.py").write_text("FAMILY = 'none'\n")
    with pytest.raises(LookupError, match="no top-level startup"):
        _startup.load_startup(tmp_path / "bench_none.py")
    assert _startup.suite_path("rbm").name == "bench_rbm.py"


def test_runner_reads_threads_through_backend_info(monkeypatch, tmp_path):
    import dlkernels
    from bench import _registry

    th = _runner.threads_in_effect()
    info = dlkernels.backend_info()["threads"]
    assert th["numba"] == info["numba"]
    assert th["OpenMP (Cython)"] == (info["openmp"] if info["openmp"] is not None else "n/a")
    # a suite's PEERS join the peer columns (after the built-in ones)
    monkeypatch.setattr(_runner, "PEERS", _runner.PEERS)
    monkeypatch.setattr(_runner, "PEER_MODULE", dict(_runner.PEER_MODULE))
    (tmp_path / "bench_toy.py").write_text(TOY_SUITE)
    _runner.add_peers(_registry.discover(tmp_path, package=None)[0])
    assert _runner.PEERS[-1] == "toypeer" and _runner.PEER_MODULE["toypeer"] == "numpy"
