"""Philox4x64-10 of dlkernels against numpy.random.Philox, the oracle.

Raw 64-bit words, float64 and float32 uniforms must equal numpy's bit for bit
for any key and counter (wrap-around included), in both backends, for any
thread count; plus the public helpers of dlkernels.rng and all their errors.
"""
import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dlkernels
from dlkernels import rng
from dlkernels import available_backends
from dlkernels.bindings._backend import resolve
from dlkernels.bindings._checks import words_to_int

from conftest import BACKENDS, require_backend

FAMILY = "rng"


M64 = (1 << 64) - 1
M128 = (1 << 128) - 1
M256 = (1 << 256) - 1
CHUNK_WORDS = 4 * 4096  # words per parallel work item of the fill kernels

_r = np.random.default_rng(20261127)
RANDOM_KEYS = [int(_r.integers(0, 2**63)) << 65 ^ int(_r.integers(0, 2**63)) for _ in range(3)]
KEYS = [0, 1, M64, 1 << 64, M128] + [k & M128 for k in RANDOM_KEYS]
COUNTERS = [
    0,
    1,
    M64,                      # word 0 full: the first block's counter carries into word 1
    M64 - 1,
    (M64 << 64) | M64,        # words 0, 1 full: carry into word 2
    (1 << 192) - 1,           # words 0..2 full: carry into word 3
    M256,                     # counter 2**256 - 1: the first block wraps to 0
    M256 - 2,
    (5 << 128) | (7 << 64) | (M64 - 2),
    int(_r.integers(0, 2**63)) << 190 | int(_r.integers(0, 2**63)),
]
DTYPES_ALL = (np.float32, np.float64)
LENGTHS = [0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 100]


def words(x, n):
    return np.array([(x >> (64 * i)) & M64 for i in range(n)], dtype=np.uint64)


def np_philox(key, ctr):
    return np.random.Philox(key=key, counter=ctr)


def np_raw(key, ctr, n):
    return np_philox(key, ctr).random_raw(n)


def np_uniform(key, ctr, n, dtype):
    return np.random.Generator(np_philox(key, ctr)).random(n, dtype=dtype)


