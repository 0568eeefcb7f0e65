"""The RBM layers' path rule: the ``bin_max`` table, its per-machine calibration
(``dlkernels.bindings.rbm_paths``) and the calibration file
(``dlkernels.bindings._calibrate``).

The suite runs with ``DLKERNELS_CALIBRATE=0`` (conftest); the tests here that
need calibration switch it on with their own cache directory."""
import json
import multiprocessing as mp
import os

import numpy as np
import pytest

import dlkernels
import dlkernels.rbm as rbm
from dlkernels.bindings import _calibrate, rbm_paths
from dlkernels.bindings.rbm import _kernels
from dlkernels.rng import Streams

FAMILY = "rbm"


@pytest.fixture
def calibrating(tmp_path, monkeypatch):
    """Calibration on, with a fresh cache directory; the process's memory of
    the file is dropped before and after."""
    monkeypatch.setenv("DLKERNELS_CALIBRATE", "1")
    monkeypatch.setenv("DLKERNELS_CACHE_DIR", str(tmp_path))
    _calibrate.forget()
    yield tmp_path
    _calibrate.forget()


def _engines():
    return [_kernels(b) for b in ("numba", "cython") if b in dlkernels.available_backends("rbm")]


def _model(m, n, dt, seed):
    g = np.random.default_rng(seed)
    return (g.normal(0, 0.3, (m, n)).astype(dt), g.normal(0, 0.5, m).astype(dt),
            g.normal(0, 0.5, n).astype(dt))


# ---- the table ------------------------------------------------------------------------------

def test_default_table_is_the_fixed_rule(backend):
    """Calibration off: fewer than 64 rows always binary (1000 per mille), 64
    and more binary up to 40% on -- the rule the kernels had before the table
    (the recorded digests of tests/test_digests.py are taken with it)."""
    eng = _kernels(backend)
    assert eng.BIN_CLASSES == 12 and eng.BIN_SAMPLE_ROWS == 64
    tab = rbm.path_thresholds(784, 500, np.float32, (1, 63, 64, 5000), backend=backend)
    assert tab.dtype == np.int64 and tab.shape == (12,)
    np.testing.assert_array_equal(tab, [1000] * 6 + [400] * 6)


def test_row_class_is_the_engines(backend):
    eng = _kernels(backend)
    rows = sorted({0, 1, 2, 3, *(2**p + d for p in range(1, 14) for d in (-1, 0, 1))})
    for R in rows:
        c = eng.bin_class(R)
        assert c == rbm_paths.row_class(R, eng.BIN_CLASSES)
        assert c == min(max(R, 1).bit_length() - 1, 11)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_table_chooses_the_path(dtype, restore_threads):
    """A table of 1000s sends every layer through the binary row sums, one of
    0s through the tiled GEMM: the probabilities differ (by rounding) between
    the two, and for each table the two backends and 1 or 2 threads give the
    same bits.  80 chains, 30% on: row class 6."""
    engines = _engines()
    m, n, C = 37, 29, 80
    W, a, b = _model(m, n, dtype, 3)
    vdata = (np.random.default_rng(4).random((C, m)) < 0.3).astype(dtype)
    key = Streams(5).key
    ctr = Streams(5).next_counter()
    results = {}
    for fill in (0, 1000):
        table = np.full(12, fill, np.int64)
        for eng in engines:
            for threads in (1, 2):
                dlkernels.set_num_threads(threads)
                V = np.empty((C, m), dtype)
                H = np.empty((C, n), dtype)
                gW, ga, gb = np.zeros_like(W), np.zeros_like(a), np.zeros_like(b)
                with rbm.blas_single_threaded():
                    eng.cd_step(vdata=vdata, W=W, a=a, b=b, k=1, r=1, mode=eng.MODE_CD, V=V, H=H,
                                key=key, ctr=ctr, gW=gW, ga=ga, gb=gb, scale_pos=1.0,
                                scale_neg=-1.0, decay=1.0, bin_max=table,
                                stop=np.zeros(1, np.int64))
                results.setdefault(fill, []).append(gW)
    for fill, outs in results.items():
        for x in outs[1:]:
            np.testing.assert_array_equal(x, outs[0])
    gemm, binary = results[0][0], results[1000][0]
    assert not np.array_equal(gemm, binary)            # the table reached the kernel
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(gemm, binary, rtol=0, atol=tol * C)   # rounding apart


def test_crossover_arithmetic():
    """The crossover density from three timings: binary at 20% and 60%, GEMM."""
    c = rbm_paths.crossover
    assert c(3.0, 1.0, 5.0) == 400          # 1 + 10 d = 3 at d = 0.2 + 0.2
    assert c(1.0, 1.0, 5.0) == 200
    assert c(0.5, 1.0, 5.0) == 150          # extrapolated below 0.2
    assert c(1.0, 3.0, 5.0) == 0            # 2 + 5 d = 1 at d < 0: clipped
    assert c(9.0, 1.0, 5.0) == 1000
    assert c(2.0, 1.0, 1.0) == 1000         # no slope, binary faster
    assert c(0.5, 1.0, 0.9) == 0            # negative slope, GEMM faster


