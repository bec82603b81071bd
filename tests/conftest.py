"""Shared helpers for the numerical tests: random linear networks, random dose tables and an
independent reference simulator built on ``scipy.integrate.solve_ivp``.

Nothing here imports ketasim internals except ``Model.from_dict`` / ``Doses`` (the public way in):
the reference builds its own rate matrix from the *dict spec*, expands ``addl``/``ii_h`` itself,
applies route ``f``/``lag_h``/``duration_h`` itself, and integrates segment by segment between
dose events (boluses as state jumps, infusions as piecewise-constant inputs).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import settings
from scipy.integrate import solve_ivp
from scipy.linalg import expm as scipy_expm

import ketasim

# CI replays the same examples every run (a new random find must not block an unrelated change);
# locally hypothesis explores fresh inputs each run. KETASIM_HYPOTHESIS=explore overrides CI.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("explore", deadline=None)
if os.environ.get("CI") and os.environ.get("KETASIM_HYPOTHESIS") != "explore":
    settings.load_profile("ci")

# ---------------------------------------------------------------------------------------------
# random networks


def _log_uniform(rng, lo, hi):
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def random_spec(rng, *, n_comp=None, rate_lo=1e-3, rate_hi=1e2, unit_yield=False,
                effects=True, route_durations=True):
    """A random linear network as a ``Model.from_dict`` spec.

    2-10 compartments (about a quarter amount-only, at least one with a volume), 1.5-3 flows per
    compartment between random pairs or to ``out`` (rates log-uniform in [rate_lo, rate_hi] 1/h,
    given as ``k`` or as ``cl`` = k·V), optional yields, an effect site, an observe alias and
    1-3 routes with random ``f``, ``lag_h`` and sometimes a route-level ``duration_h`` or two
    ``parts``. Every number goes through a named parameter so populations can vary it.
    """
    n = int(rng.integers(2, 11)) if n_comp is None else n_comp
    names = [f"c{i}" for i in range(n)]
    params = {}
    comps = {}
    vol_comps = []
    amount_only = rng.random(n) < 0.25
    if amount_only.all():
        amount_only[int(rng.integers(n))] = False
    for i, c in enumerate(names):
        if amount_only[i]:
            comps[c] = 0
        else:
            params[f"V{i}"] = _log_uniform(rng, 0.5, 200.0)
            comps[c] = f"V{i}"
            vol_comps.append(c)
    flows = []
    n_flows = int(rng.integers(int(1.5 * n), 3 * n + 1))
    for j in range(n_flows):
        src = names[int(rng.integers(n))]
        if rng.random() < 0.3:
            dst = "out"
        else:
            others = [c for c in names if c != src]
            dst = others[int(rng.integers(len(others)))]
        k = _log_uniform(rng, rate_lo, rate_hi)
        fl = {"from": src, "to": dst}
        if comps[src] != 0 and rng.random() < 0.5:
            params[f"CL{j}"] = k * params[comps[src]]
            fl["cl"] = f"CL{j}"
        else:
            params[f"K{j}"] = k
            fl["k"] = f"K{j}"
        if dst != "out" and not unit_yield and rng.random() < 0.3:
            params[f"Y{j}"] = float(rng.uniform(0.3, 1.5))
            fl["yield"] = f"Y{j}"
        flows.append(fl)
    # every compartment drains somewhere eventually (keeps amounts bounded, not required)
    for i, c in enumerate(names):
        if not any(fl["from"] == c and fl["to"] == "out" for fl in flows) and rng.random() < 0.5:
            params[f"KE{i}"] = _log_uniform(rng, rate_lo, min(rate_hi, 10.0))
            flows.append({"from": c, "to": "out", "k": f"KE{i}"})
    spec = {"parameters": params, "compartments": comps, "flows": flows}
    routes = {}
    for r in range(int(rng.integers(1, 4))):
        def part(tag):
            p = {"to": names[int(rng.integers(n))]}
            if rng.random() < 0.7:
                params[f"F{tag}"] = float(rng.uniform(0.2, 1.0))
                p["f"] = f"F{tag}"
            if rng.random() < 0.5:
                params[f"LAG{tag}"] = float(rng.choice([0.25, 0.5, rng.uniform(0.0, 2.0)]))
                p["lag_h"] = f"LAG{tag}"
            if route_durations and rng.random() < 0.25:
                params[f"DUR{tag}"] = float(rng.choice([0.5, rng.uniform(0.05, 3.0)]))
                p["duration_h"] = f"DUR{tag}"
            return p
        if rng.random() < 0.25:
            parts = [part(f"{r}a"), part(f"{r}b")]
            for q in parts:     # the two parts split one dose: each gets half of its fraction
                if "f" in q:
                    params[q["f"]] *= 0.5
                else:
                    q["f"] = 0.5
            routes[f"r{r}"] = {"parts": parts}
        else:
            routes[f"r{r}"] = part(f"{r}")
    spec["routes"] = routes
    if effects and rng.random() < 0.6:
        params["KE0"] = _log_uniform(rng, 0.05, 20.0)
        spec["effects"] = {"ce": {"of": vol_comps[int(rng.integers(len(vol_comps)))],
                                  "ke0": "KE0"}}
    if len(vol_comps) >= 2:
        a, b = rng.choice(len(vol_comps), 2, replace=False)
        spec["observe"] = {"both": [vol_comps[a], vol_comps[b]]}
    return spec


def random_doses(rng, spec, *, t_end=48.0, grid_step=0.25, n_rows=None, allow_addl=True):
    """A random dose table for ``spec``: boluses and infusions at times on and between grid
    points, overlapping infusions, some ``addl``/``ii_h`` repeats, rows in random order."""
    routes = list(spec["routes"])
    D = int(rng.integers(2, 8)) if n_rows is None else n_rows
    rows = []
    for _ in range(D):
        if rng.random() < 0.5:
            t = grid_step * int(rng.integers(0, int(0.8 * t_end / grid_step)))   # on the grid
        else:
            t = float(rng.uniform(0.0, 0.8 * t_end))                              # between
        dur = 0.0
        u = rng.random()
        if u < 0.45:
            dur = float(rng.choice([grid_step * int(rng.integers(1, 12)),
                                    rng.uniform(0.01, 6.0)]))
        addl, ii = 0, 0.0
        if allow_addl and rng.random() < 0.25:
            addl = int(rng.integers(1, 4))
            ii = float(rng.choice([grid_step * int(rng.integers(4, 40)),
                                   rng.uniform(1.0, 10.0)]))
        rows.append({"time_h": t, "amount_mg": float(_log_uniform(rng, 1.0, 500.0)),
                     "route": routes[int(rng.integers(len(routes)))], "duration_h": dur,
                     "addl": addl, "ii_h": ii})
    # force one overlap: a second infusion on the same route starting during the first
    r0 = rows[0]
    rows.append({"time_h": r0["time_h"] + 0.3, "amount_mg": 50.0, "route": r0["route"],
                 "duration_h": 2.0, "addl": 0, "ii_h": 0.0})
    order = rng.permutation(len(rows))
    return ketasim.Doses.from_records([rows[i] for i in order])


# ---------------------------------------------------------------------------------------------
# the independent reference


class Reference:
    """Independent reference for a ``Model.from_dict`` spec (no ketasim code involved).

    States: compartment amounts (mg) in spec order, effect-site concentrations (mg/L), then one
    ``eliminated`` sink (mg). ``K`` is built here from the spec's parameter values (numbers or
    parameter names only: the test specs use no expressions).
    """

    def __init__(self, spec, params=None):
        self.spec = spec
        p = dict(spec.get("parameters", {}))
        p.update(params or {})
        self.p = p
        self.comps = list(spec["compartments"])
        self.effects = list(spec.get("effects", {}))
        self.states = self.comps + self.effects + ["eliminated"]
        idx = {s: i for i, s in enumerate(self.states)}
        self.idx = idx
        self.vol = {c: (None if self._num(v) == 0 else self._num(v))
                    for c, v in spec["compartments"].items()}
        n = len(self.states)
        K = np.zeros((n, n))
        for fl in spec.get("flows", []):
            src, dst = fl["from"], fl["to"]
            k = self._num(fl["k"]) if "k" in fl else self._num(fl["cl"]) / self.vol[src]
            y = self._num(fl.get("yield", 1.0))
            K[idx[src], idx[src]] -= k
            if dst == "out":
                K[idx["eliminated"], idx[src]] += k
            else:
                K[idx[dst], idx[src]] += y * k
        for e, d in spec.get("effects", {}).items():
            ke0 = self._num(d["ke0"])
            K[idx[e], idx[d["of"]]] += ke0 / self.vol[d["of"]]
            K[idx[e], idx[e]] -= ke0
        self.K = K

    def _num(self, v):
        return float(self.p[v]) if isinstance(v, str) else float(v)

    def route_parts(self, route):
        r = self.spec["routes"][route]
        return r.get("parts", [r])

    def inputs(self, doses):
        """(boluses, infusions): lists of (time, state, amount) and (start, stop, state, rate).

        A route part's own ``duration_h`` wins over the dose row's (as ketasim's ``RoutePart``
        documents: "None means the dose table's duration_h, else a bolus"); the README only
        says a row's 0 means "bolus or the route's own default"."""
        boluses, infusions = [], []
        for row in doses.to_records():
            for rep in range(int(row["addl"]) + 1):
                t = row["time_h"] + rep * row["ii_h"]
                for part in self.route_parts(row["route"]):
                    f = self._num(part.get("f", 1.0))
                    lag = self._num(part.get("lag_h", 0.0))
                    dur = (self._num(part["duration_h"]) if "duration_h" in part
                           else row["duration_h"])
                    s = self.idx[part["to"]]
                    amt = f * row["amount_mg"]
                    if dur > 0:
                        infusions.append((t + lag, t + lag + dur, s, amt / dur))
                    else:
                        boluses.append((t + lag, s, amt))
        return boluses, infusions

    def delivered(self, doses, times):
        """Cumulative amount (mg) that has entered the system by each time (after f)."""
        boluses, infusions = self.inputs(doses)
        times = np.asarray(times, float)
        tot = np.zeros(times.shape)
        for t0, _, a in boluses:
            tot += np.where(times >= t0, a, 0.0)
        for t0, t1, _, r in infusions:
            tot += r * np.clip(times - t0, 0.0, t1 - t0)
        return tot

    def amounts(self, doses, times, rtol=1e-10, atol=None):
        """State trajectories (S, T) at ``times`` (value just after any dose at that time)."""
        times = np.asarray(times, float)
        boluses, infusions = self.inputs(doses)
        n = len(self.states)
        if atol is None:
            scale = sum(a for _, _, a in boluses) + sum(r * (t1 - t0)
                                                        for t0, t1, _, r in infusions)
            atol = 1e-15 * max(scale, 1.0)
        ev = sorted({b[0] for b in boluses} | {i[0] for i in infusions}
                    | {i[1] for i in infusions})
        t_start = min([times[0]] + ev)
        bps = sorted({t_start, *[t for t in ev if t <= times[-1]], times[-1]})
        x = np.zeros(n)
        out = np.zeros((n, times.size))
        K = self.K
        for a, b in zip(bps, bps[1:] + [np.inf]):
            for t0, s, amt in boluses:
                if t0 == a:
                    x[s] += amt
            at = times == a
            out[:, at] = x[:, None]
            if not np.isfinite(b):
                break
            mid = 0.5 * (a + b)
            u = np.zeros(n)
            for t0, t1, s, rate in infusions:
                if t0 <= mid < t1:
                    u[s] += rate
            sel = (times > a) & (times < b)
            sol = solve_ivp(lambda t, y, u=u: K @ y + u, (a, b), x, method="Radau", rtol=rtol,
                            atol=atol, jac=K, t_eval=np.r_[times[sel], b])
            assert sol.success, sol.message
            out[:, sel] = sol.y[:, :-1]
            x = sol.y[:, -1].copy()
        return out

    def amounts_expm(self, doses, times):
        """The same trajectories from ``scipy.linalg.expm`` of the augmented matrix
        ``[[K, u], [0, 0]]`` per segment (exact up to rounding; a second, fast reference)."""
        times = np.asarray(times, float)
        boluses, infusions = self.inputs(doses)
        n = len(self.states)
        ev = sorted({b[0] for b in boluses} | {i[0] for i in infusions}
                    | {i[1] for i in infusions})
        bps = sorted({min([times[0]] + ev), *[t for t in ev if t <= times[-1]], times[-1]})
        x = np.zeros(n)
        out = np.zeros((n, times.size))
        M = np.zeros((n + 1, n + 1))
        M[:n, :n] = self.K
        for a, b in zip(bps, bps[1:] + [np.inf]):
            for t0, s, amt in boluses:
                if t0 == a:
                    x[s] += amt
            out[:, times == a] = x[:, None]
            if not np.isfinite(b):
                break
            mid = 0.5 * (a + b)
            M[:n, n] = 0.0
            for t0, t1, s, rate in infusions:
                if t0 <= mid < t1:
                    M[s, n] += rate
            xa = np.r_[x, 1.0]
            for j in np.nonzero((times > a) & (times < b))[0]:
                out[:, j] = (scipy_expm(M * (times[j] - a)) @ xa)[:n]
            x = (scipy_expm(M * (b - a)) @ xa)[:n]
        return out

    def conc(self, amounts, name):
        """Concentration (mg/L) of a compartment, effect site or observe alias."""
        parts = self.spec.get("observe", {}).get(name, [name])
        parts = [parts] if isinstance(parts, str) else parts
        c = 0.0
        for nm in parts:
            if nm in self.effects:
                c = c + amounts[self.idx[nm]]
            else:
                c = c + amounts[self.idx[nm]] / self.vol[nm]
        return c

    def concentration_names(self):
        return ([c for c in self.comps if self.vol[c] is not None] + self.effects
                + list(self.spec.get("observe", {})))


