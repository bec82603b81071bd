"""Every example script runs (small sizes) and writes its figure; the README gallery shows
the committed figures the examples make."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "examples").glob("[0-9][0-9]_*.py"))
FIGURE = re.compile(r'save\(\w+(?:\([^)]*\))?, "(\w+)"\)')


def test_there_are_six_or_seven_examples():
    # the six teaching topics, and the course with and without maintenance
    assert 6 <= len(SCRIPTS) <= 7


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_example_runs(script, tmp_path):
    env = dict(os.environ, KETASIM_EXAMPLES_SMALL="1", KETASIM_EXAMPLES_OUT=str(tmp_path),
               MPLBACKEND="Agg",
               PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    name = FIGURE.search(script.read_text()).group(1)
    png = tmp_path / f"{name}.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000
    assert f"wrote {png}" in p.stdout


def test_readme_gallery_shows_every_example_figure():
    readme = (ROOT / "README.md").read_text()
    gallery = ROOT / "docs" / "gallery"
    total = 0
    for script in SCRIPTS:
        name = FIGURE.search(script.read_text()).group(1)
        png = gallery / f"{name}.png"
        assert png.is_file(), png
        assert f"docs/gallery/{name}.png" in readme
        assert script.name in readme
        total += png.stat().st_size
    assert total < 600_000


def test_an_example_figure_is_written_all_or_nothing(tmp_path, monkeypatch):
    """A figure that fails while it is drawn (Ctrl-C, a full disk) leaves the older file as it
    was: the examples write through ketasim's all-or-nothing writer, not straight into the
    file."""
    import importlib.util

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = importlib.util.spec_from_file_location("_save", ROOT / "examples" / "_save.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setenv("KETASIM_EXAMPLES_OUT", str(tmp_path))
    monkeypatch.delenv("KETASIM_GALLERY", raising=False)
    old = tmp_path / "fig.png"
    old.write_bytes(b"the older figure")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])

    def broken(fname, **kw):             # half a PNG, then the interruption
        (fname.write if hasattr(fname, "write") else Path(fname).write_bytes)(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(KeyboardInterrupt):
        mod.save(fig, "fig")
    assert old.read_bytes() == b"the older figure"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]
    monkeypatch.undo()
    monkeypatch.setenv("KETASIM_EXAMPLES_OUT", str(tmp_path))
    mod.save(fig, "fig")
    plt.close(fig)
    assert old.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_simulate_docstring_example_runs_as_shown():
    # (it had shown the published 72.5 ng/mL, under a doctest SKIP, where the model gives 73.0)
    import doctest

    import ketasim

    mod = sys.modules["ketasim.simulate"]
    assert "+SKIP" not in ketasim.simulate.__doc__
    assert doctest.testmod(mod, verbose=False).failed == 0


@pytest.mark.parametrize("stem", ["01_infusion_vs_spray", "05_dose_sweep"])
def test_an_example_occupancy_panel_names_its_ki_calibration(stem, tmp_path, monkeypatch):
    """An occupancy panel says which Ki calibration it shows (the in-vitro one about doubles
    it: 19 against 40 % at 0.5 mg/kg), as the course figure does; it had said only
    "MODEL-PREDICTED"."""
    import runpy

    monkeypatch.setenv("KETASIM_EXAMPLES_SMALL", "1")
    monkeypatch.setenv("KETASIM_EXAMPLES_OUT", str(tmp_path))
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    monkeypatch.delitem(sys.modules, "_save", raising=False)
    fig = runpy.run_path(str(ROOT / "examples" / f"{stem}.py"))["fig"]
    texts = [t for ax in fig.axes for t in (ax.get_title(loc="left"), ax.get_ylabel())
             if "occupancy" in t.lower()]
    assert texts and all("in-vivo Ki" in t for t in texts), texts


def test_the_dose_sweep_says_what_its_points_show(tmp_path, monkeypatch):
    """The README said the dose sweep's model-predicted occupancy 'saturates', while its
    points rise from 4 % to 41 % with no plateau: it grows less than in proportion to the
    dose, and the README gives the first and last point as the example computes them."""
    import runpy

    import numpy as np

    monkeypatch.setenv("KETASIM_EXAMPLES_SMALL", "1")
    monkeypatch.setenv("KETASIM_EXAMPLES_OUT", str(tmp_path))
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    monkeypatch.delitem(sys.modules, "_save", raising=False)
    g = runpy.run_path(str(ROOT / "examples" / "05_dose_sweep.py"))
    dose, occ = np.asarray(g["doses_mg_per_kg"]), np.asarray(g["occ"])
    steps = np.diff(occ)
    assert steps[-1] > 0.2 * steps[0]                    # no plateau in sight
    assert occ[-1] / occ[0] < dose[-1] / dose[0]          # less than in proportion
    caption = next(ln for ln in (ROOT / "README.md").read_text().splitlines()
                   if "`05_dose_sweep.py` —" in ln)
    script = (ROOT / "examples" / "05_dose_sweep.py").read_text()
    for text in (g["fig"]._suptitle.get_text(), caption, script):
        assert "saturat" not in text.lower(), text
        assert "less than in proportion" in text, text
    assert (f"about {occ[0]:.0f} % at {dose[0]:g} mg/kg, {occ[-1]:.0f} % at {dose[-1]:g} "
            "mg/kg") in caption
