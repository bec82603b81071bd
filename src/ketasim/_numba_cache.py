"""Where Numba keeps compiled kernels: imported first by ``ketasim/__init__.py``, before numba.

Numba caches next to the source (``__pycache__``) when the package folder is writable. When it is
not (a read-only site-packages, a shared cluster image), ketasim points ``NUMBA_CACHE_DIR`` at a
user cache folder, ``$XDG_CACHE_HOME/ketasim/numba`` (default ``~/.cache/ketasim/numba``), so
every process — each Dask worker included — compiles once and reuses the cache afterwards. A
``NUMBA_CACHE_DIR`` set by the user is always kept.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def choose_cache_dir(package_dir, environ) -> str | None:
    """The cache folder to set, or None to leave Numba's default (or the user's choice)."""
    if environ.get("NUMBA_CACHE_DIR"):
        return None
    pkg = Path(package_dir)
    pyc = pkg / "__pycache__"
    if os.access(pkg, os.W_OK) and (not pyc.exists() or os.access(pyc, os.W_OK)):
        return None
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "ketasim" / "numba")


def configure() -> None:
    folder = choose_cache_dir(Path(__file__).parent, os.environ)
    if folder is None:
        return
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    os.environ["NUMBA_CACHE_DIR"] = folder
    if "numba" in sys.modules:         # numba read its configuration already
        sys.modules["numba"].config.CACHE_DIR = folder


configure()
