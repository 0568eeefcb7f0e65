"""The suites of bench/: every ``bench_*.py`` that declares ``FAMILY``.

The runner, the GEMM probes and the start-up measurement learn everything
family-specific from here; nothing else in bench/ names a family.  The
protocol (module-level names a suite declares) is documented in
bench/README.md, "Adding a suite":

  FAMILY           str, required: the table key its benchmarks pass to
                   ``bench.describe(family=...)``
  TITLE            str: the table's heading (default: FAMILY)
  ORDER            number: tables and start-up rows sorted by (ORDER, FAMILY);
                   default 100
  FOOTNOTES        sequence of str: paragraphs printed under the table
  TABLES           optional {key: {"title": str, "footnotes": [...]}}, for a
                   suite whose cases go to several tables (describe(family=key))
  PRESETS          {"smoke": {...}, "quick": {...}, "full": {...}}: its sizes
  gemm_shapes(sz)  optional: [(dtype, m, k, n), ...] GEMM probes its "GEMM %"
                   column needs, for the sizes ``sz`` of one preset
  STARTUP_PRESETS  optional: presets whose start-up table measures startup()
  startup(backend) optional, self-contained (imports inside its body): returns
                   (label, call); run by bench/_startup.py in a fresh interpreter
"""
import importlib
import importlib.util
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_ORDER = 100


class Suite:
    """What one ``bench_<family>.py`` declares (see the module docstring)."""

    def __init__(self, module, path):
        self.module = module
        self.path = Path(path)
        self.family = module.FAMILY
        self.title = getattr(module, "TITLE", self.family)
        self.order = getattr(module, "ORDER", DEFAULT_ORDER)
        self.footnotes = tuple(getattr(module, "FOOTNOTES", ()))
        self.presets = getattr(module, "PRESETS", {})
        self.startup_presets = tuple(getattr(module, "STARTUP_PRESETS", ()))
        self.has_startup = callable(getattr(module, "startup", None))

    def tables(self):
        """{table key: {"title": ..., "footnotes": (...)}} this suite fills."""
        extra = getattr(self.module, "TABLES", None)
        if extra:
            return {k: dict(title=v.get("title", k), footnotes=tuple(v.get("footnotes", ())))
                    for k, v in extra.items()}
        return {self.family: dict(title=self.title, footnotes=self.footnotes)}

    def gemm_shapes(self, preset):
        """The GEMM probes (dtype, m, k, n) this suite needs in ``preset``."""
        fn = getattr(self.module, "gemm_shapes", None)
        if fn is None or preset not in self.presets:
            return []
        return [tuple(s) for s in fn(self.presets[preset])]

    def measures_startup(self, preset):
        return self.has_startup and preset in self.startup_presets

    def __repr__(self):
        return f"Suite({self.family!r}, {self.path.name})"


def discover(directory=None, package="bench"):
    """(suites, broken): the suites of ``directory`` (default bench/) sorted
    by (ORDER, FAMILY), and {file name: exception} for the ``bench_*.py``
    files that failed to import (a half-written suite must not stop the
    others; pytest reports its error too).  Files without FAMILY (the GEMM
    probes) are not suites.

    ``package``: the dotted package the files are imported from (None: the
    files are imported by path, for a directory outside the package).
    """
    directory = BENCH_DIR if directory is None else Path(directory)
    suites, broken = [], {}
    for path in sorted(directory.glob("bench_*.py")):
        try:
            module = _import(path, package)
        except Exception as exc:   # noqa: BLE001 - reported, not fatal
            broken[path.name] = exc
            continue
        if getattr(module, "FAMILY", None) is None:
            continue
        suites.append(Suite(module, path))
    seen = {}
    for s in suites:
        if s.family in seen:
            broken[s.path.name] = ValueError(
                f"FAMILY: expected a name no other suite uses, got {s.family!r} "
                f"(also in {seen[s.family].path.name})")
        seen.setdefault(s.family, s)
    suites = sorted(seen.values(), key=lambda s: (s.order, s.family))
    return suites, broken


def _import(path, package):
    if package is not None:
        return importlib.import_module(f"{package}.{path.stem}")
    spec = importlib.util.spec_from_file_location(f"_dlkbench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def suite(family, directory=None, package="bench"):
    """The suite declaring ``family`` (KeyError naming the known ones)."""
    suites, _ = discover(directory, package)
    for s in suites:
        if s.family == family:
            return s
    raise KeyError(f"family: expected one of {[s.family for s in suites]}, got {family!r}")


def gemm_shapes(preset, suites=None):
    """Sorted union of the GEMM probes (dtype name, m, k, n) of all suites."""
    import numpy as np

    suites = discover()[0] if suites is None else suites
    out = set()
    for s in suites:
        for dtype, m, k, n in s.gemm_shapes(preset):
            out.add((np.dtype(dtype).name, int(m), int(k), int(n)))
    return sorted(out)
