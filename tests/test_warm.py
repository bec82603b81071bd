"""The helper process that compiles the exact-metrics kernel during a first run (ketasim._warm):
it must compile exactly the kernel the course summary uses (else the run compiles it again)."""

import os
import subprocess
import sys
import textwrap

import pytest

import ketasim
from ketasim import _kernels, _warm
from ketasim.metrics import course_metrics


def test_the_helper_compiles_the_signature_the_summaries_use():
    _warm.compile_metrics()
    r = ketasim.simulate("ketamine-iv", "standard-iv", ketasim.time_grid(24 * 5, 0.5))
    course_metrics(r)
    ketasim.engine.session_metrics("ketamine-iv", "standard-iv",
                                   params={"CL": [90.0, 100.0]}, metrics=("cmax", "auc"))
    assert len(_kernels.metrics_range.signatures) == 1


def test_nothing_starts_when_the_kernel_is_cached_or_when_switched_off(monkeypatch):
    _warm.compile_metrics()            # in the cache now
    _warm.start_metrics()
    assert _warm._PENDING == []
    monkeypatch.setenv("KETASIM_WARM", "0")
    monkeypatch.setattr(_warm, "_in_cache", lambda d: False)
    _warm.start_metrics()
    assert _warm._PENDING == []


@pytest.mark.slow
def test_a_first_run_loads_what_the_helper_compiled(tmp_path):
    """With an empty cache, the helper compiles the grid kernel's later parts
    (``_warm.GRID_PARTS``, with the argument types written there), then the metrics kernel.
    The grid kernel's own compilation, after it, finds every part in the cache (a hit, none
    compiled again: the types written there are the ones the grid kernel calls them with),
    and the course summary's metrics call finds the metrics kernel there too. One process
    with an empty cache checks both (each had taken one of its own, 15-40 s)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), KETASIM_WARM="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                        if p)       # no empty entry (the current folder)
    code = textwrap.dedent("""
        from types import SimpleNamespace
        import numpy as np
        import ketasim
        from ketasim import _kernels, _warm
        from ketasim.metrics import course_metrics
        _warm.start("grid", "metrics")
        started = len(_warm._PENDING)
        _warm.wait()                        # (a first run does not wait: it races)
        ketasim.simulate("ketamine-iv", "standard-iv", np.linspace(0.0, 240.0, 50))
        for name, _ in _warm.GRID_PARTS:
            st = getattr(_kernels, name).stats
            print(name, sum(st.cache_hits.values()), sum(st.cache_misses.values()))
        m = ketasim.load_model("esketamine-nasal")
        d = ketasim.spravato_course(months=2)
        res = SimpleNamespace(model=m, doses=d, times=np.linspace(0.0, 24.0 * 40, 5),
                              names=("plasma", "glutamate"), inputs={"weight_kg": 70.0},
                              population=False)
        cm = course_metrics(res)
        st = _kernels.metrics_range.stats
        print("metrics_range", sum(st.cache_hits.values()), sum(st.cache_misses.values()))
        print("peak", float(np.nanmax(cm.cmax_ng_ml)) > 0)
        print("started", started)
    """)
    # run from a folder holding a csv.py: the helper must not import it (python -P)
    here = tmp_path / "cwd"
    here.mkdir()
    (here / "csv.py").write_text("open('MARKER', 'w').write('ran')\n")
    p = subprocess.run([sys.executable, "-P", "-c", code], env=env, capture_output=True,
                       text=True, timeout=600, cwd=here)
    assert p.returncode == 0, p.stderr[-2000:]
    assert not (here / "MARKER").exists()
    lines = p.stdout.split("\n")
    assert "started 1" in lines and "peak True" in lines, lines
    rows = [ln.split() for ln in lines if ln and not ln.startswith(("started", "peak"))]
    assert [r[0] for r in rows] == [n for n, _ in _warm.GRID_PARTS] + ["metrics_range"]
    assert all(r[1:] == ["1", "0"] for r in rows), rows


def test_a_programs_first_simulation_starts_the_helper(monkeypatch):
    """The first simulation of a process (the grid kernel not compiled or loaded in it yet)
    asks for the helper (which itself does nothing when both kernels are in the cache);
    later ones do not ask again."""
    ketasim.simulate("ketamine-iv", "standard-iv", [0.0, 1.0])       # (compiled or loaded)
    calls = []
    monkeypatch.setattr(_warm, "start", lambda *needs: calls.append(needs))
    ketasim.simulate("ketamine-iv", "standard-iv", [0.0, 1.0])
    assert calls == []                  # this process has the kernel

    real = _kernels.grid_range

    class NotYetLoaded:
        overloads = {}

        def __call__(self, *args):
            return real(*args)

    monkeypatch.setattr(_kernels, "grid_range", NotYetLoaded())
    r = ketasim.simulate("ketamine-iv", "standard-iv", [0.0, 1.0], outputs=["plasma"])
    assert calls == [("grid", "metrics")]
    assert r.output("plasma")[1] > 0


def test_one_helper_at_a_time_compiles(tmp_path):
    """Worker processes starting at once on an empty cache each start a helper: while one
    holds the lock, another stops at once and compiles nothing."""
    import fcntl

    cache = tmp_path / "cache"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    cache.mkdir()
    with open(cache / "ketasim-warm.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)       # (a first helper at work)
        p = subprocess.run([sys.executable, "-P", "-m", "ketasim._warm", "grid", "metrics"],
                           env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    # (nothing compiled into the cache)
    assert sorted(f.name for f in cache.rglob("*") if f.is_file()) == ["ketasim-warm.lock"]


def test_a_finished_helper_is_collected_by_the_next_simulation(monkeypatch):
    """A program that never takes metrics keeps no finished helper process around: the next
    simulation collects it (its exit status taken, no zombie left)."""
    ketasim.simulate("ketamine-iv", "standard-iv", [0.0, 1.0])        # (compiled or loaded)
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    p.returncode = None                 # (as a helper that has ended, not yet collected)
    monkeypatch.setattr(_warm, "_PENDING", [p])
    ketasim.simulate("ketamine-iv", "standard-iv", [0.0, 1.0])
    assert _warm._PENDING == [] and p.returncode == 0


def test_grid_part_signatures_are_numba_types():
    from numba import types

    sig = _warm.signature("F2 b f i I1r")
    assert sig == (types.Array(types.float64, 2, "C"), types.boolean, types.float64,
                   types.int64, types.Array(types.int64, 1, "C", readonly=True))


class _Tty:
    """A stream that says it is a terminal and keeps what is written to it."""

    def __init__(self, tty=True):
        self.tty = tty
        self.text = ""

    def isatty(self):
        return self.tty

    def write(self, s):
        self.text += s

    def flush(self):
        pass


def test_a_first_run_at_a_terminal_says_it_is_compiling(monkeypatch):
    cached = {"grid_range": True, "metrics_range": False}
    monkeypatch.setattr(_warm, "_in_cache", lambda d: cached[d.py_func.__name__])
    tty = _Tty()
    assert _warm.notice_first_run("grid", "metrics", stream=tty)
    assert tty.text == _warm.FIRST_RUN_NOTE + "\n"
    assert "compiling" in tty.text and "once" in tty.text
    # the kernels the command needs are in the cache: nothing said
    tty = _Tty()
    assert not _warm.notice_first_run("grid", stream=tty) and tty.text == ""
    # not a terminal (a script, a pipe, a log): nothing said, whatever the cache holds
    piped = _Tty(tty=False)
    assert not _warm.notice_first_run("grid", "metrics", stream=piped) and piped.text == ""


def _stderr_on_a_terminal(cmd, env, until=None, timeout=120.0):
    """Run ``cmd`` with its standard error on a pseudo-terminal; returns what it wrote there
    (stopping the process once ``until`` has appeared)."""
    import pty
    import select
    import time

    master, slave = pty.openpty()
    p = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=slave)
    os.close(slave)
    out = b""
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            if until is not None and until.encode() in out:
                break
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(master, 4096)
                except OSError:          # the process ended and closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            elif p.poll() is not None:
                break
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
        os.close(master)
    return out.decode(errors="replace")


def test_the_command_line_says_it_at_a_terminal_on_a_first_run_only(tmp_path):
    """With an empty cache, ``ketasim simulate`` at a terminal says it is compiling before it
    does (the process is stopped once it has); with the kernel in the cache, or with standard
    error a pipe, nothing is said."""
    cmd = [sys.executable, "-m", "ketasim", "simulate", "--until", "24", "--out",
           str(tmp_path / "c.csv")]
    cold = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), KETASIM_WARM="0")
    said = _stderr_on_a_terminal(cmd, cold, until=_warm.FIRST_RUN_NOTE)
    assert _warm.FIRST_RUN_NOTE in said
    ketasim.simulate("ketamine-iv", "standard-iv", ketasim.time_grid(24, 0.25))   # cached
    said = _stderr_on_a_terminal(cmd, dict(os.environ, KETASIM_WARM="0"))   # (this cache)
    assert _warm.FIRST_RUN_NOTE not in said and (tmp_path / "c.csv").exists()
    # a first run with standard error a pipe: the notice would come within a second of the
    # start (before anything compiles); five seconds of nothing, then the run is stopped
    p = subprocess.Popen(cmd, env=cold, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    try:
        _, err = p.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
    assert _warm.FIRST_RUN_NOTE not in err


def _clean_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                        if p)
    return env


def _course_digest(r) -> str:
    import hashlib

    return hashlib.sha256(r.data.tobytes()).hexdigest()


def test_importing_ketasim_loads_no_numba_until_a_kernel_is_needed():
    """The CLI forks its figure helper before any kernel runs: the helper must not carry
    Numba, so ``import ketasim`` (and the modules a command imports before its first kernel)
    must not load it. The first simulation then loads it and gives the usual numbers."""
    code = textwrap.dedent("""
        import sys
        import ketasim
        from ketasim import cli, cli_teach, engine, plotting, simulate, _offload   # noqa
        before = "numba" in sys.modules
        r = ketasim.simulate("ketamine-iv", "standard-iv", ketasim.time_grid(240.0, 0.5))
        import hashlib
        print(before, "numba" in sys.modules, hashlib.sha256(r.data.tobytes()).hexdigest())
    """)
    p = subprocess.run([sys.executable, "-P", "-c", code], env=_clean_env(),
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    before, after, digest = p.stdout.split()
    r = ketasim.simulate("ketamine-iv", "standard-iv", ketasim.time_grid(240.0, 0.5))
    assert (before, after, digest) == ("False", "True", _course_digest(r))


def test_the_program_loads_numbas_target_without_cffi_or_blas_and_gives_them_back():
    """As the ketasim program, prepare_target loads Numba's target while CFFI and SciPy's
    BLAS stay unimported; both import normally afterwards, Numba still compiles np.dot
    (through SciPy's BLAS), and the kernels give the same bits as in this process."""
    code = textwrap.dedent("""
        import sys
        import numpy as np
        from ketasim.cli import console    # noqa: F401 (this script is then the program)
        from ketasim import _warm
        ok = _warm.prepare_target()
        loaded = [m for m in _warm.TARGET_OPTIONAL if m in sys.modules]
        import scipy.linalg.cython_blas    # noqa: F401 (importable again)
        try:
            import cffi  # noqa: F401
            cffi_ok = True
        except ImportError:                # not installed: then it must be absent, not hidden
            cffi_ok = "cffi" not in sys.modules
        import numba

        @numba.njit
        def dot(a, b):
            return np.dot(a, b)

        a = np.arange(1.0, 5.0)
        import ketasim
        r = ketasim.simulate("ketamine-iv", "standard-iv", ketasim.time_grid(240.0, 0.5))
        import hashlib
        print(ok, loaded == [], cffi_ok, dot(a, a) == 30.0,
              hashlib.sha256(r.data.tobytes()).hexdigest())
    """)
    p = subprocess.run([sys.executable, "-P", "-c", code], env=_clean_env(),
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    *flags, digest = p.stdout.split()
    assert flags == ["True"] * 4
    r = ketasim.simulate("ketamine-iv", "standard-iv", ketasim.time_grid(240.0, 0.5))
    assert digest == _course_digest(r)


def test_prepare_target_hides_only_while_loading_and_only_in_the_program(monkeypatch):
    """Outside the program (a notebook, a test, a library) and while another thread runs,
    nothing is hidden and Numba is left to load as usual; in the program the modules are
    hidden exactly while the target loads, and gone from ``sys.modules`` afterwards."""
    import threading

    from numba.core.registry import cpu_target

    from ketasim import _offload

    fake = "ketasim_probe_not_a_module"
    seen = []
    monkeypatch.setattr(_warm, "TARGET_OPTIONAL", (fake, "numpy"))
    monkeypatch.setattr(cpu_target.target_context, "refresh",
                        lambda: seen.append((fake in sys.modules, sys.modules.get(fake, 0),
                                             sys.modules["numpy"] is not None)))
    assert not _warm.prepare_target() and seen == []          # not the program
    monkeypatch.setattr(_offload, "_is_program", lambda: True)
    monkeypatch.setattr(threading, "active_count", lambda: 2)
    assert not _warm.prepare_target() and seen == []          # another thread runs
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    assert _warm.prepare_target()
    # hidden while loading (an entry of None); numpy, imported already, left as it was
    assert seen == [(True, None, True)]
    assert fake not in sys.modules


def test_stop_ends_the_helper_before_returning(monkeypatch):
    # a command stopped during a first run (Ctrl-C, an error) leaves no helper behind it,
    # not even for the moment it takes to die (it had outlived the command by up to a second)
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    monkeypatch.setattr(_warm, "_PENDING", [p])
    _warm.stop()
    assert p.returncode is not None and not _warm._PENDING
