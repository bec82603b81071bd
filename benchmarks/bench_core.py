#!/usr/bin/env python
"""Core speed and accuracy benchmarks for ketasim's exact linear-compartment engine.

Run from the repository root::

    python benchmarks/bench_core.py            # full run (a few minutes on 2 cores)
    python benchmarks/bench_core.py --quick    # smaller sizes, a smoke test (about 30 s)
    python benchmarks/bench_core.py --only course-1min population-10k

Scenarios (DESIGN.md, convention 10: named scenarios, JIT warm-up excluded, the scipy baseline
timed in the same run, a table with speed ratio and max error)
--------------------------------------------------------------------------------------------
``course-1min``
    One 70 kg subject, the six-month standard IV course (:func:`ketasim.standard_iv_course`,
    0.5 mg/kg over 40 min), outputs ``central`` and the effect site ``ce`` on a 1-minute grid.
    ketasim (one :func:`ketasim.simulate` call) against scipy's ``solve_ivp(method="LSODA",
    rtol=1e-6, atol=1e-9)`` integrated segment by segment between dose events, with
    ``t_eval`` = the same output grid and the exact Jacobian. Both are scored against a tight
    reference: ``solve_ivp(method="Radau", rtol=1e-12, atol=1e-16)`` on the same segments.
    A second tight solution (LSODA, rtol=1e-12) is compared with the Radau one to show the
    *reference floor*: a ketasim error at that level means "as exact as we can measure".
``population-10k``
    10,000 subjects, log-normal between-subject variability on K10 (omega 0.3) and V1
    (omega 0.25), fixed seed, the same six-month course on an hourly grid, output ``central``.
    ketasim in one call against a per-subject LSODA loop. The loop over 10,000 subjects would
    take tens of minutes, so LSODA is timed on a random subset of 50 subjects and extrapolated
    linearly (the output says so). Errors are scored on part of that subset against tight
    LSODA (rtol=1e-12) solutions.
``throughput``
    A 5-state network (oral depot + three compartments + effect site), N subjects with their own
    K10, the IV course plus weekly oral doses, output ``central`` on a 10-minute grid: ketasim's
    subject-timepoints per second, and its time relative to just allocating and writing an
    output array of the same size (``np.empty`` + ``fill``). Accuracy is checked on a few
    subjects against tight LSODA.

Every scipy baseline and reference in this file builds its rate matrix by hand from the
micro-constants and its dose events from :func:`ketasim.expand`, so it shares no model or
event code with the engine it checks. Errors are ``max |c - c_ref| / max |c_ref|`` per output
(the maximum over outputs, time points and scored subjects): absolute error normalised by the
peak concentration.

Timing: every ketasim call is first made once on a tiny grid with the same argument types (so
Numba compilation or cache loading is excluded; its time is printed separately), then the best
of ``--repeats`` runs is reported. The scipy baselines are run once (course-1min: best of
``--repeats``); they are timed with the same output grid as ketasim.

Targets (DESIGN.md, "Where the engine is going"; 2-core machine, LSODA in the same run)
----------------------------------------------------------------------------------------
* course-1min: ketasim >= 100x faster than LSODA, at >= 100x smaller error.
* population-10k: >= 2,000x faster than a per-subject LSODA loop.
* throughput: >= 2e8 subject-timepoints per second for a 5-state network, and within 2x of
  the time it takes just to write the output array.

The script reports PASS/FAIL against each target but always exits 0 (a benchmark, not a test).
With ``--quick`` the sizes are smaller than the targets assume, so the verdicts are indicative.

Model: a 3-compartment racemic ketamine network, Domino EF et al. "Ketamine kinetics in
unmedicated and diazepam-premedicated subjects", Clin Pharmacol Ther 1984;36(5):645-653
(V1 = 0.063 L/kg, micro-constants per minute, converted to per hour below), with an effect
site ke0 = ln 2 / 6.1 min = 6.8 /h (blood-effect-site equilibration half-life averaged over
endpoints: Olofsen E et al. Anesthesiology 2012;117(2):353-364). Built inline with
:meth:`ketasim.Model.from_dict` so the benchmark does not move when the shipped presets change.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import math
import os
import platform
import sys
import time

import numba
import numpy as np
import scipy
from scipy.integrate import solve_ivp

import ketasim
from ketasim.courses import DAYS_PER_MONTH

# ---------------------------------------------------------------------------------- the model
PER_MIN_TO_PER_H = 60.0
WEIGHT_KG = 70.0

# Domino EF, Domino SE, Smith RE, et al. Ketamine kinetics in unmedicated and
# diazepam-premedicated subjects. Clin Pharmacol Ther 1984;36(5):645-653. Racemic ketamine,
# 70 kg; rate constants in 1/min in the paper, 1/h here.
DOMINO_1984 = {
    "V1": 0.063 * WEIGHT_KG,                 # L
    "K10": 0.4381 * PER_MIN_TO_PER_H,        # 1/h
    "K12": 0.5921 * PER_MIN_TO_PER_H,
    "K13": 0.590 * PER_MIN_TO_PER_H,
    "K21": 0.247 * PER_MIN_TO_PER_H,
    "K31": 0.0146 * PER_MIN_TO_PER_H,
    # Olofsen E et al. Anesthesiology 2012;117:353-364: t1/2,ke0 6.1 min -> ln2/6.1 min = 6.8 /h
    "KE0": 6.8,                              # 1/h
}
# Oral depot for the 5-state throughput network: illustrative values, not fitted to data.
ORAL = {"KA": 1.5, "F_ORAL": 0.2}            # 1/h, fraction absorbed


def ketamine_model(depot: bool = False) -> ketasim.Model:
    """The Domino 1984 network (+ effect site; + an oral depot when ``depot``)."""
    params = dict(DOMINO_1984)
    comps = {"central": "V1", "p1": "V2", "p2": "V3"}
    flows = [{"from": "central", "to": "out", "k": "K10"},
             {"from": "central", "to": "p1", "k": "K12"},
             {"from": "p1", "to": "central", "k": "K21"},
             {"from": "central", "to": "p2", "k": "K13"},
             {"from": "p2", "to": "central", "k": "K31"}]
    routes = {"iv": {"to": "central"}}
    if depot:
        params.update(ORAL)
        comps = {"depot": 0, **comps}
        flows.append({"from": "depot", "to": "central", "k": "KA"})
        routes["oral"] = {"to": "depot", "f": "F_ORAL"}
    return ketasim.Model.from_dict({
        "model": {"name": "domino1984" + ("-oral" if depot else ""),
                  "citation": "Domino EF et al. Clin Pharmacol Ther 1984;36:645-653"},
        "parameters": params,
        # peripheral volumes from the micro-constants (only needed to report p1/p2 levels)
        "derived": {"V2": "V1 * K12 / K21", "V3": "V1 * K13 / K31"},
        "compartments": comps,
        "flows": flows,
        "routes": routes,
        "effects": {"ce": {"of": "central", "ke0": "KE0"}},
    })


# ------------------------------------------------------------- independent scipy machinery
def reference_system(p: dict, depot: bool = False):
    """Rate matrix K (1/h; states = amounts in mg, the effect site in mg/L) and the observation
    rows (central concentration, effect site) built by hand, not by ketasim.

    States: [depot,] central, p1, p2, ce. Returns (K, obs, index of central, index of depot).
    """
    off = 1 if depot else 0
    c, p1, p2, ce = off, off + 1, off + 2, off + 3
    n = off + 4
    K = np.zeros((n, n))
    K[c, c] = -(p["K10"] + p["K12"] + p["K13"])
    K[c, p1] = p["K21"]
    K[c, p2] = p["K31"]
    K[p1, c] = p["K12"]
    K[p1, p1] = -p["K21"]
    K[p2, c] = p["K13"]
    K[p2, p2] = -p["K31"]
    K[ce, c] = p["KE0"] / p["V1"]
    K[ce, ce] = -p["KE0"]
    if depot:
        K[0, 0] = -p["KA"]
        K[c, 0] = p["KA"]
    obs = np.zeros((2, n))
    obs[0, c] = 1.0 / p["V1"]       # central, mg/L
    obs[1, ce] = 1.0                # effect site, mg/L
    return K, obs, c, (0 if depot else -1)


def reference_events(doses: ketasim.Doses, central: int, depot: int, f_oral: float = 1.0):
    """Sorted event arrays (time h, state, kind, value) from the expanded dose table:
    kind 0 = bolus (value mg), +1 = infusion start / -1 = stop (value mg/h)."""
    d = ketasim.expand(doses)
    rows = []
    for t, amt, route, dur in zip(d.time_h, d.amount_mg, d.route, d.duration_h):
        if route == "iv":
            if dur > 0:
                rows += [(t, central, 1, amt / dur), (t + dur, central, -1, amt / dur)]
            else:
                rows.append((t, central, 0, amt))
        elif route == "oral":
            rows.append((t, depot, 0, f_oral * amt))
        else:  # pragma: no cover - the scenarios only use these two
            raise ValueError(f"unexpected route {route!r}")
    rows.sort(key=lambda r: r[0])
    return (np.array([r[0] for r in rows]), np.array([r[1] for r in rows], np.int64),
            np.array([r[2] for r in rows], np.int64), np.array([r[3] for r in rows]))


def integrate_piecewise(K, obs, events, times, method="LSODA", rtol=1e-6, atol=1e-9):
    """Solve dx/dt = K x + u(t) with ``solve_ivp`` segment by segment between dose events.

    ``u`` is constant on each segment; boluses are jumps applied at the segment start. Output
    points in [a, b) come from the segment starting at a (so a point at a dose time reports the
    value just after the dose, as ketasim does). Returns ``obs @ x`` at ``times``: (R, T).
    """
    ev_t, ev_i, ev_kind, ev_v = events
    n = K.shape[0]
    x = np.zeros(n)
    u = np.zeros(n)
    t_first, t_last = times[0], times[-1]
    inner = ev_t[(ev_t > t_first) & (ev_t < t_last)]
    bounds = np.unique(np.concatenate(([t_first], inner, [t_last])))
    out = np.empty((obs.shape[0], times.size))
    # the exact (constant) Jacobian; scipy 1.17's LSODA wrapper needs it as a callable (an
    # array raises 'truth value of an array ... is ambiguous')
    jac = lambda t, y: K
    e = 0
    for a, b in itertools.pairwise(bounds):
        while e < ev_t.size and ev_t[e] <= a:
            if ev_kind[e] == 0:
                x[ev_i[e]] += ev_v[e]
            else:
                u[ev_i[e]] += ev_kind[e] * ev_v[e]
            e += 1
        last = b >= t_last
        i0 = int(np.searchsorted(times, a, "left"))
        i1 = times.size if last else int(np.searchsorted(times, b, "left"))
        t_eval = times[i0:i1]
        k = t_eval.size
        if k == 0 or t_eval[-1] < b:
            t_eval = np.append(t_eval, b)     # also ask for the state at the segment end
        useg = u.copy()
        sol = solve_ivp(lambda t, y, u=useg: K @ y + u, (a, b), x, method=method, t_eval=t_eval,
                        rtol=rtol, atol=atol, jac=jac)
        if not sol.success:
            raise RuntimeError(f"solve_ivp({method}) failed on [{a}, {b}] h: {sol.message}")
        out[:, i0:i1] = obs @ sol.y[:, :k]
        x = sol.y[:, -1].copy()
    return out


# ---------------------------------------------------------------------------------- helpers
def best_of(fn, repeats: int):
    """(best wall time in s, last return value) over ``repeats`` calls."""
    best, res = math.inf, None
    for _ in range(repeats):
        res = None
        gc.collect()
        t0 = time.perf_counter()
        res = fn()
        best = min(best, time.perf_counter() - t0)
    return best, res


def rel_err(a, ref) -> float:
    """max |a - ref| / max |ref|, per output row (axis -2 = outputs), maximum over outputs."""
    a, ref = np.asarray(a), np.asarray(ref)
    peak = np.abs(ref).max(axis=-1, keepdims=True)
    return float(np.max(np.abs(a - ref) / peak))


def warm_up(model, doses, times, params=None, outputs=("central",)) -> float:
    """One tiny ketasim call with the same argument types (compiles or loads the JIT cache)."""
    small = None if params is None else {k: np.asarray(v)[:2] for k, v in params.items()}
    t0 = time.perf_counter()
    ketasim.simulate(model, doses, times[:3], params=small, outputs=list(outputs))
    return time.perf_counter() - t0


def fmt_s(s: float) -> str:
    if not np.isfinite(s):
        return "n/a"
    if s >= 100:
        return f"{s:,.0f}"
    if s >= 1:
        return f"{s:.2f}"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.0f} us"


def fmt_e(e) -> str:
    return "n/a" if e is None or not np.isfinite(e) else f"{e:.1e}"


def print_row(row: dict) -> None:
    print(f"  -> {row['scenario']}: ketasim {fmt_s(row['ketasim_s'])}, "
          f"{row['baseline']} {fmt_s(row['baseline_s'])}, {row['ratio_txt']}; "
          f"error ketasim {fmt_e(row['err_ketasim'])}, baseline {fmt_e(row['err_baseline'])}",
          flush=True)


# -------------------------------------------------------------------------------- scenarios
def scenario_course(cfg) -> dict:
    months, step = cfg["course_months"], 1.0 / 60.0
    name = "course-1min" if months == 6 else f"course-1min ({months:g} mo)"
    print(f"\n[{name}] one subject, {months:g}-month standard IV course, 1-minute grid", flush=True)
    model = ketamine_model()
    doses = ketasim.standard_iv_course(dose_mg_per_kg=0.5, weight_kg=WEIGHT_KG, months=months)
    times = ketasim.time_grid(months * DAYS_PER_MONTH * 24.0, step)
    outputs = ["central", "ce"]
    jit_s = warm_up(model, doses, times, outputs=outputs)

    def run_ketasim():
        r = ketasim.simulate(model, doses, times, outputs=outputs)
        return np.stack([r.output(o) for o in outputs])

    ks_s, ks = best_of(run_ketasim, cfg["repeats"])

    K, obs, c, dep = reference_system(DOMINO_1984)
    events = reference_events(doses, c, dep)
    lsoda_s, lsoda = best_of(lambda: integrate_piecewise(K, obs, events, times, "LSODA",
                                                         rtol=1e-6, atol=1e-9), cfg["repeats"])
    t0 = time.perf_counter()
    ref = integrate_piecewise(K, obs, events, times, "Radau", rtol=1e-12, atol=1e-16)
    ref_s = time.perf_counter() - t0
    ref2 = integrate_piecewise(K, obs, events, times, "LSODA", rtol=1e-12, atol=1e-16)
    floor = rel_err(ref2, ref)
    e_ks, e_ls = rel_err(ks, ref), rel_err(lsoda, ref)
    notes = [(f"{times.size:,} time points x 2 outputs; {len(ketasim.expand(doses))} infusions; "
              f"peak central {ref[0].max() * 1e3:.0f} ng/mL"),
             (f"reference: Radau rtol=1e-12 ({ref_s:.1f} s); reference floor "
              f"|LSODA(rtol=1e-12) - Radau| = {floor:.1e}"),
             f"JIT warm-up (excluded): {jit_s:.2f} s"]
    speed = lsoda_s / ks_s
    acc = e_ls / max(e_ks, np.finfo(float).tiny)
    row = {"scenario": name, "ketasim_s": ks_s, "baseline": "LSODA", "baseline_s": lsoda_s,
           "ratio_txt": f"{speed:,.1f}x faster", "err_ketasim": e_ks, "err_baseline": e_ls,
           "notes": notes,
           "targets": [("course-1min speed-up vs LSODA", speed, ">= 100x", speed >= 100),
                       ("course-1min error ratio LSODA/ketasim", acc, ">= 100x", acc >= 100)]}
    print_row(row)
    return row


def population_params(n: int, seed: int = 20240601):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((2, n))
    return {"K10": DOMINO_1984["K10"] * np.exp(0.3 * z[0]),
            "V1": DOMINO_1984["V1"] * np.exp(0.25 * z[1])}


def scenario_population(cfg) -> dict:
    n, n_lsoda, n_ref = cfg["pop_n"], cfg["pop_lsoda"], cfg["pop_ref"]
    name = "population-10k" if n == 10_000 else f"population-{n:,}"
    print(f"\n[{name}] {n:,} subjects, 6-month course, hourly grid", flush=True)
    model = ketamine_model()
    doses = ketasim.standard_iv_course(dose_mg_per_kg=0.5, weight_kg=WEIGHT_KG, months=6)
    times = ketasim.time_grid(6 * DAYS_PER_MONTH * 24.0, 1.0)
    params = population_params(n)
    jit_s = warm_up(model, doses, times, params=params)

    def run_ketasim():
        return ketasim.simulate(model, doses, times, params=params, outputs=["central"])

    ks_s, res = best_of(run_ketasim, cfg["repeats"])
    central = res.output("central")           # (N, T) mg/L, a view

    subset = np.sort(np.random.default_rng(7).choice(n, size=n_lsoda, replace=False))
    systems = []
    for i in subset:                          # matrices and events built outside the timing
        p = dict(DOMINO_1984, K10=params["K10"][i], V1=params["V1"][i])
        K, obs, c, dep = reference_system(p)
        systems.append((K, obs[:1], reference_events(doses, c, dep)))
    t0 = time.perf_counter()
    lsoda = [integrate_piecewise(K, obs, ev, times, "LSODA", 1e-6, 1e-9)
             for K, obs, ev in systems]
    lsoda_subset_s = time.perf_counter() - t0
    lsoda_s = lsoda_subset_s / n_lsoda * n
    refs = [integrate_piecewise(K, obs, ev, times, "LSODA", 1e-12, 1e-16)
            for K, obs, ev in systems[:n_ref]]
    e_ks = max(rel_err(central[i][None], r) for i, r in zip(subset, refs))
    e_ls = max(rel_err(a, r) for a, r in zip(lsoda, refs))
    speed = lsoda_s / ks_s
    notes = [(f"{n:,} subjects x {times.size:,} hourly points; K10, V1 log-normal "
              "(omega 0.3, 0.25)"),
             (f"LSODA time EXTRAPOLATED: {n_lsoda} random subjects took {lsoda_subset_s:.2f} s "
              f"({lsoda_subset_s / n_lsoda * 1e3:.0f} ms/subject) x {n:,}"),
             f"errors on {n_ref} of those subjects vs LSODA rtol=1e-12",
             (f"ketasim: {ks_s / n * 1e6:.0f} us/subject on {numba.get_num_threads()} threads; "
              f"JIT warm-up (excluded): {jit_s:.2f} s")]
    row = {"scenario": name, "ketasim_s": ks_s, "baseline": "LSODA*", "baseline_s": lsoda_s,
           "ratio_txt": f"{speed:,.0f}x faster", "err_ketasim": e_ks, "err_baseline": e_ls,
           "notes": notes,
           "targets": [(f"{name} speed-up vs LSODA loop", speed, ">= 2000x", speed >= 2000)]}
    del res, central
    print_row(row)
    return row


def scenario_throughput(cfg) -> dict:
    n, months, n_ref = cfg["tp_n"], cfg["tp_months"], cfg["tp_ref"]
    print(f"\n[throughput] 5-state network, {n:,} subjects, {months:g} months, 10-minute grid",
          flush=True)
    model = ketamine_model(depot=True)
    iv = ketasim.standard_iv_course(dose_mg_per_kg=0.5, weight_kg=WEIGHT_KG, months=months)
    horizon = months * DAYS_PER_MONTH * 24.0
    n_oral = int(horizon // 168.0)
    oral = ketasim.Doses.single(50.0, "oral", time_h=24.0 + 12.0, addl=max(n_oral - 1, 0),
                                ii_h=168.0)
    doses = iv + oral
    times = ketasim.time_grid(horizon, 10.0 / 60.0)
    k10 = DOMINO_1984["K10"] * np.exp(0.3 * np.random.default_rng(11).standard_normal(n))
    params = {"K10": k10}
    jit_s = warm_up(model, doses, times, params=params)

    def run_ketasim():
        return ketasim.simulate(model, doses, times, params=params, outputs=["central"])

    ks_s, res = best_of(run_ketasim, cfg["repeats"])
    values = n * times.size

    def run_fill():
        a = np.empty((n, 1, times.size))
        a.fill(1.0)
        return a

    fill_s, _ = best_of(run_fill, cfg["repeats"])
    e_ks = 0.0
    for i in range(n_ref):
        p = dict(DOMINO_1984, **ORAL, K10=k10[i])
        K, obs, c, dep = reference_system(p, depot=True)
        ev = reference_events(doses, c, dep, ORAL["F_ORAL"])
        ref = integrate_piecewise(K, obs[:1], ev, times, "LSODA", 1e-12, 1e-16)
        e_ks = max(e_ks, rel_err(res.output("central")[i][None], ref))
    del res
    rate = values / ks_s
    vs_fill = ks_s / fill_s
    notes = [(f"{n:,} subjects x {times.size:,} points = {values:,} subject-timepoints "
              f"({values * 8 / 2**20:,.0f} MiB of output); "
              f"{len(ketasim.expand(doses))} doses per subject"),
             (f"ketasim {rate:.2e} subject-timepoints/s; np.empty+fill {values / fill_s:.2e} /s; "
              f"ketasim takes {vs_fill:.1f}x the fill time"),
             (f"error on {n_ref} subjects vs LSODA rtol=1e-12; "
              f"JIT warm-up (excluded): {jit_s:.2f} s")]
    row = {"scenario": "throughput", "ketasim_s": ks_s, "baseline": "fill", "baseline_s": fill_s,
           "ratio_txt": f"{vs_fill:,.1f}x fill time", "err_ketasim": e_ks, "err_baseline": None,
           "notes": notes,
           "targets": [("throughput subject-timepoints/s", rate, ">= 2e8", rate >= 2e8),
                       ("throughput time / fill time", vs_fill, "<= 2x", vs_fill <= 2)]}
    print_row(row)
    return row


SCENARIOS = {"course-1min": scenario_course, "population-10k": scenario_population,
             "throughput": scenario_throughput}


# -------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smaller sizes (1-month course, 1,000 subjects, ...): a smoke test")
    ap.add_argument("--repeats", type=int, default=3,
                    help="timed repeats of each ketasim call, best kept (default 3)")
    ap.add_argument("--only", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS),
                    help="run only these scenarios")
    args = ap.parse_args(argv)
    if args.quick:
        cfg = {"course_months": 1, "pop_n": 1_000, "pop_lsoda": 10, "pop_ref": 3, "tp_n": 200,
               "tp_months": 1, "tp_ref": 1}
    else:
        cfg = {"course_months": 6, "pop_n": 10_000, "pop_lsoda": 50, "pop_ref": 10, "tp_n": 2_000,
               "tp_months": 6, "tp_ref": 3}
    cfg["repeats"] = max(1, args.repeats)

    print("ketasim core benchmarks" + (" (--quick)" if args.quick else ""))
    print(f"  ketasim {ketasim.__version__}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"numba {numba.__version__}, Python {platform.python_version()}")
    print(f"  {os.cpu_count()} CPUs, numba threads {numba.get_num_threads()}, "
          f"{platform.machine()} {platform.system()}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    print(f"  load average (1 min) at start: {load:.2f}")
    if load > 0.5:
        print("  WARNING: the machine is busy; other processes compete for the cores, so timings "
              "(ketasim's parallel loop especially) will be noisy and pessimistic")

    t_start = time.perf_counter()
    rows = [SCENARIOS[s](cfg) for s in SCENARIOS if s in args.only]
    total = time.perf_counter() - t_start

    head = (f"{'scenario':<22}{'ketasim':>11}{'baseline':>16}{'ratio':>22}"
            f"{'err ketasim':>13}{'err baseline':>14}")
    print("\n" + "=" * len(head))
    print(head)
    print("-" * len(head))
    for r in rows:
        base = f"{r['baseline']} {fmt_s(r['baseline_s'])}"
        print(f"{r['scenario']:<22}{fmt_s(r['ketasim_s']):>11}{base:>16}{r['ratio_txt']:>22}"
              f"{fmt_e(r['err_ketasim']):>13}{fmt_e(r['err_baseline']):>14}")
    print("-" * len(head))
    print("times in s unless marked; errors = max |c - c_ref| / peak c_ref (see notes);")
    print("LSODA* = extrapolated from a random subset; fill = np.empty + fill of the same array")
    for r in rows:
        print(f"\n{r['scenario']}:")
        for note in r["notes"]:
            print(f"  - {note}")

    print("\nTargets (DESIGN.md, 'Where the engine is going')"
          + (" -- quick sizes, indicative only" if args.quick else ""))
    for r in rows:
        for what, value, target, ok in r["targets"]:
            val = f"{value:.2e}" if value >= 1e5 else f"{value:,.1f}"
            print(f"  {'PASS' if ok else 'FAIL'}  {what:<42} {val:>10}  (target {target})")
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    print(f"\ntotal benchmark time {total:.0f} s; load average (1 min) at end {load_end:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
