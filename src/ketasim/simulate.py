"""The public ``simulate``: coerce → validate → kernel → wrap."""

from __future__ import annotations

import numpy as np

from .engine import (
    DEFAULT_PD_RTOL,
    _nominal_step,
    check_memory,
    prepare,
    run,
    warn_dose_routes,
)
from .errors import KetasimInputError, is_real
from .events import build_events
from .model import Model
from .result import Result

__all__ = ["simulate", "build_events", "time_grid", "check_memory", "DEFAULT_PD_RTOL"]

MAX_GRID_POINTS = 200_000_000


def time_grid(until_h: float, step_h: float, start_h: float = 0.0) -> np.ndarray:
    """``start, start+step, …`` up to and including ``until`` (hours), validated."""
    for nm, v in (("until", until_h), ("step", step_h), ("start", start_h)):
        if not is_real(v) or not np.isfinite(v):
            raise KetasimInputError(f"{nm}: got {v!r}, expected a finite number of hours")
    if step_h <= 0:
        raise KetasimInputError(f"step: got {step_h:g} h, expected a step > 0 hours")
    if until_h < start_h or start_h < 0:
        raise KetasimInputError(f"until: got {until_h:g} h, expected >= {max(start_h, 0):g} h")
    with np.errstate(all="ignore"):
        nf = np.floor((until_h - start_h) / step_h * (1 + 1e-12)) + 1
    if not np.isfinite(nf) or nf > MAX_GRID_POINTS:
        raise KetasimInputError(
            f"step: until {until_h:g} h / step {step_h:g} h gives "
            + ((f"{nf:,.0f} time points ({nf * 8 / 2**30:,.1f} GiB per output)" if nf < 1e15
                else f"{nf:.3g} time points") if np.isfinite(nf) else "more than 1e308 time points")
            + f", more than the {MAX_GRID_POINTS:,} allowed; use a larger step or a shorter "
            "horizon")
    n = int(nf)
    if n > 1 and not (start_h + step_h * (n - 1) > start_h + step_h * (n - 2)):
        raise KetasimInputError(f"step: {step_h:g} h is below the rounding of the times near "
                                f"{until_h:g} h; use a larger step")
    check_memory(n, f"time grid: {n:,} points")
    t = float(start_h) + float(step_h) * np.arange(n)
    # a last point within rounding of until (a billionth of a step, or a few ulp of until)
    # is until: 7 x 0.1 is 0.7000000000000001, and 3 x 0.3333333333 is 0.9999999999 (which
    # had ended the grid there, short of until = 1, as had any last point less than 1e-9 h
    # short of a small until: --until 1e-6 --step 3e-9 ended at 9.99e-7)
    tol = max(1e-9 * min(float(step_h), until_h - start_h),
              16 * np.finfo(float).eps * max(abs(until_h), 1e-300))
    if t[-1] < until_h - tol:
        t = np.append(t, float(until_h))
    elif t.size > 1 or t[-1] > until_h:      # (one point: the start, kept)
        t[-1] = float(until_h)
    return t


def _coerce_times(times) -> np.ndarray:
    from . import _kernels

    try:
        raw = np.asarray(times)
        if raw.dtype.kind not in "iuf":     # text, bools or objects are not hours
            raise TypeError
        t = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        shown = repr(times) if len(repr(times)) < 80 else repr(times)[:77] + "..."
        raise KetasimInputError(f"times: got {shown}, expected an array of hours") from None
    t = np.atleast_1d(t)
    if t.ndim != 1 or t.size == 0:
        raise KetasimInputError(f"times: expected a non-empty 1-D array of hours, got shape "
                                f"{t.shape}")
    t = np.ascontiguousarray(t)
    kind, i, uniform = _kernels.times_fault(t)
    if kind == 1:
        raise KetasimInputError(f"times: got {float(t[i])!r} at index {i}, expected finite "
                                "hours")
    if t[0] < 0:
        raise KetasimInputError(f"times: got {t[0]:g} h, expected times >= 0")
    if kind == 2:
        raise KetasimInputError(f"times: not sorted: {t[i]:g} h is followed by {t[i + 1]:g} h; "
                                "expected non-decreasing hours")
    return t, uniform


