"""ketasim against textbook closed forms (Gibaldi & Perrier, *Pharmacokinetics*, 2nd ed.).

Every comparison is ``max |ketasim - formula| <= TOL × peak`` over a grid that includes dose,
lag and infusion-stop times and points between grid steps. The engine is exact between events,
so the expected error is rounding (observed <= 2e-13); TOL leaves a margin of about 10.
Degenerate and nearly degenerate rate pairs use the cancellation-free form
``(e^{-at} - e^{-bt}) / (b - a) = e^{-at} · (-expm1(-(b - a) t)) / (b - a)``.
"""

from __future__ import annotations

import numpy as np
import pytest

import ketasim

from conftest import one_cpt_spec

# np.trapz before NumPy 2.0 (the same rule; np.trapezoid is new in 2.0)
_trapezoid = getattr(np, "trapezoid", None) or np.trapz

TOL = 2e-12


def _assert_close(got, want, tol=TOL):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    peak = np.abs(want).max()
    assert peak > 0
    err = np.max(np.abs(got - want)) / peak
    assert err <= tol, f"max error {err:.3e} × peak (tolerance {tol:g})"


def _bateman(a, b, t):
    """(e^{-a t} - e^{-b t}) / (b - a) for t >= 0 (→ t e^{-a t} as b → a), stable."""
    t = np.asarray(t, float)
    d = b - a
    if d == 0.0:
        return t * np.exp(-a * t)
    return np.exp(-a * t) * (-np.expm1(-d * t)) / d


def _one_cpt(V, CL, KA=1.0, F=1.0, LAG=0.0, KE0=None):
    return ketasim.Model.from_dict(one_cpt_spec(V=V, CL=CL, KA=KA, F=F, LAG=LAG, KE0=KE0))


def _grid(until, step, *extra):
    return np.unique(np.r_[ketasim.time_grid(until, step), np.asarray(extra, float)])


# ------------------------------------------------------------------------------ IV bolus
@pytest.mark.parametrize("V,CL", [(20.0, 5.0), (1.0, 0.001), (300.0, 90.0), (5.0, 250.0)])
def test_one_cpt_iv_bolus(V, CL):
    k = CL / V
    D, t0 = 100.0, 1.7
    times = _grid(48.0, 0.25, t0, t0 + 1e-9)
    res = ketasim.simulate(_one_cpt(V, CL), ketasim.Doses.single(D, "iv", time_h=t0), times,
                           amounts=True)
    tau = np.clip(times - t0, 0.0, None)
    want = np.where(times >= t0, D / V * np.exp(-k * tau), 0.0)
    _assert_close(res.concentration("central", "mg/L"), want)
    _assert_close(res.concentration("central"), 1000.0 * want)         # ng/mL
    _assert_close(res.amount("eliminated"), np.where(times >= t0, D * -np.expm1(-k * tau), 0.0))


# ------------------------------------------------------------------------------ infusion
@pytest.mark.parametrize("V,CL,T", [(20.0, 5.0, 0.75), (50.0, 0.5, 6.1), (8.0, 40.0, 2.0)])
def test_one_cpt_infusion_during_and_after(V, CL, T):
    k = CL / V
    D, t0 = 35.0, 0.4
    R = D / T
    times = _grid(24.0, 0.1, t0 + T, t0 + T / 3)
    res = ketasim.simulate(_one_cpt(V, CL), ketasim.Doses.single(D, "iv", time_h=t0,
                                                                  duration_h=T), times)
    s = times - t0
    during = R / CL * -np.expm1(-k * np.clip(s, 0.0, T))
    want = np.where(s <= 0, 0.0,
                    np.where(s <= T, during, R / CL * -np.expm1(-k * T) * np.exp(-k * (s - T))))
    c = res.concentration("central", "mg/L")
    _assert_close(c, want)
    # the peak is at the end of the infusion
    assert times[np.argmax(c)] == pytest.approx(t0 + T)