def assert_same(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    # compare bit patterns: exact, and NaN-proof
    assert np.array_equal(a.view(np.uint8), b.view(np.uint8))


# ---- engine kernels -------------------------------------------------------

@pytest.mark.parametrize("key", KEYS[::2])
@pytest.mark.parametrize("ctr", COUNTERS)
def test_engine_philox_block(backend, key, ctr):
    eng = resolve(backend, "rng")
    out = np.empty(4, np.uint64)
    eng.philox_block(words(key, 2), words(ctr, 4), out)
    # numpy's first block of counter c is philox(c + 1)
    assert_same(out, np_raw(key, (ctr - 1) & M256, 4))


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("ctr", COUNTERS)
def test_engine_fill_raw(backend, key, ctr):
    eng = resolve(backend, "rng")
    n = 37
    out = np.empty(n, np.uint64)
    eng.fill_raw(words(key, 2), words(ctr, 4), out)
    assert_same(out, np_raw(key, ctr, n))


@pytest.mark.parametrize("n", LENGTHS + [CHUNK_WORDS - 1, CHUNK_WORDS, CHUNK_WORDS + 1,
                                         2 * CHUNK_WORDS + 3])
def test_engine_fill_lengths(backend, n):
    eng = resolve(backend, "rng")
    key, ctr = KEYS[5], COUNTERS[8]
    k, c = words(key, 2), words(ctr, 4)
    raw = np.empty(n, np.uint64)
    eng.fill_raw(k, c, raw)
    assert_same(raw, np_raw(key, ctr, n))
    for dt, fill in ((np.float64, eng.fill_uniform_f64), (np.float32, eng.fill_uniform_f32)):
        out = np.empty(n, dt)
        fill(k, c, out)
        assert_same(out, np_uniform(key, ctr, n, dt))


# ---- dlkernels.rng.raw / uniform -----------------------------------------

@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("ctr", COUNTERS)
def test_raw_equals_numpy(backend, key, ctr):
    for n in (0, 1, 3, 7, 8, 9, 21):
        assert_same(rng.raw(key, n, counter=ctr, backend=backend), np_raw(key, ctr, n))


@pytest.mark.parametrize("key", KEYS[::3])
@pytest.mark.parametrize("ctr", COUNTERS)
@pytest.mark.parametrize("n", [0, 1, 3, 7, 8, 9, 15, 16, 17, 33])
def test_uniform_equals_numpy(backend, dtype, key, ctr, n):
    got = rng.uniform(key, n, counter=ctr, dtype=dtype, backend=backend)
    assert_same(got, np_uniform(key, ctr, n, dtype))


def test_key_and_counter_as_words(backend):
    key, ctr = KEYS[6], COUNTERS[9]
    ref = np_raw(key, ctr, 11)
    assert_same(rng.raw(words(key, 2), 11, counter=words(ctr, 4), backend=backend), ref)
    assert_same(rng.raw([int(w) for w in words(key, 2)], 11,
                        counter=tuple(int(w) for w in words(ctr, 4)), backend=backend), ref)
    assert_same(rng.raw(np.uint64(5), 3, counter=np.int64(9), backend=backend), np_raw(5, 9, 3))


@pytest.mark.parametrize("ctr", [0, M256 - 1000, M64 - 5000, (M64 << 64) | (M64 - 3)])
def test_long_stream(backend, ctr):
    """10**6 words over several parallel chunks; the counter wraps / carries
    in the middle of the stream (in a chunk other than the first)."""
    key = KEYS[7]
    n = 10**6
    assert_same(rng.raw(key, n, counter=ctr, backend=backend), np_raw(key, ctr, n))
    for dt in DTYPES_ALL:
        assert_same(rng.uniform(key, n, counter=ctr, dtype=dt, backend=backend),
                    np_uniform(key, ctr, n, dt))


def test_uniform_out(backend, dtype):
    key, ctr = 12345, COUNTERS[2]
    out = np.full(13, 7.0, dtype=dtype)
    got = rng.uniform(key, counter=ctr, dtype=dtype, out=out, backend=backend)
    assert got is out
    assert_same(out, np_uniform(key, ctr, 13, dtype))
    out2 = np.empty(13, dtype=dtype)
    assert rng.uniform(key, 13, counter=ctr, dtype=dtype, out=out2, backend=backend) is out2
    assert_same(out2, out)


def test_uniform_range(backend, dtype):
    u = rng.uniform(3, 10**5, dtype=dtype, backend=backend)
    assert u.min() >= 0 and u.max() < 1
    # a word whose top bits are all ones gives the largest float, still < 1
    assert rng.uniform(0, 0, dtype=dtype, backend=backend).shape == (0,)


def test_dtype_spellings(backend):
    ref = np_uniform(9, 0, 10, np.float32)
    for spelling in (np.float32, "float32", "f4", np.dtype("float32")):
        assert_same(rng.uniform(9, 10, dtype=spelling, backend=backend), ref)


# ---- make_key, counter, advance, numpy_generator --------------------------

@pytest.mark.parametrize("seed", [0, 1, 42, 2**32, 2**64 + 5, 2**200 + 3, [1, 2, 3], (7,), [],
                                  np.uint64(7), np.int32(11), np.array([1, 2])])
def test_make_key_equals_numpy(seed):
    key = rng.make_key(seed)
    assert key.dtype == np.uint64 and key.shape == (2,)
    assert_same(key, np.random.Philox(seed).state["state"]["key"])


def test_make_key_seedsequence_and_none():
    ss = np.random.SeedSequence(2026)
    assert_same(rng.make_key(ss), np.random.Philox(np.random.SeedSequence(2026)).state["state"]["key"])
    a, b = rng.make_key(), rng.make_key(None)
    assert a.shape == (2,) and a.dtype == np.uint64
    assert not np.array_equal(a, b)


def test_make_key_stream_equals_numpy_seeded():
    seed = 987654321
    key = rng.make_key(seed)
    assert_same(rng.uniform(key, 100), np.random.Generator(np.random.Philox(seed)).random(100))


@pytest.mark.parametrize("stream,epoch", [(0, 0), (1, 0), (0, 1), (3, 5), (M128, M64), (M64 + 1, 2)])
def test_counter(stream, epoch):
    c = rng.counter(stream, epoch)
    assert c.dtype == np.uint64 and c.shape == (4,)
    assert words_to_int(c) == (epoch << 64) | (stream << 128)


@pytest.mark.parametrize("ctr", [0, 5, M64, M256, M256 - 3, (M64 << 128) | M64])
@pytest.mark.parametrize("delta", [0, 1, 3, -1, -7, 1 << 64, (1 << 255) + 9, M256, -(1 << 200)])
def test_advance_equals_numpy(ctr, delta):
    got = rng.advance(words(ctr, 4), delta)
    assert got.dtype == np.uint64 and got.shape == (4,)
    p = np_philox(99, ctr)
    p.advance(delta)
    assert_same(got, p.state["state"]["counter"])
    assert_same(rng.advance(ctr, delta), got)
    assert_same(rng.raw(99, 9, counter=got), p.random_raw(9))


def test_advance_skips_blocks():
    key, ctr = KEYS[5], COUNTERS[4]
    full = rng.raw(key, 40, counter=ctr)
    assert_same(rng.raw(key, 20, counter=rng.advance(ctr, 5)), full[20:])


def test_numpy_generator():
    key, ctr = KEYS[-1], COUNTERS[6]
    g = rng.numpy_generator(words(key, 2), words(ctr, 4))
    assert isinstance(g, np.random.Generator)
    assert isinstance(g.bit_generator, np.random.Philox)
    assert_same(g.random(17), np_uniform(key, ctr, 17, np.float64))
    assert_same(rng.numpy_generator(key).bit_generator.random_raw(5), np_raw(key, 0, 5))


# ---- streams ---------------------------------------------------------------

@pytest.mark.parametrize("streams,epoch", [(5, 0), ((3, 7), 0), ((0, 3), 4), ((2, 2), 1),
                                           ((M64 - 2, 1 << 64), M64), ((10, 12), M64 - 1)])
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 33])
def test_uniform_streams_equal_numpy_twins(backend, dtype, streams, epoch, n):
    key = KEYS[6]
    start, stop = (0, streams) if isinstance(streams, int) else streams
    got = rng.uniform_streams(key, n, streams, epoch=epoch, dtype=dtype, backend=backend)
    assert got.shape == (stop - start, n) and got.dtype == dtype
    for i in range(stop - start):
        ref = rng.numpy_generator(key, rng.counter(start + i, epoch)).random(n, dtype=dtype)
        assert_same(got[i], ref)


