"""Figures from Results (matplotlib), made to be shown to a class.

Every function returns a :class:`matplotlib.figure.Figure` (or draws on a given Axes), never
calls ``plt.show()`` and needs no display: figures are built on the Agg canvas, so they save
anywhere (``fig.savefig("course.png")``) and display in Jupyter.

The main entry points:

- :func:`run_course` simulates what the course figure needs (the course on a table grid that
  contains every session start and infusion end, a fine close-up of the first session, and the
  per-session metrics) and returns a :class:`CourseRun`;
- :func:`plot_course` draws one run; :func:`plot_compare` overlays several;
- :func:`plot_bands` draws population percentiles (5/50/95 %) over time;
- :func:`plot_concentrations` draws concentration curves on one Axes.

Style choices (for projectors and colour-blind viewers): the Okabe-Ito palette, body text of
at least 11 pt, legends outside the data area, every schematic output labelled SCHEMATIC and
occupancy labelled model-predicted, and a caption that names the preset and its source.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass

import numpy as np

from .dosing import expand
from .errors import KetasimInputError, check_flag, is_real

__all__ = ["plot_course", "plot_compare", "plot_bands", "plot_concentrations", "run_course",
           "CourseRun", "analyte_labels", "drug_name", "describe_doses", "save_figure",
           "figure_bytes", "OKABE_ITO", "DISCLAIMER", "COURSE_DESCRIPTIONS"]

DISCLAIMER = ("Teaching and research tool, not a dosing recommendation. Occupancy is "
              "model-predicted; glutamate and plasticity are SCHEMATIC (illustrative "
              "parameters, not fitted to data).")

# Okabe M & Ito K, "Color universal design" (2002): distinguishable with every common form of
# colour-vision deficiency, and in greyscale by lightness for the pairs used together here.
OKABE_ITO = {"black": "#000000", "orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73",
             "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00",
             "purple": "#CC79A7"}
RUN_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
_COLORS = {"plasma": OKABE_ITO["blue"], "metabolite": OKABE_ITO["orange"],
           "s_ketamine": OKABE_ITO["sky"], "r_ketamine": OKABE_ITO["purple"],
           "occupancy": OKABE_ITO["green"], "glutamate": OKABE_ITO["vermillion"],
           "plasticity": OKABE_ITO["black"], "consolidation": OKABE_ITO["purple"]}
# compared runs also differ in line style and marker, so identical curves stay visible
_RUN_LS = ("-", "--", ":", "-.")
_RUN_MK = ("o", "s", "^", "D")
_RUN_HATCH = ("///", "\\\\\\", "|||", "---")
_BAND_FILLS = ("#F0E442", "#56B4E9", "#CC79A7", "#E69F00", "#009E73")
# the windows the presets carry, by kind (a word of the window's name): colour, hatched
_BAND_STYLES = {"analges": ("#F0E442", False), "psychedelic": ("#56B4E9", True),
                "dissociative": ("#56B4E9", True), "blood-pressure": ("#CC79A7", False),
                "anaesthe": ("#E69F00", False), "anesthe": ("#E69F00", False)}

BODY_PT = 12       # tick labels, legends, axis labels: readable from the back of a lecture hall
TITLE_PT = 15
CAPTION_PT = 11

COURSE_DESCRIPTIONS = {
    # (what the course names simulate: monthly maintenance is every 28 days, and the named
    # Spravato course takes the label's every-two-weeks maintenance)
    "standard-iv": "standard IV course (3/wk in week 1, 2 in week 2, weekly in weeks 3-5, "
                   "then every 4 weeks)",
    "spravato": "Spravato label course (2/wk in weeks 1-4, weekly in weeks 5-8, then every "
                "2 weeks)",
}
_INDUCTION_SESSIONS = {"standard-iv": 8, "spravato": 12}   # sessions before maintenance


def course_description(name, doses) -> str | None:
    """The words for a named course (:data:`COURSE_DESCRIPTIONS`) as far as ``doses`` go: a
    course too short to reach maintenance does not promise it ("then every 4 weeks" had
    titled a one-month course), and one cut inside its induction says how many sessions it
    has. None for anything but a course name."""
    text = COURSE_DESCRIPTIONS.get(name) if isinstance(name, str) else None
    if text is None:
        return None
    from .engine import session_starts

    n = int(np.size(session_starts(doses)))
    k = _INDUCTION_SESSIONS[name]
    if n <= k:
        text = text.split(", then every")[0] + ")"
        if n < k:
            # ("its first 1 session" had titled a course of 0.05 months)
            text += f", its first {n} sessions" if n > 1 else ", its first session only"
    return text


def course_maintenance_start(name, doses) -> float | None:
    """Where a named course's maintenance starts, h (``maintenance_from_h`` of
    :func:`~ketasim.metrics.course_metrics`), as far as ``doses`` go: the periodic tail of its
    sessions (:func:`~ketasim.metrics.maintenance_start`), but never before its last induction
    session (:data:`_INDUCTION_SESSIONS`), and NaN when it has no maintenance: evenly spaced
    induction sessions are not maintenance (the standard course's weekly weeks 3-5 had been
    its "maintenance" over one month, the Spravato course's weekly weeks 5-8 over two). None
    for anything but a course name (the intervals alone tell)."""
    k = _INDUCTION_SESSIONS.get(name) if isinstance(name, str) else None
    if k is None:
        return None
    from .engine import session_starts
    from .metrics import maintenance_start

    t = session_starts(doses)
    if t.size <= k:
        return float("nan")
    first = maintenance_start(t)
    if first >= t[k - 1]:
        return first
    # a maintenance interval equal to the induction's last one (weekly, say): periodic from
    # the last induction session on, with at least two intervals, as maintenance_start asks
    gaps = np.diff(t[k - 1:])
    even = gaps.size >= 2 and np.all(np.abs(gaps - gaps[-1]) <= 1e-6 * max(1.0, gaps[-1]))
    return float(t[k - 1]) if even else float("nan")


_ROUTE_WORDS = {"iv": "IV infusion", "intranasal": "nasal spray", "oral": "oral",
                "im": "intramuscular"}


def _route_words(route: str, model=None) -> str:
    """A dose row's route in words: a route's own (``IV infusion``), or, for a dose straight
    into a compartment by its number (NONMEM's CMT) or name, ``into central`` (the
    figure's legend had read "2 100 mg" and its title "100 mg 1 over 120 min + 100 mg 2")."""
    if route in _ROUTE_WORDS:
        return _ROUTE_WORDS[route]
    comps = list(getattr(model, "compartments", None) or ())
    if route.isdigit():
        k = int(route)
        return f"into {comps[k - 1]}" if 1 <= k <= len(comps) else f"into compartment {route}"
    if route in comps and route not in getattr(model, "routes", ()):
        return f"into {route}"
    return route


# ---------------------------------------------------------------------------- names
def drug_name(model) -> str:
    """The drug a model doses, in words: ``model.meta["drug"]`` if the model file sets it,
    else read from its occupancy ligands (R- and S-ketamine: racemic ketamine; S-ketamine
    only: esketamine), else the model's name."""
    if model.meta.get("drug"):
        return str(model.meta["drug"])
    names = {lg.name.lower() for lg in getattr(model, "ligands", ())}
    if "r-ketamine" in names and "s-ketamine" in names:
        return "racemic ketamine"
    if "s-ketamine" in names:
        return "esketamine"
    return model.name


def drug_title(model) -> str:
    """:func:`drug_name` to begin a title: a name in words capitalised ("Racemic ketamine"),
    a model's own name as it is written ("my-model", "PBPK-ket": an identifier)."""
    d = drug_name(model)
    return d if d == model.name else d[:1].upper() + d[1:]


# concentration outputs named by observe alias; the drug-dependent ones are filled in below
_ALIAS_LABELS = {"s_ketamine": "S-ketamine", "r_ketamine": "R-ketamine",
                 "s_norketamine": "S-norketamine", "r_norketamine": "R-norketamine"}
_DRUG_LABELS = {"racemic ketamine": {"plasma": "ketamine (S + R)",
                                     "metabolite": "norketamine (S + R)"},
                "esketamine": {"plasma": "esketamine", "metabolite": "noresketamine"}}


def analyte_labels(model) -> dict:
    """Display names of a model's concentration outputs, in drawing order (main analyte first).

    Data-driven: a model file may name its analytes in ``[model] labels = {plasma = "...",
    ...}``; otherwise the observe aliases are named from :func:`drug_name` (``plasma`` and
    ``metabolite``) and the alias itself (``s_ketamine`` -> S-ketamine). Only observe aliases
    are drawn (compartments and effect sites are model internals); a model without aliases
    shows its first compartment with a volume.
    """
    given = model.meta.get("labels") or {}
    drug = _DRUG_LABELS.get(drug_name(model), {"plasma": "plasma", "metabolite": "metabolite"})
    names = [n for n in model.observe] or list(model.concentration_names[:1])
    out = {}
    for n in names:
        out[n] = str(given.get(n) or drug.get(n) or _ALIAS_LABELS.get(n) or n.replace("_", " "))
    return out


def _compartment_drug(model, comp, labels) -> str | None:
    """The drug in compartment ``comp``, in words, from the observe aliases: the label of an
    alias of that compartment alone (``s_ketamine = ["s_central"]``: S-ketamine), else one
    enantiomer (``s_``/``r_``) of an alias of both (``s_nor`` of "norketamine (S + R)":
    S-norketamine); None when the aliases do not tell."""
    observe = getattr(model, "observe", None) or {}
    for alias, members in observe.items():
        if tuple(members) == (comp,) and alias in labels:
            return labels[alias]
    for alias, members in observe.items():
        lab = labels.get(alias, "")
        if comp in members and "(S + R)" in lab and comp[:2] in ("s_", "r_"):
            return f"{comp[0].upper()}-{lab.replace('(S + R)', '').strip()}"
    return None


def output_label(model, name: str) -> str:
    """An output of ``model`` in words, for a figure's row or axis (its unit is the caller's):
    a concentration with the drug and where it is ("S-ketamine at the effect site",
    "ketamine (S + R) in plasma"), a response as the course figure names it ("plasticity
    index (SCHEMATIC)"). A compartment the aliases do not name keeps its name, said to be a
    compartment. (The population figure had labelled its rows ``ce_s``, ``s_central`` and
    ``consolidation``.)"""
    from .result import PD_OUTPUTS

    if name.startswith("occupancy"):
        which = name[len("occupancy"):].lstrip("_")
        if which in ("low", "high"):
            # the calibrations named, as the course figure's "range over Ki calibrations
            # (in-vitro, in-vivo)" (the population figure's row had not said which they are)
            cals = tuple(getattr(model, "calibrations", None) or ())
            return (f"NMDA occupancy, {'lowest' if which == 'low' else 'highest'} over Ki "
                    "calibrations" + (f" ({', '.join(map(str, cals))})" if cals else ""))
        if not which and model is not None:            # the calibration of `occupancy`
            which = (getattr(model, "default_calibration", "")
                     or next(iter(getattr(model, "calibrations", None) or {}), ""))
            which = f"{which} Ki" if which else ""
        return "NMDA occupancy" + (f" ({which})" if which else "")
    words = {"glutamate": "glutamate signal", "plasticity": "plasticity index",
             "consolidation": "consolidated plasticity (slow)"}
    if name in words or name in PD_OUTPUTS:
        return f"{words.get(name, name)} (SCHEMATIC)"
    if model is None:
        return name
    labels = analyte_labels(model)
    if name in labels:
        return f"{labels[name]} in plasma"
    effects = {e.name: e.of for e in getattr(model, "effects", ())}
    if name in effects:
        drug = _compartment_drug(model, effects[name], labels)
        return (f"{drug} at the effect site" if drug
                else f"effect site {name} (of compartment {effects[name]})")
    drug = _compartment_drug(model, name, labels)
    sole = any(tuple(m) == (name,) for m in (getattr(model, "observe", None) or {}).values())
    if drug and sole:
        return f"{drug} in plasma"
    return f"{drug} in compartment {name}" if drug else f"compartment {name}"


def main_analyte(model) -> str:
    """The concentration a figure or summary shows (``plasma`` where there is one); a model
    without any is refused, naming it."""
    names = list(analyte_labels(model))
    if not names:
        raise KetasimInputError(
            f"model {model.name!r} has no concentration to plot or summarise (no compartment "
            "with a volume, observe alias or effect site); give a compartment a volume in "
            "[compartments], or use `ketasim simulate --out` for its amounts")
    return "plasma" if "plasma" in names else names[0]


def row_durations(d) -> np.ndarray:
    """Each row's infusion length, h: its ``duration_h``, else ``amount_mg / rate_mg_h`` for a
    row given by its rate (NONMEM's RATE; as delivered when the route's f is 1, which an IV
    route's is), else 0 (a bolus or spray)."""
    dur, rate = d.duration_h, d.rate_mg_h            # (a Doses' arrays: float64, 0 = none)
    with np.errstate(divide="ignore", invalid="ignore"):
        by_rate = np.where(rate > 0, d.amount_mg / rate, 0.0)
    return np.where(dur > 0, dur, np.where(np.isfinite(by_rate), by_rate, 0.0))


def describe_doses(doses, weight_kg: float | None = None, model=None) -> str:
    """A short description of the dose per session: ``0.5 mg/kg (35 mg) IV infusion over
    40 min`` (a course dosed per kg), ``35 mg (0.5 mg/kg at 70 kg) IV infusion over 40 min``
    (a table in mg) or ``56-84 mg nasal spray``."""
    d = expand(doses)
    if getattr(d, "evid", None) is not None and (d.evid == 3).any():
        d = d._take(np.flatnonzero(d.evid != 3))    # a reset row gives no dose
    routes = sorted(set(d.route))
    if len(routes) > 1:
        # several routes: each with its own amounts (one range over all of them had read as
        # the first route's)
        return " + ".join(describe_doses(d._take(np.flatnonzero(
            np.asarray(d.route, dtype=object) == r)), weight_kg, model) for r in routes)
    amounts = np.unique(np.round(d.amount_mg, 6))
    if amounts.size == 1:
        amt = f"{_num(amounts[0])} mg"
    else:
        amt = f"{_num(amounts.min())}-{_num(amounts.max())} mg"
    if "iv" in routes and weight_kg and amounts.size == 1:
        per_kg = _num(amounts[0] / weight_kg)
        if getattr(doses, "source", "") == "course":     # dosed per kg (standard-iv)
            amt = f"{per_kg} mg/kg ({amt})"
        else:                      # a table in mg: per kg only at the weight simulated
            amt = f"{amt} ({per_kg} mg/kg at {_num(weight_kg)} kg)"
    route_arr = np.asarray(d.route, dtype=object)
    rdur = row_durations(d)

    def word(r):
        w = _route_words(r, model)
        if w == "IV infusion" and not (rdur[route_arr == r] > 0).any():
            return "IV bolus"
        return w
    route = " + ".join(word(r) for r in routes)
    durs = np.unique(np.round(rdur[rdur > 0], 6))
    over = f" over {_num(durs[0] * 60)} min" if durs.size == 1 else ""
    return f"{amt} {route}{over}"


def _regimen(doses, regimen=None, until_h: float | None = None) -> str:
    """The regimen in words; with ``until_h`` (the end of the simulated grid), the sessions
    that grid shows when it ends before the last one."""
    if regimen:
        return regimen
    from .engine import session_starts

    t = session_starts(doses)
    if until_h is not None and t.size > 1 and t[-1] >= until_h:
        # a session starting at the grid's last time shows nothing of itself
        k = int(np.sum(t < until_h))
        return (f"{k} of {t.size} sessions shown (the output grid ends at day "
                f"{_num(until_h / 24)})")
    if t.size == 1:
        return "one session"
    return f"{t.size} sessions over {_num((t[-1] - t[0]) / 24)} days"


def _num(v: float) -> str:
    """A number with at most 3 significant digits and no trailing zeros (35, 0.5, 2.33)."""
    if v == 0 or not math.isfinite(v):
        return f"{v:g}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{float(f'{v:.3g}'):g}"


# ---------------------------------------------------------------------------- simulation
@dataclass(frozen=True, eq=False)
class CourseRun:
    """What the course figure shows for one model and dose table.

    Attributes
    ----------
    course : Result        the whole course on the table grid (see :func:`run_course`)
    closeup : Result       the first session on a 1-minute grid
    metrics : CourseMetrics  per-session metrics of ``course`` (main analyte)
    label : str            legend label (compare figures)
    regimen : str          words for the schedule (title)
    weight_kg : float
    """

    course: object
    closeup: object
    metrics: object
    label: str
    regimen: str
    weight_kg: float

    @property
    def model(self):
        return self.course.model

    @property
    def doses(self):
        return self.course.doses


def event_times(doses) -> np.ndarray:
    """Session starts and infusion ends (h): the kinks of the curves. Adding them to an output
    grid puts the exact end-of-infusion peak on the grid."""
    d = expand(doses)
    return np.unique(np.r_[d.time_h, d.time_h + row_durations(d)])


COURSE_STEP_H = 1 / 12          # the whole-course grid of run_course: every 5 minutes


def course_end_h(doses) -> float:
    """Where :func:`run_course` ends a course by default, h: where every command ends it
    (:func:`ketasim.engine.default_horizon_h`: 28 days after the last dose starts), or at the
    end of an infusion still running then."""
    from .engine import default_horizon_h
    from .events import _longest_run_h, long_infusion_error

    d = expand(doses)
    dur = row_durations(d)
    if dur.size and dur.max() > _longest_run_h():   # (named as the engine names it)
        i = int(np.argmax(dur > _longest_run_h()))
        raise long_infusion_error(d.source, f"{d.where(i)} (dose at {d.time_h[i]:g} h)",
                                  float(d.amount_mg[i]), float(d.rate_mg_h[i]), float(dur[i]),
                                  "duration" if d.duration_h[i] > 0 else "rate")
    return max(default_horizon_h(doses), float(event_times(doses).max()))


#: The shortest close-up, h: a minute, the step of the grid it is drawn on. A shorter one
#: (``closeup_h=1e-300``) had held one time of that grid: the figure said "the output grid is
#: too coarse (step 0.0833 h ...)" over a "6e-299-min panel". ``ketasim course --closeup``
#: and ``ketasim compare --closeup`` take the same rule and words.
CLOSEUP_MIN_H = 1.0 / 60.0
CLOSEUP_MIN_WHY = "a minute: the close-up is drawn on a one-minute grid"
CLOSEUP_MAX_H = 24.0 * 366      # run_course's longest close-up, h (a one-minute grid)


def check_closeup_h(v, most: float | None = None) -> float:
    """``closeup_h`` as hours from :data:`CLOSEUP_MIN_H` (a minute) to ``most`` (None: no
    upper bound), or a :class:`KetasimInputError` naming it."""
    from .errors import positive_hours

    v = positive_hours("closeup_h", v)
    if v < CLOSEUP_MIN_H or (most is not None and v > most):
        raise KetasimInputError(
            f"closeup_h: got {v!r}, expected hours "
            + (f"from {CLOSEUP_MIN_H:.6g} ({CLOSEUP_MIN_WHY}) to {most:g}" if most is not None
               else f">= {CLOSEUP_MIN_H:.6g} ({CLOSEUP_MIN_WHY})"))
    return v


def check_course_grid(step_h: float, until_h: float, start_h: float = 0.0) -> float:
    """The number of uniform points of :func:`course_grid` (events aside); a grid longer than
    ketasim allows is refused, before it is built."""
    from .simulate import MAX_GRID_POINTS

    points = (until_h - start_h) / step_h + 1
    if not (points <= MAX_GRID_POINTS):
        from .errors import KetasimInputError

        def num(v):      # (a dose at 1e306 h had given two numbers of 400 characters)
            return f"{v:,.0f}" if v < 1e15 else f"{v:.3g}"
        raise KetasimInputError(
            f"course: {num(until_h - start_h)} h on a {step_h * 60:g}-minute grid gives "
            f"{num(points)} time points, more than the {MAX_GRID_POINTS:,} allowed; "
            "expected a shorter course")
    return points


def course_grid(doses, step_h: float, until_h: float, start_h: float = 0.0) -> np.ndarray:
    """A uniform grid of ``step_h`` from ``start_h`` to ``until_h`` plus every event time in
    that window (sorted, unique). A grid longer than ketasim allows is refused before it is
    built (:func:`check_course_grid`)."""
    n = int(math.floor(check_course_grid(step_h, until_h, start_h) - 1 + 1e-9))
    t = start_h + step_h * np.arange(n + 1)
    ev = event_times(doses)
    ev = np.unique(np.r_[ev[(ev >= start_h) & (ev <= until_h)], until_h])
    # a grid point within a rounding error of an event time gives way to the event time
    tol = 1e-9 * max(1.0, abs(until_h))
    j = np.clip(np.searchsorted(ev, t), 1, ev.size - 1) if ev.size > 1 else np.zeros(t.size,
                                                                                      int)
    near = np.minimum(np.abs(t - ev[j]), np.abs(t - ev[np.maximum(j - 1, 0)]))
    return np.unique(np.r_[t[near > tol], ev])


def run_course(model, doses, weight_kg: float = 70.0, params=None, *,
               step_h: float = COURSE_STEP_H,
               closeup_h: float = 8.0, until_h: float | None = None, label: str | None = None,
               regimen: str | None = None, course: str | None = None, outputs=None,
               **simulate_kw) -> CourseRun:
    """Simulate a course for the figures.

    Parameters
    ----------
    model, doses, weight_kg, params
        As for :func:`ketasim.simulate`; ``doses`` may also be a course name.
    step_h : float
        Grid step of the whole-course result, h (default 5 min), plus every session start
        and infusion end (so infusion peaks are on the grid).
    closeup_h : float
        Length of the first-session close-up, h (simulated on a 1-minute grid).
    until_h : float, optional
        End of the course, h (default: last session + 28 days).
    label, regimen : str, optional
        Legend label (default: the model name) and words for the schedule (title).
    course : str, optional
        The course name a dose table ``doses`` was built from (``"standard-iv"``, say): its
        maintenance is then the course's own (:func:`course_maintenance_start`).
    outputs, **simulate_kw
        Passed to :func:`ketasim.simulate` (``occupancy_calibration``, ``pd_rtol`` ...).
    """
    import inspect

    from .courses import resolve_doses
    from .errors import KetasimInputError, positive_hours
    from .metrics import course_metrics
    from .modelfile import load_model
    from .simulate import simulate

    passed = set(inspect.signature(simulate).parameters) - {
        "model", "doses", "times", "params", "weight_kg", "outputs"}
    for k in simulate_kw:
        if k not in passed:
            # (it had come from inside, as "simulate() got an unexpected keyword argument")
            raise TypeError(f"run_course() got an unexpected keyword argument {k!r}; it takes "
                            "those of simulate: " + ", ".join(sorted(passed))
                            + (" (a course's length: build it, e.g. standard_iv_course("
                               "months=1))" if k == "months" else ""))

    model = load_model(model)
    closeup_h = check_closeup_h(closeup_h, CLOSEUP_MAX_H)
    step_h = positive_hours("step_h", step_h)
    if until_h is not None:
        until_h = positive_hours("until_h", until_h)
    if course is not None:      # (an unknown one had been taken as no course at all)
        from .courses import COURSES
        from .errors import check_name
        check_name(course, COURSES, "course")
    name = doses if isinstance(doses, str) else course
    doses = resolve_doses(doses, weight_kg=weight_kg)
    from .engine import _dose_times

    # the doses' times (a reset row, evid 3, gives no dose: a reset before the first dose had
    # started the close-up there, hours before the session its peak marker belongs to)
    dose_t = _dose_times(doses)
    if not dose_t.size:      # (its first dose starts the close-up)
        raise KetasimInputError(f"doses: {doses.source or 'the dose table'} has no doses; "
                                "expected at least one")
    if name is not None and regimen is None:
        regimen = course_description(name, doses)
    if until_h is None:
        until_h = course_end_h(doses)
    first = float(dose_t.min())
    if until_h <= first:       # (it had been refused as "metrics: no session starts ...")
        raise KetasimInputError(f"until_h: got {until_h:g} h, expected hours after the first "
                                f"dose ({first:g} h), where the course starts")
    t = course_grid(doses, step_h, until_h)
    import warnings

    from .engine import warn_dose_routes
    from .errors import KetasimWarning
    warn_dose_routes(model, doses, "run_course")
    with warnings.catch_warnings(record=True) as said:   # (routes: said once, above)
        warnings.simplefilter("ignore", KetasimWarning)
        # a weight no person has: kept, and said once below, as the caller's filters say (a
        # "default" filter here had shown it to a caller who ignores KetasimWarning)
        warnings.filterwarnings("always", message=r"weight_kg: ", category=KetasimWarning)
        course = simulate(model, doses, t, params=params, weight_kg=weight_kg, outputs=outputs,
                          **simulate_kw)
        t0 = first
        tz = course_grid(doses, 1 / 60, t0 + closeup_h, start_h=t0)
        closeup = simulate(model, doses, tz, params=params, weight_kg=weight_kg,
                           outputs=outputs, **simulate_kw)
    from .errors import warn
    shown = set()
    for w in said:
        if issubclass(w.category, KetasimWarning):
            if str(w.message) not in shown:
                shown.add(str(w.message))
                warn(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    metrics = course_metrics(course, analyte=main_analyte(model),
                             maintenance_from_h=course_maintenance_start(name, doses),
                             _warn_after_end=False)
    return CourseRun(course, closeup, metrics, label or model.name, _regimen(doses, regimen),
                     float(np.mean(weight_kg)))


# ---------------------------------------------------------------------------- helpers
def _style(ax):
    ax.tick_params(labelsize=BODY_PT)
    ax.grid(alpha=0.3)
    for s in ("top", "right"):
        ax.spines[s].set_visible(False)
    if ax.get_yscale() == "linear":
        # values as they are: no "1e-8+1" offset printed over the axis of a flat curve
        ax.ticklabel_format(axis="y", useOffset=False)


def _line_or_band(ax, x, y, color, label, lw=2.0, ls="-", alpha=0.25):
    """A line for one subject; the median and a 5-95 % band for a population (N, T)."""
    if y.ndim == 1:
        ax.plot(x, y, color=color, lw=lw, ls=ls, label=label)
        return
    lo, med, hi = np.percentile(y, [5, 50, 95], axis=0)
    ax.fill_between(x, lo, hi, color=color, alpha=alpha, lw=0,
                    label=None if label is None else f"{label} (5-95 %)")
    # (a median at each time: not the subjects' median peak, which is higher when their
    # peaks fall at different times)
    ax.plot(x, med, color=color, lw=lw, ls=ls,
            label=None if label is None else f"{label} (median at each time)")


def _bands(model, analyte=None):
    """The model's published concentration windows (``[[bands]]`` of the model file) for
    ``analyte`` (default: the main analyte); none when the model has no bands."""
    analyte = analyte or main_analyte(model)
    return tuple(b for b in (getattr(model, "bands", ()) or ())
                 if getattr(b, "analyte", analyte) == analyte)


def _band_label(b):
    hi = b.hi_ng_ml if b.hi_ng_ml is not None and math.isfinite(b.hi_ng_ml) else None
    return f"{b.name}: {_num(b.lo_ng_ml)}" + (f"-{_num(hi)}" if hi is not None else "+") + \
        " ng/mL"


def _draw_effect_bands(ax, bands, labelled=True, of=None):
    """Published concentration windows (e.g. psychedelic effects) as shaded horizontal bands
    behind the curves; a window above the axis range is left out (the caption names it).
    ``of``: the drug the windows are levels of, named in each legend entry (the panel draws
    other analytes too: a metabolite's curve crossing the shading is not in the window)."""
    top_view = ax.get_ylim()[1]
    for i, b in enumerate(bands):
        if b.lo_ng_ml >= top_view:
            continue
        hi = b.hi_ng_ml if b.hi_ng_ml is not None and math.isfinite(b.hi_ng_ml) else top_view
        # one look per kind of window in every figure (slides of two presets side by side
        # must not show analgesia in one window's colour and psychedelic effects in it in the
        # other); a window of another kind takes the palette in order
        col, hatched = next((v for k, v in _BAND_STYLES.items() if k in b.name.lower()),
                            (_BAND_FILLS[i % len(_BAND_FILLS)], i % 2 == 1))
        # windows overlap: one is hatched instead of filled, so both stay legible
        text = (f"{of} window, " + _band_label(b) if of else _band_label(b)) if labelled \
            else None
        if not hatched:
            ax.axhspan(b.lo_ng_ml, min(hi, top_view), color=col, alpha=0.25, lw=0, zorder=0,
                       label=text)
        else:
            ax.axhspan(b.lo_ng_ml, min(hi, top_view), facecolor="none", edgecolor=col,
                       hatch="///", lw=0, alpha=0.8, zorder=0, label=text)


def _bands_caption(bands, top_view, analyte=None):
    """A caption line naming each window, its source and whether it is in view (``analyte``:
    the drug the windows are levels of, named: other curves share the axis)."""
    if not bands:
        return None
    shown, above = [], []
    for b in bands:
        src = str(getattr(b, "source", "")).split(": ")[0]
        (above if b.lo_ng_ml >= top_view else shown).append(
            f"{_band_label(b)} ({src})" if src else _band_label(b))
    of = f" of {analyte}" if analyte else ""
    out = f"Shaded: published plasma-concentration windows{of}: " + "; ".join(shown) if shown \
        else f"Published plasma-concentration windows{of}"
    if above:
        out += ". Above the plotted range: " + "; ".join(above)
    return out + "."


def _occupancy_band(ax, res, x, sel, color, run=None):
    """The occupancy range over the model's Ki calibrations, shaded. ``run``: in a comparison,
    the run's index (its band is in its own colour; the first one's legend entry says so,
    one entry for all)."""
    if "occupancy_low" in res.names and "occupancy_high" in res.names:
        lo = res.output("occupancy_low")[..., sel] * 100
        hi = res.output("occupancy_high")[..., sel] * 100
        kw = {"color": color, "alpha": 0.2, "lw": 0}
        pop = lo.ndim == 2
        if pop:
            lo, hi = np.percentile(lo, 50, axis=0), np.percentile(hi, 50, axis=0)
            # hatched: the subjects' 5-95 % band is shaded in the same colour (the two had
            # looked alike)
            kw = {"facecolor": "none", "edgecolor": color, "hatch": "////", "alpha": 0.5,
                  "lw": 0}
        if run is not None:
            # compared runs: each range hatched in its own direction, in its colour, not
            # filled (translucent fills over each other had blended into one grey-green, no
            # run's colour); overlapping ranges cross-hatch, each still in its colour
            kw = {"facecolor": "none", "edgecolor": color, "hatch": _RUN_HATCH[run % 4],
                  "alpha": 0.6, "lw": 0}
        cals = tuple(getattr(res.model, "calibrations", None) or ())
        ax.fill_between(x, np.minimum(lo, hi), np.maximum(lo, hi), **kw,
                        label=None if run else "range over Ki calibrations"
                        + (f" ({', '.join(cals)})" if cals else "")
                        + (" (median subject)" if pop else "")
                        + (", each run's hatch" if run == 0 else ""))


#: Characters of a legend line beside the panels: a longer entry is wrapped (two compare
#: labels of 57 characters, each with ": IV infusion 35 mg, 40 min", had widened the legend
#: column until the panels' x labels ran into each other). The longest fixed entries ("range
#: over Ki calibrations (in-vitro, in-vivo), each run's hatch") stay on one line.
LEGEND_CHARS = 66


def _legend(ax, handles=None, labels=None, title=None, handlelength=None):
    """A legend outside the data area, to the right of the axes; entries longer than
    :data:`LEGEND_CHARS` wrapped, however many lines that takes (a taller legend gives its
    row more height: :func:`_fit_rows`). (Three long compare labels had left the legend
    unwrapped, one line an entry: its column took the panels' width, the close-up's x label
    ran into the course's, and with longer labels the layout gave up and the rows' legends
    were drawn over each other.)"""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    labels = [textwrap.fill(lb, LEGEND_CHARS, break_long_words=True,
                            break_on_hyphens=False) for lb in labels]
    from matplotlib.legend_handler import HandlerTuple

    # (a tuple of markers, one a run, is keyed side by side: :func:`_row_legend`)
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0,
              frameon=False, fontsize=BODY_PT - 1, title=title, title_fontsize=BODY_PT - 1,
              alignment="left", handler_map={tuple: HandlerTuple(ndivide=None, pad=0.1)},
              handlelength=handlelength)


#: Least height of a row's panels, inches, and what a row takes beside them (its title above,
#: the tick labels under), inches: :func:`_fit_rows`.
ROW_MIN_IN = 1.8
ROW_DECOR_IN = 0.75


def _fit_rows(fig, parts, cap_h, grid, title=None):
    """Make the figure taller where a row's legend (or a long title) needs more height than
    the figure gives it: each row at least :data:`ROW_MIN_IN` and as tall as its legend (a
    legend taller than the room the layout has had left the layout unapplied: legends over
    each other, over the panels and off the figure). ``parts``: the grid of the panels'
    subfigure above the caption's; ``title``: the panels' title (a Text) or None."""
    # (sizes from the figure's own renderer: get_window_extent() without one)
    need = 0.15
    if title is not None:
        need += title.get_window_extent().height / fig.dpi
    for _axz, axc in grid:
        lg = axc.get_legend()
        h = lg.get_window_extent().height / fig.dpi if lg is not None else 0.0
        need += max(ROW_MIN_IN, h + 0.1) + ROW_DECOR_IN
    have = fig.get_figheight() - cap_h
    if need > have:
        fig.set_figheight(need + cap_h)
        parts.set_height_ratios([need, cap_h])


def _legend_near(ax, most: int = 4):
    """A legend of up to ``most`` entries inside the axes, where the curves leave room (so
    panels side by side keep their width: one to the right had taken a third of each); a
    longer one to the right (:func:`_legend`)."""
    handles, labels = ax.get_legend_handles_labels()
    if len(handles) > most:
        _legend(ax, handles, labels)
    elif handles:
        ax.legend(handles, labels, loc="best", frameon=True, framealpha=0.9, edgecolor="none",
                  fontsize=BODY_PT - 1)


def _caption_lines(fig, models, extra=None, noted=None):
    """The caption: each model's source, ``extra``, the disclaimer. ``noted``: the models
    whose ``dose_note`` applies to what is drawn (None: every model's)."""
    lines = []
    seen = set()
    for m in models:
        if m.name in seen:
            continue
        seen.add(m.name)
        src = " ".join(str(m.meta.get("citation", "")).split())   # (a file's: one line)
        kind = model_kind(m)
        lines.append(f"{kind} {m.name}" + (f" — source: {src}" if src else ""))
        if m.meta.get("dose_note") and (noted is None or m.name in noted):
            # what a dose means for this drug (the model file's), where it is that dose
            lines.append(" ".join(str(m.meta["dose_note"]).split()))
    if extra:
        lines.extend(extra.split("\n"))
    lines.append(disclaimer(models))
    # measured as drawn across the figure (from 0.5 % of its width): a width in characters
    # from an average letter had let lines of wide letters (run labels in capitals) run off
    return _wrap_to(fig, "\n".join(lines), CAPTION_PT, 0.985 * fig.bbox.width, hyphens=False)


def _wrap_to(fig, text: str, pt: float, room: float, hyphens: bool = True,
             bold: bool = False) -> list:
    """``text`` in lines of at most ``room`` pixels of ``fig`` at ``pt`` points (``bold``:
    in bold), measured as drawn (a width in characters estimated from an average letter had
    cut lines of digits or capitals, which are wider, at the figure's right edge); a line
    break in ``text`` is kept, and a line that fits is left whole. ``hyphens``: a line may
    end at a word's hyphen (not in a title: 'ketamine-' 'iv')."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    renderer = RendererAgg(1, 1, fig.dpi)       # (any figure: measured as Agg draws text)
    font = FontProperties(size=pt, weight="bold" if bold else "normal")

    def fits(line):
        return renderer.get_text_width_height_descent(line, font, False)[0] <= room

    out = []
    for part in drawable(str(text)).split("\n"):
        if fits(part):
            out.append(part)
            continue
        width = int(room / fig.dpi * 72 / (0.52 * pt))     # characters: a first guess
        while True:
            lines = textwrap.wrap(part, width, break_on_hyphens=hyphens) or [""]
            if width <= 20 or all(fits(x) for x in lines):
                break
            width -= max(1, width // 20)
        out += lines
    return out


def model_kind(model) -> str:
    """How a caption names a model: "Preset" for a shipped one, else "Model" (a file's)."""
    return "Preset" if str(getattr(model, "source", "")).startswith("preset ") else "Model"


def disclaimer(models) -> str:
    """The caption's last line: not a dosing recommendation, and what of occupancy and the
    schematic response the ``models`` have (only what the figure can show)."""
    occ = any(getattr(m, "has_occupancy", True) for m in models)
    pd = any(getattr(m, "has_glutamate", True) for m in models)
    if occ and pd:
        return DISCLAIMER
    return ("Teaching and research tool, not a dosing recommendation."
            + (" Occupancy is model-predicted." if occ else "")
            + (" Glutamate and plasticity are SCHEMATIC (illustrative parameters, not "
               "fitted to data)." if pd else ""))


def _has(res, name):
    return name in res.names


#: the narrowest infusion bar, a fraction of the close-up's span (about 3 px in the figures)
_MIN_BAR = 0.008


def _infusion_bars(ax, doses, t0, t1, color="0.35", label=True, prefix=None, level=0,
                   model=None):
    """Each dose in the window: a bar over the infusion (drawn just above the axis) or a
    triangle at a bolus/spray, in axes-fraction height so it never hides a curve. The legend
    entry describes every dose in the window (a range where they differ: a table's subjects
    may have different amounts). In a comparison each run's doses get their own level above
    the axis (``level``, from 0) and legend entry (``prefix``: the run's label), so one run's
    bars never hide another's."""
    d = expand(doses)
    tr = ax.get_xaxis_transform()
    shown = [(t, dur, amt, route) for t, dur, amt, route
             in zip(d.time_h, row_durations(d), d.amount_mg, d.route)
             if not (t > t1 or t + dur < t0)]

    def span(vals, fmt):
        lo, hi = min(vals), max(vals)
        return fmt(lo) if lo == hi else f"{fmt(lo)}–{fmt(hi)}"

    first = {}
    for t, dur, _amt, route in shown:
        words = _route_words(route, model)
        if words.startswith("into "):        # (before the amount: "dose into central 5 mg")
            words = "dose " + words
        if dur <= 0 and words == "IV infusion":
            words = "IV bolus"
        kind = (route, dur > 0)
        text = None
        if label and kind not in first:
            same = [x for x in shown if (x[3], x[1] > 0) == kind]
            text = f"{words} {span([x[2] for x in same], _num)} mg"
            if dur > 0:
                text += f", {span([x[1] * 60 for x in same], _num)} min"
            if prefix:
                text = f"{prefix}: {text}"
        first[kind] = True
        y0 = 1.0 + 0.06 * level
        if dur > 0:
            # (drawn above the axes, so not clipped: cut at the window's ends instead; at
            # least _MIN_BAR of the window wide: in a 672-hour close-up a 40-minute bar is a
            # third of a pixel, and all but one of the first month's infusions had vanished)
            a, b = max(t, t0) - t0, min(t + dur, t1) - t0
            b = max(b, min(a + _MIN_BAR * (t1 - t0), t1 - t0))
            ax.fill_between([a, b], y0, y0 + 0.04,
                            transform=tr, color=color, clip_on=False, lw=0, label=text)
        else:
            # (a comparison's levels are closer than a full-size marker is tall)
            ax.plot([t - t0], [y0 + 0.02], transform=tr, marker="v",
                    ms=9 if prefix is None else 6, color=color, clip_on=False, ls="none",
                    label=text)


# ---------------------------------------------------------------------------- panels
def _rows(res):
    rows = ["pk"]
    if _has(res, "occupancy"):
        rows.append("occupancy")
    if _has(res, "glutamate") or _has(res, "plasticity"):
        rows.append("schematic")
    return rows


def _closeup_panel(kind, ax, run, color=None, label=None, analytes=None, bands=True, j=0):
    """The first session, hours from its start."""
    res = run.closeup
    t0 = float(res.times[0])
    x = res.times - t0
    if kind == "pk":
        labels = analytes or analyte_labels(res.model)
        if bands:
            ax.set_ylim(0, _ymax([res.concentration(n) for n in labels]))
            _draw_effect_bands(ax, _bands(res.model))
        drawn = {}
        for i, (n, lab) in enumerate(labels.items()):
            c = color or _COLORS.get(n, RUN_COLORS[i % len(RUN_COLORS)])
            sub = n not in ("plasma", "metabolite") and len(labels) > 2
            ls = ("--" if n.startswith("s_") else ":") if sub else _RUN_LS[j % len(_RUN_LS)]
            y = res.concentration(n)
            if sub:     # an enantiomer's curve on top of another's: the legend says so
                top = float(np.nanmax(np.abs(y))) if y.size else 0.0
                same = next((lb for lb, yy in drawn.items() if yy.shape == y.shape and top > 0
                             and float(np.nanmax(np.abs(yy - y))) <= 0.03 * top), None)
                drawn[lab] = y
                if same is not None:
                    lab = f"{lab} (on the {same} line)"
            _line_or_band(ax, x, y, c, f"{label}: {lab}" if label else lab,
                          lw=1.6 if sub else 2.2, ls=ls)
        ax.set_ylabel("ng/mL", fontsize=BODY_PT)
    elif kind == "occupancy":
        c = color or _COLORS["occupancy"]
        _occupancy_band(ax, res, x, slice(None), c, run=j if label else None)
        _line_or_band(ax, x, res.output("occupancy") * 100, c,
                      label or "occupancy (model-predicted)", ls=_RUN_LS[j % len(_RUN_LS)])
        ax.set_ylabel("% of receptors", fontsize=BODY_PT)
    else:
        if _has(res, "glutamate"):
            _line_or_band(ax, x, res.output("glutamate"), color or _COLORS["glutamate"],
                          f"{label}: glutamate" if label else "glutamate signal (baseline 1)",
                          ls=_RUN_LS[j % len(_RUN_LS)])
            ax.axhline(1.0, color="0.5", lw=0.8, ls=":")
        ax.set_ylabel("relative to baseline", fontsize=BODY_PT)


def _started_together(starts) -> np.ndarray:
    """Per session (the columns of a table's subjects' session starts, h; NaN where a subject
    has no such session): whether every subject starts it within the hour that makes doses
    one session."""
    st = np.asarray(starts, dtype=float)
    if st.ndim < 2:
        return np.ones(st.shape, dtype=bool)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # (an all-NaN session)
        return np.nanmax(st, axis=0) - np.nanmin(st, axis=0) <= 1.0


def _ymax(curves):
    m = max(float(np.nanmax(c)) for c in curves) if curves else 1.0
    return m * 1.12 if m > 0 else 1.0


def _peak_note(ax, run, color, slot=None, later=False):
    """Mark the first session's peak of the main analyte (from the metrics) and return its
    label, for :func:`_place_notes` (None: nothing to label). ``slot`` (a comparison): the
    label on one line, as the k-th of a column; ``later``: the close-up shows later sessions
    too, so the label says whose peak it is (in a 72-hour close-up "peak 159 ng/mL" had sat
    beside the second session's spike of the same height)."""
    cm = run.metrics
    cmax = np.atleast_1d(cm.cmax_ng_ml)
    tmax = np.atleast_1d(cm.tmax_h)
    which = "first-session\n" if later else ""     # (on a line of its own: a narrow label)
    if cmax.ndim == 2 and slot is None:
        # subjects: their exact first-session peaks, summarised (the median curve, drawn on
        # the output grid, had passed below them without a word)
        first = cmax[:, 0][np.isfinite(cmax[:, 0])]
        if first.size and first.max() > 0:
            lo, med, hi = np.percentile(first, [5, 50, 95])
            return (f"subjects' exact {'first-session ' if later else ''}peaks:\n"
                    f"median {_num(med)} ng/mL\n(5-95 %: {_num(lo)}-{_num(hi)})")
        return None
    if cmax.ndim != 1 or not np.isfinite(cmax[0]):
        return None
    if not cmax[0] > 0:              # no drug given (or none reaches the plasma): no peak
        ax.text(0.5, 0.5, "no drug in the plasma", transform=ax.transAxes,
                ha="center", va="center", fontsize=BODY_PT - 1, color="0.3")
        return None
    span = float(run.closeup.times[-1] - run.closeup.times[0]) if run.closeup.times.size else 0.0
    beyond = tmax[0] > span * (1 + 1e-9)
    if not beyond:
        # filled, like the course panel's session peaks (a hollow circle there is a trough)
        ax.plot([tmax[0]], [cmax[0]], marker="o", ms=8, color=color, mec="white", mew=1.5,
                ls="none", zorder=5)
    text = f"{which}peak {_num(cmax[0])} ng/mL\nat {tmax[0] * 60:.0f} min"
    end = float(run.course.times[-1])
    # the peak's time on the clock (tmax is after the session start; a course need not
    # start at 0 h: compared with the clock, a first dose at 5 h had its value where the
    # grid ends labelled as the peak, and the drawn curve looked for hours away)
    at = float(np.ravel(cm.session_start_h)[0]) + float(tmax[0])
    if beyond:
        # (a close-up shorter than the infusion: the label had named a peak it does not show)
        text += f",\nafter this {_num(span * 60)}-min panel"
    elif at >= end - 1e-9 * max(1.0, abs(end)):
        # the output grid ends while the level still rises: the highest value shown is where
        # it ends, not the session's peak
        text = (f"highest shown {_num(cmax[0])} ng/mL\nat {tmax[0] * 60:.0f} min, where the "
                "grid ends")
    else:
        # the peak is exact (the metrics); a curve drawn from a grid that misses the peak's
        # time (an infusion ending between two output times) passes below the marker: said
        res = run.closeup
        name = main_analyte(res.model)
        if name in res.names and res.times.size > 1:
            y = res.concentration(name)
            y = y if y.ndim == 1 else np.median(y, axis=0)
            step = float(np.median(np.diff(res.times)))
            near = np.abs(res.times - at) <= 2 * step
            drawn = float(np.nanmax(y[near])) if near.any() else np.nan
            if drawn < 0.98 * cmax[0]:
                text += (f"\n(exact; the curve, every {_num(step * 60)} min,\nreaches "
                         f"{_num(drawn)})")
    # (a comparison: one line a run, on a white ground: five runs' labels fit the panel's
    # upper part, and a curve passing under one does not cross its text)
    return text if slot is None else " ".join(text.split("\n"))


def _drawn_points(ax):
    """Every point of the curves and markers drawn on ``ax`` in data coordinates, (n, 2)."""
    pts = [np.column_stack([ln.get_xdata(), ln.get_ydata()]).astype(float)
           for ln in ax.get_lines() if ln.get_transform() == ax.transData
           and len(ln.get_xdata())]
    pts += [p.vertices for c in ax.collections if c.get_transform() == ax.transData
            for p in c.get_paths() if len(p.vertices)]
    return np.vstack(pts) if pts else np.empty((0, 2))


def _place_notes(fig, ax, notes, xspan, starts=()) -> bool:
    """Write the peak labels ``notes`` ([(text, colour)]; more than one: a comparison's, one
    line each, in a column) in the panel's upper part, at its right end, where the first
    session's curves have fallen. With later sessions in the panel (``starts``, their x), at
    the right end or just before one of them, where no curve or marker passes under the
    labels (a long close-up's second session had spiked under the label), else, with nowhere
    free, in the legend, each beside a marker in its colour (then True: the legend is to be
    made again). The figure ``fig`` (the root one ``ax`` is in) is laid out first, for the
    panel's size."""
    if not notes:
        return False
    single = len(notes) == 1 and "\n" in notes[0][0]
    texts = []
    for k, (text, color) in enumerate(notes):
        y = 0.96 if single else 0.97 - 0.085 * k
        texts.append(ax.text(0.97, y, text, transform=ax.transAxes, fontsize=BODY_PT - 1,
                             va="top", ha="right", color=color, zorder=6,
                             bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85,
                                   "pad": 2 if single else 1}))
    import warnings

    def lay_out():
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="constrained_layout not applied")
            fig.get_layout_engine().execute(fig)

    if not single and any(", after this " in text for text, _c in notes):
        # a comparison's one-line label wider than its panel (a 15-minute close-up's "peak
        # 159 ng/mL at 40 min, after this 15-min panel") had run over the axis's tick labels
        # to the figure's edge: such a label takes two lines, the column stacked by height
        lay_out()
        box = ax.get_window_extent()
        y = 0.97
        for t in texts:
            if t.get_window_extent().width > 0.94 * box.width:
                t.set_text(t.get_text().replace(", after this ", ",\nafter this ", 1))
            t.set_y(y)
            y -= t.get_window_extent().height / box.height + 0.01
    if not len(starts):
        return False
    lay_out()
    x0, x1 = xspan
    y0, y1 = ax.get_ylim()
    box = ax.get_window_extent()
    # the labels' size in the panel's fractions, with their white ground and a margin
    ext = [t.get_window_extent() for t in texts]
    w = max(e.width for e in ext) / box.width + 0.04
    h = (box.y1 - min(e.y0 for e in ext)) / box.height + 0.04
    pts = _drawn_points(ax)
    for xr in [0.97] + [(s - x0) / (x1 - x0) - 0.02 for s in sorted(starts)]:
        lo, hi = x0 + (xr - w) * (x1 - x0), x0 + xr * (x1 - x0)
        under = (pts[:, 0] >= lo) & (pts[:, 0] <= hi) & (pts[:, 1] >= y0 + (1 - h) * (y1 - y0))
        if xr - w >= 0.0 and not under.any():
            for t in texts:
                t.set_x(xr)
            return False
    for t, (text, color) in zip(texts, notes):
        t.remove()
        ax.plot([], [], marker="o", ms=8, color=color, mec="white", mew=1.5, ls="none",
                label=" ".join(text.split("\n")))
    return True


# compared runs' session markers on the course panel (each run's shape: _RUN_MK), found by
# :func:`_row_legend` for their one legend entry
_PEAK_GID, _TROUGH_GID = "ketasim-session-peak", "ketasim-session-trough"


def _row_legend(axz, axc, handlelength=None):
    """One legend for a row's two panels, beside the course panel (:func:`_legend`). Compared
    runs' session peaks on the course panel take one entry, "session peak: each run's
    marker", its key each run's marker in its colour (a circle for one run, a square for
    the next, ... had been drawn with no entry: a viewer could not tell what they were).
    ``handlelength``: the keys' length, in font sizes (None: matplotlib's)."""
    h, lab_ = [], []
    for ax in (axz, axc):
        for hh, ll in zip(*ax.get_legend_handles_labels()):
            if ll not in lab_:
                h.append(hh)
                lab_.append(ll)
    peaks = [ln for ln in axc.get_lines() if ln.get_gid() == _PEAK_GID]
    if peaks:
        h.append(tuple(peaks))
        lab_.append("session peak: each run's marker" + (
            " (open circle: trough before next)"
            if any(ln.get_gid() == _TROUGH_GID for ln in axc.get_lines()) else ""))
    _legend(axc, h, lab_, handlelength=handlelength)


def _course_panel(kind, ax, run, color=None, label=None, analytes=None, bands=True,
                  markers=True, j=0):
    """The whole course, in days.

    Why markers: on a 200-day axis a 40-minute infusion and its few hours of drug are a
    fraction of a pixel wide, so each session's spike would vanish or look like every other.
    A filled marker at each session's peak (and an open one at its trough, just before the
    next session) keeps every session visible and readable on the *same linear scale* as the
    close-up, so peak heights compare directly. A log axis would also show every session but
    makes small troughs look as large as peaks to a lay audience, and a broken axis hides the
    maintenance phase's spacing, which is the point of the course view.
    """
    res = run.course
    x = res.times / 24.0
    cm = run.metrics
    starts = cm.session_start_h
    if kind == "pk":
        labels = analytes or analyte_labels(res.model)
        shown = {n: lab for n, lab in labels.items() if n in ("plasma", "metabolite")} or \
            dict(list(labels.items())[:1])
        if bands:
            ax.set_ylim(0, _ymax([res.concentration(n) for n in shown]))
            _draw_effect_bands(ax, _bands(res.model), labelled=False)
        for i, (n, lab) in enumerate(shown.items()):
            c = color or _COLORS.get(n, RUN_COLORS[i % len(RUN_COLORS)])
            _line_or_band(ax, x, res.concentration(n), c, f"{label}: {lab}" if label else lab,
                          lw=1.2, ls=_RUN_LS[j % len(_RUN_LS)] if label else "-")
        main = main_analyte(res.model)
        c = color or _COLORS.get(main, RUN_COLORS[0])
        cmax, tmax, trough = (np.atleast_1d(a) for a in (cm.cmax_ng_ml, cm.tmax_h,
                                                          cm.trough_ng_ml))
        if markers and cmax.ndim == 1:
            ax.plot((starts + tmax) / 24, cmax, ls="none", marker=_RUN_MK[j % 4], ms=7, color=c,
                    label="session peak" if label is None else None, zorder=4,
                    gid=_PEAK_GID if label is not None else None)
            ok = np.isfinite(trough)
            nxt = np.r_[starts[1:], np.nan]
            if ok.any():         # (one session: no trough, no legend entry)
                tlab = "trough before next session"
                low = float(np.max(trough[ok]))
                if low < 0.02 * ax.get_ylim()[1]:     # markers on the axis line: say how low
                    tlab += f" (at most {low:.2g} ng/mL)"
                ax.plot(nxt[ok] / 24, trough[ok], ls="none", marker="o", ms=6, color=c,
                        mfc="white", mew=1.5, label=tlab if label is None else None, zorder=4,
                        gid=_TROUGH_GID if label is not None else None)
        elif markers and cmax.ndim == 2 and label is None and cmax.size:
            # subjects: the median of their exact peaks, session by session, at the median
            # peak time (the median curve, a median at each time on the output grid, had
            # topped out below the per-session peaks the close-up's note and --summary give,
            # without a word)
            st = np.asarray(starts, dtype=float)
            st = st if st.shape == cmax.shape else np.broadcast_to(st, cmax.shape)
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)     # (an all-NaN session)
                med = np.nanmedian(cmax, axis=0)
                at = np.nanmedian(st + tmax, axis=0)
            # only a session the subjects start together: subjects dosed on days 0 and 4 had
            # one marker at day 2, where neither peaked, at the median of their two peaks
            ok = np.isfinite(med) & np.isfinite(at) & _started_together(st)
            if ok.any():
                ax.plot(at[ok] / 24, med[ok], ls="none", marker="D", ms=6, color=c,
                        mec="white", mew=1, zorder=4,
                        label="subjects' exact session peaks: median")
        ax.set_ylabel("ng/mL", fontsize=BODY_PT)
    elif kind == "occupancy":
        c = color or _COLORS["occupancy"]
        _occupancy_band(ax, res, x, slice(None), c, run=j if label else None)
        _line_or_band(ax, x, res.output("occupancy") * 100, c,
                      label or "occupancy (model-predicted)", lw=1.2,
                      ls=_RUN_LS[j % len(_RUN_LS)])
        po = np.atleast_1d(cm.peak_occupancy)
        if markers and po.ndim == 1 and np.isfinite(po).any():
            # peak time of occupancy ~ concentration peak + effect-site lag; mark at the max
            tk = _peak_times(res, "occupancy", starts)
            ax.plot(tk / 24, po * 100, ls="none", marker=_RUN_MK[j % 4], ms=7, color=c,
                    label="session peak" if label is None else None, zorder=4,
                    gid=_PEAK_GID if label is not None else None)
        ax.set_ylabel("% of receptors", fontsize=BODY_PT)
    else:
        for nm, default, lab in (("plasticity", _COLORS["plasticity"], "plasticity index"),
                                 ("consolidation", _COLORS["consolidation"],
                                  "consolidated plasticity (slow)")):
            if _has(res, nm):
                # compared runs: the slow index drawn thick and pale, the fast one thin
                slow = nm == "consolidation" and label is not None
                lw = (3.2 if slow else 1.3) if label is not None else 2.0
                # (compared runs: one legend entry for each index, not one per run: the runs
                # are told apart by colour in the glutamate entries beside them)
                text = lab if label is None else (
                    None if j else f"{lab}: {'thick, pale' if slow else 'thin'}, each run's "
                                   "colour")
                _line_or_band(ax, x, res.output(nm), color or default, text, lw=lw,
                              ls=_RUN_LS[j % len(_RUN_LS)], alpha=0.25)
                if slow:
                    ax.get_lines()[-1].set_alpha(0.55)
        ax.set_ylabel("index (0-1)", fontsize=BODY_PT)


