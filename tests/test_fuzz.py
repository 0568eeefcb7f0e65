"""A fuzzer over the public API (issue 11): every public name of every family
is in ``TABLE`` (kernels with a description of each argument) or in
``NOT_CALLABLE`` (result types, constants) -- ``test_table_covers_every_public_name``
keeps it so.

For each function, hypothesis builds a valid call (small random sizes, both
dtypes) and then, in most examples, replaces one argument with a hostile
value of its kind: None, strings, bools, lists (ragged too), every dtype kind
(bool, int, float16, complex, object), 0-size and mis-shaped arrays, NaN / inf,
``np.matrix``, masked arrays, non-contiguous, negative-stride and read-only
views, ints at 2**31, 2**63 and 2**64, negative counts, out-of-range floats.
The property: the call returns -- and then the other backend returns the same
bits -- or it raises TypeError / ValueError whose message starts with the name
of an argument (``"<arg>: expected ..."``), and then no input array changed.

Examples per function: 30 (``DLKERNELS_FUZZ_EXAMPLES``; the bounds-checked
CI pass uses fewer).  ``derandomize=True``: the same examples on every run.

Not probed here: valid but long-running sizes (2**40 sweeps): those need
interruptible kernels (see the issue's "hangs" list); counts of 2**31 are
only used where they must be refused.
"""
import inspect
import os
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import dlkernels
from dlkernels import attention, gan, rbm, rng

FAMILY = "rbm"
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning",
                                        "ignore::RuntimeWarning")

# ---- argument kinds: a valid value, and hostile replacements ----------------------------


class Ctx:
    """Sizes and dtype of one example."""

    def __init__(self, seed, dtype):
        self.g = np.random.default_rng(seed)
        self.dt = np.dtype(dtype)
        self.m = int(self.g.integers(1, 6))
        self.n = int(self.g.integers(1, 5))
        self.rows = int(self.g.integers(1, 5))

    def binary(self, rows, cols):
        return (self.g.random((rows, cols)) < 0.5).astype(self.dt)

    def floats(self, *shape, scale=0.3):
        return (scale * self.g.normal(size=shape)).astype(self.dt)


def _array_mutations(x, dt):
    """Hostile and odd-but-valid variants of an array argument."""
    other = np.float32 if np.dtype(dt) == np.float64 else np.float64
    out = [None, "abc", 3.5, [], [[0.0, 1.0], [1.0]], x.astype(np.complex128), x.astype(np.float16),
           x.astype(object), x.astype(other), x.astype(np.int64), x.astype(bool), x.tolist(),
           np.ma.masked_array(x, mask=np.zeros(x.shape, bool)), x[None], x.reshape(-1)[:0]]
    if x.ndim == 2:
        out += [np.matrix(x), np.asfortranarray(x), x[::-1], np.zeros((0, x.shape[1]), dt),
                np.concatenate([x, x[:, :1]], axis=1), x.reshape(-1)]
    if x.ndim >= 1 and x.size:
        nan = x.astype(dt).copy()
        nan.flat[0] = np.nan
        inf = x.astype(dt).copy()
        inf.flat[-1] = -np.inf
        ro = x.copy()
        ro.flags.writeable = False
        out += [nan, inf, ro, np.repeat(x, 2, axis=-1)[..., ::2], x[..., :-1] if x.shape[-1] > 1
                else np.zeros(x.shape[:-1] + (2,), dt)]
    return out


INT_MUTATIONS = [None, -1, 2.5, "3", True, np.float64(2.0), 2**31 * 4, 2**63, 2**64, -(2**63) - 1,
                 [1], np.int8(-3)]
FLOAT_MUTATIONS = [None, np.nan, np.inf, -np.inf, -1.0, "0.1", 1e300, [0.1], complex(1, 1)]
BOOL_MUTATIONS = [None, 2, "yes", 1.0, np.array([True, False])]
SEED_MUTATIONS = [-1, "seed", 1.5, [1, 2], object(), True, 2**300]
CHOICE_MUTATIONS = [None, "bogus", 3, b"numba"]