# ---- calibration and its file ----------------------------------------------------------------

def test_calibration_measures_once_and_is_read_back(calibrating, backend, monkeypatch):
    tab = rbm.path_thresholds(40, 30, np.float32, (8, 100), backend=backend)
    assert ((0 <= tab) & (tab <= 1000)).all()
    default = rbm_paths.default_table(_kernels(backend))
    others = [c for c in range(12) if c not in (3, 6)]
    np.testing.assert_array_equal(tab[others], default[others])
    path = calibrating / _calibrate.FILE_NAME
    data = json.loads(path.read_text())
    entries = data[_calibrate.machine_key()][rbm_paths.SECTION]
    assert entries == {"float32 m5 n4 r3": int(tab[3]), "float32 m5 n4 r6": int(tab[6])}
    # another process (here: the memory dropped) reads the file and measures nothing
    _calibrate.forget()
    monkeypatch.setattr(rbm_paths, "_measure", lambda *a: pytest.fail("measured again"))
    for be in ("numba", "cython"):
        if be in dlkernels.available_backends("rbm"):
            np.testing.assert_array_equal(
                rbm.path_thresholds(63, 17, np.float32, (100, 15), backend=be), tab)
    # another dtype or layer-shape class is another entry
    monkeypatch.setattr(rbm_paths, "_measure", lambda *a: 123)
    assert rbm.path_thresholds(40, 30, np.float64, (8,), backend=backend)[3] == 123
    assert rbm.path_thresholds(64, 30, np.float32, (8,), backend=backend)[3] == 123


def test_calibration_off_writes_nothing(tmp_path, monkeypatch, backend):
    monkeypatch.setenv("DLKERNELS_CACHE_DIR", str(tmp_path))
    for off in ("0", "off", "FALSE", "no"):
        monkeypatch.setenv("DLKERNELS_CALIBRATE", off)
        _calibrate.forget()
        np.testing.assert_array_equal(rbm.path_thresholds(50, 20, rows=(100,), backend=backend),
                                      rbm_paths.default_table(_kernels(backend)))
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("content", ["", "not json", "[1, 2]", '{"x": 3}', "{machine}",
                                     "{bad_value}", "{bad_type}"])
def test_a_broken_file_is_measured_again(calibrating, backend, monkeypatch, content):
    key = "float32 m5 n4 r6"
    mk = _calibrate.machine_key()
    content = {"{machine}": json.dumps({mk: [1, 2]}),
               "{bad_value}": json.dumps({mk: {rbm_paths.SECTION: {key: 5000}}}),
               "{bad_type}": json.dumps({mk: {rbm_paths.SECTION: {key: "400"}}})}.get(content,
                                                                                     content)
    path = calibrating / _calibrate.FILE_NAME
    path.write_text(content)
    monkeypatch.setattr(rbm_paths, "_measure", lambda *a: 321)
    assert rbm.path_thresholds(40, 30, rows=(100,), backend=backend)[6] == 321
    assert json.loads(path.read_text())[mk][rbm_paths.SECTION][key] == 321


def test_an_unwritable_cache_warns_and_uses_the_default(tmp_path, monkeypatch, backend):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    monkeypatch.setenv("DLKERNELS_CALIBRATE", "1")
    monkeypatch.setenv("DLKERNELS_CACHE_DIR", str(blocker / "sub"))   # cannot be a directory
    _calibrate.forget()
    try:
        with pytest.warns(RuntimeWarning, match="cannot be used"):
            tab = rbm.path_thresholds(40, 30, rows=(100,), backend=backend)
        np.testing.assert_array_equal(tab, rbm_paths.default_table(_kernels(backend)))
    finally:
        _calibrate.forget()


def test_other_machines_entries_are_kept(calibrating, backend, monkeypatch):
    path = calibrating / _calibrate.FILE_NAME
    other = {"another machine": {rbm_paths.SECTION: {"float32 m5 n4 r6": 7}}}
    path.write_text(json.dumps(other))
    monkeypatch.setattr(rbm_paths, "_measure", lambda *a: 654)
    assert rbm.path_thresholds(40, 30, rows=(100,), backend=backend)[6] == 654
    data = json.loads(path.read_text())
    assert data["another machine"] == other["another machine"]
    assert data[_calibrate.machine_key()][rbm_paths.SECTION] == {"float32 m5 n4 r6": 654}


def _slow_measure_in_child(args):
    """In a child process: look up one entry whose measurement takes 0.3 s and
    returns the child's pid, recording every measurement in a log file."""
    cache, log = args
    import time
    os.environ["DLKERNELS_CALIBRATE"] = "1"
    os.environ["DLKERNELS_CACHE_DIR"] = cache

    def measure():
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(0.3)
        return os.getpid()
    from dlkernels.bindings import _calibrate as cal
    return cal.lookup("test.section", "entry", measure)


