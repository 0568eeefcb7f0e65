"""Public API of dlkernels' counter-based generator, Philox4x64-10.

The generator is the one of ``numpy.random.Philox``, bit for bit:

* a **key** (128 bits) comes from a seed exactly as ``numpy.random.Philox(seed)``
  derives its key (``SeedSequence(seed).generate_state(2, uint64)``);
* a **stream** is a (key, counter) pair, the counter being 256 bits; its
  64-bit words, float64 and float32 uniforms are those of
  ``numpy.random.Generator(numpy.random.Philox(key=key, counter=counter))``
  (``random_raw``, ``random()``, ``random(dtype=np.float32)``);
* kernels give each chain / row / work item its own stream: stream ``s`` of a
  call whose base counter is ``c`` uses counter ``c + s * 2**128``, so the
  draws do not depend on the thread count nor on the backend.
  ``counter(stream, epoch)`` builds ``epoch * 2**64 + stream * 2**128``; a
  stream consumes its counter's lowest 64-bit word (2**64 blocks per epoch).

``Streams`` bundles a key with an epoch that each kernel call advances: that
pair is the whole RNG state of a model and is saved with it.

Numba users call ``dlkernels.engine.numba.rng`` from their ``@njit`` code;
Cython users ``cimport dlkernels.engine.cython.rng``; C users take the
function pointers from ``dlkernels.engine.cython.rng.__pyx_capi__``.
"""
import numbers

import numpy as np

from ._backend import resolve
from ._checks import (check_alloc, check_dtype, check_int, check_out, check_uint_words,
                      words_to_int, _describe)

__all__ = ["make_key", "counter", "advance", "raw", "uniform", "uniform_streams",
           "numpy_generator", "Streams", "as_streams"]

_MASK256 = (1 << 256) - 1


def make_key(seed=None):
    """The 128-bit Philox key of ``seed`` as two uint64 words (low word first).

    ``seed``: a non-negative int, a sequence of them, a
    ``numpy.random.SeedSequence``, or None for fresh OS entropy.  Equal to
    ``numpy.random.Philox(seed).state["state"]["key"]``.
    """
    if isinstance(seed, np.random.SeedSequence):
        ss = seed
    else:
        if seed is not None:
            vals = seed if isinstance(seed, (list, tuple, np.ndarray)) else [seed]
            for v in np.asarray(vals, dtype=object).ravel():
                if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
                    raise TypeError(f"seed: expected a non-negative integer, a sequence of them, "
                                    f"a SeedSequence or None, got {_describe(seed)}")
                if v < 0:
                    raise ValueError(f"seed: expected non-negative integers, got {int(v)}")
        ss = np.random.SeedSequence(seed)
    return ss.generate_state(2, np.uint64)


def counter(stream=0, epoch=0):
    """The 256-bit counter ``epoch * 2**64 + stream * 2**128`` as 4 uint64 words."""
    stream = check_int(stream, "stream", min=0, max=(1 << 128) - 1)
    epoch = check_int(epoch, "epoch", min=0, max=(1 << 64) - 1)
    return check_uint_words((epoch << 64) | (stream << 128), "counter", 4)


def advance(ctr, delta):
    """``ctr + delta`` mod 2**256 (``delta`` in blocks of 4 words, as
    ``numpy.random.Philox.advance``; negative delta goes back)."""
    ctr = check_uint_words(ctr, "ctr", 4)
    delta = check_int(delta, "delta")
    return check_uint_words((words_to_int(ctr) + delta) & _MASK256, "ctr", 4)


def _key_ctr(key, ctr):
    return check_uint_words(key, "key", 2), check_uint_words(ctr, "counter", 4)


def raw(key, n, *, counter=0, backend=None):
    """The first ``n`` 64-bit words of the stream (key, counter)."""
    key, ctr = _key_ctr(key, counter)
    n = check_int(n, "n", min=0)
    check_alloc(n, 8, "n")
    out = np.empty(n, dtype=np.uint64)
    resolve(backend, "rng").fill_raw(key, ctr, out)
    return out


def uniform(key, size=None, *, counter=0, dtype=np.float64, out=None, backend=None):
    """Uniforms in [0, 1) of the stream (key, counter), as numpy draws them.

    Equal to ``Generator(Philox(key=key, counter=counter)).random(size, dtype)``.
    Either ``size`` (an int) or ``out`` (a 1-d buffer of the dtype) is given.
    Parallel over blocks of the stream: the result is the same for any
    number of threads.
    """
    key, ctr = _key_ctr(key, counter)
    dt = check_dtype(dtype)
    if out is None:
        if size is None:
            raise ValueError("size: expected an integer >= 0 when out is not given, got None")
        size = check_int(size, "size", min=0)
        check_alloc(size, dt.itemsize, "size")
        out = np.empty(size, dtype=dt)
    else:
        if size is not None:
            shape = (check_int(size, "size", min=0),)
        else:
            if isinstance(out, np.ndarray) and out.ndim != 1:
                raise ValueError(f"out: expected a 1-d array, got shape {out.shape}")
            shape = out.shape if isinstance(out, np.ndarray) else None
        check_out(out, "out", shape, dt)
    eng = resolve(backend, "rng")
    (eng.fill_uniform_f32 if dt == np.float32 else eng.fill_uniform_f64)(key, ctr, out)
    return out


