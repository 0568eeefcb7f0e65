"""Every input check of dlkernels.bindings._checks: what it accepts and returns,
and every error with a message "<argument>: expected <what>, got <what came>"."""
import fractions

import numpy as np
import pytest

from dlkernels.bindings._checks import (check_array, check_binary, check_bool, check_choice,
                                        check_dtype, check_float, check_in_range, check_int,
                                        check_out, check_same_dtype, check_uint_words,
                                        words_to_int)

FAMILY = "rng"


def _readonly(a):
    a.flags.writeable = False
    return a


# ---- accepted inputs --------------------------------------------------------

@pytest.mark.parametrize("v", [0, 7, -3, 2**200, np.int8(5), np.uint64(2**64 - 1), np.int64(-9)])
def test_check_int_accepts(v):
    got = check_int(v, "n")
    assert type(got) is int and got == int(v)


def test_check_int_bounds_inclusive():
    assert check_int(1, "n", min=1, max=1) == 1
    assert check_int(5, "n", min=0) == 5


@pytest.mark.parametrize("v,expected", [(1, 1.0), (np.float32(0.5), 0.5), (np.int16(3), 3.0),
                                        (fractions.Fraction(1, 4), 0.25), (-2.5, -2.5)])
def test_check_float_accepts(v, expected):
    got = check_float(v, "x")
    assert type(got) is float and got == expected


def test_check_float_bounds():
    assert check_float(0.0, "x", min=0.0) == 0.0
    assert check_float(1.0, "x", max=1.0) == 1.0
    assert check_float(0.5, "x", min=0.0, max=1.0, min_inclusive=False, max_inclusive=False) == 0.5


def test_check_choice_bool_accept():
    assert check_choice("numba", "backend", ("numba", "cython")) == "numba"
    assert check_bool(True, "flag") is True
    assert check_bool(np.bool_(False), "flag") is False


@pytest.mark.parametrize("spelling,expected", [(np.float32, np.float32), ("float32", np.float32),
                                               ("f4", np.float32), (np.dtype("float64"), np.float64),
                                               (float, np.float64), ("double", np.float64)])
def test_check_dtype_accepts(spelling, expected):
    got = check_dtype(spelling)
    assert isinstance(got, np.dtype) and got == expected


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_check_array_keeps_floats(dt):
    x = np.arange(6, dtype=dt).reshape(2, 3)
    got = check_array(x, "x", ndim=2, shape=(None, 3))
    assert got is x  # contiguous float input: no copy
    assert check_array(x, "x", dtype=(np.float32, np.float64)) is x
    assert check_array(x, "x", dtype=dt) is x


@pytest.mark.parametrize("x", [[1, 2, 3], np.array([1, 2, 3], np.int32), np.array([1, 2, 3], np.uint8),
                               (1, 2, 3), np.array([True, False, True])])
def test_check_array_converts_ints_to_float64(x):
    got = check_array(x, "x")
    assert got.dtype == np.float64 and got.flags.c_contiguous
    assert np.array_equal(got, np.asarray(x, dtype=np.float64))


def test_check_array_converts_ints_to_requested_dtype():
    got = check_array(np.array([1, 0, 1]), "x", dtype=np.float32)
    assert got.dtype == np.float32 and np.array_equal(got, [1, 0, 1])
    got = check_array([1, 2], "x", dtype=(np.float32, np.float64))
    assert got.dtype == np.float32  # the first allowed dtype


def test_check_array_lists_of_floats():
    got = check_array([[0.5, 1.5]], "x")
    assert got.dtype == np.float64 and got.shape == (1, 2)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_check_array_non_contiguous_copied(dt):
    base = np.arange(24, dtype=dt).reshape(4, 6)
    for view in (base[:, ::2], base.T, base[::2], np.asfortranarray(base)):
        got = check_array(view, "x")
        assert got.flags.c_contiguous and got.dtype == dt
        assert np.array_equal(got, view)
        assert not np.shares_memory(got, base)


def test_check_array_copy_flag():
    x = np.zeros(3)
    got = check_array(x, "x", copy=True)
    assert got is not x and not np.shares_memory(got, x) and np.array_equal(got, x)


def test_check_array_finite_and_empty_accepts():
    assert check_array(np.array([1.0, 2.0]), "x", finite=True).shape == (2,)
    assert check_array(np.array([1, 2]), "x", finite=True).dtype == np.float64
    assert check_array(np.zeros((0, 3)), "x", finite=True).shape == (0, 3)
    assert check_array(np.zeros((0, 3)), "x", shape=(0, 3)).shape == (0, 3)