def test_one_cpt_long_infusion_reaches_steady_state():
    V, CL, R = 30.0, 6.0, 12.0        # mg/h; Css = R / CL, k = 0.2 /h
    res = ketasim.simulate(_one_cpt(V, CL), ketasim.Doses.single(R * 200.0, "iv",
                                                                  duration_h=200.0),
                           [0.0, 50.0, 100.0, 199.0])
    c = res.concentration("central", "mg/L")
    assert c[0] == 0.0
    np.testing.assert_allclose(c[1:], R / CL * -np.expm1(-0.2 * np.array([50.0, 100.0, 199.0])),
                               rtol=1e-13)


# ------------------------------------------------------------------------------ first-order abs.
@pytest.mark.parametrize("KA,V,CL,F,LAG", [(1.3, 20.0, 5.0, 0.8, 0.0), (0.05, 20.0, 5.0, 1.0, 0.5),
                                           (40.0, 70.0, 10.0, 0.35, 0.33),
                                           (0.7, 10.0, 1.0, 0.6, 1.0)])
def test_one_cpt_first_order_absorption(KA, V, CL, F, LAG):
    k = CL / V
    D = 200.0
    times = _grid(72.0, 0.2, LAG, LAG + 0.01)
    res = ketasim.simulate(_one_cpt(V, CL, KA, F, LAG), ketasim.Doses.single(D, "oral"), times,
                           amounts=True)
    tau = np.clip(times - LAG, 0.0, None)
    want = F * D * KA / V * _bateman(k, KA, tau)
    _assert_close(res.concentration("central", "mg/L"), want)
    _assert_close(res.amount("depot"), F * D * np.exp(-KA * tau) * (times >= LAG))
    # tmax = ln(KA/k)/(KA-k) after the lag
    fine = LAG + np.log(KA / k) / (KA - k) + np.linspace(-0.05, 0.05, 201)
    c = ketasim.simulate(_one_cpt(V, CL, KA, F, LAG), ketasim.Doses.single(D, "oral"),
                         fine).concentration("central", "mg/L")
    assert abs(fine[np.argmax(c)] - (LAG + np.log(KA / k) / (KA - k))) <= 5e-4


@pytest.mark.parametrize("k", [0.05, 0.25, 1.0, 8.0])
def test_absorption_degenerate_ka_equals_k(k):
    """KA == k (defective K): C = F·D·k·t·e^{-kt} / V exactly."""
    V, F, D = 20.0, 0.9, 100.0
    times = _grid(96.0 / max(k, 1.0), 0.05)
    res = ketasim.simulate(_one_cpt(V, k * V, KA=k, F=F), ketasim.Doses.single(D, "oral"),
                           times)
    want = F * D * k * times * np.exp(-k * times) / V
    _assert_close(res.concentration("central", "mg/L"), want)
    # peak at t = 1/k, value F·D/(e·V)
    assert res.concentration("central", "mg/L").max() <= F * D / (np.e * V) * (1 + 1e-12)


@pytest.mark.parametrize("rel", [1e-12, 1e-9, 1e-6, 1e-3, -1e-7])
def test_absorption_nearly_degenerate(rel):
    """KA = k(1 + rel): no cancellation blow-up near the degenerate case."""
    k, V, D = 0.3, 15.0, 80.0
    KA = k * (1.0 + rel)
    times = _grid(48.0, 0.1)
    c = ketasim.simulate(_one_cpt(V, k * V, KA=KA), ketasim.Doses.single(D, "oral"),
                         times).concentration("central", "mg/L")
    _assert_close(c, D * KA / V * _bateman(k, KA, times))


# ------------------------------------------------------------------------------ two compartments
def _biexponential(V1, CL, Q, V2):
    k10, k12, k21 = CL / V1, Q / V1, Q / V2
    s = k10 + k12 + k21
    root = np.sqrt(s * s - 4.0 * k10 * k21)
    alpha = 0.5 * (s + root)
    beta = k10 * k21 / alpha           # = (s - root) / 2 without cancellation
    A = (alpha - k21) / (alpha - beta) / V1
    B = (k21 - beta) / (alpha - beta) / V1
    return alpha, beta, A, B, k12


@pytest.mark.parametrize("V1,CL,Q,V2,use_k", [(20.0, 5.0, 8.0, 60.0, False),
                                              (7.0, 30.0, 2.0, 200.0, True),
                                              (10.0, 0.1, 50.0, 15.0, False),
                                              (3.0, 900.0, 0.3, 500.0, True)])
