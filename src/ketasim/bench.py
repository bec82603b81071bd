"""The benchmark suite: named scenarios, each timing its scipy baselines in the same run.

Run it with ``ketasim bench`` or ``python benchmarks/run.py`` (``--quick`` for a smoke run of a
few seconds, ``--only NAME`` for chosen scenarios, ``--json PATH`` for the results file).

Every scenario reports ketasim's wall time, the time of each baseline and the speed ratio, and
the maximum error of ketasim and of every baseline against a high-precision reference:
``scipy.integrate.solve_ivp(method="Radau", rtol=1e-12, atol=1e-16)`` integrated segment by
segment between dose events. The error is ``max_t |y - y_ref| / max_t |y_ref|`` for each output
(absolute error relative to the output's peak), the maximum over outputs (and scored subjects).

Baselines
---------
``LSODA``, ``BDF``, ``Radau``, ``RK45``
    ``solve_ivp`` at ``rtol=1e-8``, ``atol=1e-12`` (states in mg), segment by segment between
    dose events with ``t_eval`` = the output grid; the stiff methods get the exact Jacobian.
    With the schematic response the same nonlinear system (PK, occupancy ``s/(1+s)``,
    glutamate, plasticity and, where the model has it, consolidation) is written for
    ``solve_ivp`` with its analytic Jacobian.
``expm``
    An exact NumPy/SciPy solution: ``scipy.linalg.expm`` of the augmented matrix for each
    distinct step length (cached), then a Python loop ``x <- Φ x + Γ u`` over the grid.
``LSODA loop``
    Populations: ``solve_ivp`` LSODA subject by subject. Only a random sample of subjects is
    timed and the time is extrapolated to the whole population (the table says so).

The baselines and the reference take the rate matrix from :meth:`Model.matrices`, the
observation rows from :meth:`Model.observation`, the occupancy weights from the model and the
dose events from :func:`ketasim.events.build_events`: they share the model's numbers with the
engine but none of its propagation code.

Machine limits, measured in the same run: the *memory-write floor* (``np.empty`` + ``fill`` of
an array of the output's size, fresh pages included as ketasim's own output is) and the
*single-chain floor* (a compiled loop doing one dependent multiply-add per step) times the
number of steps. JIT compilation is measured apart (a fresh process with an empty
``NUMBA_CACHE_DIR``, then a second process with that cache warm) and excluded from every ratio:
each ketasim call is made once before it is timed. The timed calls of a one-subject scenario
follow five untimed full calls (two for a population): the first calls in a new process that
write tens of MiB are slower while the system hands the process that memory. Peak memory:
NumPy memory traced (``tracemalloc``) during one extra ketasim call, and with ``--isolate``
(default for the full run) the peak resident size of the process that ran the scenario.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import ketasim
from ketasim.cli_bench import DEFAULT_JSON, add_arguments
from ketasim.courses import DAYS_PER_MONTH
from ketasim.events import build_events
from ketasim.model import GLUTAMATE_ROLES

__all__ = ["SCENARIOS", "run_suite", "main", "markdown_table", "plot_throughput",
           "throughput_figure"]

# ----------------------------------------------------------------------------------- settings
BASE_RTOL = 1e-8          # the baselines' relative tolerance
BASE_ATOL = 1e-12         # mg (states are amounts; effect sites mg/L)
REF_RTOL = 1e-12          # the reference's
REF_ATOL = 1e-16
SOLVERS = ("LSODA", "BDF", "Radau", "RK45")
STIFF = {"LSODA", "BDF", "Radau"}
SEED = 20240601
CV = 0.30                 # between-subject variability (log-normal CV) on CL and V1
OMEGA = math.sqrt(math.log(1.0 + CV ** 2))
PD_NAMES = ("glutamate", "plasticity", "consolidation")
OCC_NAMES = ("occupancy", "occupancy_low", "occupancy_high")

# Targets (issue "Speed": 2-core machine, ratios from one run)
TARGETS = {
    "iv-pk speed": ("speed-up vs LSODA", ">=", 150.0),
    "iv-pk error": ("LSODA error / ketasim error", ">=", 100.0),
    "iv-default speed": ("speed-up vs LSODA", ">=", 50.0),
    "iv-default cost": ("time / plasma-only time", "<=", 3.0),
    "spravato speed": ("speed-up vs LSODA", ">=", 50.0),
    "pop-10k speed": ("speed-up vs LSODA loop", ">=", 2000.0),
    "throughput rate": ("subject-timepoints/s", ">=", 2e8),
    "throughput floor": ("time / memory-write floor", "<=", 2.0),
    "trivial": ("median call, us", "<=", 200.0),
    "cli": ("warm CLI course, s", "<=", 1.5),
    "compile": ("cold compile, s", "<=", 10.0),
}


def _target(key: str, value: float) -> dict:
    what, op, goal = TARGETS[key]
    ok = bool(np.isfinite(value) and (value >= goal if op == ">=" else value <= goal))
    if ok:
        gap = "met"
    elif not np.isfinite(value):
        gap = "not measured"
    elif op == ">=":
        gap = f"gap: {goal / value:.1f}x short" if value > 0 else "gap"
    else:
        gap = f"gap: {value / goal:.1f}x over"
    return {"key": key, "what": what, "value": float(value), "target": f"{op} {goal:g}",
            "met": ok, "verdict": gap}


# ------------------------------------------------------------------------- reference systems
@dataclass
class System:
    """One subject's system for the scipy side: ``dx/dt = K x + u`` plus the schematic PD.

    ``rows`` gives each output (in the engine's order): ``("c", i)`` = ``C[i] @ x``,
    ``("occ", j)`` = occupancy with weights ``occ[j]``, ``("pd", k)`` = PD state k (glutamate,
    plasticity, consolidation)."""

    K: np.ndarray
    C: np.ndarray
    occ: list
    drive: np.ndarray | None
    pd: np.ndarray | None
    npd: int
    rows: list
    events: tuple
    names: tuple = ()
    extra: dict = field(default_factory=dict)


def _weight_sets(model, vals):
    if hasattr(model, "occupancy_weight_sets"):
        return model.occupancy_weight_sets(vals)
    w = model.occupancy_weights(vals)
    return {"occupancy": w, "drive": w}


def build_systems(model, doses, names, params=None, weight_kg=70.0, subjects=None) -> list:
    """A :class:`System` per subject (``subjects`` indexes, default all) for outputs ``names``."""
    vals = model.resolve(params, weight_kg)
    n = vals["WT"].shape[0]
    subjects = range(n) if subjects is None else subjects
    sink = "amount:eliminated" in names
    conc = [nm for nm in names if nm not in OCC_NAMES + PD_NAMES]
    K = model.matrices(vals, sink=sink)
    C = model.observation(vals, conc, sink=sink) if conc else np.zeros((n, 0, K.shape[1]))
    want_occ = [nm for nm in names if nm in OCC_NAMES]
    pd_rows = [nm for nm in names if nm in PD_NAMES]
    sets = _weight_sets(model, vals) if (want_occ or pd_rows) else {}
    ns = K.shape[1]

    def pad(w):
        out = np.zeros((n, ns))
        out[:, :w.shape[1]] = w
        return out

    sets = {k: pad(v) for k, v in sets.items()}
    npd = 0
    pdp = None
    if pd_rows:                 # glutamate, plasticity and consolidation come together
        pdp = model.glutamate_parameters(vals)
        npd = 3 if "consolidation" in pd_rows else 2
    ev = build_events(model, doses, vals)
    out = []
    for s in subjects:
        rows = []
        ci = 0
        occ = []
        for nm in names:
            if nm in OCC_NAMES:
                rows.append(("occ", len(occ)))
                occ.append(sets[nm][s])
            elif nm in PD_NAMES:
                rows.append(("pd", PD_NAMES.index(nm)))
            else:
                rows.append(("c", ci))
                ci += 1
        nev = int(ev[4][s])
        events = (ev[0][s, :nev], ev[1][s, :nev], ev[2][s, :nev], ev[3][s, :nev], ev[5][s])
        out.append(System(K=K[s], C=C[s], occ=occ, drive=sets["drive"][s] if npd else None,
                          pd=pdp[s] if npd else None, npd=npd, rows=rows, events=events,
                          names=tuple(names)))
    return out


def _rhs_jac(sys_: System, u: np.ndarray):
    K = sys_.K
    n = K.shape[0]
    if not sys_.npd:
        return (lambda t, y: K @ y + u), (lambda t, y: K)
    p = {r: float(sys_.pd[i]) for i, r in enumerate(GLUTAMATE_ROLES) if i < sys_.pd.size}
    kout, emax, ec50, hill = p["kout"], p["emax"], p["ec50"], p["hill"]
    kin_p, kout_p = p["plasticity_kin"], p["plasticity_kout"]
    kin_q, kout_q = p.get("consolidation_kin", 0.0), p.get("consolidation_kout", 0.0)
    w = sys_.drive
    npd = sys_.npd
    e50h = ec50 ** hill

    def rhs(t, y):
        x = y[:n]
        dy = np.empty_like(y)
        dy[:n] = K @ x + u
        s = float(w @ x)
        s = s if s > 0.0 else 0.0
        occ = s / (1.0 + s)
        oh = occ ** hill
        stim = emax * oh / (e50h + oh)
        g, pl = y[n], y[n + 1]
        dy[n] = kout * (1.0 + stim) - kout * g
        drive = g - 1.0 if g > 1.0 else 0.0
        dy[n + 1] = kin_p * drive * (1.0 - pl) - kout_p * pl
        if npd == 3:
            q = y[n + 2]
            dy[n + 2] = kin_q * pl * (1.0 - q) - kout_q * q
        return dy

    J = np.zeros((n + npd, n + npd))
    J[:n, :n] = K
    J[n, n] = -kout

    def jac(t, y):
        x = y[:n]
        s = float(w @ x)
        if s > 0.0:
            occ = s / (1.0 + s)
            oh = occ ** hill
            dstim = emax * hill * occ ** (hill - 1.0) * e50h / (e50h + oh) ** 2 if occ > 0 else 0.0
            J[n, :n] = kout * dstim * w / (1.0 + s) ** 2
        else:
            J[n, :n] = 0.0
        g, pl = y[n], y[n + 1]
        drive = g - 1.0 if g > 1.0 else 0.0
        J[n + 1, n] = kin_p * (1.0 - pl) if g > 1.0 else 0.0
        J[n + 1, n + 1] = -kin_p * drive - kout_p
        if npd == 3:
            q = y[n + 2]
            J[n + 2, n + 1] = kin_q * (1.0 - q)
            J[n + 2, n + 2] = -kin_q * pl - kout_q
        return J.copy()

    return rhs, jac


class _Events:
    """Applies the dose events of one subject the way the event table defines them."""

    def __init__(self, sys_: System, nstate: int):
        self.t, self.c, self.a, self.k, self.vec = sys_.events
        self.e = 0
        self.u = np.zeros(nstate)
        self.active = np.zeros(nstate, np.int64)

    def apply_until(self, t: float, x: np.ndarray) -> bool:
        """Apply every event at or before ``t`` to the state ``x`` (in place) and ``u``."""
        any_ = False
        while self.e < self.t.size and self.t[self.e] <= t:
            c, k, a = int(self.c[self.e]), int(self.k[self.e]), float(self.a[self.e])
            if k == 0:
                x[c] += a
            elif k == 2:
                x[:self.u.size] = 0.0
            elif k == 3:
                x[:self.vec.shape[1]] += self.vec[c]
            elif k == 1:
                self.active[c] += 1
                self.u[c] += a
            else:
                self.active[c] -= 1
                if self.active[c] <= 0:
                    self.active[c] = 0
                    self.u[c] = 0.0
                else:
                    self.u[c] -= a
            self.e += 1
            any_ = True
        return any_

    def next_time(self) -> float:
        return float(self.t[self.e]) if self.e < self.t.size else math.inf


def _outputs(sys_: System, X: np.ndarray) -> np.ndarray:
    """Outputs (R, T) from states X (n [+ npd], T)."""
    n = sys_.K.shape[0]
    out = np.empty((len(sys_.rows), X.shape[1]))
    conc = sys_.C @ X[:n] if sys_.C.shape[0] else None
    for r, (kind, i) in enumerate(sys_.rows):
        if kind == "c":
            out[r] = conc[i]
        elif kind == "occ":
            s = np.maximum(sys_.occ[i] @ X[:n], 0.0)
            out[r] = s / (1.0 + s)
        else:
            out[r] = X[n + i]
    return out


def solve_piecewise(sys_: System, times: np.ndarray, method: str, rtol: float, atol: float,
                    extra_state=None):
    """``solve_ivp`` between dose events; outputs (R, T).

    Output points in [a, b) come from the segment starting at a (a point at a dose time
    reports the value just after the dose, as ketasim does)."""
    from scipy.integrate import solve_ivp

    n = sys_.K.shape[0]
    y = np.zeros(n + sys_.npd)
    if sys_.npd:
        y[n] = 1.0          # glutamate baseline
    ev = _Events(sys_, n)
    t_end = float(times[-1])
    start = float(times[0])
    if ev.t.size:
        start = min(start, float(ev.t[0]))
    inner = ev.t[(ev.t > start) & (ev.t < t_end)]
    bounds = np.unique(np.concatenate(([start], inner, [t_end])))
    X = np.zeros((y.size, times.size))
    for a, b in itertools.pairwise(bounds):
        ev.apply_until(a, y)
        last = b >= t_end
        i0 = int(np.searchsorted(times, a, "left"))
        i1 = times.size if last else int(np.searchsorted(times, b, "left"))
        t_eval = times[i0:i1]
        k = t_eval.size
        if k == 0 or t_eval[-1] < b:
            t_eval = np.append(t_eval, b)
        rhs, jac = _rhs_jac(sys_, ev.u.copy())
        kw = {"jac": jac} if method in STIFF else {}
        sol = solve_ivp(rhs, (a, b), y, method=method, t_eval=t_eval, rtol=rtol, atol=atol,
                        **kw)
        if not sol.success:
            raise RuntimeError(f"solve_ivp({method}) failed on [{a}, {b}] h: {sol.message}")
        X[:, i0:i1] = sol.y[:, :k]
        y = sol.y[:, -1].copy()
    if times.size == 1 and bounds.size == 1:
        ev.apply_until(start, y)
        X[:, 0] = y
    if ev.apply_until(t_end, y):        # events exactly at the last output time
        X[:, -1] = y
    return _outputs(sys_, X)


def expm_piecewise(sys_: System, times: np.ndarray) -> np.ndarray:
    """Exact solution with ``scipy.linalg.expm`` per distinct step length and a Python loop."""
    from scipy.linalg import expm

    K = sys_.K
    n = K.shape[0]
    cache = {}

    def prop(h):
        key = round(h * 1e9)
        if key not in cache:
            M = np.zeros((2 * n, 2 * n))
            M[:n, :n] = K * h
            M[:n, n:] = np.eye(n) * h
            E = expm(M)
            cache[key] = (E[:n, :n].copy(), E[:n, n:].copy())
        return cache[key]

    x = np.zeros(n)
    ev = _Events(sys_, n)
    X = np.empty((n, times.size))
    t = float(times[0])
    if ev.t.size:
        t = min(t, float(ev.t[0]))
    for i, target in enumerate(times):
        while True:
            ev.apply_until(t, x)
            if t >= target:
                break
            stop = min(float(target), ev.next_time())
            Phi, Gam = prop(stop - t)
            x = Phi @ x
            if ev.u.any():
                x += Gam @ ev.u
            t = stop
        X[:, i] = x
    return _outputs(sys_, X)


# ----------------------------------------------------------------------------------- helpers
def rel_err(a, ref) -> float:
    """max over outputs of max_t |a - ref| / max_t |ref| (arrays (..., R, T))."""
    a, ref = np.asarray(a, float), np.asarray(ref, float)
    peak = np.max(np.abs(ref), axis=-1)
    peak = np.where(peak > 0, peak, 1.0)
    return float(np.max(np.max(np.abs(a - ref), axis=-1) / peak))


def group_errors(a, ref, names) -> dict:
    """Errors of the concentration rows ("pk") and of the occupancy/schematic rows ("pd")."""
    out = {}
    pd_rows = [i for i, nm in enumerate(names) if nm in OCC_NAMES + PD_NAMES]
    pk_rows = [i for i in range(len(names)) if i not in pd_rows]
    for key, rows in (("pk", pk_rows), ("pd", pd_rows)):
        if rows:
            out[key] = rel_err(np.asarray(a)[..., rows, :], np.asarray(ref)[..., rows, :])
    return out


def best_of(fn, repeats: int, warmup: int = 0, times: list | None = None):
    """(best wall time in s, last result) over ``repeats`` calls, after ``warmup`` untimed
    ones (each timed call's seconds are appended to ``times`` when given). Garbage is
    collected once before them and collection is off while they run, as ``timeit`` does: no
    collection of earlier garbage lands inside a timed call, and the calls after the first see
    the caches as a loop of calls would (see :func:`best_cold` for calls that each follow a
    collection). The untimed calls let the system hand the process the memory the calls use:
    the first calls in a new process that write tens of MiB take several times longer (up to
    9x, 90 ms, for ``iv-default`` on the benchmark machine)."""
    best, res = math.inf, None
    for _ in range(warmup):
        res = None
        res = fn()
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(max(1, repeats)):
            res = None
            t0 = time.perf_counter()
            res = fn()
            dt = time.perf_counter() - t0
            best = min(best, dt)
            if times is not None:
                times.append(dt)
    finally:
        if was:
            gc.enable()
    return best, res


def best_cold(fn, repeats: int) -> float:
    """Best wall time in s over ``repeats`` calls, each just after a full garbage collection
    (which walks every Python object and so leaves the processor's caches cold)."""
    best = math.inf
    for _ in range(max(1, repeats)):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def timed(fn):
    """(wall time in s, result) of one call, garbage collected before and collection off
    during it."""
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        res = fn()
        return time.perf_counter() - t0, res
    finally:
        if was:
            gc.enable()


def traced_peak_mib(fn) -> float:
    """Peak NumPy/Python memory traced while ``fn`` runs (MiB); ``fn``'s result is dropped."""
    gc.collect()
    tracemalloc.start()
    try:
        res = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del res
    return peak / 2 ** 20


def write_floor(shape, repeats: int = 3) -> float:
    """Seconds to allocate and fill a float64 array of ``shape`` (fresh pages each time; after
    two untimed fills, as ketasim's calls are timed after untimed ones)."""
    def fill():
        a = np.empty(shape)
        a.fill(1.0)
        return a
    return best_of(fill, repeats, warmup=2)[0]


_CHAIN = None


def chain_ns_per_step() -> float:
    """Nanoseconds per step of one dependent multiply-add chain (compiled)."""
    global _CHAIN
    if _CHAIN is None:
        from numba import njit

        @njit(cache=True)
        def chain(n, a, b):
            x = 0.5
            for _ in range(n):
                x = x * a + b
            return x

        chain(10, 0.5, 0.25)
        _CHAIN = chain
    n = 20_000_000
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        _CHAIN(n, 0.999999, 1e-6)
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e9


def fmt_s(s) -> str:
    if s is None or not np.isfinite(s):
        return "n/a"
    if s >= 100:
        return f"{s:,.0f} s"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} µs"


def fmt_e(e) -> str:
    return "n/a" if e is None or not np.isfinite(e) else f"{e:.0e}" if e > 0 else "0"


def fmt_x(r) -> str:
    if r is None or not np.isfinite(r):
        return "n/a"
    return f"{r:,.0f}×" if r >= 10 else f"{r:.1f}×"


def fmt_months(months) -> str:
    """A course length for people: "6 months", "15.2 days", "24.4 h" (3 significant digits)."""
    days = months * DAYS_PER_MONTH
    if months >= 1 and float(months).is_integer():
        return f"{months:g} month" + ("s" if months != 1 else "")
    if days < 2:
        return f"{days * 24:.3g} h"
    if months < 1:
        return f"{days:.3g} days"
    return f"{months:.3g} months"


def _say(cfg, msg):
    if cfg.get("verbose", True):
        print(msg, file=sys.stderr, flush=True)


def _grid(months: float, step_h: float) -> np.ndarray:
    return ketasim.time_grid(months * DAYS_PER_MONTH * 24.0, step_h)


def _warm(fn_small):
    t0 = time.perf_counter()
    fn_small()
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------ the models
def network12_model():
    """A catenary chain of 12 compartments (central + 11 in series) with an effect site.

    Rates are drawn once (seed 12) log-uniformly in 0.01-20 1/h: an illustrative stiff network,
    not a drug model."""
    rng = np.random.default_rng(12)
    n = 12
    params = {"V1": 50.0, "K10": 2.0, "KE0": 6.8}
    comps = {"c1": "V1"}
    flows = [{"from": "c1", "to": "out", "k": "K10"}]
    for i in range(2, n + 1):
        fw, bw = np.exp(rng.uniform(np.log(0.01), np.log(20.0), 2))
        params[f"KF{i}"], params[f"KB{i}"] = float(fw), float(bw)
        comps[f"c{i}"] = 0
        flows += [{"from": f"c{i - 1}", "to": f"c{i}", "k": f"KF{i}"},
                  {"from": f"c{i}", "to": f"c{i - 1}", "k": f"KB{i}"}]
    return ketasim.Model.from_dict({
        "model": {"name": "chain-12", "citation": "illustrative benchmark network"},
        "parameters": params, "compartments": comps, "flows": flows,
        "routes": {"iv": {"to": "c1"}},
        "effects": {"ce": {"of": "c1", "ke0": "KE0"}},
    })


def five_state_model():
    """Oral depot + three compartments + effect site (5 states).

    Domino EF et al. Clin Pharmacol Ther 1984;36:645-653 (racemic ketamine, 70 kg; rate
    constants per minute converted to per hour), effect site ke0 6.8 /h (Olofsen E et al.
    Anesthesiology 2012;117:353-364); the oral depot (KA 1.5 /h, F 0.2) is illustrative."""
    return ketasim.Model.from_dict({
        "model": {"name": "domino1984-oral",
                  "citation": "Domino EF et al. Clin Pharmacol Ther 1984;36:645-653"},
        "parameters": {"V1": 0.063 * 70, "K10": 0.4381 * 60, "K12": 0.5921 * 60,
                       "K13": 0.590 * 60, "K21": 0.247 * 60, "K31": 0.0146 * 60, "KE0": 6.8,
                       "KA": 1.5, "F_ORAL": 0.2},
        "compartments": {"depot": 0, "central": "V1", "p1": 0, "p2": 0},
        "flows": [{"from": "central", "to": "out", "k": "K10"},
                  {"from": "central", "to": "p1", "k": "K12"},
                  {"from": "p1", "to": "central", "k": "K21"},
                  {"from": "central", "to": "p2", "k": "K13"},
                  {"from": "p2", "to": "central", "k": "K31"},
                  {"from": "depot", "to": "central", "k": "KA"}],
        "routes": {"iv": {"to": "central"}, "oral": {"to": "depot", "f": "F_ORAL"}},
        "effects": {"ce": {"of": "central", "ke0": "KE0"}},
    })


def one_compartment_model():
    return ketasim.Model.from_dict({
        "model": {"name": "one-compartment", "citation": "illustrative"},
        "parameters": {"V": 100.0, "CL": 50.0},
        "compartments": {"central": "V"},
        "flows": [{"from": "central", "to": "out", "cl": "CL"}],
        "routes": {"iv": {"to": "central"}},
    })


def population_params(n: int, seed: int = SEED) -> dict:
    """CL and V1 of ketamine-iv, log-normal with CV 30 % around the typical values."""
    m = ketasim.load_model("ketamine-iv")
    z = np.random.default_rng(seed).standard_normal((2, n))
    return {"CL": m.parameters["CL"] * np.exp(OMEGA * z[0]),
            "V1": m.parameters["V1"] * np.exp(OMEGA * z[1])}


# ---------------------------------------------------------------------------- one subject
def reference(model, doses, times, names, cfg, key):
    """The Radau reference for ``names``: computed once for the model's default outputs plus
    ``names`` and kept on disk under ``key`` for the run (scenarios on the same course share
    it, also across ``--isolate`` processes). Returns (seconds it took, outputs (R, T))."""
    path = Path(cfg["ref_cache"]) / f"{key}.npz" if cfg.get("ref_cache") else None
    if path is not None and path.exists():
        z = np.load(path)
        all_names, ref_all, ref_s = list(z["names"]), z["ref"], float(z["seconds"])
    else:
        default = ketasim.simulate(model, doses, times[:2]).names
        all_names = list(default) + [nm for nm in names if nm not in default]
        sys_ = build_systems(model, doses, all_names)[0]
        ref_s, ref_all = timed(lambda: solve_piecewise(sys_, times, "Radau", REF_RTOL,
                                                       REF_ATOL))
        if path is not None:
            np.savez(path, names=np.array(all_names), ref=ref_all, seconds=ref_s)
    return ref_s, ref_all[[all_names.index(nm) for nm in names]]


def _one_subject(name, title, model, doses, times, outputs, cfg, ref_key, expm_baseline=True):
    """ketasim against every solve_ivp method (and the exact expm loop) for one subject."""
    _say(cfg, f"[{name}] {title}")
    kw = {} if outputs is None else {"outputs": outputs}
    jit_s = _warm(lambda: ketasim.simulate(model, doses, times[:50], **kw))
    calls = []
    ks_s, res = best_of(lambda: ketasim.simulate(model, doses, times, **kw),
                        cfg["one_repeats"], cfg["warm_calls"], calls)
    cold_s = best_cold(lambda: ketasim.simulate(model, doses, times, **kw), cfg["repeats"])
    ks = res.data[0]
    names = res.names
    peak = traced_peak_mib(lambda: ketasim.simulate(model, doses, times, **kw))
    sys_ = build_systems(model, doses, names)[0]
    _say(cfg, f"  ketasim {fmt_s(ks_s)}; reference Radau rtol {REF_RTOL:g} ...")
    ref_s, ref = reference(model, doses, times, names, cfg, ref_key)
    base = {}
    for m in SOLVERS:
        s, y = timed(lambda m=m: solve_piecewise(sys_, times, m, BASE_RTOL, BASE_ATOL))
        base[m] = {"s": s, "err": rel_err(y, ref), "ratio": s / ks_s}
        _say(cfg, f"  {m} {fmt_s(s)} ({s / ks_s:,.0f}x), error {rel_err(y, ref):.1e}")
    if expm_baseline and not sys_.npd:
        s, y = timed(lambda: expm_piecewise(sys_, times))
        base["expm"] = {"s": s, "err": rel_err(y, ref), "ratio": s / ks_s}
        _say(cfg, f"  expm loop {fmt_s(s)}, error {rel_err(y, ref):.1e}")
    steps = times.size + 2 * sys_.events[0].size
    floor_w = write_floor(res.data.shape)
    row = {"name": name, "title": title, "subjects": 1, "timepoints": int(times.size),
           "outputs": list(names), "ketasim_s": ks_s, "ketasim_err": rel_err(ks, ref),
           "ketasim_err_by_kind": group_errors(ks, ref, names),
           "baselines": base, "reference_s": ref_s, "jit_warmup_s": jit_s,
           "ketasim_peak_mib": peak, "write_floor_s": floor_w, "ketasim_cold_s": cold_s,
           "chain_floor_s": steps * cfg["chain_ns"] * 1e-9,
           "ketasim_median_s": float(np.median(calls)),
           "notes": [f"{times.size:,} times x {len(names)} outputs; reference Radau "
                     f"rtol {REF_RTOL:g} took {fmt_s(ref_s)}",
                     f"best of {len(calls)} calls after {cfg['warm_calls']} untimed ones; "
                     f"median {fmt_s(float(np.median(calls)))} = "
                     f"{base['LSODA']['s'] / float(np.median(calls)):,.0f}x LSODA",
                     f"each call just after a full garbage collection (cold caches): "
                     f"{fmt_s(cold_s)} = {base['LSODA']['s'] / cold_s:,.0f}x LSODA"]}
    return row


def sc_iv_pk(cfg):
    months = cfg["months"]
    times = _grid(months, 1 / 60)
    row = _one_subject("iv-pk", f"1 subject, standard IV course, {fmt_months(months)}, 1-min grid, "
                       "plasma", ketasim.load_model("ketamine-iv"),
                       ketasim.standard_iv_course(months=months), times, ["plasma"], cfg, "iv")
    ls = row["baselines"]["LSODA"]
    row["targets"] = [_target("iv-pk speed", ls["ratio"]),
                      _target("iv-pk error", ls["err"] / max(row["ketasim_err"], 1e-300))]
    return row


def sc_iv_default(cfg):
    months = cfg["months"]
    times = _grid(months, 1 / 60)
    model = ketasim.load_model("ketamine-iv")
    doses = ketasim.standard_iv_course(months=months)
    row = _one_subject("iv-default", f"1 subject, standard IV course, {fmt_months(months)}, "
                       "1-min grid, default outputs (PK + occupancy + schematic response)",
                       model, doses, times, None, cfg, "iv")
    # the cost of the default outputs relative to plasma alone, in this same process
    pk_s, _ = best_of(lambda: ketasim.simulate(model, doses, times, outputs=["plasma"]),
                      cfg["repeats"], cfg["warm_calls"])
    row["plasma_only_s"] = pk_s
    row["notes"].append(f"plasma alone: {fmt_s(pk_s)} -> default outputs cost "
                        f"{row['ketasim_s'] / pk_s:.1f}x")
    # what the schematic response itself costs: one of its outputs against plasma alone
    gl_s, _ = best_of(lambda: ketasim.simulate(model, doses, times, outputs=["glutamate"]),
                      cfg["repeats"], cfg["warm_calls"])
    row["glutamate_only_s"] = gl_s
    floor = write_floor((1, len(row["outputs"]), times.size), 1)
    row["notes"].append(f"glutamate alone (the schematic response integrated, one output): "
                        f"{fmt_s(gl_s)} = {gl_s / pk_s:.1f}x plasma alone; writing the "
                        f"{len(row['outputs'])} default outputs alone takes {fmt_s(floor)} "
                        f"= {floor / pk_s:.1f}x plasma alone")
    row["targets"] = [_target("iv-default speed", row["baselines"]["LSODA"]["ratio"]),
                      _target("iv-default cost", row["ketasim_s"] / pk_s)]
    return row


def sc_spravato(cfg):
    months = cfg["months"]
    times = _grid(months, 1 / 60)
    row = _one_subject("spravato", f"1 subject, Spravato course, {fmt_months(months)}, 1-min grid, "
                       "default outputs", ketasim.load_model("esketamine-nasal"),
                       ketasim.spravato_course(months=months), times, None, cfg, "spravato")
    row["targets"] = [_target("spravato speed", row["baselines"]["LSODA"]["ratio"])]
    return row


def sc_network12(cfg):
    months = cfg["months"]
    times = _grid(months, 1 / 60)
    row = _one_subject("network-12", f"12-compartment catenary chain + effect site, standard "
                       f"IV course, {fmt_months(months)}, 1-min grid", network12_model(),
                       ketasim.standard_iv_course(months=months), times, ["c1", "ce"], cfg,
                       "network-12")
    row["targets"] = []
    return row


# ----------------------------------------------------------------------------- populations
def _population(name, title, model, doses, times, params, outputs, cfg, n_sample, n_ref):
    n = len(next(iter(params.values())))
    _say(cfg, f"[{name}] {title}")
    small = {k: v[:2] for k, v in params.items()}
    jit_s = _warm(lambda: ketasim.simulate(model, doses, times[:50], params=small,
                                           outputs=outputs))
    ks_s, res = best_of(lambda: ketasim.simulate(model, doses, times, params=params,
                                                 outputs=outputs), cfg["repeats"],
                        min(2, cfg["warm_calls"]))
    shape = res.data.shape
    sample = np.sort(np.random.default_rng(7).choice(n, size=n_sample, replace=False))
    ks_sample = res.data[sample].copy()
    del res
    peak = traced_peak_mib(lambda: ketasim.simulate(model, doses, times, params=params,
                                                    outputs=outputs))
    systems = build_systems(model, doses, list(outputs), params=params, subjects=sample)
    t0 = time.perf_counter()
    lsoda = [solve_piecewise(s, times, "LSODA", BASE_RTOL, BASE_ATOL) for s in systems]
    per = (time.perf_counter() - t0) / n_sample
    refs = [solve_piecewise(s, times, "Radau", REF_RTOL, REF_ATOL) for s in systems[:n_ref]]
    e_ks = max(rel_err(ks_sample[i], r) for i, r in enumerate(refs))
    e_ls = max(rel_err(lsoda[i], r) for i, r in enumerate(refs))
    loop_s = per * n
    floor_w = write_floor(shape)
    steps = n * (times.size + 2 * systems[0].events[0].size)
    _say(cfg, f"  ketasim {fmt_s(ks_s)}; LSODA loop {fmt_s(loop_s)} (extrapolated)")
    return {"name": name, "title": title, "subjects": n, "timepoints": int(times.size),
            "outputs": list(outputs), "ketasim_s": ks_s, "ketasim_err": e_ks,
            "baselines": {"LSODA loop": {"s": loop_s, "err": e_ls, "ratio": loop_s / ks_s,
                                         "extrapolated": True}},
            "jit_warmup_s": jit_s, "ketasim_peak_mib": peak, "write_floor_s": floor_w,
            "chain_floor_s": steps * cfg["chain_ns"] * 1e-9,
            "rate": n * times.size / ks_s,
            "notes": [f"LSODA loop EXTRAPOLATED: {n_sample} random subjects took "
                      f"{per * 1e3:.0f} ms each, x {n:,}; errors on {n_ref} of them vs Radau "
                      f"rtol {REF_RTOL:g}",
                      f"{n * times.size / ks_s:.2e} subject-timepoints/s"]}


def sc_pop(cfg):
    n = cfg["pop_n"]
    months = cfg["months"]
    model = ketasim.load_model("ketamine-iv")
    row = _population("pop-10k" if n == 10_000 else f"pop-{n}",
                      f"{n:,} subjects (CL, V1 log-normal CV 30 %), standard IV course, "
                      f"{fmt_months(months)}, hourly grid, plasma", model,
                      ketasim.standard_iv_course(months=months), _grid(months, 1.0),
                      population_params(n), ["plasma"], cfg, cfg["pop_sample"], cfg["pop_ref"])
    row["targets"] = [_target("pop-10k speed", row["baselines"]["LSODA loop"]["ratio"])]
    return row


def _five_state_doses(months):
    iv = ketasim.standard_iv_course(months=months)
    horizon = months * DAYS_PER_MONTH * 24.0
    n_oral = max(int(horizon // 168.0), 1)
    oral = ketasim.Doses.single(50.0, "oral", time_h=36.0, addl=n_oral - 1, ii_h=168.0)
    return iv + oral


def sc_throughput(cfg):
    n = cfg["tp_n"]
    months = cfg["months"]
    model = five_state_model()
    k10 = model.parameters["K10"] * np.exp(OMEGA * np.random.default_rng(11).standard_normal(n))
    row = _population("throughput-5", f"5-state network, {n:,} subjects (K10 CV 30 %), IV "
                      f"course + weekly oral doses, {fmt_months(months)}, hourly grid, one output",
                      model, _five_state_doses(months), _grid(months, 1.0), {"K10": k10},
                      ["central"], cfg, cfg["tp_sample"], 1)
    row["targets"] = [_target("throughput rate", row["rate"]),
                      _target("throughput floor", row["ketasim_s"] / row["write_floor_s"])]
    row["notes"].append(f"memory-write floor {fmt_s(row['write_floor_s'])}: ketasim takes "
                        f"{row['ketasim_s'] / row['write_floor_s']:.1f}x")
    return row


# -------------------------------------------------------------------------------- metrics
def _metric_reference(sys_: System, starts, horizon):
    """Exact-to-reference per-session Cmax (ng/mL) and AUC (ng*h/mL) of output row 0."""
    from scipy.integrate import solve_ivp
    from scipy.optimize import minimize_scalar

    n = sys_.K.shape[0]
    c = sys_.C[0]
    Ka = np.zeros((n + 1, n + 1))
    Ka[:n, :n] = sys_.K
    Ka[n, :n] = c                              # d AUC / dt = c(t)
    y = np.zeros(n + 1)
    ev = _Events(sys_, n)
    start = min(float(starts[0]), float(ev.t[0]))
    inner = ev.t[(ev.t > start) & (ev.t < horizon)]
    bounds = np.unique(np.concatenate(([start], inner, starts, [horizon])))
    segs = []
    for a, b in itertools.pairwise(bounds):
        ev.apply_until(a, y)
        u = np.append(ev.u, 0.0)
        sol = solve_ivp(lambda t, y, u=u: Ka @ y + u, (a, b), y, method="Radau", rtol=REF_RTOL,
                        atol=REF_ATOL, jac=lambda t, y: Ka, dense_output=True)
        segs.append((a, b, sol.sol, y.copy()))
        y = sol.y[:, -1].copy()
    edges = np.r_[starts, horizon]
    cmax = np.zeros(len(starts))
    auc = np.zeros(len(starts))
    for k in range(len(starts)):
        lo, hi = edges[k], edges[k + 1]
        best = -1.0
        a_lo = a_hi = None
        for a, b, f, y0 in segs:
            if b <= lo or a >= hi:
                continue
            tt = np.linspace(a, b, max(3, int((b - a) * 60) + 1))
            v = c @ f(tt)[:n]
            v[0] = c @ y0[:n]                   # just after the events at a
            j = int(np.argmax(v))
            cand = v[j]
            if 0 < j < tt.size - 1:
                r = minimize_scalar(lambda t, f=f: -(c @ f(t)[:n]), bounds=(tt[j - 1], tt[j + 1]),
                                    method="bounded", options={"xatol": 1e-10})
                cand = max(cand, -r.fun)
            best = max(best, cand)
            if a_lo is None:
                a_lo = y0[n]
            a_hi = f(b)[n]
        cmax[k] = best
        auc[k] = a_hi - a_lo
    return cmax * 1e3, auc * 1e3


# np.trapz before NumPy 2.0 (the same rule; np.trapezoid is new in 2.0)
_trapezoid = getattr(np, "trapezoid", None) or np.trapz


def _lsoda_metrics(sys_: System, starts, horizon):
    times = ketasim.time_grid(horizon, 1 / 60)
    y = solve_piecewise(sys_, times, "LSODA", BASE_RTOL, BASE_ATOL)[0] * 1e3
    edges = np.r_[starts, horizon]
    cmax, auc = np.zeros(len(starts)), np.zeros(len(starts))
    for k in range(len(starts)):
        sel = (times >= edges[k]) & (times <= edges[k + 1])
        cmax[k] = y[sel].max()
        auc[k] = _trapezoid(y[sel], times[sel])
    return cmax, auc


def sc_metrics(cfg):
    target_n = 1_000_000
    months = cfg["months"]
    model = ketasim.load_model("ketamine-iv")
    doses = ketasim.standard_iv_course(months=months)
    metrics = ("cmax", "auc")
    from ketasim.engine import default_horizon_h, session_metrics

    name = "metrics-1m"
    _say(cfg, f"[{name}] {target_n:,} subjects, per-session Cmax and AUC only")
    small = population_params(2)
    jit_s = _warm(lambda: session_metrics(model, doses, params=small, metrics=metrics))
    # probe, then either run the million or a budgeted sample and extrapolate
    n_probe = cfg["metrics_probe"]
    probe_s, probe = timed(lambda: session_metrics(
        model, doses, params=population_params(n_probe), metrics=metrics))
    est = probe_s / n_probe * target_n
    if est <= cfg["metrics_budget_s"]:
        n_run, chunk = target_n, target_n
    else:
        n_run = int(min(max(n_probe, cfg["metrics_small_budget_s"] / (probe_s / n_probe)),
                        cfg["metrics_max_small"]))
        # a grid-based session_metrics holds whole curves: keep its calls small
        chunk = min(n_run, 8) if probe_s / n_probe > 0.05 else n_run
    params = population_params(n_run)

    def run():
        out = None
        for i in range(0, n_run, chunk):
            p = {k: v[i:i + chunk] for k, v in params.items()}
            r = session_metrics(model, doses, params=p, metrics=metrics)
            if out is None:
                out = {k: [v] for k, v in r.items()}
            else:
                for k, v in r.items():
                    out[k].append(v)
        return {k: (v[0] if k == "session_start_h" else np.concatenate(v))
                for k, v in out.items()}

    if n_run == n_probe:
        ks_s, res = probe_s, probe          # the probe was the run
    else:
        ks_s, res = timed(run)
    ks_full = ks_s / n_run * target_n
    extrap = n_run < target_n
    starts = np.asarray(res["session_start_h"])
    horizon = default_horizon_h(doses)                 # session_metrics' default
    S = starts.size
    cm = np.stack([res[f"cmax_s{k + 1}"] for k in range(S)], axis=1)
    au = np.stack([res[f"auc_s{k + 1}"] for k in range(S)], axis=1)
    sample = np.arange(cfg["metrics_sample"])
    systems = build_systems(model, doses, ["plasma"], params=params, subjects=sample)
    t0 = time.perf_counter()
    lsoda = [_lsoda_metrics(s, starts, horizon) for s in systems]
    per = (time.perf_counter() - t0) / len(systems)
    refs = [_metric_reference(s, starts, horizon) for s in systems]

    def err(vals):
        e = 0.0
        for (c, a), (rc, ra) in zip(vals, refs):
            e = max(e, np.max(np.abs(c - rc)) / np.max(rc), np.max(np.abs(a - ra)) / np.max(ra))
        return float(e)

    e_ks = err([(cm[i], au[i]) for i in sample])
    e_ls = err(lsoda)
    loop_s = per * target_n
    _say(cfg, f"  ketasim {fmt_s(ks_full)}{' (extrapolated)' if extrap else ''}; LSODA loop "
         f"{fmt_s(loop_s)} (extrapolated)")
    note = (f"ketasim EXTRAPOLATED from {n_run:,} subjects ({fmt_s(ks_s)}): "
            f"{ks_s / n_run * 1e3:.2f} ms/subject x {target_n:,}" if extrap
            else f"ketasim ran all {target_n:,} subjects")
    return {"name": name, "title": f"{target_n:,} subjects, per-session Cmax and AUC "
            f"(engine.session_metrics), standard IV course, {fmt_months(months)}",
            "subjects": target_n, "subjects_run": n_run, "timepoints": None,
            "outputs": list(metrics), "ketasim_s": ks_full, "ketasim_extrapolated": extrap,
            "ketasim_err": e_ks,
            "baselines": {"LSODA loop": {"s": loop_s, "err": e_ls, "ratio": loop_s / ks_full,
                                         "extrapolated": True}},
            "jit_warmup_s": jit_s, "ketasim_peak_mib": None, "targets": [],
            "notes": [note, f"LSODA loop EXTRAPOLATED: {len(systems)} subjects on a 1-min grid "
                      f"(max and trapezoid AUC per session), {per:.2f} s each, x {target_n:,}",
                      f"errors: Cmax and AUC per session vs Radau rtol {REF_RTOL:g} with an "
                      f"AUC state and a refined maximum, on {len(systems)} subjects"]}


# ---------------------------------------------------------------------------------- trivial
def sc_trivial(cfg):
    from scipy.integrate import solve_ivp

    _say(cfg, "[trivial] one compartment, one bolus, ten output times")
    model = one_compartment_model()
    doses = ketasim.Doses.single(100.0, "iv")
    times = np.linspace(0.0, 9.0, 10)
    jit_s = _warm(lambda: ketasim.simulate(model, doses, times))
    calls = []
    for _ in range(cfg["trivial_calls"]):
        t0 = time.perf_counter()
        r = ketasim.simulate(model, doses, times)
        calls.append(time.perf_counter() - t0)
    ks_s = float(np.median(calls))
    exact = 100.0 / 100.0 * np.exp(-0.5 * times)        # mg/L
    e_ks = rel_err(r.data[0], exact[None])
    K = np.array([[-0.5]])
    base = {}
    for m in SOLVERS:
        ts, last = [], None
        for _ in range(max(5, cfg["trivial_calls"] // 20)):
            t0 = time.perf_counter()
            last = solve_ivp(lambda t, y: K @ y, (0.0, 9.0), [100.0], method=m, t_eval=times,
                             rtol=BASE_RTOL, atol=BASE_ATOL,
                             **({"jac": lambda t, y: K} if m in STIFF else {}))
            ts.append(time.perf_counter() - t0)
        s = float(np.median(ts))
        base[m] = {"s": s, "err": rel_err(last.y / 100.0, exact[None]), "ratio": s / ks_s}
    _say(cfg, f"  ketasim median {ks_s * 1e6:.0f} us over {len(calls)} calls")
    return {"name": "trivial", "title": "one-compartment model, one bolus, ten output times "
            "(fixed cost of a call)", "subjects": 1, "timepoints": 10, "outputs": ["central"],
            "ketasim_s": ks_s, "ketasim_err": e_ks, "baselines": base, "jit_warmup_s": jit_s,
            "ketasim_peak_mib": None,
            "targets": [_target("trivial", ks_s * 1e6)],
            "notes": [f"median of {len(calls)} calls (baselines: median of "
                      f"{max(5, cfg['trivial_calls'] // 20)}); errors vs the closed form "
                      "C0 exp(-k t)"]}


# ------------------------------------------------------------------- compile time and CLI
def _env_with_package(extra=None):
    env = dict(os.environ)
    pkg_parent = str(Path(ketasim.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"]
                                      if env.get("PYTHONPATH") else "")
    env.update(extra or {})
    return env


_COMPILE_SCRIPT = r"""
import time, json, sys
t0 = time.perf_counter()
import numpy as np
import ketasim
t1 = time.perf_counter()
m = ketasim.load_model("ketamine-iv")
d = ketasim.standard_iv_course(months=1)
t = ketasim.time_grid(24 * 30, 1 / 60)
ketasim.simulate(m, d, t)                                   # one subject, default outputs
t2 = time.perf_counter()
ketasim.simulate(m, d, t[:2000], params={"CL": np.array([90.0, 100.0])})   # a population
t3 = time.perf_counter()
from ketasim.engine import session_metrics
session_metrics(m, d, params={"CL": np.array([90.0, 100.0])}, metrics=("cmax", "auc"))
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "one_s": t2 - t1, "population_s": t3 - t2,
                  "metrics_s": t4 - t3, "total_s": t4 - t0}))
"""


def sc_compile(cfg):
    _say(cfg, "[compile] first call in a fresh process: empty JIT cache, then warm cache")
    with tempfile.TemporaryDirectory(prefix="ketasim-bench-cache-") as cache:
        env = _env_with_package({"NUMBA_CACHE_DIR": cache})
        runs = []
        for _ in range(2):
            p = subprocess.run([sys.executable, "-c", _COMPILE_SCRIPT], env=env,
                               capture_output=True, text=True, timeout=600)
            if p.returncode != 0:
                raise RuntimeError(f"compile probe failed: {p.stderr.strip()[-500:]}")
            runs.append(json.loads(p.stdout.strip().splitlines()[-1]))
    cold, warm = runs
    _say(cfg, f"  cold {cold['total_s']:.1f} s, warm cache {warm['total_s']:.1f} s")
    # what a new user meets: the first `ketasim course`, whose figure and summary need both
    # kernels (a helper process compiles part of them meanwhile, see ketasim._warm)
    with tempfile.TemporaryDirectory(prefix="ketasim-bench-cache-") as cache, \
            tempfile.TemporaryDirectory(prefix="ketasim-bench-course-") as out:
        env = _env_with_package({"NUMBA_CACHE_DIR": cache})
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "ketasim", "course", "--out-dir", out],
                           env=env, capture_output=True, text=True, timeout=900)
        course_s = time.perf_counter() - t0
        if p.returncode != 0:
            raise RuntimeError(f"first ketasim course failed: {p.stderr.strip()[-500:]}")
    _say(cfg, f"  first `ketasim course` with an empty cache: {course_s:.1f} s")
    return {"name": "compile",
            "title": "first calls in a fresh process (simulate for one subject and for a "
            "population, session_metrics): empty JIT cache, then warm cache", "subjects": None,
            "timepoints": None, "outputs": [], "ketasim_s": cold["total_s"],
            "ketasim_err": None, "baselines": {}, "cold": cold, "warm": warm,
            "first_course_s": course_s,
            "targets": [_target("compile", cold["total_s"])],
            "notes": [f"cold: import {cold['import_s']:.2f} s, one subject "
                      f"{cold['one_s']:.2f} s, population {cold['population_s']:.2f} s, "
                      f"session metrics {cold['metrics_s']:.2f} s",
                      f"the first `ketasim course` with an empty cache (figure, table and "
                      f"summary; a helper process compiles part of the grid kernel and the "
                      f"metrics kernel meanwhile): "
                      f"{course_s:.1f} s",
                      f"warm cache (cold start): total {warm['total_s']:.2f} s (import "
                      f"{warm['import_s']:.2f} s, one subject {warm['one_s']:.2f} s, "
                      f"population {warm['population_s']:.2f} s, session metrics "
                      f"{warm['metrics_s']:.2f} s)"]}


def sc_cli(cfg):
    _say(cfg, "[cli] ketasim simulate (standard course, CSV + figure), cache warm")
    with tempfile.TemporaryDirectory(prefix="ketasim-bench-cli-") as d:
        cmd = [sys.executable, "-m", "ketasim", "simulate", "--out", f"{d}/course.csv",
               "--plot", f"{d}/course.png"]
        env = _env_with_package()
        times = []
        for i in range(1 + cfg["cli_runs"]):        # the first run warms the cache (untimed)
            t0 = time.perf_counter()
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
            dt = time.perf_counter() - t0
            if p.returncode != 0:
                raise RuntimeError(f"CLI run failed: {p.stderr.strip()[-500:]}")
            if i:
                times.append(dt)
        size = os.path.getsize(f"{d}/course.csv")
    s = min(times)
    _say(cfg, f"  best {s:.2f} s")
    return {"name": "cli", "title": "python -m ketasim simulate --out course.csv --plot "
            "course.png (standard IV course, 6-min grid), JIT cache warm", "subjects": 1,
            "timepoints": None, "outputs": [], "ketasim_s": s, "ketasim_err": None,
            "baselines": {}, "targets": [_target("cli", s)],
            "notes": [f"best of {len(times)} runs (all: "
                      + ", ".join(f"{t:.2f}" for t in times) + f" s); CSV {size / 2**20:.1f} MiB"]}


# -------------------------------------------------------------------------------- scaling
def sc_scaling(cfg):
    """Throughput against the number of subjects (the README figure)."""
    months = cfg["months"]
    times = _grid(months, 1.0)
    out = {}
    for label, model, doses, pname in (
            ("ketamine-iv, plasma", ketasim.load_model("ketamine-iv"),
             ketasim.standard_iv_course(months=months), "CL"),
            ("5-state network, one output", five_state_model(), _five_state_doses(months),
             "K10")):
        outputs = ["plasma"] if pname == "CL" else ["central"]
        typ = model.parameters[pname]
        pts = []
        for n in cfg["scaling_n"]:
            p = {pname: typ * np.exp(OMEGA * np.random.default_rng(n).standard_normal(n))}
            ketasim.simulate(model, doses, times[:20], params={pname: p[pname][:2]},
                             outputs=outputs)
            reps = cfg["repeats"] if n <= 1000 else 2      # a 10,000-subject call varies by 2x
            s, res = best_of(lambda m=model, d=doses, p=p, o=outputs: ketasim.simulate(
                m, d, times, params=p, outputs=o), reps)
            w = write_floor(res.data.shape, 3)
            del res
            pts.append({"n": n, "s": s, "rate": n * times.size / s,
                        "floor_rate": n * times.size / w})
            _say(cfg, f"  {label}: {n:,} subjects {fmt_s(s)}, {n * times.size / s:.2e} /s")
        out[label] = pts
    sys_ = build_systems(ketasim.load_model("ketamine-iv"), ketasim.standard_iv_course(
        months=months), ["plasma"])[0]
    ls_s, _ = timed(lambda: solve_piecewise(sys_, times, "LSODA", BASE_RTOL, BASE_ATOL))
    return {"name": "scaling", "title": f"throughput against subjects, hourly grid, "
            f"{fmt_months(months)}", "subjects": max(cfg["scaling_n"]),
            "timepoints": int(times.size),
            "outputs": [], "ketasim_s": None, "ketasim_err": None, "baselines": {},
            "series": out, "lsoda_rate": times.size / ls_s, "targets": [],
            "notes": [f"LSODA (one subject, ketamine-iv plasma) {times.size / ls_s:.2e} "
                      "subject-timepoints/s"]}


def plot_throughput(rows: list, path, machine: dict | None = None) -> None:
    """Log-log figure of subject-timepoints per second against the number of subjects, saved
    all-or-nothing to ``path`` (png, pdf or svg, from its suffix)."""
    from .plotting import save_figure

    fig = throughput_figure(rows, machine)
    try:
        save_figure(fig, path, dpi=THROUGHPUT_DPI)
    finally:
        import matplotlib.pyplot as plt
        plt.close(fig)


THROUGHPUT_DPI = 120


def throughput_figure(rows: list, machine: dict | None = None):
    """The figure of :func:`plot_throughput` (a matplotlib Figure; the caller closes it)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sc = next(r for r in rows if r["name"] == "scaling")
    fig, ax = plt.subplots(figsize=(7.2, 5.4), dpi=THROUGHPUT_DPI)
    styles = {"ketamine-iv, plasma": ("C0", "o"), "5-state network, one output": ("C1", "s")}
    floor = None
    for label, pts in sc["series"].items():
        n = [p["n"] for p in pts]
        color, marker = styles.get(label, ("C2", "^"))
        ax.plot(n, [p["rate"] for p in pts], marker=marker, color=color,
                label=f"ketasim, {label}")
        if label.startswith("5-state"):
            floor = (n, [p["floor_rate"] for p in pts])
    if floor:
        ax.plot(*floor, ls=":", color="0.35", marker=".",
                label="memory-write floor: filling an array of the 5-state output's size")
    n_all = sorted({p["n"] for pts in sc["series"].values() for p in pts})
    ax.plot(n_all, [sc["lsoda_rate"]] * len(n_all), ls="--", color="C3",
            label="scipy solve_ivp LSODA (rtol 1e-8), one subject at a time, ketamine-iv")
    ax.axhline(2e8, color="0.5", lw=0.8, ls="-.")
    ax.annotate("target: 2e8 /s (5-state, one output)", (math.sqrt(n_all[0] * n_all[-1]), 2e8),
                xytext=(0, 3), textcoords="offset points", ha="center", va="bottom",
                fontsize=8, color="0.35")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("subjects simulated in one call")
    ax.set_ylabel("subject-timepoints per second")
    ax.set_title(f"Throughput, {sc['title'].split(', ', 1)[1]} "
                 f"({sc['timepoints']:,} points per subject)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=8, loc="lower center", ncol=1,
               frameon=False, bbox_to_anchor=(0.5, 0.0))
    note = "higher is better; each point is the best of repeated calls, JIT compilation excluded"
    if machine:
        note += (f"\n{machine.get('cpus')} CPUs, ketasim {machine.get('ketasim')}, load average "
                 f"{machine.get('load_1min') or 0:.1f} at the start of the run")
    ax.text(0.015, 0.2, note, transform=ax.transAxes, va="bottom", fontsize=7, color="0.4")
    fig.tight_layout(rect=(0, 0.17, 1, 1))
    return fig


# ---------------------------------------------------------------------------------- suite
SCENARIOS = {
    "iv-pk": sc_iv_pk,
    "iv-default": sc_iv_default,
    "spravato": sc_spravato,
    "pop-10k": sc_pop,
    "throughput-5": sc_throughput,
    "metrics-1m": sc_metrics,
    "network-12": sc_network12,
    "trivial": sc_trivial,
    "compile": sc_compile,
    "cli": sc_cli,
    "scaling": sc_scaling,
}
QUICK_SKIPS = ("compile", "cli", "scaling")   # seconds each even at tiny sizes


def config(quick: bool, repeats: int | None = None) -> dict:
    if quick:
        cfg = {"months": 1 / 30, "pop_n": 200, "pop_sample": 2, "pop_ref": 1, "tp_n": 500,
               "tp_sample": 1, "metrics_probe": 2, "metrics_budget_s": 0.0,
               "metrics_small_budget_s": 0.0, "metrics_max_small": 2, "metrics_sample": 1,
               "trivial_calls": 100, "cli_runs": 1, "scaling_n": (1, 10, 100),
               "repeats": 2, "warm_calls": 1, "one_repeats": 2}
    else:
        cfg = {"months": 6.0, "pop_n": 10_000, "pop_sample": 20, "pop_ref": 2,
               "tp_n": 10_000, "tp_sample": 5, "metrics_probe": 8, "metrics_budget_s": 300.0,
               "metrics_small_budget_s": 20.0, "metrics_max_small": 1_000_000, "metrics_sample": 2,
               "trivial_calls": 1000, "cli_runs": 3,
               "scaling_n": (1, 10, 100, 1000, 10_000), "repeats": 3, "warm_calls": 5,
               "one_repeats": 10}
    if repeats:
        cfg["repeats"] = repeats
        cfg["one_repeats"] = repeats
    cfg["quick"] = quick
    return cfg


def _machine() -> dict:
    import numba
    import scipy

    from ketasim import engine
    return {"ketasim": ketasim.__version__, "python": platform.python_version(),
            "numpy": np.__version__, "scipy": scipy.__version__, "numba": numba.__version__,
            "cpus": os.cpu_count(), "threads": engine._threads(None),
            "machine": f"{platform.machine()} {platform.system()}",
            "load_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def _run_one(name: str, cfg: dict) -> dict:
    t0 = time.perf_counter()
    c0 = time.process_time()
    try:
        row = SCENARIOS[name](cfg)
    except Exception as exc:  # a failing scenario is reported, the others still run
        row = {"name": name, "title": "", "error": f"{type(exc).__name__}: {exc}",
               "baselines": {}, "targets": [], "notes": []}
    row["scenario_s"] = time.perf_counter() - t0
    row["scenario_cpu_s"] = time.process_time() - c0
    return row


def _run_isolated(name: str, cfg: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="ketasim-bench-") as d:
        out = Path(d) / "row.json"
        p = subprocess.run([sys.executable, "-c",
                            "import sys, json; from ketasim.bench import _child; "
                            "sys.exit(_child(sys.argv[1], sys.argv[2], sys.argv[3]))",
                            name, json.dumps(cfg), str(out)], env=_env_with_package(),
                           stdout=subprocess.DEVNULL, stderr=None)
        if p.returncode != 0 or not out.exists():
            return {"name": name, "title": "", "error": f"subprocess exit {p.returncode}",
                    "baselines": {}, "targets": [], "notes": []}
        return json.loads(out.read_text())


def _child(name: str, cfg_json: str, out_path: str) -> int:
    import resource

    cfg = json.loads(cfg_json)
    for k in ("scaling_n",):
        cfg[k] = tuple(cfg[k])
    row = _run_one(name, cfg)
    row["process_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(out_path).write_text(json.dumps(_jsonable(row)))
    return 0


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, (np.floating, float)):
        return float(o) if np.isfinite(o) else None
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    return o


def run_suite(names=None, quick: bool = False, isolate: bool = False, repeats=None,
              verbose: bool = True) -> dict:
    """Run the named scenarios (default: all; in quick mode all but compile/cli/scaling)."""
    cfg = config(quick, repeats)
    cfg["verbose"] = verbose
    if names is None:
        names = [n for n in SCENARIOS if not (quick and n in QUICK_SKIPS)]
    t0 = time.perf_counter()
    machine = _machine()
    cfg["chain_ns"] = chain_ns_per_step()
    wf = write_floor((2 ** 24,))
    limits = {"chain_ns_per_step": cfg["chain_ns"],
              "write_floor_gb_s": 2 ** 24 * 8 / wf / 1e9}
    rows = []
    with tempfile.TemporaryDirectory(prefix="ketasim-bench-ref-") as ref_cache:
        cfg["ref_cache"] = ref_cache
        for nm in names:
            row = _run_isolated(nm, cfg) if isolate else _run_one(nm, cfg)
            rows.append(_jsonable(row))
    machine["load_1min_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"quick": quick, "machine": machine, "limits": limits,
            "settings": {"baseline_rtol": BASE_RTOL, "baseline_atol": BASE_ATOL,
                         "reference": f"Radau rtol {REF_RTOL:g} atol {REF_ATOL:g}",
                         "months": cfg["months"], "repeats": cfg["repeats"]},
            "scenarios": rows, "total_s": time.perf_counter() - t0}


# ------------------------------------------------------------------------------------ table
def _cell(b: dict) -> str:
    star = "*" if b.get("extrapolated") else ""
    return f"{fmt_s(b['s'])}{star} · {fmt_x(b['ratio'])} · {fmt_e(b['err'])}"


def markdown_table(results: dict) -> str:
    rows = results["scenarios"]
    cols = list(SOLVERS) + ["expm", "LSODA loop"]
    used = [c for c in cols if any(c in r.get("baselines", {}) for r in rows)]
    head = ["scenario", "ketasim · error"] + [f"{c} · ratio · error" for c in used] + \
        ["target", "met / gap"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['name']} | failed: {r['error']} |" + " |" * (len(head) - 2))
            continue
        ks = r.get("ketasim_s")
        kcell = f"{fmt_s(ks)}{_extrap(r)}"
        if r.get("ketasim_err") is not None:
            kcell += f" · {fmt_e(r['ketasim_err'])}"
        if r["name"] == "scaling":
            best = max(p["rate"] for pts in r["series"].values() for p in pts)
            kcell = f"up to {best:.1e} /s"
        cells = [r["name"], kcell]
        for c in used:
            b = r.get("baselines", {}).get(c)
            cells.append(_cell(b) if b else "")
        tg = r.get("targets", [])
        cells.append("; ".join(f"{t['what']} {t['target']}" for t in tg))
        cells.append("; ".join(
            f"{t['verdict']} ({t['value']:.3g})" for t in tg))
        lines.append("| " + " | ".join(cells) + " |")
    lim = results["limits"]
    tables, empty = [], []      # a table with a header and no rows is left out, and said so
    for what, table in (("speed summary", summary_table(results)),
                        ("targets", targets_table(results))):
        if table.count("\n") > 1:
            tables += [table, ""]
        else:
            empty.append(what)
    if empty:
        tables += [f"No {' or '.join(empty)} for: "
                   f"{', '.join(r['name'] for r in rows) or 'no scenario'}.", ""]
    out = ["\n".join(lines), "", *tables,
           "Cells: wall time · speed ratio (baseline time / ketasim time) · max error vs the "
           f"reference ({results['settings']['reference']}); error = max over outputs of "
           "max|y - y_ref| / max|y_ref|. * = extrapolated from a sample (see notes). Baselines: "
           f"solve_ivp at rtol {BASE_RTOL:g}, atol {BASE_ATOL:g}; expm = scipy.linalg.expm per "
           "distinct step + Python loop. JIT compilation excluded (see `compile`).",
           "",
           f"Machine limits (same run): memory write {lim['write_floor_gb_s']:.1f} GB/s; one "
           f"dependent multiply-add chain {lim['chain_ns_per_step']:.2f} ns/step.", ""]
    floors = []
    for r in rows:
        if r.get("write_floor_s") and r.get("ketasim_s"):
            wf = r["write_floor_s"]
            floors.append(f"| {r['name']} | {fmt_s(r['ketasim_s'])} | "
                          f"{fmt_s(wf)} ({r['ketasim_s'] / wf:.1f}×)"
                          f" | {fmt_s(r.get('chain_floor_s'))} "
                          f"({r['ketasim_s'] / r['chain_floor_s']:.1f}×) | "
                          f"{_mib(r.get('ketasim_peak_mib'))} | "
                          f"{_mib(r.get('process_peak_rss_mib'))} |")
    if floors:
        out += ["| scenario | ketasim | memory-write floor (ketasim ×) | single-chain floor "
                "(ketasim ×) | ketasim peak traced memory | process peak RSS |",
                "|---|---|---|---|---|---|"] + floors + [""]
    out.append("Notes:")
    for r in rows:
        for note in r.get("notes", []):
            out.append(f"- {r['name']}: {note}")
        if r.get("jit_warmup_s") is not None:
            out.append(f"- {r['name']}: first (warm-up) call {fmt_s(r['jit_warmup_s'])}, "
                       "excluded")
    m = results["machine"]
    threads = m.get("threads", m.get("numba_threads"))
    out.append(f"\nketasim {m['ketasim']}, Python {m['python']}, NumPy {m['numpy']}, SciPy "
               f"{m['scipy']}, Numba {m['numba']}; {m['cpus']} CPUs, {threads} "
               f"threads, {m['machine']}; load average {m['load_1min']:.2f} at start, "
               f"{m['load_1min_end']:.2f} at end; suite {results['total_s']:.0f} s"
               + (" (--quick: tiny sizes, the verdicts are not meaningful)"
                  if results["quick"] else ""))
    return "\n".join(out)


def _extrap(r: dict) -> str:
    """The mark of a ketasim time extrapolated from fewer subjects (and from how many)."""
    if not r.get("ketasim_extrapolated"):
        return ""
    return f"* (from {r['subjects_run']:,} subjects)"


def summary_table(results: dict) -> str:
    """A compact table (for the README): ketasim, LSODA and the best other baseline."""
    lines = ["| scenario | ketasim · error | LSODA · speed-up · error | fastest other scipy "
             "baseline · speed-up | ketasim peak memory |", "|---|---|---|---|---|"]
    for r in results["scenarios"]:
        if r.get("error") or r["name"] in ("compile", "cli", "scaling"):
            continue
        b = dict(r.get("baselines", {}))
        ks = f"{fmt_s(r['ketasim_s'])}{_extrap(r)}"
        if r.get("ketasim_err") is not None:
            ks += f" · {fmt_e(r['ketasim_err'])}"
        ls = b.pop("LSODA", None) or b.pop("LSODA loop", None)
        lcell = _cell(ls) if ls else ""
        other = min(b.items(), key=lambda kv: kv[1]["s"], default=None)
        ocell = f"{other[0]} {fmt_s(other[1]['s'])} · {fmt_x(other[1]['ratio'])}" if other else ""
        lines.append(f"| {r['name']} | {ks} | {lcell} | {ocell} | "
                     f"{_mib(r.get('ketasim_peak_mib'))} |")
    return "\n".join(lines)


def targets_table(results: dict) -> str:
    """One row per target of the issue: measured value and met / gap."""
    lines = ["| target | scenario | measured | goal | met / gap |", "|---|---|---|---|---|"]
    for r in results["scenarios"]:
        for t in r.get("targets", []):
            v = t["value"]
            val = f"{v:.3g}" if v < 1e5 else f"{v:.2e}"
            lines.append(f"| {t['what']} | {r['name']} | {val} | {t['target']} | "
                         f"{'**met**' if t['met'] else t['verdict']} |")
    return "\n".join(lines)


def _mib(v) -> str:
    return "n/a" if v is None else f"{v:,.0f} MiB" if v >= 10 else f"{v:.2g} MiB"


# ------------------------------------------------------------------------------------- main
def build_parser(prog="ketasim bench") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Benchmark ketasim against scipy: named "
                                "scenarios, baselines timed in the same run, errors against a "
                                "Radau rtol 1e-12 reference.")
    add_arguments(p)
    return p


def run_args(args) -> int:
    from .errors import KetasimInputError

    names = None
    if args.only is not None:
        names = list(dict.fromkeys(s.strip() for a in args.only for s in a.split(",")
                                   if s.strip()))          # (each scenario once)
        if not names:
            raise KetasimInputError(f"--only: got {','.join(args.only)!r}, expected one or "
                                    "more scenario names: " + ", ".join(SCENARIOS))
        for s in names:
            if s not in SCENARIOS:
                raise KetasimInputError(f"--only: got {s!r}, expected one of "
                                        + ", ".join(SCENARIOS))
    if args.repeats is not None and args.repeats < 1:
        raise KetasimInputError(f"--repeats: got {args.repeats}, expected a whole number >= 1")
    if args.figure:
        if names is None and args.quick:
            names = [n for n in SCENARIOS if n not in QUICK_SKIPS]
        if names is not None and "scaling" not in names:
            names.append("scaling")
    json_path = args.json
    if json_path is None and not (args.quick or args.only):
        json_path = DEFAULT_JSON
    if json_path == "-":
        json_path = None
    # the output files are checked before the suite runs (minutes), and written together
    from .io import OutputSet, check_outputs

    if json_path is not None and not str(json_path).strip():
        raise KetasimInputError("--json: empty; expected a file name ('-' for none)")
    if json_path is not None and Path(json_path).is_dir():   # (--figure's type checks its own)
        raise KetasimInputError(f"--json: {str(json_path)!r} is a folder, expected a file name")
    if json_path is not None and str(json_path).endswith(("/", os.sep)):
        raise KetasimInputError(f"--json: {str(json_path)!r} ends in {str(json_path)[-1]!r}, a "
                                "folder; expected a file name")
    check_outputs([("--json", json_path), ("--figure", args.figure)])
    if args.json is None and json_path is not None and not _own_results(json_path):
        raise KetasimInputError(f"--json: not given, and the default {json_path} here is not "
                                "a ketasim benchmark's results (another program's file?); "
                                "expected --json PATH for the file to write ('-' for none)")
    isolate = (not args.quick) if args.isolate is None else args.isolate
    results = run_suite(names, quick=args.quick, isolate=isolate, repeats=args.repeats)
    print(markdown_table(results))
    if args.json is None and json_path is None:
        print(f"\n(not written to {DEFAULT_JSON}: a --quick or --only run writes JSON only "
              "with --json PATH)", file=sys.stderr)
    outputs = OutputSet()
    if json_path:
        outputs.add(json_path, json.dumps(results, indent=1))
    no_figure = None
    if args.figure:
        if any(r["name"] == "scaling" and not r.get("error") for r in results["scenarios"]):
            import matplotlib.pyplot as plt

            from .plotting import figure_bytes

            fig = throughput_figure(results["scenarios"], results["machine"])
            try:
                outputs.add(args.figure, figure_bytes(
                    fig, Path(args.figure).suffix.lstrip(".").lower(), THROUGHPUT_DPI))
            finally:
                plt.close(fig)
        else:       # the results are still written; the figure cannot be
            no_figure = "--figure: the scaling scenario failed; no figure drawn"
    outputs.commit()
    for p in (json_path, args.figure if not no_figure else None):
        if p is not None:
            print(f"wrote {p}", file=sys.stderr)
    if no_figure:
        raise KetasimInputError(no_figure)
    return 0


def _own_results(path) -> bool:
    """Whether ``path`` may be replaced by the suite's default results: absent, or the JSON of
    an earlier run (``machine.ketasim`` names the version that wrote it)."""
    try:
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        return False
    return isinstance(old, dict) and isinstance(old.get("machine"), dict) \
        and "ketasim" in old["machine"]


def main(argv=None, prog="ketasim bench") -> int:
    from ._plainout import plain_output
    from .errors import KetasimInputError

    restore_output = plain_output()     # "µs" as "us" on an ASCII terminal (benchmarks/run.py)
    try:
        args = build_parser(prog).parse_args(argv)
        return run_args(args)
    except KetasimInputError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    finally:
        restore_output()