def test_check_same_dtype_binary_in_range_out_accept():
    a, b = np.zeros(2, np.float32), np.ones(3, np.float32)
    assert check_same_dtype([a, b], ["a", "b"]) == np.float32
    v = np.array([0.0, 1.0, 1.0])
    assert check_binary(v, "v") is v
    assert check_binary(np.zeros(0), "v").size == 0
    p = np.array([0.0, 0.5, 1.0])
    assert check_in_range(p, "p", 0, 1) is p
    out = np.empty((2, 3), np.float32)
    assert check_out(out, "out", (2, 3), np.float32) is out
    assert check_out(out, "out", [2, 3], np.dtype("float32")) is out


@pytest.mark.parametrize("x,nwords,expected", [
    (0, 2, [0, 0]),
    (2**128 - 1, 2, [2**64 - 1, 2**64 - 1]),
    (5 | 7 << 64, 2, [5, 7]),
    (2**256 - 1, 4, [2**64 - 1] * 4),
    (1 << 192, 4, [0, 0, 0, 1]),
    ([2**64 - 1, 2**63], 2, [2**64 - 1, 2**63]),   # Python ints >= 2**63 in a list
    ((1, 2, 3, 2**64 - 1), 4, [1, 2, 3, 2**64 - 1]),
    ([np.uint64(2**64 - 1), np.int8(3)], 2, [2**64 - 1, 3]),
    (np.array([1, 2], np.int64), 2, [1, 2]),
    (np.array([2**64 - 1, 0], np.uint64), 2, [2**64 - 1, 0]),
    (np.array([1, 2, 3, 4], np.uint8), 4, [1, 2, 3, 4]),
    (np.uint64(9), 2, [9, 0]),
])
def test_check_uint_words_accepts(x, nwords, expected):
    got = check_uint_words(x, "key", nwords)
    assert got.dtype == np.uint64 and got.shape == (nwords,) and got.flags.c_contiguous
    assert got.tolist() == expected
    assert words_to_int(got) == sum(w << (64 * i) for i, w in enumerate(expected))


def test_check_uint_words_fresh_copy():
    x = np.array([1, 2], np.uint64)
    got = check_uint_words(x, "key", 2)
    assert got is not x
    got[0] = 9
    assert x[0] == 1


def test_words_round_trip():
    r = np.random.default_rng(0)
    for _ in range(50):
        v = int(r.integers(0, 2**63)) << 193 ^ int(r.integers(0, 2**63)) << 64 ^ int(r.integers(0, 2**63))
        v &= (1 << 256) - 1
        assert words_to_int(check_uint_words(v, "ctr", 4)) == v


# ---- errors ----------------------------------------------------------------