def test_two_cpt_iv_bolus_biexponential(V1, CL, Q, V2, use_k):
    alpha, beta, A, B, k12 = _biexponential(V1, CL, Q, V2)
    if use_k:   # the same network written with rate constants
        flows = [{"from": "central", "to": "out", "k": CL / V1},
                 {"from": "central", "to": "periph", "k": Q / V1},
                 {"from": "periph", "to": "central", "k": Q / V2}]
    else:
        flows = [{"from": "central", "to": "out", "cl": "CL"},
                 {"from": "central", "to": "periph", "cl": "Q"},
                 {"from": "periph", "to": "central", "cl": "Q"}]
    m = ketasim.Model.from_dict({"parameters": {"V1": V1, "CL": CL, "Q": Q, "V2": V2},
                                 "compartments": {"central": "V1", "periph": "V2"},
                                 "flows": flows, "routes": {"iv": {"to": "central"}}})
    D = 50.0
    times = _grid(72.0, 0.1, 0.013, 0.0371)
    res = ketasim.simulate(m, ketasim.Doses.single(D, "iv"), times, amounts=True)
    want = D * (A * np.exp(-alpha * times) + B * np.exp(-beta * times))
    _assert_close(res.concentration("central", "mg/L"), want)
    # the peripheral amount can be 3000× smaller than the dose (last case): rounding of the
    # central amount leaks into it at ~eps × D, hence the looser bound
    _assert_close(res.amount("periph"), D * k12 * _bateman(beta, alpha, times), tol=1e-10)
    # the sum of the macro-constants is the initial concentration
    assert (A + B) * D == pytest.approx(D / V1, rel=1e-14)


# ------------------------------------------------------------------------------ effect site
@pytest.mark.parametrize("KE0", [0.1, 0.7, 0.25, 12.0])
def test_effect_site_of_one_cpt_bolus(KE0):
    """Ce = D/V · ke0/(ke0 − k) · (e^{-kt} − e^{-ke0 t}); ke0 == k (0.25) gives D/V·k·t·e^{-kt}."""
    V, CL, D = 20.0, 5.0, 100.0
    k = CL / V
    times = _grid(48.0, 0.1)
    res = ketasim.simulate(_one_cpt(V, CL, KE0=KE0), ketasim.Doses.single(D, "iv"), times)
    _assert_close(res.concentration("ce", "mg/L"), D / V * KE0 * _bateman(k, KE0, times))
    # the effect site lags: it starts at 0 and crosses the plasma curve at its own peak
    # (dCe/dt = 0 there), so on a 0.1-h grid |Ce − Cp| <= k·Cp·0.05 h at the grid maximum
    ce = res.concentration("ce", "mg/L")
    cp = res.concentration("central", "mg/L")
    assert ce[0] == 0.0 and cp[0] == D / V
    i = int(np.argmax(ce))
    assert abs(ce[i] - cp[i]) <= 0.06 * k * cp[i]


# ------------------------------------------------------------------------------ metabolite/yield
def test_metabolite_with_yield():
    """Parent (bolus, k = kf + kr) → metabolite with yield y (MW ratio), eliminated at km:
    Am(t) = y·D·kf·(e^{-kt} − e^{-km t})/(km − k)."""
    V, Vm, kf, kr, km, y, D = 25.0, 40.0, 0.3, 0.1, 0.9, 0.93, 60.0
    m = ketasim.Model.from_dict({
        "parameters": {"V": V, "VM": Vm, "KF": kf, "KR": kr, "KM": km, "Y": y},
        "compartments": {"central": "V", "met": "VM"},
        "flows": [{"from": "central", "to": "met", "k": "KF", "yield": "Y"},
                  {"from": "central", "to": "out", "k": "KR"},
                  {"from": "met", "to": "out", "cl": "KM * VM"}],
        "routes": {"iv": {"to": "central"}},
        "observe": {"total": ["central", "met"]}})
    times = _grid(36.0, 0.1)
    res = ketasim.simulate(m, ketasim.Doses.single(D, "iv"), times)
    k = kf + kr
    cm = y * D * kf * _bateman(k, km, times) / Vm
    cp = D / V * np.exp(-k * times)
    _assert_close(res.concentration("met", "mg/L"), cm)
    _assert_close(res.concentration("total", "mg/L"), cp + cm)