def _peak_times(res, name, starts):
    y = res.output(name)
    if y.ndim == 2:
        y = np.median(y, axis=0)
    t = res.times
    edges = np.r_[starts, t[-1] + 1]
    out = np.full(starts.size, np.nan)
    for k in range(starts.size):
        sel = (t >= edges[k]) & (t < edges[k + 1])
        if sel.any():
            out[k] = t[sel][np.argmax(y[sel])]
    return out


def _title(run) -> str:
    res = run.course
    drug = drug_title(res.model)
    ids = getattr(res.doses, "subject_ids", None)
    if ids is not None and len(ids) > 1:
        # a dose table's subjects: each has its own doses and weight; the curves are the
        # median and 5-95 % band over them
        from pathlib import Path
        src = str(res.doses.source or "")
        # (a table built in Python has no file: its placeholder source "<doses>" is no name)
        src = Path(src).name if src and not src.startswith("<") else "a dose table"
        # their own weights only where the table gives them different ones (a table without
        # a weight_kg column, every subject at 70 kg, had been titled "each with its own
        # doses and weight"); one weight for all is stated as in a single run's title
        wt = res.params.get("WT") if isinstance(res.params, dict) else None
        wt = np.unique(np.ravel(np.asarray(wt, dtype=float))) if wt is not None else \
            np.array([run.weight_kg])
        if wt.size > 1:
            own = "own doses and weight"
        else:
            own = "own doses" + (f" · {_num(float(wt[0]))} kg" if uses_weight(res.model)
                                 else "")
        return (f"{drug}: {len(ids):,} subjects of {src}, each with its "
                f"{own}\nmedian and 5-95 % band over the subjects")
    kg = f" · {_num(run.weight_kg)} kg" if uses_weight(res.model) else ""
    return (f"{drug}: {describe_doses(res.doses, run.weight_kg, res.model)}"
            f"{kg}\n{run.regimen}")


