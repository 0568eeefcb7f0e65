"""Input checks shared by every public function of dlkernels.

Each check raises ``TypeError`` (wrong kind of object or dtype) or
``ValueError`` (right kind, wrong shape, value or range) with a message of
the form ``"<argument>: expected <what>, got <what came>"``, and returns the
validated (possibly converted) value.  Nothing here is performance-critical:
checks are O(size) at most and run once per public call.
"""
import numbers
import operator

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _describe(x):
    if isinstance(x, np.ndarray):
        return f"array of dtype {x.dtype} and shape {x.shape}"
    return f"{type(x).__name__} {x!r}" if np.isscalar(x) or x is None else type(x).__name__


# Largest count (steps, sweeps, runs...) a kernel accepts: its 64-bit loop
# counters and the per-call random-block offsets derived from it cannot overflow.
COUNT_MAX = 2**62


def check_int(value, name, *, min=None, max=None):
    """An integer (Python or NumPy, not bool) within [min, max]; returns an int."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {_describe(value)}")
    value = operator.index(value)
    if min is not None and value < min:
        raise ValueError(f"{name}: expected an integer >= {min}, got {value}")
    if max is not None and value > max:
        raise ValueError(f"{name}: expected an integer <= {max}, got {value}")
    return value


def check_float(value, name, *, min=None, max=None, min_inclusive=True, max_inclusive=True):
    """A finite real number within the given bounds; returns a float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {_describe(value)}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    if min is not None and (value < min or (value == min and not min_inclusive)):
        op = ">=" if min_inclusive else ">"
        raise ValueError(f"{name}: expected a number {op} {min}, got {value}")
    if max is not None and (value > max or (value == max and not max_inclusive)):
        op = "<=" if max_inclusive else "<"
        raise ValueError(f"{name}: expected a number {op} {max}, got {value}")
    return value


def check_choice(value, name, choices):
    """One of a fixed set of (string) choices."""
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected one of {list(choices)}, got {_describe(value)}")
    if value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")
    return value


def check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {_describe(value)}")
    return bool(value)


def check_dtype(dtype, name="dtype"):
    """float32 or float64 (anything np.dtype accepts for them); returns np.dtype."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name}: expected float32 or float64, got {dtype!r}") from None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected float32 or float64, got {dt}")
    return dt


def check_array(x, name, *, ndim=None, dtype=None, shape=None, finite=False,
                allow_empty=True, copy=False):
    """A C-contiguous ndarray of a float dtype.

    ``dtype``: None keeps float32/float64 inputs as they are and converts
    integer and bool inputs to float64; a dtype (or tuple of dtypes) requires
    exactly that dtype for float inputs (a float of another width is a
    TypeError: mixing precisions is a bug the caller should see) and converts
    integer/bool inputs to it.  ``shape`` is a tuple whose entries are ints or
    None (any length).  Non-contiguous inputs are copied, never rejected.
    """
    if isinstance(x, np.ma.MaskedArray):
        # its mask would be silently dropped by the kernels
        raise TypeError(f"{name}: expected an array of numbers, got a masked array "
                        "(fill the masked entries first, e.g. x.filled(0))")
    if type(x).__module__.startswith("scipy.sparse"):
        # np.asarray would make a 0-d object array of it ("dtype object")
        raise TypeError(f"{name}: expected a dense array of numbers, got a scipy.sparse "
                        f"{type(x).__name__} (convert it with .toarray())")
    if type(x) is np.ndarray:
        arr = x
    elif isinstance(x, np.ndarray):
        arr = np.asarray(x)  # subclasses (np.matrix...) as plain arrays: no matrix semantics
    else:
        if x is None or isinstance(x, (str, bytes, dict, set)):
            raise TypeError(f"{name}: expected an array of numbers, got {_describe(x)}")
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"{name}: expected an array of numbers, got {type(x).__name__} ({exc})") from None
    kind = arr.dtype.kind
    allowed = None
    if dtype is not None:
        allowed = tuple(np.dtype(d) for d in (dtype if isinstance(dtype, (tuple, list)) else (dtype,)))
    if kind == "f":
        if arr.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name}: expected dtype float32 or float64, got {arr.dtype}")
        if allowed is not None and arr.dtype not in allowed:
            exp = " or ".join(str(d) for d in allowed)
            raise TypeError(f"{name}: expected dtype {exp}, got {arr.dtype}")
    elif kind in "biu":
        target = allowed[0] if allowed is not None else np.dtype(np.float64)
        arr = arr.astype(target)
    else:
        raise TypeError(f"{name}: expected a real float array, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-d array, got {arr.ndim}-d array of shape {arr.shape}")
    if shape is not None:
        if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
            exp = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name}: expected shape {exp}, got {arr.shape}")
    if not allow_empty and arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty array, got shape {arr.shape}")
    if finite and arr.size and not np.isfinite(arr).all():
        raise ValueError(f"{name}: expected finite values, got NaN or inf")
    if copy or not arr.flags.c_contiguous:
        arr = np.array(arr, order="C", copy=True)
    return arr


def check_same_dtype(arrays, names):
    """All arrays share one dtype; returns it."""
    dt = arrays[0].dtype
    for a, n in zip(arrays[1:], names[1:]):
        if a.dtype != dt:
            raise TypeError(f"{n}: expected dtype {dt} (the dtype of {names[0]}), got {a.dtype}")
    return dt


def check_binary(x, name):
    """Every entry is exactly 0 or 1."""
    if x.size and not np.all((x == 0) | (x == 1)):
        bad = x[(x != 0) & (x != 1)].ravel()[0].item()
        raise ValueError(f"{name}: expected binary values (0 or 1), got {bad!r}")
    return x


def check_in_range(x, name, lo, hi):
    """Every entry is within [lo, hi] (NaN is out of range)."""
    if x.size and not np.all((x >= lo) & (x <= hi)):
        bad = x[~((x >= lo) & (x <= hi))].ravel()[0].item()
        raise ValueError(f"{name}: expected values in [{lo}, {hi}], got {bad!r}")
    return x


def check_out(out, name, shape, dtype):
    """An output buffer: exactly this shape and dtype, C-contiguous, writeable."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array, got {_describe(out)}")
    if out.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {np.dtype(dtype)}, got {out.dtype}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {out.shape}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name}: expected a C-contiguous array, got a non-contiguous one")
    if not out.flags.writeable:
        raise ValueError(f"{name}: expected a writeable array, got a read-only one")
    return out


