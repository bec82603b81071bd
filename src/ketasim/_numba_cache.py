"""Where Numba keeps compiled kernels: imported first by ``ketasim/__init__.py``, before numba.

Numba caches next to the source (``__pycache__``) when the package folder is writable. When it is
not (a read-only site-packages, a shared cluster image), ketasim points ``NUMBA_CACHE_DIR`` at a
user cache folder, ``$XDG_CACHE_HOME/ketasim/numba`` (default ``~/.cache/ketasim/numba``), so
every process — each Dask worker included — compiles once and reuses the cache afterwards. Where
there is no such folder to be had (no home folder to be found, or one that cannot be written, as
in a container run as a user of its own), it is ``ketasim-<uid>/numba`` in the temporary folder,
a folder of this user's own that no one else may write (a cache holds code that is run). A
``NUMBA_CACHE_DIR`` set by the user is always kept.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from pathlib import Path


def _home_cache(environ) -> str | None:
    """``$XDG_CACHE_HOME/ketasim/numba`` or ``~/.cache/ketasim/numba``; None without a home
    folder (HOME unset and a user id the system does not list)."""
    base = environ.get("XDG_CACHE_HOME")
    if not base or not os.path.isabs(base):     # (a relative one is ignored, as XDG says)
        try:
            base = str(Path.home() / ".cache")
        except (RuntimeError, KeyError, OSError):
            return None
    return str(Path(base) / "ketasim" / "numba")


def _private_cache() -> str | None:
    return private_folder("numba")


def private_folder(name: str) -> str | None:
    """``ketasim-<uid>/<name>`` in the temporary folder, its ``ketasim-<uid>`` made for this
    user alone (mode 700), or None when that folder cannot be made or is not this user's own
    folder, closed to others."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    try:
        base = Path(tempfile.gettempdir()) / f"ketasim-{uid if uid is not None else 'user'}"
        try:
            base.mkdir(mode=0o700)
        except FileExistsError:
            pass
        st = os.lstat(base)
    except (OSError, RuntimeError):
        return None
    if not stat.S_ISDIR(st.st_mode):        # (a link or a file someone else put there)
        return None
    if uid is not None and (st.st_uid != uid or st.st_mode & 0o022):
        return None
    return str(base / name)


def choose_cache_dir(package_dir, environ) -> str | None:
    """The cache folder to set, or None to leave Numba's default (or the user's choice)."""
    if environ.get("NUMBA_CACHE_DIR"):
        return None
    pkg = Path(package_dir)
    pyc = pkg / "__pycache__"
    if os.access(pkg, os.W_OK) and (not pyc.exists() or os.access(pyc, os.W_OK)):
        return None
    # (Numba's own default would be its user folder, "~/.cache/numba": without a home folder it
    # makes a folder named "~" in the current one, and where that cannot be written it
    # refuses to load any kernel)
    return _home_cache(environ) or _private_cache()


def writable(folder: str) -> bool:
    """Whether ``folder`` is, or can be made, a folder that files can be written in."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        return False
    return True


def configure() -> None:
    folder = choose_cache_dir(Path(__file__).parent, os.environ)
    if folder is None:
        return
    for candidate in (folder, _private_cache()):
        if candidate is not None and writable(candidate):
            os.environ["NUMBA_CACHE_DIR"] = candidate
            if "numba" in sys.modules:         # numba read its configuration already
                sys.modules["numba"].config.CACHE_DIR = candidate
            return


configure()