def test_concurrent_processes_measure_once(tmp_path):
    """Four processes asking at once: one measures (under the file lock), the
    others wait and read its value -- all four use the same value."""
    log = tmp_path / "measured.log"
    ctx = mp.get_context("spawn")
    with ctx.Pool(4) as pool:
        got = pool.map(_slow_measure_in_child, [(str(tmp_path), str(log))] * 4)
    assert len(set(got)) == 1
    assert log.read_text().split() == [str(got[0])]


def test_calibrated_table_gives_the_same_bits_everywhere(calibrating, restore_threads):
    """With calibration on, gibbs_chains uses the stored table: both backends
    and 1 or 2 threads give the bits of an engine call with that table."""
    m, n, C = 45, 33, 70
    W, a, b = _model(m, n, np.float32, 8)
    v0 = (np.random.default_rng(9).random((C, m)) < 0.35).astype(np.float32)
    tab = rbm.path_thresholds(m, n, np.float32, (C,))
    outs = []
    for be in ("numba", "cython"):
        if be not in dlkernels.available_backends("rbm"):
            continue
        for threads in (1, 2):
            dlkernels.set_num_threads(threads)
            outs.append(rbm.gibbs_chains(v0, W, a, b, 4, random_state=Streams(10),
                                         return_hidden=True, backend=be))
    eng = _engines()[0]
    v, h = v0.copy(), np.empty((C, n), np.float32)
    st = Streams(10)
    empty = np.empty((0, 0), np.float32)
    with rbm.blas_single_threaded():
        eng.gibbs_chains(v=v, W=W, a=a, b=b, k=4, key=st.key, ctr=st.next_counter(), h=h,
                         mean_last=0, mean_v=empty, mean_h=empty, WT=empty, bin_max=tab,
                         stop=np.zeros(1, np.int64))
    for ov, oh in outs:
        np.testing.assert_array_equal(ov, v)
        np.testing.assert_array_equal(oh, h)


@pytest.mark.parametrize("call,err,match", [
    (lambda: rbm.path_thresholds(0, 5), ValueError, "^m: "),
    (lambda: rbm.path_thresholds(5, 2.5), TypeError, "^n: "),
    (lambda: rbm.path_thresholds(5, 5, np.int32), TypeError, "^dtype: "),
    (lambda: rbm.path_thresholds(5, 5, "float16"), TypeError, "^dtype: "),
    (lambda: rbm.path_thresholds(5, 5, rows=(-1,)), ValueError, "^rows: "),
    (lambda: rbm.path_thresholds(5, 5, rows=(1.5,)), TypeError, "^rows: "),
    (lambda: rbm.path_thresholds(5, 5, rows=5), TypeError, "^rows: "),
    (lambda: rbm.path_thresholds(5, 5, rows="12"), TypeError, "^rows: "),
])
def test_path_thresholds_errors(call, err, match):
    with pytest.raises(err, match=match):
        call()


def test_measurements_use_the_precompiled_kernels(calibrating, monkeypatch):
    """A Numba user's first call does not compile the Numba gibbs_chains just
    to time the paths: the Cython kernels time them when they are built."""
    if "cython" not in dlkernels.available_backends("rbm"):
        pytest.skip("the Cython backend is not built")
    seen = []
    monkeypatch.setattr(rbm_paths, "_measure", lambda eng, *a: seen.append(eng.__name__) or 500)
    assert rbm.path_thresholds(30, 20, rows=(100,), backend="numba")[6] == 500
    assert seen == ["dlkernels.engine.cython.rbm"]


def _lookup_in_forked_child():
    value = _calibrate.lookup("test.fork", "entry", lambda: 7)
    os._exit(0 if value == 7 else 3)


def test_a_child_forked_during_a_measurement_does_not_hang(calibrating):
    """The lock that serialises measurements is held by another thread of the
    parent at fork time: the child gets a fresh one and measures itself."""
    ctx = mp.get_context("fork")
    with _calibrate._lock:
        child = ctx.Process(target=_lookup_in_forked_child)
        child.start()
        child.join(60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung on the calibration lock")
    assert child.exitcode == 0


def test_huge_layers_are_not_timed(calibrating, monkeypatch):
    """A layer of more than 2**26 weights (or a huge size passed by mistake)
    keeps the default rule: nothing is allocated or timed for it."""
    monkeypatch.setattr(rbm_paths, "_measure", lambda *a: pytest.fail("measured"))
    for m, n in [(2**13, 2**13 + 1), (2**40, 5), (2**62, 2**62)]:
        np.testing.assert_array_equal(rbm.path_thresholds(m, n, rows=(10, 1000)),
                                      rbm_paths.default_table(_engines()[0]))
    assert not (calibrating / _calibrate.FILE_NAME).exists()
