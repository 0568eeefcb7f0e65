"""The shared binding helpers every family's estimators use:
``bindings/_persist.py`` (atomic, checked save/load of arrays + JSON
metadata) and ``bindings/_progress.py`` (progress bar, deferred Ctrl-C)."""
import io
import os
import signal
import threading

import numpy as np
import pytest

from dlkernels.bindings import _persist, _progress

FAMILY = "rng"
MAGIC, WHAT = "dlkernels.TestModel", "dlkernels TestModel"


def _arrays():
    g = np.random.default_rng(0)
    return {"W": g.standard_normal((5, 3)).astype(np.float32), "b": np.arange(3, dtype=np.int64),
            "names": np.array(["x", "yy"]), "empty": np.zeros((0, 4))}


def _save(path, arrays=None, meta=None, version=2):
    return _persist.save(path, _arrays() if arrays is None else arrays,
                         {"step": 7, "lr": 0.5, "tags": ["a"]} if meta is None else meta,
                         magic=MAGIC, version=version)


def test_round_trip(tmp_path):
    path = tmp_path / "ckpt.npz"
    assert _save(path) == str(path)
    arrays, meta, version = _persist.load(path, magic=MAGIC, versions=(1, 2), what=WHAT)
    assert version == 2 and meta == {"step": 7, "lr": 0.5, "tags": ["a"]}
    ref = _arrays()
    assert set(arrays) == set(ref)
    for k in ref:
        assert arrays[k].dtype == ref[k].dtype
        np.testing.assert_array_equal(arrays[k], ref[k])
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o644)
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    assert _persist.load(str(path), magic=MAGIC, versions=2, what=WHAT)[2] == 2   # int versions


def test_save_keeps_the_mode_of_the_replaced_file(tmp_path):
    path = tmp_path / "ckpt.npz"
    _save(path)
    os.chmod(path, 0o600)
    _save(path, meta={"step": 8})
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert _persist.load(path, magic=MAGIC, versions=2, what=WHAT)[1] == {"step": 8}


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    _save(path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        _save(path, meta={"step": 99})
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["ckpt.npz"]


@pytest.mark.parametrize("arrays,meta,exc,msg", [
    ({"__x": np.zeros(2)}, {}, ValueError, r"arrays: expected names not starting with '__', got '__x'"),
    ({"o": np.array([object()])}, {}, TypeError, r"arrays\['o'\]: expected an array of numbers"),
    ({}, {"f": object()}, TypeError, "not JSON serializable"),
])
def test_save_errors_write_nothing(tmp_path, arrays, meta, exc, msg):
    with pytest.raises(exc, match=msg):
        _persist.save(tmp_path / "x.npz", arrays, meta, magic=MAGIC, version=1)
    assert os.listdir(tmp_path) == []


def test_load_rejects_bad_files(tmp_path):
    good = tmp_path / "good.npz"
    _save(good)
    data = good.read_bytes()
    corrupt = bytearray(data)
    corrupt[data.find(b"W.npy") + 200] ^= 0xFF
    cases = {"truncated": data[: len(data) // 2], "empty": b"", "text": b"not a model\n",
             "corrupt": bytes(corrupt)}
    for name, content in cases.items():
        p = tmp_path / f"{name}.npz"
        p.write_bytes(content)
        with pytest.raises(ValueError, match=f"'{p}' is not a valid dlkernels TestModel file: "):
            _persist.load(p, magic=MAGIC, versions=2, what=WHAT)
    with np.load(good) as z:
        entries = {n: z[n] for n in z.files}
    for mutate, msg in ((lambda e: e.pop("__magic__"), "no dlkernels signature"),
                        (lambda e: e.update(__magic__=np.array("other")), "signature 'other'"),
                        (lambda e: e.update(__version__=np.array(9)), "format version 9, this dlkernels reads 2"),
                        (lambda e: e.update(b=e["b"] + 1), "checksum mismatch"),
                        (lambda e: e.update(extra=np.zeros(1)), "checksum mismatch"),
                        (lambda e: e.update(evil=np.array([object()], dtype=object)), "not a valid")):
        bad = dict(entries)
        mutate(bad)
        p = tmp_path / "bad.npz"
        np.savez(p, **bad)
        with pytest.raises(ValueError, match=msg):
            _persist.load(p, magic=MAGIC, versions=2, what=WHAT)
    # metadata that is JSON but not an object (with a matching checksum)
    p = tmp_path / "list.npz"
    _persist.save(p, {}, [1, 2], magic=MAGIC, version=2)
    with pytest.raises(ValueError, match="metadata is not a JSON object"):
        _persist.load(p, magic=MAGIC, versions=2, what=WHAT)
    with pytest.raises(FileNotFoundError):
        _persist.load(tmp_path / "missing.npz", magic=MAGIC, versions=2, what=WHAT)


def test_json_scalar_and_digest():
    js = _persist.json_scalar
    assert [js(None), js(True), js(np.bool_(False)), js(np.int32(3)), js(2.5), js("s")] == \
        [None, True, False, 3, 2.5, "s"]
    assert js(np.float32) == "float32" and js(np.dtype("float64")) == "float64"
    assert js(np.random.default_rng(0)) is None
    a = {"x": np.zeros(3)}
    assert _persist.digest(a, "{}") == _persist.digest({"x": np.zeros(3)}, "{}")
    assert _persist.digest(a, "{}") != _persist.digest({"x": np.zeros(3, np.float32)}, "{}")
    assert _persist.digest(a, "{}") != _persist.digest({"x": np.zeros((3, 1))}, "{}")
    assert _persist.digest(a, "{}") != _persist.digest(a, '{"a": 1}')


def test_progress_bar_shows_only_for_long_runs():
    out = io.StringIO()
    quiet = _progress.Progress(10, True, "M", after=1e9, stream=out)
    assert not quiet.update(5, 1, 2) and out.getvalue() == ""
    off = _progress.Progress(10, False, "M", after=0.0, every=0.0, stream=out)
    assert not off.update(5, 1, 2) and out.getvalue() == ""
    bar = _progress.Progress(10, True, "M", after=0.0, every=0.0, stream=out)
    assert bar.update(5, 1, 2)
    text = out.getvalue()
    assert text.startswith("\r[M] epoch 1/2 [" + "#" * 15 + "." * 15 + "]  50.0% elapsed")
    bar.clear()
    assert out.getvalue().endswith("\r" + " " * 100 + "\r") and not bar.shown
    n = len(out.getvalue())
    bar.clear()                                  # nothing showing: nothing written
    assert len(out.getvalue()) == n
    assert _progress.Progress(0, True, "M").total == 1


def test_defer_interrupt_defers_the_first_ctrl_c():
    with _progress.DeferInterrupt() as intr:
        assert intr.active
        os.kill(os.getpid(), signal.SIGINT)
        assert intr.requested                     # deferred, not raised
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)   # a second one interrupts at once
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_defer_interrupt_leaves_other_handlers_and_threads_alone():
    def mine(signum, frame):
        pass
    old = signal.signal(signal.SIGINT, mine)
    try:
        with _progress.DeferInterrupt() as intr:
            assert not intr.active and signal.getsignal(signal.SIGINT) is mine
    finally:
        signal.signal(signal.SIGINT, old)
    seen = []

    def worker():
        with _progress.DeferInterrupt() as intr:
            seen.append(intr.active)
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [False]
