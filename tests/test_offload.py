"""The helper process that draws a command's figure on the second core (ketasim._offload):
the same files as without it, its errors and failures handled, never left running.

Each check runs in a fresh Python process: forking the test runner itself (with its threads)
is what the helper refuses to do."""

import os
import subprocess
import sys
import textwrap
from hashlib import sha256

import pytest

from ketasim import _offload

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the helper forks on Linux only")


def _run(code: str, **env) -> subprocess.CompletedProcess:
    e = dict(os.environ, **env)
    e["PYTHONPATH"] = os.pathsep.join(p for p in e.get("PYTHONPATH", "").split(os.pathsep) if p)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=e, timeout=300)


HEAD = """
    import os, sys
    from ketasim import _offload
    from ketasim.errors import KetasimInputError
    PARENT = os.getpid()

    def pid():
        return os.getpid()

    def bad_input():
        raise KetasimInputError("dose_mg: got -1, expected a dose >= 0")

    def fails_in_helper_only():
        if os.getpid() != PARENT:
            raise RuntimeError("only in the helper")
        return "computed here"

    def dies_in_helper():
        if os.getpid() != PARENT:
            os._exit(3)
        return "computed here"

    def unpicklable():
        return (lambda: 1) if os.getpid() != PARENT else "computed here"

    def signals():
        import signal
        return (signal.getsignal(signal.SIGINT) is signal.SIG_DFL,
                sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])))
"""


def _with_head(body: str) -> str:
    return textwrap.dedent(HEAD) + textwrap.dedent(body)


def test_the_helper_runs_the_call_in_another_process_and_is_reaped():
    r = _run(_with_head("""
        h = _offload.start(force=True)
        child = h.pid
        h.submit(pid)
        got = h.result()
        print(child is not None, got == child, got != PARENT, h.pid is None)
        try:
            os.waitpid(child, 0)
            print("not reaped")
        except ChildProcessError:
            print("reaped")
    """))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True", "True", "True", "reaped"]


def test_a_bad_input_error_in_the_helper_is_raised_here_as_is():
    r = _run(_with_head("""
        h = _offload.start(force=True)
        h.submit(bad_input)
        try:
            h.result()
        except KetasimInputError as exc:
            print("raised:", exc)
    """))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "raised: dose_mg: got -1, expected a dose >= 0"


@pytest.mark.parametrize("fn", ["fails_in_helper_only", "dies_in_helper", "unpicklable"])
def test_a_helper_that_fails_means_the_call_runs_here(fn):
    code = _with_head(f"""
        h = _offload.start(force=True)
        h.submit({fn})
        print(h.result())
    """)
    r = _run(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "computed here"
    r = _run(code, KETASIM_FORK="strict")            # the failure is seen when asked for
    assert r.returncode != 0 and "KETASIM_FORK=strict" in r.stderr


def test_a_stopped_helper_is_given_up_after_the_wait_and_reaped():
    r = _run(_with_head("""
        import signal, time
        _offload.WAIT_S = 1.0
        h = _offload.start(force=True)
        child = h.pid
        os.kill(child, signal.SIGSTOP)
        t0 = time.monotonic()
        h.submit(pid)
        got = h.result()
        try:
            os.waitpid(child, 0)
            reaped = False
        except ChildProcessError:
            reaped = True
        print(got == PARENT, time.monotonic() - t0 < 30, reaped)
    """))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True", "True"]


def test_signals_are_held_only_while_forking_and_the_helper_gets_the_default_ones():
    """Ctrl-C is blocked around the fork (so it is not lost in the fork's hooks): afterwards
    this process has its mask and handler back, and the helper ends on one (default handler,
    nothing blocked)."""
    r = _run(_with_head("""
        import signal
        signal.signal(signal.SIGINT, signal.default_int_handler)
        before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        h = _offload.start(force=True)
        after = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        h.submit(signals)
        print(before == after, signal.getsignal(signal.SIGINT) is signal.default_int_handler,
              h.result())
    """))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True True (True, [])"


def test_a_helper_whose_parent_goes_away_exits():
    """The helper waits for its data on a pipe: when the parent's end closes (the parent
    ended), it exits by itself."""
    r = _run(_with_head("""
        import time
        h = _offload.start(force=True)
        os.close(h._to)
        t0 = time.monotonic()
        _, status = os.waitpid(h.pid, 0)
        print(os.waitstatus_to_exitcode(status), time.monotonic() - t0 < 60)
    """))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "True"]