def one_cpt_spec(V=20.0, CL=5.0, KA=1.3, F=0.8, LAG=0.0, KE0=None):
    """1-compartment spec: depot (amount-only) -> central (V) -> out, routes iv and oral."""
    spec = {"parameters": {"V": V, "CL": CL, "KA": KA, "F": F, "LAG": LAG},
            "compartments": {"depot": 0, "central": "V"},
            "flows": [{"from": "depot", "to": "central", "k": "KA"},
                      {"from": "central", "to": "out", "cl": "CL"}],
            "routes": {"iv": {"to": "central"},
                       "oral": {"to": "depot", "f": "F", "lag_h": "LAG"}}}
    if KE0 is not None:
        spec["parameters"]["KE0"] = KE0
        spec["effects"] = {"ce": {"of": "central", "ke0": "KE0"}}
    return spec


@pytest.fixture
def make_one_cpt():
    """Factory of (Model, spec) for :func:`one_cpt_spec`."""
    def make(**kw):
        spec = one_cpt_spec(**kw)
        return ketasim.Model.from_dict(spec), spec
    return make


# ---------------------------------------------------------------------------------------------
# random cases (regenerated from the seed alone, so a worker process can rebuild them)

CASE_KINDS = {
    # kind: (rate_lo, rate_hi, seed offset, horizon h)
    "random": (1e-3, 1e2, 1000, 24.0),
    "stiff": (1e-4, 1e3, 5000, 12.0),
}


