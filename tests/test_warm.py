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
def test_a_first_run_loads_the_kernel_the_helper_compiled(tmp_path):
    """With an empty cache: the helper process compiles the kernel; a second process then
    runs the course summary's metrics call and finds it in the cache (a hit, nothing
    compiled)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), KETASIM_WARM="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                        if p)       # no empty entry (the current folder)
    code = textwrap.dedent("""
        import sys
        from types import SimpleNamespace
        import numpy as np
        import ketasim
        from ketasim import _kernels, _warm
        from ketasim.metrics import course_metrics
        _warm.start_metrics()
        started = len(_warm._PENDING)
        m = ketasim.load_model("esketamine-nasal")
        d = ketasim.spravato_course(months=2)
        res = SimpleNamespace(model=m, doses=d, times=np.linspace(0.0, 24.0 * 40, 5),
                              names=("plasma", "glutamate"), inputs={"weight_kg": 70.0},
                              population=False)
        cm = course_metrics(res)
        st = _kernels.metrics_range.stats
        print(started, sum(st.cache_hits.values()), sum(st.cache_misses.values()),
              float(np.nanmax(cm.cmax_ng_ml)) > 0)
    """)
    # run from a folder holding a csv.py: the helper must not import it (python -P)
    here = tmp_path / "cwd"
    here.mkdir()
    (here / "csv.py").write_text("open('MARKER', 'w').write('ran')\n")
    p = subprocess.run([sys.executable, "-P", "-c", code], env=env, capture_output=True,
                       text=True, timeout=600, cwd=here)
    assert p.returncode == 0, p.stderr[-2000:]
    assert not (here / "MARKER").exists()
    started, hits, misses, ok = p.stdout.split()[-4:]
    assert started == "1" and int(hits) == 1 and int(misses) == 0 and ok == "True"
