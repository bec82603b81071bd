"""The public ``simulate``: coerce → validate → kernel → wrap."""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import contextmanager

import numpy as np

from . import _kernels
from .dosing import Doses, read_doses
from .errors import KetasimInputError
from .events import apply_covariates, build_events
from .model import GLUTAMATE_ROLES
from .modelfile import load_model
from .result import PD_OUTPUTS, Result

__all__ = ["simulate", "build_events", "time_grid", "DEFAULT_PD_MAX_STEP_H"]

DEFAULT_PD_MAX_STEP_H = 1.0 / 60.0   # RK4 sub-step for the schematic response: 1 minute
MAX_GRID_POINTS = 200_000_000
MAX_ABS_OUTPUT = 1e250               # larger outputs are reported as an overflow


def _available_bytes() -> int:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 * 2**30


def check_memory(n_values: int, what: str, limit_bytes: int | None = None,
                 bytes_per_value: int = 8) -> None:
    """Refuse, before allocating, an array of ``n_values`` float64 that cannot fit."""
    need = n_values * bytes_per_value
    avail = _available_bytes() if limit_bytes is None else limit_bytes
    if need > 0.8 * avail:
        raise KetasimInputError(
            f"{what} = {n_values:,} values ({need / 2**30:.1f} GiB), more than fits in memory "
            f"(about {avail / 2**30:.1f} GiB available); use a coarser step, a shorter "
            "horizon, fewer outputs or fewer subjects per call")


def time_grid(until_h: float, step_h: float, start_h: float = 0.0) -> np.ndarray:
    """``start, start+step, …`` up to and including ``until`` (hours), validated."""
    for nm, v in (("until", until_h), ("step", step_h), ("start", start_h)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) or \
                not np.isfinite(v):
            raise KetasimInputError(f"{nm}: got {v!r}, expected a finite number of hours")
    if step_h <= 0:
        raise KetasimInputError(f"step: got {step_h:g} h, expected a step > 0 hours")
    if until_h < start_h or start_h < 0:
        raise KetasimInputError(f"until: got {until_h:g} h, expected >= {max(start_h, 0):g} h")
    n = int(np.floor((until_h - start_h) / step_h * (1 + 1e-12))) + 1
    if n > MAX_GRID_POINTS:
        raise KetasimInputError(
            f"step: until {until_h:g} h / step {step_h:g} h gives {n:,} time points "
            f"({n * 8 / 2**30:.1f} GiB per output), more than the {MAX_GRID_POINTS:,} allowed; "
            "use a larger step")
    check_memory(n, f"time grid: {n:,} points")
    t = start_h + step_h * np.arange(n)
    if t[-1] < until_h - 1e-9 * max(1.0, until_h):
        t = np.append(t, until_h)
    return t


def _coerce_times(times) -> np.ndarray:
    try:
        t = np.asarray(times, dtype=np.float64)
    except (TypeError, ValueError):
        raise KetasimInputError(f"times: got {times!r}, expected an array of hours") from None
    t = np.atleast_1d(t)
    if t.ndim != 1 or t.size == 0:
        raise KetasimInputError(f"times: expected a non-empty 1-D array of hours, got shape "
                                f"{t.shape}")
    bad = ~np.isfinite(t)
    if bad.any():
        raise KetasimInputError(f"times: got {t[bad][0]!r} at index {int(np.argmax(bad))}, "
                                "expected finite hours")
    if t[0] < 0:
        raise KetasimInputError(f"times: got {t[0]:g} h, expected times >= 0")
    d = np.diff(t)
    if np.any(d < 0):
        i = int(np.argmax(d < 0))
        raise KetasimInputError(f"times: not sorted: {t[i]:g} h is followed by {t[i + 1]:g} h; "
                                "expected non-decreasing hours")
    return np.ascontiguousarray(t)


def _coerce_doses(doses) -> Doses:
    if isinstance(doses, Doses):
        return doses
    if isinstance(doses, (str, os.PathLike)):
        return read_doses(doses)
    if isinstance(doses, (list, tuple)) and all(isinstance(r, dict) for r in doses):
        return Doses.from_records(doses)
    raise KetasimInputError(f"doses: got {type(doses).__name__}, expected a Doses, a list of "
                            "dose records or a CSV path")