FLOATS = np.zeros(3)
ERRORS = [
    # check_int
    ("int bool", lambda: check_int(True, "n"), TypeError, "n", "an integer", "bool True"),
    ("int np bool", lambda: check_int(np.bool_(True), "n"), TypeError, "n", "an integer", "bool"),
    ("int float", lambda: check_int(3.0, "n"), TypeError, "n", "an integer", "float 3.0"),
    ("int str", lambda: check_int("3", "n"), TypeError, "n", "an integer", "str '3'"),
    ("int None", lambda: check_int(None, "n"), TypeError, "n", "an integer", "NoneType None"),
    ("int 0-d array", lambda: check_int(np.array(3), "n"), TypeError, "n", "an integer", "array of dtype int64 and shape ()"),
    ("int list", lambda: check_int([3], "n"), TypeError, "n", "an integer", "list"),
    ("int below", lambda: check_int(0, "n_chains", min=1), ValueError, "n_chains", "an integer >= 1", "0"),
    ("int above", lambda: check_int(11, "k", min=0, max=10), ValueError, "k", "an integer <= 10", "11"),
    # check_float
    ("float bool", lambda: check_float(False, "lr"), TypeError, "lr", "a real number", "bool False"),
    ("float str", lambda: check_float("0.1", "lr"), TypeError, "lr", "a real number", "str '0.1'"),
    ("float complex", lambda: check_float(1j, "lr"), TypeError, "lr", "a real number", "complex 1j"),
    ("float None", lambda: check_float(None, "lr"), TypeError, "lr", "a real number", "NoneType None"),
    ("float array", lambda: check_float(np.ones(2), "lr"), TypeError, "lr", "a real number", "array of dtype float64 and shape (2,)"),
    ("float nan", lambda: check_float(float("nan"), "lr"), ValueError, "lr", "a finite number", "nan"),
    ("float inf", lambda: check_float(np.inf, "lr"), ValueError, "lr", "a finite number", "inf"),
    ("float -inf f32", lambda: check_float(np.float32(-np.inf), "lr"), ValueError, "lr", "a finite number", "-inf"),
    ("float below incl", lambda: check_float(-0.5, "p", min=0.0), ValueError, "p", "a number >= 0.0", "-0.5"),
    ("float below excl", lambda: check_float(0.0, "lr", min=0.0, min_inclusive=False), ValueError, "lr", "a number > 0.0", "0.0"),
    ("float above incl", lambda: check_float(1.5, "p", max=1.0), ValueError, "p", "a number <= 1.0", "1.5"),
    ("float above excl", lambda: check_float(1.0, "p", max=1.0, max_inclusive=False), ValueError, "p", "a number < 1.0", "1.0"),
    # check_choice / check_bool
    ("choice type", lambda: check_choice(1, "backend", ("numba", "cython")), TypeError, "backend", "one of ['numba', 'cython']", "int 1"),
    ("choice None", lambda: check_choice(None, "backend", ("numba",)), TypeError, "backend", "one of ['numba']", "NoneType None"),
    ("choice value", lambda: check_choice("Numba", "backend", ("numba", "cython")), ValueError, "backend", "one of ['numba', 'cython']", "'Numba'"),
    ("bool int", lambda: check_bool(1, "persistent"), TypeError, "persistent", "True or False", "int 1"),
    ("bool str", lambda: check_bool("yes", "persistent"), TypeError, "persistent", "True or False", "str 'yes'"),
    ("bool None", lambda: check_bool(None, "persistent"), TypeError, "persistent", "True or False", "NoneType None"),
    # check_dtype
    ("dtype int", lambda: check_dtype(np.int64), TypeError, "dtype", "float32 or float64", "int64"),
    ("dtype f16", lambda: check_dtype("float16"), TypeError, "dtype", "float32 or float64", "float16"),
    ("dtype complex", lambda: check_dtype(complex), TypeError, "dtype", "float32 or float64", "complex128"),
    ("dtype longdouble", lambda: check_dtype(np.longdouble), TypeError, "dtype", "float32 or float64", str(np.dtype(np.longdouble))),
    ("dtype junk", lambda: check_dtype("nonsense", "out_dtype"), TypeError, "out_dtype", "float32 or float64", "'nonsense'"),
    ("dtype object", lambda: check_dtype(object()), TypeError, "dtype", "float32 or float64", "<object object"),
    ("dtype structured", lambda: check_dtype("f4,f4"), TypeError, "dtype", "float32 or float64", "[('f0', '<f4'), ('f1', '<f4')]"),
    # check_array
    ("array None", lambda: check_array(None, "X"), TypeError, "X", "an array of numbers", "NoneType None"),
    ("array str", lambda: check_array("abc", "X"), TypeError, "X", "an array of numbers", "str 'abc'"),
    ("array dict", lambda: check_array({"a": 1}, "X"), TypeError, "X", "an array of numbers", "dict"),
    ("array ragged", lambda: check_array([[1, 2], [3]], "X"), TypeError, "X", "an array of numbers", "list ("),
    ("array object", lambda: check_array(np.array([1, None]), "X"), TypeError, "X", "a real float array", "dtype object"),
    ("array complex", lambda: check_array(np.ones(2, complex), "X"), TypeError, "X", "a real float array", "dtype complex128"),
    ("array strings", lambda: check_array(["a", "b"], "X"), TypeError, "X", "a real float array", "dtype <U1"),
    ("array f16", lambda: check_array(np.ones(2, np.float16), "X"), TypeError, "X", "dtype float32 or float64", "float16"),
    ("array wrong float", lambda: check_array(np.ones(2), "W", dtype=np.float32), TypeError, "W", "dtype float32", "float64"),
    ("array wrong float tuple", lambda: check_array(np.ones(2, np.float32), "W", dtype=(np.float64,)), TypeError, "W", "dtype float64", "float32"),
    ("array ndim", lambda: check_array(np.ones(3), "X", ndim=2), ValueError, "X", "a 2-d array", "1-d array of shape (3,)"),
    ("array shape", lambda: check_array(np.ones((2, 4)), "W", shape=(None, 3)), ValueError, "W", "shape (any, 3)", "(2, 4)"),
    ("array shape ndim", lambda: check_array(np.ones(3), "b", shape=(3, 1)), ValueError, "b", "shape (3, 1)", "(3,)"),
    ("array empty", lambda: check_array(np.ones((0, 2)), "X", allow_empty=False), ValueError, "X", "a non-empty array", "shape (0, 2)"),
    ("array nan", lambda: check_array([1.0, np.nan], "X", finite=True), ValueError, "X", "finite values", "NaN or inf"),
    ("array inf f32", lambda: check_array(np.array([np.inf], np.float32), "X", finite=True), ValueError, "X", "finite values", "NaN or inf"),
    # check_same_dtype
    ("same dtype", lambda: check_same_dtype([np.ones(2), np.ones(2, np.float32)], ["W", "v"]), TypeError, "v", "dtype float64 (the dtype of W)", "float32"),
    # check_binary / check_in_range
    ("binary half", lambda: check_binary(np.array([0.0, 0.5]), "v"), ValueError, "v", "binary values (0 or 1)", "0.5"),
    ("binary nan", lambda: check_binary(np.array([1.0, np.nan]), "v"), ValueError, "v", "binary values (0 or 1)", "nan"),
    ("binary 2", lambda: check_binary(np.array([[0, 2]], np.float32), "v0"), ValueError, "v0", "binary values (0 or 1)", "2.0"),
    ("range above", lambda: check_in_range(np.array([0.2, 1.5]), "p", 0, 1), ValueError, "p", "values in [0, 1]", "1.5"),
    ("range below", lambda: check_in_range(np.array([-0.1]), "p", 0.0, 1.0), ValueError, "p", "values in [0.0, 1.0]", "-0.1"),
    ("range nan", lambda: check_in_range(np.array([np.nan]), "p", 0, 1), ValueError, "p", "values in [0, 1]", "nan"),
    # check_out
    ("out list", lambda: check_out([0.0], "out", (1,), np.float64), TypeError, "out", "a numpy array", "list"),
    ("out None", lambda: check_out(None, "out", (1,), np.float64), TypeError, "out", "a numpy array", "NoneType None"),
    ("out dtype", lambda: check_out(np.zeros(3, np.float32), "out", (3,), np.float64), TypeError, "out", "dtype float64", "float32"),
    ("out shape", lambda: check_out(np.zeros((3, 2)), "out", (2, 3), np.float64), ValueError, "out", "shape (2, 3)", "(3, 2)"),
    ("out strided", lambda: check_out(np.zeros(6)[::2], "out", (3,), np.float64), ValueError, "out", "a C-contiguous array", "a non-contiguous one"),
    ("out F-order", lambda: check_out(np.zeros((2, 3), order="F"), "out", (2, 3), np.float64), ValueError, "out", "a C-contiguous array", "a non-contiguous one"),
    ("out read-only", lambda: check_out(_readonly(np.zeros(3)), "out", (3,), np.float64), ValueError, "out", "a writeable array", "a read-only one"),
    # check_uint_words
    ("words bool", lambda: check_uint_words(True, "key", 2), TypeError, "key", "an integer or 2 uint64 words", "bool True"),
    ("words str", lambda: check_uint_words("12", "key", 2), TypeError, "key", "an integer or 2 uint64 words", "str '12'"),
    ("words None", lambda: check_uint_words(None, "counter", 4), TypeError, "counter", "an integer or 4 uint64 words", "NoneType None"),
    ("words float", lambda: check_uint_words(1.0, "key", 2), TypeError, "key", "an integer or 2 uint64 words", "float 1.0"),
    ("words negative", lambda: check_uint_words(-1, "key", 2), ValueError, "key", "an integer in [0, 2**128)", "-1"),
    ("words too big", lambda: check_uint_words(1 << 256, "counter", 4), ValueError, "counter", "an integer in [0, 2**256)", str(1 << 256)),
    ("words list length", lambda: check_uint_words([1, 2, 3], "key", 2), ValueError, "key", "2 uint64 words", "3 items"),
    ("words list float", lambda: check_uint_words([1, 2.5], "key", 2), TypeError, "key", "2 unsigned 64-bit words", "float 2.5"),
    ("words list bool", lambda: check_uint_words([1, True], "key", 2), TypeError, "key", "2 unsigned 64-bit words", "bool True"),
    ("words list str", lambda: check_uint_words(["1", 2], "key", 2), TypeError, "key", "2 unsigned 64-bit words", "str '1'"),
    ("words list negative", lambda: check_uint_words([1, -2], "key", 2), ValueError, "key", "words in [0, 2**64)", "-2"),
    ("words list 2**64", lambda: check_uint_words([2**64, 0], "key", 2), ValueError, "key", "words in [0, 2**64)", str(2**64)),
    ("words array float", lambda: check_uint_words(np.zeros(2), "key", 2), TypeError, "key", "2 unsigned 64-bit words", "dtype float64"),
    ("words array bool", lambda: check_uint_words(np.zeros(2, bool), "key", 2), TypeError, "key", "2 unsigned 64-bit words", "dtype bool"),
    ("words array shape", lambda: check_uint_words(np.zeros((2, 2), np.uint64), "counter", 4), ValueError, "counter", "4 uint64 words", "shape (2, 2)"),
    ("words array negative", lambda: check_uint_words(np.array([3, -1]), "key", 2), ValueError, "key", "non-negative words", "[3, -1]"),
]


@pytest.mark.parametrize("call,exc,name,expected,received", [e[1:] for e in ERRORS],
                         ids=[e[0] for e in ERRORS])
def test_errors_name_expected_and_received(call, exc, name, expected, received):
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    assert type(info.value) is exc
    assert msg.startswith(f"{name}: expected {expected}"), msg
    head, sep, got = msg.partition(", got ")
    assert sep, msg
    assert got.startswith(received), msg
