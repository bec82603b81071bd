"""The exact engine against independent references, and its invariants.

References (see conftest): a ``solve_ivp`` Radau integration (rtol 1e-10) built from the model's
dict spec, and a ``scipy.linalg.expm`` propagation of the same spec. Errors are measured as
``max |ketasim - reference|`` over the grid, relative to the curve's own peak; an output whose
peak is far below every other output's (a compartment reached only through 1e-3/h flows) is
measured against a floor of ``FLOOR`` × the largest peak, since the Radau reference is only
accurate to its absolute tolerance there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg
from scipy.integrate import quad_vec

import ketasim
from ketasim import _kernels, engine

from conftest import Reference, make_case, random_doses, random_spec

RANDOM_SEEDS = range(20)
STIFF_SEEDS = range(6)

TOL_IVP = 1e-7      # vs Radau rtol=1e-10 (observed <= 4e-11 on these seeds)
TOL_EXPM = 1e-10    # vs scipy.linalg.expm (observed <= 6e-12)
FLOOR = 1e-4        # outputs with a peak below FLOOR × the largest peak use that floor


def _errors(res, ref, X, floor_rel):
    """Per-output errors: concentrations (mg/L) and amounts (mg, incl. eliminated)."""
    conc = {nm: (res.concentration(nm, "mg/L"), ref.conc(X, nm))
            for nm in ref.concentration_names()}
    amts = {f"amount:{s}": (res.amount(s), X[ref.idx[s]])
            for s in ref.states if s not in ref.effects}
    errs = {}
    for group in (conc, amts):
        top = max(np.abs(r).max() for _, r in group.values())
        for nm, (got, want) in group.items():
            denom = max(np.abs(want).max(), floor_rel * top)
            errs[nm] = float(np.max(np.abs(got - want)) / denom) if denom > 0 else \
                float(np.max(np.abs(got)))
    return errs


def _check_case(seed, kind, reference):
    spec, doses, times = make_case(seed, kind)
    res = ketasim.simulate(ketasim.Model.from_dict(spec), doses, times, amounts=True)
    ref = Reference(spec)
    assert set(res.model.state_names) == set(ref.states) - {"eliminated"}
    exact = _errors(res, ref, ref.amounts_expm(doses, times), 1e-6)
    worst = max(exact, key=exact.get)
    assert exact[worst] <= TOL_EXPM, (worst, exact[worst], spec, doses.to_records())
    ivp = _errors(res, ref, reference(seed, kind), FLOOR)
    worst = max(ivp, key=ivp.get)
    assert ivp[worst] <= TOL_IVP, (worst, ivp[worst], spec, doses.to_records())


# ----------------------------------------------------------------------------- 1. random networks
@pytest.mark.parametrize("kind", ["random"])
@pytest.mark.parametrize("seed", RANDOM_SEEDS)
def test_random_network_matches_solve_ivp(seed, kind, reference):
    """2-10 compartments, rates 1e-3..1e2 /h, amount-only depots, yields, effect sites, split
    routes with f/lag/duration; boluses and (overlapping) infusions on and between grid points,
    addl repeats, unsorted rows; regular, late-starting and irregular output grids."""
    _check_case(seed, kind, reference)


# ----------------------------------------------------------------------------- 4. stiffness
@pytest.mark.parametrize("kind", ["stiff"])
@pytest.mark.parametrize("seed", STIFF_SEEDS)
def test_stiff_random_network_matches_solve_ivp(seed, kind, reference):
    """Rates from 1e-4 to 1e3 /h within one network."""
    _check_case(seed, kind, reference)


def test_stiff_chain_matches_solve_ivp():
    """A hand-built network whose rates span 1e-4..1e3 /h (stiffness ratio ~1e7): fast gut
    absorption, a fast-equilibrating shallow compartment, a very slow deep one."""
    spec = {"parameters": {"KA": 1000.0, "V": 10.0, "CL": 4.0, "Q1": 5000.0, "V1": 5.0,
                           "K2": 1e-4, "K3": 3e-4, "KM": 800.0, "VM": 30.0, "KE0": 900.0},
            "compartments": {"gut": 0, "central": "V", "shallow": "V1", "deep": 0,
                             "met": "VM"},
            "flows": [{"from": "gut", "to": "central", "k": "KA"},
                      {"from": "central", "to": "out", "cl": "CL"},
                      {"from": "central", "to": "shallow", "cl": "Q1"},
                      {"from": "shallow", "to": "central", "cl": "Q1"},
                      {"from": "central", "to": "deep", "k": "K2"},
                      {"from": "deep", "to": "central", "k": "K3"},
                      {"from": "central", "to": "met", "k": 0.05, "yield": 0.9},
                      {"from": "met", "to": "out", "k": "KM"}],
            "routes": {"oral": {"to": "gut", "f": 0.7, "lag_h": 0.25},
                       "iv": {"to": "central"}},
            "effects": {"ce": {"of": "central", "ke0": "KE0"}}}
    doses = ketasim.Doses([0.0, 3.1, 6.0, 1.0], [100.0, 40.0, 80.0, 20.0],
                          ["oral", "iv", "oral", "iv"], [0.0, 0.0, 0.0, 1.5])
    times = ketasim.time_grid(12.0, 0.1)
    res = ketasim.simulate(ketasim.Model.from_dict(spec), doses, times, amounts=True)
    ref = Reference(spec)
    errs = _errors(res, ref, ref.amounts(doses, times), FLOOR)
    worst = max(errs, key=errs.get)
    assert errs[worst] <= TOL_IVP, (worst, errs[worst])
    errs = _errors(res, ref, ref.amounts_expm(doses, times), 1e-6)
    worst = max(errs, key=errs.get)
    assert errs[worst] <= TOL_EXPM, (worst, errs[worst])


# ----------------------------------------------------------------------------- 3. invariants
def _random_case(seed, **kw):
    rng = np.random.default_rng(seed)
    spec = random_spec(rng, **kw)
    return spec, random_doses(rng, spec, t_end=24.0)


def _conc(res, model):
    return np.array([res.concentration(nm, "mg/L") for nm in model.concentration_names])


@pytest.mark.parametrize("seed", range(20))
def test_mass_balance(seed):
    """All yields 1: Σ compartment amounts + eliminated == amount delivered so far (after f,
    including partly delivered infusions), to 1e-9 of the total dosed."""
    spec, doses = _random_case(2000 + seed, unit_yield=True)
    model = ketasim.Model.from_dict(spec)
    times = np.unique(np.r_[ketasim.time_grid(30.0, 0.1), doses.time_h, doses.time_h + 0.05])
    res = ketasim.simulate(model, doses, times, amounts=True)
    total = sum(res.amount(c) for c in model.compartments) + res.amount("eliminated")
    ref = Reference(spec)
    delivered = ref.delivered(doses, times)
    scale = ref.delivered(doses, [1e9])[0]
    assert scale > 0
    assert np.max(np.abs(total - delivered)) <= 1e-9 * scale
    # and nothing is negative beyond rounding (a linear network with these K keeps A >= 0)
    for c in model.compartments:
        assert res.amount(c).min() >= -1e-12 * scale


@pytest.mark.parametrize("seed", range(8))
def test_dose_linearity(seed):
    """3 × every amount → 3 × every concentration and amount."""
    spec, doses = _random_case(3000 + seed)
    model = ketasim.Model.from_dict(spec)
    times = ketasim.time_grid(24.0, 0.2)
    r1 = ketasim.simulate(model, doses, times, amounts=True)
    r3 = ketasim.simulate(model, doses.scaled(3.0), times, amounts=True)
    for k in range(len(r1.names)):
        a, b = r1.data[0, k], r3.data[0, k]
        peak = max(np.abs(b).max(), 1e-300)
        assert np.max(np.abs(b - 3.0 * a)) <= 1e-13 * peak, r1.names[k]


@pytest.mark.parametrize("seed", range(8))
def test_superposition(seed):
    """sim(A + B) == sim(A) + sim(B) for dose tables A and B (rows split at random)."""
    spec, doses = _random_case(4000 + seed)
    model = ketasim.Model.from_dict(spec)
    rng = np.random.default_rng(seed)
    rec = doses.to_records()
    mask = rng.random(len(rec)) < 0.5
    mask[0], mask[-1] = True, False
    A = ketasim.Doses.from_records([r for r, m in zip(rec, mask) if m])
    B = ketasim.Doses.from_records([r for r, m in zip(rec, mask) if not m])
    times = ketasim.time_grid(24.0, 0.2)
    rab = ketasim.simulate(model, A + B, times, amounts=True)
    ra = ketasim.simulate(model, A, times, amounts=True)
    rb = ketasim.simulate(model, B, times, amounts=True)
    for k, nm in enumerate(rab.names):
        want = ra.data[0, k] + rb.data[0, k]
        peak = max(np.abs(want).max(), 1e-300)
        assert np.max(np.abs(rab.data[0, k] - want)) <= 1e-11 * peak, nm


@pytest.mark.parametrize("seed", range(6))
def test_dose_row_order_does_not_matter(seed):
    spec, doses = _random_case(5000 + seed)
    model = ketasim.Model.from_dict(spec)
    times = ketasim.time_grid(24.0, 0.25)
    rec = doses.to_records()
    perm = np.random.default_rng(seed).permutation(len(rec))
    r1 = ketasim.simulate(model, doses, times, amounts=True)
    r2 = ketasim.simulate(model, ketasim.Doses.from_records([rec[i] for i in perm]), times,
                          amounts=True)
    r3 = ketasim.simulate(model, ketasim.Doses.from_records(rec[::-1]), times, amounts=True)
    for r in (r2, r3):
        for k, nm in enumerate(r1.names):
            peak = max(np.abs(r1.data[0, k]).max(), 1e-300)
            assert np.max(np.abs(r.data[0, k] - r1.data[0, k])) <= 1e-14 * peak, nm


def test_addl_expansion_equals_explicit_rows(make_one_cpt):
    model, _ = make_one_cpt()
    compact = ketasim.Doses([10.0, 0.0], [50.0, 100.0], ["iv", "oral"], [0.5, 0.0], [3, 5],
                            [12.0, 8.0])
    explicit = ketasim.Doses.from_records(
        [{"time_h": 8.0 * k, "amount_mg": 100.0, "route": "oral"} for k in range(6)]
        + [{"time_h": 10.0 + 12.0 * k, "amount_mg": 50.0, "route": "iv", "duration_h": 0.5}
           for k in range(4)])
    times = ketasim.time_grid(72.0, 0.25)
    a = ketasim.simulate(model, compact, times, amounts=True)
    b = ketasim.simulate(model, explicit, times, amounts=True)
    np.testing.assert_array_equal(a.data, b.data)
    # and the repeats do something: the 6th oral dose at 40 h raises the depot
    assert a.amount("depot")[times == 40.0][0] > 75.0


# ----------------------------------------------------------------------------- conventions
def test_value_at_dose_time_is_just_after_the_dose(make_one_cpt):
    model, _ = make_one_cpt(V=20.0, CL=5.0)
    times = np.array([0.0, 1.0, 2.0, 2.0, 3.0, 4.0])
    res = ketasim.simulate(model, ketasim.Doses.single(100.0, "iv", time_h=2.0), times)
    c = res.concentration("central", "mg/L")
    assert np.all(c[:2] == 0.0)
    assert c[2] == c[3] == 100.0 / 20.0
    np.testing.assert_allclose(c[4:], 5.0 * np.exp(-0.25 * np.array([1.0, 2.0])), rtol=1e-13)


def test_doses_before_the_first_output_and_after_the_last(make_one_cpt):
    model, _ = make_one_cpt(V=20.0, CL=5.0)
    d = ketasim.Doses([0.0, 6.0, 30.0], [100.0, 60.0, 1000.0], ["iv"] * 3)
    times = np.array([5.0, 6.0, 7.5, 10.0])
    c = ketasim.simulate(model, d, times).concentration("central", "mg/L")
    k = 0.25
    want = 5.0 * np.exp(-k * times) + np.where(times >= 6.0, 3.0 * np.exp(-k * (times - 6.0)), 0)
    np.testing.assert_allclose(c, want, rtol=1e-13)


def test_back_to_back_infusions_on_one_compartment(make_one_cpt):
    """An infusion stopping exactly when another starts (same route, different rates), and an
    overlapping one: the input is the sum of the rates in force."""
    model, spec = make_one_cpt(V=10.0, CL=2.0)
    d = ketasim.Doses([2.0, 0.0, 1.0], [30.0, 20.0, 5.0], ["iv"] * 3, [1.0, 2.0, 0.5])
    times = ketasim.time_grid(8.0, 0.125)
    res = ketasim.simulate(model, d, times)
    ref = Reference(spec)
    X = ref.amounts_expm(d, times)
    np.testing.assert_allclose(res.concentration("central", "mg/L"), ref.conc(X, "central"),
                               rtol=0, atol=1e-13 * ref.conc(X, "central").max())


def test_amounts_recorded_with_explicit_outputs(make_one_cpt):
    model, _ = make_one_cpt()
    res = ketasim.simulate(model, ketasim.Doses.single(100.0, "iv"), [0.0, 1.0],
                           outputs=["central"], amounts=True)
    np.testing.assert_allclose(res.amount("central"), [100.0, 100.0 * np.exp(-0.25)],
                               rtol=1e-13)


# ----------------------------------------------------------------------------- 5. population
def test_population_equals_separate_calls():
    rng = np.random.default_rng(77)
    spec = random_spec(rng, n_comp=6)
    model = ketasim.Model.from_dict(spec)
    doses = random_doses(rng, spec, t_end=24.0)
    times = ketasim.time_grid(24.0, 0.25)
    N = 7
    names = [k for k in spec["parameters"] if not k.startswith(("F", "LAG", "DUR"))][:6]
    names += [k for k in spec["parameters"] if k.startswith(("F", "LAG", "DUR"))][:2]
    params = {}
    for k in names:
        v = spec["parameters"][k] * np.exp(rng.normal(0.0, 0.3, N))
        if k.startswith("F"):
            v = np.minimum(v, 1.0)
        params[k] = v
    pop = ketasim.simulate(model, doses, times, params=params, amounts=True)
    assert pop.data.shape[0] == N
    for i in range(N):
        one = ketasim.simulate(model, doses, times, params={k: float(v[i])
                                                             for k, v in params.items()},
                               amounts=True)
        np.testing.assert_array_equal(pop.data[i], one.data[0])
        for nm in model.concentration_names:
            np.testing.assert_array_equal(pop.concentration(nm)[i], one.concentration(nm))


def test_population_weights_and_threads():
    """Weight arrays (allometric CL, per-kg V) match scalar calls; 1 and 2 threads agree."""
    spec = {"parameters": {"CL": 6.0, "V": 0.4, "Q": 10.0, "V2": 40.0, "KA": 1.1},
            "weight": {"reference_kg": 70.0, "allometric": {"CL": 0.75, "Q": 0.75},
                       "per_kg": ["V"]},
            "compartments": {"gut": 0, "central": "V", "periph": "V2"},
            "flows": [{"from": "gut", "to": "central", "k": "KA"},
                      {"from": "central", "to": "out", "cl": "CL"},
                      {"from": "central", "to": "periph", "cl": "Q"},
                      {"from": "periph", "to": "central", "cl": "Q"}],
            "routes": {"oral": {"to": "gut", "f": 0.6}, "iv": {"to": "central"}}}
    model = ketasim.Model.from_dict(spec)
    doses = ketasim.Doses([0.0, 12.0], [100.0, 35.0], ["oral", "iv"], [0.0, 0.75])
    times = ketasim.time_grid(36.0, 0.5)
    wts = np.array([45.0, 70.0, 88.5, 120.0, 61.2])
    pop1 = ketasim.simulate(model, doses, times, weight_kg=wts, threads=1)
    pop2 = ketasim.simulate(model, doses, times, weight_kg=wts, threads=2)
    np.testing.assert_array_equal(pop1.data, pop2.data)
    for i, w in enumerate(wts):
        one = ketasim.simulate(model, doses, times, weight_kg=float(w))
        np.testing.assert_array_equal(pop1.data[i], one.data[0])
    # weight scaling really applied: the heavier subject has the lower peak
    peaks = pop1.concentration("central").max(axis=1)
    assert peaks[3] < peaks[1] < peaks[0]


@pytest.mark.parametrize("preset, course", [("ketamine-iv", "standard-iv"),
                                             ("esketamine-nasal", "spravato")])
def test_one_subject_rows_on_two_threads_equal_one_call(preset, course):
    """One subject with many output values runs its rows in two groups on two threads: every
    value equals the one-thread run and the same subject inside a population (one call for
    all its rows), bit for bit, schematic response included."""
    model = ketasim.load_model(preset)
    doses = ketasim.resolve_doses(course, months=2)
    times = ketasim.time_grid(24.0 * 70, 1 / 60)
    plan = engine.prepare(model, doses)
    R = len(plan.names)
    assert R * times.size >= engine.SPLIT_VALUES
    assert engine._row_split(plan, times.size) is not None
    two = ketasim.simulate(model, doses, times, threads=2).data
    one = ketasim.simulate(model, doses, times, threads=1).data
    np.testing.assert_array_equal(two, one)
    typ = model.parameters["V1"]
    pop = ketasim.simulate(model, doses, times, params={"V1": np.array([typ, typ])},
                           threads=1).data
    np.testing.assert_array_equal(two[0], pop[0])
    assert np.isfinite(two).all() and np.ptp(two[0, -1]) > 0


@pytest.mark.parametrize("outputs", [["plasma", "occupancy", "occupancy_low", "occupancy_high",
                                      "glutamate"],
                                     ["occupancy", "occupancy_low", "occupancy_high",
                                      "plasticity"]])
def test_row_groups_that_cut_among_the_occupancy_rows_equal_one_call(outputs):
    """When the schematic response outweighs the other rows, the first group takes occupancy
    rows too (or only they: no concentration asked for); the values are still those of one
    call, bit for bit."""
    model = ketasim.load_model("esketamine-nasal")
    doses = ketasim.resolve_doses("spravato", months=6)
    times = ketasim.time_grid(24.0 * 182, 1 / 60)
    plan = engine.prepare(model, doses, outputs=outputs)
    cut = engine._row_split(plan, times.size)
    assert cut is not None and cut > plan.C.shape[1]
    two = ketasim.simulate(model, doses, times, outputs=outputs, threads=2).data
    one = ketasim.simulate(model, doses, times, outputs=outputs, threads=1).data
    np.testing.assert_array_equal(two, one)
    assert np.isfinite(two).all() and (np.ptp(two[0], axis=1) > 0).all()


def test_subjects_with_equal_matrices_share_propagators_and_get_their_own_values():
    """A dose table whose subjects have the same parameters (one matrix) and different doses:
    they share the propagator cache and block tables in the kernel, and each subject's values
    are still the ones it gets alone, bit for bit (a slot serves only its own kind of
    request)."""
    model = ketasim.load_model("ketamine-iv")
    times = ketasim.time_grid(24.0 * 40, 0.5)
    recs = []
    for s, (amt, dur, t0) in enumerate([(35.0, 2 / 3, 0.0), (20.0, 0.5, 3.0), (35.0, 0.0, 1.0),
                                        (50.0, 1.0, 0.0), (35.0, 2 / 3, 0.0)]):
        for day in (0, 2, 4, 7, 14, 28):
            recs.append({"subject": s + 1, "time_h": 24.0 * day + t0, "amount_mg": amt,
                         "route": "iv", "duration_h": dur})
    d = ketasim.Doses.from_records(recs)
    pop = ketasim.simulate(model, d, times, threads=1).data
    for s in range(5):
        rows = [dict(r, subject=1) for r in recs if r["subject"] == s + 1]
        one = ketasim.simulate(model, ketasim.Doses.from_records(rows), times).data[0]
        np.testing.assert_array_equal(pop[s], one)
    np.testing.assert_array_equal(pop[0], pop[4])       # the same doses: the same values
    assert not np.array_equal(pop[0], pop[3])


def test_subject_ranges_on_threads_are_independent():
    """Threads share subjects in ranges (most not starting at the call's first subject, most
    longer than one): every subject's outputs, schematic response included, equal those of
    the same subject simulated alone, for 1, 2 and 3 threads."""
    model = ketasim.load_model("ketamine-iv")
    doses = ketasim.standard_iv_course(months=1)
    times = ketasim.time_grid(24.0 * 10, 0.25)
    params = {"CL": np.linspace(60.0, 130.0, 23), "V1": np.linspace(90.0, 170.0, 23)}
    ref = ketasim.simulate(model, doses, times, params=params, threads=1)
    for k in (2, 3):
        got = ketasim.simulate(model, doses, times, params=params, threads=k)
        np.testing.assert_array_equal(got.data, ref.data)
    for i in (0, 1, 11, 22):
        one = ketasim.simulate(model, doses, times, params={p: v[i] for p, v in params.items()})
        np.testing.assert_array_equal(one.data[0], ref.data[i])
    assert np.ptp(ref.concentration("plasma").max(axis=1)) > 0      # subjects differ
    # far more threads than cores: capped at the cores, same numbers
    import threading
    engine.close_pools()
    got = ketasim.simulate(model, doses, times, params=params, threads=10_000)
    np.testing.assert_array_equal(got.data, ref.data)
    ours = [t for t in threading.enumerate() if t.name.startswith("ketasim")]
    assert 0 < len(ours) <= max(os.cpu_count() or 1, engine._threads(None))


# ----------------------------------------------------------------------------- 6. expm
def _rel(a, b):
    return np.linalg.norm(a - b, 1) / np.linalg.norm(b, 1)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 12])
@pytest.mark.parametrize("scale", [1e-3, 0.5, 3.0, 20.0])
def test_expm_random_matches_scipy(n, scale):
    rng = np.random.default_rng(n * 100 + int(scale * 10))
    A = rng.normal(size=(n, n)) * scale / np.sqrt(n)
    assert _rel(_kernels.expm(A), scipy.linalg.expm(A)) <= 1e-12


def test_expm_zero_and_identity():
    for n in (1, 4, 9):
        # exact up to one ulp (the Padé solve divides b0·I by b0·I through an LU)
        np.testing.assert_allclose(_kernels.expm(np.zeros((n, n))), np.eye(n), rtol=0,
                                   atol=2.3e-16)
        np.testing.assert_allclose(_kernels.expm(np.eye(n)), np.e * np.eye(n), rtol=1e-15)


@pytest.mark.parametrize("seed", range(8))
def test_half_step_propagator_is_the_one_computed_directly(seed):
    """An exponential's last squaring starts from Φ(h/2): the cache takes it for the h/2 slot
    only when it is, bit for bit, what computing Φ(h/2) itself gives (so no result depends on
    which step came first), and that is the usual case."""
    rng = np.random.default_rng(900 + seed)
    spec = random_spec(rng, rate_lo=0.01, rate_hi=60.0, n_comp=int(rng.integers(2, 7)))
    model = ketasim.Model.from_dict(spec)
    plan = engine.prepare(model, ketasim.Doses.single(10.0, next(iter(model.routes)),
                                                      time_h=0.0, duration_h=1.0))
    K = plan.K[0]
    n = K.shape[0]
    st = _kernels.structure(K, np.arange(n), np.ones(n, np.int64), n)   # every state infused
    used = 0
    for h in (2 / 3, 1.0, 0.37, 5.0, 24.0):
        for g in (True, False):
            ch, cg = np.full(4, -1.0), np.zeros(4, np.int64)
            CP, CG, nxt = np.zeros((4, n, n)), np.zeros((4, n, n)), np.array([1, 0, 0])
            _kernels._fill_slot(K, st, h, g, True, ch, cg, CP, CG, nxt, 0)
            dh, dg = np.full(4, -1.0), np.zeros(4, np.int64)
            DP, DG, dn = np.zeros((4, n, n)), np.zeros((4, n, n)), np.array([1, 0, 0])
            _kernels._fill_slot(K, st, 0.5 * h, g, False, dh, dg, DP, DG, dn, 0)
            assert ch[0] == h and dh[0] == 0.5 * h and dh[1] == -1.0
            if ch[1] == 0.5 * h:
                used += 1
                assert np.array_equal(CP[1], DP[0]) and np.array_equal(CG[1], DG[0])
                np.testing.assert_allclose(CP[1].T @ CP[1].T, CP[0].T, rtol=1e-10,
                                           atol=1e-13 * np.abs(CP[0]).max())
            else:
                assert ch[1] == -1.0
    assert used >= 2


@pytest.mark.parametrize("lam,n", [(-1.0, 2), (-0.3, 4), (-7.0, 3), (0.0, 5), (-60.0, 4)])
def test_expm_defective_jordan_block(lam, n):
    """exp(λI + N) = e^λ Σ_k N^k / k! for the nilpotent shift N (closed form)."""
    N = np.diag(np.ones(n - 1), 1)
    A = lam * np.eye(n) + N
    want = np.zeros((n, n))
    Nk = np.eye(n)
    fact = 1.0
    for k in range(n):
        want += Nk / fact
        Nk = Nk @ N
        fact *= k + 1
    want *= np.exp(lam)
    assert _rel(_kernels.expm(A), want) <= 1e-13
    # a PK-shaped defective matrix (ka == k, 2 compartments): exp(K t) = e^{-kt}[[1,0],[kt,1]]
    k, t = 0.7, 3.3
    K = np.array([[-k, 0.0], [k, -k]])
    np.testing.assert_allclose(_kernels.expm(K * t),
                               np.exp(-k * t) * np.array([[1.0, 0.0], [k * t, 1.0]]),
                               rtol=1e-14, atol=1e-16)


def _pk_matrix(rng, n, lo, hi, closed=False):
    """A random compartmental matrix (non-negative off-diagonal, column sums <= 0)."""
    K = np.zeros((n, n))
    for _ in range(3 * n):
        i, j = rng.integers(n, size=2)
        if i != j:
            k = np.exp(rng.uniform(np.log(lo), np.log(hi)))
            K[j, i] += k
            K[i, i] -= k
    if not closed:
        for i in range(n):
            k = np.exp(rng.uniform(np.log(lo), np.log(hi)))
            K[i, i] -= k
    return K


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("h", [1e-3, 0.25, 24.0])
def test_expm_stiff_compartmental(seed, h):
    rng = np.random.default_rng(seed)
    K = _pk_matrix(rng, int(rng.integers(3, 9)), 1e-4, 1e3)
    E = _kernels.expm(K * h)
    assert _rel(E, scipy.linalg.expm(K * h)) <= 1e-11
    assert E.min() >= -1e-14                   # exp of a Metzler matrix is non-negative


@pytest.mark.parametrize("seed,h", [(0, 100.0), (4, 1000.0), (1, 0.3)])
def test_expm_long_steps_against_multiprecision(seed, h):
    """One step over 100-1000 h with rates up to 1e3 /h (‖K h‖₁ up to ~1e6, ~20 squarings),
    against a 50-digit mpmath exponential. Relative error grows with the squarings (observed
    ≲ 1e-10 at h = 1000, ~5× scipy's) — acceptable, and this pins it."""
    mp = pytest.importorskip("mpmath")
    rng = np.random.default_rng(seed)
    K = _pk_matrix(rng, int(rng.integers(3, 9)), 1e-4, 1e3)
    with mp.workdps(50):
        want = np.array(mp.expm(mp.matrix((K * h).tolist())).tolist(), dtype=float)
    assert _rel(_kernels.expm(K * h), want) <= 1e-12 * max(1.0, h)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("h", [0.01, 0.5, 6.0])
def test_propagator_gamma_closed_form(seed, h):
    """Invertible K: Γ(h) = K⁻¹(Φ − I); Φ = expm(K h)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 8))
    K = _pk_matrix(rng, n, 1e-2, 1e2)
    Phi, Gam = np.zeros((n, n)), np.zeros((n, n))
    _kernels.propagator(K, h, Phi, Gam)
    Phi_ref = scipy.linalg.expm(K * h)
    assert _rel(Phi, Phi_ref) <= 1e-12
    Gam_ref = np.linalg.solve(K, Phi_ref - np.eye(n))
    assert _rel(Gam, Gam_ref) <= 1e-10 * max(1.0, np.linalg.cond(K) * 1e-4)


@pytest.mark.parametrize("seed", range(3))
def test_propagator_gamma_quadrature_singular(seed):
    """Singular K (a closed network with a sink; and K = 0): Γ(h) = ∫₀ʰ expm(K s) ds by
    adaptive quadrature."""
    rng = np.random.default_rng(10 + seed)
    n = 5
    K = _pk_matrix(rng, n, 1e-2, 10.0, closed=True)
    h = 2.5
    Phi, Gam = np.zeros((n, n)), np.zeros((n, n))
    _kernels.propagator(K, h, Phi, Gam)
    Gam_ref, _ = quad_vec(lambda s: scipy.linalg.expm(K * s), 0.0, h, epsabs=1e-14,
                          epsrel=1e-13)
    assert _rel(Gam, Gam_ref) <= 1e-11
    # mass is conserved: columns of Φ sum to 1, of Γ to h
    np.testing.assert_allclose(Phi.sum(axis=0), 1.0, rtol=1e-13)
    np.testing.assert_allclose(Gam.sum(axis=0), h, rtol=1e-13)
    Z = np.zeros((3, 3))
    P3, G3 = np.zeros((3, 3)), np.zeros((3, 3))
    _kernels.propagator(Z, 0.7, P3, G3)
    np.testing.assert_allclose(P3, np.eye(3), rtol=0, atol=2.3e-16)
    np.testing.assert_allclose(G3, 0.7 * np.eye(3), rtol=1e-15)


# ----------------------------------------------------------------------- compiled where
# the kernels that run on the engine's worker threads, each call of Numba's compile (or load
# from the cache) recorded with whether it ran on the main thread
_COMPILED_WHERE = r"""
import threading
import ketasim
from ketasim import _kernels

seen = []
for name in ("grid_range", "metrics_range", "band_add"):
    kernel = getattr(_kernels, name)

    def compile(sig, name=name, real=kernel.compile):
        seen.append((name, threading.current_thread() is threading.main_thread()))
        return real(sig)
    kernel.compile = compile
doses = ketasim.Doses([0.0, 48.0], [35.0, 35.0], ["iv", "iv"], [2 / 3, 2 / 3])
ketasim.population("ketamine-iv", doses, 40, metrics=["cmax"], bands=True, threads=2,
                   progress=False)
ketasim.simulate("ketamine-iv", doses, ketasim.time_grid(96.0, 0.01), threads=2)
print(sorted(set(seen)))
"""


def test_kernels_are_compiled_on_the_calling_thread_not_a_worker():
    """A first run compiles each kernel (or loads it from the cache) on the thread that
    called ketasim, before the engine's worker threads run it: a compilation on a worker
    thread cannot be stopped, and a Ctrl-C during a first ``ketasim population`` had waited
    for it (a minute and more on a loaded machine) after "interrupted (Ctrl-C)"."""
    proc = subprocess.run([sys.executable, "-c", _COMPILED_WHERE], capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = proc.stdout.strip().splitlines()[-1]
    for name in ("grid_range", "metrics_range", "band_add"):
        assert f"('{name}', True)" in seen, seen
    assert "False" not in seen, seen


# ----------------------------------------------------------------------------- 7. no JIT
_NOJIT_SCRIPT = r"""
import json, sys, numpy as np, ketasim
spec = json.loads(sys.argv[1])
d = ketasim.Doses([0.0, 1.3, 4.0], [100.0, 20.0, 50.0], ["oral", "iv", "iv"], [0.0, 0.0, 2.0])
r = ketasim.simulate(ketasim.Model.from_dict(spec), d, ketasim.time_grid(8.0, 0.5),
                     params={"CL": [4.0, 6.5]}, amounts=True)
import numba
print(json.dumps({"jit_disabled": bool(numba.config.DISABLE_JIT), "data": r.data.tolist()}))
"""


def test_no_jit_matches_jit():
    spec = {"parameters": {"V": 20.0, "CL": 5.0, "KA": 1.3, "Q": 3.0, "V2": 50.0, "KE0": 2.0},
            "compartments": {"depot": 0, "central": "V", "periph": "V2"},
            "flows": [{"from": "depot", "to": "central", "k": "KA"},
                      {"from": "central", "to": "out", "cl": "CL"},
                      {"from": "central", "to": "periph", "cl": "Q"},
                      {"from": "periph", "to": "central", "cl": "Q"}],
            "routes": {"oral": {"to": "depot", "f": 0.8, "lag_h": 0.25},
                       "iv": {"to": "central"}},
            "effects": {"ce": {"of": "central", "ke0": "KE0"}}}
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    proc = subprocess.run([sys.executable, "-c", _NOJIT_SCRIPT, json.dumps(spec)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["jit_disabled"] is True
    nojit = np.array(got["data"])
    d = ketasim.Doses([0.0, 1.3, 4.0], [100.0, 20.0, 50.0], ["oral", "iv", "iv"],
                      [0.0, 0.0, 2.0])
    jit = ketasim.simulate(ketasim.Model.from_dict(spec), d, ketasim.time_grid(8.0, 0.5),
                           params={"CL": [4.0, 6.5]}, amounts=True).data
    assert nojit.shape == jit.shape
    peak = np.abs(jit).max(axis=-1, keepdims=True)
    assert np.all(np.abs(nojit - jit) <= 1e-12 * peak)


@pytest.mark.parametrize("seed", range(12))
def test_block_path_equals_step_by_step(seed):
    """On a long uniform grid the kernel writes outputs in blocks (independent dot products
    with tabulated rows, the state advanced once per block); on a grid that is not uniform it
    steps from output to output. Both must give the same curves, with boluses and infusions on
    and between grid points."""
    rng = np.random.default_rng(7000 + seed)
    spec = random_spec(rng, rate_lo=0.01, rate_hi=20.0, n_comp=int(rng.integers(2, 7)))
    doses = random_doses(rng, spec, t_end=48.0, grid_step=1 / 60)
    model = ketasim.Model.from_dict(spec)
    uniform = ketasim.time_grid(48.0, 1 / 60)
    # the second time moved: the grid is not uniform from its start, so there is no block
    # path at all (a grid uneven only at its end keeps its blocks up to there)
    ragged = uniform.copy()
    ragged[1] += 1e-4
    assert engine._nominal_step(ragged)[0] <= 0.0
    a = ketasim.simulate(model, doses, uniform).data[0]
    b = ketasim.simulate(model, doses, ragged).data[0]
    n = engine.prepare(model, doses).K.shape[1]
    rows = a.shape[0]
    h_nom, u_end = engine._nominal_step(uniform)
    assert engine.block_length(rows, n, u_end, h_nom) > 1       # the block path is taken
    assert rows * n * n * _kernels.BLK <= 64 * uniform.size
    keep = np.arange(uniform.size) != 1
    peak = np.maximum(np.abs(b[:, keep]).max(axis=1, keepdims=True), 1e-300)
    err = np.abs(a[:, keep] - b[:, keep]) / peak
    assert err.max() < 1e-11
    assert not np.array_equal(a[:, keep], b[:, keep])     # two computations, not one twice


def _fork_child_simulates(expected):
    m = ketasim.load_model("ketamine-iv")
    d = ketasim.standard_iv_course(months=1)
    got = ketasim.simulate(m, d, ketasim.time_grid(24 * 7, 1.0),
                           params={"CL": np.linspace(80, 120, 20)}, threads=2).data
    os._exit(0 if np.array_equal(got, expected) else 3)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_process_runs_subjects_on_threads_again():
    """The thread pool does not survive a fork: the child starts its own (it would wait for
    its parent's threads forever otherwise)."""
    import multiprocessing

    m = ketasim.load_model("ketamine-iv")
    d = ketasim.standard_iv_course(months=1)
    ref = ketasim.simulate(m, d, ketasim.time_grid(24 * 7, 1.0),
                           params={"CL": np.linspace(80, 120, 20)}, threads=2).data
    proc = multiprocessing.get_context("fork").Process(target=_fork_child_simulates,
                                                       args=(ref,))
    proc.start()
    proc.join(120)
    if proc.is_alive():
        proc.kill()
        proc.join()
        pytest.fail("the forked child did not finish: it waited for threads it does not have")
    assert proc.exitcode == 0


def test_repeated_output_rows_are_copied_bit_for_bit_and_only_when_equal_in_every_subject():
    """An output row with the same functional as an earlier one (ketamine-iv's 's_ketamine' is
    's_central'; two occupancy calibrations can share their weights) is copied on the block
    path: its values are those of the row computed on its own, bit for bit. A row equal to
    another in one subject only is computed."""
    model = ketasim.load_model("ketamine-iv")
    doses = ketasim.resolve_doses("standard-iv", months=1)
    times = ketasim.time_grid(24.0 * 30, 1 / 60)
    plan = engine.prepare(model, doses, outputs=["s_central", "r_central", "s_ketamine",
                                                  "r_ketamine", "occupancy", "occupancy_low"])
    assert list(engine._dup_rows(plan.C, plan.W)) == [-1, -1, 0, 1, -1, 4]
    both = ketasim.simulate(model, doses, times, outputs=["s_central", "s_ketamine",
                                                           "occupancy", "occupancy_low"])
    alone = [ketasim.simulate(model, doses, times, outputs=[nm]).data[0, 0]
             for nm in ("s_ketamine", "occupancy_low")]
    np.testing.assert_array_equal(both.data[0, 1], alone[0])
    np.testing.assert_array_equal(both.data[0, 3], alone[1])
    np.testing.assert_array_equal(both.data[0, 0], both.data[0, 1])
    assert np.ptp(alone[0]) > 0 and np.ptp(alone[1]) > 0
    # equal in the first subject only: not a repeat
    C = np.zeros((2, 3, 4))
    C[:, 0, 0] = C[:, 2, 0] = 1.0
    C[1, 2, 0] = 1.0 + 2.0 ** -52
    C[:, 1, 1] = 2.0
    assert list(engine._dup_rows(C, np.zeros((2, 0, 4)))) == [-1, -1, -1]
    C[1, 2, 0] = 1.0
    assert list(engine._dup_rows(C, np.zeros((2, 0, 4)))) == [-1, -1, 0]
    # -0.0 and 0.0 differ in their bits: not a repeat (the outputs could differ in their sign)
    C[:, 2, 3] = -0.0
    assert list(engine._dup_rows(C, np.zeros((2, 0, 4)))) == [-1, -1, -1]


def test_events_every_subject_shares_come_as_one_row_with_the_same_results():
    """A population whose subjects have the same events gets them as one row (not N copies);
    the kernels read that row for every subject, with results bit for bit those of N copies,
    also for a slice of the subjects. Subjects whose lag differs get a row each."""
    from dataclasses import replace

    spec = {"parameters": {"V": 20.0, "CL": 5.0, "KA": 1.3, "LAG": 0.25},
            "compartments": {"depot": 0, "central": "V"},
            "flows": [{"from": "depot", "to": "central", "k": "KA"},
                      {"from": "central", "to": "out", "cl": "CL"}],
            "routes": {"oral": {"to": "depot", "lag_h": "LAG"}, "iv": {"to": "central"}}}
    model = ketasim.Model.from_dict(spec)
    doses = ketasim.Doses([0.0, 3.3, 7.0], [100.0, 20.0, 50.0], ["oral", "iv", "oral"],
                          [0.0, 0.5, 0.0])
    times = ketasim.time_grid(24.0, 0.1)
    cl = np.array([3.0, 4.0, 5.0, 6.5, 8.0])
    plan = engine.prepare(model, doses, {"CL": cl})
    assert all(a.shape[0] == 1 for a in plan.events)
    copies = tuple(np.ascontiguousarray(np.repeat(a, cl.size, axis=0)) for a in plan.events)
    for a in copies:
        a.setflags(write=False)
    shared = engine.run(plan, times)
    np.testing.assert_array_equal(shared, engine.run(replace(plan, events=copies), times))
    part = plan.subjects([1, 3])
    assert all(a.shape[0] == 1 for a in part.events)
    np.testing.assert_array_equal(engine.run(part, times), shared[[1, 3]])
    assert np.ptp(shared[:, 0, -1]) > 0                       # the subjects differ
    lagged = engine.prepare(model, doses, {"LAG": np.array([0.0, 0.25, 1.0])})
    assert all(a.shape[0] == 3 for a in lagged.events[:5])
    out = engine.run(lagged, times)
    first = times.searchsorted(0.25)
    assert out[0, 0, 1] > 0 and out[1, 0, 1] == 0 and out[2, 0, first + 3] == 0


def test_a_result_keeps_its_own_time_grid():
    """Result.times was the caller's array: adding 100 to it after the call relabelled the
    values at 0-2 h as 100-102 h. It is now the result's own, read-only."""
    T = np.linspace(0.0, 10.0, 11)
    r = ketasim.simulate("ketamine-iv", "standard-iv", T, outputs=["plasma"])
    before = r.concentration("plasma").copy()
    T += 100.0
    assert list(r.times[:3]) == [0.0, 1.0, 2.0] and not r.times.flags.writeable
    assert r.to_dict()["time_h"][2] == 2.0
    np.testing.assert_array_equal(r.concentration("plasma"), before)


def test_a_result_is_read_by_name_and_compared_by_identity():
    m = ketasim.load_model("ketamine-iv")
    d = ketasim.standard_iv_course(months=1)
    t = ketasim.time_grid(24, 1.0)
    r1, r2 = ketasim.simulate(m, d, t), ketasim.simulate(m, d, t)
    np.testing.assert_array_equal(r1["plasma"], r1.output("plasma"))
    np.testing.assert_array_equal(r1["occupancy"], r1.occupancy)
    with pytest.raises(ketasim.KetasimInputError, match="plasma"):
        r1["plasmaa"]
    # arrays inside: equal only to itself (numpy's "truth value is ambiguous" had been raised)
    assert r1 == r1 and r1 != r2 and len({r1: 1, r2: 2}) == 2
    np.testing.assert_array_equal(r1.data, r2.data)
    p = ketasim.population("ketamine-iv", d, 2, 0, progress=False, metrics=("cmax",))
    assert p == p and hash(p) == hash(p)
