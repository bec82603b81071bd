"""Per-session and course metrics of a simulated course.

A *session* starts at each distinct dose time (doses closer than ``merge_h`` are one session)
and ends where the next one starts (the last ends at the end of the simulated time). Metrics
are exact and independent of any output grid: they are computed by the metrics kernel
(:func:`ketasim.engine.run_metrics`) from the exact solution — peaks at events or where the
derivative vanishes, AUC from an integrator state, threshold crossings solved for.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields

import numpy as np

from .engine import session_starts
from .errors import KetasimInputError, KetasimWarning, is_real, is_whole

__all__ = ["CourseMetrics", "course_metrics", "session_starts", "maintenance_start"]


@dataclass(frozen=True, eq=False)
class CourseMetrics:
    """Metrics per session (arrays (S,) or (N, S) for a population) and over the course.

    Attributes
    ----------
    session_start_h : (S,)       session start, h; (N, S) for a dose table with subjects (each
                                 subject its own sessions, NaN after its last)
    cmax_ng_ml : (…, S)          peak concentration of ``analyte`` in the session, ng/mL
    tmax_h : (…, S)              time of the peak after the session start, h
    auc_ng_h_ml : (…, S)         AUC from the session start to the next (exact), ng·h/mL
    trough_ng_ml : (…, S)        concentration just before the next session (NaN for the last,
                                 unless the next one starts exactly at the end of the grid)
    time_above_h : dict threshold -> (…, S)   hours with occupancy >= threshold in the session
    peak_occupancy : (…, S)      model-predicted peak NMDA occupancy (NaN without occupancy)
    peak_glutamate : (…, S)      schematic glutamate peak (NaN without the schematic response)
    plasticity_end : (…,)        schematic plasticity index at the end of the grid
    plasticity_min_maintenance : (…,)   its minimum from the start of maintenance to the last
                                 session (the washout after it is not maintenance)
    maintenance_start_h : float  where maintenance starts (see :func:`maintenance_start`);
                                 (N,) for a dose table with subjects
    analyte : str                the concentration the PK metrics describe
    time_above_conc_h : dict threshold (ng/mL) -> (…, S)   hours with the analyte above it
    """

    session_start_h: np.ndarray
    cmax_ng_ml: np.ndarray
    tmax_h: np.ndarray
    auc_ng_h_ml: np.ndarray
    trough_ng_ml: np.ndarray
    time_above_h: dict
    peak_occupancy: np.ndarray
    peak_glutamate: np.ndarray
    plasticity_end: np.ndarray
    plasticity_min_maintenance: np.ndarray
    maintenance_start_h: float
    analyte: str
    time_above_conc_h: dict = None

    def table(self, subjects=None) -> tuple[list[str], list[list]]:
        """Header and rows (one per session) for printing. For a population, ``subjects``
        (its N subject labels) gives a leading ``subject`` column and one row per subject and
        session."""
        # the columns are those of the whole population: a subject whose occupancy or
        # glutamate is all NaN (no session within the horizon, say) keeps them, as NaN
        has_occ = not np.all(np.isnan(self.peak_occupancy))
        has_glu = not np.all(np.isnan(self.peak_glutamate))
        if self.cmax_ng_ml.ndim != 1:
            if subjects is None or len(subjects) != self.cmax_ng_ml.shape[0]:
                raise KetasimInputError("table: metrics of a population; give the subjects' "
                                        "labels or index one subject first")
            head, rows = None, []
            for i, sid in enumerate(subjects):
                h, r = self.subject(i)._table(has_occ, has_glu)
                head = ["subject"] + h
                rows += [[sid] + row for row in r]
            return head, rows
        return self._table(has_occ, has_glu)

    def _table(self, has_occ, has_glu):
        head = ["session", "start_day", "cmax_ng_ml", "tmax_h", "auc_ng_h_ml", "trough_ng_ml"]
        thr = sorted(self.time_above_h) if has_occ else []
        head += [f"h_occ_ge_{t:g}" for t in thr] + ["peak_occupancy"] * has_occ
        head += ["peak_glutamate"] * has_glu
        rows = []
        for i, t0 in enumerate(self.session_start_h):
            if not np.isfinite(t0):         # a subject with fewer sessions than others
                break
            rows.append([i + 1, t0 / 24.0, self.cmax_ng_ml[i], self.tmax_h[i],
                         self.auc_ng_h_ml[i], self.trough_ng_ml[i]]
                        + [self.time_above_h[t][i] for t in thr]
                        + [self.peak_occupancy[i]] * has_occ + [self.peak_glutamate[i]] * has_glu)
        return head, rows

    def subject(self, i: int) -> "CourseMetrics":
        """The metrics of subject ``i`` of a population."""
        if self.cmax_ng_ml.ndim != 2:
            raise KetasimInputError("subject: metrics of one subject already")
        n = self.cmax_ng_ml.shape[0]
        if not is_whole(i) or not -n <= i < n:
            raise KetasimInputError(f"subject: got {i!r}, expected an index from 0 to {n - 1}")
        starts = self.session_start_h
        st = starts[i] if starts.ndim == 2 else starts
        s = int(np.sum(np.isfinite(st)))     # its own sessions (a dose table's subjects differ)

        def one(a):
            return a[i][:s] if np.ndim(a) == 2 else a[i]
        return CourseMetrics(
            session_start_h=st[:s],
            cmax_ng_ml=one(self.cmax_ng_ml), tmax_h=one(self.tmax_h),
            auc_ng_h_ml=one(self.auc_ng_h_ml), trough_ng_ml=one(self.trough_ng_ml),
            time_above_h={k: one(v) for k, v in self.time_above_h.items()},
            peak_occupancy=one(self.peak_occupancy), peak_glutamate=one(self.peak_glutamate),
            plasticity_end=one(self.plasticity_end),
            plasticity_min_maintenance=one(self.plasticity_min_maintenance),
            maintenance_start_h=(float(self.maintenance_start_h[i])
                                 if np.ndim(self.maintenance_start_h) else
                                 float(self.maintenance_start_h)),
            analyte=self.analyte,
            time_above_conc_h={k: one(v) for k, v in (self.time_above_conc_h or {}).items()})

    def to_dict(self) -> dict:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "time_above_h":
                for t, a in v.items():
                    out[f"time_above_occ_{t:g}_h"] = a
            elif f.name == "time_above_conc_h":
                for t, a in (v or {}).items():
                    out[f"time_above_conc_{t:g}_h"] = a
            else:
                out[f.name] = v
        return out


def maintenance_start(starts: np.ndarray) -> float:
    """Start of maintenance: the first session from which every interval equals the last one
    (the periodic tail of the course: at least two equal intervals), after sessions at another
    interval (the induction). NaN with fewer than three sessions, when the last two intervals
    differ, or when every interval is the same (a schedule with no induction before its
    periodic part, or a course cut short within its induction)."""
    if starts.size < 3:
        return float("nan")
    gaps = np.diff(starts)
    last = gaps[-1]
    i = gaps.size - 1
    while i > 0 and abs(gaps[i - 1] - last) <= 1e-6 * max(1.0, last):
        i -= 1
    if i == 0 or i == gaps.size - 1:
        return float("nan")
    return float(starts[i])


def result_model(result):
    """The model a Result was computed with: ``result.model``, or a copy with the parameter
    values the run used when the model's parameter dict was edited after it (a run again
    from ``result.inputs`` then gives the same curves)."""
    kept = (result.inputs or {}).get("model_parameters")
    if kept is not None and kept != result.model.parameters:
        import dataclasses
        return dataclasses.replace(result.model, parameters=dict(kept))
    return result.model


def _named_apart(values, field: str, column: str) -> None:
    """Refuse two different thresholds that would have one name: a threshold's key in
    :meth:`CourseMetrics.to_dict` (``column``) and its column in :meth:`CourseMetrics.table`
    are its value to 6 significant digits (``{t:g}``), so 0.3 and 0.30000000001 had shared
    the key ``time_above_occ_0.3_h`` and one of them had been silently lost. (The same value
    twice is one threshold.)"""
    seen: dict = {}
    for v in values:
        key = f"{v:g}"
        if seen.setdefault(key, v) != v:
            raise KetasimInputError(
                f"{field}: {seen[key]!r} and {v!r} would share the name {key} "
                f"({column.format(key)}: a threshold is named by its value to 6 significant "
                "digits), and one would be lost; expected thresholds that differ within those "
                "digits")


def course_metrics(result, analyte: str | None = None, thresholds=(0.2, 0.3, 0.4),
                   merge_h: float = 1.0, maintenance_from_h: float | None = None,
                   conc_thresholds_ng_ml=(), *, _warn_after_end: bool = True) -> CourseMetrics:
    """Exact per-session and course metrics of the subjects of a :class:`~ketasim.Result`.

    The metrics do not come from the result's time grid: the same subjects are re-run by the
    exact metrics kernel (:func:`ketasim.engine.run_metrics`) up to the last output time, so
    Cmax, Tmax, AUC, troughs and times above thresholds are the same at any output step.

    Parameters
    ----------
    result : Result        a result of :func:`ketasim.simulate` (it keeps its dose table,
                           parameters and weight); one subject or a population
    analyte : str          concentration for Cmax/Tmax/AUC/trough (default: the ``plasma``
                           alias, or the model's first concentration when it has none, as
                           for :func:`ketasim.engine.session_metrics`)
    thresholds : floats    occupancy thresholds (0-1) for time above threshold (one number,
                           or a list, tuple, set, array ... of them)
    merge_h : float        doses closer than this (h) belong to one session
    maintenance_from_h : float, optional   override the automatic start of maintenance, h
                           (NaN: no maintenance)
    conc_thresholds_ng_ml : floats   concentration thresholds (ng/mL) for time above

    Returns
    -------
    CourseMetrics
        Per-session arrays (S,), or (N, S) for a population, with the unit in each name:
        ``cmax_ng_ml``, ``tmax_h``, ``auc_ng_h_ml``, ``trough_ng_ml``, ``time_above_h``
        (threshold -> hours), ``peak_occupancy`` (0-1), ``peak_glutamate``; and
        ``plasticity_end`` (see :class:`CourseMetrics`). Sessions are counted up to the
        result's last output time, which cuts the last one's AUC and times above there;
        sessions that start at or after it have no metrics (a
        :class:`~ketasim.KetasimWarning` says how many are left out).
    """
    from .engine import SCHEMATIC_OUTPUTS, after_horizon_note, run_metrics, threshold_values

    # (what a Result carries, so anything that carries it as a Result does is taken)
    if not all(hasattr(result, a) for a in ("model", "doses", "times", "names", "inputs")):
        raise KetasimInputError(f"result: got {type(result).__name__}, expected a Result of "
                                "ketasim.simulate")
    if result.doses is None:
        raise KetasimInputError("metrics: the result carries no dose table")
    if maintenance_from_h is not None and not (
            is_real(maintenance_from_h) and not np.isinf(maintenance_from_h)):
        raise KetasimInputError(f"maintenance_from_h: got {maintenance_from_h!r}, expected "
                                "hours (a number; NaN: no maintenance)")
    thresholds = threshold_values(thresholds, "thresholds", "occupancy")
    conc_thresholds_ng_ml = threshold_values(conc_thresholds_ng_ml, "conc_thresholds_ng_ml",
                                             "concentration")
    _named_apart(thresholds, "thresholds", "time_above_occ_{}_h")
    _named_apart(conc_thresholds_ng_ml, "conc_thresholds_ng_ml", "time_above_conc_{}_h")
    inputs = result.inputs or {}
    t = result.times
    if not t[-1] > 0:
        raise KetasimInputError(f"metrics: the result ends at {float(t[-1]):g} h; metrics run "
                                "up to its last output time, so it must be after 0 h")
    mr = run_metrics(result_model(result), result.doses, inputs.get("params"),
                     inputs.get("weight_kg", 70.0), analyte=analyte,
                     thresholds_occ=thresholds,
                     thresholds_conc_ng_ml=conc_thresholds_ng_ml,
                     horizon_h=float(t[-1]), merge_h=merge_h,
                     schematic=any(n in result.names for n in SCHEMATIC_OUTPUTS),
                     occupancy_calibration=inputs.get("occupancy_calibration"),
                     pd_rtol=inputs.get("pd_rtol", 1e-6), _horizon_field="times[-1]")
    # sessions from the last output time on have no metrics: say so, as a horizon does
    # (the CLI and the figures say so their way)
    note = (after_horizon_note(result.doses, float(t[-1]), merge_h, field="times[-1]")
            if _warn_after_end else None)
    if note is not None:
        warnings.warn(f"course_metrics: {note}", KetasimWarning, stacklevel=2)
    from . import _kernels as K

    mo = mr.per_session
    starts = mr.session_start_h
    nto = len(mr.thresholds_occ)
    above = {float(th): mo[:, K.M_FIXED + i, :] for i, th in enumerate(mr.thresholds_occ)}
    above_c = {float(c): mo[:, K.M_FIXED + nto + i, :]
               for i, c in enumerate(mr.thresholds_conc_ng_ml)}
    N = mo.shape[0]
    if starts.ndim == 2:
        # a dose table with subjects: each has its own sessions (NaN after its last)
        mstart = np.array([maintenance_start(s[np.isfinite(s)]) for s in starts]
                          if maintenance_from_h is None else [float(maintenance_from_h)] * N)
    else:
        mstart = (maintenance_start(starts) if maintenance_from_h is None
                  else float(maintenance_from_h))
    if mr.has_schematic:
        pend = mr.end[:, 1]
        pmin = np.full(N, np.nan)
        # the sessions of maintenance but the last: their windows end at the next session
        # (each the trough before it); the last one's runs on to the horizon, the washout
        # after the course, which is not maintenance
        if starts.ndim == 2:
            for i in range(N):
                fin = np.isfinite(starts[i])
                sel = fin & (starts[i] >= mstart[i] - 1e-9)
                if fin.any():
                    sel[np.flatnonzero(fin)[-1]] = False
                if sel.any():
                    pmin[i] = np.min(mo[i, K.M_PMIN, sel])
        elif np.isfinite(mstart):
            sel = starts >= mstart - 1e-9
            sel[-1] = False
            if sel.any():
                pmin = np.min(mo[:, K.M_PMIN, sel], axis=1)
    else:
        pend = np.full(N, np.nan)
        pmin = np.full(N, np.nan)
    sq = (lambda a: a) if result.population else (lambda a: a[0])
    return CourseMetrics(session_start_h=starts, cmax_ng_ml=sq(mo[:, K.M_CMAX] * 1000.0),
                         tmax_h=sq(mo[:, K.M_TMAX]), auc_ng_h_ml=sq(mo[:, K.M_AUC] * 1000.0),
                         trough_ng_ml=sq(mo[:, K.M_TROUGH] * 1000.0),
                         time_above_h={k: sq(v) for k, v in above.items()},
                         peak_occupancy=sq(mo[:, K.M_POCC]),
                         peak_glutamate=sq(mo[:, K.M_PGLU]),
                         plasticity_end=sq(pend), plasticity_min_maintenance=sq(pmin),
                         maintenance_start_h=mstart, analyte=mr.analyte,
                         time_above_conc_h={k: sq(v) for k, v in above_c.items()})
