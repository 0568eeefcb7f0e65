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

    Equal to ``numpy.random.Philox(seed).state["state"]["key"]``.

    Parameters
    ----------
    seed : int, sequence of int, numpy.random.SeedSequence or None, default None
        Non-negative integer(s) or a SeedSequence; None draws fresh OS entropy.

    Returns
    -------
    numpy.ndarray
        uint64 array of shape (2,).

    Raises
    ------
    TypeError
        If ``seed`` is not an integer, a sequence of them, a SeedSequence or None.
    ValueError
        If an integer is negative.
    """
    return _make_key(seed, "seed")


def _make_key(seed, name):
    """``make_key`` whose errors name the caller's argument ``name``."""
    if isinstance(seed, np.random.SeedSequence):
        ss = seed
    else:
        if seed is not None:
            vals = seed if isinstance(seed, (list, tuple, np.ndarray)) else [seed]
            for v in np.asarray(vals, dtype=object).ravel():
                if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
                    raise TypeError(f"{name}: expected a non-negative integer, a sequence of them, "
                                    f"a SeedSequence or None, got {_describe(seed)}")
                if v < 0:
                    raise ValueError(f"{name}: expected non-negative integers, got {int(v)}")
        ss = np.random.SeedSequence(seed)
    return ss.generate_state(2, np.uint64)


def counter(stream=0, epoch=0):
    """The 256-bit counter ``epoch * 2**64 + stream * 2**128`` as 4 uint64 words.

    Parameters
    ----------
    stream : int, default 0
        Stream index, 0 <= stream < 2**128.
    epoch : int, default 0
        Epoch, 0 <= epoch < 2**64.

    Returns
    -------
    numpy.ndarray
        uint64 array of shape (4,), low word first.

    Raises
    ------
    TypeError
        If ``stream`` or ``epoch`` is not an integer.
    ValueError
        If one is out of range.
    """
    stream = check_int(stream, "stream", min=0, max=(1 << 128) - 1)
    epoch = check_int(epoch, "epoch", min=0, max=(1 << 64) - 1)
    return check_uint_words((epoch << 64) | (stream << 128), "counter", 4)


def advance(ctr, delta):
    """``ctr + delta`` mod 2**256 (``delta`` in blocks of 4 words, as
    ``numpy.random.Philox.advance``; negative delta goes back).

    Parameters
    ----------
    ctr : int or array_like of 4 uint64 words
        The counter.
    delta : int
        Blocks to move by (any sign).

    Returns
    -------
    numpy.ndarray
        The new counter, uint64 array of shape (4,).

    Raises
    ------
    TypeError
        If ``ctr`` or ``delta`` has the wrong type.
    ValueError
        If ``ctr`` does not fit in 256 bits or has the wrong length.
    """
    ctr = check_uint_words(ctr, "ctr", 4)
    delta = check_int(delta, "delta")
    return check_uint_words((words_to_int(ctr) + delta) & _MASK256, "ctr", 4)


def _key_ctr(key, ctr):
    return check_uint_words(key, "key", 2), check_uint_words(ctr, "counter", 4)


def raw(key, n, *, counter=0, backend=None):
    """The first ``n`` 64-bit words of the stream (key, counter).

    Equal to ``numpy.random.Philox(key=key, counter=counter).random_raw(n)``.

    Parameters
    ----------
    key : int or array_like of 2 uint64 words
        The Philox key (see ``make_key``).
    n : int
        Number of words, >= 0.
    counter : int or array_like of 4 uint64 words, default 0
        The starting counter (see ``counter``).
    backend : {None, "auto", "numba", "cython"}, default None
        None uses the process default (``dlkernels.get_backend()``).

    Returns
    -------
    numpy.ndarray
        uint64 array of shape (n,).

    Raises
    ------
    TypeError
        If an argument has the wrong type.
    ValueError
        If ``n`` is negative or too large for memory, or the key/counter is out of range.
    ImportError
        If the requested backend cannot be imported.
    """
    key, ctr = _key_ctr(key, counter)
    n = check_int(n, "n", min=0)
    check_alloc(n, 8, "n")
    out = np.empty(n, dtype=np.uint64)
    resolve(backend, "rng").fill_raw(key, ctr, out)
    return out


