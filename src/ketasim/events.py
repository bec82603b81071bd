"""Dose tables -> per-subject event arrays for the kernels.

Event kinds (``ev_kind``), applied in this order when several fall at the same time:

===== =========== ==================================================================
kind  name        effect on the state ``x`` and the input rates ``u``
===== =========== ==================================================================
 -1   STOP        an infusion ends: ``u[c] -= amt`` (rate, mg/h)
  2   RESET       every amount set to 0 (NONMEM EVID 3); infusions must be stopped first
                  (the kernels empty the first ``c`` states: the metrics AUC integrator stays)
  3   ADD_STATE   ``x += ev_vec[s, c]`` (a precomputed state vector, e.g. a steady state)
  0   BOLUS       ``x[c] += amt`` (mg)
  1   START       an infusion starts: ``u[c] += amt`` (rate, mg/h)
===== =========== ==================================================================

How dose rows become events (:func:`build_events`):

* Each route part delivers ``f · amount_mg`` to its compartment ``lag_h`` after the record
  time: over the part's own ``duration_h`` if the model gives one, else over the row's
  ``duration_h`` (bioavailability changes the rate), else at the row's ``rate_mg_h`` (the
  duration becomes ``f · amount / rate``: bioavailability changes the duration, NONMEM's RATE;
  the rate is the route's as a whole, so the parts of a split route that take it run over one
  time, ``(sum of their f) · amount / rate``, each at its share), else as a bolus. An
  infusion's rate is ``amount / ((t0 + dur) - t0)`` computed from the float times the kernel
  steps between, so it delivers exactly its amount however short; a duration
  lost to rounding (``t0 + dur`` within 16 ulp of ``t0``, which the engine takes for the same
  instant) is a bolus of the same amount.
* A reset (``evid`` 3 or 4, or ``ss = 1``) empties every state at its record time (a route's
  lag does not delay it). Infusions running at that time stop there (their STOP moves to the
  reset time), and inputs of earlier rows that have not started yet (a lag reaching past the
  reset) are cancelled, as are earlier rows' ``addl`` repeats from the reset time on (dropped
  by :func:`ketasim.dosing.expand`). At equal times a reset applies before any dose. The schematic
  glutamate/plasticity states are not reset.
* Steady state (``ss`` 1 or 2, interval ``τ = ii_h``). In the periodic regime every earlier
  interval ``[t_d − (j+1)τ, t_d − jτ)`` (j ≥ 0) receives the same input: each part's input of
  one dose folded modulo τ — a bolus at offset ``lag mod τ``, an infusion over
  ``[lag, lag + dur)`` counted once per overlapping copy (an infusion longer than τ overlaps
  the next doses' infusions, as in NONMEM). With ``b`` the state at the end of one interval
  that starts empty and receives that folded input (propagated exactly, segment by segment,
  with ``Φ(h)``, ``Γ(h)`` from :func:`ketasim._kernels.propagator`), the state just before the
  dose is ``x_ss = Σ_j Φ(τ)^j b = (I − Φ(τ))⁻¹ b``: one linear solve, with ``I − Φ(τ)``
  formed as ``−K Γ(τ)`` (no cancellation for rates slow next to ``1/τ``). It is emitted as
  ``RESET`` (``ss = 1`` only) and ``ADD_STATE`` at ``t_d``; inputs of the earlier (virtual)
  doses that are still to come at ``t_d`` — infusions still running, lagged boluses not yet
  arrived — are emitted as real START/STOP and BOLUS events; then the dose at ``t_d`` itself is
  given as usual (and its ``addl`` repeats). With ``ii_h = 0``, ``amount_mg = 0`` and a
  ``rate_mg_h``, the steady state of a constant infusion at ``rate`` is ``−K⁻¹ u`` and the
  infusion keeps running: the rate is the route's as a whole (a part of a split route takes
  its share ``f / Σ f``), and bioavailability does not lower it, as in NONMEM (which applies
  F to every dose except a steady-state constant infusion), and as a rate-defined infusion
  running for ever would give.
"""

from __future__ import annotations

import math

import numpy as np

from . import _expr
from .dosing import WEIGHT, Doses, expand
from .errors import KetasimInputError, check_name, suggest, which_subject
from .model import Model, RoutePart

__all__ = ["build_events", "sort_events", "subject_covariates", "BOLUS", "START", "STOP",
           "RESET", "ADD_STATE"]

BOLUS, START, STOP, RESET, ADD_STATE = 0, 1, -1, 2, 3
_PRIORITY = np.array([3, 4, 1, 2, 0])   # indexed by kind (STOP = -1 -> last entry): stops first
_SAME_INSTANT = 16 * np.finfo(float).eps   # relative: times closer than this are one instant


def _longest_run_h() -> float:
    """The longest run whose metrics ketasim computes, h (:data:`ketasim.engine.
    PD_MAX_HORIZON_H`, about 1,100 years)."""
    from .engine import PD_MAX_HORIZON_H
    return PD_MAX_HORIZON_H