def kind_mutations(kind, value, dt):
    if kind in ("array", "out"):
        return _array_mutations(np.asarray(value), dt)
    return {"int": INT_MUTATIONS, "float": FLOAT_MUTATIONS, "bool": BOOL_MUTATIONS,
            "seed": SEED_MUTATIONS, "choice": CHOICE_MUTATIONS}[kind]


# ---- the table --------------------------------------------------------------------------
# name: (function, builder(ctx) -> [(param, kind, value)], takes backend, in-place params)

def _model(c):
    return [("W", "array", c.floats(c.m, c.n)), ("a", "array", c.floats(c.m)),
            ("b", "array", c.floats(c.n))]


def _with_transpose(params):
    """The params with ("W_T", "array", W's transpose) appended."""
    W = next(v for name, _, v in params if name == "W")
    return params + [("W_T", "array", np.ascontiguousarray(W.T))]


def _key(c):
    return ("key", "array_key", rng.make_key(int(c.g.integers(0, 2**32))))


TABLE = {
    "rng.make_key": (rng.make_key, lambda c: [("seed", "seed", int(c.g.integers(0, 2**40)))], False, ()),
    "rng.counter": (rng.counter, lambda c: [("stream", "int", 3), ("epoch", "int", 2)], False, ()),
    "rng.advance": (rng.advance, lambda c: [("ctr", "array_key", rng.counter(1, 0)),
                                            ("delta", "int", 5)], False, ()),
    "rng.raw": (rng.raw, lambda c: [_key(c), ("n", "int", int(c.g.integers(0, 20)))], True, ()),
    "rng.uniform": (rng.uniform, lambda c: [_key(c), ("size", "int", int(c.g.integers(0, 30))),
                                            ("dtype", "dtype", c.dt)], True, ()),
    "rng.uniform_streams": (rng.uniform_streams, lambda c: [
        _key(c), ("n", "int", 5), ("streams", "int", 3), ("dtype", "dtype", c.dt)], True, ()),
    "rng.numpy_generator": (rng.numpy_generator, lambda c: [_key(c), ("counter", "int", 4)],
                            False, ()),
    "rng.Streams": (rng.Streams, lambda c: [("seed", "seed", 7)], False, ()),
    "rng.as_streams": (rng.as_streams, lambda c: [("random_state", "seed", 3)], False, ()),
    "rbm.path_thresholds": (rbm.path_thresholds, lambda c: [
        ("m", "int", c.m), ("n", "int", c.n), ("dtype", "dtype", c.dt),
        ("rows", "ints", np.array([c.rows, 70]))], True, ()),
    "rbm.energy": (rbm.energy, lambda c: [("v", "array", c.binary(c.rows, c.m)),
                                          ("h", "array", c.binary(c.rows, c.n))] + _model(c), True, ()),
    "rbm.free_energy": (rbm.free_energy, lambda c: [("v", "array", c.binary(c.rows, c.m))] + _model(c),
                        True, ()),
    "rbm.hidden_probs": (rbm.hidden_probs, lambda c: [
        ("v", "array", c.g.random((c.rows, c.m)).astype(c.dt)), ("W", "array", c.floats(c.m, c.n)),
        ("b", "array", c.floats(c.n)), ("out", "out", np.empty((c.rows, c.n), c.dt))], True, ("out",)),
    "rbm.visible_probs": (rbm.visible_probs, lambda c: [
        ("h", "array", c.binary(c.rows, c.n)), ("W", "array", c.floats(c.m, c.n)),
        ("a", "array", c.floats(c.m)), ("out", "out", np.empty((c.rows, c.m), c.dt))], True, ("out",)),
    "rbm.sample_hidden": (rbm.sample_hidden, lambda c: [
        ("v", "array", c.binary(c.rows, c.m)), ("W", "array", c.floats(c.m, c.n)),
        ("b", "array", c.floats(c.n)), ("random_state", "seed", 1),
        ("return_probs", "bool", True)], True, ()),
    "rbm.sample_visible": (rbm.sample_visible, lambda c: [
        ("h", "array", c.binary(c.rows, c.n)), ("W", "array", c.floats(c.m, c.n)),
        ("a", "array", c.floats(c.m)), ("random_state", "seed", 1)], True, ()),
    "rbm.gibbs_chains": (rbm.gibbs_chains, lambda c: _with_transpose(
        [("v0", "array", c.binary(c.rows, c.m))] + _model(c) + [
            ("k", "int", 2), ("random_state", "seed", 2), ("return_hidden", "bool", False),
            ("mean_last", "int", 1)]), True, ()),
    "rbm.cd_gradient": (rbm.cd_gradient, lambda c: [("v_data", "array", c.binary(c.rows, c.m))]
                        + _model(c) + [("k", "int", 1), ("r", "int", 2),
                                       ("persistent", "array", c.binary(3, c.m)),
                                       ("random_state", "seed", 3)], True, ()),
    "rbm.cd_update": (rbm.cd_update, lambda c: [("v_data", "array", c.binary(c.rows, c.m))]
                      + _model(c) + [("learning_rate", "float", 0.1), ("k", "int", 1),
                                     ("momentum", "float", 0.5),
                                     ("velocity", "velocity", (np.zeros((c.m, c.n), c.dt),
                                                               np.zeros(c.m, c.dt),
                                                               np.zeros(c.n, c.dt))),
                                     ("weight_decay", "float", 1e-3),
                                     ("negative_scale", "choice", "chains"),
                                     ("random_state", "seed", 4)], True, ("W", "a", "b", "velocity")),
    "rbm.single_site_gibbs": (rbm.single_site_gibbs, lambda c: [
        ("v0", "array", c.binary(c.rows, c.m)), ("h0", "array", c.binary(c.rows, c.n))] + _model(c)
        + [("n_steps", "int", 7), ("scan", "choice", "random"), ("random_state", "seed", 5)], True, ()),
    "rbm.transition_matrix": (rbm.transition_matrix, lambda c: _model(c)[:1] + [
        ("a", "array", c.floats(c.m))] + [("b", "array", c.floats(c.n))] + [("sparse", "bool", False)],
        False, ()),
    "rbm.boltzmann_distribution": (rbm.boltzmann_distribution, _model, False, ()),
    "rbm.state_bits": (rbm.state_bits, lambda c: [("index", "int", 5), ("m", "int", c.m),
                                                  ("n", "int", c.n)], False, ()),
    "rbm.exact_log_partition": (rbm.exact_log_partition, _model, False, ()),
    "rbm.ais_log_partition": (rbm.ais_log_partition, lambda c: _model(c) + [
        ("n_runs", "int", 3), ("n_betas", "int", 10), ("random_state", "seed", 6)], True, ()),
    "rbm.ais_betas": (rbm.ais_betas, lambda c: [("n_betas", "int", 12)], False, ()),
    "rbm.log_likelihood": (rbm.log_likelihood, lambda c: [("v", "array", c.binary(c.rows, c.m))]
                           + _model(c) + [("log_z", "float", 3.0)], False, ()),
    "rbm.pseudo_likelihood": (rbm.pseudo_likelihood, lambda c: [
        ("v", "array", c.binary(c.rows, c.m))] + _model(c) + [("exact", "bool", False),
                                                             ("random_state", "seed", 7)], True, ()),
    "rbm.parallel_tempering": (rbm.parallel_tempering, lambda c: _with_transpose([
        ("v0", "array", c.binary(c.rows, c.m))] + _model(c) + [
        ("n_sweeps", "int", 3), ("betas", "array", np.array([0.4, 1.0])), ("swap_every", "int", 1),
        ("return_all", "bool", False), ("random_state", "seed", 8)]), True, ()),
}
# Public names that are not kernels: result types, constants, context managers,
# estimators (fuzzed by their own scikit-learn checks in test_rbm_estimator.py).
NOT_CALLABLE = {
    "rbm": {"CDResult", "AISResult", "PTResult", "blas_single_threaded", "BernoulliRBM"},
    "rng": set(),
}
FAMILIES = {"rng": rng, "rbm": rbm}


