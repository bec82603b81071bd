"""Dose tables -> per-subject event arrays for the kernels.

Event kinds (``ev_kind``), applied in this order when several fall at the same time:

===== =========== ==================================================================
kind  name        effect on the state ``x`` and the input rates ``u``
===== =========== ==================================================================
 -1   STOP        an infusion ends: ``u[c] -= amt`` (rate, mg/h)
  2   RESET       every amount set to 0 (NONMEM EVID 3); infusions must be stopped first
  3   ADD_STATE   ``x += ev_vec[s, c]`` (a precomputed state vector, e.g. a steady state)
  0   BOLUS       ``x[c] += amt`` (mg)
  1   START       an infusion starts: ``u[c] += amt`` (rate, mg/h)
===== =========== ==================================================================
"""

from __future__ import annotations

import numpy as np

from .dosing import Doses, expand
from .errors import KetasimInputError, check_name
from .model import Model

__all__ = ["build_events", "sort_events", "subject_covariates", "BOLUS", "START", "STOP",
           "RESET", "ADD_STATE"]

BOLUS, START, STOP, RESET, ADD_STATE = 0, 1, -1, 2, 3
_PRIORITY = np.array([3, 4, 1, 2, 0])   # indexed by kind (STOP = -1 -> last entry): stops first


def sort_events(ev_t: np.ndarray, ev_k: np.ndarray) -> np.ndarray:
    """Order (N, E) of events by time, then kind priority (stop, reset, add, bolus, start),
    then input order."""
    return np.lexsort((_PRIORITY[ev_k], ev_t), axis=-1)


def subject_covariates(doses: Doses):
    """Subjects and covariates a dose table defines: ``(n_subjects or None, {name: (N,)})``.

    A plain dose table defines none (the same records apply to every subject)."""
    return None, {}


def _broadcast(v, shape, what, model, lo=None, hi=None):
    a = np.broadcast_to(np.asarray(v, dtype=np.float64), shape)
    bad = ~np.isfinite(a)
    if bad.any():
        raise KetasimInputError(f"{model.source}: {what} evaluated to {a[bad][0]!r}; expected a "
                                "finite number")
    if lo is not None and np.any(a < lo):
        raise KetasimInputError(f"{model.source}: {what} evaluated to {a[a < lo][0]:g}; "
                                f"expected >= {lo:g}")
    if hi is not None and np.any(a > hi):
        raise KetasimInputError(f"{model.source}: {what} evaluated to {a[a > hi][0]:g}; "
                                f"expected <= {hi:g}")
    return a


def build_events(model: Model, doses: Doses, vals: dict):
    """Turn a dose table into per-subject event arrays, sorted by time.

    Returns ``(ev_t, ev_c, ev_amt, ev_kind, nev, ev_vec)``: times (N, E) h, state index (N, E),
    amount (mg, bolus) or rate (mg/h, infusion start/stop) (N, E), kind (N, E) (see the
    module docstring), event counts (N,) (rows of subject s beyond ``nev[s]`` are padding),
    and state vectors (N, V, S) for ``ADD_STATE`` events (V >= 1; zeros when unused).
    """
    n = vals["WT"].shape[0]
    for i, r in enumerate(doses.route):
        if r not in model.routes:
            check_name(r, model.routes, f"row {i + 1}: route", doses.source)
    n_parts = sum(len(model.routes[r]) if r in model.routes else 1 for r in set(doses.route))
    n_ev = 2 * int(np.sum(doses.addl + 1)) * max(n_parts, 1)
    # about ten (N, E) arrays are alive at once while the events are built and sorted
    from .simulate import check_memory
    check_memory(n * n_ev, f"dose events: {n:,} subjects x {n_ev:,} events",
                 bytes_per_value=80)
    d = expand(doses)
    idx = {s: i for i, s in enumerate(model.state_names)}
    blocks = []
    routes = np.asarray(d.route, dtype=object)
    for r in dict.fromkeys(d.route):
        check_name(r, model.routes, "route", d.source)
        sel = np.nonzero(routes == r)[0]
        env = {k: v[:, None] for k, v in vals.items()}
        env["AMT"] = d.amount_mg[sel][None, :]
        shape = (n, sel.size)
        for j, part in enumerate(model.routes[r]):
            w = f"routes.{r}" + (f".parts[{j}]" if len(model.routes[r]) > 1 else "")
            f = _broadcast(part.f.evaluate(env), shape, f"{w}.f = {part.f.text}", model, 0, 1)
            lag = _broadcast(part.lag_h.evaluate(env), shape, f"{w}.lag_h = {part.lag_h.text}",
                             model, 0)
            if part.duration_h is not None:
                dur = _broadcast(part.duration_h.evaluate(env), shape,
                                 f"{w}.duration_h = {part.duration_h.text}", model, 0)
            else:
                dur = np.broadcast_to(d.duration_h[sel][None, :], shape)
            t0 = d.time_h[sel][None, :] + lag
            amt = env["AMT"] * f
            inf = (dur > 0) & (t0 + dur > t0)   # a duration lost to rounding is a bolus
            with np.errstate(all="ignore"):
                rate = np.where(inf, amt / np.where(inf, dur, 1.0), amt)
            if not np.all(np.isfinite(rate)):
                j = np.unravel_index(int(np.argmax(~np.isfinite(rate))), shape)
                raise KetasimInputError(
                    f"{d.source}: route {r}: {float(amt[j]):g} mg over duration_h = "
                    f"{float(dur[j]):g} h is an infusion rate beyond the float range; expected "
                    "duration_h = 0 (a bolus) or a longer infusion")
            c = np.full(shape, idx[part.to], np.int64)
            blocks.append((t0, c, rate, np.where(inf, 1, 0)))
            blocks.append((t0 + dur, c, np.where(inf, rate, 0.0), np.where(inf, -1, 0)))
    S = len(model.state_names)
    if not blocks:
        z = np.zeros((n, 0))
        return (z, z.astype(np.int64), z.copy(), z.astype(np.int64), np.zeros(n, np.int64),
                np.zeros((n, 1, S)))
    ev_t = np.concatenate([np.broadcast_to(b[0], b[1].shape) for b in blocks], axis=1)
    ev_c = np.concatenate([b[1] for b in blocks], axis=1)
    ev_a = np.concatenate([np.broadcast_to(b[2], b[1].shape) for b in blocks], axis=1)
    ev_k = np.concatenate([np.broadcast_to(b[3], b[1].shape) for b in blocks], axis=1)
    order = sort_events(ev_t, ev_k)
    take = lambda a, dt: np.ascontiguousarray(np.take_along_axis(a, order, axis=1), dtype=dt)  # noqa: E731
    return (take(ev_t, np.float64), take(ev_c, np.int64), take(ev_a, np.float64),
            take(ev_k, np.int64), np.full(n, ev_t.shape[1], np.int64), np.zeros((n, 1, S)))


