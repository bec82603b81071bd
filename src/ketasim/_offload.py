"""Draw a command's figure on the second core while this process simulates.

``ketasim course`` spends about as long importing matplotlib and drawing its figure as it
does loading the compiled kernels and simulating, and the figure needs the simulation. On a
machine with two or more cores, :func:`start` forks a helper process at once; it imports
matplotlib (and loads its fonts) while this process simulates, then receives the simulated
run through a pipe, draws and encodes the figure and sends the encoded bytes back, while this
process builds the table and the summary. The files are then written by this process, all or
nothing, exactly as without a helper: the figure's bytes are the same ones (the same code on
the same data).

The helper is used only where forking is safe and cheap: on Linux, when ketasim is the
program itself (the ``ketasim`` command or ``python -m ketasim``; never inside a caller's
process, e.g. a notebook or a test calling :func:`ketasim.cli.main`), while no other thread
runs, with at least two cores available, and not with ``KETASIM_FORK=0``. Otherwise
:meth:`Helper.result` simply runs the function here. If the helper fails in any way (it is
killed or stopped, a result cannot be sent, an unexpected exception, nothing within
:data:`WAIT_S`), the function is run again in this process, which then gives the result, or
the error with its own traceback; a bad-input error
(:class:`~ketasim.errors.KetasimInputError`) raised by the helper is raised here as is. The
helper ends with this process: on an error or an interrupt here it is killed, and if this
process dies first it sees the pipe close and exits. Ctrl-C and stop signals are held back
while the helper is forked, so none is lost in between. ``KETASIM_FORK=strict`` (for tests)
makes a helper that cannot start, or that fails, an error instead of running the function
here.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import sys
import threading
import time

from .io import _SIGNALS

#: Modules a helper imports before the data arrive (the figure's fixed cost).
PRELOAD = ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg",
           "matplotlib.font_manager", "PIL.PngImagePlugin")


#: Seconds a helper may take to accept the data, and then to send its result, before it is
#: stopped and the work is done here (a course figure takes about 0.5 s).
WAIT_S = 120.0

#: Largest data handed to a helper: a longer course (the standard one is about 11 MB) is
#: drawn in this process, so the copies never add much to its memory.
MAX_PAYLOAD_BYTES = 64 * 2**20


class Helper:
    """A forked helper process, or none (``pid is None``): :meth:`submit` then
    :meth:`result` work either way."""

    def __init__(self, pid=None, to_child=None, from_child=None):
        self.pid, self._to, self._from = pid, to_child, from_child
        self._job = None

    def submit(self, fn, *args) -> None:
        """Hand ``fn(*args)`` to the helper, if there is one (``fn`` must be a module-level
        function and the arguments picklable); :meth:`result` gives its value. Once per
        helper."""
        self._job = (fn, args)
        if self.pid is None:
            return
        try:
            payload = pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)
            _send(self._to, payload, time.monotonic() + WAIT_S)
        except (OSError, ValueError, pickle.PickleError, AttributeError, TypeError,
                TimeoutError):
            self.close()            # lost: :meth:`result` runs the function here
            return
        os.close(self._to)
        self._to = None

    def result(self):
        """The value of the submitted call: the helper's, else computed here (see the module
        docstring)."""
        fn, args = self._job
        status, value = "lost", None
        if self.pid is not None:
            try:
                data = _receive(self._from, time.monotonic() + WAIT_S)
                status, value = pickle.loads(data)
            except (OSError, EOFError, ValueError, pickle.PickleError, AttributeError,
                    TypeError, ImportError, TimeoutError):
                status = "lost"
            finally:
                self.close()
        if status == "ok":
            return value
        from .errors import KetasimInputError

        if status == "error" and isinstance(value, KetasimInputError):
            raise value
        if os.environ.get("KETASIM_FORK") == "strict":
            raise RuntimeError(f"KETASIM_FORK=strict: the helper process gave no result "
                               f"({status}{': ' + repr(value) if value is not None else ''})")
        return fn(*args)        # here: the result, or the error with its own traceback

    def close(self) -> None:
        """End the helper (killed if it still runs) and close the pipes."""
        for fd in (self._to, self._from):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._to = self._from = None
        if self.pid is not None:
            # (the pid is forgotten only once reaped: an interrupt meanwhile leaves it to the
            # next call, from the caller's ``finally``)
            try:
                if os.waitpid(self.pid, os.WNOHANG) == (0, 0):
                    os.kill(self.pid, signal.SIGKILL)
                    os.waitpid(self.pid, 0)
            except (OSError, ChildProcessError):
                pass
            self.pid = None


def _send(fd: int, data: bytes, deadline: float) -> None:
    """Write all of ``data`` to the pipe ``fd`` by ``deadline`` (TimeoutError if not)."""
    view = memoryview(data)
    os.set_blocking(fd, False)
    while view:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([], [fd], [], left)[1]:
            raise TimeoutError("the helper process took no data")
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            continue


def _receive(fd: int, deadline: float) -> bytes:
    """Everything from the pipe ``fd`` up to its end, by ``deadline`` (TimeoutError if not)."""
    parts = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError("the helper process sent no result")
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)


def _is_program() -> bool:
    from .cli import console

    return getattr(sys.modules.get("__main__"), "console", None) is console


def usable() -> bool:
    """Whether :func:`start` forks (see the module docstring)."""
    if os.environ.get("KETASIM_FORK", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    if not hasattr(os, "fork") or threading.active_count() > 1 or sys.flags.inspect:
        return False
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return cores >= 2 and _is_program()


def start(force: bool = False) -> Helper:
    """Fork a helper when :func:`usable` (or ``force``); a :class:`Helper` either way."""
    if not (force or usable()):
        if os.environ.get("KETASIM_FORK") == "strict":
            raise RuntimeError("KETASIM_FORK=strict: no helper process here (not Linux, one "
                               "core, another thread running, or not the ketasim program)")
        return Helper()
    for stream in (sys.stdout, sys.stderr):     # nothing buffered is printed twice
        if stream is not None:
            try:
                stream.flush()
            except (OSError, ValueError):
                return Helper()
    try:
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
    except OSError:
        return Helper()
    # Ctrl-C and stops are blocked while forking (a signal handled inside the fork's own
    # hooks would be lost) and until the helper has its own handlers; here they arrive after
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        try:
            pid = os.fork()
        except OSError:
            for fd in (r1, w1, r2, w2):
                os.close(fd)
            return Helper()
        if pid == 0:                                 # the helper: never returns
            _child(r1, w2, w1, r2, old_mask)
        os.close(r1)
        os.close(w2)
        return Helper(pid, w1, r2)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)



def _child(rfd: int, wfd: int, w_other: int, r_other: int, old_mask) -> None:
    code = 0
    try:
        os.close(w_other)
        os.close(r_other)
        # Ctrl-C or a stop reaches the whole command: the helper just ends, silently
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        try:
            import importlib

            for m in PRELOAD:
                importlib.import_module(m)
            from matplotlib import font_manager

            font_manager.get_font(font_manager.findfont(font_manager.FontProperties()))
        except Exception:        # the call below then fails or not, as it would here
            pass
        with os.fdopen(rfd, "rb") as f:
            fn, args = pickle.load(f)
        try:
            out = ("ok", fn(*args))
        except Exception as exc:        # noqa: BLE001 - sent back, judged there
            out = ("error", exc)
        try:
            data = pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            data = pickle.dumps(("error", None))
        with os.fdopen(wfd, "wb") as f:
            f.write(data)
    except BaseException:           # EOF (the parent ended), a closed pipe, anything
        code = 1
    finally:
        os._exit(code)
