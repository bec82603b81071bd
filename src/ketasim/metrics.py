"""Per-session and course metrics of a simulated course.

A *session* starts at each distinct dose time (doses closer than ``merge_h`` are one session)
and ends where the next one starts (the last ends at the end of the grid). All metrics are read
off the simulated time grid, so their resolution is the grid step: use a fine grid (the CLI
default is 6 minutes; 1 minute for precise Cmax/Tmax).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from .dosing import expand
from .errors import KetasimInputError

__all__ = ["CourseMetrics", "course_metrics", "session_starts", "maintenance_start"]


@dataclass(frozen=True)
class CourseMetrics:
    """Metrics per session (arrays (S,) or (N, S) for a population) and over the course.

    Attributes
    ----------
    session_start_h : (S,)       session start, h
    cmax_ng_ml : (…, S)          peak concentration of ``analyte`` in the session, ng/mL
    tmax_h : (…, S)              time of the peak after the session start, h
    auc_ng_h_ml : (…, S)         AUC from the session start to the next (trapezoidal on the
                                 grid), ng·h/mL
    trough_ng_ml : (…, S)        concentration at the last grid time before the next session
                                 (NaN for the last session)
    time_above_h : dict threshold -> (…, S)   hours with occupancy >= threshold in the session
    peak_occupancy : (…, S)      model-predicted peak NMDA occupancy (NaN without occupancy)
    peak_glutamate : (…, S)      schematic glutamate peak (NaN without the schematic response)
    plasticity_end : (…,)        schematic plasticity index at the end of the grid
    plasticity_min_maintenance : (…,)   its minimum from the start of maintenance to the end
    maintenance_start_h : float  where maintenance starts (see :func:`maintenance_start`)
    analyte : str                the concentration the PK metrics describe
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

    def table(self) -> tuple[list[str], list[list]]:
        """Header and rows (one per session) for a single subject, for printing."""
        if self.cmax_ng_ml.ndim != 1:
            raise KetasimInputError("table: metrics of a population; index one subject first")
        head = ["session", "start_day", "cmax_ng_ml", "tmax_h", "auc_ng_h_ml", "trough_ng_ml"]
        has_occ = not np.all(np.isnan(self.peak_occupancy))
        has_glu = not np.all(np.isnan(self.peak_glutamate))
        thr = sorted(self.time_above_h) if has_occ else []
        head += [f"h_occ_ge_{t:g}" for t in thr] + ["peak_occupancy"] * has_occ
        head += ["peak_glutamate"] * has_glu
        rows = []
        for i, t0 in enumerate(self.session_start_h):
            rows.append([i + 1, t0 / 24.0, self.cmax_ng_ml[i], self.tmax_h[i],
                         self.auc_ng_h_ml[i], self.trough_ng_ml[i]]
                        + [self.time_above_h[t][i] for t in thr]
                        + [self.peak_occupancy[i]] * has_occ + [self.peak_glutamate[i]] * has_glu)
        return head, rows

    def to_dict(self) -> dict:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "time_above_h":
                for t, a in v.items():
                    out[f"time_above_occ_{t:g}_h"] = a
            else:
                out[f.name] = v
        return out


def session_starts(doses, merge_h: float = 1.0) -> np.ndarray:
    """Distinct session start times (h): dose times closer than ``merge_h`` form one session."""
    t = np.unique(expand(doses).time_h)
    if t.size == 0:
        return t
    keep = np.r_[True, np.diff(t) >= merge_h]
    return t[keep]


def maintenance_start(starts: np.ndarray) -> float:
    """Start of maintenance: the first session from which every interval equals the last one
    (the periodic tail of the course). NaN with fewer than three sessions."""
    if starts.size < 3:
        return float("nan")
    gaps = np.diff(starts)
    last = gaps[-1]
    i = gaps.size - 1
    while i > 0 and abs(gaps[i - 1] - last) <= 1e-6 * max(1.0, last):
        i -= 1
    return float(starts[i])


def _trapz_windows(y, t, edges):
    """Integral of y (…, T) over each window [edges[k], edges[k+1]): trapezoids between the grid
    points inside the window, plus the last point's value held to the window's end (the value
    at the next session's start is post-dose, so it cannot close the last trapezoid)."""
    out = np.zeros(y.shape[:-1] + (len(edges) - 1,))
    cum = np.concatenate([np.zeros(y.shape[:-1] + (1,)),
                          np.cumsum(0.5 * (y[..., 1:] + y[..., :-1]) * np.diff(t), axis=-1)],
                         axis=-1)
    for k in range(len(edges) - 1):
        i0 = np.searchsorted(t, edges[k], side="left")
        i1 = np.searchsorted(t, edges[k + 1], side="left") - 1
        if i1 >= i0 and i0 < t.size:
            out[..., k] = cum[..., i1] - cum[..., i0]
            if k < len(edges) - 2:
                out[..., k] += y[..., i1] * (edges[k + 1] - t[i1])
    return out


