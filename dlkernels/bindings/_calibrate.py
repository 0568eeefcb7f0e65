"""Per-machine calibration: choices measured once on this machine, kept in a file.

A kernel family whose fastest path depends on the CPU and BLAS (e.g. the RBM
family's binary row-sum layers against the tiled GEMM, ``rbm_paths``) asks
``lookup(section, key, measure)`` for a value: the first time on a machine
``measure()`` times the candidates (single-threaded, a fraction of a second)
and the value is written to a small JSON file; every later call, in this or
any other process, reads it back.  Results are a function of the stored
value, so a machine gives the same bits for a seed from its second call on,
in every process; the value is shared by both backends (one file, one entry).

* File: ``$DLKERNELS_CACHE_DIR/calibration-v1.json``, else
  ``$XDG_CACHE_HOME/dlkernels/...``, else ``~/.cache/dlkernels/...``; entries
  are grouped by a machine key (CPU model and vector flags, the library and
  compiler versions), so a home directory shared by different machines keeps
  one set each.
* ``DLKERNELS_CALIBRATE=0`` (or ``off`` / ``false`` / ``no``) switches
  calibration off: every ``lookup`` returns None and callers use their
  documented defaults (what the tests do, so recorded outputs stay fixed).
* The file is read, measured and written under an exclusive ``flock`` on a
  lock file beside it, so concurrent processes never measure the same entry
  twice (they would pick values that differ by timing noise); it is replaced
  atomically.  A missing or unreadable file counts as empty; a file or a
  directory that cannot be written makes ``lookup`` warn once and return
  None (the defaults), so that no two processes can run on different,
  unsaved measurements.
"""
import functools
import json
import os
import platform
import threading
import warnings

__all__ = ["enabled", "cache_path", "machine_key", "lookup", "forget", "generation"]

ENV_SWITCH = "DLKERNELS_CALIBRATE"
ENV_DIR = "DLKERNELS_CACHE_DIR"
FILE_NAME = "calibration-v1.json"
_OFF = {"0", "off", "false", "no"}
_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16",
          "amx_tile", "asimd", "sve")

_lock = threading.Lock()
_memo = {}        # (path, machine, section, key) -> value
_warned = set()
_generation = [0]


def enabled():
    """False when ``DLKERNELS_CALIBRATE`` switches calibration off."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in _OFF


def cache_path():
    """The calibration file's path (it may not exist yet)."""
    d = os.environ.get(ENV_DIR)
    if not d:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        d = os.path.join(base, "dlkernels")
    return os.path.join(d, FILE_NAME)


def _cpu():
    """(CPU model name, the vector flags of _FLAGS it has) from /proc/cpuinfo."""
    model, flags = None, None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                k = k.strip()
                if k in ("model name", "Model") and model is None:
                    model = v.strip()
                elif k in ("flags", "Features") and flags is None:
                    flags = set(v.split())
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()
    return model, sorted((flags or set()).intersection(_FLAGS))


@functools.lru_cache(maxsize=None)
def machine_key():
    """A string naming this machine's CPU model and vector flags and the
    versions whose code the measurements time (dlkernels, numpy, scipy,
    numba; the BLAS comes with scipy)."""
    import numpy
    import scipy

    import dlkernels
    try:
        import numba
        nb = numba.__version__
    except ImportError:   # the Cython backend alone
        nb = "-"
    model, flags = _cpu()
    return (f"{platform.machine()} | {model} | {','.join(flags)} | "
            f"dlkernels {dlkernels.__version__} numpy {numpy.__version__} "
            f"scipy {scipy.__version__} numba {nb}")


def _read(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(path, data):
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _warn_once(path, err):
    if path not in _warned:
        _warned.add(path)
        warnings.warn(f"dlkernels: the calibration file {path} cannot be used ({err}); using the "
                      f"default path rules (set {ENV_DIR} to a writable directory, or "
                      f"{ENV_SWITCH}=0 to silence this)", RuntimeWarning, stacklevel=4)


def lookup(section, key, measure, valid=lambda v: True):
    """The value stored for (this machine, section, key), measured by
    ``measure()`` and stored the first time; None when calibration is off or
    the file cannot be written.  A stored value for which ``valid(v)`` is
    false is measured again."""
    if not enabled():
        return None
    path = cache_path()
    mk = machine_key()
    mkey = (path, mk, section, key)
    with _lock:
        if mkey in _memo:
            return _memo[mkey]
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            lockf = open(path + ".lock", "a")
        except OSError as e:
            _warn_once(path, e)
            return None
        try:
            try:
                import fcntl
                fcntl.flock(lockf, fcntl.LOCK_EX)
            except (ImportError, OSError):   # no flock here: the atomic replace still holds
                pass
            data = _read(path)
            mach = data.get(mk)          # a part of the wrong type counts as empty
            data[mk] = mach = mach if isinstance(mach, dict) else {}
            sec = mach.get(section)
            mach[section] = sec = sec if isinstance(sec, dict) else {}
            entry = sec.get(key)
            if entry is None or not valid(entry):
                entry = sec[key] = measure()
                try:
                    _write(path, data)
                except OSError as e:
                    _warn_once(path, e)
                    return None
            _memo[mkey] = entry
            return entry
        finally:
            lockf.close()   # releases the flock


def _after_fork_in_child():
    """A child forked while another thread held the lock (measuring) must not
    wait for it forever: it gets a fresh lock (its memory of the file stays)."""
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def forget():
    """Drop this process's memory of the file (tests; the file is kept):
    the next lookup reads it again, and callers' memos keyed on
    ``generation()`` are stale."""
    with _lock:
        _memo.clear()
        _warned.clear()
        _generation[0] += 1


def generation():
    """A counter that ``forget`` increments (for memos of looked-up values)."""
    return _generation[0]