def _memory_limit():
    """Physical memory of this machine in bytes (2**62 where it cannot be read)."""
    try:
        import os

        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**62


def check_alloc(count, itemsize, name):
    """ValueError naming ``name`` unless ``count`` items of ``itemsize`` bytes
    fit in this machine's physical memory (instead of numpy's MemoryError
    "Unable to allocate ... TiB" or an allocation that swaps the machine to a halt)."""
    nbytes = int(count) * int(itemsize)
    limit = _memory_limit()
    if nbytes > limit:
        raise ValueError(f"{name}: expected a size whose arrays fit in memory ({limit / 2**30:.1f} GiB "
                         f"here), got {count} items ({nbytes / 2**30:.3g} GiB)")


#: default ``max_work`` of the long kernels (chains, AIS, parallel tempering):
#: about 7e13 multiply-adds, an hour or more on a many-core machine
WORK_MAX = 2**46


def check_max_work(max_work):
    """The ``max_work`` keyword: a positive int, or None (no limit)."""
    if max_work is None:
        return None
    return check_int(max_work, "max_work", min=1)


def check_work(work, max_work, name, unit):
    """ValueError naming ``name`` when a call's estimated ``work`` (multiply-adds)
    exceeds ``max_work`` (None: no limit); ``unit`` says what ``name`` counts."""
    if max_work is not None and work > max_work:
        raise ValueError(f"{name}: expected at most {max_work:.3g} multiply-adds of work "
                         f"(max_work), got {int(work):.3g} for this many {unit}; run it as "
                         f"several shorter calls or pass a larger max_work (None: no limit; "
                         f"Ctrl-C still interrupts it)")


def check_no_overlap(x, name, others):
    """ValueError unless the array ``x`` shares no memory with any array of
    ``others`` (a sequence of (array or None, name)): an output or in-place
    argument that aliases an input would be read after it was written."""
    for y, other in others:
        if y is None or not isinstance(y, np.ndarray):
            continue
        try:
            overlap = np.shares_memory(x, y, max_work=10**6)
        except np.exceptions.TooHardError:
            overlap = True
        if overlap:
            raise ValueError(f"{name}: expected an array that shares no memory with {other}, "
                             f"got one that overlaps it")


def check_uint_words(x, name, nwords):
    """A 128-bit (nwords=2) or 256-bit (nwords=4) unsigned integer given as a
    non-negative Python int or as nwords uint64 words (least significant
    first); returns a fresh C-contiguous uint64 array of nwords words."""
    bits = 64 * nwords
    if isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{name}: expected an integer or {nwords} uint64 words, got {_describe(x)}")
    if isinstance(x, numbers.Integral):
        x = operator.index(x)
        if x < 0 or x >= 1 << bits:
            raise ValueError(f"{name}: expected an integer in [0, 2**{bits}), got {x}")
        return np.array([(x >> (64 * i)) & 0xFFFFFFFFFFFFFFFF for i in range(nwords)], dtype=np.uint64)
    if isinstance(x, (list, tuple)):
        # Python ints >= 2**63 make np.asarray pick float64 or object: check
        # the words one by one instead (Streams.get_state() gives such lists).
        if len(x) != nwords:
            raise ValueError(f"{name}: expected {nwords} uint64 words, got {len(x)} items")
        for w in x:
            if isinstance(w, (bool, np.bool_)) or not isinstance(w, numbers.Integral):
                raise TypeError(f"{name}: expected {nwords} unsigned 64-bit words, got {_describe(w)}")
            if not 0 <= w < 1 << 64:
                raise ValueError(f"{name}: expected words in [0, 2**64), got {int(w)}")
        return np.array([int(w) for w in x], dtype=np.uint64)
    if isinstance(x, np.ndarray):
        arr = x
        if arr.dtype.kind not in "iu":
            raise TypeError(f"{name}: expected {nwords} unsigned 64-bit words, got dtype {arr.dtype}")
        if arr.shape != (nwords,):
            raise ValueError(f"{name}: expected {nwords} uint64 words, got shape {arr.shape}")
        if arr.dtype.kind == "i" and (arr < 0).any():
            raise ValueError(f"{name}: expected non-negative words, got {arr.tolist()}")
        return np.array(arr, dtype=np.uint64, order="C", copy=True)
    raise TypeError(f"{name}: expected an integer or {nwords} uint64 words, got {_describe(x)}")


def words_to_int(words):
    """The Python int of little-endian uint64 words."""
    return sum(int(w) << (64 * i) for i, w in enumerate(np.asarray(words, dtype=np.uint64)))