def simulate(model, doses, times, params: dict | None = None, weight_kg=70.0, *,
             outputs=None, amounts: bool = False, threads: int | None = None,
             occupancy_calibration: str | None = None,
             pd_rtol: float = DEFAULT_PD_RTOL, dtype="float64") -> Result:
    """Simulate a model for one subject or a population, exactly between dose events.

    Parameters
    ----------
    model : Model or str
        A :class:`Model`, a preset name or a TOML path.
    doses : Doses, list of dict, DataFrame, or str
        The dose table (dose records or a pandas DataFrame with the dose-table columns, NaN
        meaning not given; a CSV path is read with :func:`read_doses`; a course name such as
        ``"standard-iv"`` builds that course; a ``.toml`` course file is read with
        :func:`read_course_toml`).
    times : array-like (T,)
        Sorted output times in hours (>= 0). The system is empty before the first dose. At an
        output time that equals a dose time (to rounding) the value just after the dose is
        reported.
    params : dict, optional
        Parameter overrides: name -> scalar, or array (N,) for a population / sweep.
    weight_kg : float or array (N,)
        Body weight (kg) used by the model's weight scaling.
    outputs : list of str, optional
        Output names; default: every concentration, plus the occupancy and schematic outputs
        the model defines (a model with no concentration: its compartments' amounts). A name
        given twice is one output. Rows come in the order of ``result.names``:
        concentrations (and amounts), then occupancy, then the schematic outputs, whatever
        the order given.
        Occupancy is computed from the exact state; the schematic response is integrated only
        when ``glutamate``, ``plasticity`` or ``consolidation`` is asked for.
    amounts : bool
        Also record the amount (mg) in every compartment (``result.amount(name)``) and the
        cumulative eliminated amount (``result.amount("eliminated")``; as NONMEM's output
        compartment, it starts again from 0 at a reset, EVID 3 or 4, and at an SS = 1 dose).
    threads : int, optional
        Threads for this call (default: one per core, or ``NUMBA_NUM_THREADS``): subjects
        are shared among them; the results never depend on it.
    occupancy_calibration : str, optional
        The occupancy calibration of the model to report as ``occupancy`` (default: the
        model's default).
    pd_rtol : float
        Relative tolerance of the schematic response's error-controlled integrator
        (default 1e-6), relative to each value plus 1e-3 (for glutamate its rise above the
        baseline of 1, which drives the plasticity): a response far below 1e-3 is accurate
        in absolute terms only.
        From 1e-11 (below it rounding sets the error, not the tolerance) to 0.1.
    dtype : "float64" or "float32"
        Storage of the outputs (the computation is always float64); float32 halves memory.

    Returns
    -------
    Result
        Outputs of shape (T,) per name, or (N, T) when ``params``/``weight_kg`` hold arrays
        (or the dose table has subjects).

    Examples
    --------
    >>> import ketasim
    >>> m = ketasim.load_model("esketamine-nasal")
    >>> d = ketasim.Doses.single(56.0, "intranasal")
    >>> r = ketasim.simulate(m, d, ketasim.time_grid(24, 1 / 60))
    >>> round(float(r.concentration("plasma").max()), 1)  # Perez-Ruixo 2021 Table 4: 72.5
    73.0
    """
    plan = prepare(model, doses, params, weight_kg, outputs=outputs, amounts=amounts,
                   occupancy_calibration=occupancy_calibration, pd_rtol=pd_rtol)
    warn_dose_routes(plan.model, plan.doses, "simulate")
    t, uniform = _coerce_times(times)
    # the grid was read once for its checks; whether it is uniform came with them
    h_nom = _nominal_step(t, uniform)
    own = [] if isinstance(times, np.ndarray) and np.may_share_memory(t, times) else None
    out = run(plan, t, threads=threads, dtype=dtype, _h_nom=h_nom, times_out=own)
    out.setflags(write=False)
    # a result keeps what its metrics re-run from (parameters, weights, the model's parameter
    # dict) as its own, whatever the caller later does to those arrays or that dict; so too
    # its time grid: the caller's array (float64 already) is copied, read-only, once the run
    # is done (a caller changing it afterwards had relabelled the result's values)
    if own is not None:           # the caller's array: the result gets its own copy
        if own:
            own[0][:] = t
            t = own[0]
        else:
            t = t.copy()
    t.setflags(write=False)
    vals = plan.vals                # (resolved for this call: the result's own arrays)
    for v in vals.values():
        if isinstance(v, np.ndarray):
            v.setflags(write=False)
    inputs = dict(plan.inputs)
    inputs["params"] = {k: _frozen(v) for k, v in (inputs.get("params") or {}).items()}
    inputs["weight_kg"] = _frozen(inputs.get("weight_kg"))
    if isinstance(plan.model, Model):
        inputs["model_parameters"] = dict(plan.model.parameters)   # see course_metrics
    return Result(times=t, names=plan.names, data=out, population=plan.population,
                  params=vals, model=plan.model, doses=plan.doses, inputs=inputs)


def _frozen(v):
    """A read-only copy of an array-like value (a scalar as it is)."""
    if np.ndim(v) == 0:
        return v
    a = np.array(v)
    a.setflags(write=False)
    return a