def uses_weight(model) -> bool:
    """Whether body weight changes anything in the model (allometry, values per kg, or WT in
    an expression): a title then states the weight; a fixed-dose model without a weight
    effect (esketamine-nasal) does not get one."""
    if getattr(model, "allometric", None) or getattr(model, "per_kg", None):
        return True
    seen = set()

    def walk(x, depth=0):
        if depth > 6 or id(x) in seen:
            return False
        seen.add(id(x))
        names = getattr(x, "names", None)
        if isinstance(names, frozenset):
            return "WT" in names
        if isinstance(x, dict):
            return any(walk(v, depth + 1) for v in x.values())
        if isinstance(x, (tuple, list)):
            return any(walk(v, depth + 1) for v in x)
        if hasattr(x, "__dataclass_fields__"):
            return any(walk(getattr(x, f), depth + 1) for f in x.__dataclass_fields__)
        return False

    return any(walk(getattr(model, f, None)) for f in ("derived", "compartments", "flows",
                                                          "effects", "routes", "ligands"))


# ---------------------------------------------------------------------------- figures
def plot_course(run, *, title: str | None = None, label: str | None = None,
                color: str | None = None, figsize=(16, 10.5), closeup_h: float | None = None,
                **run_kw):
    """The educators' course figure: one row per quantity (plasma concentrations,
    model-predicted NMDA occupancy, the SCHEMATIC glutamate/plasticity response), the first
    session's close-up on the left (infusion bar, exact peak) and the whole course on the right
    (a marker at every session's peak and trough), published effect bands and the occupancy
    calibration range when the preset has them, and a caption naming the preset and its
    source.

    Parameters
    ----------
    run : CourseRun or Result
        From :func:`run_course` (best: the close-up is simulated on a 1-minute grid), or a
        Result of :func:`ketasim.simulate` with its doses (the close-up then uses its grid).
    title : str, optional
        Replaces the automatic title (drug, dose, route, weight, regimen).
    label, color : str, optional
        A name and a single colour for every curve (default: one colour per analyte).
    figsize : (float, float)
        Width and height, inches, each from 1 to 100 (the height is that of three rows).
    closeup_h : float, optional
        Length of the close-up, h (default: the run's close-up, 8 h for a Result).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if closeup_h is not None:
        closeup_h = check_closeup_h(closeup_h)
    run = _as_run(run, closeup_h or 8.0, **run_kw)
    return _grid_figure([run], [label], [color], title or _title(run), figsize, closeup_h,
                        single=True)


FIGSIZE_RANGE_IN = (1.0, 100.0)     # a course figure's width and height, inches


def _check_figsize(figsize, what: str) -> tuple:
    """(width, height) in inches within :data:`FIGSIZE_RANGE_IN`: a figure 0.1 inch wide had
    failed inside the caption's wrapping, (10, 20000) had taken memory until the process was
    killed, text had failed as 'can't multiply sequence'."""
    lo, hi = FIGSIZE_RANGE_IN
    try:
        w, h = figsize
        ok = is_real(w) and is_real(h) and lo <= w <= hi and lo <= h <= hi
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise KetasimInputError(f"{what}: figsize: got {figsize!r}, expected (width, height) "
                                f"in inches, each from {lo:g} to {hi:g}")
    return float(w), float(h)


