"""``python -m bench``: run the pytest-benchmark suites of bench/ and print
one comparison table per kernel family, with the machine, the library
versions, the thread counts and the command in a footnote.

Raw pytest-benchmark JSON (plus the runner's own data under the key
"dlkbench") and a Markdown copy of the tables go to bench/results/.
"""
import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import _presets, _registry

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results"
OURS = ("numba", "cython")
PEERS = ("numpy", "sklearn", "torch")            # column order; a peer shows only where a suite uses it
PEER_MODULE = {"numpy": "numpy", "sklearn": "sklearn", "torch": "torch"}   # + the suites' PEERS


def add_peers(suites):
    """Peers a suite declares (``PEERS = {impl: module to find}``) join the
    columns, after the built-in ones."""
    global PEERS
    for suite in suites:
        for impl, module in getattr(suite.module, "PEERS", {}).items():
            PEER_MODULE.setdefault(impl, module)
            if impl not in PEERS:
                PEERS = PEERS + (impl,)
EXPECTED = {"smoke": "about 30 s", "quick": "about 1-2 min",
            "full": "about 5 min on 2 cores (4 min measured on a quiet machine)"}


# --- environment -------------------------------------------------------------------------------

def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine():
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return f"{cpu_model()}, {os.cpu_count()} logical CPUs ({usable} usable), {platform.system()} {platform.release()}"


