"""Treatment courses: phases, the named courses (one registry for the CLI, sweeps and the
explorer) and course TOML files. Courses build :class:`~ketasim.dosing.Doses`; dosing knows no
course names.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .dosing import MAX_EVENTS, Doses, _decode, _read_at_most, new_session
from .errors import KetasimInputError, check_input_file, is_real, is_whole, suggest

__all__ = ["Phase", "course_from_phases", "standard_iv_course", "spravato_course", "COURSES",
           "DAYS_PER_MONTH", "course_days", "STANDARD_IV_PHASES", "read_course_toml",
           "resolve_doses", "COURSE_PARAMETERS"]

DAYS_PER_MONTH = 365.25 / 12.0


@dataclass(frozen=True)
class Phase:
    """A phase of a course.

    Either ``weeks`` x ``per_week`` sessions, which occupy whole weeks from the phase start and
    fall on days floor(7 j / per_week) of each week (3/week = days 0, 2, 4; 2/week = days 0, 3);
    or sessions ``every_days`` apart, the first ``after_days`` after the previous session
    (default: ``every_days``; with no session before the phase, ``after_days`` after its start,
    default 0), ``count`` times (``None``: until the end of the course).
    ``amount_mg`` overrides the course's amount for this phase.
    """

    weeks: int = 0
    per_week: int = 0
    every_days: float = 0.0
    count: int | None = None
    after_days: float | None = None
    amount_mg: float | None = None

    def __post_init__(self):
        def bad(name, v, expected):
            raise KetasimInputError(f"phase: {name}: got {v!r}, expected {expected}")

        def number(v):
            return is_real(v) and math.isfinite(v)

        # NumPy scalars (a value taken from an array or a DataFrame) are numbers too: kept as
        # Python's, so a float32 never sets the precision of the session times
        for name in ("weeks", "per_week", "count"):
            if is_whole(getattr(self, name)):
                object.__setattr__(self, name, int(getattr(self, name)))
        for name in ("every_days", "after_days", "amount_mg"):
            if isinstance(getattr(self, name), np.floating):
                object.__setattr__(self, name, float(getattr(self, name)))
        if self.every_days or not (self.weeks or self.per_week):
            if not number(self.every_days) or self.every_days <= 0:
                bad("every_days", self.every_days, "a number of days > 0")
            if self.count is not None and (not isinstance(self.count, int)
                                           or isinstance(self.count, bool) or self.count < 0):
                bad("count", self.count, "a whole number >= 0")
            if self.after_days is not None and (not number(self.after_days)
                                                or self.after_days < 0):
                bad("after_days", self.after_days, "a number of days >= 0")
            if self.weeks or self.per_week:
                raise KetasimInputError("phase: give either weeks and per_week, or every_days, "
                                        "not both")
        else:
            for k in ("weeks", "per_week"):
                v = getattr(self, k)
                if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                    bad(k, v, "a whole number >= 1 (or give every_days)")
            if self.per_week > 7:
                bad("per_week", self.per_week, "at most 7 sessions a week")
            for k in ("count", "after_days"):
                if getattr(self, k) is not None:
                    raise KetasimInputError(
                        f"phase: {k} = {getattr(self, k)!r}: only an every_days phase takes "
                        f"{k} (a weeks x per_week phase has weeks x per_week sessions in whole "
                        "weeks)")
        if self.amount_mg is not None and (not number(self.amount_mg) or self.amount_mg < 0):
            bad("amount_mg", self.amount_mg, "a dose in mg >= 0")


def course_days(phases, months: float | None = None) -> tuple[list, list]:
    """Session days (from day 0) and per-session amount overrides (None) of a list of phases."""
    end = months * DAYS_PER_MONTH if months is not None else math.inf
    days, amounts = [], []
    week_start = 0.0
    planned = 0
    try:
        if isinstance(phases, (Phase, str, bytes)):
            raise TypeError
        phases = list(phases)
    except TypeError:
        raise KetasimInputError(f"phases: got {phases!r}, expected a list of Phase (one phase: "
                                "[Phase(...)])") from None
    if not phases:     # (it had been 'no sessions fall within the course length')
        raise KetasimInputError("phases: got none, expected at least one Phase")
    for k, ph in enumerate(phases):
        if not isinstance(ph, Phase):
            raise KetasimInputError(f"phases: got {type(ph).__name__}, expected Phase")
        if ph.every_days and ph.count is None and k < len(phases) - 1:
            # it runs to the end of the course: a later phase could only add sessions that
            # break its rhythm (or, with some course lengths, one stray session at the end)
            raise KetasimInputError(
                f"phase {k + 1}: every_days = {ph.every_days:g} with no count runs until the "
                f"end of the course, but {len(phases) - k - 1} phase(s) follow it; expected a "
                "count for it, or no phase after it")
        # the sessions a phase can add before the end of the course (the end drops the rest,
        # so a large count or number of weeks in a course of a few months is no problem)
        if ph.every_days:
            if ph.count is None and months is None:
                raise KetasimInputError("phase: every_days without count needs the course "
                                        "length (months)")
            cap = end / ph.every_days + 1       # (inf without months, or past the float range)
            n_max = min(ph.count, cap) if ph.count is not None else cap
        else:
            n_max = ph.per_week * min(ph.weeks, end / 7.0 + 1)
        planned += n_max
        if planned > MAX_EVENTS:
            raise KetasimInputError(
                f"course: more than {MAX_EVENTS:,} sessions (months = {months!r}); expected "
                "a shorter course or fewer sessions")
        if ph.every_days:
            gap = ph.every_days if ph.after_days is None else ph.after_days
            if days and gap == 0:
                raise KetasimInputError("phase: after_days: got 0, expected a number of days > 0 "
                                        "(0 puts the phase's first session at the same instant "
                                        "as the previous session)")
            # sessions less than an hour apart are one session (the metrics merge them, see
            # engine.session_starts): a course's sessions are at least an hour apart
            for k, v in (("every_days", ph.every_days),
                         ("after_days", gap if days and ph.after_days is not None else None)):
                if v is not None and v < MIN_GAP_DAYS and (k == "every_days" and (
                        ph.count is None or ph.count > 1) or k == "after_days"):
                    raise KetasimInputError(
                        f"phase: {k}: got {v:g}, expected at least {MIN_GAP_DAYS:.6g} days "
                        "(1 hour) between sessions: doses closer than that are one session")
            d = (days[-1] + gap) if days else week_start + (ph.after_days or 0.0)
            j = 0
            while (ph.count is None or j < ph.count) and d < end:
                days.append(d)
                amounts.append(ph.amount_mg)
                d += ph.every_days
                j += 1
            week_start = 7.0 * math.floor(days[-1] / 7.0 + 1) if days else week_start
        else:
            for w in range(ph.weeks):
                if week_start + 7 * w >= end:      # the rest is after the end of the course
                    break
                for j in range(ph.per_week):
                    days.append(week_start + 7 * w + (7 * j) // ph.per_week)
                    amounts.append(ph.amount_mg)
            week_start += 7 * ph.weeks
    keep = [i for i, d in enumerate(days) if d < end]
    kept = sorted(days[i] for i in keep)
    for a, b in zip(kept, kept[1:]):     # (phases that meet: the last check of the rule above)
        if not new_session((b - a) * 24.0):       # (as the sessions are told apart)
            raise KetasimInputError(
                f"course: sessions on day {a:.6g} and day {b:.6g} are {(b - a) * 24:.3g} h apart; "
                f"expected at least {MIN_GAP_DAYS:.6g} days (1 hour) between sessions (doses "
                "closer than that are one session): check the phases' after_days")
    return [days[i] for i in keep], [amounts[i] for i in keep]


MIN_GAP_DAYS = 1.0 / 24.0      # sessions of a course at least an hour apart
MAX_SESSION_H = 8784.0         # one session's infusion at most a (leap) year long


def course_from_phases(phases, amount_mg: float, route: str, *, duration_h: float = 0.0,
                       months: float | None = None, first_amount_mg: float | None = None,
                       source: str = "course") -> Doses:
    """Build a course from phases, one dose row per session (day 0 at time 0 h).

    Parameters
    ----------
    phases : sequence of Phase
    amount_mg : float         amount per session, mg
    route : str               route name in the model
    duration_h : float        infusion length per session, h (0 = bolus/route default)
    months : float, optional  the course ends at ``months`` x 30.44 days; phases without a
                              ``count`` repeat until then; sessions at or after the end are dropped
    first_amount_mg : float, optional  amount of the very first session, mg
    source : str              the table's name in messages ("course": a named course)
    """
    if months is not None and not (is_real(months) and math.isfinite(months) and months > 0):
        raise KetasimInputError(f"months: got {months!r}, expected a number of months > 0")
    if not is_real(amount_mg) or not (math.isfinite(amount_mg) and amount_mg > 0):
        raise KetasimInputError(f"amount_mg: got {amount_mg!r}, expected a dose in mg > 0")
    if not is_real(duration_h) or not (math.isfinite(duration_h)
                                       and 0 <= duration_h <= MAX_SESSION_H):
        raise KetasimInputError(f"duration_h: got {duration_h!r}, expected hours >= 0 and at "
                                f"most {MAX_SESSION_H:g} (a year: one session's infusion)")
    if first_amount_mg is not None and (
            not is_real(first_amount_mg)
            or not (math.isfinite(first_amount_mg) and first_amount_mg > 0)):
        raise KetasimInputError(f"first_amount_mg: got {first_amount_mg!r}, expected a dose in "
                                "mg > 0")
    if not isinstance(route, str) or not route.strip():
        raise KetasimInputError(f"route: got {route!r}, expected a route name")
    if not route.isprintable():     # (a line break had split the schedule's table rows)
        raise KetasimInputError(f"route: got {route!r}, expected a route name (printable "
                                "characters on one line, no control characters)")
    # (NumPy scalars as Python floats: a float32 would set the precision of the table)
    months = None if months is None else float(months)
    amount_mg, duration_h = float(amount_mg), float(duration_h)
    first_amount_mg = None if first_amount_mg is None else float(first_amount_mg)
    days, amounts = course_days(phases, months)
    if not days:
        if all(ph.every_days and ph.count == 0 for ph in phases):
            # (it had blamed the course length, which no length mends)
            raise KetasimInputError("course: its phases have no sessions (count = 0 in each); "
                                    "expected a count >= 1 in one of them")
        raise KetasimInputError("course: no sessions fall within the course length")
    late = next((d for d in days if not math.isfinite(d * 24.0)), None)
    if late is not None:     # (had been NumPy's overflow warning, then "time_h: got inf")
        raise KetasimInputError(
            f"course: the session on day {late:.6g} is at more than {sys.float_info.max:.4g} h, "
            "the most a time can be; expected sessions before that: check the phases' "
            "after_days and every_days")
    amounts = [amount_mg if a is None else a for a in amounts]
    if first_amount_mg is not None:
        amounts[0] = first_amount_mg
    D = len(days)
    return Doses(np.asarray(days) * 24.0, amounts, [route] * D, [duration_h] * D,
                 source=source)


# The standard course's induction: 3 sessions in week 1, 2 in week 2, 1 a week in weeks 3-5,
# then monthly maintenance (standard_iv_course). A schedule described for ketamine clinics, not
# the protocol of a published trial (Murrough JW et al. Biol Psychiatry 2013;74:250-256 gave six
# infusions over 12 days); change it with phases or a course TOML file.
STANDARD_IV_PHASES = (Phase(weeks=1, per_week=3), Phase(weeks=1, per_week=2),
                      Phase(weeks=3, per_week=1))


# mg/kg racemic ketamine per session (over 40 minutes): the antidepressant dose of
# Zarate CA Jr et al. Arch Gen Psychiatry 2006;63:856-864 and Murrough 2013
STANDARD_MG_PER_KG = 0.5
MAX_MG_PER_KG = 10.0    # the standard course's dose per session, mg/kg, at most (beyond the
                        # 1-4.5 mg/kg of IV anaesthetic induction, KETALAR prescribing
                        # information, Dosage and Administration)


def standard_iv_course(dose_mg_per_kg: float = STANDARD_MG_PER_KG, weight_kg: float = 70.0,
                       months: float = 6.0, *, infusion_min: float = 40.0,
                       maintenance_every_days: float = 28.0, route: str = "iv") -> Doses:
    """The clinic course of racemic ketamine infusions.

    Three sessions in week 1 (days 0, 2, 4), two in week 2 (days 7, 10), one a week in weeks
    3-5 (days 14, 21, 28), then maintenance once a month: every ``maintenance_every_days``
    (default 28, so sessions keep their weekday) after the last weekly session, until
    ``months`` x 30.44 days. Each session is ``dose_mg_per_kg`` x ``weight_kg`` over
    ``infusion_min`` minutes (default 0.5 mg/kg over 40 min).

    Sources: the dose and infusion time are those of Zarate CA Jr et al. Arch Gen Psychiatry
    2006;63:856-864 and Murrough JW et al. Biol Psychiatry 2013;74:250-256; the schedule is one
    described for ketamine clinics, not the protocol of a published trial.
    """
    for name, v in (("dose_mg_per_kg", dose_mg_per_kg), ("weight_kg", weight_kg),
                    ("infusion_min", infusion_min),
                    ("maintenance_every_days", maintenance_every_days)):
        if not is_real(v) or not math.isfinite(v) or v <= 0:
            raise KetasimInputError(f"{name}: got {v!r}, expected a number > 0")
    if dose_mg_per_kg > MAX_MG_PER_KG:
        raise KetasimInputError(
            f"dose_mg_per_kg: got {dose_mg_per_kg:g}, expected at most {MAX_MG_PER_KG:g} mg/kg "
            "(0.5 is the standard; anaesthetic induction is 1-4.5 mg/kg): a larger dose is "
            "given with a dose table in mg")
    phases = list(STANDARD_IV_PHASES) + [Phase(every_days=float(maintenance_every_days))]
    return course_from_phases(phases, float(dose_mg_per_kg) * float(weight_kg), route,
                              duration_h=float(infusion_min) / 60.0, months=months)


def spravato_course(dose_mg: float = 56.0, maintenance: str = "biweekly", months: float = 6.0,
                    *, route: str = "intranasal") -> Doses:
    """The esketamine nasal-spray label course (Spravato).

    Induction, weeks 1-4: twice a week (days 0, 3, 7, 10, ...), 56 mg on day 1 and ``dose_mg``
    (56 or 84) after. Weeks 5-8: once a week. From week 9 (day 56): every week
    (``maintenance="weekly"``) or every two weeks (``"biweekly"``), until ``months`` x 30.44
    days. Each row is one session's total (28 mg per device, devices 5 minutes apart).

    Source: SPRAVATO (esketamine) nasal spray prescribing information (Janssen), section 2,
    Dosage and Administration (treatment-resistant depression).
    """
    if not is_real(dose_mg) or dose_mg not in (56, 84):
        raise KetasimInputError(f"dose: got {dose_mg!r}, expected 56 or 84 (mg per session)")
    if maintenance not in ("weekly", "biweekly"):
        raise KetasimInputError(
            f"maintenance: got {maintenance!r}{suggest(str(maintenance), ['weekly', 'biweekly'])}"
            "; expected weekly or biweekly")
    every = 7.0 if maintenance == "weekly" else 14.0
    phases = [Phase(weeks=4, per_week=2), Phase(weeks=4, per_week=1),
              Phase(every_days=every, after_days=7.0)]
    return course_from_phases(phases, float(dose_mg), route, months=months,
                              first_amount_mg=56.0)


MAX_COURSE_BYTES = 1_000_000   # a course file (a few hundred bytes), by name or on stdin


def _at_most(stream, where: str) -> bytes:
    """A course file's bytes from ``stream``, at most :data:`MAX_COURSE_BYTES`: an endless
    stream, ``< /dev/zero``, is refused rather than read until memory runs out, and a large
    file (a dose table given by mistake) before it is read whole."""
    return _read_at_most(stream, MAX_COURSE_BYTES, f"{where}: larger than "
                         f"{MAX_COURSE_BYTES:,} bytes; expected a TOML course file")


def _stdin_bytes(where: str) -> bytes:
    """A course file's bytes from standard input (see :func:`_at_most`)."""
    if sys.stdin is None:
        raise KetasimInputError(f"{where}: standard input is closed; expected a TOML course "
                                "file there, or a file name")
    return _at_most(getattr(sys.stdin, "buffer", sys.stdin), where)


