"""The one documented error type of ketasim.

Every problem with user input — a model file, a dose table, a course option, a CLI argument or a
Python argument — raises :class:`KetasimInputError`, a subclass of :class:`ValueError`, whose
message names the source (file and line where known), the field, the offending value and what was
expected.
"""

from __future__ import annotations

import contextvars
import difflib
import functools
import sys
from collections.abc import Iterable

__all__ = ["KetasimInputError", "KetasimWarning", "suggest", "check_name"]


class KetasimInputError(ValueError):
    """Bad input: the message says where, which field, which value, and what was expected.

    The message is always one line: line breaks inside it (from a name in a user's file, say)
    are shown escaped.
    """

    def __init__(self, message="", *args):
        super().__init__(str(message).translate(_ONE_LINE), *args)


class KetasimWarning(UserWarning):
    """A run that does what was asked, with something the caller may not expect (sessions
    after the horizon left out of the metrics, say): ``warnings.simplefilter("error",
    KetasimWarning)`` makes it an error, ``"ignore"`` silences it."""


def warn(message: str) -> None:
    """A :class:`KetasimWarning` shown at the caller's line outside ketasim (the first frame
    of the stack not in this package), wherever inside ketasim it is raised."""
    import os
    import warnings

    here = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(1), 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(here):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, KetasimWarning, stacklevel=level)


# every character str.splitlines() breaks on, shown as its escape
_ONE_LINE = {ord(c): repr(c)[1:-1]
             for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


# the subjects of the dose table being prepared, once known: [(their IDs, the table's name)]
# (see naming_subjects), so that a message names a subject as the table does, by its ID
_TABLE_SUBJECTS: contextvars.ContextVar = contextvars.ContextVar("ketasim_table_subjects",
                                                                  default=None)


def naming_subjects(fn):
    """Decorate a function that prepares a run: within it, once :func:`name_subjects` has said
    which dose table's subjects are run, :func:`which_subject` names them by their IDs."""
    @functools.wraps(fn)
    def run(*args, **kw):
        token = _TABLE_SUBJECTS.set([None])
        try:
            return fn(*args, **kw)
        finally:
            _TABLE_SUBJECTS.reset(token)
    return run


def name_subjects(ids, source: str) -> None:
    """The subjects being prepared are those of a dose table (``ids`` in their order, the
    table named ``source``): see :func:`naming_subjects`."""
    holder = _TABLE_SUBJECTS.get()
    if holder is not None:
        holder[0] = (tuple(ids), source)


def which_subject(bad) -> str:
    """" for subject i of N" for the first True of ``bad`` (subjects along its first axis), or
    "" when there is only one subject: where a message names the subject a value broke in.
    A dose table's subject is named by its ID and the table ("for subject 7 of ds.csv", see
    :func:`naming_subjects`)."""
    import numpy as np

    bad = np.asarray(bad)
    if bad.ndim == 0 or bad.shape[0] <= 1:
        return ""
    i = int(np.argwhere(bad)[0][0])
    holder = _TABLE_SUBJECTS.get()
    named = holder[0] if holder is not None else None
    if named is not None and len(named[0]) == bad.shape[0]:
        from .io import id_label

        return f" for subject {id_label(named[0][i])} of {named[1]}"
    return f" for subject {i + 1} of {bad.shape[0]}"


def positive_hours(field: str, v) -> float:
    """``v`` as hours > 0 (one real, finite number), or a one-line error naming ``field``."""
    import math

    if not (is_real(v) and math.isfinite(v) and v > 0):
        raise KetasimInputError(f"{field}: got {v!r}, expected hours > 0")
    return float(v)


def is_real(x) -> bool:
    """Whether ``x`` is one real number: a Python or NumPy int or float (not a bool, text or
    array, nor a NumPy duration: ``np.timedelta64`` is a NumPy integer type, but a number of
    its own unit, not of the argument's), as an argument that takes a number must be. A
    Python int too large for a float (``10**400``) is none: every check after this one
    reads the value as a float (it had ended in Python's OverflowError)."""
    import numpy as np

    if (not isinstance(x, (int, float, np.integer, np.floating))
            or isinstance(x, (bool, np.bool_, np.timedelta64))):
        return False
    if isinstance(x, int):
        try:
            float(x)
        except OverflowError:
            return False
    return True


def is_whole(x) -> bool:
    """Whether ``x`` is one whole number: a Python or NumPy integer (not a bool, nor a NumPy
    duration, ``np.timedelta64``, which NumPy counts among its integers)."""
    import numpy as np

    return (isinstance(x, (int, np.integer))
            and not isinstance(x, (bool, np.bool_, np.timedelta64)))


def check_flag(field: str, v) -> bool:
    """``v`` as a yes/no switch: True or False (a NumPy bool too, or the integers 0 and 1), or
    a one-line error naming ``field`` (the text "no" is true to Python, so a switch given as
    text had silently meant yes)."""
    import numpy as np

    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if is_whole(v) and v in (0, 1):
        return bool(v)
    raise KetasimInputError(f"{field}: got {v!r}, expected True or False")


def suggest(name: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest of *choices*, or ``""``: a choice
    that differs from *name* only in letter case first (``Cmax`` had been answered with
    ``tmax``, as close letter for letter as ``cmax``)."""
    choices = list(choices)
    lower = {}
    for c in choices:
        lower.setdefault(str(c).lower(), c)
    close = ([lower[str(name).lower()]] if str(name).lower() in lower
             else difflib.get_close_matches(str(name), choices, n=1, cutoff=0.5))
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_name(name: str, choices: Iterable[str], field: str, where: str = "") -> str:
    """Check that *name* is one of *choices*; raise naming the closest match otherwise."""
    choices = list(choices)
    if name not in choices:
        listed = (", ".join(repr(c) for c in choices) if len(choices) <= 12
                  else f"{len(choices)} names")
        prefix = f"{where}: " if where else ""
        raise KetasimInputError(
            f"{prefix}{field}: unknown name {name!r}{suggest(name, choices)}; "
            f"expected one of {listed}")
    return name


def check_input_file(field: str, shown: str, path, expected: str) -> None:
    """Refuse ``path`` (given as ``shown``) unless it is an existing regular file: a folder, a
    device or pipe, or a missing file, each named as what it is (``field``: the option or
    argument; ``expected``: what it should be, e.g. "a TOML model file")."""
    from pathlib import Path

    if not str(shown).strip():         # Path("") is the folder "."
        raise KetasimInputError(f"{field}: got {str(shown)!r}, expected {expected}")
    p = Path(path)
    if p.is_file():
        return
    raise KetasimInputError(
        f"{field}: {shown!r} is a folder, expected {expected}" if p.is_dir() else
        f"{field}: {shown!r} is not a regular file (a device or a pipe), expected {expected}"
        if p.exists() else f"{field}: file {shown!r} not found{where_gone(p)}")


def cwd_gone() -> bool:
    """Whether the current folder has been deleted (removed in another terminal: every
    relative name then leads nowhere)."""
    import os

    try:
        os.getcwd()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


def where_gone(path) -> str:
    """Why a relative name is not found when the current folder has been deleted, else ''."""
    import os

    if os.path.isabs(path) or not cwd_gone():
        return ""
    return (" (the current folder, where it would be, has been deleted: change to a folder "
            "that exists, or give a full path)")
