"""NONMEM-style dose records: steady state, rate-defined infusions, resets, aliases, datasets
with subjects, and the dose-table reader (line numbers, encodings, stdin, size limit).

References are independent of ketasim: closed forms (infinite geometric superposition of
single-dose responses written out here), ``scipy.linalg.expm``, and ketasim's own simulation of
many ordinary doses (the limit a steady state must equal).
"""

from __future__ import annotations

import io
import math
import re
import subprocess
import sys
import tomllib
import tracemalloc
from pathlib import Path

import _models
import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import ketasim
from ketasim import dosing
from ketasim.cli import main
from ketasim.errors import KetasimInputError

README = Path(__file__).resolve().parents[1] / "README.md"

V, CL, KA = 20.0, 5.0, 1.3
K10 = CL / V


def one_cpt(F=0.8, LAG=0.0, relative=False):
    spec = {"parameters": {"V": V, "CL": CL, "KA": KA, "F": F, "LAG": LAG},
            "compartments": {"depot": 0, "central": "V"},
            "flows": [{"from": "depot", "to": "central", "k": "KA"},
                      {"from": "central", "to": "out", "cl": "CL"}],
            "routes": {"iv": {"to": "central"},
                       "ivf": {"to": "central", "f": "F", "relative_f": relative},
                       "oral": {"to": "depot", "f": "F", "lag_h": "LAG"}}}
    return ketasim.Model.from_dict(spec)


TWO = dict(V1=10.0, V2=30.0, CL=4.0, Q=6.0)


def two_cpt():
    return ketasim.Model.from_dict({
        "parameters": dict(TWO),
        "compartments": {"central": "V1", "periph": "V2"},
        "flows": [{"from": "central", "to": "out", "cl": "CL"},
                  {"from": "central", "to": "periph", "cl": "Q"},
                  {"from": "periph", "to": "central", "cl": "Q"}],
        "routes": {"iv": {"to": "central"}}})


def two_cpt_unit_response():
    """Coefficients a_i (1/L) and exponents λ_i (1/h) of a unit bolus: C = Σ a_i e^{-λ_i t}."""
    k10, k12, k21 = TWO["CL"] / TWO["V1"], TWO["Q"] / TWO["V1"], TWO["Q"] / TWO["V2"]
    s, p = k10 + k12 + k21, k10 * k21
    alpha = (s + math.sqrt(s * s - 4 * p)) / 2
    beta = (s - math.sqrt(s * s - 4 * p)) / 2
    a = (alpha - k21) / (TWO["V1"] * (alpha - beta))
    b = (k21 - beta) / (TWO["V1"] * (alpha - beta))
    return [(a, alpha), (b, beta)]


def infusion_response(terms, rate, dur, s):
    """Concentration s h after the start of one infusion (rate mg/h over dur h), 0 before."""
    s = np.asarray(s, float)
    c = np.zeros_like(s)
    for a, lam in terms:
        during = rate * a / lam * (1 - np.exp(-lam * np.clip(s, 0, None)))
        after = rate * a / lam * (1 - np.exp(-lam * dur)) * np.exp(-lam * (s - dur))
        c += np.where(s < 0, 0.0, np.where(s <= dur, during, after))
    return c


def ss_superposition(single, t, tau, n_terms=4000):
    """Σ_{j>=0} single(t + jτ): the periodic steady state after a dose at t = 0 (t in [0, τ))."""
    return sum(single(t + j * tau) for j in range(n_terms))


def sim(model, doses, times, **kw):
    return ketasim.simulate(model, doses, np.asarray(times, float), **kw)


def conc(model, doses, times, name="central", **kw):
    return sim(model, doses, times, **kw).concentration(name, "mg/L")


T = np.linspace(0.0, 11.9, 120)   # one interval after a steady-state dose at 0 (τ = 12)


# ------------------------------------------------------------------------- closed forms
def test_ss_bolus_one_compartment_closed_form():
    D, tau = 100.0, 12.0
    c = conc(one_cpt(), ketasim.Doses.single(D, "iv", ss=1, ii_h=tau, addl=1), T)
    ref = D / V * np.exp(-K10 * T) / (1 - np.exp(-K10 * tau))
    np.testing.assert_allclose(c, ref, rtol=1e-12)


def test_ss_oral_one_compartment_closed_form():
    D, tau, F = 100.0, 12.0, 0.8
    c = conc(one_cpt(F=F), ketasim.Doses.single(D, "oral", ss=1, ii_h=tau, addl=1), T)
    ref = F * D * KA / (V * (KA - K10)) * (np.exp(-K10 * T) / (1 - np.exp(-K10 * tau))
                                          - np.exp(-KA * T) / (1 - np.exp(-KA * tau)))
    np.testing.assert_allclose(c, ref, rtol=1e-11)


@pytest.mark.parametrize("lag", [0.0, 3.0, 12.0, 30.5])
def test_ss_oral_with_lag_one_compartment_superposition(lag):
    """A lag longer than the interval: earlier doses are still arriving after the SS dose."""
    D, tau, F = 100.0, 12.0, 0.8

    def single(s):
        s = s - lag
        with np.errstate(over="ignore"):
            c = F * D * KA / (V * (KA - K10)) * (np.exp(-K10 * s) - np.exp(-KA * s))
        return np.where(s >= 0, c, 0.0)

    c = conc(one_cpt(F=F, LAG=lag), ketasim.Doses.single(D, "oral", ss=1, ii_h=tau, addl=1), T)
    np.testing.assert_allclose(c, ss_superposition(single, T, tau), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("dur", [2.0, 12.0, 30.0])
def test_ss_infusion_one_compartment_superposition(dur):
    """Infusions shorter than, equal to and longer than the interval (overlapping)."""
    D, tau = 100.0, 12.0
    terms = [(1 / V, K10)]
    c = conc(one_cpt(), ketasim.Doses.single(D, "iv", ss=1, ii_h=tau, duration_h=dur, addl=1),
             T)
    ref = ss_superposition(lambda s: infusion_response(terms, D / dur, dur, s), T, tau)
    np.testing.assert_allclose(c, ref, rtol=1e-11)


def test_ss_two_compartment_bolus_closed_form():
    D, tau = 100.0, 8.0
    t = np.linspace(0, 7.9, 80)
    c = conc(two_cpt(), ketasim.Doses.single(D, "iv", ss=1, ii_h=tau, addl=1), t)
    ref = sum(D * a * np.exp(-lam * t) / (1 - np.exp(-lam * tau))
              for a, lam in two_cpt_unit_response())
    np.testing.assert_allclose(c, ref, rtol=1e-11)


@pytest.mark.parametrize("dur", [1.5, 20.0])
def test_ss_two_compartment_infusion_superposition(dur):
    D, tau = 100.0, 8.0
    t = np.linspace(0, 7.9, 80)
    terms = two_cpt_unit_response()
    c = conc(two_cpt(), ketasim.Doses.single(D, "iv", ss=1, ii_h=tau, duration_h=dur, addl=1),
             t)
    ref = ss_superposition(lambda s: infusion_response(terms, D / dur, dur, s), t, tau,
                           n_terms=2000)
    np.testing.assert_allclose(c, ref, rtol=1e-10)


def test_ss_constant_infusion():
    """ss = 1, ii_h = 0, amount 0, rate R: C = R / CL from the start, until a reset. The route's
    f does not lower the rate: NONMEM applies F to every dose except a steady-state constant
    infusion (it had given f R / CL)."""
    m = one_cpt(F=0.5)
    d = ketasim.Doses.from_records([
        {"time_h": 2.0, "amount_mg": 0, "route": "ivf", "rate_mg_h": 10.0, "ss": 1, "ii_h": 0},
        {"time_h": 20.0, "amount_mg": 0, "route": "", "evid": 3}])
    t = np.array([2.0, 5.0, 19.9, 20.0, 24.0])
    c = conc(m, d, t)
    np.testing.assert_allclose(c[:3], 10.0 / CL, rtol=1e-12)
    np.testing.assert_allclose(c[3:], 0.0, atol=0)


@pytest.mark.parametrize("ss", [1, 2])
@pytest.mark.parametrize("route", ["ivf", "oral", "split"])
def test_ss_constant_infusion_is_the_limit_of_a_rate_defined_infusion(route, ss):
    """A constant infusion at steady state (rate R) is where an infusion at the same rate R,
    started long before, has arrived: bioavailability changes a rate-defined infusion's
    duration, never its rate, and a split route's parts run at their shares of R. With f =
    0.6 it had run at 0.6 R (a split route whose f add up to 0.7: at 0.7 R)."""
    spec = {"parameters": {"V": V, "CL": CL, "KA": KA, "F": 0.6, "LAG": 0.4, "FA": 0.3,
                           "FB": 0.4},
            "compartments": {"depot": 0, "central": "V"},
            "flows": [{"from": "depot", "to": "central", "k": "KA"},
                      {"from": "central", "to": "out", "cl": "CL"}],
            "routes": {"iv": {"to": "central"}, "ivf": {"to": "central", "f": "F"},
                       "oral": {"to": "depot", "f": "F", "lag_h": "LAG"},
                       "split": {"parts": [{"to": "central", "f": "FA"},
                                           {"to": "depot", "f": "FB", "lag_h": "LAG"}]}}}
    m = ketasim.Model.from_dict(spec)
    rate, t_ss, t_long = 12.0, 3.0, 500.0
    first = {"amount_mg": 40.0, "route": "iv"}
    d = ketasim.Doses.from_records([
        dict(first, time_h=1.0),
        {"time_h": t_ss, "amount_mg": 0, "route": route, "rate_mg_h": rate, "ss": ss,
         "ii_h": 0}])
    # the same rate for 500 h (1e5 h of drug at that rate: it runs past every output)
    limit = ketasim.Doses.from_records(
        [{"time_h": 0.0, "amount_mg": rate * 1e5, "route": route, "rate_mg_h": rate}]
        + ([dict(first, time_h=t_long - t_ss + 1.0)] if ss == 2 else []))
    s = np.linspace(0.0, 10.0, 21)
    got = sim(m, d, t_ss + s, amounts=True)
    want = sim(m, limit, t_long + s, amounts=True)
    for c in ("central", "depot"):
        np.testing.assert_allclose(got.amount(c), want.amount(c), rtol=1e-10, atol=1e-12)



@pytest.mark.parametrize("route, zero", [("iv", {"CL": 0.0}), ("oral", {"KA": 0.0})])
def test_ss_into_a_compartment_whose_outflow_is_zero_is_refused(route, zero):
    """With CL = 0 (or KA = 0) the geometric series of doses, sum of e^(-k j tau), diverges:
    there is no steady state. Only an amount-only compartment the model has no flow out of
    (an excretion counter) starts empty at a steady-state dose, as NONMEM's output
    compartment; a compartment whose outflow merely evaluates to 0 had silently been treated
    as one, giving the single dose as the 'steady state'."""
    m = one_cpt(F=1.0)
    ss = ketasim.Doses.single(100.0, route, ss=1, ii_h=12.0)
    with pytest.raises(KetasimInputError, match=r"steady state \(ss\) does not exist.*no outflow "
                                                r"from (central|depot)"):
        sim(m, ss, [0.0, 6.0], params=zero)
    # the same dose with the outflow back: the closed form 100 / V / (1 - e^(-k tau))
    c = conc(m, ketasim.Doses.single(100.0, "iv", ss=1, ii_h=12.0), np.array([0.0]))
    np.testing.assert_allclose(c, 100.0 / V / (1 - np.exp(-K10 * 12.0)), rtol=1e-12)

@pytest.mark.parametrize("rows", [
    "0,0,ivf,10,0,0",        # a rate without an amount (NONMEM: AMT must be positive)
    "0,0,ivf,10,1,12",       # ss with an interval: NONMEM's constant infusion needs II = 0
    "0,0,ivf,10,2,12",
])
def test_a_rate_with_amount_zero_is_refused_unless_a_constant_infusion_at_steady_state(rows):
    """RATE > 0 with AMT = 0 is NONMEM's constant infusion at steady state (SS, II = 0) and
    nothing else: NONMEM stops on it otherwise. ketasim had given nothing, silently (with
    ss = 1 it even emptied the compartments): it names the row, the column and the value."""
    text = f"TIME,AMT,CMT,RATE,SS,II\n{rows}\n"
    with pytest.raises(ketasim.KetasimInputError, match=r"line 2: row 1: amount_mg: got 0 with "
                                                        r"rate_mg_h = 10.*expected an amount > 0"):
        ketasim.read_doses(io.StringIO(text))
    # the constant infusion itself: R / CL from its start (closed form; F does not apply)
    d = ketasim.read_doses(io.StringIO("TIME,AMT,CMT,RATE,SS,II\n0,0,ivf,10,1,0\n"))
    np.testing.assert_allclose(conc(one_cpt(F=0.5), d, np.array([0.0, 3.0])), 10 / CL,
                               rtol=1e-12)


# ------------------------------------------------------------------------- many doses
def many_doses_equal_ss(model, row, tau, n, names=None):
    times = np.linspace(0.0, 2 * tau, 41)
    pk = list(model.concentration_names)       # the schematic PD is no part of a steady state
    ss = sim(model, ketasim.Doses.single(**row, ss=1, ii_h=tau, addl=2), times, amounts=True,
             outputs=pk)
    many = sim(model, ketasim.Doses.single(**row, addl=n + 2, ii_h=tau), times + n * tau,
               amounts=True, outputs=pk)
    keep = [i for i, nm in enumerate(ss.names) if nm != "amount:eliminated"]
    a, b = ss.data[0][keep], many.data[0][keep]
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12 * np.abs(b).max())