def _grid_figure(runs, labels, colors, title, figsize, closeup_h, single):
    """Rows of (close-up | course) panels, one row per quantity, a caption underneath."""
    from matplotlib.figure import Figure

    # (measured as the layout is made, so made drawable here)
    labels = [drawable(lab) if isinstance(lab, str) else lab for lab in labels]
    title = drawable(title) if isinstance(title, str) else title
    figsize = _check_figsize(figsize, "plot_course" if single else "plot_compare")
    for r in runs:      # the concentrations drawn must be in the result (outputs= may omit them)
        need = list(analyte_labels(r.model)) if single else [main_analyte(r.model)]
        missing = [n for n in need if not (_has(r.course, n) and _has(r.closeup, n))]
        if missing:
            raise KetasimInputError(
                f"{'plot_course' if single else 'plot_compare'}: the result of model "
                f"{r.model.name!r} has no output {missing[0]!r}, which the figure draws; "
                f"expected a result with {', '.join(repr(n) for n in need)} (simulate with "
                "outputs=None, the model's default, or naming them)")

    rows = ["pk"]
    if all(_has(r.course, "occupancy") for r in runs):
        rows.append("occupancy")
    if all(_has(r.course, "plasticity") or _has(r.course, "glutamate") for r in runs):
        rows.append("schematic")
    fig = Figure(figsize=(figsize[0], figsize[1] * (0.4 + 0.6 * len(rows) / 3)),
                 layout="constrained")
    # concentration windows belong to a drug: a comparison draws them only when every run
    # has the same ones (e.g. two courses of one preset)
    sets = [tuple((b.name, b.lo_ng_ml, b.hi_ng_ml) for b in _bands(r.model)) for r in runs]
    bands = _bands(runs[0].model) if all(x == sets[0] for x in sets) else ()
    differ = any(sets) and not bands
    # (with the exact session peaks drawn as markers: on a coarse grid the curves pass below
    # them, and a marker off the scale would silently vanish)
    top_view = max(_ymax([c.concentration(n) for c in (r.closeup, r.course)
                          for n in ([main_analyte(r.model)] if not single
                                    else list(analyte_labels(r.model)))]
                         + [np.atleast_1d(r.metrics.cmax_ng_ml)])
                   for r in runs)
    # a window that starts inside the data's range and ends a little above it is shown whole
    ends = [b.hi_ng_ml for b in bands if b.lo_ng_ml < top_view and b.hi_ng_ml is not None
            and math.isfinite(b.hi_ng_ml) and b.hi_ng_ml <= 1.6 * top_view]
    top_view = max([top_view] + [1.04 * e for e in ends])
    extra = [] if single else [" ".join(f"{lab}: {drug_name(r.model)}, "
                                        f"{describe_doses(r.doses, r.weight_kg, r.model)}, "
                                        + (f"{_num(r.weight_kg)} kg, " if uses_weight(r.model)
                                           else "") + f"{r.regimen}."
                                        for r, lab in zip(runs, labels))]
    m0 = runs[0].model
    extra += [x for x in (_bands_caption(bands, top_view,
                                         analyte_labels(m0)[main_analyte(m0)]),) if x]
    if differ:
        extra.append("The published concentration windows differ between the drugs compared "
                     "and are not drawn here; `ketasim course` draws them for one model.")
    # windows of another analyte than the one the figure scales them against: named, not drawn
    plotted = main_analyte(runs[0].model)
    others = [b for b in (getattr(runs[0].model, "bands", ()) or ())
              if getattr(b, "analyte", plotted) != plotted] if single else []
    if others:
        extra.append(f"Not drawn (for another analyte than {plotted}): "
                     + "; ".join(f"{b.analyte} {_band_label(b)}" for b in others) + ".")
    # a model's dose note is about the named course at its default dose: only there
    from .courses import STANDARD_MG_PER_KG

    std = COURSE_DESCRIPTIONS["standard-iv"].split(" (")[0]      # (at any length)
    noted = {r.model.name for r in runs if (r.regimen or "").startswith(std)
             and np.allclose(expand(r.doses).amount_mg, STANDARD_MG_PER_KG * r.weight_kg)}
    caption_lines = _caption_lines(fig, [r.model for r in runs], noted=noted,
                                   extra="\n".join(extra) if extra else None)
    cap_h = (len(caption_lines) + 0.8) * CAPTION_PT * 1.25 / 72
    # (the grid that Figure.subfigures(2, 1, height_ratios=...) makes, kept for _fit_rows)
    parts = fig.add_gridspec(2, 1, height_ratios=[fig.get_figheight() - cap_h, cap_h],
                             left=0, right=1, bottom=0, top=1)
    main, cap = fig.add_subfigure(parts[0]), fig.add_subfigure(parts[1])
    cap.text(0.005, 0.5, "\n".join(caption_lines), fontsize=CAPTION_PT, color="0.25",
             va="center", ha="left")
    grid = main.subplots(len(rows), 2, squeeze=False, width_ratios=[1, 2.1])
    zoom = closeup_h or max(float(r.closeup.times[-1] - r.closeup.times[0]) for r in runs)
    # a result on a coarse grid has one or two times in its first hours: no close-up to draw
    coarse = [r for r in runs if r.closeup.times.size < 3]
    if not zoom > 0:
        zoom = 8.0
    first_ax = None
    noted, notes = [], []
    # the sessions after the first that the close-up shows (its x: hours from the first's start)
    later = []
    for r in runs:
        st = np.asarray(getattr(r.metrics, "session_start_h", ()), dtype=float)
        st = st[0] if st.ndim == 2 else np.atleast_1d(st)   # (subjects: the first's)
        later += [t - float(r.closeup.times[0]) for t in st[1:]
                  if t - float(r.closeup.times[0]) <= zoom]
    # every row's legend keys long enough for the compared runs' peak markers side by side
    # (:func:`_row_legend`; five had been drawn over each other), the same in every row
    keys = None if single or len(runs) < 3 else 0.8 * len(runs)
    for i, kind in enumerate(rows):
        axz, axc = grid[i]
        if first_ax is not None:
            axz.sharex(first_ax[0])
            axc.sharex(first_ax[1])
        else:
            first_ax = (axz, axc)
        if kind == "pk":
            # one concentration scale for the close-up and the course: peaks compare directly
            for ax in (axz, axc):
                ax.set_ylim(0, top_view)
            # (the windows are the main analyte's: with its metabolite drawn on the same
            # axis, a legend entry without the drug's name had let the metabolite's curve
            # read as inside a window of its own)
            m0 = runs[0].model
            others = single and len(analyte_labels(m0)) > 1
            _draw_effect_bands(axz, bands, of=analyte_labels(m0)[main_analyte(m0)]
                               if others else None)
            _draw_effect_bands(axc, bands, labelled=False)
        for j, (r, lab, col) in enumerate(zip(runs, labels, colors)):
            one = None if single else {main_analyte(r.model):
                                       analyte_labels(r.model)[main_analyte(r.model)]}
            _closeup_panel(kind, axz, r, color=col, label=lab, analytes=one, bands=False, j=j)
            _course_panel(kind, axc, r, color=col, label=lab, analytes=one, bands=False,
                          markers=True, j=j)
            if kind == "pk":
                c = col or _COLORS.get(main_analyte(r.model), RUN_COLORS[0])
                t0 = float(r.closeup.times[0])
                _infusion_bars(axz, r.doses, t0, t0 + zoom, color=col or "0.35",
                               label=single or len(runs) <= 3,
                               prefix=None if single else lab, level=0 if single else j,
                               model=r.model)

                # one note per distinct peak: runs with the same first session share it (the
                # same height at the same time: a 20-minute infusion peaking 1 % below a
                # 40-minute one, 20 minutes earlier, had had neither label nor marker, the
                # other run's "at 40 min" standing for both)
                pk = float(np.ravel(r.metrics.cmax_ng_ml)[0])    # (a population: its first)
                tk = float(np.ravel(r.metrics.tmax_h)[0])
                if not any(abs(pk - q) <= 0.02 * max(abs(q), 1e-12)
                           and abs(tk - u) <= 0.5 / 60 for q, u in noted):
                    note = _peak_note(axz, r, c, slot=None if single else len(noted),
                                      later=bool(later))
                    noted.append((pk, tk))
                    if note:
                        notes.append((note, c))
        if kind == "pk" and not single and len(runs) > 3:
            # (more runs than their own dose entries would fit: one entry explains them)
            axz.plot([], [], marker="s", ms=7, ls="none", color="0.45",
                     label="doses (bars, triangles): each run's colour and row")
        for ax in (axz, axc):
            _style(ax)
            if kind != "pk" and ax is axc:
                ax.set_ylim(bottom=0)
        if kind == "schematic":
            # a response too small to see (a tiny dose) keeps a readable scale: glutamate at
            # least 10 % above its baseline, the plasticity indices at least 0.05
            lo, hi = axz.get_ylim()
            if any(_has(r.closeup, "glutamate") for r in runs) and hi < 1.1:
                axz.set_ylim(min(lo, 0.98), 1.1)
            if axc.get_ylim()[1] < 0.05:
                axc.set_ylim(0, 0.05)
        if kind == "occupancy":
            # one occupancy scale for the close-up and the course, as for concentrations
            top = max(axz.get_ylim()[1], axc.get_ylim()[1])
            for ax in (axz, axc):
                ax.set_ylim(0, max(10.0, min(100.0, top)))
        axz.set_xlim(0, zoom)
        if coarse and kind == "pk":
            # the grid's usual step (its last interval may be a shorter remainder)
            step = max(float(np.median(np.diff(r.course.times))) if r.course.times.size > 1
                       else 0.0 for r in coarse)
            axz.text(0.5, 0.5, f"no close-up: the output grid is too coarse\n(step {_num(step)} "
                     "h; a step of 0.1 h or less shows the first session)",
                     transform=axz.transAxes, ha="center", va="center", fontsize=BODY_PT - 1,
                     bbox={"facecolor": "white", "edgecolor": "0.6"}, zorder=6)
        if kind == "pk":
            below = _course_below_peaks(runs)
            if below is not None:
                # (a course on a coarse output grid: its curves a flat line under the exact
                # peak markers, without a word of why)
                axc.text(0.5, 0.97, below, transform=axc.transAxes, ha="center", va="top",
                         fontsize=BODY_PT - 2, bbox={"facecolor": "white", "edgecolor": "0.6"},
                         zorder=6)
        # the row title runs from the close-up across the course panel. A blank axes title
        # reserves its height; the text itself is left out of the layout (which would
        # otherwise widen the close-up column to make room for it)
        pad = (16 + 8 * (len(runs) - 1)) if kind == "pk" else 6   # (above: the dose bars)
        axz.set_title(" ", fontsize=BODY_PT + 1, loc="left", pad=pad)
        axz.annotate(_row_title(kind, runs), (0, 1), xycoords="axes fraction",
                     xytext=(0, pad + 2), textcoords="offset points", fontsize=BODY_PT + 1,
                     fontweight="bold", va="bottom", ha="left",
                     annotation_clip=False).set_in_layout(False)
        if i < len(rows) - 1:
            axz.tick_params(labelbottom=False)
            axc.tick_params(labelbottom=False)
        else:
            # a close-up longer than the gap to the next session shows more than the first
            axz.set_xlabel("FIRST SESSION: hours after its start" if not later else
                           f"FIRST {_num(zoom)} HOURS: from the first session's start",
                           fontsize=BODY_PT)
            marked = any(np.ndim(r.metrics.cmax_ng_ml) == 1 for r in runs)
            subjects = single and np.ndim(runs[0].metrics.cmax_ng_ml) == 2
            if subjects:
                cm0 = runs[0].metrics
                st0 = np.asarray(cm0.session_start_h, dtype=float)
                st0 = st0 if st0.shape == np.shape(cm0.cmax_ng_ml) else \
                    np.broadcast_to(st0, np.shape(cm0.cmax_ng_ml))
                same = _started_together(st0)
                together, any_together = bool(same.all()), bool(same.any())
            # the course is drawn from time 0 of its dose table: "from the first session"
            # only where that session starts then (a table starting on day 41.7 had been
            # labelled so, with its first session drawn at 41.7)
            firsts = {float(r.closeup.times[0]) for r in runs}
            origin = days_origin(firsts.pop()) if len(firsts) == 1 else \
                "time 0 of the dose tables"
            # an output grid ending before the last session: the course as far as it goes
            # (a 30-day grid of the 22-session nasal course had been labelled WHOLE COURSE)
            from .engine import session_starts

            def cut_short(r):
                starts = session_starts(r.doses)
                return bool(r.course.times.size and starts.size
                            and starts[-1] >= float(r.course.times[-1]))

            # (a comparison: to the last day any run's grid reaches, when any run is cut)
            ends = [float(r.course.times[-1]) for r in runs if r.course.times.size]
            cut = any(cut_short(r) for r in runs)
            span = f"COURSE TO DAY {_num(max(ends) / 24)}" if cut else "WHOLE COURSE"
            axc.set_xlabel(f"{span}: days from {origin}" + (
                " (a marker at every session's peak)" if marked else
                (" (a marker at every session: the subjects' median peak)" if together
                 else " (a marker at every session the subjects start together: their "
                 "median peak)" if any_together else "") if subjects
                else ""), fontsize=BODY_PT)
        _row_legend(axz, axc, keys)
    # (measured: a comparison's run labels in capitals had run past the figure's edges)
    title = "\n".join(_wrap_to(fig, title, TITLE_PT, 0.98 * fig.bbox.width, hyphens=False,
                                bold=True))
    head = main.suptitle(title, fontsize=TITLE_PT, fontweight="bold")
    _fit_rows(fig, parts, cap_h, grid, head)
    # (placed with every run's curves drawn and the panels laid out: none may pass under a
    # label)
    if _place_notes(fig, grid[0][0], notes, (0.0, zoom), later):
        _row_legend(*grid[0], keys)
        _fit_rows(fig, parts, cap_h, grid, head)
    _keep_apart(fig, grid[-1][0].xaxis.label, grid[-1][1].xaxis.label)
    return fig


