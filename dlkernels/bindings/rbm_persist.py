"""Saving and loading ``BernoulliRBM`` (``dlkernels.rbm.BernoulliRBM.save`` /
``.load``): what of the estimator goes into the file and how it comes back.

The file mechanics -- atomic write, signature, format version, checksum, no
pickles -- are the shared ``_persist`` module's; this module maps the
estimator's state onto its arrays and metadata:

arrays   ``W`` (m, n), ``intercept_visible`` (m,), ``intercept_hidden`` (n,),
         ``h_samples`` (the persistent chains), ``velocity_W/_a/_b`` (the
         momentum buffers), ``pt_replicas`` / ``pt_accepted`` / ``pt_rounds``
         (``sampler="pt"``: the replicas and the swap counters),
         ``feature_names_in``; only those that exist.
meta     ``params`` (``get_params()``, JSON scalars; a generator object as
         ``random_state`` is stored as None, its state travels in
         ``rng_state``), ``fitted``, ``n_features_in``, ``n_iter_``,
         ``fit_pos`` (epoch, minibatch, n_samples: where a resumed fit
         continues), ``rng_state`` (the ``Streams`` state).
"""
from numbers import Integral

import numpy as np

from . import _persist
from . import rng as _rng

MAGIC = "dlkernels.BernoulliRBM"
FORMAT_VERSION = 1
WHAT = "dlkernels BernoulliRBM"


def save_estimator(est, path):
    """Write the whole training state of ``est`` to ``path`` (atomically).

    Parameters
    ----------
    est : BernoulliRBM
    path : str, bytes or os.PathLike

    Returns
    -------
    str
        ``path`` as a string.
    """
    params = {}
    for name, value in est.get_params(deep=False).items():
        if name == "random_state" and not (value is None or isinstance(value, Integral)):
            value = None  # the state of a generator object travels in rng_state
        if name == "n_temperatures" and not isinstance(value, Integral):
            # a ladder of inverse temperatures: a JSON list of floats
            params[name] = [float(x) for x in np.asarray(value, dtype=np.float64).ravel()]
            continue
        params[name] = _persist.json_scalar(value)
    meta = {"params": params, "fitted": hasattr(est, "components_")}
    arrays = {}
    if meta["fitted"]:
        est._normalize_layout()
        arrays["W"] = est._weights()
        arrays["intercept_visible"] = est.intercept_visible_
        arrays["intercept_hidden"] = est.intercept_hidden_
        if hasattr(est, "h_samples_"):
            arrays["h_samples"] = est.h_samples_
        vel = getattr(est, "_velocity", None)
        if vel is not None:
            arrays["velocity_W"], arrays["velocity_a"], arrays["velocity_b"] = vel
        if "pt_replicas_" in est.__dict__ and "_pt_accepted" in est.__dict__:
            arrays["pt_replicas"] = np.ascontiguousarray(est.pt_replicas_)
            arrays["pt_accepted"] = est._pt_accepted
            arrays["pt_rounds"] = est._pt_rounds
        meta["n_features_in"] = int(est.n_features_in_)
        if hasattr(est, "feature_names_in_"):
            arrays["feature_names_in"] = np.asarray(est.feature_names_in_, dtype=str)
        if hasattr(est, "n_iter_"):
            meta["n_iter_"] = int(est.n_iter_)
        if hasattr(est, "_fit_pos"):
            meta["fit_pos"] = [int(x) for x in est._fit_pos]
    if hasattr(est, "random_state_"):
        meta["rng_state"] = est.random_state_.get_state()
    return _persist.save(path, arrays, meta, magic=MAGIC, version=FORMAT_VERSION)


def _meta_int(x, name, bad, lo=0, hi=2**62):
    """A metadata integer, as strictly checked as user input."""
    if isinstance(x, bool) or not isinstance(x, int) or not lo <= x <= hi:
        raise bad(f"{name}: expected an integer in [{lo}, {hi}], got {x!r}")
    return x


