"""ketasim: exact, compiled pharmacokinetics of ketamine and esketamine courses.

Model-predicted NMDA-receptor occupancy and a *schematic* glutamate/plasticity response sit on
top of an exact solver for linear compartment networks. A teaching and research tool — never a
dosing recommendation.
"""

import sys as _sys

from . import _numba_cache  # noqa: F401  (first: sets NUMBA_CACHE_DIR before numba loads)

# (Numba and the compiled kernels, ketasim._kernels, load at the first call that needs them)


def _stopped_while_starting(exc: BaseException | None = None) -> None:
    """Ctrl-C while ``ketasim`` (the program: ``python -m ketasim`` or the installed command)
    is still importing, before its handler is set: the same one line and status as later,
    not a traceback. In any other process (a notebook, a script) the interrupt goes on.
    ``exc`` is what the import raised: a KeyboardInterrupt, or an error it caused (Python 3.11
    reports one inside a class body's ``__set_name__``, as NumPy's import has, as a
    RuntimeError); anything else is no interrupt and goes on."""
    if exc is not None:
        for _ in range(20):
            if exc is None or isinstance(exc, KeyboardInterrupt):
                break
            exc = exc.__cause__ or exc.__context__
        if not isinstance(exc, KeyboardInterrupt):
            return
    argv = list(getattr(_sys, "orig_argv", ()))
    program = ("-m" in argv[1:-1] and argv[argv.index("-m", 1) + 1] == "ketasim") or (
        len(argv) > 1 and argv[1].replace("\\", "/").rsplit("/", 1)[-1].split(".")[0]
        == "ketasim")
    if program:
        _sys.stderr.write("ketasim: interrupted (Ctrl-C)\n")
        raise SystemExit(130)


try:
    from .courses import (
        COURSES,
        Phase,
        course_from_phases,
        read_course_toml,
        resolve_doses,
        spravato_course,
        standard_iv_course,
    )
    from .dosing import Doses, expand, read_doses, write_doses
    from .errors import KetasimInputError, KetasimWarning
    from .explore import explore
    from .model import Model
    from .modelfile import list_presets, load_model
    from .population import population, sweep
    from .result import Result
    from .simulate import simulate, time_grid
except BaseException as _exc:
    _stopped_while_starting(_exc)
    raise

__version__ = "0.1.0"

__all__ = ["simulate", "time_grid", "load_model", "list_presets", "Model", "Doses", "Phase",
           "read_doses", "write_doses", "expand", "course_from_phases", "read_course_toml",
           "standard_iv_course", "spravato_course", "COURSES", "resolve_doses",
           "Result", "KetasimInputError", "KetasimWarning", "population", "sweep", "explore",
           "__version__"]