def versions():
    out = {"python": platform.python_version()}
    for dist in ("dlkernels", "numpy", "numba", "scipy", "Cython", "scikit-learn", "torch",
                 "threadpoolctl", "pytest-benchmark"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def blas_info():
    """BLAS libraries loaded in this process, as threadpoolctl sees them."""
    from threadpoolctl import threadpool_info

    rows = []
    for lib in threadpool_info():
        if lib.get("user_api") != "blas":
            continue
        owner = Path(lib["filepath"]).parent.name.replace(".libs", "")
        rows.append(f"{lib['internal_api']} {lib['version']} ({lib.get('architecture', '?')}, "
                    f"from {owner}, {lib['num_threads']} threads)")
    return rows


def threads_in_effect():
    import dlkernels

    th = dlkernels.backend_info()["threads"]
    out = {"numba": th["numba"], "OpenMP (Cython)": th["openmp"] if th["openmp"] is not None else "n/a"}
    blas = sorted({lib["num_threads"] for lib in th["blas"]})
    out["BLAS"] = "/".join(map(str, blas)) or "n/a"
    if "torch" in sys.modules:
        out["torch"] = sys.modules["torch"].get_num_threads()
    return out


# --- pytest ------------------------------------------------------------------------------------

class Collector:
    """pytest plugin: progress lines, and the outcome of every benchmark
    (skipped and failed ones included, with their reason)."""

    def __init__(self, stream):
        self.stream = stream
        self.outcomes = []
        self.total = 0

    def pytest_collection_finish(self, session):
        self.total = len(session.items)
        print(f"  {self.total} benchmarks collected", file=self.stream, flush=True)

    def pytest_runtest_logreport(self, report):
        if report.when != "call" and report.passed:
            return
        if report.when == "teardown" and not report.failed:
            return
        meta = dict(report.user_properties).get("dlkbench")
        reason = None
        if report.skipped:
            lr = report.longrepr
            reason = lr[2] if isinstance(lr, tuple) else str(lr)
            reason = reason.removeprefix("Skipped: ")
        elif report.failed:
            crash = getattr(report.longrepr, "reprcrash", None)
            msg = crash.message if crash is not None else report.longreprtext.strip()
            reason = "FAILED: " + " ".join(msg.split())[:300]
        self.outcomes.append(dict(nodeid=report.nodeid, outcome=report.outcome, meta=meta,
                                  reason=reason, duration=report.duration))
        label = (f"{meta['family']}: {meta['case']} [{meta['impl']}]" if meta
                 else report.nodeid.split("::")[-1])
        status = f"{report.duration:6.1f} s" if report.passed else (reason or report.outcome)[:90]
        print(f"  [{len(self.outcomes):3d}/{self.total}] {label} ... {status}", file=self.stream,
              flush=True)


def run_pytest(args, json_path, log_path):
    import pytest

    pargs = [str(BENCH_DIR), "-o", "python_files=bench_*.py", "-o", "addopts=",
             "-p", "no:cacheprovider", "-q", "-rs", f"--benchmark-json={json_path}",
             "--benchmark-columns=min,median,max,rounds"]
    if args.k:
        pargs += ["-k", f"({args.k}) or test_gemm"]
    collector = Collector(sys.stdout)
    with open(log_path, "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        rc = pytest.main(pargs, plugins=[collector])
    return int(rc), collector.outcomes


# --- start-up cost -----------------------------------------------------------------------------

def _startup_once(suite, backend, cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    cmd = [sys.executable, "-m", "bench._startup", str(suite.path), backend]   # cwd on sys.path, as for -m bench
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600,
                           cwd=str(BENCH_DIR.parent))
        return json.loads(p.stdout.strip().splitlines()[-1])
    except Exception as exc:  # timeout, crash, no output
        return {"error": f"{type(exc).__name__}: {exc}"}


def measure_startup(suites):
    """Per suite (those that declare a ``startup`` for this preset) and
    backend: import time, first call with an empty and a warm Numba cache
    (fresh subprocesses, NUMBA_CACHE_DIR in a temp dir)."""
    rows = []
    for suite in suites:
        fam = suite.family
        with tempfile.TemporaryDirectory(prefix="dlkbench-numba-cache-") as cache:
            cold = _startup_once(suite, "numba", cache)
            warm = _startup_once(suite, "numba", cache)
        rows.append(dict(family=fam, backend="numba", cold=cold, warm=warm))
        with tempfile.TemporaryDirectory(prefix="dlkbench-numba-cache-") as cache:
            rows.append(dict(family=fam, backend="cython", cold=_startup_once(suite, "cython", cache)))
        print(f"  start-up: {fam} done", flush=True)
    return rows


# --- tables ------------------------------------------------------------------------------------

def fmt_time(t):
    if t is None:
        return "—"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if t >= scale:
            return f"{t / scale:.3g} {unit}"
    return f"{t / 1e-9:.3g} ns"


def fmt_rate(r, unit):
    for prefix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if r >= scale:
            return f"{r / scale:.3g} {prefix} {unit}/s"
    return f"{r:.3g} {unit}/s"


def fmt_ratio(x):
    return f"{x:.3g}x" if x < 100 else f"{x:.0f}x"


def short(reason, n=60):
    """A skip/failure reason cut for a table cell (the JSON keeps it whole)."""
    reason = reason.split(" (")[0] if reason.startswith("not ") else reason
    reason = reason.split(", over the")[0] if reason.startswith("too slow") else reason
    return reason if len(reason) <= n else reason[: n - 1] + "…"


def status(reason):
    """Table cell for a benchmark that has no time."""
    return short(reason) if reason.startswith("FAILED") else f"skipped: {short(reason)}"


def md_table(header, rows):
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + [line(r) for r in rows])


def collect_cases(data, outcomes):
    """{family: {case: {"impls": {impl: entry}, "meta": meta}}} in collection order.

    entry = {"time": seconds for the whole case (min over rounds x norm)} or {"reason": why not}."""
    fams = {}
    timed = {b["fullname"]: b for b in data.get("benchmarks", [])}

    def slot(meta):
        case = fams.setdefault(meta["family"], {}).setdefault(meta["case"], {"impls": {}, "meta": {}})
        for key in ("flops", "work", "unit", "gemm", "target"):
            if meta.get(key) is not None and key not in case["meta"]:
                case["meta"][key] = meta[key]
        return case

    for o in outcomes:
        meta = o["meta"]
        if meta is None:
            continue
        case = slot(meta)
        b = timed.get(o["nodeid"])
        if o["outcome"] == "passed" and b is not None:
            st = b["stats"]
            case["impls"][meta["impl"]] = dict(time=st["min"] * meta["norm"], raw=st["min"],
                                               rounds=st["rounds"], note=meta.get("note"))
        else:
            case["impls"][meta["impl"]] = dict(reason=o["reason"] or o["outcome"])
    return fams


GEMM_LIBS = ("gemm-numpy", "gemm-scipy")


def gemm_rates(fams):
    """{probe key: best flop rate over the probed BLAS libraries}."""
    rates = {}
    for name, case in fams.get("gemm", {}).items():
        r = [case["meta"]["flops"] / e["time"] for e in case["impls"].values() if "time" in e]
        if r:
            rates[name] = max(r)
    return rates


def target_text(target):
    parts = []
    for t in target or []:
        parts.append(f"≥{t['frac']:.0%} GEMM" if t["vs"] == "gemm" else f"≥{t['ratio']:g}x {t['vs']}")
    return ", ".join(parts)


def check_target(target, ratios, frac):
    """'yes', or 'NO (...)' naming each missed or unmeasured goal."""
    missed, unchecked = [], []
    for t in target:
        if t["vs"] in PEER_MODULE and importlib.util.find_spec(PEER_MODULE[t["vs"]]) is None:
            unchecked.append(f"{t['vs']} not installed")   # a peer target holds "when installed"
        elif t["vs"] == "gemm":
            if frac is None:
                missed.append("GEMM % not measured")
            elif frac < t["frac"]:
                missed.append(f"{frac:.0%} GEMM")
        else:
            r = ratios.get(t["vs"])
            if r is None:
                missed.append(f"{t['vs']} not measured")
            elif r < t["ratio"]:
                missed.append(f"{fmt_ratio(r)} {t['vs']}")
    extra = f" ({'; '.join(unchecked)})" if unchecked else ""
    return ("yes" + extra) if not missed else "NO (" + "; ".join(missed + unchecked) + ")"


def family_table(fam, cases, rates):
    metas = [c["meta"] for c in cases.values()]
    peers = [p for p in PEERS if any(p in c["impls"] for c in cases.values())]
    has_rate = any(m.get("work") for m in metas)
    has_gemm = any(m.get("flops") and m.get("gemm") for m in metas)
    has_target = any(m.get("target") for m in metas)
    header = ["case", "ours", "time"] + ["rate"] * has_rate + ["GEMM %"] * has_gemm
    header += [f"{p} (peer/ours)" for p in peers] + ["target", "met?"] * has_target
    rows = []
    for name, case in cases.items():
        meta = case["meta"]
        for i, impl in enumerate(OURS):
            e = case["impls"].get(impl, {"reason": "not run"})
            t = e.get("time")
            row = [name if i == 0 else "", impl, fmt_time(t) if t else status(e["reason"])]
            if has_rate:
                row.append(fmt_rate(meta["work"] / t, meta["unit"]) if t and meta.get("work") else "")
            frac = None
            if has_gemm:
                g = rates.get(meta.get("gemm"))
                if t and g and meta.get("flops"):
                    frac = meta["flops"] / t / g
                row.append(f"{frac:.0%}" if frac is not None else "")
            ratios = {}
            for p in peers:
                pe = case["impls"].get(p)
                if pe is None:
                    row.append("—")
                elif importlib.util.find_spec(PEER_MODULE[p]) is None:
                    row.append("skipped: not installed")
                elif "time" not in pe:
                    row.append(status(pe["reason"]))
                else:
                    cell = fmt_time(pe["time"])
                    if t:
                        ratios[p] = pe["time"] / t
                        cell += f" ({fmt_ratio(ratios[p])})"
                    row.append(cell)
            if has_target:
                tg = meta.get("target")
                row.append(target_text(tg) if tg and i == 0 else "")
                if not tg:
                    row.append("")
                elif t:
                    row.append(check_target(tg, ratios, frac))
                else:   # deselected with -k: no verdict; skipped or failed: the target is not shown met
                    why = e.get("reason", "")
                    row.append("—" if why == "not run" else
                               "NO (too slow)" if why.startswith("too slow") else "NO (not measured)")
            rows.append(row)
    return md_table(header, rows)


def gemm_table(cases):
    rows = []
    for name, case in cases.items():
        row = [name]
        for lib in GEMM_LIBS:
            e = case["impls"].get(lib, {"reason": "not run"})
            row.append(f"{case['meta']['flops'] / e['time'] / 1e9:.1f}" if "time" in e
                       else status(e["reason"]))
        rows.append(row)
    return md_table(["GEMM probe", "np.dot GFLOP/s", "scipy.linalg.blas GFLOP/s"], rows)


def startup_table(rows):
    def cell(r, key):
        if "error" in r:
            return "error: " + r["error"][:80]
        return fmt_time(r[key])

    out = []
    for r in rows:
        cold, warm = r["cold"], r.get("warm")
        first = "error" not in cold
        out.append([r["family"], r["backend"], cold.get("kernel", ""),
                    fmt_time(cold["import_dlkernels"]) if first else "",
                    fmt_time(cold["import_family"]) if first else "",
                    cell(cold, "first_call"),
                    cell(warm, "first_call") if warm else "(no JIT cache)",
                    cell(warm or cold, "second_call")])
    return md_table(["family", "backend", "kernel", "import dlkernels", "import family",
                     "first call, empty Numba cache", "first call, warm Numba cache", "later calls (best of 3)"],
                    out)


def case_notes(cases):
    """One bullet per (case, implementation) that recorded a note in this run
    (``Bench.describe(note=...)``); a note shared by a case's implementations once."""
    out = []
    for name, case in cases.items():
        seen = {}
        for impl, e in case["impls"].items():
            if e.get("note"):
                seen.setdefault(e["note"], []).append(impl)
        for note, impls in seen.items():
            out.append(f"* {name} ({', '.join(impls)}): {note}")
    return out


def table_specs(suites):
    """[(table key, title, footnotes)] in the suites' order."""
    specs = []
    for suite in suites:
        for key, spec in suite.tables().items():
            specs.append((key, spec["title"], spec["footnotes"]))
    return specs


def render(data, fams, startup, env, suites=()):
    preset = env["preset"]
    rates = gemm_rates(fams)
    parts = [f"# dlkernels benchmarks ({preset} preset, {env['threads']} threads)", ""]
    specs = table_specs(suites)
    known = {key for key, _, _ in specs}
    specs += [(fam, fam, ()) for fam in sorted(set(fams) - known - {"gemm"})]
    for fam, title, footnotes in specs:
        cases = fams.get(fam)
        if not cases:
            continue
        parts += [f"## {title}", "", family_table(fam, cases, rates), ""]
        for note in footnotes:
            parts += [note, ""]
        notes = case_notes(cases)
        if notes:
            parts += ["Notes of this run:", ""] + notes + [""]
    if "gemm" in fams:
        parts += ["## GEMM probes", "", gemm_table(fams["gemm"]), "",
                  "Best round of repeated calls into preallocated output; numpy's and scipy's BLAS "
                  "(the latter is the one dlkernels' kernels call). GEMM % uses the faster.", ""]
    if startup:
        parts += ["## Start-up cost (fresh interpreter per measurement)", "", startup_table(startup), "",
                  "First call = engine import + Numba compilation (empty cache: NUMBA_CACHE_DIR in a "
                  "new temp dir) or cache load (warm: the same dir again); Cython has no JIT.", ""]
    parts += [
        "Times: best of the rounds after one untimed warm-up call (pytest-benchmark, "
        "`min`, raw stats in the JSON). Ratios peer/ours > 1 mean dlkernels is faster; all numbers "
        "of a table come from the same run.",
        "" if preset == "full" else
        f"Preset {preset!r}: smaller sizes than the issues' targets (those are stated for "
        "`--full`); the yes/NO of this run is indicative only.",
        "",
        f"Machine: {env['machine']}. ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + ". ",
        "BLAS: " + ("; ".join(env["blas"]) or "not detected") + ". ",
        "Threads: " + ", ".join(f"{k} {v}" for k, v in env["threads_in_effect"].items())
        + f" (set by `--threads {env['threads']}`"
        + (f" `--blas-threads {env['blas_threads']}`" if env["blas_threads"] != env["threads"] else "")
        + "; BLAS through threadpoolctl). ",
        f"Command: `{env['command']}` ({env['date']}).",
    ]
    return "\n".join(parts) + "\n"


# --- main --------------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", dest="preset", action="store_const", const="quick",
                   help="small sizes, under 2 minutes on 2 cores (default)")
    g.add_argument("--full", dest="preset", action="store_const", const="full",
                   help="the sizes of the issues' targets (" + EXPECTED["full"] + ")")
    g.add_argument("--smoke", dest="preset", action="store_const", const="smoke",
                   help="tiny sizes: checks that the runner works (seconds)")
    p.add_argument("--threads", type=int, default=_presets.DEFAULT_THREADS,
                   help="threads for Numba, OpenMP, BLAS and PyTorch (default 2)")
    p.add_argument("--blas-threads", type=int, metavar="M",
                   help="BLAS threads, when they should differ from --threads (diagnosis of "
                        "oversubscription); default: the --threads value")
    p.add_argument("-k", metavar="EXPR", help="pytest -k expression selecting benchmarks "
                   "(e.g. a family name, or 'gibbs and not torch'); GEMM probes always run")
    p.add_argument("--no-startup", action="store_true", help="skip the start-up cost measurement")
    p.set_defaults(preset=_presets.DEFAULT_PRESET)
    return p.parse_args(argv)