def course_metrics(result, analyte: str = "plasma", thresholds=(0.2, 0.3, 0.4),
                   merge_h: float = 1.0, maintenance_from_h: float | None = None
                   ) -> CourseMetrics:
    """Compute per-session and course metrics from a :class:`~ketasim.Result`.

    Parameters
    ----------
    result : Result        a simulation that kept its doses
    analyte : str          concentration for Cmax/Tmax/AUC/trough (default the ``plasma`` alias)
    thresholds : floats    occupancy thresholds (0-1) for time above threshold
    merge_h : float        doses closer than this (h) belong to one session
    maintenance_from_h : float, optional   override the automatic start of maintenance
    """
    if result.doses is None:
        raise KetasimInputError("metrics: the result carries no dose table")
    for th in thresholds:
        if not (isinstance(th, (int, float)) and 0 <= th <= 1):
            raise KetasimInputError(f"thresholds: got {th!r}, expected occupancies in [0, 1]")
    t = result.times
    starts = session_starts(result.doses, merge_h)
    starts = starts[starts <= t[-1]]
    if starts.size == 0:
        raise KetasimInputError("metrics: no session starts within the simulated times")
    edges = np.r_[starts, max(t[-1], starts[-1]) + 1e-9]
    c = result.concentration(analyte)
    c2 = c if c.ndim == 2 else c[None, :]
    S = starts.size
    N = c2.shape[0]
    cmax = np.full((N, S), np.nan)
    tmax = np.full((N, S), np.nan)
    trough = np.full((N, S), np.nan)
    has_occ = "occupancy" in result.names
    has_glu = "glutamate" in result.names
    occ = result.data[:, result.names.index("occupancy")] if has_occ else None
    glu = result.data[:, result.names.index("glutamate")] if has_glu else None
    pocc = np.full((N, S), np.nan)
    pglu = np.full((N, S), np.nan)
    above = {float(th): np.full((N, S), np.nan) for th in thresholds}
    dt = np.diff(t)
    for k in range(S):
        i0 = np.searchsorted(t, edges[k], side="left")
        i1 = np.searchsorted(t, edges[k + 1], side="left")
        if k == S - 1:
            i1 = t.size
        if i1 <= i0:
            continue
        seg = c2[:, i0:i1]
        j = np.argmax(seg, axis=1)
        cmax[:, k] = seg[np.arange(N), j]
        tmax[:, k] = t[i0 + j] - starts[k]
        if k < S - 1:
            trough[:, k] = c2[:, i1 - 1]
        if has_occ:
            pocc[:, k] = occ[:, i0:i1].max(axis=1)
            for th, arr in above.items():
                # time above on the grid: each interval counts where both ends are above
                ok = occ[:, i0:i1] >= th
                w = dt[i0:i1 - 1] if i1 - 1 > i0 else np.zeros(0)
                arr[:, k] = (ok[:, 1:] & ok[:, :-1]).astype(float) @ w if w.size else 0.0
        if has_glu:
            pglu[:, k] = glu[:, i0:i1].max(axis=1)
    auc = _trapz_windows(c2, t, edges)
    mstart = maintenance_start(starts) if maintenance_from_h is None else float(maintenance_from_h)
    if "plasticity" in result.names:
        pl = result.data[:, result.names.index("plasticity")]
        pend = pl[:, -1]
        if np.isfinite(mstart) and mstart <= t[-1]:
            pmin = pl[:, t >= mstart].min(axis=1)
        else:
            pmin = np.full(N, np.nan)
    else:
        pend = np.full(N, np.nan)
        pmin = np.full(N, np.nan)
    sq = (lambda a: a) if result.population else (lambda a: a[0])
    return CourseMetrics(session_start_h=starts, cmax_ng_ml=sq(cmax), tmax_h=sq(tmax),
                         auc_ng_h_ml=sq(auc), trough_ng_ml=sq(trough),
                         time_above_h={k: sq(v) for k, v in above.items()},
                         peak_occupancy=sq(pocc), peak_glutamate=sq(pglu),
                         plasticity_end=sq(pend), plasticity_min_maintenance=sq(pmin),
                         maintenance_start_h=mstart, analyte=analyte)
