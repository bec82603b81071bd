"""Compile on the second core, during a first run, what this process would compile after.

A first run with an empty JIT cache compiles two kernels (Numba, one function after another in
a process): the grid kernel for the curves and the exact-metrics kernel for the summaries.
A first run starts a helper process (``python -m ketasim._warm grid metrics``) that compiles
into the shared cache, while this process compiles the grid kernel: first the grid kernel's
helpers that its own compilation reaches last (:data:`GRID_PARTS`, about a fifth of it),
then the metrics kernel. This process loads those parts from the cache when it reaches them,
and :func:`wait` is called before the metrics kernel is first used, which then loads from the
cache too. With two free cores the first calls of a program that simulates and then takes
metrics take about 60 % of the time they took one after the other (the parts are ready in
time; anything not ready is compiled here, as it would have been).

Started by the command-line's commands (:func:`ahead`, with the kernels they need) and by the
first simulation of a process (:func:`ketasim.engine.run`). Nothing happens when the kernels
are in the cache already, on a machine with one core, or with ``KETASIM_WARM=0``; any
failure of the helper only means this process compiles everything itself, as it would have.
A helper still running when the process ends is stopped (:func:`stop`); one helper at a
time compiles for a cache (:func:`only_helper`), so worker processes starting together on an
empty cache do not each add a second compiling process.

The CLI's commands call :func:`ahead` just before their first kernel: it starts that helper
when useful, loads Numba's target without the modules no kernel needs
(:func:`prepare_target`) and tells a person at a terminal that a first run compiles.
(``import ketasim`` does not load Numba; the kernels load at their first use, so a command's
figure helper, forked before, never carries it.)
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys

_PENDING: list = []
WAIT_S = 120.0       # a helper that takes longer than this is stopped (this process compiles)


def _in_cache(dispatcher) -> bool:
    """Whether Numba's cache has an index for this kernel (True when that cannot be told)."""
    try:
        return os.path.exists(dispatcher._cache._cache_file._index_path)
    except Exception:     # pragma: no cover - another Numba layout: do nothing
        return True


#: The grid kernel's helpers that its own compilation reaches last — the schematic integrator,
#: the block tables and the event step (which the metrics kernel calls too) — each
#: with the argument types the grid kernel calls it with (``F``/``I``: C-contiguous float64 /
#: int64 array of that many dimensions, ``r`` read-only; ``f``, ``i``, ``b``: float64, int64,
#: bool). A first run's helper compiles them into the cache while this process compiles the
#: grid kernel's first helpers and its own body; this process then loads them from the cache
#: when it reaches them (about a fifth of the grid kernel's compile: the helper then starts on
#: the metrics kernel, and the two processes end about together; with the small helpers after
#: them here too, the helper ended 2 s after this process). A signature that no
#: longer matches only means this process compiles that helper itself
#: (``tests/test_warm.py`` checks they match).
GRID_PARTS = (
    ("_pd_advance", "F1 b f F1 F1 F1 f F1 I1 F3 F3 I1 F1 F2 F1 F1 F1 F1 F1 F1 F1 F1 F1"),
    ("_occ_of", "f"),
    ("_blk_setup", "F2 b b F2 I1 F3 I1 I2 F3 I1 I2 F3 F3 F3 F3"),
    ("_apply_events", "F1 F1 I1 f i i F1r I1r F1r I1r F2r"),
)


def signature(spec: str) -> tuple:
    """Numba argument types from a :data:`GRID_PARTS` spec."""
    from numba import types

    scalars = {"f": types.float64, "i": types.int64, "b": types.boolean}
    dtypes = {"F": types.float64, "I": types.int64}
    out = []
    for tok in spec.split():
        if tok in scalars:
            out.append(scalars[tok])
        else:
            out.append(types.Array(dtypes[tok[0]], int(tok[1]), "C",
                                   readonly=tok.endswith("r")))
    return tuple(out)