def _qkv(c, heads=False):
    B, Tq, Tk, D = c.rows, int(c.g.integers(1, 5)), c.m, c.n + 1
    shape = (B, 2) if heads else (B,)
    return (c.floats(*shape, Tq, D), c.floats(*shape, Tk, D), c.floats(*shape, Tk, D), Tq)


def _attn_common(c, grad=False):
    q, k, v, Tq = _qkv(c)
    out = [("q", "array", q), ("k", "array", k), ("v", "array", v)]
    if grad:
        out.insert(0, ("grad_context", "array", c.floats(q.shape[0], Tq, v.shape[-1])))
    B, Tk, D = k.shape
    H = 3
    if c.g.random() < 0.5:
        out += [("score", "choice", "scaled_dot")]
    else:
        out += [("score", "choice", "additive"),
                ("params", "params", {"Wq": c.floats(D, H), "Wk": c.floats(D, H), "v": c.floats(H)})]
    out += [("lengths", "ints", c.g.integers(0, Tk + 1, B)), ("causal", "bool", False)]
    return out


def _pool(c, grad=False, padded=False):
    H, A = c.n + 1, 3
    if padded:
        st_ = [("states", "array", c.floats(c.rows, c.m, H)),
               ("lengths", "ints", c.g.integers(0, c.m + 1, c.rows))]
    else:
        N = int(c.g.integers(0, 8))
        cuts = np.sort(c.g.integers(0, N + 1, c.rows - 1)) if c.rows > 1 else np.zeros(0, int)
        st_ = [("states", "array", c.floats(N, H)),
               ("offsets", "ints", np.concatenate([[0], cuts, [N]]).astype(np.int64))]
    out = st_ + [("W", "array", c.floats(H, A)), ("b", "array", c.floats(A)),
                 ("u", "array", c.floats(A))]
    if grad:
        out.insert(0, ("grad_pooled", "array", c.floats(c.rows, H)))
    return out