def days_origin(first_h: float) -> str:
    """Where a course axis's days count from, in words, for a course drawn from time 0 of its
    dose table whose first session starts at ``first_h`` (h): "the first session" when that is
    time 0, else "time 0 (first session on day 41.7)"."""
    if first_h == 0:
        return "the first session"
    return f"time 0 (first session on day {_num(first_h / 24)})"


def _two_lines(text: str) -> str:
    """An x label on two lines: before its last parenthesis ('... days from time 0 (first
    session on day 41.7)' / '(a marker at every session's peak)'), else after its colon."""
    i = text.rfind(" (")
    if i > 0:
        return text[:i] + "\n" + text[i + 1:]
    i = text.find(": ")
    return text[:i + 1] + "\n" + text[i + 2:] if i > 0 else text


def _keep_apart(fig, left, right):
    """Put the bottom row's two x labels (the close-up's ``left``, the whole course's
    ``right``) on two lines each when, laid out, they would be less than half a character
    apart: the legends beside the panels take their width from them, and long run labels in
    capitals (each entry wrapped at :data:`LEGEND_CHARS` characters, but capitals are wide)
    had narrowed the panels until 'FIRST SESSION: hours after its start' ran into 'WHOLE
    COURSE: days from the first session ...'. The figure ``fig`` is laid out first."""
    import warnings

    if not (left.get_text() and right.get_text()) or "\n" in left.get_text():
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="constrained_layout not applied")
        fig.get_layout_engine().execute(fig)
    a, b = left.get_window_extent(), right.get_window_extent()
    if a.x1 + 0.5 * left.get_fontsize() * fig.dpi / 72 > b.x0:
        for t in (left, right):
            t.set_text(_two_lines(t.get_text()))


