"""ketasim: exact, compiled pharmacokinetics of ketamine and esketamine courses.

Model-predicted NMDA-receptor occupancy and a *schematic* glutamate/plasticity response sit on
top of an exact solver for linear compartment networks. A teaching and research tool — never a
dosing recommendation.
"""

from .dosing import (
    COURSES,
    Doses,
    Phase,
    course_from_phases,
    expand,
    read_course_toml,
    read_doses,
    spravato_course,
    standard_iv_course,
    write_doses,
)
from .errors import KetasimInputError
from .model import Model, list_presets, load_model
from .result import Result
from .simulate import simulate, time_grid

__version__ = "0.1.0"

__all__ = ["simulate", "time_grid", "load_model", "list_presets", "Model", "Doses", "Phase",
           "read_doses", "write_doses", "expand", "course_from_phases", "read_course_toml",
           "standard_iv_course", "spravato_course", "COURSES", "Result", "KetasimInputError",
           "__version__"]