def compile_grid_parts() -> None:
    """Compile :data:`GRID_PARTS` into the cache (in the helper process; any failure only
    means the grid kernel's own compilation does that part, as it would have)."""
    from . import _kernels

    for name, spec in GRID_PARTS:
        try:
            getattr(_kernels, name).compile(signature(spec))
        except Exception:       # pragma: no cover - a changed kernel: compiled in its place
            pass


def start(*needs: str) -> None:
    """Start a helper process that compiles, into the cache, what a first run of a command
    needing ``needs`` (``"grid"``, ``"metrics"``) can get done on the second core: the
    later parts of the grid kernel (:data:`GRID_PARTS`, while this process compiles the
    rest), then the metrics kernel. Only what is not in the cache yet; nothing at all on one
    core, with ``KETASIM_WARM=0`` or when a helper runs already. Returns at once."""
    if (os.environ.get("KETASIM_WARM", "1") == "0" or (os.cpu_count() or 1) < 2 or _PENDING
            or getattr(sys, "frozen", False)):     # (a frozen app is not a Python to run -m)
        return
    from . import _kernels

    kernels = {"grid": _kernels.grid_range, "metrics": _kernels.metrics_range}
    todo = [n for n in ("grid", "metrics") if n in needs and not _in_cache(kernels[n])]
    if not todo:
        return
    try:
        # -P, and started in the folder that holds the package: the user's current folder is
        # never on the helper's import path (not even through an empty PYTHONPATH entry), so a
        # csv.py or ketasim.py of theirs is never run by it
        from pathlib import Path

        p = subprocess.Popen([sys.executable, "-P", "-m", "ketasim._warm", *todo],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[1])
    except OSError:
        return
    _PENDING.append(p)


def start_metrics() -> None:
    """Start compiling the metrics kernel in a helper process, when useful (:func:`start`)."""
    start("metrics")


@atexit.register
def stop() -> None:
    """Stop a helper still running: a process that ends before it needs the kernel (an
    error, Ctrl-C, SIGTERM) does not leave it compiling."""
    while _PENDING:
        p = _PENDING.pop()
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(2.0)         # gone before this process is (and reaped)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def reap() -> None:
    """Forget a helper that has finished (and collect its exit status, so a long-lived
    program, a notebook say, that never takes metrics keeps no finished process around)."""
    _PENDING[:] = [p for p in _PENDING if p.poll() is None]


def wait() -> None:
    """Wait for a helper started by :func:`start` (if any) to finish."""
    while _PENDING:
        p = _PENDING.pop()
        try:
            p.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


#: Modules Numba's CPU target imports when it first loads its registries, only for features
#: no ketasim kernel uses: CFFI function types (``cffi`` then builds its C parser) and SciPy's
#: BLAS for ``np.correlate``/``np.convolve`` (``scipy.linalg`` and what it imports).
TARGET_OPTIONAL = ("cffi", "scipy.linalg.cython_blas")


def prepare_target() -> bool:
    """Load Numba's CPU target now, without :data:`TARGET_OPTIONAL`; True if it did.

    The first kernel call of a process, even with every kernel in the cache, loads the
    target's typing and lowering registries, and with them CFFI's C parser (when CFFI is
    installed) and SciPy's linear algebra: 0.4-0.5 s of a warm ``ketasim course``, of which
    these two are 0.2-0.3 s, for features no ketasim kernel uses.

    Only in the ``ketasim`` program itself (through :func:`ahead`), and only while no other
    thread runs, the two are hidden from ``import`` while the registries load, and put back
    at once: a later ``import scipy.linalg`` or ``import cffi`` works as ever. In this process
    Numba then types no CFFI function and compiles ``np.correlate``/``np.convolve`` with its
    own loop instead of BLAS; neither is in a ketasim kernel, so a kernel that is not in the
    cache yet compiles to the same code. A module imported already is left alone (it costs
    nothing then); any failure leaves the loading to the first call, as usual."""
    import threading

    from ._offload import _is_program

    if threading.active_count() > 1 or not _is_program():
        return False
    hidden = [m for m in TARGET_OPTIONAL if m not in sys.modules]
    try:
        from numba.core.registry import cpu_target

        for m in hidden:
            sys.modules[m] = None       # ``import m`` raises ImportError, which Numba handles
        cpu_target.target_context.refresh()
    except Exception:        # pragma: no cover - another Numba: its first call loads the target
        return False
    finally:
        for m in hidden:
            if sys.modules.get(m, 0) is None:
                del sys.modules[m]
    return True