NASAL = ketasim.load_model("esketamine-nasal")


@pytest.mark.parametrize("row", [
    dict(amount_mg=56.0, route="intranasal"),          # split route, a part with a duration
    dict(amount_mg=84.0, route="intranasal"),
    dict(amount_mg=20.0, route="iv", duration_h=30.0),  # infusion longer than the interval
    dict(amount_mg=20.0, route="oral"),
])
def test_ss_equals_limit_of_many_doses_preset(row):
    many_doses_equal_ss(NASAL, row, 12.0, 60)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), tau=st.sampled_from([1.0, 2.5, 6.0, 24.0]),
       kind=st.sampled_from(["bolus", "duration", "rate"]))
@example(seed=7898, tau=1.0, kind="rate")      # 45 infusions overlap at the steady state
def test_ss_equals_limit_of_many_doses_random_networks(seed, tau, kind):
    """Random networks (every compartment drains, rates 0.05-20 1/h), lags, split routes."""
    from conftest import random_spec

    rng = np.random.default_rng(seed)
    spec = random_spec(rng, rate_lo=0.05, rate_hi=20.0)
    for i, c in enumerate(spec["compartments"]):
        spec["parameters"][f"OUT{i}"] = 0.05
        spec["flows"].append({"from": c, "to": "out", "k": f"OUT{i}"})
    model = ketasim.Model.from_dict(spec)
    route = sorted(spec["routes"])[0]
    row = dict(amount_mg=50.0, route=route)
    if kind == "duration":
        row["duration_h"] = float(rng.uniform(0.1, 3 * tau))
    elif kind == "rate":
        row["rate_mg_h"] = float(rng.uniform(1.0, 100.0))
    # a steady state exists only for a stable network (yields above 1 on a cycle can make one
    # grow); slowest mode: the sum over n intervals must have converged (e^{-λ n τ} < 1e-13)
    eig = np.linalg.eigvals(model.matrices(model.resolve())[0])
    assume(np.all(eig.real < 0))
    lam = np.min(-eig.real)
    # ... after the last of the doses still infusing at the steady state has started (an
    # infusion of 50 mg at 1.1 mg/h lasts 45 h: with tau = 1 h, 45 overlap)
    dur = row.get("duration_h", 50.0 / row["rate_mg_h"] if "rate_mg_h" in row else 0.0)
    n = int(np.ceil(32 / (lam * tau))) + 5 + int(np.ceil(dur / tau))
    assume(n < 2000)
    many_doses_equal_ss(model, row, tau, n)


def test_ss2_adds_to_the_current_state():
    """ss = 2 at t1 = (dose at 0) + (ss = 1 at t1), by linearity."""
    m = one_cpt()
    t = np.linspace(6.0, 30.0, 49)
    first = {"time_h": 0.0, "amount_mg": 40.0, "route": "oral"}
    ssrow = {"time_h": 6.0, "amount_mg": 100.0, "route": "iv", "duration_h": 2.0, "ii_h": 8.0}
    both = conc(m, ketasim.Doses.from_records([first, dict(ssrow, ss=2)]), t)
    a = conc(m, ketasim.Doses.from_records([first]), t)
    b = conc(m, ketasim.Doses.from_records([dict(ssrow, ss=1)]), t)
    np.testing.assert_allclose(both, a + b, rtol=1e-12)
    # ss = 1 instead forgets the first dose
    one = conc(m, ketasim.Doses.from_records([first, dict(ssrow, ss=1)]), t)
    np.testing.assert_allclose(one, b, rtol=1e-12)


# ------------------------------------------------------------------------- resets
def test_evid3_empties_every_compartment_and_stops_infusions():
    m = one_cpt(LAG=5.0)
    rows = [{"time_h": 0.0, "amount_mg": 100.0, "route": "iv", "duration_h": 10.0},
            {"time_h": 2.0, "amount_mg": 50.0, "route": "oral"},      # arrives at 7 h: cancelled
            {"time_h": 6.0, "amount_mg": 0.0, "route": "", "evid": 3},
            {"time_h": 8.0, "amount_mg": 30.0, "route": "iv"}]
    t = np.linspace(6.0, 30.0, 97)
    r = sim(m, ketasim.Doses.from_records(rows), t, amounts=True)
    after = sim(m, ketasim.Doses.from_records(rows[3:]), t, amounts=True)
    np.testing.assert_allclose(r.amount("central"), after.amount("central"), atol=1e-12)
    np.testing.assert_allclose(r.amount("depot"), 0.0, atol=0)


@pytest.mark.parametrize("reset", [
    {"amount_mg": 0.0, "route": "", "evid": 3},
    {"amount_mg": 50.0, "route": "iv", "evid": 4},
    {"amount_mg": 50.0, "route": "iv", "ss": 1, "ii_h": 24.0}])