def test_uniform_streams_out(backend, dtype):
    out = np.empty((4, 10), dtype=dtype)
    got = rng.uniform_streams(77, 10, (2, 6), epoch=3, dtype=dtype, out=out, backend=backend)
    assert got is out
    assert_same(out, rng.uniform_streams(77, 10, (2, 6), epoch=3, dtype=dtype, backend=backend))


def test_streams_distinct():
    u = rng.uniform_streams(1, 64, 8)
    assert len({row.tobytes() for row in u}) == 8


def test_streams_epochs():
    s = rng.Streams(2024)
    assert_same(s.key, rng.make_key(2024))
    assert s.epoch == 0
    for e in range(3):
        assert_same(s.next_counter(), rng.counter(0, e))
    assert s.epoch == 3
    assert re.fullmatch(r"Streams\(key=0x[0-9a-f]{32}, epoch=3\)", repr(s))


@pytest.mark.parametrize("seed", [0, 1, 2024, 2**70 + 1])
def test_streams_state_round_trip(seed):
    s = rng.Streams(seed)
    s.next_counter()
    s.next_counter()
    state = json.loads(json.dumps(s.get_state()))  # a checkpoint survives JSON
    assert state["bit_generator"] == "Philox4x64-10" and state["epoch"] == 2
    t = rng.Streams(0)
    t.set_state(state)
    assert_same(t.key, s.key)
    assert t.epoch == s.epoch
    assert_same(t.next_counter(), s.next_counter())
    assert t.get_state() == s.get_state()


def test_streams_epochs_exhausted():
    s = rng.Streams(1)
    s.set_state({"bit_generator": "Philox4x64-10", "key": [1, 2], "epoch": M64 - 1})
    assert_same(s.next_counter(), rng.counter(0, M64 - 1))
    assert s.epoch == M64
    with pytest.raises(OverflowError, match="epochs"):
        s.next_counter()