def _fit_pos(fp, est, bad):
    """``fit_pos`` = [epoch, minibatch, n_samples] of a resumable fit: the
    minibatch must exist for n_samples rows at the saved batch size."""
    if not isinstance(fp, list) or len(fp) != 3:
        raise bad(f"fit_pos: expected [epoch, minibatch, n_samples], got {fp!r}")
    epoch = _meta_int(fp[0], "fit_pos epoch", bad)
    n_samples = _meta_int(fp[2], "fit_pos n_samples", bad, lo=1)
    n_batches = -(-n_samples // int(est.batch_size))
    batch = _meta_int(fp[1], "fit_pos minibatch", bad, hi=n_batches)
    return [epoch, batch, n_samples]


def load_estimator(cls, path):
    """An estimator of class ``cls`` from a file written by ``save_estimator``.

    Parameters
    ----------
    cls : type
        ``BernoulliRBM`` (or a subclass).
    path : str, bytes or os.PathLike

    Returns
    -------
    BernoulliRBM

    Raises
    ------
    ValueError
        If the file is corrupt, truncated, not a BernoulliRBM file of a known
        format version, or its contents are inconsistent.
    OSError
        If the file cannot be read.
    """
    arrays, meta, _ = _persist.load(path, magic=MAGIC, versions=(FORMAT_VERSION,), what=WHAT)

    def bad(why):
        return _persist.invalid(path, WHAT, why)
    if not isinstance(meta.get("params"), dict):
        raise bad("metadata without parameters")
    prefix = repr(_persist._path(path))
    try:
        est = cls(**meta["params"])
        est._validate_params()
        if meta.get("fitted"):
            W = arrays["W"]
            a = arrays["intercept_visible"]
            b = arrays["intercept_hidden"]
            dt = W.dtype
            m, n = W.shape
            if (dt not in (np.float32, np.float64) or a.shape != (m,) or b.shape != (n,)
                    or a.dtype != dt or b.dtype != dt or n != est.n_components
                    or meta["n_features_in"] != m):
                raise bad("inconsistent array shapes or dtypes")
            for x, name in ((W, "W"), (a, "intercept_visible"), (b, "intercept_hidden")):
                if not np.isfinite(x).all():
                    raise bad(f"non-finite values in {name}")
            est.components_ = np.ascontiguousarray(W).T
            est.intercept_visible_ = np.ascontiguousarray(a)
            est.intercept_hidden_ = np.ascontiguousarray(b)
            if "h_samples" in arrays:
                h = arrays["h_samples"]
                if (h.ndim != 2 or h.shape[1] != n or h.dtype != dt or h.shape[0] < 1
                        or not np.isin(h, (0, 1)).all()):
                    raise bad("inconsistent h_samples (expected 0/1 chains of the hidden layer)")
                est.h_samples_ = np.ascontiguousarray(h)
            if "velocity_W" in arrays:
                vel = tuple(np.ascontiguousarray(arrays[f"velocity_{x}"]) for x in "Wab")
                if (vel[0].shape != W.shape or vel[1].shape != (m,) or vel[2].shape != (n,)
                        or any(x.dtype != dt or not np.isfinite(x).all() for x in vel)):
                    raise bad("inconsistent velocity arrays")
                est._velocity = vel
            else:
                est._velocity = None
            if "pt_replicas" in arrays:
                V, acc = arrays["pt_replicas"], arrays["pt_accepted"]
                rounds = arrays["pt_rounds"]
                if (V.ndim != 3 or V.shape[2] != m or V.shape[1] < 2 or V.dtype != dt
                        or not np.isin(V, (0, 1)).all()
                        or acc.shape != (V.shape[0], V.shape[1] - 1) or acc.dtype != np.int64
                        or rounds.shape != (1,) or rounds.dtype != np.int64
                        or rounds[0] < 0 or (acc < 0).any() or (acc > rounds[0]).any()):
                    raise bad("inconsistent parallel tempering state (pt_replicas, "
                              "pt_accepted, pt_rounds)")
                est.pt_replicas_ = np.ascontiguousarray(V)
                est._pt_accepted = np.ascontiguousarray(acc)
                est._pt_rounds = np.ascontiguousarray(rounds)
            est.n_features_in_ = m
            est._n_features_out = n
            if "feature_names_in" in arrays:
                est.feature_names_in_ = arrays["feature_names_in"].astype(object)
            if "n_iter_" in meta:
                est.n_iter_ = _meta_int(meta["n_iter_"], "n_iter_", bad)
            if "fit_pos" in meta:
                est._fit_pos = _fit_pos(meta["fit_pos"], est, bad)
        if "rng_state" in meta:
            streams = _rng.Streams(0)
            streams.set_state(meta["rng_state"])
            est.random_state_ = streams
    except ValueError as exc:
        if str(exc).startswith(prefix):
            raise
        raise bad(f"{type(exc).__name__}: {exc}") from None
    except (KeyError, TypeError, AttributeError) as exc:
        raise bad(f"{type(exc).__name__}: {exc}") from None
    return est