def _han(c, grad=False):
    H, A = c.n + 1, 3
    N = int(c.g.integers(1, 9))
    S = int(c.g.integers(1, 4))
    so = np.concatenate([[0], np.sort(c.g.integers(0, N + 1, S - 1)), [N]]).astype(np.int64)
    D = int(c.g.integers(1, S + 1))
    do = np.concatenate([[0], np.sort(c.g.integers(0, S + 1, D - 1)), [S]]).astype(np.int64)
    params = {"Ww": c.floats(H, A), "bw": c.floats(A), "uw": c.floats(A),
              "Ws": c.floats(H, A), "bs": c.floats(A), "us": c.floats(A)}
    out = [("word_states", "array", c.floats(N, H)), ("sentence_offsets", "ints", so),
           ("document_offsets", "ints", do), ("params", "params", params)]
    if grad:
        out.insert(0, ("grad_documents", "array", c.floats(D, H)))
    return out


def _sdpa(c, grad=False):
    q, k, v, Tq = _qkv(c, heads=True)
    out = [("query", "array", q), ("key", "array", k), ("value", "array", v),
           ("is_causal", "bool", bool(c.g.random() < 0.3)), ("dropout_p", "float", 0.0),
           ("scale", "float", 0.7)]
    if grad:
        o, lse = attention.scaled_dot_product_attention(q, k, v, scale=0.7, return_lse=True,
                                                        is_causal=out[3][2])
        out = [("grad_out", "array", c.floats(*o.shape))] + out[:3] + [
            ("out", "array", o), ("lse", "array", lse)] + out[3:]
    return out