def ki_calibration(res) -> str | None:
    """The Ki calibration a Result's occupancy was computed with: the one chosen
    (``occupancy_calibration``), else its model's default, else its first (None: a model
    without calibrations). The course figure and the explorer name it beside occupancy."""
    m = res.model
    return ((res.inputs or {}).get("occupancy_calibration")
            or getattr(m, "default_calibration", "")
            or next(iter(getattr(m, "calibrations", None) or {}), None))


def _row_title(kind, runs):
    if kind == "pk":
        # the sampling is said of every curve only when every model states it (a comparison
        # with a model file that does not had called both curves venous)
        samp = [r.model.meta.get("sampling") for r in runs]
        return "Plasma concentration" + (f" ({', '.join(sorted(set(samp)))} blood)"
                                         if samp and all(samp) else "")
    if kind == "occupancy":
        # the calibration of the line (the model's default unless one was chosen), always
        # named: the figure is quoted without the command that made it
        cals = {ki_calibration(r.course) for r in runs} - {None, ""}
        return ("NMDA-receptor occupancy: MODEL-PREDICTED (effect site, unbound drug, "
                "competitive binding" + (f"; Ki calibration {', '.join(sorted(map(str, cals)))}"
                                         if cals else "") + ")")
    return "SCHEMATIC glutamate surge and plasticity: illustrative, not fitted to data"