# ------------------------------------------------------------------------------ accumulation
@pytest.mark.parametrize("V,CL,tau", [(20.0, 5.0, 8.0), (40.0, 2.0, 12.0), (10.0, 10.0, 24.0),
                                      (50.0, 1.0, 6.0)])
def test_accumulation_trough_and_steady_state(V, CL, tau):
    """n boluses every τ: trough just before dose n+1 is
    D/V·e^{-kτ}·(1 − e^{-nkτ})/(1 − e^{-kτ}); the steady-state trough over the single-dose
    value at τ is the accumulation ratio 1/(1 − e^{-kτ})."""
    k, D = CL / V, 100.0
    r = np.exp(-k * tau)
    n_ss = int(np.ceil(40.0 / (k * tau))) + 1          # e^{-n k τ} < 1e-17
    for n in (1, 2, 5, n_ss):
        d = ketasim.Doses.single(D, "iv", addl=n - 1, ii_h=tau)
        times = np.array([tau, (n - 1) * tau, n * tau - 0.5 * tau, n * tau])
        times = np.unique(times)
        c = ketasim.simulate(_one_cpt(V, CL), d, times).concentration("central", "mg/L")
        trough = D / V * r * (1.0 - r ** n) / (1.0 - r)
        assert c[-1] == pytest.approx(trough, rel=1e-12)
    ratio = c[-1] / (D / V * r)
    assert ratio == pytest.approx(1.0 / (1.0 - r), rel=1e-12)


def test_oral_steady_state_profile():
    """Within a dosing interval at steady state (first-order absorption):
    C(t) = F·D·ka/(V(ka−k))·[e^{-kt}/(1−e^{-kτ}) − e^{-ka t}/(1−e^{-ka τ})]."""
    V, CL, KA, F, tau, D = 30.0, 6.0, 0.9, 0.7, 12.0, 150.0
    k = CL / V
    n = 40                                                 # e^{-k τ n} ~ 1e-42
    t_in = np.linspace(0.0, tau, 49)[:-1]
    times = (n - 1) * tau + t_in
    c = ketasim.simulate(_one_cpt(V, CL, KA, F), ketasim.Doses.single(D, "oral", addl=n - 1,
                                                                      ii_h=tau),
                         times).concentration("central", "mg/L")
    want = F * D * KA / (V * (KA - k)) * (np.exp(-k * t_in) / -np.expm1(-k * tau)
                                          - np.exp(-KA * t_in) / -np.expm1(-KA * tau))
    _assert_close(c, want)
    # average steady-state concentration = F·D/(CL·τ) (trapezoid on a fine grid)
    fine = (n - 1) * tau + np.linspace(0.0, tau, 4801)
    cf = ketasim.simulate(_one_cpt(V, CL, KA, F), ketasim.Doses.single(D, "oral", addl=n,
                                                                       ii_h=tau),
                          fine).concentration("central", "mg/L")
    cf[-1] = cf[0]                                          # the next dose is applied at τ
    assert _trapezoid(cf, fine) / tau == pytest.approx(F * D / (CL * tau), rel=1e-6)


def test_small_matrix_products_are_the_plain_loops_bit_for_bit():
    """_matmul keeps a row of an up-to-8x8 product in registers: the same sums in the same
    order as the plain loop (which skips A's zeros), so the same bits, zeros and signs
    included; larger matrices take the loop itself."""
    from ketasim import _kernels

    rng = np.random.default_rng(5)
    for trial in range(3000):
        n = int(rng.integers(1, 11))
        A = rng.standard_normal((n, n)) * rng.choice([1e-3, 1.0, 1e3], (n, n))
        A[rng.random((n, n)) < 0.4] = 0.0
        B = rng.standard_normal((n, n)) * (-1.0 if trial % 3 == 0 else 1.0)
        B[rng.random((n, n)) < 0.3] = 0.0
        fast = np.empty((n, n))
        loop = np.empty((n, n))
        _kernels._matmul(A, B, fast)
        _kernels._matmul_loop(A, B, loop)
        assert fast.tobytes() == loop.tobytes(), (n, trial)
        np.testing.assert_allclose(fast, A @ B, rtol=1e-12, atol=1e-9 * np.abs(A).max())
