"""Atomic, checked save/load of a dict of arrays plus JSON metadata (shared:
the RBM estimator's ``save``/``load`` today, GAN checkpoints next).

File format: an uncompressed ``.npz`` (a zip of ``.npy`` members) holding the
caller's arrays under their own names plus four entries:

``__magic__``    a string naming the kind of file (e.g. "dlkernels.BernoulliRBM")
``__version__``  the format version of that kind (int64)
``__meta__``     the metadata as JSON (``json.dumps(meta, sort_keys=True)``)
``__digest__``   sha256 over the metadata JSON and every array (name, dtype,
                 shape, bytes, in name order)

No pickled objects are written or read (``allow_pickle=False``): a file can
carry numbers, strings and arrays, never code.

API
---
``save(path, arrays, meta, *, magic, version)``
    Writes to a temporary file in the target directory, flushes and fsyncs
    it, gives it the mode of the file it replaces (0644 for a new one) and
    moves it into place with ``os.replace``: a crash or an error never leaves
    a half-written file at ``path`` (the old file stays intact).
``load(path, *, magic, versions, what)``
    Returns ``(arrays, meta, version)``; raises ``ValueError("'<path>' is not
    a valid <what> file: <why>")`` for a truncated, corrupt (checksum),
    foreign (magic), pickled or unknown-version file; ``OSError`` (e.g.
    FileNotFoundError) when the file cannot be read.
``json_scalar(v)``
    A parameter value as a JSON scalar (numpy scalars and dtypes included),
    None for what JSON cannot carry.
``invalid(path, what, why)``
    The ValueError of ``load``, for the caller's own consistency checks on
    what it loaded.

Example::

    from dlkernels.bindings import _persist
    _persist.save("ckpt.npz", {"W": W, "b": b}, {"step": 10}, magic="dlkernels.MyModel", version=1)
    arrays, meta, version = _persist.load("ckpt.npz", magic="dlkernels.MyModel", versions=(1,),
                                          what="dlkernels MyModel")
"""
import errno
import hashlib
import io
import json
import os
import tempfile
from numbers import Integral, Real

import numpy as np

__all__ = ["save", "load", "json_scalar", "digest", "invalid"]


def json_scalar(v):
    """``v`` as a JSON scalar: None, bool, str, int, float, a dtype's name;
    None for anything else (e.g. a generator object).

    Parameters
    ----------
    v : object
        A parameter value.

    Returns
    -------
    None, bool, str, int or float
    """
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, Integral):
        return int(v)
    if isinstance(v, Real):
        return float(v)
    if isinstance(v, (type, np.dtype)):
        return np.dtype(v).name
    return None


def digest(arrays, meta_json):
    """sha256 (hex) over the metadata JSON and every array (name, dtype,
    shape, bytes; arrays in name order).

    Parameters
    ----------
    arrays : dict of str to numpy.ndarray
    meta_json : str

    Returns
    -------
    str
    """
    h = hashlib.sha256(meta_json.encode())
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(arr.dtype.str).encode())
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _path(path):
    """``path`` (str, bytes or os.PathLike) as a str; TypeError for anything else."""
    try:
        return os.fsdecode(os.fspath(path))
    except TypeError:
        raise TypeError(f"path: expected a str, bytes or os.PathLike, got "
                        f"{type(path).__name__}") from None


def invalid(path, what, why):
    """The ValueError ``load`` raises for an unusable file.

    Returns
    -------
    ValueError
        With the message ``"'<path>' is not a valid <what> file: <why>"``.
    """
    return ValueError(f"{_path(path)!r} is not a valid {what} file: {why}")


