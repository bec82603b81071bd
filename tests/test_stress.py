"""Numerical stress cases, each against an independent reference.

Ten years of daily dosing, 100,000 dose events, rates from 1e-4 to 1e3 per hour, a one-minute
horizon, outputs exactly at dose times (the documented convention: the value just *after* the
dose) and extreme body weights.
"""

from __future__ import annotations

import math

import _models
import numpy as np
import pytest
from scipy.linalg import expm

import ketasim

pytestmark = pytest.mark.slow


def one_cpt(V=40.0, CL=8.0, KA=None):
    """central (V) -> out (CL), optional depot -> central (KA); routes iv (and oral)."""
    return _models.one_cpt(V=V, CL=CL, KA=KA)


def scalar_reference(times, events, k, V):
    """1-compartment IV reference by scalar recursion (no matrices): ``events`` = list of
    (time, bolus_mg, rate_change_mg_per_h), applied before the output at the same time."""
    events = sorted(events, key=lambda e: e[0])
    out = np.empty(len(times))
    a, rate, t, e = 0.0, 0.0, 0.0, 0

    def advance(a, h):
        ek = math.exp(-k * h)
        return a * ek + rate / k * (1.0 - ek)

    for i, target in enumerate(times):
        while e < len(events) and events[e][0] <= target:
            a = advance(a, events[e][0] - t)
            t = events[e][0]
            a += events[e][1]
            rate = max(rate + events[e][2], 0.0)
            e += 1
        a = advance(a, target - t)
        t = target
        out[i] = a / V
    return out


# ------------------------------------------------------------------------------ long courses
def test_ten_years_of_daily_boluses_matches_the_accumulation_formula():
    V, CL, D, tau = 40.0, 8.0, 35.0, 24.0
    k = CL / V
    n_doses = 3650
    times = ketasim.time_grid(n_doses * tau, 1.0)
    d = ketasim.Doses.single(D, "iv", addl=n_doses - 1, ii_h=tau)
    got = ketasim.simulate(one_cpt(V, CL), d, times).concentration("central", "mg/L")
    n = np.minimum(np.floor(times / tau), n_doses - 1)          # doses given so far, minus one
    ref = D / V * np.exp(-k * (times - n * tau)) * (1 - np.exp(-k * tau * (n + 1))) \
        / (1 - np.exp(-k * tau))
    np.testing.assert_allclose(got, ref, rtol=1e-11, atol=1e-14)
    # the steady-state peak, exactly at a dose time, is the value just after the dose
    assert got[times == 24.0 * 3000][0] == pytest.approx(D / V / (1 - np.exp(-k * tau)),
                                                         rel=1e-12)


def test_ten_years_of_daily_infusions_with_the_full_ketamine_model():
    """87,601 hourly outputs, 3,650 infusions, occupancy and the schematic response: finite,
    non-negative, mass conserved, and periodic once at steady state."""
    D = 35.0
    d = ketasim.Doses.single(D, "iv", duration_h=2 / 3, addl=3649, ii_h=24.0)
    times = ketasim.time_grid(3650 * 24.0, 1.0)
    m = ketasim.load_model("ketamine-iv")
    r = ketasim.simulate(m, d, times, amounts=True)
    assert np.all(np.isfinite(r.data)) and r.data.min() >= -1e-12
    mass = sum(r.amount(c) for c in m.compartments) + r.amount("eliminated")
    given = D * np.minimum(np.floor(times / 24.0) + np.clip((times % 24.0) / (2 / 3), 0, 1),
                           3650)
    np.testing.assert_allclose(mass, given, rtol=1e-9, atol=1e-9)
    plasma = r.concentration("plasma")
    day = slice(-49, -25), slice(-25, -1)
    np.testing.assert_allclose(plasma[day[0]], plasma[day[1]], rtol=1e-9)
    np.testing.assert_allclose(r.occupancy[day[0]], r.occupancy[day[1]], rtol=1e-7)
    assert 0.0 <= r.occupancy.min() and r.occupancy.max() < 1.0
    assert np.all(r.glutamate >= 1.0 - 1e-9) and np.all((r.plasticity >= 0) & (r.plasticity < 1))


def test_hundred_thousand_dose_events_in_random_order():
    rng = np.random.default_rng(7)
    n = 100_000
    t = np.round(rng.uniform(0, 5000.0, n), 3)
    amt = rng.uniform(0.1, 5.0, n)
    dur = np.where(rng.random(n) < 0.3, rng.uniform(0.05, 2.0, n), 0.0)
    d = ketasim.Doses(t, amt, ["iv"] * n, dur)                     # unsorted on purpose
    V, CL = 30.0, 12.0
    times = ketasim.time_grid(5002.0, 0.5)
    got = ketasim.simulate(one_cpt(V, CL), d, times).concentration("central", "mg/L")
    events = [(ti, a, 0.0) if du == 0 else (ti, 0.0, a / du) for ti, a, du in zip(t, amt, dur)]
    events += [(ti + du, 0.0, -a / du) for ti, a, du in zip(t, amt, dur) if du > 0]
    ref = scalar_reference(times, events, CL / V, V)
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12 * ref.max())


