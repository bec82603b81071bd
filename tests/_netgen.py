"""Hypothesis strategies and small independent helpers for the robustness tests.

Used by test_properties.py, test_stress.py and test_fuzz.py (not by conftest.py, which another
set of tests owns). Networks are ``Model.from_dict`` specs whose numbers all go through named
parameters, so a population can vary any of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
from hypothesis import strategies as st

import ketasim

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def log_uniform(lo, hi):
    """Floats spread evenly in log space over [lo, hi]."""
    return st.floats(np.log10(lo), np.log10(hi)).map(lambda e: float(10.0 ** e))


@st.composite
def networks(draw, max_comp=6, rate_lo=1e-4, rate_hi=1e3, unit_yield=False, effects=True):
    """A random linear compartment network (a ``Model.from_dict`` spec).

    2..max_comp compartments (some amount-only), flows between random pairs and to ``out``
    given as ``k`` or ``cl`` (rates log-uniform in [rate_lo, rate_hi] 1/h), optional yields
    (not with ``unit_yield``), an optional effect site, and 1-3 routes with f, lag_h and
    sometimes a route duration or two parts.
    """
    n = draw(st.integers(2, max_comp))
    names = [f"c{i}" for i in range(n)]
    amount_only = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    if all(amount_only):
        amount_only[0] = False
    params, comps, vol = {}, {}, []
    for i, c in enumerate(names):
        if amount_only[i]:
            comps[c] = 0
        else:
            params[f"V{i}"] = draw(log_uniform(0.5, 200.0))
            comps[c] = f"V{i}"
            vol.append(c)
    flows = []
    for j in range(draw(st.integers(1, 2 * n))):
        src = draw(st.sampled_from(names))
        dst = draw(st.sampled_from([c for c in names if c != src] + ["out"]))
        k = draw(log_uniform(rate_lo, rate_hi))
        fl = {"from": src, "to": dst}
        if comps[src] != 0 and draw(st.booleans()):
            params[f"CL{j}"] = k * params[comps[src]]
            fl["cl"] = f"CL{j}"
        else:
            params[f"K{j}"] = k
            fl["k"] = f"K{j}"
        if dst != "out" and not unit_yield and draw(st.integers(0, 3)) == 0:
            # at most 1: a yield above 1 inside a cycle creates mass and can grow without
            # bound (ketasim then reports an overflow, correctly, but the invariants lapse)
            params[f"Y{j}"] = draw(st.floats(0.3, 1.0))
            fl["yield"] = f"Y{j}"
        flows.append(fl)
    routes = {}
    for r in range(draw(st.integers(1, 3))):
        def part(tag):
            p = {"to": draw(st.sampled_from(names))}
            if draw(st.booleans()):
                params[f"F{tag}"] = draw(st.floats(0.1, 1.0))
                p["f"] = f"F{tag}"
            if draw(st.booleans()):
                params[f"LAG{tag}"] = draw(st.sampled_from([0.25, 0.5, 1.0]))
                p["lag_h"] = f"LAG{tag}"
            if draw(st.integers(0, 3)) == 0:
                params[f"DUR{tag}"] = draw(st.sampled_from([0.5, 0.75, 2.0]))
                p["duration_h"] = f"DUR{tag}"
            return p
        if draw(st.integers(0, 3)) == 0:
            parts = [part(f"{r}a"), part(f"{r}b")]
            for q in parts:     # the two parts split one dose: each gets half of its fraction
                if "f" in q:
                    params[q["f"]] *= 0.5
                else:
                    q["f"] = 0.5
            routes[f"r{r}"] = {"parts": parts}
        else:
            routes[f"r{r}"] = part(f"{r}")
    spec = {"parameters": params, "compartments": comps, "flows": flows, "routes": routes}
    if effects and draw(st.booleans()):
        params["KE0"] = draw(log_uniform(0.05, 20.0))
        spec["effects"] = {"ce": {"of": draw(st.sampled_from(vol)), "ke0": "KE0"}}
    return spec


@st.composite
def dose_rows(draw, spec, t_end=24.0, max_rows=6, addl=True):
    """Dose records for ``spec``: boluses and infusions, on and off a 0.25-h grid, sometimes
    repeated with addl/ii_h, sometimes several at the same time."""
    routes = list(spec["routes"])
    rows = []
    for _ in range(draw(st.integers(1, max_rows))):
        if draw(st.booleans()):
            t = 0.25 * draw(st.integers(0, int(0.75 * t_end / 0.25)))
        else:
            t = draw(st.floats(0.0, 0.75 * t_end))
        dur = draw(st.sampled_from([0.0, 0.0, 0.5, 1.25, draw(st.floats(0.01, 4.0))]))
        n_add, ii = 0, 0.0
        if addl and draw(st.integers(0, 3)) == 0:
            n_add = draw(st.integers(1, 3))
            ii = draw(st.sampled_from([2.0, 3.5, draw(st.floats(0.5, 6.0))]))
        rows.append(dict(time_h=t, amount_mg=draw(log_uniform(0.1, 500.0)),
                         route=draw(st.sampled_from(routes)), duration_h=dur, addl=n_add,
                         ii_h=ii))
    return rows


@st.composite
def grids(draw, t_end=24.0):
    """Output grids: regular, irregular (with repeated times) or a handful of points."""
    kind = draw(st.sampled_from(["regular", "irregular", "few"]))
    if kind == "regular":
        step = draw(st.sampled_from([0.05, 0.1, 0.25, 1.0 / 3.0, 1.0]))
        return ketasim.time_grid(t_end, step)
    if kind == "irregular":
        pts = draw(st.lists(st.floats(0.0, t_end), min_size=2, max_size=60))
        pts += [0.25 * i for i in range(0, int(t_end / 0.25) + 1, 7)]   # some on the grid
        return np.sort(np.asarray(pts))
    return np.sort(np.asarray(draw(st.lists(st.floats(0.0, t_end), min_size=1, max_size=4))))


def delivered(spec, rows, times):
    """Cumulative mass (mg) that has entered the network by each time, computed from the spec
    (route f, lag, duration) independently of ketasim."""
    p = spec["parameters"]
    num = (lambda v: float(p[v]) if isinstance(v, str) else float(v))  # noqa: E731
    times = np.asarray(times, float)
    tot = np.zeros(times.shape)
    for r in rows:
        route = spec["routes"][r["route"]]
        for rep in range(int(r.get("addl", 0)) + 1):
            t = r["time_h"] + rep * r.get("ii_h", 0.0)
            for part in route.get("parts", [route]):
                amt = num(part.get("f", 1.0)) * r["amount_mg"]
                t0 = t + num(part.get("lag_h", 0.0))
                dur = num(part["duration_h"]) if "duration_h" in part else r.get("duration_h", 0.0)
                # a dose within rounding (4 ulp) after an output time belongs to that instant
                t0r = t0 - 4 * np.finfo(float).eps * max(1.0, abs(t0))
                if dur > 0:
                    tot += amt * np.clip((times - t0) / dur, 0.0, 1.0)
                else:
                    tot += np.where(times >= t0r, amt, 0.0)
    return tot


def mass_rows(model, result):
    """Indices of the amount rows that hold mass (compartments and the eliminated sink)."""
    return [result.names.index(f"amount:{c}") for c in model.compartments] + \
        [result.names.index("amount:eliminated")]


def run_no_jit(cases, extra_env=None, timeout=300):
    """Run ketasim.simulate with NUMBA_DISABLE_JIT=1 in a subprocess.

    ``cases``: list of dicts with ``spec`` (or ``preset``), ``rows``, ``times``, optional
    ``params`` (name -> list), ``weight_kg``, ``outputs``, ``amounts``. Returns a list of
    (names, data) with data as float64 arrays (N, R, T).
    """
    code = textwrap.dedent("""
        import json, sys
        import numpy as np
        import numba
        assert numba.config.DISABLE_JIT, "NUMBA_DISABLE_JIT was not honoured"
        import ketasim
        out = []
        for c in json.load(sys.stdin):
            model = (ketasim.load_model(c["preset"]) if "preset" in c
                     else ketasim.Model.from_dict(c["spec"]))
            params = {k: np.asarray(v) for k, v in (c.get("params") or {}).items()}
            r = ketasim.simulate(model, ketasim.Doses.from_records(c["rows"]),
                                 np.asarray(c["times"]), params=params or None,
                                 weight_kg=np.asarray(c.get("weight_kg", 70.0)),
                                 outputs=c.get("outputs"), amounts=c.get("amounts", False))
            out.append({"names": list(r.names), "data": r.data.tolist(),
                        "hex": [float(x).hex() for x in r.data.ravel()]})
        json.dump(out, sys.stdout)
    """)
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", PYTHONPATH=SRC + os.pathsep
               + os.environ.get("PYTHONPATH", ""))
    env.update(extra_env or {})
    payload = json.dumps([_jsonable(c) for c in cases])
    proc = subprocess.run([sys.executable, "-c", code], input=payload, capture_output=True,
                          text=True, env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout)
    return [(tuple(r["names"]),
             np.array([float.fromhex(h) for h in r["hex"]]).reshape(np.shape(r["data"])))
            for r in res]


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