def save(path, arrays, meta, *, magic, version):
    """Write ``arrays`` and ``meta`` to ``path`` atomically.

    Parameters
    ----------
    path : str, bytes or os.PathLike
        Target file; its directory must exist (else FileNotFoundError naming
        ``path``).
    arrays : dict of str to array_like
        The arrays; names must not start with two underscores (reserved).
        Object arrays are refused (no pickles).
    meta : dict
        JSON-serialisable metadata (``json.dumps`` must accept it).
    magic : str
        The kind of file, checked by ``load``.
    version : int
        The format version of that kind, checked by ``load``.

    Returns
    -------
    str
        ``path`` as a string.

    Raises
    ------
    TypeError
        If ``meta`` is not JSON-serialisable or an array holds objects.
    ValueError
        If an array name is reserved.
    TypeError
        If ``path`` is not a str, bytes or os.PathLike.
    OSError
        If the file cannot be written (the previous file at ``path``, if
        any, is left intact and no temporary file remains); the message names
        ``path``, never the temporary file (FileNotFoundError for a missing
        directory).
    """
    arrays = {str(k): np.asarray(v) for k, v in arrays.items()}
    for name, arr in arrays.items():
        if name.startswith("__"):
            raise ValueError(f"arrays: expected names not starting with '__', got {name!r}")
        if arr.dtype.hasobject:
            raise TypeError(f"arrays[{name!r}]: expected an array of numbers or strings, "
                            f"got dtype {arr.dtype}")
    meta_json = json.dumps(meta, sort_keys=True)
    entries = dict(arrays)
    entries["__magic__"] = np.array(magic)
    entries["__version__"] = np.array(version, dtype=np.int64)
    entries["__meta__"] = np.array(meta_json)
    entries["__digest__"] = np.array(digest(arrays, meta_json))
    path = _path(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, f"cannot save {path!r}: no directory {directory!r}",
                                path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1] or ".npz",
                                   dir=directory)
    except OSError as exc:   # name the file asked for, not the temporary one
        raise type(exc)(exc.errno, f"cannot save {path!r}: {exc.strerror}", path) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **entries)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp makes the file private (0600): give it the mode of the
        # file it replaces, or the usual 0644 of a new file
        try:
            mode = os.stat(path).st_mode & 0o777
        except OSError:
            mode = 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def load(path, *, magic, versions, what):
    """Read a file written by ``save`` and check it.

    Parameters
    ----------
    path : str, bytes or os.PathLike
    magic : str
        The kind of file expected.
    versions : int or sequence of int
        The format versions the caller reads.
    what : str
        How error messages name the kind of file ("dlkernels BernoulliRBM").

    Returns
    -------
    arrays : dict of str to numpy.ndarray
    meta : dict
    version : int

    Raises
    ------
    ValueError
        ``"'<path>' is not a valid <what> file: <why>"``: not an npz, truncated,
        no or another signature, another format version, checksum mismatch
        (corrupt), pickled members, metadata that is not a JSON object.
    OSError
        If the file cannot be read (FileNotFoundError...).
    """
    path = _path(path)
    versions = (versions,) if isinstance(versions, Integral) else tuple(versions)
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            names = set(z.files)
            if "__magic__" not in names:
                raise invalid(path, what, "no dlkernels signature")
            if str(z["__magic__"]) != magic:
                raise invalid(path, what, f"signature {str(z['__magic__'])!r}")
            version = int(z["__version__"])
            if version not in versions:
                known = versions[0] if len(versions) == 1 else list(versions)
                raise invalid(path, what, f"format version {version}, this dlkernels reads {known}")
            meta_json = str(z["__meta__"])
            stored = str(z["__digest__"])
            arrays = {n: z[n] for n in names if not n.startswith("__")}
    except ValueError as exc:
        if str(exc).startswith(repr(path)):
            raise
        raise invalid(path, what, f"{type(exc).__name__}: {exc}") from None
    except Exception as exc:  # zipfile.BadZipFile, OSError, EOFError, KeyError...
        raise invalid(path, what, f"{type(exc).__name__}: {exc}") from None
    if stored != digest(arrays, meta_json):
        raise invalid(path, what, "checksum mismatch (the file is corrupt)")
    try:
        meta = json.loads(meta_json)
    except ValueError as exc:  # pragma: no cover - the checksum catches it first
        raise invalid(path, what, f"metadata: {exc}") from None
    if not isinstance(meta, dict):
        raise invalid(path, what, "metadata is not a JSON object")
    return arrays, meta, version