def _mlps(c):
    G = gan.MLP([2, 4, 3], ["relu", "identity"], dtype=c.dt, random_state=1)
    D = gan.MLP([3, 5, 1], ["leaky_relu", "identity"], dtype=c.dt, random_state=2)
    return G, D


def _dense(c, backward=False):
    K, n = c.m, c.n
    x, W, b = c.floats(c.rows, K), c.floats(K, n), c.floats(n)
    out = [("x", "array", x), ("W", "array", W)]
    if backward:
        _, cache = gan.dense_forward(x, W, b, "tanh")
        return out + [("gy", "array", c.floats(c.rows, n)), ("cache", "array", cache),
                      ("activation", "choice", "tanh")]
    return out + [("b", "array", b), ("activation", "choice", "tanh")]


TABLE.update({
    "attention.scores": (attention.scores, lambda c: [
        p for p in _attn_common(c) if p[0] in ("q", "k", "score", "params")], True, ()),
    "attention.masked_softmax": (attention.masked_softmax, lambda c: [
        ("scores", "array", c.floats(c.rows, 3, c.m)), ("lengths", "ints", c.g.integers(0, c.m + 1, c.rows)),
        ("causal", "bool", bool(c.g.random() < 0.5))], True, ()),
    "attention.attend": (attention.attend, lambda c: _attn_common(c) + [("return_weights", "bool", True)],
                         True, ()),
    "attention.project_keys": (attention.project_keys, lambda c: [
        ("k", "array", c.floats(c.rows, c.m, c.n + 1)), ("score", "choice", "additive"),
        ("params", "params", {"Wq": c.floats(2, 3), "Wk": c.floats(c.n + 1, 3), "v": c.floats(3)})],
        True, ()),
    "attention.attend_backward": (attention.attend_backward, lambda c: _attn_common(c, grad=True), True, ()),
    "attention.local_attend": (attention.local_attend, lambda c: [
        p for p in _attn_common(c) if p[0] in ("q", "k", "v", "lengths")] + [
        ("window", "int", 1), ("position", "choice", "monotonic"), ("score", "choice", "dot")], True, ()),
    "attention.local_attend_backward": (attention.local_attend_backward, lambda c: [
        p for p in _attn_common(c, grad=True) if p[0] in ("grad_context", "q", "k", "v", "lengths")] + [
        ("window", "int", 1), ("position", "choice", "monotonic"), ("score", "choice", "dot")], True, ()),
    "attention.attention_pool": (attention.attention_pool, _pool, True, ()),
    "attention.attention_pool_backward": (attention.attention_pool_backward,
                                          lambda c: _pool(c, grad=True), True, ()),
    "attention.attention_pool_padded": (attention.attention_pool_padded,
                                        lambda c: _pool(c, padded=True), True, ()),
    "attention.attention_pool_padded_backward": (attention.attention_pool_padded_backward,
                                                 lambda c: _pool(c, grad=True, padded=True), True, ()),
    "attention.han_pool": (attention.han_pool, _han, True, ()),
    "attention.han_pool_backward": (attention.han_pool_backward, lambda c: _han(c, grad=True), True, ()),
    "attention.scaled_dot_product_attention": (attention.scaled_dot_product_attention, _sdpa, True, ()),
    "attention.scaled_dot_product_attention_backward": (
        attention.scaled_dot_product_attention_backward, lambda c: _sdpa(c, grad=True), True, ()),
    "gan.MLP": (gan.MLP, lambda c: [("sizes", "ints", np.array([3, 4, 1])),
                                    ("activations", "choice", ["tanh", "identity"]),
                                    ("random_state", "seed", 3)], False, ()),
    "gan.discriminator_gradients": (gan.discriminator_gradients, lambda c: (lambda G, D: [
        ("G", "object", G), ("D", "object", D), ("x_real", "array", c.floats(c.rows, 3)),
        ("z", "array", c.floats(c.rows, 2))])(*_mlps(c)), True, ()),
    "gan.generator_gradients": (gan.generator_gradients, lambda c: (lambda G, D: [
        ("G", "object", G), ("D", "object", D), ("z", "array", c.floats(c.rows, 2)),
        ("loss", "choice", "minimax")])(*_mlps(c)), True, ()),
    "gan.dense_forward": (gan.dense_forward, _dense, True, ()),
    "gan.dense_backward": (gan.dense_backward, lambda c: _dense(c, backward=True), True, ()),
    "gan.train_gan": (gan.train_gan, lambda c: (lambda G, D: [
        ("X", "array", c.floats(8, 3)), ("G", "object", G), ("D", "object", D),
        ("n_epochs", "int", 1), ("batch_size", "int", 4), ("k", "int", 1),
        ("learning_rate", "float", 0.01), ("random_state", "seed", 5),
        ("progress", "bool", False)])(*_mlps(c)), True, ()),
    "gan.ring_modes": (gan.ring_modes, lambda c: [("n_modes", "int", 8), ("radius", "float", 2.0)],
                       False, ()),
    "gan.grid_modes": (gan.grid_modes, lambda c: [("n_side", "int", 3), ("spacing", "float", 1.0)],
                       False, ()),
    "gan.sample_ring": (gan.sample_ring, lambda c: [("n", "int", 10), ("std", "float", 0.02),
                                                    ("random_state", "seed", 1)], False, ()),
    "gan.sample_grid": (gan.sample_grid, lambda c: [("n", "int", 10), ("std", "float", 0.05),
                                                    ("random_state", "seed", 1)], False, ()),
    "gan.mode_metrics": (gan.mode_metrics, lambda c: [
        ("samples", "array", c.floats(20, 2, scale=2.0)), ("modes", "array", gan.ring_modes().astype(c.dt)),
        ("std", "float", 0.02)], False, ()),
    "gan.parzen_log_likelihood": (gan.parzen_log_likelihood, lambda c: [
        ("samples", "array", c.floats(30, 2)), ("test", "array", c.floats(10, 2)),
        ("sigma", "float", 0.3)], False, ()),
})
NOT_CALLABLE.update({
    "attention": {"SCORES", "LocalAttention", "HANResult"},
    "gan": {"ACTIVATIONS", "GANTrainer", "GANTrainingError"},  # GANTrainer: through train_gan
})
FAMILIES.update({"attention": attention, "gan": gan})