FIRST_RUN_NOTE = ("ketasim: first run: compiling the solver (about 20 seconds on two free "
                  "cores, longer on a busy machine; once: later runs start in about a second)")


def notice_first_run(*names: str, stream=None) -> bool:
    """Tell a person at a terminal why a first run is quiet for a while: one line on standard
    error when a kernel the command needs (``"grid"``, ``"metrics"``) is not in Numba's cache
    yet. Nothing when standard error is not a terminal (scripts, pipes, logs). Returns whether
    it said so."""
    stream = sys.stderr if stream is None else stream
    try:
        if stream is None or not stream.isatty():
            return False
    except (AttributeError, ValueError):       # (no isatty, or a closed stream)
        return False
    from . import _kernels

    kernels = {"grid": _kernels.grid_range, "metrics": _kernels.metrics_range}
    if all(_in_cache(kernels[n]) for n in names):
        return False
    try:
        print(FIRST_RUN_NOTE, file=stream, flush=True)
    except (OSError, ValueError):
        return False
    return True


def ahead(*needs: str) -> None:
    """Before a command's first kernel call (``needs``: the kernels it uses, ``"grid"`` and/or
    ``"metrics"``): a first run that needs the grid kernel starts a helper that compiles its
    later parts, and the metrics kernel when needed too, alongside (:func:`start`); Numba's
    target is loaded (:func:`prepare_target`); a person at a terminal is told when a first
    run compiles (:func:`notice_first_run`). A command that forks a figure helper
    (``ketasim._offload``) calls this just after the fork: everything here imports Numba,
    which the helper then neither inherits nor needs."""
    if "grid" in needs:
        start(*needs)
    prepare_target()
    notice_first_run(*needs)


def compile_metrics() -> None:
    """The metrics kernel on a tiny course, through the same call as the course summary
    (:func:`ketasim.metrics.course_metrics`): the same argument types, so the same compiled
    kernel."""
    from .courses import standard_iv_course
    from .engine import run_metrics
    from .modelfile import load_model

    run_metrics(load_model("ketamine-iv"), standard_iv_course(months=1), None, 70.0,
                analyte="plasma", thresholds_occ=(0.3,), thresholds_conc_ng_ml=(),
                horizon_h=72.0, merge_h=1.0, schematic=True, occupancy_calibration=None,
                pd_rtol=1e-6)


def lock_path():
    """The file one helper at a time holds locked, in the cache's folder (``NUMBA_CACHE_DIR``
    or the package's ``__pycache__``, as :mod:`ketasim._numba_cache` chose)."""
    from pathlib import Path

    root = os.environ.get("NUMBA_CACHE_DIR") or str(Path(__file__).resolve().parent
                                                     / "__pycache__")
    return Path(root) / "ketasim-warm.lock"


def only_helper():
    """Lock :func:`lock_path` for this helper's lifetime: the open file, or None when another
    helper holds it (a pool of worker processes starting at once on an empty cache each asks
    for one; one compiles, the others stop at once and their programs compile what they still
    need). Where files cannot be locked (no ``fcntl``, a read-only folder) it runs anyway."""
    try:
        import fcntl
    except ImportError:       # pragma: no cover - not on POSIX
        return True
    try:
        path = lock_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a")
    except OSError:
        return True
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return None
    return fh


if __name__ == "__main__":
    held = only_helper()
    if held is not None:
        if "grid" in sys.argv[1:]:
            compile_grid_parts()
        if "metrics" in sys.argv[1:]:
            compile_metrics()