def read_course_toml(path, months: float | None = None) -> Doses:
    """Read a custom course from TOML::

        amount_mg = 35.0        # per session
        route = "iv"
        duration_h = 0.6667     # optional
        months = 6              # optional; the --months option overrides it
        first_amount_mg = 56    # optional

        [[phase]]
        weeks = 2
        per_week = 3
        [[phase]]
        every_days = 28         # optional: count, after_days, amount_mg

    ``path`` ``"-"`` reads the file from standard input (named ``<stdin>`` in messages).
    """
    import tomllib

    if str(path) == "-":
        where = "<stdin>"
        data = _stdin_bytes(where)
    else:
        p = Path(path)
        where = str(p)
        check_input_file("course", str(path), p, "a TOML file")
        with open(p, "rb") as fh:
            data = _at_most(fh, where)
    text = _decode(data, where, "a TOML course file")
    try:
        spec = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise KetasimInputError(f"{where}: TOML syntax error: {exc}") from None
    if not spec:     # (nothing, or comments only: it had been "missing 'amount_mg'")
        raise KetasimInputError(f"{where}: empty; expected a TOML course file: amount_mg, "
                                "route and one or more [[phase]] tables")
    allowed = {"amount_mg", "route", "duration_h", "months", "first_amount_mg", "phase"}
    for k in spec:
        if k not in allowed:
            raise KetasimInputError(f"{where}: unknown key {k!r}{suggest(k, allowed)}; expected "
                                    + ", ".join(sorted(allowed)))
    for k in ("amount_mg", "route", "phase"):
        if k not in spec:
            raise KetasimInputError(f"{where}: missing {k!r}")
    if not isinstance(spec["phase"], list) or not spec["phase"]:
        raise KetasimInputError(f"{where}: phase: expected one or more [[phase]] tables")
    phases = []
    pk = {"weeks", "per_week", "every_days", "count", "after_days", "amount_mg"}
    for i, ph in enumerate(spec["phase"]):
        if not isinstance(ph, dict):
            raise KetasimInputError(f"{where}: phase[{i}]: expected a table")
        if not ph:
            raise KetasimInputError(f"{where}: phase[{i}]: empty; expected weeks and per_week "
                                    "(sessions a week for some weeks) or every_days (sessions "
                                    "that many days apart)")
        for k in ph:
            if k not in pk:
                raise KetasimInputError(f"{where}: phase[{i}]: unknown key {k!r}"
                                        f"{suggest(k, pk)}; expected " + ", ".join(sorted(pk)))
        try:
            phases.append(Phase(**ph))
        except KetasimInputError as exc:
            raise KetasimInputError(f"{where}: phase[{i}]: {str(exc).removeprefix('phase: ')}") \
                from None
    try:
        return course_from_phases(phases, spec["amount_mg"], spec["route"],
                                  duration_h=spec.get("duration_h", 0.0),
                                  months=months if months is not None else spec.get("months"),
                                  first_amount_mg=spec.get("first_amount_mg"),
                                  # named by its file: its amounts are in mg, not per kg as
                                  # the standard course's (descriptions and messages say so)
                                  source=where)
    except KetasimInputError as exc:
        # (a message of the dose table, named by its source, names the file once)
        msg = str(exc)
        raise KetasimInputError(msg if msg.startswith(f"{where}: ") else f"{where}: {msg}") \
            from None