# ------------------------------------------------------------------------------ stiffness
def stiff_chain():
    """Six compartments with rates from 1e-4 to 1e3 per hour, back-flows and a metabolite."""
    rates = {"K01": 1e3, "K10": 3e2, "K12": 1e1, "K21": 1e-4, "K23": 1.0, "K32": 5e-2,
             "K34": 2e-3, "K45": 7e-1, "K5": 1e-4, "K3": 2e-2, "K4": 3e-4}
    spec = {"parameters": dict(rates, V1=12.0, V2=80.0, V3=300.0, V4=25.0, V5=500.0),
            "compartments": {"c0": 0, "c1": "V1", "c2": "V2", "c3": "V3", "c4": "V4",
                             "c5": "V5"},
            "flows": [{"from": a, "to": b, "k": k} for a, b, k in (
                ("c0", "c1", "K01"), ("c1", "c0", "K10"), ("c1", "c2", "K12"),
                ("c2", "c1", "K21"), ("c2", "c3", "K23"), ("c3", "c2", "K32"),
                ("c3", "c4", "K34"), ("c4", "c5", "K45"), ("c5", "out", "K5"),
                ("c3", "out", "K3"), ("c4", "out", "K4"))],
            "routes": {"bolus": {"to": "c0"}, "inf": {"to": "c2", "duration_h": 48.0}}}
    K = np.zeros((7, 7))
    idx = {f"c{i}": i for i in range(6)} | {"out": 6}
    for fl in spec["flows"]:
        k = rates[fl["k"]]
        K[idx[fl["from"]], idx[fl["from"]]] -= k
        K[idx[fl["to"]], idx[fl["from"]]] += k
    return spec, K


def test_rates_from_1e_4_to_1e3_per_hour_match_scipy_expm():
    spec, K = stiff_chain()
    model = ketasim.Model.from_dict(spec)
    times = np.unique(np.r_[0.0, np.logspace(-4, np.log10(20_000.0), 300), 48.0])
    doses = ketasim.Doses([0.0, 0.0], [100.0, 240.0], ["bolus", "inf"])
    r = ketasim.simulate(model, doses, times, amounts=True)
    # reference: one matrix exponential per output time straight from t = 0 (or from 48 h)
    n = K.shape[0]
    u = np.zeros(n)
    u[2] = 240.0 / 48.0
    M = np.zeros((2 * n, 2 * n))
    x0 = np.zeros(n)
    x0[0] = 100.0

    def during(t):
        M[:n, :n], M[:n, n:] = K * t, np.eye(n) * t
        E = expm(M)
        return E[:n, :n] @ x0 + E[:n, n:] @ u

    x48 = during(48.0)
    ref = np.array([during(t) if t <= 48.0 else expm(K * (t - 48.0)) @ x48 for t in times]).T
    got = np.array([r.amount(f"c{i}") for i in range(6)] + [r.amount("eliminated")])
    # scipy's one-shot expm is within 2e-11 of a 50-digit mpmath reference here; ketasim, after
    # ~300 stiff steps (‖K h‖ up to 1e6), within about 1e-9
    for i in range(n):
        np.testing.assert_allclose(got[i], ref[i], rtol=0, atol=5e-9 * ref[i].max() + 1e-13)
    np.testing.assert_allclose(got.sum(axis=0), 100.0 + np.clip(times, 0, 48) * 5.0,
                               rtol=5e-9)
    assert got.min() >= -1e-12


def test_single_ten_year_step_with_stiff_rates_conserves_mass():
    spec, _ = stiff_chain()
    r = ketasim.simulate(ketasim.Model.from_dict(spec), ketasim.Doses.single(100.0, "bolus"),
                         [0.0, 87_600.0], amounts=True)
    total = sum(r.amount(f"c{i}") for i in range(6)) + r.amount("eliminated")
    np.testing.assert_allclose(total, 100.0, rtol=1e-7)
    assert r.data.min() >= -1e-9


# ------------------------------------------------------------------------------ short horizon
def test_one_minute_horizon_with_second_steps():
    V, CL = 20.0, 600.0           # k = 30 / h: visible decay within a minute
    times = ketasim.time_grid(1 / 60, 1 / 3600)
    assert times.size == 61 and times[-1] == 1 / 60
    doses = ketasim.Doses([0.0, 10 / 3600], [5.0, 2.0], ["iv", "iv"], [0.0, 30 / 3600])
    got = ketasim.simulate(one_cpt(V, CL), doses, times).concentration("central", "mg/L")
    rate = 2.0 / (30 / 3600)
    ref = scalar_reference(times, [(0.0, 5.0, 0.0), (10 / 3600, 0.0, rate),
                                   (40 / 3600, 0.0, -rate)], CL / V, V)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-15)
    assert got[0] == pytest.approx(5.0 / V, rel=1e-15)