def make_case(seed, kind="random"):
    """(spec, doses, times) for one seed. Times: a 0.25-h grid; every third seed starts at 2 h
    (doses before the first output), every third is irregular with the dose times added."""
    lo, hi, off, t_end = CASE_KINDS[kind]
    rng = np.random.default_rng(off + seed)
    spec = random_spec(rng, rate_lo=lo, rate_hi=hi)
    doses = random_doses(rng, spec, t_end=t_end)
    if seed % 3 == 0:
        times = ketasim.time_grid(t_end, 0.25, start_h=2.0)
    elif seed % 3 == 1:
        t = np.r_[rng.uniform(0.0, t_end, 60), doses.time_h[doses.time_h < t_end], 0.0, t_end]
        times = np.unique(t)
    else:
        times = ketasim.time_grid(t_end, 0.25)
    return spec, doses, times


def reference_case(seed, kind="random"):
    """solve_ivp (Radau) trajectories for ``make_case(seed, kind)``; runs in a worker."""
    spec, doses, times = make_case(seed, kind)
    return Reference(spec).amounts(doses, times)


@pytest.fixture(scope="session")
def ref_pool():
    """A 2-process pool for the (slow, pure-Python) Radau references, so they run while the
    main process checks other things. Spawned, not forked: numba's threads are not fork-safe."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    ex = ProcessPoolExecutor(max_workers=2, mp_context=ctx)
    try:
        yield ex
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="session")
def reference(ref_pool, request):
    """``reference(seed, kind)`` -> Radau trajectories (S, T). The first call submits, to the
    pool, every (seed, kind) of the selected tests that use this fixture (parametrized with
    ``kind`` and ``seed``); later calls wait for their own result."""
    futs = {}

    def get(seed, kind):
        if not futs:
            for item in request.session.items:
                cs = getattr(item, "callspec", None)
                if (cs is not None and "reference" in getattr(item, "fixturenames", ())
                        and {"seed", "kind"} <= set(cs.params)):
                    key = (cs.params["seed"], cs.params["kind"])
                    if key not in futs:
                        futs[key] = ref_pool.submit(reference_case, *key)
        if (seed, kind) not in futs:
            futs[(seed, kind)] = ref_pool.submit(reference_case, seed, kind)
        return futs[(seed, kind)].result()

    return get


# a one-compartment model file (CL 10 L/h, V 50 L, an IV route), for tests of files and commands
ONE_CPT_TOML = """[model]
name = "one"
[parameters]
CL = 10.0
V = 50.0
[compartments]
central = "V"
[[flows]]
from = "central"
to = "out"
cl = "CL"
[routes]
iv = { to = "central" }
"""