COURSES = {"standard-iv": standard_iv_course, "spravato": spravato_course}

# course name -> {course parameter (as sweeps and the CLI name it): keyword of the builder}
COURSE_PARAMETERS = {
    "standard-iv": {"dose_mg_per_kg": "dose_mg_per_kg", "weight_kg": "weight_kg",
                    "months": "months", "maintenance_days": "maintenance_every_days",
                    "infusion_min": "infusion_min"},
    "spravato": {"dose_mg": "dose_mg", "maintenance": "maintenance", "months": "months"},
}


def is_course_name(spec) -> bool:
    """Whether ``spec`` names a course (and no file of that name is there, which wins; a
    folder of that name does not: ``ketasim course --out-dir standard-iv`` had made every
    later command with the default course fail, "'standard-iv' is a folder")."""
    if not (isinstance(spec, str) and spec in COURSES):
        return False
    p = Path(spec)
    return not p.exists() or p.is_dir()


def is_course_file(spec) -> bool:
    """Whether ``spec`` is a course TOML file (phases; its length is a course's ``months``)."""
    return isinstance(spec, str) and Path(spec).suffix.lower() == ".toml" and Path(spec).is_file()


def check_course_weights(spec, per_subject: bool) -> None:
    """Refuse per-subject weights with the mg/kg course ``standard-iv``: it is one dose table,
    in mg for one weight."""
    if per_subject and isinstance(spec, str) and spec == "standard-iv":
        raise KetasimInputError("weight_kg: per-subject weights with the mg/kg course "
                                "standard-iv would need one dose table per subject; give one "
                                "weight, or a dose table in mg")