def test_table_covers_every_public_name():
    for fam, mod in FAMILIES.items():
        names = set(mod.__all__) - NOT_CALLABLE[fam]
        missing = sorted(n for n in names if f"{fam}.{n}" not in TABLE)
        assert not missing, f"public names of {fam} missing from the fuzz table: {missing}"


# ---- the property -----------------------------------------------------------------------

def _extra_mutations(kind, value, dt):
    if kind == "array_key":
        return [None, "key", -1, np.array([1, 2, 3], np.uint64), np.array([1.5, 2.0]),
                np.array([-1, 2]), [2**64, 0], np.zeros((2, 2), np.uint64)]
    if kind == "params":
        bad = {k: v.astype(np.float16) for k, v in value.items()}
        first = next(iter(value))
        return [None, [], "W", {}, dict(value, extra=np.zeros(2)), bad,
                {k: (v[..., :-1] if v.shape[-1] > 1 else np.zeros(v.shape[:-1] + (3,), v.dtype))
                 for k, v in value.items()},
                {k: (np.full_like(v, np.nan) if k == first else v) for k, v in value.items()},
                {k: None for k in value}]
    if kind == "object":
        return [None, "G", 3, np.zeros((2, 2))]
    if kind == "ints":
        v = np.asarray(value)
        return [None, v.astype(np.float64) + 0.5, v[::-1].copy(), v - 10, v + 1000, v[:0], [1.5],
                v.astype(np.uint64) if v.min() >= 0 else v, np.ma.masked_array(v), "x", v[None]]
    if kind == "dtype":
        return [np.int32, "float16", None, np.complex64, object]
    if kind == "velocity":
        vW, va, vb = value
        ro = vW.copy()
        ro.flags.writeable = False
        return [None, (vW,), [vW, va, vb], (vW.T.copy(), va, vb), (vW.astype(np.float16), va, vb),
                (ro, va, vb), (vW, va, "x")]
    return kind_mutations(kind, value, dt)