def test_streams_next_counters_are_successive_next_counter_calls():
    s, t = rng.Streams(7), rng.Streams(7)
    t.next_counter()
    got = t.next_counters(4)
    assert got.shape == (4, 4) and got.dtype == np.uint64
    s.next_counter()
    for row in got:
        assert_same(row, s.next_counter())
    assert t.epoch == s.epoch == 5
    assert t.next_counters(0).shape == (0, 4) and t.epoch == 5
    # the last epochs of the key, then exhaustion (nothing taken on failure)
    s.set_state({"bit_generator": "Philox4x64-10", "key": [1, 2], "epoch": M64 - 3})
    last = s.next_counters(2)
    assert_same(last[1], rng.counter(0, M64 - 2))
    with pytest.raises(OverflowError, match="epochs"):
        s.next_counters(2)
    assert s.epoch == M64 - 1
    assert_same(s.next_counters(1)[0], rng.counter(0, M64 - 1))


def test_as_streams():
    s = rng.Streams(3)
    assert rng.as_streams(s) is s
    assert_same(rng.as_streams(3).key, rng.make_key(3))
    assert_same(rng.as_streams(np.int64(3)).key, rng.make_key(3))
    assert_same(rng.as_streams(np.random.SeedSequence(8)).key, rng.make_key(np.random.SeedSequence(8)))
    assert isinstance(rng.as_streams(None), rng.Streams)
    a = rng.as_streams(np.random.default_rng(5))
    b = rng.as_streams(np.random.default_rng(5))
    assert_same(a.key, b.key) and a.epoch == 0
    c = rng.as_streams(np.random.RandomState(5))
    d = rng.as_streams(np.random.RandomState(5))
    assert_same(c.key, d.key)


# ---- thread count and backend independence --------------------------------

def _all_outputs(backend):
    key, ctr = KEYS[-2], COUNTERS[2]
    n = 3 * CHUNK_WORDS + 5  # several chunks (8 for float32 twice as many words)
    return [rng.raw(key, n, counter=ctr, backend=backend),
            rng.uniform(key, n, counter=ctr, dtype=np.float64, backend=backend),
            rng.uniform(key, 2 * n, counter=ctr, dtype=np.float32, backend=backend),
            rng.uniform_streams(key, 1001, (3, 12), epoch=5, dtype=np.float64, backend=backend),
            rng.uniform_streams(key, 1001, (3, 12), epoch=5, dtype=np.float32, backend=backend)]


def test_thread_count_independence(backend, restore_threads):
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs at least 2 threads")
    dlkernels.set_num_threads(1)
    one = _all_outputs(backend)
    dlkernels.set_num_threads(2)
    two = _all_outputs(backend)
    for a, b in zip(one, two):
        assert_same(a, b)


def test_backends_identical():
    require_backend("numba")
    require_backend("cython")
    for a, b in zip(_all_outputs("numba"), _all_outputs("cython")):
        assert_same(a, b)


def test_default_backend_used(restore_backend):
    for b in available_backends("rng"):
        dlkernels.set_backend(b)
        assert_same(rng.raw(4, 9), np_raw(4, 0, 9))


# ---- property test ---------------------------------------------------------

_edge_ctrs = st.sampled_from([c for c in COUNTERS] + [M256 - i for i in range(8)])
_ctrs = st.one_of(st.integers(0, M256), _edge_ctrs,
                  st.integers(0, 64).map(lambda i: ((M64 << 64) | M64) - i),
                  st.integers(0, 64).map(lambda i: M64 - i))


@settings(max_examples=60, deadline=None)
@given(key=st.one_of(st.integers(0, M128), st.sampled_from([0, M128])), ctr=_ctrs,
       n=st.integers(0, 70), kind=st.sampled_from(["raw", "f32", "f64"]),
       backend=st.sampled_from(BACKENDS))
def test_property_equals_numpy(key, ctr, n, kind, backend):
    if backend not in available_backends("rng"):
        return
    if kind == "raw":
        assert_same(rng.raw(key, n, counter=ctr, backend=backend), np_raw(key, ctr, n))
    else:
        dt = np.float32 if kind == "f32" else np.float64
        assert_same(rng.uniform(key, n, counter=ctr, dtype=dt, backend=backend),
                    np_uniform(key, ctr, n, dt))


