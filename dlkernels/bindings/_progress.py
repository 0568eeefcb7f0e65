"""Progress bar and deferred Ctrl-C for long runs (shared by every family's
training loops: the RBM estimator today, GAN training next).

API
---
``Progress(total, enabled, name, *, after=2.0, every=0.25, stream=None)``
    A one-line bar on stderr: ``[name] epoch e/E [#####.....]  42.0% elapsed
    12s eta 17s``.  Call ``update(done, epoch, n_epochs)`` after each unit of
    work (a minibatch) and ``clear()`` before printing anything else and at
    the end.  Nothing is written unless ``enabled``, nor before the run has
    lasted ``after`` seconds (short runs stay quiet), nor more often than
    every ``every`` seconds.

``DeferInterrupt()``
    A context manager that defers Ctrl-C (SIGINT) inside its block: the
    first Ctrl-C only sets ``requested``; the loop checks it at a boundary
    where its state is consistent (after a minibatch), saves or reports, and
    raises ``KeyboardInterrupt`` itself.  A second Ctrl-C interrupts at once.
    Active only in the main thread and only while Python's default SIGINT
    handler is installed (a user's own handler is left alone); the previous
    handler is restored on exit.

Example::

    progress = Progress(n_batches * n_epochs, verbose, "MyModel")
    with DeferInterrupt() as intr:
        for epoch in range(n_epochs):
            for i in range(n_batches):
                step(i)
                progress.update(epoch * n_batches + i + 1, epoch + 1, n_epochs)
                if intr.requested:
                    progress.clear()
                    raise KeyboardInterrupt("interrupted after a whole minibatch")
    progress.clear()

``interruptible(fn, work, **kwargs)``
    Calls a long compiled kernel so that Ctrl-C stops it within a fraction
    of a second: the kernel runs on a worker thread with a ``stop`` flag
    (see ``dlkernels.engine.numba._interrupt``) while the calling thread
    waits where Python can run its signal handlers; on ``KeyboardInterrupt``
    (or any exception) in the caller the flag is set, the kernel returns at
    its next check (a sweep, a temperature, 4096 single-site steps), and the
    exception propagates.  Results are those of a direct call, bit for bit.
"""
import signal
import sys
import threading
import time

__all__ = ["Progress", "DeferInterrupt", "interruptible"]

#: defaults: the bar shows only once a run has lasted this long, then
#: refreshes at most this often (seconds)
PROGRESS_AFTER_S = 2.0
PROGRESS_EVERY_S = 0.25
_WIDTH = 30


class Progress:
    """A one-line progress bar on stderr, shown only for long runs.

    Parameters
    ----------
    total : int
        Units of work of the whole run (at least 1 is assumed).
    enabled : bool
        Whether to show anything at all (e.g. the estimator's ``verbose``).
    name : str
        Label in brackets at the start of the line.
    after : float, default 2.0
        Seconds the run must have lasted before the bar first shows.
    every : float, default 0.25
        Minimum seconds between two refreshes.
    stream : file-like, optional
        Where to write (default: ``sys.stderr`` at the time of each write).
    """

    def __init__(self, total, enabled, name, *, after=PROGRESS_AFTER_S, every=PROGRESS_EVERY_S,
                 stream=None):
        self.total = max(int(total), 1)
        self.enabled = bool(enabled)
        self.name = name
        self.after = after
        self.every = every
        self.stream = stream
        self.start = time.time()
        self.last = 0.0
        self.shown = False

    def _out(self):
        return self.stream if self.stream is not None else sys.stderr

    def update(self, done, epoch, n_epochs):
        """Redraw the bar: ``done`` units of ``total``, in epoch ``epoch`` of
        ``n_epochs``.

        Returns
        -------
        bool
            Whether the bar was drawn by this call.
        """
        if not self.enabled:
            return False
        now = time.time()
        if now - self.start < self.after or now - self.last < self.every:
            return False
        self.last = now
        frac = min(done / self.total, 1.0)
        fill = int(round(_WIDTH * frac))
        elapsed = now - self.start
        eta = elapsed * (1 - frac) / frac if frac > 0 else float("nan")
        bar = "#" * fill + "." * (_WIDTH - fill)
        out = self._out()
        out.write(f"\r[{self.name}] epoch {epoch}/{n_epochs} [{bar}]"
                  f" {100 * frac:5.1f}% elapsed {elapsed:.0f}s eta {eta:.0f}s ")
        out.flush()
        self.shown = True
        return True

    def clear(self):
        """Erase the bar if it is showing (before other output, and at the end)."""
        if self.shown:
            out = self._out()
            out.write("\r" + " " * 100 + "\r")
            out.flush()
            self.shown = False


class DeferInterrupt:
    """Context manager deferring Ctrl-C (SIGINT) to a point the loop chooses.

    Attributes
    ----------
    requested : bool
        True once Ctrl-C was pressed inside the block; the loop then stops at
        its next consistent point and raises ``KeyboardInterrupt`` itself.
    active : bool
        Whether the handler was installed (main thread, default handler).

    Notes
    -----
    A second Ctrl-C raises ``KeyboardInterrupt`` at once.  Outside the main
    thread, or when a non-default SIGINT handler is installed, the block
    runs with the signal handling unchanged (``active`` is False).
    """

    def __init__(self):
        self.requested = False
        self.old = None

    @property
    def active(self):
        return self.old is not None

    def __enter__(self):
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self.old = signal.default_int_handler
            signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
            self.old = None
        return False


#: kernels estimated below this many multiply-adds (a few tens of milliseconds)
#: run on the calling thread: a worker thread costs about 0.1 ms to start
INTERRUPTIBLE_MIN_WORK = 1 << 26


def interruptible(fn, work, **kwargs):
    """``fn(stop=flag, **kwargs)``, interruptible by Ctrl-C.

    Parameters
    ----------
    fn : callable
        An engine kernel taking a ``stop`` keyword (1-element int64 array).
    work : int
        Estimated multiply-adds; below ``INTERRUPTIBLE_MIN_WORK``, or when not
        called from the main thread (signals arrive only there), ``fn`` runs
        on the calling thread (with a flag that is never set).
    **kwargs
        The kernel's other arguments.

    Returns
    -------
    The kernel's result.

    Raises
    ------
    KeyboardInterrupt
        Ctrl-C while the kernel ran; it stopped at its next check, so its
        in-place arguments may hold partial results (the callers say which).
    """
    import numpy as np

    stop = np.zeros(1, np.int64)
    if work < INTERRUPTIBLE_MIN_WORK or threading.current_thread() is not threading.main_thread():
        return fn(stop=stop, **kwargs)
    from ._threads import thread_setup_like_caller
    setup = thread_setup_like_caller(getattr(fn, "__module__", None) or "")
    box = {}

    def target():
        try:
            setup()
            box["result"] = fn(stop=stop, **kwargs)
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    worker = threading.Thread(target=target, name="dlkernels-kernel", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.05)   # a timed wait: signal handlers run in between
    except BaseException:
        stop[0] = 1
        while worker.is_alive():
            try:
                worker.join(0.05)
            except KeyboardInterrupt:   # a second Ctrl-C: the kernel is already stopping
                pass
        raise
    if "error" in box:
        raise box["error"]
    return box.get("result")