def test_a_reset_cancels_the_additional_doses_still_to_come(reset):
    """NONMEM's SS = 1 zeroes out earlier doses and cancels "pending additional doses" (Users
    Guide VIII, SS data item); EVID 3 and 4 re-initialize the whole system. The repeats of an
    earlier row (every 12 h from 0) had gone on after a reset at 30 h (and at 36 h, one on the
    reset time itself), each adding 100 mg to the emptied system: a jump of 5 mg/L at 36 h."""
    m = one_cpt()
    t = np.array([29.9, 35.9, 36.0, 36.1, 47.9, 48.1, 100.0])
    k = CL / V
    for t_reset in (30.0, 36.0):
        rows = [{"time_h": 0.0, "amount_mg": 100.0, "route": "iv", "addl": 10, "ii_h": 12.0},
                dict(reset, time_h=t_reset)]
        c = conc(m, ketasim.Doses.from_records(rows), t)
        s = t - t_reset
        # reference: only what the reset row gives after it (closed forms), the doses at 0, 12
        # and 24 (and 36 with the later reset) before it
        before = sum(100.0 / V * np.exp(-k * (t - td)) * (t >= td)
                     for td in np.arange(0.0, t_reset, 12.0))
        amt = reset["amount_mg"]
        acc = 1.0 / (1.0 - math.exp(-k * reset["ii_h"])) if reset.get("ss") else 1.0
        after = amt / V * np.exp(-k * s) * acc
        want = np.where(s < 0, before, after)
        np.testing.assert_allclose(c, want, rtol=1e-12, atol=1e-15)
    # another subject's reset cancels nothing of this one's, nor does a reset at the row's own
    # time (it applies before the row's dose)
    rows = [{"time_h": 0.0, "amount_mg": 100.0, "route": "iv", "addl": 3, "ii_h": 12.0,
             "subject": s} for s in (1, 2)]
    rows += [dict(reset, time_h=36.0, subject=2),
             {"time_h": 0.0, "amount_mg": 0.0, "route": "", "evid": 3, "subject": 1}]
    two = conc(m, ketasim.Doses.from_records(rows), t)
    alone = conc(m, ketasim.Doses.single(100.0, "iv", addl=3, ii_h=12.0), t)
    np.testing.assert_allclose(two[0], alone, rtol=1e-13)
    np.testing.assert_allclose(two[1], want, rtol=1e-12, atol=1e-15)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), t_reset=st.floats(0.0, 20.0), same_time=st.booleans())
def test_evid4_equals_evid3_then_dose(seed, t_reset, same_time):
    from conftest import random_doses, random_spec

    rng = np.random.default_rng(seed)
    spec = random_spec(rng)
    model = ketasim.Model.from_dict(spec)
    rec = random_doses(rng, spec, t_end=24.0).to_records()
    dose = {"time_h": t_reset, "amount_mg": 25.0, "route": sorted(spec["routes"])[0],
            "duration_h": 1.5 if same_time else 0.0}
    four = ketasim.Doses.from_records(rec + [dict(dose, evid=4)])
    three = ketasim.Doses.from_records(rec + [{"time_h": t_reset, "amount_mg": 0, "route": "",
                                               "evid": 3}, dose])
    times = np.linspace(0.0, 30.0, 121)
    a = sim(model, four, times, amounts=True).data
    b = sim(model, three, times, amounts=True).data
    np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13 * max(np.abs(b).max(), 1.0))


def test_pd_states_are_not_reset():
    m = ketasim.load_model("esketamine-iv")
    d = ketasim.Doses.from_records([
        {"time_h": 0.0, "amount_mg": 35.0, "route": "iv", "duration_h": 0.67},
        {"time_h": 3.0, "amount_mg": 0.0, "route": "", "evid": 3}])
    r = sim(m, d, [3.0, 3.5], outputs=["plasma", "plasticity"])
    assert r.concentration("plasma")[0] == 0.0
    assert r.output("plasticity")[0] > 0.0


# ------------------------------------------------------------------------- infusions
def test_rate_defined_vs_duration_defined_with_f():
    """F < 1: RATE keeps the rate and shortens the infusion; duration_h keeps the duration."""
    F, D, R = 0.6, 100.0, 25.0
    m = one_cpt(F=F)
    terms = [(1 / V, K10)]
    t = np.linspace(0, 12, 121)
    by_rate = conc(m, ketasim.Doses.single(D, "ivf", rate_mg_h=R), t)
    np.testing.assert_allclose(by_rate, infusion_response(terms, R, F * D / R, t), rtol=1e-12,
                               atol=1e-15)
    by_dur = conc(m, ketasim.Doses.single(D, "ivf", duration_h=D / R), t)
    np.testing.assert_allclose(by_dur, infusion_response(terms, F * R, D / R, t), rtol=1e-12,
                               atol=1e-15)


