"""The Numba and Cython engine modules of every family are twins: the same
kernel names (``__all__``), the same parameter names in the same order, and
the same shared constants (module-level UPPERCASE ints: tile sizes,
thresholds, op codes), so that a binding can call either backend with the
same keywords.  A family whose engine modules do not import yet is skipped.
"""
import importlib
import inspect
import re

import pytest

from dlkernels.bindings._backend import FAMILIES

FAMILY = "rng"      # this module checks every family; the fixture default is unused


def _modules(family):
    mods = []
    for backend in ("numba", "cython"):
        name = f"dlkernels.engine.{backend}.{family}"
        try:
            mods.append(importlib.import_module(name))
        except ImportError as exc:
            pytest.skip(f"{name} does not import ({type(exc).__name__}: {exc})")
    return mods


def numba_params(f):
    """Parameter names of a Numba kernel (its Python function), or None for
    something that is not a jitted function."""
    py = getattr(f, "py_func", None)
    if py is None:
        return None
    return list(inspect.signature(py).parameters)


_DOC_SIG = re.compile(r"^\s*\w+\((.*?)\)")


def cython_params(f):
    """Parameter names of a Cython function: the signature of its (first,
    for a fused function) specialisation, else the one ``embedsignature``
    puts on the first line of the docstring."""
    sigs = getattr(f, "__signatures__", None)
    if sigs:
        f = f[next(iter(sigs))]
    try:
        return list(inspect.signature(f).parameters)
    except (TypeError, ValueError):
        pass
    m = _DOC_SIG.match(f.__doc__ or "")
    if m is None:
        return None
    names = []
    for part in filter(None, (p.strip() for p in m.group(1).split(","))):
        part = part.split("=")[0].strip()
        names.append(re.split(r"[\s*&\]]+", part)[-1])
    return names


def exports(mod):
    """``__all__``, or (while a module lacks one) its public names."""
    names = getattr(mod, "__all__", None)
    if names is None:
        names = [k for k, v in vars(mod).items()
                 if not k.startswith("_") and not inspect.ismodule(v)]
    return set(names)


def constants(mod):
    """Public module-level UPPERCASE ints."""
    return {k: v for k, v in vars(mod).items()
            if k.isupper() and not k.startswith("_") and isinstance(v, int) and not isinstance(v, bool)}


def test_cython_signature_parsing_from_docstrings():
    import types

    # inspect cannot read a signature from this object: the docstring's first line is used
    fake = types.SimpleNamespace(__doc__="fill(const uint64_t[::1] key, double* out, "
                                         "Py_ssize_t n=4)\n\ntext")
    assert cython_params(fake) == ["key", "out", "n"]
    assert cython_params(types.SimpleNamespace(__doc__="no signature here")) is None
    from dlkernels.engine.cython import rng as crng

    assert cython_params(crng.fill_raw) == ["key", "ctr", "out"]


# Mismatches known and being fixed by whoever owns the files (reported, not
# hidden: the test xfails with the message while the condition holds, and
# checks strictly once it does not).  None at present.
PENDING = {}


def _pending(family, nb, cy, check):
    try:
        check()
    except AssertionError as exc:
        if family in PENDING and PENDING[family][1](nb, cy):
            pytest.xfail(f"{PENDING[family][0]}: {exc}")
        raise


@pytest.mark.parametrize("family", FAMILIES)
def test_same_kernel_names(family):
    nb, cy = _modules(family)
    _pending(family, nb, cy, lambda: _same_kernel_names(family, nb, cy))


def _same_kernel_names(family, nb, cy):
    for mod in (nb, cy):
        assert isinstance(getattr(mod, "__all__", None), (list, tuple)), \
            f"{mod.__name__}: expected an __all__ listing its kernels and shared constants"
        missing = [n for n in mod.__all__ if not hasattr(mod, n)]
        assert not missing, f"{mod.__name__}.__all__ names what it does not define: {missing}"
        assert len(set(mod.__all__)) == len(mod.__all__), f"{mod.__name__}.__all__ has duplicates"
    only_nb = sorted(set(nb.__all__) - set(cy.__all__))
    only_cy = sorted(set(cy.__all__) - set(nb.__all__))
    assert not only_nb and not only_cy, (f"{family}: only in Numba's __all__: {only_nb}; "
                                         f"only in Cython's: {only_cy}")


@pytest.mark.parametrize("family", FAMILIES)
def test_same_parameters(family):
    nb, cy = _modules(family)
    _pending(family, nb, cy, lambda: _same_parameters(family, nb, cy))


def _same_parameters(family, nb, cy):
    diffs = []
    for name in sorted(exports(nb) & exports(cy)):
        fn, fc = getattr(nb, name), getattr(cy, name)
        if isinstance(fn, int) and isinstance(fc, int):
            continue
        if not (callable(fn) and callable(fc)):
            diffs.append(f"{name}: a kernel in one backend, {type(fn).__name__} / "
                         f"{type(fc).__name__}")
            continue
        pn, pc = numba_params(fn), cython_params(fc)
        if pn is None or pc is None:
            diffs.append(f"{name}: parameters not readable (numba {pn}, cython {pc})")
        elif pn != pc:
            diffs.append(f"{name}: numba ({', '.join(pn)}) != cython ({', '.join(pc)})")
    assert not diffs, f"{family}: " + "; ".join(diffs)


@pytest.mark.parametrize("family", FAMILIES)
def test_same_shared_constants(family):
    nb, cy = _modules(family)
    _pending(family, nb, cy, lambda: _same_shared_constants(family, nb, cy))


def _same_shared_constants(family, nb, cy):
    cn, cc = constants(nb), constants(cy)
    differ = {k: (cn[k], cc[k]) for k in set(cn) & set(cc) if cn[k] != cc[k]}
    assert not differ, f"{family}: constants differ (numba, cython): {differ}"
    exported = {k for k in exports(nb) | exports(cy) if k.isupper()}
    one_sided = sorted(k for k in exported if (k in cn) != (k in cc))
    assert not one_sided, f"{family}: exported constants missing in one backend: {one_sided}"