def _streams_range(streams):
    if isinstance(streams, (tuple, list)) and len(streams) == 2:
        start = check_int(streams[0], "streams[0]", min=0)
        stop = check_int(streams[1], "streams[1]", min=start)
    else:
        start, stop = 0, check_int(streams, "streams", min=0)
    if stop > (1 << 64):
        raise ValueError(f"streams: expected stream indices below 2**64, got {stop}")
    return start, stop


def uniform_streams(key, n, streams, *, epoch=0, dtype=np.float64, out=None, backend=None):
    """An array of shape (stop - start, n): row i holds the first ``n``
    uniforms of stream ``start + i`` at ``epoch``, i.e. of
    ``Generator(Philox(key=key, counter=counter(start + i, epoch))).random(n, dtype)``.

    ``streams``: ``(start, stop)`` or a count (start 0).  Rows are filled in
    parallel; the result does not depend on the thread count.
    """
    key = check_uint_words(key, "key", 2)
    n = check_int(n, "n", min=0)
    start, stop = _streams_range(streams)
    dt = check_dtype(dtype)
    ctr = counter(start, epoch)
    if out is None:
        check_alloc((stop - start) * n, dt.itemsize, "streams" if stop - start > n else "n")
        out = np.empty((stop - start, n), dtype=dt)
    else:
        check_out(out, "out", (stop - start, n), dt)
    eng = resolve(backend, "rng")
    (eng.fill_uniform_streams_f32 if dt == np.float32 else eng.fill_uniform_streams_f64)(key, ctr, out)
    return out


def numpy_generator(key, counter=0):
    """``numpy.random.Generator(numpy.random.Philox(key=..., counter=...))``:
    the NumPy twin of a stream, for references and interoperation."""
    key, ctr = _key_ctr(key, counter)
    return np.random.Generator(np.random.Philox(key=words_to_int(key), counter=words_to_int(ctr)))


class Streams:
    """The RNG state of a model or a sampler: a Philox key and an epoch.

    Each kernel call takes ``next_counter()`` (the counter of stream 0 at the
    current epoch) and the epoch moves on by one, so successive calls never
    reuse random numbers, and (key, epoch) -- two small integers -- is all a
    checkpoint needs to resume the exact same run.
    """

    def __init__(self, seed=None):
        self.key = make_key(seed)
        self.epoch = 0

    def next_counter(self):
        if self.epoch >= (1 << 64) - 1:
            raise OverflowError("Streams: the 2**64 epochs of this key are used up")
        c = counter(0, self.epoch)
        self.epoch += 1
        return c

    def get_state(self):
        return {"bit_generator": "Philox4x64-10", "key": [int(k) for k in self.key],
                "epoch": int(self.epoch)}

    def set_state(self, state):
        if (not isinstance(state, dict) or state.get("bit_generator") != "Philox4x64-10"
                or "key" not in state or "epoch" not in state):
            raise ValueError(f"state: expected a dict from Streams.get_state(), got {_describe(state)}")
        key = check_uint_words(state["key"], "state['key']", 2)
        epoch = check_int(state["epoch"], "state['epoch']", min=0, max=(1 << 64) - 1)
        self.key, self.epoch = key, epoch

    def __repr__(self):
        return f"Streams(key=0x{words_to_int(self.key):032x}, epoch={self.epoch})"


def as_streams(random_state, name="random_state"):
    """A ``Streams`` from what public functions accept as ``random_state``:
    None (fresh entropy), a seed (int, see ``make_key``), a ``Streams`` (used
    as is: its epoch advances with each call) or a ``numpy.random.Generator``
    / ``RandomState`` (a 63-bit seed is drawn from it)."""
    if isinstance(random_state, Streams):
        return random_state
    if isinstance(random_state, np.random.Generator):
        return Streams(int(random_state.integers(0, 2**63 - 1)))
    if isinstance(random_state, np.random.RandomState):
        return Streams(int(random_state.randint(0, 2**31 - 1)) << 32 | int(random_state.randint(0, 2**31 - 1)))
    if random_state is None or isinstance(random_state, (numbers.Integral, np.random.SeedSequence)):
        if isinstance(random_state, (bool, np.bool_)):
            raise TypeError(f"{name}: expected None, an int seed, a Streams or a numpy Generator, got {_describe(random_state)}")
        if isinstance(random_state, numbers.Integral) and random_state < 0:
            raise ValueError(f"{name}: expected a non-negative seed, got {random_state}")
        return Streams(random_state)
    raise TypeError(f"{name}: expected None, an int seed, a Streams or a numpy Generator, got {_describe(random_state)}")
