"""The teaching commands: ``ketasim course``, ``ketasim compare`` and ``ketasim explore``.

``course`` is the one-command main job: a slide-ready figure of a whole course, a table of the
curves and a short per-session summary. ``compare`` overlays several model/course pairs.
``explore`` opens the live explorer (browser, desktop window or Jupyter).

Each command writes all of its files or none: every file is first written to a temporary
sibling, and all are moved into place only after every one of them was written.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from .courses import MAX_MG_PER_KG  # --dose for standard-iv, mg/kg
from .errors import KetasimInputError
from .events import dose_route_warning
from .plotting import CLOSEUP_MIN_H, CLOSEUP_MIN_WHY  # a close-up's least length, and why

TABLE_STEP_H = 0.25   # course.csv: one row every 15 minutes, plus every session start and
#                       infusion end (so each infusion's peak is a row). Six months of the
#                       standard course are then about 19,000 rows (~2 MB), not 15 MB; the
#                       figure and the metrics use their own finer grids (5 min, 1 min).
FIGURE_FORMATS = ("png", "svg", "pdf")


def _formats(s: str):
    import argparse

    out = []
    for part in s.split(","):
        f = part.strip().lower().lstrip(".")
        if f not in FIGURE_FORMATS:
            raise argparse.ArgumentTypeError(f"{part!r}: expected figure formats from "
                                             + ", ".join(FIGURE_FORMATS))
        if f not in out:
            out.append(f)
    return tuple(out)


CLOSEUP_MAX_H = 24.0 * 28     # a close-up of four weeks at most (a one-minute grid)
# and of a minute at least, as run_course takes it: a shorter one (--closeup 1e-300) had held
# one time of that grid, and the figure said "the output grid is too coarse (step 0.0833 h;
# a step of 0.1 h or less shows the first session)" over a "6e-299-min panel"
# (CLOSEUP_MIN_H and its words, CLOSEUP_MIN_WHY, are those of ketasim.plotting.run_course)


def _closeup(s):
    """--closeup: hours, from a minute to four weeks."""
    import argparse

    from .cli import _finite

    v = _finite("hours", 0, True, CLOSEUP_MAX_H)(s)
    if v < CLOSEUP_MIN_H:
        raise argparse.ArgumentTypeError(f"{s} is out of range: expected hours >= "
                                         f"{CLOSEUP_MIN_H:.6g} ({CLOSEUP_MIN_WHY})")
    return v


def _out_dir(s: str) -> Path:
    """``--out-dir``: a folder name; an empty one (a script's unset variable, say) is refused
    rather than taken for the current folder."""
    import argparse

    if not s.strip():
        raise argparse.ArgumentTypeError("empty; expected a folder name ('.' for the current "
                                         "folder)")
    return Path(s)


def _course_options(p, model_default="ketamine-iv", doses_default="standard-iv"):
    from .cli import _finite

    p.add_argument("--model", default=model_default,
                   help=f"preset name or TOML model file (default: {model_default})")
    p.add_argument("--doses", default=doses_default,
                   help="a course name (standard-iv, spravato), a course TOML file or a "
                        f"dose-table CSV (default: {doses_default})")
    p.add_argument("--dose", type=_finite("dose", 0, True), default=None,
                   help="dose per session: mg/kg for standard-iv, mg (56 or 84) for spravato "
                        "(default: the course's own, 0.5 mg/kg or 56 mg)")
    p.add_argument("--weight", type=_finite("kg", 0, True), default=None,
                   help="body weight, kg (default: the dose table's weight_kg column, else 70)")
    p.add_argument("--months", type=_finite("months", 0, True), default=None,
                   help="course length in months of 30.44 days, when --doses names a course "
                        "or a course TOML file (default: 6, or the file's; refused with a dose "
                        "table)")
    _calibration_option(p)


def _calibration_option(p):
    p.add_argument("--occupancy-calibration", default=None, metavar="NAME",
                   help="Ki calibration reported as occupancy, where the preset has several "
                        "(default: the preset's own)")


def _sim_kw(args) -> dict:
    cal = getattr(args, "occupancy_calibration", None)
    return {} if cal is None else {"occupancy_calibration": cal}


def add_parsers(sub) -> None:
    """Register ``course``, ``compare`` and ``explore`` on the ``ketasim`` subparsers."""
    from .cli import _finite, _whole

    c = sub.add_parser("course", help="figure, table and summary of a whole course "
                       "(the main job)",
                       description="Simulate a treatment course and write a slide-ready "
                       "figure (course.png), the curves (course.csv, one row per 15 minutes "
                       "plus every session start and infusion end) and print a per-session "
                       "summary. With no options: the standard IV course of racemic ketamine "
                       "(0.5 mg/kg over 40 min), 70 kg, six months.")
    _course_options(c)
    c.add_argument("--out-dir", type=_out_dir, default=Path("ketasim-output"),
                   help="folder for course.png and course.csv (default: ketasim-output)")
    c.add_argument("--format", type=_formats, default=("png",), metavar="FMT[,FMT...]",
                   help="figure formats: png, svg, pdf (default: png)")
    c.add_argument("--closeup", type=_closeup,
                   default=8.0, help="length of the first-session close-up, h (default: 8; "
                   f"from a minute to {CLOSEUP_MAX_H:g}: it is drawn on a one-minute grid)")

    m = sub.add_parser("compare", help="overlay several model/course pairs",
                       description="Simulate each SPEC and overlay them: the first session "
                       "and the whole course, plus a side-by-side metrics table "
                       "(compare.png, compare.csv). SPEC is MODEL@DOSES[:LABEL], e.g. "
                       "ketamine-iv@standard-iv esketamine-nasal@spravato:Spravato. A label "
                       "heads a column of compare.csv: one starting with =, +, - or @ (read "
                       "as a formula by spreadsheets) is refused; another text cell starting "
                       "so (a model file's drug name) gets a leading ' in compare.csv.")
    m.add_argument("specs", nargs="+", metavar="SPEC",
                   help="MODEL@DOSES[:LABEL], up to five: a preset or model file, a course "
                        "name, dose-table CSV or course TOML file, and an optional legend "
                        "label")
    m.add_argument("--weight", type=_finite("kg", 0, True), default=None,
                   help="body weight, kg (default: each dose table's weight_kg column, else "
                   "70)")
    m.add_argument("--months", type=_finite("months", 0, True), default=None,
                   help="course length in months for the SPECs that name a course or a "
                        "course file (default: 6, or the file's; a dose table keeps its own "
                        "times)")
    m.add_argument("--out-dir", type=_out_dir, default=Path("ketasim-output"),
                   help="folder for compare.png and compare.csv (default: ketasim-output)")
    m.add_argument("--format", type=_formats, default=("png",), metavar="FMT[,FMT...]",
                   help="figure formats: png, svg, pdf (default: png)")
    m.add_argument("--closeup", type=_closeup,
                   default=8.0, help="length of the first-session close-up, h (default: 8; "
                   f"from a minute to {CLOSEUP_MAX_H:g}: it is drawn on a one-minute grid)")
    _calibration_option(m)

    e = sub.add_parser("explore", help="live explorer: sliders for dose, weight, schedule",
                       description="A live explorer for teaching: change dose, weight, "
                       "maintenance interval, preset and missed sessions and watch the "
                       "course re-simulate. Opens a desktop window where one is available, "
                       "else serves the page to a browser; --port always serves to a browser.")
    e.add_argument("--port", type=_whole("a port", 0, 65535), default=None,
                   help="serve in the browser on this port, 0 for any free port (the URL "
                        "printed names it) (default: a desktop window if available, else "
                        "port 8765, or a free port when 8765 is taken)")
    e.add_argument("--no-browser", action="store_true",
                   help="with the browser: print the URL but do not open a browser "
                        "(default: open one)")
    e.add_argument("--model", default="ketamine-iv",
                   help="preset to start with (default: ketamine-iv)")


# ---------------------------------------------------------------------------- helpers


def _course_params(doses: str, dose, months) -> dict:
    kw = {}
    if months is not None:
        kw["months"] = months
    if dose is not None:
        if doses == "standard-iv":
            if dose > MAX_MG_PER_KG:
                raise KetasimInputError(
                    f"--dose: got {dose:g}, expected a dose in mg/kg for standard-iv (0.5 is "
                    f"the standard; at most {MAX_MG_PER_KG:g}, beyond anaesthetic doses): "
                    "a dose in mg is given with a dose table")
            kw["dose_mg_per_kg"] = dose
        elif doses == "spravato":
            if dose not in (56, 84):
                raise KetasimInputError(f"--dose: got {dose:g}, expected 56 or 84 (mg per "
                                        "session of the spravato course)")
            kw["dose_mg"] = int(dose)
        else:
            from .courses import is_course_file

            # (a course file had been called a dose table)
            what = ("a course file (its amount_mg sets the dose)" if is_course_file(doses)
                    else "a dose table")
            raise KetasimInputError(f"--dose: needs a course name (standard-iv, spravato); "
                                    f"--doses {doses!r} is {what}")
    return kw


def check_course_size(model, doses, months, doses_s: str) -> None:
    """Refuse, before anything is computed, a course whose figure grid (every 5 minutes to 28
    days after the last session, as :func:`ketasim.plotting.run_course` draws it) or whose
    outputs on it cannot be held, naming the option that set its length (``--months`` when
    given, else ``--doses``)."""
    from .engine import _available_bytes, prepare
    from .plotting import COURSE_STEP_H, check_course_grid, course_end_h

    until = course_end_h(doses)
    field = (f"--months: got {months:g}" if months is not None
             else f"--doses: {doses_s!r}")
    try:
        n = check_course_grid(COURSE_STEP_H, until)      # the refusal run_course would make
    except KetasimInputError as exc:
        raise KetasimInputError(f"{field}: {exc}") from None
    try:
        R = len(prepare(model, doses).names)
    except KetasimInputError:
        return                  # the course run says what is wrong with it
    # the outputs, their table text and the figure's copies: about 3 x the outputs at the peak
    # (measured: 600 months of the standard course, 5.3 million times x 24 outputs, 2.9 GiB)
    need = n * R * 8 * 3
    avail = _available_bytes()
    if need > 0.5 * avail:
        raise KetasimInputError(
            f"{field}: the course figure's 5-minute grid to {until / 24:,.0f} days would hold "
            f"{n:,.0f} times x {R} outputs (about {need / 2**30:.1f} GiB while the figure and "
            f"table are made), more than half the memory available (about "
            f"{avail / 2**30:.1f} GiB); expected a shorter course (or `ketasim simulate` with "
            "a coarser --step)")


def resolve(doses: str, weight, what: str = "a course figure", **kw):
    """(doses, body weight) from a course name or CSV and ``--weight`` (None: the table's
    weight_kg column, else 70 kg), with --option names in the errors. A table with a subject
    column must hold one subject (see ``Doses.one_table``)."""
    from .cli import note_skipped, table_weight, weight_or_default
    from .courses import resolve_doses

    try:
        d = resolve_doses(doses, weight_kg=weight_or_default(weight), **kw)
        note_skipped(d)
        d = d.one_table(what)
        return d, table_weight(weight, d)
    except KetasimInputError as exc:
        lead = "compare: " if what == "a comparison" else "--"   # compare has no --doses
        raise _doses_named(exc, lead) from None


def _doses_named(exc: KetasimInputError, lead: str) -> KetasimInputError:
    """``exc`` with a message about the doses (``doses: ...``) led by where the command was
    given them (``--`` for ``--doses``, ``compare: SPEC: `` for a comparison's SPEC); any
    other message as it is."""
    msg = str(exc)
    return KetasimInputError(lead + msg if msg.startswith("doses:") else msg)


def route_warning(model, doses) -> str | None:
    """A warning when a nasal model is given an IV course; an error (KetasimInputError) when
    an IV model is given a nasal course it has no route for (instead of the dose table's
    unknown-route message, whose nearest names are the model's compartments)."""
    from .dosing import expand

    routes = set(expand(doses).route)
    mroutes = set(model.routes)
    if routes == {"iv"} and "intranasal" in mroutes:     # (only IV doses: a mix is meant)
        return (f"model {model.name!r} is a nasal-spray model but the doses are IV infusions "
                "(route iv): simulating the model's IV route; for the nasal course use "
                "--doses spravato")
    if "intranasal" in routes and "intranasal" not in mroutes:
        from .events import no_nasal_route

        msg = no_nasal_route(model)
        if "intranasal" not in model.compartments:
            raise KetasimInputError(msg)
        return msg
    # a dose into a route's compartment by its name, or a spray session entered one row per
    # device: the same warning as the Python API gives (events.dose_route_warning)
    return dose_route_warning(model, doses)


def weight_unused(model, what: str | None) -> str | None:
    """A warning when a weight is given (``what``: how, e.g. "--weight"; None: it is not) to
    a model on which it has no effect (fixed doses and no weight covariate: esketamine-nasal):
    the numbers are those of any weight."""
    from .plotting import uses_weight

    if what is not None and not uses_weight(model):
        return (f"model {model.name!r} has no weight effect (no weight covariate, doses in "
                f"mg): {what} changes nothing in its results")
    return None


def _weight_given(args) -> str | None:
    """"--weight" when the command was given one, else None (see :func:`weight_unused`)."""
    return "--weight" if getattr(args, "weight", None) is not None else None


def _warn(msg):
    if msg:
        print(f"ketasim: warning: {msg}", file=sys.stderr)


def write_all(outputs, inputs=()) -> None:
    """Write every (path, bytes-or-callable) or none (:func:`ketasim.io.write_outputs`:
    temporaries first, then all renamed); no output may overwrite one of ``inputs``
    (``(option, path)`` pairs)."""
    from .io import write_outputs

    write_outputs(outputs, inputs)


def table_result(run, step_h: float = TABLE_STEP_H):
    """The course Result cut to the table: named analytes and PD outputs, one row per
    ``step_h`` plus every session start and infusion end."""
    import dataclasses

    from .plotting import analyte_labels, event_times
    from .result import PD_OUTPUTS

    res = run.course
    t = res.times
    on_grid = np.abs(t / step_h - np.round(t / step_h)) < 1e-6
    rows = on_grid | np.isin(t, event_times(res.doses))
    keep = [n for n in analyte_labels(res.model) if n in res.names]
    keep += [n for n in res.names if n in PD_OUTPUTS or n.startswith("occupancy_")
             or n == "consolidation"]
    idx = [res.names.index(n) for n in keep]
    return dataclasses.replace(res, times=t[rows], names=tuple(keep),
                               data=np.ascontiguousarray(res.data[:, idx][:, :, rows]))


def _write_table(res):
    from .io import write_result_table

    return lambda fh: write_result_table(res, fh)


def _table_text(res) -> str:
    """A course table's CSV text (built while a helper draws the figure; a course table is
    a few MB at most, see :func:`check_course_size`)."""
    import io

    from .io import write_result_table

    buf = io.StringIO()
    write_result_table(res, buf)
    return buf.getvalue()


# ---------------------------------------------------------------------------- summary
def fmt(v, kind="num") -> str:
    """Readable numbers: 3 significant digits (1e9 and above in size in exponent form,
    "1.23e+10", not as 200 digits); a value below 0.005 in size as "<0.005" (so a small
    positive value is never shown as 0, and no exponent form: a trough of 1e-26 ng/mL reads
    "<0.005", as the troughs above it), negative rounding noise (above -1e-12) as 0, NaN as an
    en dash."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    v = float(v)
    if kind == "pct":        # (a small occupancy is "<0.5", not a 0 that drops its column)
        return "<0.5" if 0 < v * 100 < 0.5 else f"{v * 100:.0f}"
    if v == 0 or -1e-12 < v < 0:
        return "0"
    if abs(v) < 0.005:
        return "<0.005" if v > 0 else ">-0.005"
    if abs(v) >= 1e9:        # (a course of 1e200 mg had printed 200-digit peaks)
        return f"{v:.3g}"
    if kind == "int":
        return f"{v:.0f}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{float(f'{v:.3g}'):g}"


#: a time in hours below this is exact to within half a minute (floats there are at most 2**-7 h
#: apart), so a table can print it to the minute; beyond (eight billion years) it cannot
MINUTE_EXACT_H = 2.0 ** 46


def _day_minute(t_h) -> tuple[int, int] | None:
    """(day, minute of the day) of a time in hours rounded to the minute, or None when the
    time is not finite or too large to hold a minute (:data:`MINUTE_EXACT_H`)."""
    t = float(t_h)
    if not abs(t) < MINUTE_EXACT_H:
        return None
    return divmod(round(t * 60.0), 24 * 60)


def _far_day(t_h: float) -> str:
    """The day of a finite time too large to hold a minute: whole, or in exponent form from
    1e15 days on, with the digits that tell it from its neighbours ("1.0000000000000006e+16",
    never 300 digits)."""
    day = float(t_h) / 24.0
    if abs(day) < 1e15:
        return str(math.floor(day))
    return np.format_float_scientific(day, unique=True, trim="-")


def session_day(t_h) -> str:
    """A session's day for a table: the day, "28", when the session starts at midnight, else
    the day and its clock time to the minute, "28 01:00" (sessions of a course are an hour
    apart at least, so two never read the same; 3 significant digits had printed sessions an
    hour apart on day 28 both as "28"). A time too large to hold a minute (beyond
    :data:`MINUTE_EXACT_H`) shows its day alone."""
    t = float(t_h)
    if not math.isfinite(t):
        return "–"
    dm = _day_minute(t)
    if dm is None:
        return _far_day(t)
    return _minute_day(*dm)


def _minute_day(day: int, minute: int) -> str:
    """"28" at midnight, else "28 01:00"."""
    return f"{day}" if minute == 0 else f"{day} {minute // 60:02d}:{minute % 60:02d}"


def _table(head, rows, left=()) -> str:
    """Columns padded to their widths: numbers right-aligned, columns in ``left`` (indices)
    left-aligned."""
    cells = [head] + rows
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i in left else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))).rstrip()
                     for r in cells)


def session_table(run):
    """(head, rows, footnotes) of the per-session summary, strings only; columns that are
    absent or zero throughout are left out (the peaks' times only with the peaks)."""
    cm = run.metrics
    starts = cm.session_start_h
    cols = [("session", [str(i + 1) for i in range(starts.size)]),
            ("day", [session_day(s) for s in starts]),
            ("peak ng/mL", [fmt(v) for v in cm.cmax_ng_ml]),
            ("at min", [fmt(v * 60, "int") for v in cm.tmax_h]),
            ("AUC ng·h/mL", [fmt(v) for v in cm.auc_ng_h_ml]),
            ("trough ng/mL", [fmt(v) for v in cm.trough_ng_ml])]
    if np.isfinite(cm.peak_occupancy).any():
        cols.append(("occupancy %", [fmt(v, "pct") for v in cm.peak_occupancy]))
    if np.isfinite(cm.peak_glutamate).any():
        cols.append(("glutamate ×", [fmt(v) for v in cm.peak_glutamate]))
    # (a peak at 0 min, every session's with IV boluses, is a time: it had been left out as a
    # column of zeros, so the table no longer said when the peaks were)
    kept = ("session", "day", "at min")
    cols = [(h, c) for h, c in cols if not all(x in ("0", "–") for x in c) or h in kept]
    if "peak ng/mL" not in [h for h, _ in cols]:
        cols = [(h, c) for h, c in cols if h != "at min"]
    head = [h for h, _ in cols]
    rows = [list(r) for r in zip(*[c for _, c in cols])]
    notes = []
    if any("–" in r for r in rows):
        notes.append("– the last session has no next session, so no trough.")
    return head, rows, notes


def course_regimen(doses_spec, doses, months) -> str | None:
    """The words for a named course (:func:`~ketasim.plotting.course_description`) and its
    length, "...; 1 month", "...; 6 months" (``months``: --months, None for the default six),
    as the course and comparison figures say it; None for a dose table or course file (the
    figure then counts their sessions and days). A comparison's caption had given no length,
    so '--months 3' read as the six-month default."""
    from .plotting import course_description

    regimen = course_description(doses_spec, doses)
    if regimen is None:
        return None
    months = 6.0 if months is None else float(months)
    return f"{regimen}; {months:g} month{'' if months == 1 else 's'}"


def _course_name(doses_spec):
    """``doses_spec`` (a --doses value or a compare spec's doses) when it names a course (its
    maintenance is then the course's own), else None (a dose table or course file)."""
    from .courses import is_course_name

    return doses_spec if is_course_name(doses_spec) else None


def course_summary(run) -> str:
    from .plotting import analyte_labels, drug_name, main_analyte

    cm = run.metrics
    model = run.model
    name = analyte_labels(model)[main_analyte(model)]
    head, rows, notes = session_table(run)
    src = str(getattr(model, "source", "") or "")
    origin = (f"preset {model.name}" if src.startswith("preset ") else
              f"model {model.name} ({src})" if src else f"model {model.name}")
    cal = (run.course.inputs or {}).get("occupancy_calibration")
    # (the concentrations are plasma's, as the figure's row says; beside "peak at the effect
    # site" for occupancy the header had not said where they were)
    # (a model file whose analyte is named "plasma" had been headed "plasma in plasma")
    what = [name if name.strip().lower() == "plasma" else f"{name} in plasma"]
    if "occupancy %" in head:
        what.append("occupancy model-predicted, peak at the effect site"
                    + (f", calibration {cal}" if cal else ""))
    if "glutamate ×" in head:
        what.append("glutamate SCHEMATIC, × baseline")
    lines = [f"{drug_name(model)}, {run.regimen}; {fmt(run.weight_kg)} kg; {origin}",
             f"Per session ({'; '.join(what)}):", _table(head, rows)]
    lines += notes
    res = run.course
    mstart = cm.maintenance_start_h
    for nm, words in (("plasticity", "Schematic plasticity index"),
                      ("consolidation", "Schematic consolidated (slow) plasticity")):
        if nm not in res.names:
            continue
        y = res.output(nm)
        if y.ndim != 1:
            continue
        # the end is the washout after the last session: its day said, so a value there
        # below the lowest of maintenance reads as what it is
        line = (f"{words}: highest {fmt(y.max())}, at the end (day "
                f"{fmt(float(res.times[-1]) / 24)}) {fmt(y[-1])}")
        if np.isfinite(mstart):
            # from maintenance's start to its last session (the washout after the last
            # session is not maintenance)
            st = np.asarray(cm.session_start_h, float)
            last = float(st[np.isfinite(st)].max())
            sel = (res.times >= mstart) & (res.times <= last)
            line += (f"; lowest during maintenance (day {fmt(mstart / 24)} to "
                     f"{fmt(last / 24)}) {fmt(y[sel].min())}")
        lines.append(line + ".")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- schedule
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _mg(v: float) -> str:
    """A dose in mg for the schedule: 6 significant digits, compact ("33.25", "1,234.5",
    "1e+308"; a course file's amount_mg of 1e308 had printed 300 digits)."""
    return f"{v:,.6g}"


def _total_mg(amounts) -> str:
    """The schedule's "N mg in all": the exact sum, or words when it is too large for a
    number (9 sessions of 1e308 mg had been "inf mg in all", after NumPy's overflow
    warning)."""
    try:
        return f"{_mg(math.fsum(float(a) for a in amounts))} mg in all"
    except OverflowError:
        return f"a total too large to add up (above {_mg(sys.float_info.max)} mg)"


#: rows of the schedule's table formatted at a time: a course of millions of sessions is
#: printed in parts, its memory that of one part (all rows at once had taken 7 GB for 8.7
#: million sessions)
SCHEDULE_CHUNK_ROWS = 50_000


def _schedule_cells(d, durations, lo: int, hi: int) -> list[list[str]]:
    """The schedule table's cells of rows ``lo`` to ``hi - 1``, as rows of strings."""
    rows = []
    texts = {}          # (a course repeats a few doses, routes and lengths: each made once)
    for i in range(lo, hi):
        t, a, r, dur = float(d.time_h[i]), d.amount_mg[i], d.route[i], durations[i]
        dm = _day_minute(t)         # (as session_day rounds it)
        if dm is None:              # (too far to hold a minute: no weekday)
            week = math.floor(t / (7 * 24.0)) + 1
            day, week_s, weekday = (session_day(t), str(week) if abs(week) < 10 ** 15
                                    else f"{week:.6g}", "–")
        else:
            day = _minute_day(*dm)
            week_s, weekday = str(dm[0] // 7 + 1), _WEEKDAYS[dm[0] % 7]
        key = (a, r, dur)
        rest = texts.get(key)
        if rest is None:
            rest = texts[key] = [_mg(a), r, fmt(dur * 60) if dur > 0 else "–"]
        rows.append([str(i + 1), day, week_s, weekday, *rest])
    return rows


def print_schedule(doses) -> None:
    """A course as a readable table: session, day, week, weekday (day 0 = a Monday), dose.

    Printed :data:`SCHEDULE_CHUNK_ROWS` rows at a time (the column widths from a first pass
    over all of them), so a course of millions of sessions needs the memory of one part."""
    from .dosing import expand
    from .plotting import row_durations

    out = sys.stdout
    if out is None:          # (closed: nothing to print to)
        return
    d = expand(doses)
    durations = row_durations(d)
    head = ["session", "day", "week", "weekday", "dose mg", "route", "infusion min"]
    n = len(d.time_h)
    starts = range(0, n, SCHEDULE_CHUNK_ROWS)
    widths = [len(h) for h in head]
    part = None
    for lo in starts:
        part = _schedule_cells(d, durations, lo, min(n, lo + SCHEDULE_CHUNK_ROWS))
        widths = [max(w, *map(len, col)) for w, col in zip(widths, zip(*part))]

    def lines(rows):
        return "".join("  ".join(c.rjust(w) for c, w in zip(r, widths)).rstrip() + "\n"
                       for r in rows)

    out.write(lines([head]))
    for lo in starts:
        # (one part: the rows of the first pass, not formatted twice)
        out.write(lines(part if len(starts) == 1 else
                        _schedule_cells(d, durations, lo, min(n, lo + SCHEDULE_CHUNK_ROWS))))
    print(f"{n} session{'s' if n != 1 else ''}, {_total_mg(d.amount_mg)}; "
          "day 0 shown as a Monday. Write it as a dose table with --out FILE.csv (or --out - "
          "for CSV here).")


# ---------------------------------------------------------------------------- presets
def print_preset(name: str, verbose: bool = False) -> int:
    """``ketasim presets NAME``: the model's parameters (name, value, unit, source) and
    routes."""
    from .modelfile import load_model

    try:
        model = load_model(name)
    except KetasimInputError as exc:
        # (load_model names its argument, "model: ..."; presets has no --model: its error
        # names the NAME typed)
        msg = str(exc)
        if msg.startswith("model: "):
            raise KetasimInputError("presets NAME: " + msg.removeprefix("model: ")) from None
        raise
    from .modelfile import model_text, parameter_notes

    notes = parameter_notes(model_text(name))
    m = model.meta
    print(f"{model.name}: {m.get('title', '')}".rstrip(": "))
    if m.get("citation"):
        print(f"source: {m['citation']}")
    if m.get("sampling"):
        print(f"sampling: {m['sampling']}")
    if verbose and m.get("description"):
        print(" ".join(str(m["description"]).split()))
    from .plotting import uses_weight

    # (a model without a weight effect, esketamine-nasal, had its values given "at 70 kg")
    at = (f"typical values at {fmt(model.reference_weight_kg)} kg" if uses_weight(model)
          else "typical values; no weight effect")
    for section, heading in (("parameters", f"Parameters ({at})"),
                             ("schematic", "SCHEMATIC response parameters (illustrative, "
                              "not fitted to data)")):
        rows = []
        for k, v in model.parameters.items():
            unit, src, sect = notes.get(k, ("", "", "parameters"))
            if sect != section and not (section == "parameters" and k not in notes):
                continue
            if section == "schematic" and k not in model.schematic:
                continue
            if section == "parameters" and k in model.schematic:
                continue
            scale = model.allometric.get(k)
            extra = f" [× (WT/{fmt(model.reference_weight_kg)})^{scale:g}]" if scale else ""
            if k in model.per_kg:
                extra += " [per kg: × WT]"
            rows.append([k, f"{v:.6g}", unit or "–", src + extra])
        if rows:
            print(f"\n{heading}:")
            print(_table(["name", "value", "unit", "source"], rows, left=(0, 2, 3)))
    print("\nRoutes:")
    for r, parts in model.routes.items():
        desc = "; ".join(f"to {p.to}" + (f", f = {p.f.text}" if p.f.text not in ("1", "1.0")
                                         else "")
                         + (" (relative bioavailability)" if p.relative_f else "")
                         + (f", lag {p.lag_h.text} h" if p.lag_h.text not in ("0", "0.0")
                            else "")
                         + (f", over {p.duration_h.text} h" if p.duration_h is not None
                            else "") for p in parts)
        print(f"  {r}: {desc}")
    return 0


# ---------------------------------------------------------------------------- course
def _figure_outputs(fig, base: Path, formats):
    from .plotting import figure_bytes

    return [(base.with_suffix(f".{f}"), figure_bytes(fig, f)) for f in formats]


def _course_figures(run, base: Path, formats):
    """``ketasim course``'s figure files as (path, bytes) (run by :mod:`ketasim._offload`)."""
    from .plotting import plot_course

    return _figure_outputs(plot_course(run), base, formats)


def _compare_figures(runs, labels, base: Path, formats):
    """``ketasim compare``'s figure files as (path, bytes) (run by :mod:`ketasim._offload`)."""
    from .plotting import plot_compare

    # a label is text: a "$" in it is drawn as itself, not as the start of a formula
    labels = [lab.replace("$", r"\$") for lab in labels]
    return _figure_outputs(plot_compare(runs, labels=labels), base, formats)


def _check_out_dir(out) -> None:
    """--out-dir must be a folder or a path where one can be made (checked before any work)."""
    from .io import _broken_link_words

    p = Path(out)
    for q in (p, *p.parents):
        if q.is_symlink() and not q.exists():
            raise KetasimInputError(f"--out-dir: {out}: {_broken_link_words(q)}")
        if q.exists():
            if not q.is_dir():
                raise KetasimInputError(f"--out-dir: {out}: {q} is a file, expected a folder "
                                        "(made if missing)")
            break


def _check_planned_outputs(out_dir: Path, stem: str, formats, inputs) -> None:
    """The files ``course`` or ``compare`` will write (``stem`` with each figure format, and
    ``stem``.csv), checked before any work as every other command checks its outputs: one
    that is an input, write-protected, a folder or a device had been refused only after the
    whole course was simulated and drawn."""
    from .io import check_outputs

    paths = [out_dir / f"{stem}.{f}" for f in formats] + [out_dir / f"{stem}.csv"]
    for p in paths:
        if p.is_dir():
            raise KetasimInputError(f"--out-dir: {str(p)!r} is a folder, expected a file name "
                                    "there (or no such name)")
    check_outputs([("--out-dir", p) for p in paths], inputs)


def cmd_course(args) -> int:
    from . import _offload, _warm
    from .cli import _input_files, _summary_then_files, kernels_needed
    from .modelfile import load_model
    from .plotting import run_course

    _check_out_dir(args.out_dir)
    _check_planned_outputs(args.out_dir, "course", args.format, _input_files(args))
    model = load_model(args.model)
    kw = _course_params(args.doses, args.dose, args.months)
    doses, weight = resolve(args.doses, args.weight, **kw)
    _warn(weight_unused(model, _weight_given(args)))
    _warn(route_warning(model, doses))
    check_course_size(model, doses, args.months, args.doses)
    regimen = course_regimen(args.doses, doses, args.months)
    # the figure is drawn by a helper process on the second core, when there is one, while
    # this process simulates and then builds the table (ketasim._offload)
    helper = _offload.start()
    try:
        _warm.ahead(*kernels_needed(args))    # (a first run: see ketasim._warm)
        run = run_course(model, doses, weight, regimen=regimen, course=_course_name(args.doses),
                         closeup_h=args.closeup, **_sim_kw(args))
        out = args.out_dir
        if run.course.data.nbytes + run.closeup.data.nbytes > _offload.MAX_PAYLOAD_BYTES:
            helper.close()      # a very long course: not copied to a helper, drawn here
        helper.submit(_course_figures, run, out / "course", args.format)
        tr = table_result(run)
        # while a helper draws, the table's text is made here; else it is written as made
        table = (out / "course.csv", _table_text(tr) if helper.pid else _write_table(tr))
        summary = course_summary(run)
        outputs = helper.result() + [table]
    finally:
        helper.close()
    _summary_then_files(summary, lambda: write_all(outputs, [("--model", args.model),
                                                             ("--doses", args.doses)]))
    print("wrote " + ", ".join(str(p) for p, _ in outputs), file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- compare
def parse_spec(spec: str):
    """``MODEL@DOSES[:LABEL]`` -> (model, doses, label or None)."""
    if "@" not in spec:
        raise KetasimInputError(f"compare: {spec!r}: expected MODEL@DOSES[:LABEL], e.g. "
                                "ketamine-iv@standard-iv")
    from pathlib import Path

    from .courses import is_course_name
    from .modelfile import list_presets

    # a path may hold an @ or a colon itself (a cloud-drive folder "me@mail.com", a file
    # "d:1.csv"): the model is cut at the first @ that ends a preset name or an existing
    # file, and a label is split off only when the whole rest is no course or file
    def is_file(s):
        try:
            return Path(s).is_file()
        except (OSError, ValueError):      # a name too long for the system, a NUL
            return False

    presets = set(list_presets())
    ats = [i for i, ch in enumerate(spec) if ch == "@"]
    cut = next((i for i in ats if spec[:i] in presets or is_file(spec[:i])), ats[0])
    model, rest = spec[:cut], spec[cut + 1:]
    label = None
    if ":" in rest and not (is_course_name(rest) or is_file(rest)):
        # the label starts after the first colon that ends a course name or an existing
        # file, so a label may hold a colon itself ("Dose: high" had been cut at its own
        # colon and the doses read as 'standard-iv:Dose'); else after the last colon
        cols = [i for i, ch in enumerate(rest) if ch == ":"]
        at = next((i for i in cols if is_course_name(rest[:i]) or is_file(rest[:i])),
                  cols[-1])
        d, lab = rest[:at], rest[at + 1:]
        # a Windows drive ("C:\\...") is part of the path, not a label
        if d and not (len(d) == 1 and lab[:1] in ("\\", "/")):
            rest, label = d, lab
    if not model or not rest:
        raise KetasimInputError(f"compare: {spec!r}: expected MODEL@DOSES[:LABEL] with both "
                                "a model and doses")
    if label is not None and not label.strip():
        raise KetasimInputError(f"compare: {spec!r}: the label after ':' is blank; expected a "
                                "name for the legend and the table's column")
    if label is not None and formula_like(label):
        raise KetasimInputError(f"compare: label {label!r} starts with {label[0]!r}, which a "
                                "spreadsheet reads as the start of a formula where the label "
                                "heads its column of compare.csv; expected a label starting "
                                "with another character (a letter or a digit)")
    if label is not None and len(label) > MAX_LABEL:
        raise KetasimInputError(f"compare: label {label[:20]!r}...: {len(label)} characters; "
                                f"expected at most {MAX_LABEL} (it is drawn in the legends and "
                                "the title)")
    return model, rest, label or None


MAX_LABEL = 60          # characters of a compare label (legends and the title hold it)
#: a CSV cell starting with one of these is read as a formula by spreadsheets (Excel,
#: LibreOffice, Google Sheets): a label, which heads a column of compare.csv, is refused; a
#: text cell of user text (a model file's drug or model name) gets a leading ' there
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def formula_like(text) -> bool:
    """Whether a spreadsheet would read ``text`` in a CSV cell as a formula."""
    return isinstance(text, str) and text.startswith(FORMULA_START)


def csv_text_cell(text: str) -> str:
    """A text cell of compare.csv: as it is, or after a ' when a spreadsheet would read it as
    a formula (the ' shows the cell is text; numbers are never text cells)."""
    return "'" + text if formula_like(text) else text
MAX_SPECS = 5           # runs of one comparison (a colour each; more overflow the legends)


COMPARE_ROWS = (
    ("drug", "", None),
    # (a model without plasma: its first compartment with a volume, perhaps a peripheral
    # one, had been set beside another run's plasma under the same "peak" and "AUC" rows)
    ("concentrations of", "", "analyte"),
    ("route and dose per session", "", None),
    ("body weight", "kg", "kg"),
    ("sessions", "", None),
    ("first session: peak", "ng/mL", "cmax1"),
    ("first session: time of peak", "min", "tmax1"),
    ("first session: AUC", "ng·h/mL", "auc1"),
    ("first session: AUC window (to the next session, or the end)", "h", "auc1_h"),
    ("highest peak over the course", "ng/mL", "cmax"),
    ("total AUC over the course", "ng·h/mL", "auc"),
    ("total drug given", "mg", "mg"),
    ("peak occupancy (model-predicted)", "%", "occ"),
    ("peak glutamate (SCHEMATIC)", "× baseline", "glu"),
    ("plasticity index at the end (SCHEMATIC)", "0-1", "plend"),
    ("lowest plasticity in maintenance (SCHEMATIC)", "0-1", "plmin"),
)


def compare_values(run) -> dict:
    """The compare table's values of one run (numbers, or strings for words)."""
    from .dosing import expand
    from .plotting import describe_doses, drug_name, main_analyte

    cm = run.metrics
    d = expand(run.doses)
    occ = np.asarray(cm.peak_occupancy, float)
    glu = np.asarray(cm.peak_glutamate, float)
    return {"drug": f"{drug_name(run.model)} ({run.model.name})",
            "analyte": main_analyte(run.model),
            "route and dose per session": describe_doses(run.doses, run.weight_kg,
                                                         run.model),
            # (each run's own: a dose table's weight_kg column, else --weight, else 70; the
            # table had left it to be worked out from "0.5 mg/kg (35 mg)")
            "kg": float(run.weight_kg),
            "sessions": (f"{cm.session_start_h.size} over "
                         f"{fmt((cm.session_start_h[-1] - cm.session_start_h[0]) / 24)} days"
                         if cm.session_start_h.size > 1 else "one"),
            "cmax1": cm.cmax_ng_ml[0], "tmax1": cm.tmax_h[0] * 60, "auc1": cm.auc_ng_h_ml[0],
            # (runs with different intervals have first-session AUCs over different windows)
            "auc1_h": float((cm.session_start_h[1] if cm.session_start_h.size > 1
                             else run.course.times[-1]) - cm.session_start_h[0]),
            "cmax": float(np.nanmax(cm.cmax_ng_ml)), "auc": float(np.nansum(cm.auc_ng_h_ml)),
            "mg": float(d.amount_mg.sum()),
            "occ": float(np.nanmax(occ)) * 100 if np.isfinite(occ).any() else float("nan"),
            "glu": float(np.nanmax(glu)) if np.isfinite(glu).any() else float("nan"),
            "plend": float(cm.plasticity_end),
            "plmin": float(cm.plasticity_min_maintenance)}


def compare_table(runs, labels, csv: bool = False):
    """Rows (metric, unit, value per run) as strings, without rows that are empty for all.

    ``csv``: plain numbers (6 significant digits, empty for missing) instead of rounded,
    readable ones."""
    vals = [compare_values(r) for r in runs]
    rows = []
    for name, unit, key in COMPARE_ROWS:
        k = key or name
        if all(not isinstance(v[k], str) and not np.isfinite(v[k]) for v in vals):
            continue
        if k == "analyte" and all(v[k] == "plasma" for v in vals):
            continue            # (the presets' and most models': said by the rows' names)
        if csv:
            cells = [csv_text_cell(v[k]) if isinstance(v[k], str) else
                     (f"{v[k]:.6g}" if np.isfinite(v[k]) else "") for v in vals]
        else:
            cells = [v[k] if isinstance(v[k], str) else fmt(v[k]) for v in vals]
        rows.append([name, unit] + cells)
    return ["metric", "unit"] + list(labels), rows


def _csv_text(head, rows):
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    w.writerows(rows)
    return buf.getvalue().encode("utf-8", "backslashreplace")    # (see io._write)


def cmd_compare(args) -> int:
    from . import _offload, _warm
    from .cli import _summary_then_files, kernels_needed
    from .modelfile import load_model
    from .plotting import run_course

    _check_out_dir(args.out_dir)
    if len(args.specs) > MAX_SPECS:
        raise KetasimInputError(f"compare: got {len(args.specs)} SPECs, expected at most "
                                f"{MAX_SPECS} (each has its own colour and legend entries in "
                                "the figure); compare them in groups")
    parsed = [parse_spec(s) for s in args.specs]
    _check_planned_outputs(args.out_dir, "compare", args.format,
                           [(f"SPEC {m}@{d}", f) for m, d, _ in parsed for f in (m, d)])
    runs, labels = [], []
    from .courses import COURSES, check_doses_spec, is_course_file, is_course_name

    def sized(d):            # a course, named or a course file: --months sets its length
        return is_course_name(d) or is_course_file(d)

    for spec, (_, d, _) in zip(args.specs, parsed):
        check_doses_spec(d, f"compare: {spec}: doses")
    given = [lb for _, _, lb in parsed if lb is not None]
    twice = next((lb for lb in given if given.count(lb) > 1), None)
    if twice is not None:       # (said before any run: it had come after all of them)
        raise KetasimInputError(f"compare: two SPECs have the same label {twice!r}; "
                                "expected a different :LABEL for each")
    if args.months is not None and not any(sized(d) for _, d, _ in parsed):
        raise KetasimInputError(f"--months: got {args.months:g}, but no SPEC names a course "
                                f"({', '.join(COURSES)}) or a course file (.toml); expected "
                                "it with one")
    # the figure is drawn by a helper process on the second core, when there is one
    # (ketasim._offload), while this process simulates the runs and then makes the table
    helper = _offload.start()
    stdin_read = []        # a dose table read from standard input, for every SPEC naming it
    try:
        _warm.ahead(*kernels_needed(args))    # (a first run: see ketasim._warm)
        for spec, (model_s, doses_s, label) in zip(args.specs, parsed):
            # a weight no person has, from this SPEC's dose table, is said naming the SPEC
            args.weight_origin = (None if is_course_name(doses_s)
                                  else f"compare: {spec}: weight_kg")
            model = load_model(model_s)
            # --months sets the length of the courses named; a dose table keeps its own times
            kw = ({"months": args.months} if args.months is not None
                  and sized(doses_s) else {})
            stdin = doses_s in ("-", "/dev/stdin")
            if stdin and stdin_read:
                doses, weight = stdin_read[0]       # standard input is read once
            else:
                doses, weight = resolve(doses_s, args.weight, "a comparison", **kw)
                if stdin:
                    stdin_read.append((doses, weight))
            _warn(route_warning(model, doses))
            _warn(weight_unused(model, _weight_given(args)))
            check_course_size(model, doses, args.months, doses_s)
            if label is None:
                label = model.name if sum(m == model_s for m, _, _ in parsed) == 1 else \
                    f"{model.name}@{doses_s}"
                if formula_like(label):
                    raise KetasimInputError(
                        f"compare: {model_s}@{doses_s}: the label {label!r} (the model's name) "
                        f"starts with {label[0]!r}, which a spreadsheet reads as the start of "
                        "a formula where the label heads its column of compare.csv; expected "
                        ":LABEL after the SPEC, starting with a letter or a digit")
            try:
                runs.append(run_course(model, doses, weight, label=label,
                                       regimen=course_regimen(doses_s, doses, args.months),
                                       course=_course_name(doses_s),
                                       closeup_h=args.closeup, **_sim_kw(args)))
            except KetasimInputError as exc:
                # (a dose table whose run overflows: which SPEC, as other SPEC messages say;
                # it had been 'doses: big.csv: ...', naming no SPEC and no option)
                raise _doses_named(exc, f"compare: {spec}: ") from None
            labels.append(label)
        if len(set(labels)) < len(labels):
            twice = next(lb for lb in labels if labels.count(lb) > 1)
            # (two labels given alike had been told to "add :LABEL", which they had)
            raise KetasimInputError(f"compare: two SPECs have the same label {twice!r}; "
                                    "expected a different :LABEL for each")
        out = args.out_dir
        if sum(r.course.data.nbytes + r.closeup.data.nbytes
               for r in runs) > _offload.MAX_PAYLOAD_BYTES:
            helper.close()      # very long courses: not copied to a helper, drawn here
        helper.submit(_compare_figures, runs, labels, out / "compare", args.format)
        head, rows = compare_table(runs, labels)
        table = (out / "compare.csv", _csv_text(*compare_table(runs, labels, csv=True)))
        outputs = helper.result() + [table]
    finally:
        args.weight_origin = None
        helper.close()
    _summary_then_files(
        "Side by side (occupancy model-predicted; glutamate and plasticity SCHEMATIC):\n"
        + _table(head, rows, left=(0, 1)),
        lambda: write_all(outputs, [(f"SPEC {m}@{d}", f) for m, d, _ in parsed
                                    for f in (m, d)]))
    print("wrote " + ", ".join(str(p) for p, _ in outputs), file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- explore
def cmd_explore(args) -> int:
    # the module (ketasim.explore is also the name of the function it exports)
    from .explore import DEFAULT_PORT, check_model, has_display, serve, window

    # the model first, before any port is tried (a taken --port had been the error given for
    # `--model BAD`, and a taken default port was said to be moved from before it)
    check_model(args.model, "--model:")
    if args.port is None and has_display():
        if window(model=args.model):
            return 0
        import matplotlib

        print(f"ketasim explore: matplotlib's backend ({matplotlib.get_backend()}) opens no "
              "desktop window here; serving to a browser instead", file=sys.stderr)
    serve(port=DEFAULT_PORT if args.port is None else args.port,
          open_browser=not args.no_browser, model=args.model, any_free=args.port is None)
    return 0


COMMANDS = {"course": cmd_course, "compare": cmd_compare, "explore": cmd_explore}