#: Largest close-up (bytes of outputs) :func:`_closeup_of` simulates anew on a one-minute grid.
CLOSEUP_RERUN_BYTES = 64 * 2**20


def _closeup_of(res, t0: float, closeup_h: float):
    """The first ``closeup_h`` hours of a Result from ``t0``, for the close-up panels: on a
    one-minute grid through every event, as :func:`run_course` draws it, when ``res``'s own
    grid there is coarser (the same subjects, outputs and settings, run again from
    ``res.inputs``): on the 6-minute grid of ``ketasim simulate``, a 40-minute infusion's
    curve had topped out 10 ng/mL below its exact peak's marker. Otherwise, or when that run
    would be large (:data:`CLOSEUP_RERUN_BYTES`), ``res``'s own points in the window."""
    import dataclasses

    sel = (res.times >= t0) & (res.times <= t0 + closeup_h)
    own = dataclasses.replace(res, times=res.times[sel], data=res.data[:, :, sel])
    end = min(t0 + closeup_h, float(res.times[-1]))
    if res.doses is None or res.inputs is None or not end > t0:
        return own
    fine = course_grid(res.doses, 1 / 60, end, start_h=t0)
    if own.times.size >= fine.size or \
            res.data.shape[0] * res.data.shape[1] * fine.size * 8 > CLOSEUP_RERUN_BYTES:
        return own
    import warnings

    from .errors import KetasimWarning
    from .metrics import result_model
    from .simulate import simulate

    inputs = res.inputs
    # (what the run would warn of, the simulate that made ``res`` said: it had been said
    # again, as "simulate: ...", from inside the figure)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KetasimWarning)
        return simulate(result_model(res), res.doses, fine,
                        params=inputs.get("params") or None,
                        weight_kg=inputs.get("weight_kg", 70.0), outputs=list(res.names),
                        occupancy_calibration=inputs.get("occupancy_calibration"),
                        pd_rtol=inputs.get("pd_rtol", 1e-6), dtype=res.data.dtype)


def _course_below_peaks(runs) -> str | None:
    """A note for the whole-course panel when its curves, drawn at the output grid's times,
    pass well below the exact session peaks (the markers): a grid coarser than a session
    (``--step 24``) draws the course as a flat line under them. None when every run's curve
    reaches 90 % of its highest exact peak."""
    steps = []
    for r in runs:
        exact = np.asarray(r.metrics.cmax_ng_ml, dtype=float)
        exact = exact[np.isfinite(exact)]
        if not exact.size or r.course.times.size < 2:
            continue
        drawn = np.asarray(r.course.concentration(main_analyte(r.model)), dtype=float)
        if np.nanmax(drawn, initial=0.0) < 0.9 * float(exact.max()):
            steps.append(float(np.median(np.diff(r.course.times))))
    if not steps:
        return None
    step = max(steps)
    every = f"every {_num(step * 60)} min" if step < 1 else f"every {_num(step)} h"
    return (f"curves drawn at the output grid's times ({every}), below the peaks\n(the "
            "markers, exact); a step of 0.25 h or less draws them")


def _as_run(run, closeup_h, **kw):
    if isinstance(run, CourseRun):
        return run
    from .metrics import course_metrics
    from .result import Result

    if not isinstance(run, Result):
        raise KetasimInputError(f"run: got {type(run).__name__}, expected a CourseRun of "
                                "run_course or a Result of ketasim.simulate")
    res = run
    if kw:
        raise TypeError(f"unexpected arguments {sorted(kw)}")
    from .engine import _dose_times

    # (the first dose: a reset row before it, evid 3, starts no session)
    dose_t = _dose_times(res.doses) if res.doses is not None else np.empty(0)
    t0 = float(dose_t.min()) if dose_t.size else float(res.times[0])
    closeup = _closeup_of(res, t0, closeup_h)
    cm = course_metrics(res, analyte=main_analyte(res.model), _warn_after_end=False)
    wt = res.params.get("WT") if isinstance(res.params, dict) else None
    wt = float(np.mean(wt)) if wt is not None else 70.0
    return CourseRun(res, closeup, cm, res.model.name,
                     _regimen(res.doses, until_h=float(res.times[-1])), wt)