def long_infusion_error(source, where: str, amount: float, rate: float, dur: float,
                        kind: str) -> KetasimInputError:
    """The error for an infusion longer than :func:`_longest_run_h`, at ``where`` (a dose
    row); ``kind``: what sets its length, ``"rate"`` (rate_mg_h), ``"duration"`` (the row's
    duration_h) or ``"model"`` (the route's own duration_h)."""
    how = {"rate": f"rate_mg_h {rate:g} mg/h gives its {amount:g} mg over {dur:.3g} h",
           "duration": f"duration_h {dur:.3g} h",
           "model": f"the route's duration_h (in the model) {dur:.3g} h"}[kind]
    fix = {"rate": "a higher rate_mg_h (or a duration_h)", "duration": "a shorter duration_h",
           "model": "a shorter duration_h in the model"}[kind]
    return KetasimInputError(
        f"{source}: {where}: {how}, an infusion longer than the longest run ketasim computes "
        f"metrics for ({_longest_run_h():,.0f} h, about 1,100 years): it would never end within "
        f"a run, whose curves and metrics would show next to nothing of it; expected {fix}")
_ONE = _expr.parse(1.0, "f")
_ZERO = _expr.parse(0.0, "lag_h")


def sort_events(ev_t: np.ndarray, ev_k: np.ndarray) -> np.ndarray:
    """Order (N, E) of events by time, then kind priority (stop, reset, add, bolus, start),
    then input order."""
    return np.lexsort((_PRIORITY[ev_k], ev_t), axis=-1)


