"""Every public function of dlkernels, dlkernels.rng and dlkernels.rbm has a
numpydoc docstring with a ``Parameters`` section (when it takes any) and a
``Returns`` section; public classes document their constructor's parameters."""
import inspect

import pytest

import dlkernels

FAMILY = "rbm"
MODULES = ("dlkernels", "dlkernels.rng", "dlkernels.rbm")


def _public(modname):
    import importlib

    mod = importlib.import_module(modname)
    for name in mod.__all__:
        obj = getattr(mod, name)
        if inspect.ismodule(obj) or not callable(obj):
            continue
        yield f"{modname}.{name}", obj


CASES = [c for m in MODULES for c in _public(m)]


def _takes_arguments(fn):
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return True
    return any(p.name not in ("self", "cls") for p in params.values())


@pytest.mark.parametrize("name,obj", CASES, ids=[c[0] for c in CASES])
def test_numpydoc_sections(name, obj):
    doc = inspect.getdoc(obj) or ""
    assert doc, f"{name}: no docstring"
    if inspect.isclass(obj):
        if issubclass(obj, tuple) and hasattr(obj, "_fields"):
            for field in obj._fields:          # a result namedtuple: its fields are described
                assert field in doc, f"{name}: field {field!r} not described"
            return
        if _takes_arguments(obj.__init__) and obj.__init__ is not object.__init__:
            assert "Parameters\n----------" in doc, f"{name}: no Parameters section"
        return
    if _takes_arguments(obj):
        assert "Parameters\n----------" in doc, f"{name}: no Parameters section"
    assert "Returns\n-------" in doc, f"{name}: no Returns section"


def test_the_cases_cover_the_families():
    names = {c[0] for c in CASES}
    assert {"dlkernels.rng.uniform", "dlkernels.rbm.gibbs_chains", "dlkernels.backend_info",
            "dlkernels.set_num_threads"} <= names