def test_no_helper_inside_a_callers_process_or_when_switched_off(monkeypatch):
    assert not _offload.usable()         # pytest is the program here, not ketasim
    h = _offload.start()
    assert h.pid is None
    h.submit(os.getpid)
    assert h.result() == os.getpid()
    r = _run("""
        import sys
        from ketasim import _offload
        from ketasim.cli import console
        sys.modules["__main__"].console = console       # as in python -m ketasim
        print(_offload.usable())
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str((len(os.sched_getaffinity(0)) >= 2))
    r = _run("""
        import sys
        from ketasim import _offload
        from ketasim.cli import console
        sys.modules["__main__"].console = console
        print(_offload.usable())
    """, KETASIM_FORK="0")
    assert r.stdout.strip() == "False"


@pytest.mark.slow
@pytest.mark.parametrize("command", [
    ["course", "--model", "esketamine-nasal", "--doses", "spravato", "--months", "2",
     "--out", "{out}"],
    ["compare", "ketamine-iv@standard-iv", "esketamine-nasal@spravato", "--months", "2",
     "--out", "{out}"],
    ["simulate", "--until", "400", "--summary", "--out", "{out}/t.csv", "--plot",
     "{out}/f.png"],
])
def test_the_command_writes_the_same_files_with_and_without_the_helper(tmp_path, command):
    """``python -m ketasim`` with the helper (strict: it must have drawn the figure) and
    without it: byte-identical figure, table and printed output."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one core: no helper")
    outs = {}
    for mode in ("strict", "0"):
        out = tmp_path / mode
        out.mkdir()
        e = dict(os.environ, KETASIM_FORK=mode)
        e["PYTHONPATH"] = os.pathsep.join(p for p in e.get("PYTHONPATH", "").split(os.pathsep)
                                          if p)
        r = subprocess.run([sys.executable, "-m", "ketasim",
                            *(c.format(out=out) for c in command)],
                           capture_output=True, text=True, env=e, timeout=600)
        assert r.returncode == 0, r.stderr
        outs[mode] = (r.stdout, {p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert outs["strict"][0] == outs["0"][0].replace(str(tmp_path / "0"),
                                                      str(tmp_path / "strict"))
    assert outs["strict"][1].keys() == outs["0"][1].keys()
    assert len(outs["strict"][1]) == 2
    for name, data in outs["strict"][1].items():     # (digests: a bytes diff takes minutes)
        assert sha256(data).hexdigest() == sha256(outs["0"][1][name]).hexdigest(), name


@pytest.mark.parametrize("argv", [["simulate", "--until", "72", "--out", "{d}/s.csv", "--plot",
                                   "{d}/s.png"],
                                  ["course", "--months", "1", "--out-dir", "{d}/c"],
                                  ["compare", "ketamine-iv@standard-iv", "--months", "1",
                                   "--out-dir", "{d}/k"]])
def test_the_figure_helper_is_forked_before_numba_loads(tmp_path, argv):
    """Each command with a figure forks its helper before it imports Numba (``import
    ketasim`` and what a command imports before its first kernel do not load it), so the
    helper starts on matplotlib at once and never carries Numba; the command then writes its
    files as usual."""
    argv = [a.format(d=tmp_path) for a in argv]
    p = _run(f"""
        import sys
        from ketasim import _offload, cli
        seen = []
        real = _offload.start

        def spy(force=False):
            seen.append("numba" in sys.modules)
            return real(force)

        _offload.start = spy
        rc = cli.main({argv!r})
        print(rc, seen, "numba" in sys.modules)
    """)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split("\n")[-2] == "0 [False] True"
    assert sorted(f.suffix for f in tmp_path.rglob("*.*")) == [".csv", ".png"]