# ---------------------------------------------------------------------- subjects, covariates
def _subject_index(doses: Doses):
    """(IDs in order of first appearance, index of each row's subject)."""
    ids, first, inv = np.unique(doses.subject, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")          # unique sorts; keep file order instead
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return ids[order], rank[inv.reshape(-1)]


def subject_covariates(doses: Doses, model: Model | None = None):
    """Subjects and covariates a dose table defines: ``(n_subjects or None, {name: array})``.

    With a ``subject`` column: one subject per ID (in order of first appearance) and, for each
    covariate column, an array (N,) of its per-subject value (blank cells take the subject's
    value from its other rows; a value that changes within a subject is an error). Without
    one: ``None`` and, for each covariate column, a 0-d array (the column must hold one value
    over the table) that applies to every subject. The weight column is ``weight_kg``.

    With ``model``, covariate names are checked: ``weight_kg`` or a parameter of the model
    (a typo gets a did-you-mean; a derived value cannot be set).
    """
    if model is not None:
        known = list(model.parameters) + [WEIGHT]
        for k in doses.covariates:
            if k in model.parameters or k == WEIGHT:
                continue
            if k in model.derived:
                raise KetasimInputError(f"{doses.source}: column {k!r} is derived in model "
                                        f"{model.name!r} ({model.derived[k].text}); give its "
                                        "inputs as columns instead")
            raise KetasimInputError(
                f"{doses.source}: unknown column {k!r}{suggest(k, known)}: not a dose-table "
                f"column, a NONMEM data item, weight_kg or a parameter of model {model.name!r}")
    if doses.subject is None:
        out = {}
        for k, a in doses.covariates.items():
            v = a[~np.isnan(a)]
            if v.size == 0:
                raise KetasimInputError(f"{doses.source}: column {k!r} is blank on every row; "
                                        "expected a value")
            if np.any(v != v[0]):
                i = int(np.argmax(~np.isnan(a) & (a != v[0])))
                raise KetasimInputError(
                    f"{doses.source}: {doses.where(i)}: {k} = {a[i]:g}, but {v[0]:g} on an "
                    "earlier row; without a subject column a covariate holds one value for "
                    "the whole table")
            out[k] = np.asarray(v[0])          # a 0-d array: one value for every subject
        return None, out
    ids, sid = _subject_index(doses)
    n = ids.size
    out = {}
    for k, a in doses.covariates.items():
        lo = np.full(n, np.inf)
        hi = np.full(n, -np.inf)
        np.fmin.at(lo, sid, a)
        np.fmax.at(hi, sid, a)
        if np.any(np.isinf(lo)):
            s = int(np.argmax(np.isinf(lo)))
            raise KetasimInputError(f"{doses.source}: subject {ids[s]:g}: {k} is blank on every "
                                    "row; expected a value")
        if np.any(lo != hi):
            s = int(np.argmax(lo != hi))
            raise KetasimInputError(
                f"{doses.source}: subject {ids[s]:g}: {k} changes from {lo[s]:g} to {hi[s]:g}; "
                "expected one value per subject (time-varying covariates are not supported)")
        out[k] = lo
    return n, out


# ---------------------------------------------------------------------- routes
def _cmt_number(r: str):
    try:
        x = float(r)
    except ValueError:
        return None
    return int(x) if math.isfinite(x) and x == int(x) else None


def _inputs(model: Model, doses: Doses) -> dict:
    """Route value -> tuple of RoutePart: a model route, a compartment by name, or a
    compartment by number (1-based, NONMEM's CMT)."""
    comps = list(model.compartments)
    out = {}
    for i, r in enumerate(doses.route):
        if r in out or (r == "" and doses.evid[i] == 3):
            continue
        if r in model.routes:
            out[r] = model.routes[r]
            continue
        c = r if r in model.compartments else None
        k = _cmt_number(r)
        if c is None and k is not None and 1 <= k <= len(comps):
            c = comps[k - 1]
        if c is None:
            if r == NASAL_ROUTE:      # a nasal course for a model without the route
                raise KetasimInputError(no_nasal_route(model))
            if k is not None:         # NONMEM's CMT: 0 (default compartment), < 0 (turn off)
                numbered = (" (" + ", ".join(f"{j + 1} = {n}" for j, n in enumerate(comps))
                            + ")" if len(comps) <= 12 else "")
                raise KetasimInputError(
                    f"{doses.source}: {doses.where(i)}: route (CMT): compartment number {r} does "
                    f"not exist; expected 1 to {len(comps)}{numbered} or a route of model "
                    f"{model.name!r} ({', '.join(model.routes) or 'none'})"
                    + ("; NONMEM's CMT = 0 (the default dose compartment) has no equivalent: "
                       "name the compartment or route" if k == 0 else
                       "; NONMEM's negative CMT (a compartment turned off) has no equivalent"
                       if k < 0 else ""))
            check_name(r, list(model.routes) + comps, f"{doses.where(i)}: route",
                       doses.source)
        out[r] = (RoutePart(to=c, f=_ONE, lag_h=_ZERO, duration_h=None),)
    return out


NASAL_ROUTE = "intranasal"        # the route of the nasal-spray courses (spravato)


def no_nasal_route(model: Model) -> str:
    """What to say when nasal doses meet a model without a nasal route (instead of the dose
    table's unknown-route message, whose nearest names are the model's compartments)."""
    return (f"model {model.name!r} has no nasal route (routes: "
            f"{', '.join(sorted(model.routes))}) but the doses are nasal sprays: use a nasal "
            "model such as esketamine-nasal")


SESSION_GAP_H = 1.0     # rows on one route closer than this are one session's


def dose_route_warning(model: Model, doses: Doses) -> str | None:
    """What to warn of in doses the model runs but not as their author likely meant (None:
    nothing), in the CLI and the Python API alike:

    * a dose on a route named as a compartment that a route of the model leads to: the whole
      amount goes in at once (f = 1, no lag), not as the route delivers it (``"nasal"`` for
      the spray's route ``"intranasal"`` gives twice its concentrations);
    * rows of a route whose bioavailability depends on the amount (AMT: the nasal spray's
      devices) less than an hour apart for one subject: a row's amount is a session's total,
      and rows given per device are each taken as a first device (a higher nasal fraction:
      +28 % Cmax for 3 x 28 mg against one 84-mg row)."""
    d = expand(doses)
    routes = set(d.route) - {""}

    def plain(parts):             # a route that is the compartment itself: f = 1, no lag
        return len(parts) == 1 and parts[0].f.text.strip() in ("1", "1.0") and \
            parts[0].lag_h.text.strip() in ("0", "0.0") and parts[0].duration_h is None

    comps = list(model.compartments)
    for r in sorted(routes - set(model.routes)):
        # (a compartment by its number, NONMEM's CMT = 1, goes the same way as by its name)
        k = _cmt_number(r)
        c = r if r in model.compartments else (
            comps[k - 1] if k is not None and 1 <= k <= len(comps) else None)
        via = [name for name, parts in model.routes.items()
               if any(p.to == c for p in parts) and not plain(parts)]
        if c is not None and via:
            nth = "" if c == r else f"number {k} in [compartments] order; "
            return (f"doses on route {r!r} go straight into compartment {c!r} ({nth}the whole "
                    f"amount, f = 1, no lag); the model's route{'s' if len(via) > 1 else ''} "
                    f"{', '.join(map(repr, via))} deliver{'' if len(via) > 1 else 's'} to it "
                    f"as the drug is given: write route = {via[0]!r} for that")
    route = np.asarray(d.route)
    subject = (np.zeros(route.size) if getattr(d, "subject", None) is None
               else np.asarray(d.subject))
    for r in sorted(routes):
        parts = model.routes.get(r, ())
        if not any("AMT" in p.f.names for p in parts):
            continue
        for sid in np.unique(subject[route == r]):    # (each subject's own rows)
            t = np.sort(d.time_h[(route == r) & (subject == sid)])
            gaps = np.diff(t)
            close = np.flatnonzero(gaps < SESSION_GAP_H)
            if close.size:
                from .io import id_label

                i = int(close[0])
                who = "" if getattr(d, "subject", None) is None else \
                    f"subject {id_label(sid)}: "
                return (f"route {r}: {who}doses at {t[i]:g} h and {t[i + 1]:g} h are "
                        f"{gaps[i] * 60:.0f} min apart; its bioavailability depends on the "
                        "amount of a row, which is a session's total (e.g. 84 mg, three "
                        "devices): give one row per session, not one per device")
    return None


def _fail(model, what, v):
    raise KetasimInputError(f"{model.source}: {what} evaluated to {v:g}")


# ---------------------------------------------------------------------- steady state
def _mod(a: float, tau: float) -> float:
    o = a - math.floor(a / tau) * tau
    return 0.0 if (o >= tau or o < 0.0) else o


class _Propagators:
    """Φ(h), Γ(h) for one rate matrix, cached by step length."""

    def __init__(self, K):
        self.K = np.ascontiguousarray(K, dtype=np.float64)
        self.cache = {}

    def __call__(self, h):
        if h not in self.cache:
            from ._kernels import propagator

            S = self.K.shape[0]
            Phi, Gam = np.zeros((S, S)), np.zeros((S, S))
            propagator(self.K, float(h), Phi, Gam)
            self.cache[h] = (Phi, Gam)
        return self.cache[h]


def _reached(K, b) -> np.ndarray:
    """The states the drug reaches from where ``b`` is not zero (following K's flows); the
    others stay empty, so a steady state is solved on these alone: a compartment the doses
    never reach (a side chain, another route's depot) may have no outflow."""
    K = np.asarray(K)
    seen = np.asarray(b) != 0
    todo = list(np.flatnonzero(seen))
    while todo:
        j = todo.pop()
        for i in np.flatnonzero(K[:, j] != 0):
            if not seen[i]:
                seen[i] = True
                todo.append(i)
    return np.flatnonzero(seen)


def _solve_ss(A, b, model, K):
    r = _reached(K, b)
    # a compartment the drug reaches but never leaves (an amount-only excretion compartment:
    # the model has no flow out of it) has no steady amount; as NONMEM's output compartment, it
    # starts empty at the steady-state dose (it feeds nothing, so the others' steady state is
    # the same). A compartment with a volume, or one whose outflows evaluate to 0 (CL = 0, a
    # KA of 0), is no such counter: its steady state does not exist, and the solve says so.
    K = np.asarray(K)
    leaves = {fl.source for fl in model.flows}
    counter = [i for i, c in enumerate(model.compartments)
               if model.compartments[c] is None and c not in leaves]
    r = np.array([i for i in r if i not in counter], dtype=np.int64)
    x = np.zeros(np.shape(b))
    if r.size == 0:
        return x
    try:
        with np.errstate(all="ignore"):
            cond = np.linalg.cond(A[np.ix_(r, r)])
            x[r] = np.linalg.solve(A[np.ix_(r, r)], np.asarray(b)[r])
    except np.linalg.LinAlgError:
        cond = np.inf
    if not (cond < 1e13) or not np.all(np.isfinite(x)):
        names = [s for i, s in enumerate(model.state_names) if K[i, i] == 0 and i in r]
        keep = "" if not names else f" (no outflow from {', '.join(names)})"
        raise KetasimInputError(
            f"{model.source}: steady state (ss) does not exist: the model never clears the "
            f"drug{keep}; a steady state needs every compartment to empty in time")
    return x


def periodic_state(K, tau: float, pieces, model: Model) -> np.ndarray:
    """State just before a dose in the periodic steady state of that dose every ``tau`` hours.

    ``pieces``: (state index, amount mg, lag h, duration h, rate mg/h) per route part; a
    duration of 0 is a bolus. See the module docstring for the method."""
    prop = _Propagators(K)
    S = prop.K.shape[0]
    offs = {0.0, tau}
    bol, inf = [], []
    for c, amt, lag, dur, rate in pieces:
        if dur > 0:
            inf.append((c, rate, lag, dur))
            offs.add(_mod(lag, tau))
            offs.add(_mod(lag + dur, tau))
        else:
            o = _mod(lag, tau)
            bol.append((o, c, amt))
            offs.add(o)
    bps = sorted(offs)
    x = np.zeros(S)
    for lo, hi in zip(bps[:-1], bps[1:]):
        for o, c, amt in bol:
            if o == lo:
                x[c] += amt
        u = np.zeros(S)
        mid = 0.5 * (lo + hi)
        for c, rate, lag, dur in inf:
            u[c] += rate * (math.ceil((lag + dur - mid) / tau) - math.ceil((lag - mid) / tau))
        Phi, Gam = prop(hi - lo)
        x = Phi @ x + Gam @ u
    # I − Φ(τ) = −K Γ(τ) (Γ(τ) = ∫₀^τ e^{Ks} ds): formed from Γ, not as the difference, which
    # cancels when a rate is slow next to 1/τ (1 − e^{−kτ} ≈ kτ) and loses every digit the
    # product kτ is below 1 (a deep compartment emptying at 1e-8 /h: ~1e-8 relative error)
    _, Gam_tau = prop(tau)
    return _solve_ss(-(prop.K @ Gam_tau), x, model, prop.K)


def constant_rate_state(K, u, model: Model) -> np.ndarray:
    """Steady state ``-K⁻¹ u`` of constant inputs ``u`` (mg/h)."""
    K = np.asarray(K, float)
    return _solve_ss(K, -np.asarray(u, float), model, K)


# ---------------------------------------------------------------------- events
def _broadcast(v, shape, what, model, mask, lo=None, hi=None):
    a = np.broadcast_to(np.asarray(v, dtype=np.float64), shape)

    def who(bad):       # which subject, when the value differs between subjects
        return "" if np.ndim(v) == 0 else which_subject(bad)

    bad = ~np.isfinite(a) & mask
    if bad.any():
        raise KetasimInputError(f"{model.source}: {what} evaluated to "
                                f"{float(a[bad][0])!r}{who(bad)}; expected a finite number")
    if lo is not None and np.any((a < lo) & mask):
        bad = (a < lo) & mask
        raise KetasimInputError(f"{model.source}: {what} evaluated to {a[bad][0]:g}{who(bad)}"
                                f"; expected >= {lo:g}")
    if hi is not None and np.any((a > hi) & mask):
        bad = (a > hi) & mask
        raise KetasimInputError(f"{model.source}: {what} evaluated to {a[bad][0]:g}{who(bad)}"
                                f"; expected <= {hi:g} (declare relative_f = true on the route "
                                "for a relative bioavailability above 1)")
    return a


def build_events(model: Model, doses: Doses, vals: dict, *, shared_rows: bool = False):
    """Turn a dose table into per-subject event arrays, sorted by time.

    Returns ``(ev_t, ev_c, ev_amt, ev_kind, nev, ev_vec)``: times (N, E) h, state index (N, E)
    (for ADD_STATE: the row of ``ev_vec``), amount (mg, bolus) or rate (mg/h, infusion
    start/stop) (N, E), kind (N, E) (see the module docstring), event counts (N,) (rows of
    subject s beyond ``nev[s]`` are padding), and state vectors (N, V, S) for ``ADD_STATE``
    events (V >= 1; zeros when unused). ``vals``: resolved parameters, arrays (N,); with a
    ``subject`` column, N must be the number of subjects (see :func:`subject_covariates`).
    ``shared_rows``: an array every subject has alike may come with one row (first dimension
    1) instead of N copies of it (the kernels read row 0 of such an array for every subject).
    """
    n = vals["WT"].shape[0]
    S = len(model.state_names)
    idx = {s: i for i, s in enumerate(model.state_names)}
    inputs = _inputs(model, doses)
    n_parts = max((len(p) for p in inputs.values()), default=1)
    from .simulate import check_memory
    # about ten (N, E) arrays are alive at once while the events are built and sorted
    if doses.subject is None:
        n_ev = (2 * n_parts + 2) * (len(doses) + int(doses.addl.sum()))
        check_memory(n * n_ev, f"dose events: {n:,} subjects x {n_ev:,} events",
                     bytes_per_value=80)
    # subjects whose routes evaluate alike share one row of events (broadcast at the end): a
    # population that varies clearances but not f, lags or durations builds its events once
    used = set()
    for parts_ in inputs.values():
        for p in parts_:
            used |= set(p.f.names) | set(p.lag_h.names)
            used |= set(p.duration_h.names) if p.duration_h is not None else set()
    used = sorted(k for k in used if k in vals)
    varies = n > 1 and any(np.any(vals[k] != vals[k][0]) for k in used)
    # one shared row without steady states (whose state vectors depend on the rate matrices)
    # is kept with the (immutable) dose table, keyed by everything else it depends on: the
    # states, the route parts and the values the route expressions read
    key = None
    if doses.subject is None and not varies and not doses.ss.any():
        key = (model.state_names, tuple(inputs.items()),
               tuple((k, vals[k][:1].tobytes()) for k in used))
        hit = doses._memo().get("events", {}).get(key)
        if hit is not None:
            return _shared_row_events(hit, n, S, shared_rows)
    d = expand(doses)
    D = len(d)

    # rows of each subject: ridx (R0, Dm), padding = D (a harmless extra row)
    if d.subject is None:
        ridx = np.arange(D)[None, :]
    else:
        ids, _ = _subject_index(doses)
        pos = {float(v): i for i, v in enumerate(ids)}
        sid = np.array([pos[float(v)] for v in d.subject], np.int64) if D else \
            np.zeros(0, np.int64)
        if n != ids.size:
            raise KetasimInputError(f"{doses.source}: the dose table has {ids.size:,} subjects "
                                    f"but the parameters describe {n:,}; give per-subject "
                                    "values as covariate columns of the table")
        counts = np.bincount(sid, minlength=n)
        order = np.argsort(sid, kind="stable")          # time order kept within a subject
        k = np.arange(D) - np.repeat(np.cumsum(counts) - counts, counts)
        ridx = np.full((n, max(int(counts.max()), 1)), D, np.int64)
        ridx[sid[order], k] = order
    R0, Dm = ridx.shape
    nb = 1 if (R0 == 1 and not varies) else n
    shape = (nb, Dm)
    if d.subject is not None:
        n_ev = (2 * n_parts + 2) * Dm
        check_memory(n * n_ev, f"dose events: {n:,} subjects x {n_ev:,} events",
                     bytes_per_value=80)

    def g(a, fill):
        return np.append(np.asarray(a), fill)[ridx]

    valid = ridx < D
    t_rec = g(d.time_h, 0.0)
    amt = g(d.amount_mg, 0.0)
    dur_row = g(d.duration_h, 0.0)
    rate_row = g(d.rate_mg_h, 0.0)
    ii = g(d.ii_h, 0.0)
    ss = g(d.ss, 0)
    evid = g(d.evid, 1)
    rnames = list(inputs)
    code = g(np.array([rnames.index(r) if r in inputs else -1 for r in d.route], np.int64), -1)
    is_dose = valid & (evid != 3)
    is_reset = valid & ((evid == 3) | (evid == 4) | (ss == 1))
    ss_row = is_dose & (ss > 0)
    const = ss_row & (ii == 0)
    periodic = ss_row & ~const

    # the first reset strictly after a time, per subject
    RS = np.sort(np.where(is_reset, t_rec, np.inf), axis=1)
    RS = RS[:, :max(int(np.isfinite(RS).sum(axis=1).max()), 0)]

    def first_reset_after(t):
        r = np.full(np.broadcast_shapes(np.shape(t), (RS.shape[0], 1)), np.inf)
        for j in range(RS.shape[1]):
            c = RS[:, j:j + 1]
            r = np.where((c > t) & np.isinf(r), c, r)
        return r

    rs = np.broadcast_to(first_reset_after(t_rec), shape)
    env = {k: v[:nb, None] for k, v in vals.items()}
    env["AMT"] = amt
    blocks = []

    def add(t, c, a, kind, keep):
        keep = np.broadcast_to(keep, shape)
        if keep.any():
            blocks.append(tuple(np.broadcast_to(x, shape) for x in (t, c, a, kind, keep)))

    def where_row(mask):
        i = np.unravel_index(int(np.argmax(mask)), mask.shape)
        r = ridx[min(i[0], R0 - 1), i[1]]
        return f"{d.where(int(r))} (dose at {d.time_h[r]:g} h)" if r < D else ""

    # per part slot: what each row delivers
    parts = []
    fsum = {r: np.zeros(shape) for r in rnames}
    for j in range(n_parts):
        F, LAG, PDUR = np.zeros(shape), np.zeros(shape), np.full(shape, np.nan)
        TO, HAS = np.zeros(shape, np.int64), np.zeros(shape, bool)
        for ci, r in enumerate(rnames):
            if j >= len(inputs[r]):
                continue
            part = inputs[r][j]
            m = np.broadcast_to((code == ci) & is_dose, shape)
            if not m.any():
                continue
            w = f"routes.{r}" + (f".parts[{j}]" if len(inputs[r]) > 1 else "") \
                if r in model.routes else f"route {r} (compartment {part.to})"
            f = _broadcast(part.f.evaluate(env), shape, f"{w}.f = {part.f.text}", model, m, 0,
                           None if part.relative_f else 1)
            lag = _broadcast(part.lag_h.evaluate(env), shape, f"{w}.lag_h = {part.lag_h.text}",
                             model, m, 0)
            F = np.where(m, f, F)
            LAG = np.where(m, lag, LAG)
            if part.duration_h is not None:
                dur = _broadcast(part.duration_h.evaluate(env), shape,
                                 f"{w}.duration_h = {part.duration_h.text}", model, m, 0)
                PDUR = np.where(m, dur, PDUR)
            TO = np.where(m, idx[part.to], TO)
            HAS |= m
            if not part.relative_f:
                fsum[r] = fsum[r] + np.where(m, f, 0.0)
        parts.append((F, LAG, PDUR, TO, HAS))
    for r in rnames:
        if len(inputs[r]) > 1 and np.any(fsum[r] > 1 + 1e-12):
            bad = fsum[r] > 1 + 1e-12
            raise KetasimInputError(
                f"{model.source}: routes.{r}: the parts' f add up to {fsum[r][bad][0]:.6g} for "
                f"{where_row(bad)}; expected at most 1 (a route cannot deliver more than the "
                "dose; declare relative_f = true for relative bioavailability above 1)")

    pieces = []   # per part: (TO, A, LAG, dur, inf, rate, HAS) for the steady states
    # per route code (-1, a row that is no dose, last): whether a part has its own duration
    route_dur = np.array([any(p.duration_h is not None for p in inputs[r]) for r in rnames]
                         + [True])
    # a row's rate_mg_h is the rate of its route as a whole: the parts without a duration of
    # their own run over one time, (sum of their f) x amount / rate, each at its share of the
    # rate (racemic ketamine's S and R halves: 35 mg at 52.5 mg/h is 40 min of each, 26.25 mg/h
    # each). For a route of one part this is NONMEM's RATE: f x amount / rate.
    frate = np.zeros(shape)
    for F, _lag, PDUR, _to, HAS in parts:
        frate = frate + np.where(HAS & np.isnan(PDUR), F, 0.0)
    # a constant infusion at steady state (ss, ii_h 0, amount 0) runs at the row's rate: the
    # route's as a whole, each part at its share f / (sum of the parts' f); bioavailability
    # does not lower it (NONMEM applies F to every dose but a steady-state constant infusion)
    cshare = constant_rate_shares(parts, shape)
    with np.errstate(all="ignore"):
        for (F, LAG, PDUR, TO, HAS), SHARE in zip(parts, cshare):
            A = amt * F
            own = ~np.isnan(PDUR)
            # RATE = -2 on a route none of whose parts has a duration of its own: NONMEM stops
            # (a part without one beside a part with one is a bolus, as it would be anyway)
            m2 = HAS & (rate_row == -2.0) & ~np.broadcast_to(route_dur[code], shape)
            if m2.any():
                r = rnames[int(np.broadcast_to(code, shape)[m2][0])]
                row_dur = float(np.broadcast_to(dur_row, shape)[m2][0])
                # (a row that gives its own duration beside -2: leave rate_mg_h out, and the
                # row's duration_h is the infusion's)
                fix = (f"expected rate_mg_h left out (or 0) beside the row's duration_h "
                       f"{row_dur:g}, which then sets the duration, or a route with its own"
                       if row_dur > 0 else
                       "expected a duration_h or a rate_mg_h > 0 on the row, or a route with "
                       "its own")
                raise KetasimInputError(
                    f"{d.source}: {where_row(m2)}: rate_mg_h = -2 (duration from the model), "
                    f"but route {r!r} has no duration_h in the model (NONMEM stops here too); "
                    f"{fix} duration")
            dur = np.where(own, PDUR, np.where(dur_row > 0, dur_row,
                                               np.where(rate_row > 0, amt * frate / rate_row,
                                                        0.0)))
            t0 = t_rec + LAG
            t1 = t0 + dur
            # a duration lost to rounding is a bolus: t1 == t0, or t1 within the few ulp at
            # which the engine takes two times for the same instant
            inf = (dur > 0) & (t1 - t0 > _SAME_INSTANT * np.maximum(1.0, np.abs(t0)))
            rate = np.where(inf, A / np.where(inf, t1 - t0, 1.0), 0.0)
            use = HAS & ~const
            if np.any(use & ~(np.isfinite(t1) & np.isfinite(rate))):
                bad = use & ~(np.isfinite(t1) & np.isfinite(rate))
                raise KetasimInputError(
                    f"{d.source}: {where_row(bad)}: the input (amount {amt[bad][0]:g} mg, "
                    f"duration {dur[bad][0]:g} h) gives an event time or infusion rate beyond "
                    "the float range; expected a bolus (duration_h = 0) or a longer infusion")
            # an infusion longer than any run whose metrics ketasim computes never ends within
            # one: its curves and metrics would show next to nothing of it, without a word
            long = use & inf & (dur > _longest_run_h())
            if long.any():
                i = np.unravel_index(int(np.argmax(long)), shape)
                kind = ("model" if own[i] else "duration"
                        if np.broadcast_to(dur_row, shape)[i] > 0 else "rate")
                raise long_infusion_error(d.source, where_row(long), float(amt[i]),
                                          float(np.broadcast_to(rate_row, shape)[i]),
                                          float(dur[i]), kind)
            keep = use & (t0 < rs)                 # inputs that start after a reset: cancelled
            stop = np.minimum(t1, rs)              # infusions running at a reset: stopped
            add(t0, TO, np.where(inf, rate, A), np.where(inf, START, BOLUS), keep)
            add(stop, TO, rate, STOP, keep & inf)
            pieces.append((TO, A, LAG, dur, inf, rate, HAS))
            # inputs of earlier (virtual) doses of a steady state still to come at t_d
            per = periodic & HAS
            if per.any():
                tau = np.where(per, ii, 1.0)
                reach = np.where(per, np.where(inf, LAG + dur, LAG), 0.0)
                kmax = int(np.max(np.floor(reach / tau))) if per.any() else 0
                if kmax * int(per.sum()) > 10_000_000:
                    raise KetasimInputError(
                        f"{d.source}: {where_row(per)}: ss with lag + duration of "
                        f"{float(np.max(reach)):g} h over ii_h = {float(np.min(tau)):g} h "
                        "overlaps too many earlier doses; use a longer ii_h")
                for k in range(1, kmax + 1):
                    sk = t_rec - k * tau + LAG
                    b = per & ~inf & (k * tau <= LAG) & (sk < rs)
                    add(sk, TO, A, BOLUS, b)
                    e = sk + dur
                    start = np.maximum(sk, t_rec)
                    i2 = per & inf & (e > t_rec) & (start < rs)
                    add(start, TO, rate, START, i2)
                    add(np.minimum(e, rs), TO, rate, STOP, i2)
            # constant infusion at steady state: starts now, runs until a reset
            cst = const & HAS
            if cst.any():
                add(t_rec, TO, SHARE * rate_row, START, cst & (t_rec < rs))
                add(rs, TO, SHARE * rate_row, STOP, cst & (t_rec < rs) & np.isfinite(rs))

    add(t_rec, 0, 0.0, RESET, is_reset)
    V = 1
    ev_vec = None
    if ss_row.any():
        vidx = np.cumsum(ss_row, axis=1) - 1
        V = max(int(ss_row.sum(axis=1).max()), 1)
        add(t_rec, np.maximum(vidx, 0), 0.0, ADD_STATE, np.broadcast_to(ss_row, shape))
        ev_vec = _steady_states(model, vals, ss_row, const, ii, rate_row, parts, cshare,
                                pieces, vidx, V)
    if ev_vec is None:
        ev_vec = np.zeros((1 if shared_rows else n, V, S))

    if not blocks:
        n0 = 1 if shared_rows else n
        z = np.zeros((n0, 0))
        return (z, z.astype(np.int64), z.copy(), z.astype(np.int64), np.zeros(n0, np.int64),
                ev_vec)
    keep = np.concatenate([b[4] for b in blocks], axis=1)
    ev_t = np.where(keep, np.concatenate([b[0] for b in blocks], axis=1), np.inf)
    if not np.all(np.isfinite(ev_t[keep])):
        bad_t = ev_t[keep][~np.isfinite(ev_t[keep])][0]
        raise KetasimInputError(f"{d.source}: an event time overflows ({bad_t!r} h); expected "
                                "finite hours")
    ev_c = np.concatenate([b[1] for b in blocks], axis=1)
    ev_a = np.concatenate([b[2] for b in blocks], axis=1)
    ev_k = np.concatenate([b[3] for b in blocks], axis=1).astype(np.int64)
    nev = keep.sum(axis=1).astype(np.int64)
    order = sort_events(ev_t, ev_k)
    E = max(int(nev.max()), 0)
    order = order[:, :E]

    def take(a, dt):   # sorted
        return np.take_along_axis(a, order, axis=1).astype(dt, copy=False)

    rows = (take(ev_t, np.float64), take(ev_c, np.int64), take(ev_a, np.float64),
            take(ev_k, np.int64), nev)
    if key is not None and nb == 1 and V == 1 and rows[0].size <= _MEMO_MAX_EVENTS:
        for a in rows:
            a.setflags(write=False)
        memo = doses._memo().setdefault("events", {})
        if len(memo) >= _MEMO_KEYS:
            memo.clear()
        memo[key] = rows
    return tuple(_per_subject(a, n, shared_rows) for a in rows) + (ev_vec,)


_MEMO_MAX_EVENTS = 10_000      # shared event rows kept with their dose table up to this size
_MEMO_KEYS = 8                # event rows kept per dose table (models, route parameters)


def _per_subject(a, n, shared_rows=False):
    """Rows (N, ...) of every subject: a read-only view when ``a`` has them (or, with
    ``shared_rows``, its one shared row), else the one shared row copied out to every
    subject."""
    if a.shape[0] == n or shared_rows:
        v = a.view()
        v.setflags(write=False)
        return v
    return np.repeat(a, n, axis=0)


def _shared_row_events(rows, n, S, shared_rows=False):
    """The events of ``n`` subjects that share one row (kept from an earlier call)."""
    return (tuple(_per_subject(a, n, shared_rows) for a in rows)
            + (np.zeros((1 if shared_rows else n, 1, S)),))


def constant_rate_shares(parts, shape) -> list:
    """Each route part's share of a constant infusion's rate (ss, ii_h 0): ``f / (sum of the
    route's f)`` (1 for a route of one part, whatever its f; equal shares where every f is 0).
    ``parts``: (F, LAG, PDUR, TO, HAS) per part position, arrays of ``shape``."""
    total = np.zeros(shape)
    count = np.zeros(shape)
    for F, _lag, _dur, _to, HAS in parts:
        total = total + np.where(HAS, np.broadcast_to(F, shape), 0.0)
        count = count + HAS
    with np.errstate(all="ignore"):
        return [np.where(HAS, np.where(total > 0, np.broadcast_to(F, shape) / total,
                                       1.0 / np.maximum(count, 1)), 0.0)
                for F, _lag, _dur, _to, HAS in parts]


def _steady_states(model, vals, ss_row, const, ii, rate_row, parts, shares, pieces, vidx, V):
    """ev_vec (N, V, S): the state just before each steady-state dose (see module docstring).
    Row arrays may hold one row for all subjects (``ss_row``, ``ii``: (R0, Dm); parts and
    ``shares``, each part's share of a constant infusion's rate (:func:`constant_rate_shares`):
    (nb, Dm))."""
    n = vals["WT"].shape[0]
    S = len(model.state_names)
    K = model.matrices(vals)
    ev_vec = np.zeros((n, V, S))
    cache = {}
    nb = parts[0][0].shape[0]
    rows = np.argwhere(np.broadcast_to(ss_row, (n, ss_row.shape[1])))
    for s0, j in rows:
        s0, j = int(s0), int(j)
        jj = (min(s0, ii.shape[0] - 1), j)
        s = min(s0, nb - 1)
        if const[jj]:
            u = np.zeros(S)
            for (_, _, _, TO, HAS), SHARE in zip(parts, shares):
                if HAS[s, j]:
                    u[TO[s, j]] += SHARE[s, j] * rate_row[jj]
            key = (K[s0].tobytes(), "rate", u.tobytes())
            if key not in cache:
                cache[key] = constant_rate_state(K[s0], u, model)
        else:
            tau = float(ii[jj])
            pcs = tuple((int(TO[s, j]), float(A[s, j]), float(LAG[s, j]),
                         float(dur[s, j]) if inf[s, j] else 0.0, float(rate[s, j]))
                        for TO, A, LAG, dur, inf, rate, HAS in pieces if HAS[s, j])
            key = (K[s0].tobytes(), tau, pcs)
            if key not in cache:
                cache[key] = periodic_state(K[s0], tau, pcs, model)
        ev_vec[s0, int(vidx[jj])] = cache[key]
    return ev_vec