def _snapshot(values):
    out = []
    for v in values:
        if isinstance(v, np.ndarray):
            out.append(v.copy())
        elif isinstance(v, tuple):
            out.append(tuple(x.copy() if isinstance(x, np.ndarray) else x for x in v))
        else:
            out.append(None)
    return out


def _same(x, y):
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != y.shape or x.dtype != y.dtype:
            return False
        if x.dtype.kind in "fc":
            return bool(np.array_equal(x, y, equal_nan=True))
        return bool(np.array_equal(x, y))
    if isinstance(x, tuple) and isinstance(y, tuple):
        return len(x) == len(y) and all(_same(a, b) for a, b in zip(x, y))
    if isinstance(x, float) and isinstance(y, float):
        return x == y or (x != x and y != y)
    if hasattr(x, "toarray") and hasattr(y, "toarray"):
        return _same(x.toarray(), y.toarray())
    return True  # other objects (Streams, generators): not compared


MSG = re.compile(r"^([A-Za-z_][\w]*)(\[[^\]]*\])?(, [A-Za-z_]\w*)*: ")


def _fresh(values):
    return [v.copy() if isinstance(v, np.ndarray)
            else tuple(x.copy() for x in v) if isinstance(v, tuple) and
            all(isinstance(x, np.ndarray) for x in v) else v for v in values]


@pytest.mark.parametrize("name", sorted(TABLE))
@settings(max_examples=int(os.environ.get("DLKERNELS_FUZZ_EXAMPLES", "30")), deadline=None,
          derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz(name, data):
    fn, builder, takes_backend, inplace = TABLE[name]
    seed = data.draw(st.integers(0, 2**16), label="seed")
    dt = data.draw(st.sampled_from([np.float32, np.float64]), label="dtype")
    c = Ctx(seed, dt)
    params = builder(c)
    names = [p[0] for p in params]
    values = [p[2] for p in params]
    which = data.draw(st.integers(-1, len(params) - 1), label="mutated argument")
    if which >= 0:
        pname, kind, value = params[which]
        pool = _extra_mutations(kind, value, dt)
        values[which] = pool[data.draw(st.integers(0, len(pool) - 1), label=f"mutation of {pname}")]
    sig = inspect.signature(fn)
    arg_names = set(sig.parameters)

    def call(vals, backend=None):
        kw = dict(zip(names, vals))
        if takes_backend:
            kw["backend"] = backend
        pos = [kw.pop(p.name) for p in sig.parameters.values()
               if p.kind == p.POSITIONAL_OR_KEYWORD and p.name in kw and p.default is p.empty]
        return fn(*pos, **kw)

    before = _snapshot(values)
    first = "numba" if takes_backend else None
    try:
        res = call(values, first)
    except (TypeError, ValueError) as exc:
        msg = str(exc)
        m = MSG.match(msg)
        assert m, f"{name}: message does not start with an argument name: {msg!r}"
        head = re.split(r"[\[,]", m.group(0).rstrip(": "))[0]
        assert head in arg_names or head in ("state", "index"), f"{name}: {msg!r} names {head!r}"
        for v, b in zip(values, before):  # a failed call changes nothing
            if isinstance(b, np.ndarray):
                assert _same(v, b), f"{name}: an input changed before the error {msg!r}"
        return
    if takes_backend:
        # the other backend, on fresh copies of the same inputs, gives the same bits
        require = dlkernels.available_backends(name.split(".")[0])
        if "cython" in require:
            again = call(_fresh([b if isinstance(b, np.ndarray) else v
                                 for v, b in zip(values, before)]) if inplace else values, "cython")
            assert _same(res, again), f"{name}: backends disagree"
