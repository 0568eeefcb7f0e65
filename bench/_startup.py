"""Start-up cost of one family's kernel in a fresh interpreter (run by the
runner in a subprocess; prints one JSON line).

usage: python -m bench._startup SUITE BACKEND

SUITE is a family whose suite is ``bench/bench_<family>.py``, or the path
of a suite file; BACKEND is "numba" or "cython".

Times ``import dlkernels``, then (after importing numpy) the suite's
``startup(backend)`` -- which imports the family's public module, builds
small inputs and returns ``(label, call)`` -- then the first ``call()``
(engine import + Numba compilation or cache load) and the best of three later
calls.  Only the ``startup`` function is taken from the suite file (through
its syntax tree): the rest of the suite is not imported, so its own imports
(scipy, torch, peers) cannot pre-warm the measurement.  The runner points
NUMBA_CACHE_DIR at a fresh directory for the empty-cache measurement and
reuses it for the warm one.
"""
import ast
import json
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def suite_path(suite):
    p = Path(suite)
    return p if p.suffix == ".py" else BENCH_DIR / f"bench_{suite}.py"


def load_startup(path):
    """The suite's top-level ``startup`` function, compiled alone."""
    tree = ast.parse(Path(path).read_text(), filename=str(path))
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "startup"]
    if not defs:
        raise LookupError(f"{Path(path).name}: no top-level startup(backend) function")
    namespace = {"__name__": "__dlkbench_startup__"}
    exec(compile(ast.Module(body=defs, type_ignores=[]), str(path), "exec"), namespace)
    return namespace["startup"]


def main(suite, backend):
    startup = load_startup(suite_path(suite))
    t0 = time.perf_counter()
    import dlkernels
    t1 = time.perf_counter()
    import numpy  # noqa: F401  (not part of the family's import time)

    t2 = time.perf_counter()
    kernel, call = startup(backend)
    t3 = time.perf_counter()
    call()
    t4 = time.perf_counter()
    later = []
    for _ in range(3):
        t5 = time.perf_counter()
        call()
        later.append(time.perf_counter() - t5)
    return dict(kernel=kernel, import_dlkernels=t1 - t0, import_family=t3 - t2, first_call=t4 - t3,
                second_call=min(later), version=dlkernels.__version__)


if __name__ == "__main__":
    try:
        res = main(sys.argv[1], sys.argv[2])
    except Exception as exc:   # reported in the table, not fatal for the run
        res = dict(error=f"{type(exc).__name__}: {exc}")
    print(json.dumps(res))