# ------------------------------------------------------------------------------ dose times
def test_outputs_at_dose_times_report_the_value_just_after_the_dose():
    V, CL = 10.0, 2.0
    k = CL / V
    model = one_cpt(V, CL, KA=1.5)
    # boluses at 0, 2 and twice at 5 (same time: both count); an infusion starting at 8
    doses = ketasim.Doses([5.0, 0.0, 2.0, 5.0, 8.0], [1.0, 4.0, 3.0, 2.0, 6.0],
                          ["iv"] * 5, [0.0, 0.0, 0.0, 0.0, 2.0])
    times = np.array([0.0, 0.0, 1.0, 2.0, 2.0, 5.0, 8.0, 10.0, 12.0])   # repeated times too
    c = ketasim.simulate(model, doses, times).concentration("central", "mg/L")
    ref = scalar_reference(times, [(0.0, 4.0, 0), (2.0, 3.0, 0), (5.0, 1.0, 0), (5.0, 2.0, 0),
                                   (8.0, 0.0, 3.0), (10.0, 0.0, -3.0)], k, V)
    np.testing.assert_allclose(c, ref, rtol=1e-13)
    assert c[0] == c[1] == pytest.approx(0.4, rel=1e-15)             # after the t=0 bolus
    jump = c[3] - 0.4 * np.exp(-k * 2.0)
    assert jump == pytest.approx(0.3, rel=1e-12)                     # after the t=2 bolus
    # an infusion start is continuous: at t=8 nothing has been infused yet
    before = ref[5] * np.exp(-k * 3.0)
    assert c[6] == pytest.approx(before, rel=1e-12)
    # grid starting after the first dose: the dose before still counts, decayed
    late = ketasim.simulate(model, doses, [3.0]).concentration("central", "mg/L")
    assert late[0] == pytest.approx((0.4 * np.exp(-k * 2) + 0.3) * np.exp(-k), rel=1e-12)
    # a lagged oral dose landing exactly on an output time (2 + 0.5 is exact in binary)
    lag = ketasim.Model.from_dict({"parameters": {"V": V, "CL": CL, "LAG": 0.5},
                                   "compartments": {"central": "V"},
                                   "flows": [{"from": "central", "to": "out", "cl": "CL"}],
                                   "routes": {"po": {"to": "central", "lag_h": "LAG"}}})
    cl = ketasim.simulate(lag, ketasim.Doses.single(3.0, "po", time_h=2.0), [2.0, 2.5, 2.5])
    assert cl.concentration("central", "mg/L") == pytest.approx([0.0, 0.3, 0.3], rel=1e-15)


# ------------------------------------------------------------------------------ body weight
@pytest.mark.parametrize("weight", [0.5, 3.0, 250.0, 650.0])
def test_extreme_weights(weight):
    m = ketasim.load_model("esketamine-iv")
    D = 0.5 * weight
    times = ketasim.time_grid(48.0, 0.25)
    r = ketasim.simulate(m, ketasim.Doses.single(D, "iv"), times, weight_kg=weight,
                         amounts=True)
    assert np.all(np.isfinite(r.data)) and r.data.min() >= -1e-12 * D
    v1 = 192.0 * weight / 70.0                      # V1 scales with (WT/70)^1
    assert r.concentration("central", "mg/L")[0] == pytest.approx(D / v1, rel=1e-12)
    mass = sum(r.amount(c) for c in m.compartments) + r.amount("eliminated")
    np.testing.assert_allclose(mass, D, rtol=1e-10)
    # a mg/kg dose gives the same early concentration at any weight (V1 is proportional)
    assert r.concentration("central")[0] == pytest.approx(0.5 / (192.0 / 70.0) * 1000.0,
                                                          rel=1e-12)
    assert 0 <= r.occupancy.min() and r.occupancy.max() < 1


def test_extreme_weights_as_a_population_equal_single_runs():
    m = ketasim.load_model("ketamine-iv")
    w = np.array([0.5, 3.0, 70.0, 250.0, 650.0])
    d = ketasim.Doses.single(35.0, "iv", duration_h=2 / 3)
    times = ketasim.time_grid(24.0, 0.1)
    pop = ketasim.simulate(m, d, times, weight_kg=w)
    assert pop.data.shape[0] == 5 and np.all(np.isfinite(pop.data))
    for i, wi in enumerate(w):
        np.testing.assert_array_equal(ketasim.simulate(m, d, times, weight_kg=wi).data[0],
                                      pop.data[i])