# ---- documented errors -----------------------------------------------------

K = 12345  # a valid key
ERRORS = [
    # seeds
    ("make_key float", lambda: rng.make_key(1.5), TypeError, "seed: expected"),
    ("make_key str", lambda: rng.make_key("1"), TypeError, "seed: expected"),
    ("make_key bool", lambda: rng.make_key(True), TypeError, "seed: expected"),
    ("make_key list float", lambda: rng.make_key([1, 2.0]), TypeError, "seed: expected"),
    ("make_key float array", lambda: rng.make_key(np.array([1.0])), TypeError, "seed: expected"),
    ("make_key negative", lambda: rng.make_key(-1), ValueError, "seed: expected non-negative.*-1"),
    ("make_key negative in list", lambda: rng.make_key([1, -2]), ValueError, "seed: .*-2"),
    ("Streams negative", lambda: rng.Streams(-5), ValueError, "seed: .*-5"),
    # keys
    ("key negative", lambda: rng.raw(-1, 3), ValueError, r"key: expected an integer in \[0, 2\*\*128\), got -1"),
    ("key too big", lambda: rng.raw(1 << 128, 3), ValueError, r"key: expected .*2\*\*128"),
    ("key 3 words", lambda: rng.raw([1, 2, 3], 3), ValueError, "key: expected 2 uint64 words, got 3"),
    ("key 2-d", lambda: rng.raw(np.zeros((2, 1), np.uint64), 3), ValueError, r"key: expected 2 uint64 words, got shape \(2, 1\)"),
    ("key float words", lambda: rng.raw(np.zeros(2), 3), TypeError, "key: expected 2 unsigned 64-bit words, got dtype float64"),
    ("key float in list", lambda: rng.raw([1.0, 2], 3), TypeError, "key: expected 2 unsigned 64-bit words, got float"),
    ("key word too big", lambda: rng.raw([1, 1 << 64], 3), ValueError, r"key: expected words in \[0, 2\*\*64\)"),
    ("key word negative", lambda: rng.raw([1, -1], 3), ValueError, "key: expected .*-1"),
    ("key negative array", lambda: rng.raw(np.array([1, -1]), 3), ValueError, "key: expected non-negative words"),
    ("key str", lambda: rng.raw("ab", 3), TypeError, "key: expected an integer or 2 uint64 words, got str"),
    ("key bool", lambda: rng.raw(True, 3), TypeError, "key: expected an integer or 2 uint64 words, got bool"),
    ("key None", lambda: rng.uniform(None, 3), TypeError, "key: expected an integer or 2 uint64 words, got NoneType"),
    # counters
    ("counter negative", lambda: rng.raw(K, 3, counter=-1), ValueError, r"counter: expected an integer in \[0, 2\*\*256\)"),
    ("counter too big", lambda: rng.uniform(K, 3, counter=1 << 256), ValueError, r"counter: .*2\*\*256"),
    ("counter 3 words", lambda: rng.raw(K, 3, counter=[0, 0, 0]), ValueError, "counter: expected 4 uint64 words"),
    ("counter float", lambda: rng.raw(K, 3, counter=1.0), TypeError, "counter: expected an integer or 4"),
    ("numpy_generator key", lambda: rng.numpy_generator(-1), ValueError, "key: expected"),
    ("numpy_generator counter", lambda: rng.numpy_generator(1, [1]), ValueError, "counter: expected 4"),
    # sizes
    ("raw n negative", lambda: rng.raw(K, -1), ValueError, "n: expected an integer >= 0, got -1"),
    ("raw n float", lambda: rng.raw(K, 2.0), TypeError, "n: expected an integer, got float"),
    ("raw n bool", lambda: rng.raw(K, True), TypeError, "n: expected an integer, got bool"),
    ("uniform size negative", lambda: rng.uniform(K, -3), ValueError, "size: expected an integer >= 0, got -3"),
    ("uniform size str", lambda: rng.uniform(K, "3"), TypeError, "size: expected an integer, got str"),
    ("uniform size tuple", lambda: rng.uniform(K, (3,)), TypeError, "size: expected an integer, got tuple"),
    ("uniform no size", lambda: rng.uniform(K), ValueError, "size: expected an integer >= 0 when out is not given, got None"),
    # dtypes
    ("uniform dtype int", lambda: rng.uniform(K, 3, dtype=np.int32), TypeError, "dtype: expected float32 or float64, got int32"),
    ("uniform dtype f16", lambda: rng.uniform(K, 3, dtype="float16"), TypeError, "dtype: expected float32 or float64, got float16"),
    ("uniform dtype junk", lambda: rng.uniform(K, 3, dtype="nonsense"), TypeError, "dtype: expected float32 or float64, got 'nonsense'"),
    ("streams dtype", lambda: rng.uniform_streams(K, 3, 2, dtype=complex), TypeError, "dtype: expected float32 or float64, got complex128"),
    # out buffers
    ("out list", lambda: rng.uniform(K, out=[0.0] * 3), TypeError, "out: expected a numpy array, got list"),
    ("out dtype", lambda: rng.uniform(K, out=np.zeros(3, np.float32)), TypeError, "out: expected dtype float64, got float32"),
    ("out dtype f32", lambda: rng.uniform(K, 3, dtype=np.float32, out=np.zeros(3)), TypeError, "out: expected dtype float32, got float64"),
    ("out int", lambda: rng.uniform(K, out=np.zeros(3, np.int64)), TypeError, "out: expected dtype float64, got int64"),
    ("out shape vs size", lambda: rng.uniform(K, 4, out=np.zeros(3)), ValueError, r"out: expected shape \(4,\), got \(3,\)"),
    ("out 2-d", lambda: rng.uniform(K, out=np.zeros((2, 2))), ValueError, r"out: expected a 1-d array, got shape \(2, 2\)"),
    ("out non-contiguous", lambda: rng.uniform(K, out=np.zeros(8)[::2]), ValueError, "out: expected a C-contiguous array, got a non-contiguous one"),
    ("out read-only", lambda: rng.uniform(K, out=_readonly(np.zeros(3))), ValueError, "out: expected a writeable array, got a read-only one"),
    ("streams out shape", lambda: rng.uniform_streams(K, 3, 2, out=np.zeros((3, 2))), ValueError, r"out: expected shape \(2, 3\), got \(3, 2\)"),
    ("streams out dtype", lambda: rng.uniform_streams(K, 3, 2, out=np.zeros((2, 3), np.float32)), TypeError, "out: expected dtype float64, got float32"),
    ("streams out F-order", lambda: rng.uniform_streams(K, 3, 2, out=np.zeros((2, 3), order="F")), ValueError, "out: expected a C-contiguous array"),
    ("streams out strided", lambda: rng.uniform_streams(K, 3, 2, out=np.zeros((2, 6))[:, ::2]), ValueError, "out: expected a C-contiguous array"),
    ("streams out read-only", lambda: rng.uniform_streams(K, 3, 2, out=_readonly(np.zeros((2, 3)))), ValueError, "out: expected a writeable array"),
    ("streams out 1-d", lambda: rng.uniform_streams(K, 3, 1, out=np.zeros(3)), ValueError, r"out: expected shape \(1, 3\), got \(3,\)"),
    # stream ranges and epochs
    ("streams negative", lambda: rng.uniform_streams(K, 3, -1), ValueError, "streams: expected an integer >= 0, got -1"),
    ("streams reversed", lambda: rng.uniform_streams(K, 3, (5, 2)), ValueError, r"streams\[1\]: expected an integer >= 5, got 2"),
    ("streams negative start", lambda: rng.uniform_streams(K, 3, (-1, 2)), ValueError, r"streams\[0\]: expected an integer >= 0, got -1"),
    ("streams float stop", lambda: rng.uniform_streams(K, 3, (0, 2.0)), TypeError, r"streams\[1\]: expected an integer, got float"),
    ("streams triple", lambda: rng.uniform_streams(K, 3, (0, 1, 2)), TypeError, "streams: expected an integer, got tuple"),
    ("streams float", lambda: rng.uniform_streams(K, 3, 2.0), TypeError, "streams: expected an integer, got float"),
    ("streams beyond 2**64", lambda: rng.uniform_streams(K, 3, (M64, (1 << 64) + 1)), ValueError, r"streams: expected stream indices below 2\*\*64"),
    ("streams n negative", lambda: rng.uniform_streams(K, -3, 2), ValueError, "n: expected an integer >= 0, got -3"),
    ("streams epoch negative", lambda: rng.uniform_streams(K, 3, 2, epoch=-1), ValueError, "epoch: expected an integer >= 0, got -1"),
    ("streams epoch too big", lambda: rng.uniform_streams(K, 3, 2, epoch=1 << 64), ValueError, "epoch: expected an integer <= 18446744073709551615"),
    ("counter stream negative", lambda: rng.counter(-1), ValueError, "stream: expected an integer >= 0"),
    ("counter stream too big", lambda: rng.counter(1 << 128), ValueError, "stream: expected an integer <= "),
    ("counter epoch float", lambda: rng.counter(0, 1.5), TypeError, "epoch: expected an integer, got float"),
    ("advance ctr", lambda: rng.advance([1, 2, 3], 1), ValueError, "ctr: expected 4 uint64 words, got 3"),
    ("advance ctr negative", lambda: rng.advance(-1, 1), ValueError, r"ctr: expected an integer in \[0, 2\*\*256\)"),
    ("advance delta", lambda: rng.advance(0, 1.0), TypeError, "delta: expected an integer, got float"),
    # backends
    ("backend name", lambda: rng.raw(K, 3, backend="torch"), ValueError, r"backend: expected one of \['auto', 'numba', 'cython'\], got 'torch'"),
    ("backend type", lambda: rng.uniform(K, 3, backend=1), TypeError, "backend: expected one of .*got int 1"),
    ("streams backend", lambda: rng.uniform_streams(K, 3, 2, backend="Numba"), ValueError, "backend: expected one of"),
    # as_streams
    ("as_streams bool", lambda: rng.as_streams(True), TypeError, "random_state: expected None, an int seed"),
    ("as_streams str", lambda: rng.as_streams("7"), TypeError, "random_state: expected .*got str '7'"),
    ("as_streams float", lambda: rng.as_streams(7.0), TypeError, "random_state: expected .*got float 7.0"),
    ("as_streams negative", lambda: rng.as_streams(-3), ValueError, "random_state: expected a non-negative seed, got -3"),
    ("as_streams name", lambda: rng.as_streams([1], name="seed"), TypeError, "seed: expected None"),
]