def uniform(key, size=None, *, counter=0, dtype=np.float64, out=None, backend=None):
    """Uniforms in [0, 1) of the stream (key, counter), as numpy draws them.

    Equal to ``Generator(Philox(key=key, counter=counter)).random(size, dtype)``.
    Parallel over blocks of the stream: the result is the same for any
    number of threads.

    Parameters
    ----------
    key : int or array_like of 2 uint64 words
        The Philox key (see ``make_key``).
    size : int, optional
        Number of uniforms; required unless ``out`` is given.
    counter : int or array_like of 4 uint64 words, default 0
        The starting counter.
    dtype : {numpy.float64, numpy.float32}, default numpy.float64
    out : numpy.ndarray, optional
        1-d C-contiguous writeable buffer of ``dtype`` (of length ``size``
        when both are given), filled in place.
    backend : {None, "auto", "numba", "cython"}, default None

    Returns
    -------
    numpy.ndarray
        The uniforms (``out`` when given).

    Raises
    ------
    TypeError
        If an argument has the wrong type or ``out`` the wrong dtype.
    ValueError
        If neither ``size`` nor ``out`` is given, ``size`` is negative or too
        large, or ``out`` has the wrong shape or is not writeable/contiguous.
    ImportError
        If the requested backend cannot be imported.
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
    """The first ``n`` uniforms of each of a range of streams.

    Row i holds ``Generator(Philox(key=key, counter=counter(start + i,
    epoch))).random(n, dtype)``.  Rows are filled in parallel; the result
    does not depend on the thread count.

    Parameters
    ----------
    key : int or array_like of 2 uint64 words
        The Philox key.
    n : int
        Uniforms per stream, >= 0.
    streams : int or (int, int)
        ``(start, stop)`` or a count (start 0); stop <= 2**64.
    epoch : int, default 0
    dtype : {numpy.float64, numpy.float32}, default numpy.float64
    out : numpy.ndarray, optional
        C-contiguous writeable buffer of shape (stop - start, n) and ``dtype``.
    backend : {None, "auto", "numba", "cython"}, default None

    Returns
    -------
    numpy.ndarray
        Shape (stop - start, n).

    Raises
    ------
    TypeError
        If an argument has the wrong type.
    ValueError
        If a size or index is out of range or ``out`` does not fit.
    ImportError
        If the requested backend cannot be imported.
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
    the NumPy twin of a stream, for references and interoperation.

    Parameters
    ----------
    key : int or array_like of 2 uint64 words
    counter : int or array_like of 4 uint64 words, default 0

    Returns
    -------
    numpy.random.Generator

    Raises
    ------
    TypeError, ValueError
        If the key or counter is malformed.
    """
    key, ctr = _key_ctr(key, counter)
    return np.random.Generator(np.random.Philox(key=words_to_int(key), counter=words_to_int(ctr)))


class Streams:
    """The RNG state of a model or a sampler: a Philox key and an epoch.

    Each kernel call takes ``next_counter()`` (the counter of stream 0 at the
    current epoch) and the epoch moves on by one, so successive calls never
    reuse random numbers, and (key, epoch) -- two small integers -- is all a
    checkpoint needs to resume the exact same run.

    Parameters
    ----------
    seed : int, sequence of int, numpy.random.SeedSequence or None, default None
        As for ``make_key``.

    Attributes
    ----------
    key : numpy.ndarray
        The Philox key, uint64 (2,).
    epoch : int
        The epoch the next call uses.

    Methods
    -------
    next_counter()
        The counter of stream 0 at the current epoch (uint64 (4,)); advances the epoch.
    next_counters(n)
        The counters of the next n epochs (uint64 (n, 4)), as n calls of
        ``next_counter`` would give them (a kernel that runs n calls' worth
        of work in one, e.g. ``cd_minibatches``).
    get_state(), set_state(state)
        A JSON-able dict ``{"bit_generator", "key", "epoch"}`` and its inverse
        (``set_state`` raises ValueError for anything else).
    """

    def __init__(self, seed=None):
        self.key = make_key(seed)
        self.epoch = 0

    def _take(self, n):
        """The first of the next n epochs; advances by n."""
        if self.epoch + n > (1 << 64) - 1:
            raise OverflowError("Streams: the 2**64 epochs of this key are used up")
        e = self.epoch
        self.epoch += n
        return e

    def next_counter(self):
        return counter(0, self._take(1))

    def next_counters(self, n):
        e = self._take(n)
        out = np.zeros((n, 4), np.uint64)
        out[:, 1] = np.uint64(e) + np.arange(n, dtype=np.uint64)  # word 1 of counter(0, epoch)
        return out

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
    / ``RandomState`` (a 63-bit seed is drawn from it).

    Parameters
    ----------
    random_state : None, int, numpy.random.SeedSequence, Streams, numpy.random.Generator or numpy.random.RandomState
    name : str, default "random_state"
        The argument name used in error messages.

    Returns
    -------
    Streams

    Raises
    ------
    TypeError
        For any other type (including bool).
    ValueError
        For a negative seed.
    """
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
