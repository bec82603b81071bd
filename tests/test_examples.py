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