def check_setup(args):
    """A message saying why the run cannot start, or None."""
    for mod, dist in (("pytest_benchmark", "pytest-benchmark"), ("threadpoolctl", "threadpoolctl")):
        if importlib.util.find_spec(mod) is None:
            return f"{dist} is not installed: pip install -e '.[bench]'"
    import numba

    top = numba.config.NUMBA_NUM_THREADS
    for name in ("threads", "blas_threads"):
        n = getattr(args, name)
        if n is not None and not 1 <= n <= top:
            return (f"--{name.replace('_', '-')}: expected 1..{top} (NUMBA_NUM_THREADS), got {n}")
    return None


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    problem = check_setup(args)
    if problem:
        print(f"python -m bench: {problem}", file=sys.stderr)
        return 2
    os.environ["DLKBENCH_PRESET"] = args.preset
    os.environ["DLKBENCH_THREADS"] = str(args.threads)
    os.environ["DLKBENCH_BLAS_THREADS"] = str(args.blas_threads or args.threads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_path = RESULTS / f"{stamp}-{args.preset}.json"
    md_path = json_path.with_suffix(".md")
    log_path = json_path.with_suffix(".log")
    env = dict(preset=args.preset, threads=args.threads, blas_threads=args.blas_threads or args.threads,
               machine=machine(), versions=versions(),
               command="python -m bench" + (" " + shlex.join(argv) if argv else ""),
               date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    print(f"dlkernels benchmarks: preset {args.preset} (expected {EXPECTED[args.preset]}), "
          f"{args.threads} threads")
    print(f"machine: {env['machine']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()))
    t0 = time.perf_counter()
    rc, outcomes = run_pytest(args, json_path, log_path)
    env["blas"] = blas_info()
    env["threads_in_effect"] = threads_in_effect()
    if rc not in (0,) and not json_path.exists():
        print(Path(log_path).read_text()[-3000:])
        print(f"pytest exited with {rc}; log: {log_path}")
        return rc or 1
    suites, broken = _registry.discover()
    add_peers(suites)
    for name, exc in broken.items():
        print(f"note: bench/{name} is not a usable suite ({type(exc).__name__}: {exc})")
    startup = [] if args.no_startup else measure_startup(
        [s for s in suites if s.measures_startup(args.preset)])
    data = json.loads(json_path.read_text())
    fams = collect_cases(data, outcomes)
    text = render(data, fams, startup, env, suites)
    data["dlkbench"] = dict(env=env, outcomes=outcomes, startup=startup)
    json_path.write_text(json.dumps(data, indent=1, default=str))
    md_path.write_text(text)
    print()
    print(text)
    print(f"saved: {json_path.relative_to(Path.cwd()) if json_path.is_relative_to(Path.cwd()) else json_path}, "
          f"{md_path.name}, {log_path.name} (wall time {time.perf_counter() - t0:.0f} s)")
    if rc not in (0, 5):
        print(f"note: pytest exited with {rc} (some benchmark failed; see the log)")
    return 0 if rc in (0, 5) else rc