def plot_compare(runs, *, labels=None, colors=None, title: str | None = None,
                 figsize=(16, 10.5), closeup_h: float | None = None):
    """Several runs overlaid, one colour each: the first session (left) and the whole course
    (right) of each run's main analyte, model-predicted occupancy and the SCHEMATIC response.

    Parameters
    ----------
    runs : sequence of CourseRun (or Result), or one of them
    labels, colors : sequences of str, optional
        Legend labels (default: each run's label) and colours (default: Okabe-Ito).
    figsize : (float, float)
        Width and height, inches, each from 1 to 100 (the height is that of three rows).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from .errors import KetasimInputError

    if isinstance(runs, CourseRun) or hasattr(runs, "output"):
        runs = [runs]                   # one run (or Result) given alone: a list of one
    elif isinstance(runs, (str, bytes)) or not hasattr(runs, "__iter__"):
        raise KetasimInputError(f"runs: got {type(runs).__name__}, expected CourseRuns of "
                                "run_course or Results of ketasim.simulate")
    runs = [_as_run(r, 8.0) for r in runs]
    if not runs:
        raise KetasimInputError("compare: expected at least one run")
    labels = ([labels] if isinstance(labels, str) else list(labels)) if labels is not None \
        else [r.label for r in runs]
    colors = ([colors] if isinstance(colors, str) else list(colors)) if colors is not None \
        else [RUN_COLORS[i % len(RUN_COLORS)] for i in range(len(runs))]
    for what, given in (("labels", labels), ("colors", colors)):
        if len(given) != len(runs):       # (a shorter list had left runs out of the figure)
            raise KetasimInputError(f"compare: {len(given)} {what} for {len(runs)} runs; "
                                    f"expected one per run")
    if closeup_h is not None:
        closeup_h = check_closeup_h(closeup_h)
    if title is None:
        import textwrap

        # (wrapped: five labels had run past both edges of the figure)
        title = textwrap.fill("Comparison: " + "  vs  ".join(labels), 110,
                              break_long_words=False, break_on_hyphens=False)
    return _grid_figure(runs, labels, colors, title, figsize, closeup_h, single=False)


def plot_bands(result, name: str = "plasma", *, times=None, ax=None, label: str | None = None,
               color: str | None = None, percentiles=(5, 50, 95), unit_scale: float = 1.0,
               ylabel: str | None = None, title: str | None = None, days: bool | None = None):
    """Population percentiles over time: a shaded band between the outer percentiles and the
    median as a line.

    Parameters
    ----------
    result : Result, PopulationResult, Bands or array (N, T)
        A population Result (``name`` is read from it: a concentration in ng/mL or any output),
        the bands of :func:`ketasim.population` (``population(..., bands=True)`` or its
        ``.bands``: their quantiles, in their units), or an array of values, one row per
        subject (then give ``times`` in h).
    name : str
        Output to draw (default ``plasma``).
    times : array (T,), optional
        The times (h) of an array of values; not with a Result, which has its own.
    ax : matplotlib Axes, optional
        Draw on it (the Figure is still returned); default: a new Figure.
    label, color : str, optional
        The legend's name for the output (default: its analyte name; a schematic output's
        says SCHEMATIC) and the colour.
    percentiles : (lo, mid, hi)
        Default 5/50/95 %.
    unit_scale : float
        Multiplier for the values (e.g. 100 for occupancy in %).
    ylabel, title : str, optional
        The y-axis label (default: ``ng/mL`` for a concentration, "fraction of receptors
        (model-predicted)" for occupancy, "% of receptors ..." with ``unit_scale=100``, else
        ``name``, with "(SCHEMATIC)" for the schematic outputs) and a title over the panel
        (default: none).
    days : bool, optional
        Time axis in days (default: when the grid is longer than three days).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    from .engine import SCHEMATIC_OUTPUTS
    from .population import Bands, PopulationResult

    schematic = name in SCHEMATIC_OUTPUTS

    occupancy = name.startswith("occupancy")

    def default_ylabel(plain):
        # a schematic output and occupancy say what they are, as the course figure does;
        # occupancy in the unit drawn (with unit_scale=100 the axis had read "fraction of
        # receptors" under values of 0-40), the output itself named in the legend
        if occupancy:
            per = ("% of receptors" if is_real(unit_scale) and unit_scale == 100
                   else "fraction of receptors" + ("" if unit_scale == 1 or not
                                                   is_real(unit_scale)
                                                   else f" × {unit_scale:g}"))
            return f"{per} (model-predicted)"
        return f"{name} (SCHEMATIC)" if schematic else plain

    quantiles = None            # (lo, mid, hi) read from a population's bands
    if isinstance(result, PopulationResult):
        if result.bands is None:
            raise KetasimInputError("plot_bands: this population has no bands; run "
                                    "population(..., bands=True) (or a step in h)")
        result = result.bands
    if isinstance(result, Bands):
        if times is not None:
            raise KetasimInputError("plot_bands: times: bands have their own; give times (h) "
                                    "only with an array of values")
        q = tuple(100.0 * float(v) for v in result.quantiles)
        if not (isinstance(percentiles, (tuple, list, np.ndarray)) and len(percentiles) == 3
                and all(is_real(p) for p in percentiles)
                and np.allclose(np.asarray(percentiles, float), q)):
            raise KetasimInputError(
                f"plot_bands: percentiles: got {percentiles!r}, but a population's bands hold "
                f"{q[0]:g}/{q[1]:g}/{q[2]:g} %; expected those (or the curves of simulate "
                "for others)")
        percentiles = q
        band = result.get(name)         # (an output the bands lack: named, with theirs)
        t = np.asarray(result.times_h, float)
        quantiles = tuple(band[f"p{round(v):02d}"] for v in q)
        model = None
        if label is None and schematic:
            label = f"{name} (SCHEMATIC)"
        elif label is None and occupancy:
            label = output_label(None, name)
        if ylabel is None:
            ylabel = default_ylabel(result.units.get(name, "") or name)
    elif times is not None or not hasattr(result, "output"):    # values (N, T), not a Result
        if hasattr(result, "times"):
            raise KetasimInputError("plot_bands: times: a result has its own; give times (h) "
                                    "only with an array of values")
        try:
            if result is None or isinstance(result, (str, bytes)):
                raise TypeError       # (None had read as one NaN "of shape (1, 1)")
            y = np.atleast_2d(np.asarray(result, float))
            t = np.asarray(times, float) if times is not None else None
        except (TypeError, ValueError):
            raise KetasimInputError(f"plot_bands: got {type(result).__name__}, expected a "
                                    "Result of simulate, a population's bands, or an array "
                                    "(N, T) of numbers with its times (T,) in h") from None
        if y.ndim != 2 or t is None or t.shape != (y.shape[1],):
            raise KetasimInputError(
                f"plot_bands: values of shape {y.shape} need times (h), one per column; got "
                + ("none" if t is None else f"shape {t.shape}"))
        model = None
    else:
        t = result.times
        model = result.model
        from .result import PD_OUTPUTS
        pd = name in PD_OUTPUTS or name.startswith("occupancy") or name == "consolidation"
        y = np.atleast_2d(result.output(name) if pd else result.concentration(name))
        if label is None and model is not None:
            # a schematic output says so, as in the course figure ("glutamate signal
            # (SCHEMATIC)"); the legend had called it plain "glutamate"
            # (occupancy too: "occupancy_low" had been the legend's name for "NMDA
            # occupancy, lowest over Ki calibrations (in-vitro, in-vivo)")
            label = (output_label(model, name) if schematic or occupancy
                     else analyte_labels(model).get(name, name))
        if ylabel is None:
            ylabel = default_ylabel(name) if pd else "ng/mL"
    if (not isinstance(percentiles, (tuple, list, np.ndarray)) or len(percentiles) != 3
            or not all(is_real(p) and 0 <= p <= 100
                       for p in percentiles)
            or not percentiles[0] < percentiles[1] < percentiles[2]):
        raise KetasimInputError(f"plot_bands: percentiles: got {percentiles!r}, expected three "
                                "numbers from 0 to 100 (low, middle, high), in that order")
    if not (is_real(unit_scale) and math.isfinite(unit_scale) and unit_scale > 0):
        raise KetasimInputError(f"plot_bands: unit_scale: got {unit_scale!r}, expected a "
                                "finite number > 0 (a multiplier for the values)")
    if days is not None:        # a switch, as progress= is (the text "no" had meant days)
        days = check_flag("plot_bands: days", days)
    own = ax is None
    if own:
        fig = Figure(figsize=(10, 5.5), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    if days is None:
        days = t[-1] - t[0] > 72
    x = t / 24.0 if days else t
    color = color or OKABE_ITO["blue"]
    if quantiles is None:
        lo, mid, hi = np.percentile(y * unit_scale, percentiles, axis=0)
    else:
        lo, mid, hi = (np.asarray(v, float) * unit_scale for v in quantiles)
    ax.fill_between(x, lo, hi, color=color, alpha=0.25, lw=0,
                    label=f"{label or name}: {percentiles[0]:g}-{percentiles[2]:g} %")
    ax.plot(x, mid, color=color, lw=2.2, label=f"{label or name}: median")
    _style(ax)
    ax.set_xlabel("days" if days else "hours", fontsize=BODY_PT)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=BODY_PT)
    _ylim_from_zero(ax)
    if title:
        ax.set_title(title, fontsize=BODY_PT + 1, loc="left")
    if own:
        _legend_above_data(ax)
    else:
        _legend_near(ax)
    return fig


def _legend_above_data(ax):
    """The legend in the axes' upper right, with the y axis raised until no curve passes
    under it: over a course, sessions' spikes reach the top all along the time axis, and the
    best place matplotlib found had the legend over the last session's spike."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    lg = ax.legend(handles, labels, loc="upper right", frameon=True, framealpha=0.9,
                   edgecolor="none", fontsize=BODY_PT - 1)
    import warnings

    fig = ax.figure
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="constrained_layout not applied")
        engine = fig.get_layout_engine()
        if engine is not None:
            engine.execute(fig)
    box = lg.get_window_extent().transformed(ax.transAxes.inverted())
    pts = _drawn_points(ax)
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    xs = x0 + np.array([box.x0, box.x1]) * (x1 - x0)
    under = pts[(pts[:, 0] >= xs[0]) & (pts[:, 0] <= xs[1]) & np.isfinite(pts[:, 1])]
    room = box.y0 - 0.02                   # the legend's lower edge, axes fraction
    if under.size and room > 0.3:
        top = float(under[:, 1].max())
        if top > y0 + room * (y1 - y0):
            ax.set_ylim(y0, y0 + (top - y0) / room)


def plot_concentrations(result, names=None, ax=None, unit="ng/mL", *, label=None, color=None):
    """Concentration-time curves of ``names`` (a name or a list; default: the model's named
    analytes) on ``ax`` (default: a new Figure); returns the Axes."""
    from matplotlib.figure import Figure

    if ax is None:
        ax = Figure(figsize=(10, 4.5), layout="constrained").add_subplot()
    labels = analyte_labels(result.model)
    if names is None:
        names = list(labels)
    elif isinstance(names, str):        # one name (as simulate's outputs), not its letters
        names = [names]
    t = result.times
    days = t[-1] - t[0] > 72
    x = t / 24.0 if days else t
    for i, nm in enumerate(names):
        lab = labels.get(nm, nm)
        _line_or_band(ax, x, result.concentration(nm, unit),
                      color or _COLORS.get(nm, RUN_COLORS[i % len(RUN_COLORS)]),
                      f"{label}: {lab}" if label else lab)
    _style(ax)
    ax.set_xlabel("days" if days else "hours", fontsize=BODY_PT)
    ax.set_ylabel(f"concentration ({unit})", fontsize=BODY_PT)
    _ylim_from_zero(ax)
    _legend_near(ax)
    return ax


def _ylim_from_zero(ax):
    """y from 0 to just above everything drawn so far (later calls on the same Axes widen it:
    a fixed limit would clip curves added afterwards)."""
    tops = [float(np.nanmax(ln.get_ydata())) for ln in ax.get_lines() if len(ln.get_ydata())]
    tops += [float(np.nanmax(p.vertices[:, 1])) for c in ax.collections
             for p in c.get_paths() if len(p.vertices)]
    top = max(tops) if tops else 1.0
    ax.set_ylim(0, top * 1.06 if top > 0 else 1.0)


# ---------------------------------------------------------------------------- files
FIGURE_DPI = 110


def figure_bytes(fig, fmt: str = "png", dpi: int = FIGURE_DPI) -> bytes:
    """The figure encoded as ``png``, ``svg`` or ``pdf`` (for all-or-nothing writing)."""
    return encode_figure(fig, fmt, dpi, metadata=_metadata(fmt))


def drawable(text: str) -> str:
    """``text`` with a file name that is not UTF-8 (os.fsdecode's surrogates: "d\\udcff" for
    the bytes d, 0xff) written as that escape, as standard error shows it: matplotlib's font
    code refuses such a string (a default compare label, a title naming --doses), which had
    failed the command after its whole run, as an internal error."""
    if not any("\ud800" <= ch <= "\udfff" for ch in text):
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def encode_figure(fig, fmt: str, dpi: float, **savefig_kw) -> bytes:
    """``fig.savefig`` into bytes, laying a PNG out once.

    Saving a figure with a layout engine (the course figures are ``constrained``) draws it
    twice: a dry draw to run the layout, then the real one, which runs it again. For a PNG the
    layout runs here once, at the saving resolution, and is kept for the one draw (the same
    pixels, about 10 % less time); the figure gets its engine back afterwards.

    (Text keeps matplotlib's own hinting: drawn unhinted it was about 0.1 s faster, but the
    files were a quarter larger, and matplotlib caches text sizes without the hinting they were
    measured with, which a figure's layout should not depend on.)"""
    import io

    import matplotlib

    buf = io.BytesIO()
    engine = fig.get_layout_engine()
    if fmt != "png" or engine is None:
        # a PDF or SVG without its creation date, its SVG ids from a fixed salt and then
        # numbered in order: two runs differ in neither (only, now and then, where
        # matplotlib's layout solver places an edge at -0 instead of 0; a PNG does not show
        # that)
        if fmt in ("pdf", "svg") and "metadata" not in savefig_kw:
            savefig_kw["metadata"] = {"CreationDate" if fmt == "pdf" else "Date": None}
        with matplotlib.rc_context({"svg.hashsalt": "ketasim"}):
            fig.savefig(buf, format=fmt, dpi=dpi, **savefig_kw)
        return _numbered_ids(buf.getvalue()) if fmt == "svg" else buf.getvalue()

    old_dpi = fig.dpi
    fig.dpi = dpi
    try:
        import warnings

        with warnings.catch_warnings():
            # very long labels leave no room for the layout: the figure is still written
            # (unlaid-out), without matplotlib's warning naming ketasim's source file
            warnings.filterwarnings("ignore", message="constrained_layout not applied")
            engine.execute(fig)
    finally:
        fig.dpi = old_dpi
    with matplotlib.rc_context({"figure.autolayout": False,
                                "figure.constrained_layout.use": False}):
        fig.set_layout_engine(None)
    try:
        fig.savefig(buf, format=fmt, dpi=dpi, **savefig_kw)
    finally:
        fig.set_layout_engine(engine)
    return buf.getvalue()


def _numbered_ids(svg: bytes) -> bytes:
    """An SVG with matplotlib's hashed ids (clip paths ``p…``, markers ``m…``: a hash of
    what they hold, so a clip box one rounding off, now and then laid out by the solver,
    changed its id) renamed in order of first appearance (``p1``, ``m1`` …)."""
    import re

    names: dict = {}
    for m in re.finditer(rb'id="([a-z])([0-9a-f]{10})"', svg):
        old = m.group(1) + m.group(2)
        if old not in names:
            names[old] = m.group(1) + str(sum(1 for k in names if k[:1] == m.group(1)) + 1
                                          ).encode()
    if not names:
        return svg
    return re.sub(rb"(?<![0-9A-Za-z_])([a-z][0-9a-f]{10})(?![0-9a-f])",
                  lambda m: names.get(m.group(1), m.group(1)), svg)


def _metadata(fmt):
    # no creation date: identical inputs give identical files
    return {"png": {"Software": "ketasim"}, "svg": {"Date": None},
            "pdf": {"CreationDate": None}}.get(fmt)


def save_figure(fig, path, dpi: int = FIGURE_DPI) -> None:
    """Save a figure atomically (the format from the file's suffix)."""
    from pathlib import Path

    from .io import atomic_write

    p = Path(path)
    atomic_write(p, figure_bytes(fig, p.suffix.lstrip(".").lower() or "png", dpi), "wb")