def _readonly(a):
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("call,exc,msg", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_documented_errors(call, exc, msg):
    with pytest.raises(exc, match=msg):
        call()


@pytest.mark.parametrize("state,exc,msg", [
    (None, ValueError, "state: expected a dict from Streams.get_state"),
    ({"key": [1, 2], "epoch": 0}, ValueError, "state: expected a dict"),
    ({"bit_generator": "Philox", "key": [1, 2], "epoch": 0}, ValueError, "state: expected a dict"),
    ({"bit_generator": "Philox4x64-10", "epoch": 0}, ValueError, "state: expected a dict"),
    ({"bit_generator": "Philox4x64-10", "key": [1, 2]}, ValueError, "state: expected a dict"),
    ({"bit_generator": "Philox4x64-10", "key": 5, "epoch": 0}, None, None),
    ({"bit_generator": "Philox4x64-10", "key": [1, 2, 3], "epoch": 0}, ValueError, r"state\['key'\]: expected 2 uint64 words"),
    ({"bit_generator": "Philox4x64-10", "key": [1.5, 2], "epoch": 0}, TypeError, r"state\['key'\]: expected 2 unsigned"),
    ({"bit_generator": "Philox4x64-10", "key": [1, 2], "epoch": -1}, ValueError, r"state\['epoch'\]: expected an integer >= 0"),
    ({"bit_generator": "Philox4x64-10", "key": [1, 2], "epoch": 1 << 64}, ValueError, r"state\['epoch'\]: expected an integer <="),
    ({"bit_generator": "Philox4x64-10", "key": [1, 2], "epoch": "3"}, TypeError, r"state\['epoch'\]: expected an integer, got str"),
])
def test_set_state_errors_leave_state_unchanged(state, exc, msg):
    s = rng.Streams(11)
    s.next_counter()
    before = s.get_state()
    if exc is None:  # an int key is a valid 128-bit key
        s.set_state(state)
        assert_same(s.key, words(5, 2))
        return
    with pytest.raises(exc, match=msg):
        s.set_state(state)
    assert s.get_state() == before