@contextmanager
def _threads(k):
    if k is None:
        yield
        return
    import numba

    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise KetasimInputError(f"threads: got {k!r}, expected a whole number >= 1")
    old = numba.get_num_threads()
    numba.set_num_threads(min(k, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(old)


def simulate(model, doses, times, params: dict | None = None, weight_kg=70.0, *,
             outputs=None, amounts: bool = False, pd_max_step_h: float = DEFAULT_PD_MAX_STEP_H,
             threads: int | None = None) -> Result:
    """Simulate a model for one subject or a population, exactly between dose events.

    Parameters
    ----------
    model : Model or str
        A :class:`Model`, a preset name or a TOML path.
    doses : Doses, list of dict, or str
        The dose table (a CSV path is read with :func:`read_doses`).
    times : array-like (T,)
        Sorted output times in hours (>= 0). The system is empty before the first dose.
    params : dict, optional
        Parameter overrides: name -> scalar, or array (N,) for a population / sweep.
    weight_kg : float or array (N,)
        Body weight (kg) used by the model's weight scaling.
    outputs : list of str, optional
        Output names; default: every concentration, plus the PD outputs the model defines.
    amounts : bool
        Also record the amount (mg) in every compartment (``result.amount(name)``) and the
        cumulative eliminated amount (``result.amount("eliminated")``).
    pd_max_step_h : float
        Largest RK4 sub-step (h) for the schematic glutamate/plasticity response.
    threads : int, optional
        Numba threads for this call.

    Returns
    -------
    Result
        Outputs of shape (T,) per name, or (N, T) when ``params``/``weight_kg`` hold arrays.

    Examples
    --------
    >>> import ketasim
    >>> m = ketasim.load_model("esketamine-nasal")
    >>> d = ketasim.Doses.single(56.0, "intranasal")
    >>> r = ketasim.simulate(m, d, ketasim.time_grid(24, 1 / 60))
    >>> round(float(r.concentration("plasma").max()), 1)  # doctest: +SKIP
    72.5
    """
    model = load_model(model)
    doses = _coerce_doses(doses)
    t = _coerce_times(times)
    if not (isinstance(pd_max_step_h, (int, float)) and np.isfinite(pd_max_step_h)
            and pd_max_step_h > 0):
        raise KetasimInputError(f"pd_max_step_h: got {pd_max_step_h!r}, expected hours > 0")
    if params is not None and not isinstance(params, Mapping):
        raise KetasimInputError(f"params: got {type(params).__name__}, expected a dict of "
                                "parameter name -> value (or array of values)")
    # a dose table with subjects/covariates: one subject per ID, covariates into params
    params, weight_kg, n_subjects = apply_covariates(model, doses, params, weight_kg)
    population = (any(np.ndim(v) > 0 for v in (params or {}).values()) or np.ndim(weight_kg) > 0
                  or n_subjects is not None)
    vals = model.resolve(params, weight_kg, n=n_subjects)
    n = vals["WT"].shape[0]

    pd_mode = 2 if model.has_glutamate else (1 if model.has_occupancy else 0)
    pd_names = list(PD_OUTPUTS[:{0: 0, 1: 1, 2: 3}[pd_mode]])
    amount_names = ([f"amount:{c}" for c in model.compartments] + ["amount:eliminated"]
                    if amounts else [])
    if outputs is None:
        names = list(model.concentration_names) + amount_names
    else:
        requested = [outputs] if isinstance(outputs, str) else list(outputs)
        names = []
        for nm in requested:
            if nm in PD_OUTPUTS:
                if nm not in pd_names:
                    raise KetasimInputError(f"outputs: model {model.name!r} has no {nm!r} output")
                continue
            names.append(nm)
        names += [a for a in amount_names if a not in names]
        if not any(nm in PD_OUTPUTS for nm in requested):
            pd_mode, pd_names = 0, []
    sink = amounts or any(nm == "amount:eliminated" for nm in names)

    K = model.matrices(vals, sink=sink)
    C = model.observation(vals, names, sink=sink)
    w = np.zeros((n, K.shape[1]))          # occupancy weights; the sink (if any) has none
    if pd_mode >= 1:
        w[:, :len(model.state_names)] = model.occupancy_weights(vals)
    pdp = (model.glutamate_parameters(vals) if pd_mode == 2
           else np.zeros((n, len(GLUTAMATE_ROLES))))
    ev = build_events(model, doses, vals)

    R = len(names) + len(pd_names)
    check_memory(n * R * t.size, f"output: {n:,} subjects x {R} outputs x {t.size:,} times")
    out = np.empty((n, R, t.size))
    diffs = np.diff(t[:1001])
    pos = diffs[diffs > 0]
    h_main = float(np.median(pos)) if pos.size else -1.0   # the grid step, reused
    if pd_mode == 2 and h_main > 0:
        h_main = h_main / max(1, int(np.ceil(h_main / pd_max_step_h - 1e-9))) / 2.0
    # the rounding level of the times the kernel steps between: events after the last output
    # time are never reached, so they must not widen the tolerance (they did, silently)
    scale = max(1.0, float(t[-1]))
    h_tol = 16.0 * np.finfo(float).eps * scale
    # per-subject arrays: row s belongs to subject s
    per_subject = [np.ascontiguousarray(a) for a in (K, *ev, C, w, pdp)]
    K_, ev_t, ev_c, ev_a, ev_k, nev, ev_v, C_, w_, pdp_ = per_subject
    scalars = (pd_mode, float(pd_max_step_h), h_main, h_tol)
    with _threads(threads):
        if n == 1:   # one subject: the serial kernel (the parallel one compiles when needed)
            _kernels.simulate_one(K_[0], t, ev_t[0], ev_c[0], ev_a[0], ev_k[0], int(nev[0]),
                                  ev_v[0], C_[0], w_[0], pdp_[0], *scalars, out[0])
        else:
            _kernels.simulate_many(K_, t, ev_t, ev_c, ev_a, ev_k, nev, ev_v, C_, w_, pdp_,
                                   *scalars, out)
    # max/min propagate NaN and need no temporary array; the margin keeps unit conversions
    # (x 1000 to ng/mL) and AUC sums finite
    if out.size and not (-MAX_ABS_OUTPUT < out.min() and out.max() < MAX_ABS_OUTPUT):
        big = np.max(np.abs(out), axis=(0, 2))   # NaN propagates: flagged as well
        row = int(np.argmax(~(big < MAX_ABS_OUTPUT)))
        name = (tuple(names) + tuple(pd_names))[row]
        raise KetasimInputError(
            f"simulation: output {name!r} overflows (|value| >= {MAX_ABS_OUTPUT:g} or not a "
            "number): check for extreme amounts, rates or volumes in the model and dose table")
    all_names = tuple(names) + tuple(pd_names)
    out.setflags(write=False)
    return Result(times=t, names=all_names, data=out, population=population, params=vals,
                  model=model, doses=doses)

