"""The engine: prepare a simulation once (a :class:`Plan` of plain arrays), run it on slices of
subjects. ``simulate``, ``population``, ``sweep`` and the Dask backend are thin layers on top.

This module is being built up; :func:`session_metrics` is the stable entry point that
populations and sweeps use for per-subject metrics.
"""

from __future__ import annotations

import numpy as np

__all__ = ["session_metrics", "METRICS"]

# metric name -> (unit, description); per session k the column is f"{name}_s{k}" (k from 1),
# over the whole course f"{name}"
METRICS = {
    "cmax": ("ng/mL", "peak concentration of the analyte"),
    "tmax": ("h", "time of the peak after the session start"),
    "auc": ("ng*h/mL", "area under the concentration curve"),
    "trough": ("ng/mL", "concentration just before the next session"),
    "peak_occupancy": ("fraction", "model-predicted peak NMDA occupancy"),
    "time_above_occ_X": ("h", "hours with occupancy >= X (any X in [0, 1])"),
    "peak_glutamate": ("relative", "schematic glutamate peak (baseline 1)"),
    "plasticity_end": ("index", "schematic plasticity index at the end (course only)"),
}


def session_metrics(model, doses, params=None, weight_kg=70.0, *, metrics=("cmax", "auc"),
                    analyte=None, horizon_h=None, threads=None, merge_h: float = 1.0) -> dict:
    """Per-subject metrics, per session and over the course.

    Parameters
    ----------
    model, doses, params, weight_kg
        As for :func:`ketasim.simulate` (``params``/``weight_kg`` arrays of length N give N
        subjects).
    metrics : sequence of str
        Names from :data:`METRICS`; ``time_above_occ_0.3`` style for thresholds.
    analyte : str, optional
        The concentration the PK metrics describe (default ``plasma`` where the model has it).
    horizon_h : float, optional
        End of the course, h (default: last dose + 28 days).

    Returns
    -------
    dict
        ``"session_start_h"`` -> (S,) and, for each metric m, ``m`` -> (N,) over the course
        (max for peaks, sum for AUC and times above, value at the end for ``plasticity_end``,
        last trough) and ``f"{m}_s{k}"`` -> (N,) for session k = 1..S.
    """
    # Interim implementation on a fine grid; replaced by the exact kernel metrics.
    from .courses import resolve_doses
    from .metrics import course_metrics
    from .modelfile import load_model
    from .simulate import simulate, time_grid

    model = load_model(model)
    doses = resolve_doses(doses)
    if horizon_h is None:
        horizon_h = float(np.max(doses.time_h + doses.addl * doses.ii_h)) + 28 * 24.0
    analyte = analyte or ("plasma" if "plasma" in model.concentration_names
                          else model.concentration_names[0])
    thr = sorted({float(m.rsplit("_", 1)[1]) for m in metrics
                  if m.startswith("time_above_occ_")})
    r = simulate(model, doses, time_grid(horizon_h, 1 / 60), params=params,
                 weight_kg=weight_kg, threads=threads)
    cm = course_metrics(r, analyte=analyte, thresholds=thr or (0.3,), merge_h=merge_h)
    N = r.n_subjects

    def per(a):
        return np.asarray(a).reshape(N, -1)

    per_session = {"cmax": per(cm.cmax_ng_ml), "tmax": per(cm.tmax_h),
                   "auc": per(cm.auc_ng_h_ml), "trough": per(cm.trough_ng_ml),
                   "peak_occupancy": per(cm.peak_occupancy),
                   "peak_glutamate": per(cm.peak_glutamate)}
    for t in thr:
        per_session[f"time_above_occ_{t:g}"] = per(cm.time_above_h[t])
    out = {"session_start_h": cm.session_start_h}
    for m in metrics:
        key = m
        if m.startswith("time_above_occ_"):
            key = f"time_above_occ_{float(m.rsplit('_', 1)[1]):g}"
        if m == "plasticity_end":
            out[m] = np.asarray(cm.plasticity_end).reshape(N)
            continue
        a = per_session[key]
        for k in range(a.shape[1]):
            out[f"{m}_s{k + 1}"] = a[:, k]
        if m in ("cmax", "peak_occupancy", "peak_glutamate"):
            out[m] = np.nanmax(a, axis=1)
        elif m == "tmax":
            out[m] = a[np.arange(N), np.nanargmax(per_session["cmax"], axis=1)]
        elif m == "trough":
            out[m] = a[:, -2] if a.shape[1] > 1 else np.full(N, np.nan)
        else:
            out[m] = np.nansum(a, axis=1)
    return out
