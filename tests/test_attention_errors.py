"""Every documented error of dlkernels.attention, from a table: the exception
type and a message naming the argument."""
import numpy as np
import pytest

from dlkernels import attention as A

FAMILY = "attention"

rng = np.random.default_rng(0)
q = rng.standard_normal((2, 3, 4))
k = rng.standard_normal((2, 5, 4))
v = rng.standard_normal((2, 5, 3))
k6 = rng.standard_normal((2, 5, 6))
P_add = {"Wq": np.ones((4, 7)), "Wk": np.ones((4, 7)), "v": np.ones(7)}
P_gen = {"W": np.ones((4, 6))}
dctx = np.ones((2, 3, 3))
X = rng.standard_normal((6, 3))
off = np.array([0, 2, 2, 6])
W, b, u = np.ones((3, 2)), np.zeros(2), np.ones(2)
HP = dict(Ww=W, bw=b, uw=u, Ws=W, bs=b, us=u)


def nan_at(x, idx):
    x = x.copy()
    x[idx] = np.nan
    return x


CASES = [
    # (id, call, exception, message)
    ("q 2-d", lambda: A.attend(q[0], k, v), ValueError, "q: expected a 3-d array"),
    ("q str", lambda: A.attend("x", k, v), TypeError, "q: expected an array"),
    ("q int8 ok, complex bad", lambda: A.attend(q.astype(complex), k, v), TypeError, "q: expected a real"),
    ("mixed widths", lambda: A.attend(q.astype(np.float32), k, v), TypeError, "k: expected dtype float32"),
    ("batch", lambda: A.attend(q, k[:1], v), ValueError, "k: expected batch size 2"),
    ("v keys", lambda: A.attend(q, k, v[:, :4]), ValueError, "v: expected shape"),
    ("dot features", lambda: A.attend(q, k6, v), ValueError, "k: expected feature size 4"),
    ("score", lambda: A.attend(q, k, v, score="cosine"), ValueError, "score: expected one of"),
    ("score type", lambda: A.attend(q, k, v, score=1), TypeError, "score: expected one of"),
    ("params type", lambda: A.attend(q, k6, v, score="general", params=[1]), TypeError,
     "params: expected a dict"),
    ("params missing", lambda: A.attend(q, k6, v, score="general", params={}), ValueError,
     "missing 'W'"),
    ("params unknown", lambda: A.attend(q, k6, v, score="general", params=dict(P_gen, X=1)),
     ValueError, "params: expected only keys"),
    ("params for dot", lambda: A.attend(q, k, v, params={"W": 1}), ValueError,
     "params: expected only keys"),
    ("W shape", lambda: A.attend(q, k6, v, score="general", params={"W": np.ones((4, 5))}),
     ValueError, r"params\['W'\]: expected shape"),
    ("Wk shape", lambda: A.attend(q, k, v, score="additive", params=dict(P_add, Wk=np.ones((4, 6)))),
     ValueError, r"params\['Wk'\]: expected shape"),
    ("v param shape", lambda: A.attend(q, k, v, score="additive", params=dict(P_add, v=np.ones(6))),
     ValueError, r"params\['v'\]: expected shape"),
    ("b shape", lambda: A.attend(q, k, v, score="additive", params=dict(P_add, b=np.ones(3))),
     ValueError, r"params\['b'\]: expected shape"),
    ("g shape", lambda: A.attend(q, k, v, score="additive", params=dict(P_add, g=np.ones(2))),
     ValueError, r"params\['g'\]: expected shape"),
    ("g zero v", lambda: A.attend(q, k, v, score="additive", params=dict(P_add, g=1.0, v=np.zeros(7))),
     ValueError, "nonzero"),
    ("concat W", lambda: A.attend(q, k, v, score="concat", params={"W": np.ones((7, 3)), "v": np.ones(3)}),
     ValueError, r"params\['W'\]: expected shape \(8, any\)"),
    ("param dtype", lambda: A.attend(q, k6, v, score="general", params={"W": np.ones((4, 6), np.float32)}),
     TypeError, r"params\['W'\]: expected dtype float64"),
    ("param nan", lambda: A.attend(q, k6, v, score="general", params={"W": nan_at(np.ones((4, 6)), (0, 0))}),
     ValueError, r"params\['W'\]: expected finite"),
    ("lengths > Tk", lambda: A.attend(q, k, v, lengths=[1, 6]), ValueError,
     r"lengths: expected values in \[0, 5\], got 6"),
    ("lengths < 0", lambda: A.attend(q, k, v, lengths=[-1, 2]), ValueError, "lengths: expected values"),
    ("lengths float", lambda: A.attend(q, k, v, lengths=[1.0, 2.0]), TypeError, "lengths: expected an integer"),
    ("lengths shape", lambda: A.attend(q, k, v, lengths=[1, 2, 3]), ValueError, r"lengths: expected shape \(2,\)"),
    ("mask dtype", lambda: A.attend(q, k, v, mask=np.ones((3, 5), int)), TypeError, "mask: expected a bool"),
    ("mask shape", lambda: A.attend(q, k, v, mask=np.ones((3, 4), bool)), ValueError, "mask: expected an array broadcastable"),
    ("mask 4-d", lambda: A.attend(q, k, v, mask=np.ones((1, 2, 3, 5), bool)), ValueError, "mask: expected an array broadcastable"),
    ("mask nan", lambda: A.attend(q, k, v, mask=np.full((3, 5), np.nan)), ValueError, "mask: expected float values"),
    ("causal", lambda: A.attend(q, k, v, causal=1), TypeError, "causal: expected True or False"),
    ("return_weights", lambda: A.attend(q, k, v, return_weights="yes"), TypeError, "return_weights"),
    ("nan q", lambda: A.attend(nan_at(q, (0, 0, 0)), k, v), ValueError, "q: expected finite"),
    ("nan k attended", lambda: A.attend(q, nan_at(k, (1, 4, 0)), v), ValueError, "k: expected finite values at attended"),
    ("nan v attended", lambda: A.attend(q, k, nan_at(v, (1, 4, 0)), lengths=[5, 5]), ValueError, "v: expected finite"),
    ("backend", lambda: A.attend(q, k, v, backend="cuda"), ValueError, "backend: expected one of"),
    ("grad_context shape", lambda: A.attend_backward(dctx[:, :2], q, k, v), ValueError, "grad_context: expected shape"),
    ("grad_context dtype", lambda: A.attend_backward(dctx.astype(np.float32), q, k, v), TypeError, "grad_context: expected dtype"),
    ("grad_weights shape", lambda: A.attend_backward(dctx, q, k, v, grad_weights=np.ones((2, 3, 4))), ValueError, "grad_weights: expected shape"),
    ("grad nan", lambda: A.attend_backward(nan_at(dctx, (0, 0, 0)), q, k, v), ValueError, "grad_context: expected finite"),
    ("scores 2-d", lambda: A.masked_softmax(np.ones((3, 4))), ValueError, "scores: expected a 3-d"),
    ("scores k nan", lambda: A.scores(q, nan_at(k, (0, 0, 0)), score="dot"), ValueError, "k: expected finite"),
    ("window < 0", lambda: A.local_attend(q, k6, v, window=-1, params=P_gen), ValueError, "window: expected an integer >= 0"),
    ("window float", lambda: A.local_attend(q, k6, v, window=1.5, params=P_gen), TypeError, "window: expected an integer"),
    ("position", lambda: A.local_attend(q, k6, v, window=1, position="x", params=P_gen), ValueError, "position: expected one of"),
    ("position_params missing", lambda: A.local_attend(q, k6, v, window=1, position="predictive", params=P_gen), TypeError, "position_params: expected a dict"),
    ("position_params key", lambda: A.local_attend(q, k6, v, window=1, position="predictive", params=P_gen, position_params={"Wp": np.ones((4, 2))}), ValueError, "missing 'vp'"),
    ("position_params shape", lambda: A.local_attend(q, k6, v, window=1, position="predictive", params=P_gen, position_params={"Wp": np.ones((4, 2)), "vp": np.ones(3)}), ValueError, r"position_params\['vp'\]: expected shape"),
    ("position_params monotonic", lambda: A.local_attend(q, k6, v, window=1, params=P_gen, position_params={}), ValueError, "position_params: expected None"),
    ("local lengths", lambda: A.local_attend(q, k6, v, window=1, params=P_gen, lengths=[9, 1]), ValueError, "lengths: expected values"),
    ("offsets end", lambda: A.attention_pool(X, [0, 2, 5], W, b, u), ValueError, "offsets: expected offsets ending at 6"),
    ("offsets start", lambda: A.attention_pool(X, [1, 2, 6], W, b, u), ValueError, "offsets: expected offsets starting at 0"),
    ("offsets decreasing", lambda: A.attention_pool(X, [0, 4, 2, 6], W, b, u), ValueError, "non-decreasing"),
    ("offsets float", lambda: A.attention_pool(X, [0.0, 6.0], W, b, u), TypeError, "offsets: expected an integer"),
    ("offsets 2-d", lambda: A.attention_pool(X, [[0, 6]], W, b, u), ValueError, "offsets: expected a 1-d"),
    ("pool W", lambda: A.attention_pool(X, off, np.ones((4, 2)), b, u), ValueError, r"W: expected shape \(3, any\)"),
    ("pool u", lambda: A.attention_pool(X, off, W, b, np.ones(3)), ValueError, r"u: expected shape \(2,?\)"),
    ("pool nan", lambda: A.attention_pool(nan_at(X, (0, 0)), off, W, b, u), ValueError, "states: expected finite"),
    ("pool grad", lambda: A.attention_pool_backward(np.ones((2, 3)), X, off, W, b, u), ValueError, "grad_pooled: expected shape"),
    ("padded lengths", lambda: A.attention_pool_padded(np.ones((2, 3, 3)), [4, 1], W, b, u), ValueError, "lengths: expected values"),
    ("padded nan", lambda: A.attention_pool_padded(nan_at(np.ones((2, 3, 3)), (0, 0, 0)), [1, 1], W, b, u), ValueError, "states: expected finite"),
    ("han params", lambda: A.han_pool(X, off, [0, 3], {"Ww": W}), ValueError, "missing 'bw'"),
    ("han params type", lambda: A.han_pool(X, off, [0, 3], None), TypeError, "params: expected a dict"),
    ("han doc offsets", lambda: A.han_pool(X, off, [0, 2], HP), ValueError, "document_offsets: expected offsets ending at 3"),
    ("han Ws", lambda: A.han_pool(X, off, [0, 3], dict(HP, Ws=np.ones((2, 2)))), ValueError, r"params\['Ws'\]: expected shape"),
    ("han grad", lambda: A.han_pool_backward(np.ones((2, 3)), X, off, [0, 3], HP), ValueError, "grad_documents: expected shape"),
]


@pytest.mark.parametrize("call, exc, msg", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_error(call, exc, msg):
    with pytest.raises(exc, match=msg):
        call()


def test_padded_nan_in_padding_is_fine():
    Xp = np.ones((2, 3, 3))
    Xp[0, 2] = np.nan
    pooled, w = A.attention_pool_padded(Xp, [2, 3], W, b, u)
    assert np.isfinite(pooled).all() and w[0, 2] == 0
    g = A.attention_pool_padded_backward(np.ones((2, 3)), Xp, [2, 3], W, b, u)
    assert all(np.isfinite(x).all() for x in g.values())


def test_failed_call_changes_nothing():
    q0, k0, v0 = q.copy(), k.copy(), v.copy()
    with pytest.raises(ValueError):
        A.attend(q, k, v, lengths=[9, 9])
    np.testing.assert_array_equal(q, q0)
    np.testing.assert_array_equal(k, k0)
    np.testing.assert_array_equal(v, v0)