def test_rate_on_a_split_route_is_the_routes_rate_as_a_whole():
    """A route split into parts (racemic ketamine: half S, half R) runs at the row's
    rate_mg_h as a whole: 35 mg at 52.5 mg/h is 40 minutes of each enantiomer at 26.25 mg/h,
    the same as duration_h = 35 / 52.5 (each part at the full rate had made it 20 minutes).
    The split with a bioavailability below 1 on top: (sum of f) x amount / rate, NONMEM's RATE
    for the route as a whole."""
    m = ketasim.load_model("ketamine-iv")
    t = np.linspace(0.0, 4.0, 241)
    rec = {"time_h": 0.0, "amount_mg": 35.0, "route": "iv"}
    by_rate = sim(m, ketasim.Doses.from_records([dict(rec, rate_mg_h=52.5)]), t,
                  amounts=True)
    by_dur = sim(m, ketasim.Doses.from_records([dict(rec, duration_h=35.0 / 52.5)]), t,
                 amounts=True)
    np.testing.assert_allclose(by_rate.data, by_dur.data, rtol=1e-13, atol=1e-15)
    # by 20 minutes each enantiomer has a third of its 17.5 mg given, not all of it
    given = {s: by_rate.amount(s) + by_rate.amount(s.replace("central", "periph1"))
             for s in ("s_central", "r_central")}
    assert all(g[20] < 0.5 * 17.5 for g in given.values())
    spec = {"parameters": {"V": 20.0, "CL": 5.0},
            "compartments": {"a": "V", "b": "V"},
            "flows": [{"from": "a", "to": "out", "cl": "CL"},
                      {"from": "b", "to": "out", "cl": "CL"}],
            "routes": {"split": {"parts": [{"to": "a", "f": 0.3}, {"to": "b", "f": 0.5}]}}}
    two = ketasim.Model.from_dict(spec)
    r = sim(two, ketasim.Doses.single(100.0, "split", rate_mg_h=20.0), t, amounts=True)
    terms = [(1.0, -CL_V) for CL_V in [5.0 / 20.0]]
    dur = 0.8 * 100.0 / 20.0                    # 4 h: 80 mg at 20 mg/h, 30 and 50 of them
    for comp, f in (("a", 0.3), ("b", 0.5)):
        rate = f * 100.0 / dur
        ref = np.array([rate * (1 - np.exp(terms[0][1] * min(x, dur))) / -terms[0][1]
                        * np.exp(terms[0][1] * max(x - dur, 0.0)) for x in t])
        np.testing.assert_allclose(r.amount(comp), ref, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("t0, dur", [(1000.0 + 1 / 3, 1e-13), (1000.0 + 1 / 3, 1e-9),
                                     (1000.0 + 1 / 3, 3e-16), (0.0, 1e-300), (0.0, 1e-15),
                                     (2.0, 5e-324)])
def test_short_infusions_deliver_exactly_their_amount(t0, dur):
    """However short, an infusion delivers its amount (one that the engine cannot tell from a
    single instant is a bolus), with output times at, near and after it."""
    m = one_cpt()
    r = sim(m, ketasim.Doses.single(10.0, "iv", time_h=t0, duration_h=dur),
            [0.0, t0, t0 + 1.0, t0 + 2.0], amounts=True)
    total = r.amount("central") + r.amount("eliminated")
    np.testing.assert_allclose(total[2:], 10.0, rtol=1e-12)


def test_relative_f_allows_f_above_one_and_fractions_are_checked():
    d = ketasim.Doses.single(10.0, "ivf")
    r = sim(one_cpt(F=1.5, relative=True), d, [0.0], amounts=True)
    np.testing.assert_allclose(r.amount("central"), 15.0)
    with pytest.raises(KetasimInputError, match=r"routes\.ivf\.f = F evaluated to 1\.5.*"
                                                r"relative_f"):
        sim(one_cpt(F=1.0), d, [0.0], params={"F": 1.5})
    split = ketasim.Model.from_dict({
        "parameters": {"A": 0.9}, "compartments": {"c": 1.0},
        "flows": [{"from": "c", "to": "out", "k": 1.0}],
        "routes": {"nose": {"parts": [{"to": "c", "f": "A"}, {"to": "c", "f": "A"}]}}})
    with pytest.raises(KetasimInputError, match=r"routes\.nose: the parts' f add up to 1\.8"):
        sim(split, ketasim.Doses.single(10.0, "nose"), [0.0])


# ------------------------------------------------------------------------- columns, aliases
NM_TABLE = """C,ID,TIME,EVID,AMT,CMT,RATE,II,ADDL,SS,MDV,DV,WT
.,1,0,1,100,iv,0,12,3,1,1,.,70
.,1,1,0,.,central,.,.,.,.,0,1.2,70
.,1,2,0,.,central,.,.,.,.,0,0.9,70
.,1,50,3,.,.,.,.,.,.,1,.,70
.,1,60,1,40,oral,0,0,0,0,1,.,70
"""


def test_nonmem_aliases_and_observation_rows(tmp_path):
    d = ketasim.read_doses(io.StringIO(NM_TABLE))
    assert d.n_skipped == 2 and len(d) == 3
    same = ketasim.Doses.from_records([
        {"time_h": 0, "amount_mg": 100, "route": "iv", "ii_h": 12, "addl": 3, "ss": 1,
         "subject": 1, "weight_kg": 70},
        {"time_h": 50, "amount_mg": 0, "route": "", "evid": 3, "subject": 1, "weight_kg": 70},
        {"time_h": 60, "amount_mg": 40, "route": "oral", "subject": 1, "weight_kg": 70}])
    assert d == same
    # lower-case aliases, MDV without EVID, compartment numbers as CMT
    d2 = ketasim.read_doses(io.StringIO("time,amt,cmt,mdv,dv\n0,10,2,1,.\n1,0,2,0,3.1\n"))
    assert d2.n_skipped == 1
    r = sim(one_cpt(), d2, [0.0], amounts=True)
    assert r.amount("central")[0] == 10.0
    # write_doses keeps ketasim's names and round-trips
    out = tmp_path / "d.csv"
    ketasim.write_doses(d, out)
    assert out.read_text().splitlines()[0] == ("time_h,amount_mg,route,duration_h,addl,ii_h,"
                                               "ss,evid,subject,weight_kg")
    assert ketasim.read_doses(out) == d


@pytest.mark.parametrize("header,message", [
    ("time_h,ammount_mg,route,x", "did you mean 'amount_mg'"),
    ("TIME,AMT,CMT,RATTE", "did you mean 'RATE'"),
    ("time_h,amount_mg,route,weight", "did you mean 'weight_kg'"),
])
def test_misspelt_columns_are_caught_when_read(header, message):
    with pytest.raises(KetasimInputError, match=r"line 1: unknown column .*" + re.escape(message)):
        ketasim.read_doses(io.StringIO(header + "\n0,1,iv,1\n"))


def test_covariate_columns_are_checked_against_the_model():
    d = ketasim.read_doses(io.StringIO("time_h,amount_mg,route,CLL\n0,10,iv,4\n"))
    with pytest.raises(KetasimInputError, match=r"unknown column 'CLL' \(did you mean 'CL'\?\)"):
        sim(one_cpt(), d, [0.0])
    d = ketasim.read_doses(io.StringIO("time_h,amount_mg,route,CL\n0,10,iv,4\n"))
    c = conc(one_cpt(), d, [2.0])
    np.testing.assert_allclose(c, 10 / V * np.exp(-4 / V * 2.0), rtol=1e-12)


# ------------------------------------------------------------------------- subjects
DATASET = """ID,TIME,AMT,CMT,RATE,EVID,DV,WT,CL
7,0,100,iv,50,1,.,60,4
7,1,0,central,.,0,3.3,60,4
3,0,80,oral,0,1,.,90,6
3,12,80,oral,0,4,.,90,6
12,0,50,iv,0,1,.,75,.
12,6,50,iv,0,1,.,75,5
"""


def test_dataset_with_subjects_equals_separate_runs():
    m = ketasim.Model.from_dict({**{"parameters": {"V": V, "CL": CL, "KA": KA, "F": 0.8},
                                    "compartments": {"depot": 0, "central": "V"},
                                    "flows": [{"from": "depot", "to": "central", "k": "KA"},
                                              {"from": "central", "to": "out", "cl": "CL"}],
                                    "routes": {"iv": {"to": "central"},
                                               "oral": {"to": "depot", "f": "F"}},
                                    "weight": {"allometric": {"V": 1.0}}}})
    d = ketasim.read_doses(io.StringIO(DATASET))
    assert d.subject_ids == (7.0, 3.0, 12.0) and d.n_skipped == 1
    n, cov = ketasim.events.subject_covariates(d, m)
    assert n == 3 and list(cov["weight_kg"]) == [60, 90, 75] and list(cov["CL"]) == [4, 6, 5]
    t = np.linspace(0, 24, 49)
    r = sim(m, d, t)
    assert r.population and r.n_subjects == 3
    singles = [
        ([{"time_h": 0, "amount_mg": 100, "route": "iv", "rate_mg_h": 50}], 60, 4),
        ([{"time_h": 0, "amount_mg": 80, "route": "oral"},
          {"time_h": 12, "amount_mg": 80, "route": "oral", "evid": 4}], 90, 6),
        ([{"time_h": 0, "amount_mg": 50, "route": "iv"},
          {"time_h": 6, "amount_mg": 50, "route": "iv"}], 75, 5)]
    for s, (rows, wt, cl) in enumerate(singles):
        one = sim(m, ketasim.Doses.from_records(rows), t, weight_kg=wt, params={"CL": cl})
        np.testing.assert_allclose(r.data[s], one.data[0], rtol=1e-13, atol=0)


def test_cli_dataset_writes_subject_ids_and_counts_skipped_rows(tmp_path, capsys):
    ds = tmp_path / "ds.csv"
    ds.write_text("ID,TIME,AMT,CMT,EVID,DV,WT,KEL\n7,0,100,iv,1,.,60,0.2\n"
                  "7,1,0,central,0,3.3,60,0.2\n3,0,80,oral,1,.,90,0.3\n12,0,50,iv,1,.,75,.\n"
                  "12,6,50,iv,1,.,75,0.25\n")
    model = tmp_path / "m.toml"
    model.write_text('[parameters]\nV = 20.0\nKEL = 0.25\nKA = 1.3\n[weight]\n'
                     'allometric = {V = 1.0}\n[compartments]\ndepot = 0\ncentral = "V"\n'
                     '[[flows]]\nfrom = "depot"\nto = "central"\nk = "KA"\n'
                     '[[flows]]\nfrom = "central"\nto = "out"\nk = "KEL"\n'
                     '[routes.iv]\nto = "central"\n[routes.oral]\nto = "depot"\n')
    out = tmp_path / "o.csv"
    rc = main(["simulate", "--model", str(model), "--doses", str(ds), "--until", "2",
               "--step", "1", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "skipped 1 observation row (evid 0 or 2, MDV, or no dose item)" in err
    lines = out.read_text().splitlines()
    assert lines[0].startswith("subject,time_h,central_ng_ml")
    assert [ln.split(",")[0] for ln in lines[1:]] == ["7"] * 3 + ["3"] * 3 + ["12"] * 3
    # subject 7 at 1 h: a 100 mg bolus into V = 20 L x 60/70 (weight 60 kg), KEL 0.2 1/h
    c7 = float(lines[2].split(",")[2])
    np.testing.assert_allclose(c7, 1000 * 100 / (20 * 60 / 70) * math.exp(-0.2), rtol=1e-9)


def test_covariate_changing_within_a_subject_is_an_error():
    d = ketasim.read_doses(io.StringIO("ID,TIME,AMT,CMT,WT\n1,0,10,iv,70\n1,5,10,iv,71\n"))
    with pytest.raises(KetasimInputError, match="subject 1: weight_kg changes from 70 to 71"):
        sim(one_cpt(), d, [0.0])


@pytest.mark.parametrize("cmt, note", [("3", ""), ("0", "CMT = 0 .*default dose compartment"),
                                       ("-2", "negative CMT")])
def test_a_compartment_number_out_of_range_names_the_numbers_there_are(cmt, note):
    """NONMEM's CMT: 1 to the number of compartments, in [compartments] order (one_cpt has
    depot = 1, central = 2). Any other number is refused naming the numbers there are (it
    had been listed as an unknown name, with no word that numbers are read at all)."""
    d = ketasim.read_doses(io.StringIO(f"TIME,AMT,CMT\n0,10,2\n1,10,{cmt}\n"))
    with pytest.raises(KetasimInputError, match=rf"line 3: row 2: route \(CMT\): compartment "
                                                rf"number {cmt} does not exist; expected 1 to 2 "
                                                rf"\(1 = depot, 2 = central\).*{note}"):
        sim(one_cpt(), d, [0.0])
    # the numbers that exist dose those compartments whole (f = 1, no lag)
    r = sim(one_cpt(LAG=2.0), ketasim.read_doses(io.StringIO("TIME,AMT,CMT\n0,10,1\n0,7,2\n")),
            [0.0], amounts=True)
    assert (r.amount("depot")[0], r.amount("central")[0]) == (10.0, 7.0)


# ------------------------------------------------------------------------- the reader
def test_physical_line_numbers_with_comments_and_blank_lines():
    text = "# a comment\n\ntime_h,amount_mg,route\n# another\n0,10,iv\n\n1,-5,iv\n"
    with pytest.raises(KetasimInputError, match=r"line 7: amount_mg: got -5"):
        ketasim.read_doses(io.StringIO(text))
    d = ketasim.read_doses(io.StringIO(text.replace("-5", "5").replace("1,5,iv", "1,5,ivv")))
    with pytest.raises(KetasimInputError, match=r"line 7: row 2: route: unknown name 'ivv'"):
        sim(one_cpt(), d, [0.0])


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be",
                                      "utf-32"])
def test_bom_and_utf16_files(tmp_path, encoding):
    text = "time_h,amount_mg,route\n0,10,iv\n2,5,oral\n"
    p = tmp_path / "d.csv"
    p.write_bytes(text.encode(encoding))
    d = ketasim.read_doses(p)
    assert d.route == ("iv", "oral") and list(d.amount_mg) == [10, 5]


def test_dose_table_from_stdin(monkeypatch):
    data = b"time_h,amount_mg,route\n0,10,iv\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    d = ketasim.read_doses("-")
    assert d.source == "<stdin>" and list(d.amount_mg) == [10]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert ketasim.resolve_doses("-") == d


def test_dev_stdin_in_a_subprocess():
    code = "import ketasim; d = ketasim.read_doses('/dev/stdin'); print(d.amount_mg.sum())"
    out = subprocess.run([sys.executable, "-c", code], input=b"TIME,AMT,CMT\n0,10,iv\n1,5,iv\n",
                         capture_output=True, check=True,
                         env={"PYTHONPATH": str(Path(ketasim.__file__).parents[1])})
    assert out.stdout.strip() == b"15.0"


def test_size_limit(tmp_path, monkeypatch):
    p = tmp_path / "d.csv"
    p.write_text("time_h,amount_mg,route\n" + "0,10,iv\n" * 200)
    monkeypatch.setattr(dosing, "MAX_DOSE_FILE_BYTES", 1000)
    with pytest.raises(KetasimInputError, match=r"larger than the 0 MiB limit.*"
                                                r"MAX_DOSE_FILE_BYTES"):
        ketasim.read_doses(p)
    with pytest.raises(KetasimInputError, match="MAX_DOSE_FILE_BYTES"):
        ketasim.read_doses(io.BytesIO(p.read_bytes()))


def test_streaming_reader_memory():
    """50,000 rows are parsed into typed arrays: far less than the rows as Python lists (about
    150 bytes a row at its peak, the same for 200,000 rows; tracing every allocation makes the
    parse ten times slower, so the test keeps to 50,000)."""
    rows = 50_000
    data = ("time_h,amount_mg,route,duration_h\n"
            + "".join(f"{i * 0.5},{10 + i % 7},iv,0.5\n" for i in range(rows))).encode()
    tracemalloc.start()
    d = ketasim.read_doses(io.BytesIO(data))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(d) == rows and d.time_h[-1] == (rows - 1) * 0.5
    assert peak < 250 * rows, f"peak {peak / 2**20:.1f} MiB"


# ------------------------------------------------------------------------- README
def test_readme_steady_state_example():
    """The README's steady-state example against its closed form and its printed values."""
    text = README.read_text()
    sect = text[text.index("## Dose tables"):]
    sect = sect[:sect.index("\n## ", 5)]
    csv_block = re.search(r"```csv\n(time_h,amount_mg,route,ss,ii_h,addl\n.*?)```", sect,
                          re.S).group(1)
    d = ketasim.read_doses(io.StringIO(csv_block))
    model_block = re.search(r"```toml\n(.*?)```", text[text.index("## Model files"):],
                            re.S).group(1)
    m = ketasim.Model.from_dict(tomllib.loads(model_block))
    c = sim(m, d, [0.0, 11.999999999]).concentration("central")   # ng/mL
    D, tau, k, Vd = 100.0, 12.0, 10.0 / 50.0, 50.0
    peak = 1000 * D / Vd / (1 - math.exp(-k * tau))
    np.testing.assert_allclose(c[0], peak, rtol=1e-12)
    np.testing.assert_allclose(c[1], peak * math.exp(-k * tau), rtol=1e-9)
    printed = re.search(r"peak ([\d.]+)\s+ng/mL.*?trough ([\d.]+)\s+ng/mL", sect, re.S)
    assert abs(float(printed.group(1)) - peak) < 0.05
    assert abs(float(printed.group(2)) - peak * math.exp(-k * tau)) < 0.05


# ------------------------------------------------------------------------- published values
def test_an_observation_row_with_an_amount_is_refused():
    """A row with evid 0 or 2 (or MDV 0 without an evid column) is an observation, which ketasim
    skips: an amount on it had been dropped without a word. NONMEM requires dose items to be 0
    there; ketasim names the line and what gives the dose."""
    for text, kind in (("TIME,AMT,CMT,EVID\n0,35,iv,1\n12,35,iv,0\n", "evid 0"),
                       ("TIME,AMT,CMT,EVID\n0,35,iv,1\n12,5,iv,2\n", "evid 2"),
                       ("TIME,AMT,CMT,MDV\n0,35,iv,1\n12,35,iv,0\n", "MDV 0")):
        with pytest.raises(ketasim.KetasimInputError,
                           match=rf"line 3: amount_mg \(AMT\): got (35|5) on an observation row "
                                 rf"\({kind}\)"):
            ketasim.read_doses(io.StringIO(text))
    with pytest.raises(ketasim.KetasimInputError, match=r"row 2: amount_mg: got 5 on an "
                                                        r"observation row \(evid 0\)"):
        ketasim.Doses.from_records([dict(time_h=0, amount_mg=35, route="iv"),
                                    dict(time_h=3, amount_mg=5, route="iv", evid=0)])
    # observation rows without a dose are read past and counted, as before
    d = ketasim.read_doses(io.StringIO("TIME,AMT,CMT,EVID,MDV\n0,35,iv,1,1\n12,0,iv,0,0\n"
                                       "13,.,iv,2,1\n14,,iv,0,0\n"))
    assert len(d) == 1 and d.n_skipped == 3
    d = ketasim.read_doses(io.StringIO("TIME,AMT,CMT,MDV\n0,35,iv,1\n12,0,iv,0\n5,0,iv,1\n"))
    assert len(d) == 1 and d.n_skipped == 2


_OBSERVATION_KINDS = (("EVID", "0", "evid 0", "evid 1 (or blank)"),
                      ("EVID", "2", "evid 2", "evid 1 (or blank)"),
                      ("MDV", "0", "MDV 0", "MDV 1"))
_DOSE_ITEMS = (("RATE", "rate_mg_h", "10"), ("II", "ii_h", "12"), ("ADDL", "addl", "3"),
               ("SS", "ss", "1"))


@pytest.mark.parametrize("flag,flag_value,kind,give", _OBSERVATION_KINDS)
@pytest.mark.parametrize("alias,item,value", _DOSE_ITEMS)
def test_an_observation_row_with_another_dose_item_is_refused(flag, flag_value, kind, give,
                                                              alias, item, value):
    """An observation row (evid 0 or 2, or MDV 0 without an evid) that sets RATE, II, ADDL or
    SS had been skipped without a word, its dose information lost, as one with an amount had
    been; NONMEM refuses such a record. A CSV table, a DataFrame and dose records name the
    item (and the column it was given by), the value, the row and what gives a dose."""
    pd = pytest.importorskip("pandas")
    text = f"TIME,AMT,CMT,{alias},{flag}\n0,35,iv,,1\n12,0,iv,{value},{flag_value}\n"
    end = (rf"on an observation row \({kind}\), which gives no dose; expected 0 or blank "
           rf"there, or {re.escape(give)} to make the row a dose")
    named = item if alias.lower() == item else rf"{item} \({alias}\)"   # (ADDL is addl)
    with pytest.raises(KetasimInputError,
                       match=rf"^<doses>: line 3: {named}: got {value} {end}$"):
        ketasim.read_doses(io.StringIO(text))
    with pytest.raises(KetasimInputError,
                       match=rf"^<DataFrame>: row 2: {named}: got {value}\.0 {end}$"):
        ketasim.Doses.from_frame(pd.read_csv(io.StringIO(text)))
    recs = [{"time_h": 0, "amount_mg": 35, "route": "iv", flag.lower(): 1},
            {"time_h": 12, "amount_mg": 0, "route": "iv", item: int(value),
             flag.lower(): int(flag_value)}]
    with pytest.raises(KetasimInputError,
                       match=rf"^<doses>: row 2: {item}: got {value} {end}$"):
        ketasim.Doses.from_records(recs)
    # blank, "." and 0 are no dose item: the row is read past and counted, as before
    for blank in ("", ".", "0", "0.0"):
        t = text.replace(f",{value},", f",{blank},")
        d = ketasim.read_doses(io.StringIO(t))
        assert len(d) == 1 and d.n_skipped == 1, blank
        d = ketasim.Doses.from_frame(pd.read_csv(io.StringIO(t), na_values="."))
        assert len(d) == 1 and d.n_skipped == 1, blank
    recs[1][item] = 0
    assert ketasim.Doses.from_records(recs).n_skipped == 1


def test_cli_names_a_dose_item_on_an_observation_row(tmp_path, capsys):
    """``ketasim simulate --doses`` on a dataset whose observation row carries II: one line
    naming it, and no output file."""
    ds = tmp_path / "ds.csv"
    ds.write_text("ID,TIME,AMT,CMT,II,EVID,DV\n1,0,35,iv,,1,.\n1,2,0,iv,12,0,40\n")
    out = tmp_path / "o.csv"
    rc = main(["simulate", "--doses", str(ds), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc != 0 and not out.exists()
    assert err.strip().count("\n") == 0, err
    assert f"{ds}: line 3: ii_h (II): got 12 on an observation row (evid 0)" in err


def _cmt_model(CL, V, Q=None, V2=None):
    return _models.one_cpt(V=V, CL=CL, Q=Q, V2=V2)


def _ss_trough(model, dose, tau, dur=0.0):
    d = ketasim.Doses.single(dose, "iv", duration_h=dur, ss=1, ii_h=tau)
    return float(conc(model, d, [tau * (1 - 1e-12)])[0])


def test_published_steady_state_expectations():
    """Test expectations of the clinPK R package (InsightRX, tests of pk_1cmt_inf_ss and of
    the dose-for-target-trough functions): a 1-compartment infusion at steady state
    (100 mg over 2 h every 12 h, CL 5 L/h, V 50 L) has a trough of 0.954 mg/L; the doses
    that give a 0.1 mg/L trough every 24 h are 602.6 mg (1-compartment bolus, CL 10, V 50),
    86 mg (2-compartment bolus, CL 10, V 50, Q 5, V2 100) and 84.6 mg (the same, 1-h
    infusion), each printed to 0.1 mg."""
    assert round(_ss_trough(_cmt_model(5.0, 50.0), 100.0, 12.0, 2.0), 3) == 0.954
    one, two = _cmt_model(10.0, 50.0), _cmt_model(10.0, 50.0, 5.0, 100.0)
    for model, dose, dur in ((one, 602.6, 0.0), (two, 86.0, 0.0), (two, 84.6, 1.0)):
        needed = dose * 0.1 / _ss_trough(model, dose, 24.0, dur)   # linear in the dose
        assert round(needed, 1) == dose, (dose, needed)


record = st.fixed_dictionaries(
    {"time_h": st.floats(0, 1e4), "amount_mg": st.floats(0, 1e4),
     "route": st.sampled_from(["iv", "oral", "central", "2"])},
    optional={"duration_h": st.floats(0, 100), "addl": st.integers(0, 5),
              "evid": st.sampled_from([0, 1, 2, 4]), "subject": st.integers(1, 4),
              "weight_kg": st.floats(1, 200)})


@settings(max_examples=60, deadline=None)
@given(st.lists(record, min_size=1, max_size=8), st.booleans())
def test_write_then_read_round_trips(tmp_path_factory, recs, nonmem_names):
    """write_doses then read_doses gives the same table; with NONMEM names the same records
    read through the aliases; observation rows are counted, not kept."""
    for r in recs:
        if r.get("evid", 1) in (0, 2):
            # (an observation row with a dose item, amount or repeats, is refused)
            r["amount_mg"] = 0.0
            r.pop("addl", None)
        if r.get("addl"):
            r["ii_h"] = 12.0
    if any("subject" in r for r in recs):
        for r in recs:
            r.setdefault("subject", 1)
    if any("weight_kg" in r for r in recs):
        for r in recs:
            r.setdefault("weight_kg", 70.0)
    assume(any(r.get("evid", 1) not in (0, 2) for r in recs))
    if nonmem_names:
        alias = {v: k for k, v in dosing.ALIASES.items()}
        recs_in = [{alias.get(k, k): v for k, v in r.items()} for r in recs]
    else:
        recs_in = recs
    d = ketasim.Doses.from_records(recs_in)
    assert d.n_skipped == sum(r.get("evid", 1) in (0, 2) for r in recs)
    p = tmp_path_factory.mktemp("rt") / "d.csv"
    ketasim.write_doses(d, p)
    back = ketasim.read_doses(p)
    assert back == d
    assert list(back.line) == list(range(2, len(d) + 2))


def test_dataset_steady_state_per_subject_closed_form():
    d = ketasim.read_doses(io.StringIO("ID,TIME,AMT,CMT,SS,II,CL\n1,0,100,iv,1,12,2\n"
                                       "2,0,100,iv,1,12,8\n"))
    c = conc(one_cpt(), d, T)
    for s, cl in enumerate((2.0, 8.0)):
        k = cl / V
        np.testing.assert_allclose(c[s], 100 / V * np.exp(-k * T) / (1 - np.exp(-k * 12.0)),
                                   rtol=1e-12)


def test_subjects_with_observation_rows_only_are_named(tmp_path, capsys):
    """A subject whose every row is an observation has no dose: it is not simulated, and the
    table (read from a file or from records) and the CLI say which subjects those are."""
    text = ("ID,TIME,AMT,CMT,EVID,DUR\n1,0,35,iv,1,0.67\n2,0,.,iv,0,.\n1,2,.,iv,0,.\n"
            "3,1,.,iv,0,.\n3,2,.,iv,2,.\n")
    d = ketasim.read_doses(io.StringIO(text))
    assert d.subject_ids == (1.0,) and d.n_skipped == 4
    assert d.observation_only_subjects == (2.0, 3.0)
    recs = [{"subject": 1, "time_h": 0, "amount_mg": 35, "route": "iv"},
            {"subject": 5, "time_h": 1, "amount_mg": 0, "route": "", "evid": 0},
            {"subject": 1, "time_h": 2, "amount_mg": 0, "route": "", "evid": 2}]
    assert ketasim.Doses.from_records(recs).observation_only_subjects == (5.0,)
    # a subject with a dose elsewhere in the table is not listed; tables joined keep the list
    assert (d + d).observation_only_subjects == (2.0, 3.0)
    ds = tmp_path / "ds.csv"
    ds.write_text(text)
    out = tmp_path / "o.csv"
    rc = main(["simulate", "--doses", str(ds), "--until", "2", "--step", "1", "--out",
               str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "skipped 4 observation rows" in err
    assert "subjects 2, 3 have only observation rows: no dose, so not simulated" in err
    assert {ln.split(",")[0] for ln in out.read_text().splitlines()[1:]} == {"1"}
    # IDs as written: no exponent, no rounding (1000001 and 1234568 are not 1e+06, 1.23457e+06)
    ds.write_text("ID,TIME,AMT,CMT,EVID\n1234567,0,35,iv,1\n1234568,0,.,iv,0\n"
                  "1000001,0,.,iv,0\n")
    assert main(["simulate", "--doses", str(ds), "--until", "2", "--out", str(out)]) == 0
    assert "subjects 1000001, 1234568 have only" in capsys.readouterr().err


def test_subject_ids_that_a_number_cannot_keep_are_refused():
    """IDs are numbers (float64): 100000000000000001 would become 1e17 and merge with another
    subject, so it is refused; IDs a float keeps (1.5, 007, 1e17 itself) are read as they are."""
    import pytest

    from ketasim.errors import KetasimInputError

    bad = "ID,TIME,AMT,CMT\n100000000000000000,0,100,iv\n100000000000000001,0,50,iv\n"
    with pytest.raises(KetasimInputError, match=r"line 3: subject: got 100000000000000001"):
        ketasim.read_doses(io.StringIO(bad))
    with pytest.raises(KetasimInputError, match="subject: row 1: got 100000000000000001"):
        ketasim.Doses.from_records([{"subject": 10 ** 17 + 1, "time_h": 0, "amount_mg": 1,
                                     "route": "iv"}])
    ok = ketasim.read_doses(io.StringIO("ID,TIME,AMT,CMT\n1.5,0,1,iv\n007,0,1,iv\n1e17,0,1,iv\n"))
    assert ok.subject_ids == (1.5, 7.0, 1e17)


def test_a_row_flagged_in_a_c_column_is_a_comment_and_not_dosed():
    """NONMEM's IGNORE=C: a C (or anything but blank, '.' or 0) in the C column makes the row a
    comment; the dose on it must not be given."""
    d = ketasim.read_doses(io.StringIO("C,TIME,AMT,CMT\nC,0,100,2\n,1,100,2\n.,2,50,2\n"
                                       "0,3,25,2\n"))
    np.testing.assert_array_equal(d.time_h, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(d.amount_mg, [100.0, 50.0, 25.0])


def test_dose_records_read_mdv_and_c_as_the_csv_reader_does():
    """A NONMEM dataset as a DataFrame (or dose records) without an EVID column: its
    observation rows (MDV 0, or MDV 1 with no amount) had been taken as doses of 0 mg (each
    starting a session of its own in the metrics) or refused for their empty AMT, and a row
    flagged in a C column had been dosed; they are skipped, as read_doses skips them."""
    pd = pytest.importorskip("pandas")
    text = ("ID,TIME,AMT,CMT,DV,MDV,C\n1,0,100,1,.,1,.\n1,2,.,1,30,0,.\n1,4,0,1,25,0,.\n"
            "1,6,.,1,.,1,.\n1,8,100,1,.,1,C\n1,12,100,1,.,1,.\n")
    from_csv = ketasim.read_doses(io.StringIO(text))
    df = pd.read_csv(io.StringIO(text), na_values=".")
    for d in (ketasim.Doses.from_frame(df), ketasim.Doses.from_records(df.to_dict("records")),
              ketasim.Doses.from_frame(df.fillna({"AMT": 0}))):
        assert d == from_csv and d.n_skipped == from_csv.n_skipped == 3
        np.testing.assert_array_equal(d.time_h, [0.0, 12.0])
    # one compartment (V 50 L, CL 10 L/h): two sessions, at 0 and 12 h, as in the CSV
    from ketasim.engine import session_metrics
    m = _models.one_cpt(V=50.0, CL=10.0)
    sm = session_metrics(m, df, metrics=("cmax", "auc"), horizon_h=24.0)
    np.testing.assert_array_equal(sm["session_start_h"], [[0.0, 12.0]])
    k = 10.0 / 50.0
    np.testing.assert_allclose(sm["cmax_s2"], [2000.0 * (1 + np.exp(-12 * k))], rtol=1e-12)
    np.testing.assert_allclose(sm["auc_s1"], [2000.0 / k * (1 - np.exp(-12 * k))], rtol=1e-12)
    with pytest.raises(KetasimInputError, match=r"row 2: amount_mg \(AMT\): got 5\.0 on an "
                                                 r"observation row \(MDV 0\)"):
        ketasim.Doses.from_records([dict(TIME=0, AMT=100, CMT=1, MDV=1),
                                    dict(TIME=1, AMT=5.0, CMT=1, MDV=0)])
    with pytest.raises(KetasimInputError, match=r"row 1: DATE: got '2024-01-01'"):
        ketasim.Doses.from_records([dict(TIME=0, AMT=100, CMT=1, DATE="2024-01-01")])


def test_covariates_given_only_on_observation_rows_are_used():
    """NONMEM datasets often carry covariates on every row, observation rows included: a
    covariate blank on a subject's dose rows takes its value from them (its dose rows win
    when they have one); one that changes over them is refused."""
    m = _models.one_cpt(V=50.0, CL=10.0)
    d = ketasim.read_doses(io.StringIO("ID,TIME,AMT,CMT,EVID,CL\n1,0,100,1,1,.\n1,1,0,1,0,5\n"
                                       "2,0,100,1,1,7\n2,1,0,1,0,9\n"))
    t = np.array([2.0])
    c = ketasim.simulate(m, d, t).data[:, 0, 0]
    np.testing.assert_allclose(c, 100 / 50 * np.exp(-np.array([5.0, 7.0]) / 50 * 2),   # mg/L
                               rtol=1e-12)
    with pytest.raises(ketasim.KetasimInputError, match="changes from 5 to 6 over the "
                                                        "observation rows"):
        ketasim.read_doses(io.StringIO("ID,TIME,AMT,CMT,EVID,CL\n1,0,100,1,1,.\n1,1,0,1,0,5\n"
                                       "1,2,0,1,0,6\n"))


def test_dose_records_take_covariates_from_observation_rows_as_the_csv_reader_does():
    """A DataFrame of a NONMEM dataset whose covariates are on its observation rows only had
    been refused ('CL is blank on every row'); its dose rows take them, as read_doses does."""
    pd = pytest.importorskip("pandas")
    m = _models.one_cpt(V=50.0, CL=10.0)
    text = ("ID,TIME,AMT,CMT,EVID,MDV,CL\n1,0,100,1,1,1,.\n1,1,0,1,0,0,5\n"
            "2,0,100,1,1,1,7\n2,1,0,1,0,0,9\n3,0,100,1,.,1,.\n3,1,.,1,.,0,4\n")
    df = pd.read_csv(io.StringIO(text), na_values=".")
    d = ketasim.Doses.from_frame(df)
    assert d == ketasim.read_doses(io.StringIO(text))
    c = ketasim.simulate(m, d, np.array([2.0])).data[:, 0, 0]
    np.testing.assert_allclose(c, 100 / 50 * np.exp(-np.array([5.0, 7.0, 4.0]) / 50 * 2),
                               rtol=1e-12)                                     # mg/L
    with pytest.raises(ketasim.KetasimInputError, match="changes from 5 to 6 over the "
                                                        "observation rows"):
        ketasim.Doses.from_records([dict(ID=1, TIME=0, AMT=100, CMT=1, EVID=1),
                                    dict(ID=1, TIME=1, AMT=0, CMT=1, EVID=0, CL=5),
                                    dict(ID=1, TIME=2, AMT=0, CMT=1, EVID=0, CL=6)])


def test_rate_minus_two_takes_the_routes_own_duration_and_is_an_error_without_one():
    """NONMEM's RATE = -2 (duration modelled): on a route with a duration of its own the same
    as leaving the rate blank; on a route without one NONMEM stops, and so does ketasim
    (it had silently given a bolus)."""
    m = ketasim.load_model("esketamine-nasal")
    t = np.arange(0.0, 6.0, 0.25)
    a = ketasim.simulate(m, ketasim.read_doses(io.StringIO(
        "time_h,amount_mg,route,rate_mg_h\n0,56,intranasal,-2\n")), t, outputs=["plasma"])
    b = ketasim.simulate(m, ketasim.read_doses(io.StringIO(
        "time_h,amount_mg,route\n0,56,intranasal\n")), t, outputs=["plasma"])
    np.testing.assert_array_equal(a.data, b.data)
    with pytest.raises(ketasim.KetasimInputError, match="rate_mg_h = -2.*route 'iv' has no "
                                                        "duration_h in the model"):
        ketasim.simulate(m, ketasim.read_doses(io.StringIO(
            "TIME,AMT,CMT,RATE\n0,56,iv,-2\n")), t)
    # a row that gives its own duration beside -2 is told to leave the rate out (the message
    # had asked for the duration_h it gives)
    with pytest.raises(ketasim.KetasimInputError,
                       match=r"expected rate_mg_h left out \(or 0\) beside the row's "
                             r"duration_h 1.5, which then sets the duration"):
        ketasim.simulate(m, ketasim.read_doses(io.StringIO(
            "time_h,amount_mg,route,rate_mg_h,duration_h\n0,56,iv,-2,1.5\n")), t)


@pytest.mark.parametrize("sep, name", [(";", "semicolons"), ("\t", "tabs")])
def test_a_table_separated_by_something_else_than_commas_is_named_as_such(sep, name):
    text = sep.join(["time_h", "amount_mg", "route"]) + "\n" + sep.join(["0", "1", "iv"]) + "\n"
    with pytest.raises(ketasim.KetasimInputError, match=f"separate its columns with {name}"):
        ketasim.read_doses(io.StringIO(text))


def test_a_byte_order_mark_written_twice_is_read_past(tmp_path):
    p = tmp_path / "bom2.csv"
    p.write_bytes(b"\xef\xbb\xbf\xef\xbb\xbf# made by a tool that adds its own\n"
                  b"time_h,amount_mg,route\n0,1,iv\n")
    d = ketasim.read_doses(p)
    assert d.time_h.tolist() == [0.0] and d.route == ("iv",)


def test_a_covariates_table_has_the_size_limit_of_a_dose_table(tmp_path, monkeypatch, capsys):
    # --covariates was read whole whatever its size (a dose table stops at 512 MiB)
    from ketasim.cli import main

    p = tmp_path / "cov.csv"
    p.write_text("weight_kg\n" + "70\n" * 400)
    out = tmp_path / "pop.csv"
    monkeypatch.setattr(dosing, "MAX_DOSE_FILE_BYTES", 1000)
    rc = main(["population", "--n", "400", "--covariates", str(p), "--metrics", "cmax",
               "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and not out.exists()
    assert err.startswith("ketasim: error: --covariates: ") and "MAX_DOSE_FILE_BYTES" in err \
        and err.count("\n") == 1, err


def test_a_nonmem_dataset_without_evid_or_mdv_reads_rows_without_a_dose_as_observations(
        tmp_path, capsys):
    """NM-TRAN supplies EVID 0 to a record whose dose items are all 0: ID, TIME, AMT, DV with
    AMT = 0 on the observation rows had given each a 0-mg dose, so each was a session of its
    own in the summaries and the run ran on to 28 days after the last observation."""
    import csv

    text = "ID,TIME,AMT,CMT,DV\n1,0,10,iv,.\n1,24,0,iv,5.1\n1,48,.,iv,3.2\n2,4,0.0,iv,1\n"
    d = ketasim.read_doses(io.StringIO(text))
    assert len(d) == 1 and d.n_skipped == 3 and d.observation_only_subjects == (2.0,)
    e = ketasim.Doses.from_records(list(csv.DictReader(io.StringIO(text))))
    assert e == d and e.n_skipped == 3 and e.observation_only_subjects == (2.0,)
    from ketasim.engine import default_horizon_h
    assert default_horizon_h(d) == 28 * 24.0
    # a dose item other than the amount makes the row a dose (here: refused as one)
    with pytest.raises(KetasimInputError, match="line 3: row 2: amount_mg: got 0 with rate"):
        ketasim.read_doses(io.StringIO("TIME,AMT,CMT,RATE,DV\n0,10,iv,5,.\n1,0,iv,5,2\n"))
    # without a DV column the table is ketasim's own: a 0-mg row is a (placebo) session
    assert len(ketasim.read_doses(io.StringIO("TIME,AMT,CMT\n0,10,iv\n24,0,iv\n"))) == 2
    ds = tmp_path / "d.csv"
    ds.write_text("TIME,AMT,CMT,DV\n0,35,1,.\n24,0,1,5\n48,0,1,3\n")
    m = tmp_path / "m.toml"
    m.write_text("[parameters]\nV = 20.0\nCL = 5.0\n[compartments]\ncentral = \"V\"\n"
                 "[[flows]]\nfrom = \"central\"\nto = \"out\"\ncl = \"CL\"\n"
                 "[routes.iv]\nto = \"central\"\n")
    assert main(["simulate", "--model", str(m), "--doses", str(ds), "--summary", "--out",
                 str(tmp_path / "o.csv")]) == 0
    out, err = capsys.readouterr()
    assert "skipped 2 observation rows (evid 0 or 2, MDV, or no dose item)" in err
    rows = [ln.split() for ln in out.splitlines() if ln.strip() and ln.split()[0].isdigit()]
    assert [r[0] for r in rows] == ["1"]


def test_cells_quoted_after_a_space_are_read_as_their_text():
    """'"time_h", "amount_mg", "route"' (a space after each comma) had been read as the
    columns '"amount_mg"' and '"route"' (quotes kept), refused as unknown."""
    d = ketasim.read_doses(io.StringIO('"time_h", "amount_mg", "route"\n0, "35", "iv"\n'))
    assert d == ketasim.read_doses(io.StringIO("time_h,amount_mg,route\n0,35,iv\n"))
    # a blank cell after a comma's space is still a blank cell (a field of its own)
    e = ketasim.read_doses(io.StringIO("time_h, amount_mg, route, duration_h\n0, 35, iv, \n"))
    assert list(e.duration_h) == [0.0]


@pytest.mark.parametrize("records", [False, True])
def test_an_mdv_1_row_with_a_rate_is_a_dose(records):
    """With an MDV column, a row of MDV 1 and AMT 0 had been skipped as an observation even
    when another dose item was set: a constant infusion at steady state (AMT 0, RATE, SS 1)
    was lost ('no dose rows'), though the same rows without MDV were read as a dose. NM-TRAN
    takes MDV 1 with any dose item set as a dose (EVID 1)."""
    text = ("ID,TIME,AMT,RATE,SS,II,CMT,DV,MDV\n1,0,0,10,1,0,iv,.,1\n1,2,0,0,0,0,iv,5,0\n"
            "1,3,0,0,0,0,iv,.,1\n")
    if records:
        import pandas as pd

        d = ketasim.Doses.from_records(pd.read_csv(io.StringIO(text), na_values=".")
                                       .to_dict("records"))
    else:
        d = ketasim.read_doses(io.StringIO(text))
    assert len(d) == 1 and d.n_skipped == 2
    assert float(d.rate_mg_h[0]) == 10.0 and int(d.ss[0]) == 1 and float(d.amount_mg[0]) == 0.0


@pytest.mark.parametrize("cell", ["0_0", "\u0660"])
def test_a_dose_item_that_is_no_number_is_refused_not_taken_for_0(cell):
    """Without EVID and MDV, a row whose AMT was '0_0' (or an Arabic-Indic zero) had been an
    observation, skipped without a word: Python's float() reads them as 0, though the reader
    refuses them as numbers (and did so for the same row with an EVID)."""
    text = f"ID,TIME,AMT,DV,CMT\n1,0,35,.,iv\n1,1,{cell},5,iv\n"
    with pytest.raises(KetasimInputError, match=r"line 3: amount_mg: got .*expected a number"):
        ketasim.read_doses(io.StringIO(text))


def test_reset_that_starts_the_time_again_is_refused():
    """NONMEM lets TIME start again at a reset (a crossover's second period back at 0 after
    EVID 4); ketasim orders a subject's rows by time, so the second period's dose had been
    added to the first one's at 0 h (3000 ng/mL instead of 100 mg, then 50 mg alone)."""
    text = ("ID,TIME,AMT,CMT,EVID,MDV,DV\n"
            "1,0,100,2,1,1,.\n"
            "1,12,0,2,0,0,3\n"
            "1,0,50,2,4,1,.\n"
            "1,12,0,2,0,0,3\n")
    with pytest.raises(KetasimInputError, match=r"line 4: a reset \(evid 4\) at time_h 0 "
                       r"after line 3 at 12 h.*NONMEM starts the time again"):
        dosing.read_doses(io.StringIO(text))
    rows = [dict(ID=1, TIME=0, AMT=100, CMT=2, EVID=1, DV="."),
            dict(ID=1, TIME=12, AMT=0, CMT=2, EVID=0, DV=3),
            dict(ID=1, TIME=0, AMT=0, CMT=".", EVID=3, DV=".")]
    with pytest.raises(KetasimInputError, match=r"row 3: a reset \(evid 3\) at time_h 0 "
                       r"after row 2 at 12 h"):
        ketasim.Doses.from_records(rows)
    # the time kept running, or another subject: read as before; and a table that is no
    # NONMEM dataset (no DV or MDV) may list its rows in any order, a reset last
    ok = ("ID,TIME,AMT,CMT,EVID,DV\n1,0,100,2,1,.\n1,12,0,2,0,3\n1,24,50,2,4,.\n"
          "2,0,50,2,4,.\n")
    assert sorted(dosing.read_doses(io.StringIO(ok)).time_h.tolist()) == [0.0, 0.0, 24.0]
    plain = "time_h,amount_mg,route,evid\n0,100,2,1\n12,10,2,1\n6,0,,3\n"
    assert sorted(dosing.read_doses(io.StringIO(plain)).time_h.tolist()) == [0.0, 6.0, 12.0]
    assert len(ketasim.Doses.from_records([
        {"time_h": 0, "amount_mg": 100, "route": "2"}, {"time_h": 12, "amount_mg": 1,
                                                        "route": "2"},
        {"time_h": 6, "evid": 3}])) == 3


def test_reset_at_the_time_of_a_dose_above_it_is_refused():
    """In a NONMEM dataset a reset after a dose row of the same time wipes that dose (NONMEM
    reads the records in order); ketasim resets before every dose at its time, so the dose
    had been kept: 150 mg at 0 h instead of NONMEM's 50."""
    text = ("ID,TIME,AMT,CMT,EVID,DV\n"
            "1,0,100,2,1,.\n"
            "1,0,50,2,4,.\n"
            "1,2,0,2,0,1\n")
    with pytest.raises(KetasimInputError, match=r"line 3: a reset \(evid 4\) at time_h 0, the "
                       r"time of the dose on line 2 above it: NONMEM gives that dose and then "
                       r"resets"):
        dosing.read_doses(io.StringIO(text))
    rows = [dict(ID=1, TIME=0, AMT=100, CMT=2, EVID=1, MDV=1),
            dict(ID=1, TIME=0, AMT=0, CMT=".", EVID=3, MDV=1)]
    with pytest.raises(KetasimInputError, match=r"row 2: a reset \(evid 3\) at time_h 0, the "
                       r"time of the dose on row 1"):
        ketasim.Doses.from_records(rows)
    # the reset above the doses of its time (NONMEM: reset, then both doses), or another
    # subject's dose: read as before
    ok = ("ID,TIME,AMT,CMT,EVID,DV\n1,0,50,2,4,.\n1,0,100,2,1,.\n1,2,0,2,0,1\n"
          "2,0,10,2,1,.\n2,1,10,2,1,.\n3,1,0,,3,.\n")
    assert dosing.read_doses(io.StringIO(ok)).amount_mg.tolist() == [50, 100, 10, 10, 0]


def test_steady_state_dose_at_the_time_of_a_dose_above_it_is_refused():
    """SS = 1 resets, in NONMEM after the records above it: a dose row of the same time above
    a steady-state dose is lost there, while ketasim had added it (its resets come before
    every dose of their time)."""
    text = "ID,TIME,AMT,CMT,SS,II,DV\n1,0,100,2,0,0,.\n1,0,50,2,1,12,.\n"
    with pytest.raises(KetasimInputError, match=r"line 3: a reset \(a steady-state dose, ss 1\) "
                       r"at time_h 0, the time of the dose on line 2 above it"):
        dosing.read_doses(io.StringIO(text))
    with pytest.raises(KetasimInputError, match=r"row 2: a reset \(a steady-state dose, ss 1\)"):
        ketasim.Doses.from_records([dict(ID=1, TIME=0, AMT=100, CMT=2, DV=None),
                                    dict(ID=1, TIME=0, AMT=50, CMT=2, SS=1, II=12, DV=None)])
    # the steady-state dose first (NONMEM: reset to steady state, then the others), or SS = 2
    ok = "ID,TIME,AMT,CMT,SS,II,DV\n1,0,50,2,1,12,.\n1,0,100,2,0,0,.\n1,0,100,2,2,12,.\n"
    assert dosing.read_doses(io.StringIO(ok)).ss.tolist() == [1, 0, 2]


def test_nonmem_id_that_comes_back_is_refused():
    """NONMEM starts a new individual wherever the ID changes, so rows of ID 1 after ID 2's are
    another individual; ketasim had joined them to subject 1 (200 mg at 0 h: 4000 ng/mL
    instead of two individuals of 100 mg)."""
    text = "ID,TIME,AMT,CMT,DV\n1,0,100,2,.\n2,0,50,2,.\n1,0,100,2,.\n"
    with pytest.raises(KetasimInputError, match=r"line 4: subject 1 again, after the rows of "
                       r"subject 2 \(line 3\): NONMEM reads"):
        dosing.read_doses(io.StringIO(text))
    with pytest.raises(KetasimInputError, match=r"row 3: subject 1 again"):
        ketasim.Doses.from_records([dict(ID=1, TIME=0, AMT=1, CMT=2, MDV=1),
                                    dict(ID=2, TIME=0, AMT=1, CMT=2, MDV=1),
                                    dict(ID=1, TIME=1, AMT=0, CMT=2, MDV=0)])
    # a table that is no NONMEM dataset may list its rows in any order
    plain = "subject,time_h,amount_mg,route\n1,0,100,2\n2,0,50,2\n1,5,100,2\n"
    assert dosing.read_doses(io.StringIO(plain)).subject.tolist() == [1, 2, 1]