def check_doses_spec(spec, what: str = "doses") -> None:
    """Refuse a dose spec that is neither a course nor a file that could be read (a typo of a
    course name, say), naming the nearest course: checked before anything that depends on
    whether it is a course, so that error is the one a user sees."""
    s = str(spec)
    if not isinstance(spec, Doses) and not s.strip():    # (Path("") is the folder ".")
        raise KetasimInputError(f"{what}: got {s!r}, expected a course name "
                                f"({', '.join(COURSES)}), a dose table (CSV) or a course TOML "
                                "file")
    if (isinstance(spec, Doses) or is_course_name(s) or s in ("-", "/dev/stdin")
            or Path(s).exists() or Path(s).suffix.lower() == ".csv"):
        return
    raise KetasimInputError(f"{what}: {s!r} is neither a file nor a course"
                            f"{suggest(s, COURSES)}; courses: {', '.join(COURSES)}")


def resolve_doses(spec, weight_kg: float = 70.0, **course_params) -> Doses:
    """A dose table from a course name (``standard-iv``, ``spravato``), a CSV path, a course
    TOML file (``.toml``: phases, see :func:`read_course_toml`), a list of dose records (see
    :meth:`Doses.from_records`), a pandas DataFrame of them, or a Doses.

    ``course_params`` use the names of :data:`COURSE_PARAMETERS` (e.g. ``dose_mg_per_kg``,
    ``maintenance_days``, ``months``); the standard IV course scales with ``weight_kg``.
    """
    from .dosing import records_table
    table = records_table(spec)             # dose records or a DataFrame, as simulate takes
    if table is not None:
        spec = table
    if isinstance(spec, Doses):
        if course_params:
            raise KetasimInputError(f"doses: course parameters {sorted(course_params)} need a "
                                    "course name, not a dose table")
        return spec
    s = str(spec)
    check_doses_spec(s)
    if is_course_name(s):
        known = COURSE_PARAMETERS[s]
        kw = {}
        for k, v in course_params.items():
            if k not in known:
                raise KetasimInputError(f"course {s}: unknown parameter {k!r}{suggest(k, known)}"
                                        f"; expected one of {', '.join(known)}")
            kw[known[k]] = v
        if s == "standard-iv":
            kw.setdefault("weight_kg", weight_kg)
        return COURSES[s](**kw)
    if is_course_file(s):
        # a course file (phases, as `ketasim schedule custom` reads): its dose table
        extra = sorted(k for k in course_params if k != "months")
        if extra:
            raise KetasimInputError(f"doses: course parameters {extra} need a course name "
                                    f"({', '.join(COURSES)}); a course file {s!r} sets its own")
        return read_course_toml(s, months=course_params.get("months"))
    if course_params:
        raise KetasimInputError(f"doses: course parameters {sorted(course_params)} need a "
                                f"course name ({', '.join(COURSES)}), got {s!r}")
    if s in ("-", "/dev/stdin"):          # the dose table on standard input
        from .dosing import read_doses
        return read_doses(s)
    from .dosing import read_doses
    return read_doses(s)
