"""Populations, sweeps and variability: reproducible draws, chunk invariance, references.

References are independent of the chunked machinery: a direct call of
``engine.session_metrics`` with the same per-subject parameters, numpy quantiles of all curves
from ``simulate``, closed-form moments of the log-normal, dose linearity of the PK metrics.
Courses are one month long and populations small to keep the suite fast.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from scipy.special import ndtri

import ketasim
from ketasim.cli import main
from ketasim.courses import resolve_doses
from ketasim.engine import session_metrics
from ketasim.errors import KetasimInputError
from ketasim.population import (
    BAND_BINS,
    BAND_RANGE,
    DEFAULT_METRICS,
    _bin_index,
    _quantiles_from_counts,
    parse_vary,
    population,
    sweep,
)
from ketasim.variability import draw, draw_eta, parse_variability

from conftest import ONE_CPT_TOML

METRICS = ("cmax", "auc", "trough", "tmax", "time_above_occ_0.3")
ONE_MONTH = resolve_doses("standard-iv", months=1)
ONE_MONTH_HORIZON = ketasim.engine.default_horizon_h(ONE_MONTH)



def _sweep_stub(varied, units, a, b, z):
    """A sweep result as plot_heatmap reads it: two varied names, units, and a grid."""
    from types import SimpleNamespace

    return SimpleNamespace(varied=varied, units=units, grid=lambda metric: (a, b, z))


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    both_nan = np.isnan(a) & np.isnan(b)
    np.testing.assert_allclose(a[~both_nan], b[~both_nan], rtol=1e-9, atol=0)


# ---------------------------------------------------------------------- variability
def _var_model(block=None, **kw):
    spec = {"parameters": {"CL": 10.0, "V": 50.0, "KA": 1.0},
            "compartments": {"central": "V"},
            "flows": [{"from": "central", "to": "out", "cl": "CL"}],
            "routes": {"iv": {"to": "central"}},
            "variability": {"cv_pct": {"CL": 30.0}, "omega2": {"V": 0.04}, **kw}}
    if block:
        spec["variability"]["block"] = block
    return ketasim.Model.from_dict(spec)


def test_cv_and_omega2_give_the_lognormal_moments():
    m = _var_model()
    assert m.variability.names == ("CL", "V")
    assert m.variability.omega[0, 0] == pytest.approx(math.log(1 + 0.3 ** 2), rel=1e-12)
    assert m.variability.cv_pct["CL"] == pytest.approx(30.0, rel=1e-12)
    d = draw(m, 200_000, seed=11)
    # log-normal: E[P] = P exp(w2/2), CV = sqrt(exp(w2)-1); 200k draws: SE of the CV ~ 0.2 %
    for name, typ, w2 in (("CL", 10.0, math.log(1.09)), ("V", 50.0, 0.04)):
        assert np.mean(d[name]) == pytest.approx(typ * math.exp(w2 / 2), rel=5e-3)
        assert np.std(d[name]) / np.mean(d[name]) == pytest.approx(math.sqrt(math.expm1(w2)),
                                                                    rel=1.5e-2)
    assert abs(np.corrcoef(np.log(d["CL"]), np.log(d["V"]))[0, 1]) < 0.01


def test_correlation_block_and_full_omega_block_agree():
    a = _var_model(block=[{"names": ["CL", "V"], "correlation": [[1, 0.6], [0.6, 1]]}])
    cov = 0.6 * math.sqrt(math.log(1.09) * 0.04)
    b = ketasim.Model.from_dict({
        "parameters": {"CL": 10.0, "V": 50.0}, "compartments": {"central": "V"},
        "flows": [{"from": "central", "to": "out", "cl": "CL"}],
        "routes": {"iv": {"to": "central"}},
        "variability": {"block": [{"names": ["CL", "V"], "omega": [
            [math.log(1.09), cov], [cov, 0.04]]}]}})
    np.testing.assert_allclose(a.variability.omega, b.variability.omega, rtol=1e-12)
    eta = draw_eta(a, 100_000, seed=5)
    r = np.corrcoef(eta.T)[0, 1]
    assert r == pytest.approx(0.6, abs=0.01)          # SE of r ~ 0.002


def test_draws_depend_only_on_seed_and_subject_index():
    m = ketasim.load_model("esketamine-nasal")          # 10 parameters: 3 Philox blocks each
    whole = draw(m, 40, seed=123)
    parts = [draw(m, b - a, seed=123, start=a) for a, b in ((0, 1), (1, 17), (17, 18), (18, 40))]
    for k in whole:
        assert np.array_equal(whole[k], np.concatenate([p[k] for p in parts]))
    # the definition, written out: subject i uses Philox blocks i*c .. i*c+c-1 of key = seed
    k = len(m.variability.names)
    c = -(-k // 4)
    for i in (0, 7, 39):
        raw = np.random.Philox(key=123, counter=i * c).random_raw(4 * c)[:k]
        z = ndtri(((raw >> np.uint64(11)).astype(float) + 0.5) / 2.0 ** 53)
        eta = m.variability.chol @ z
        for j, name in enumerate(m.variability.names):
            assert whole[name][i] == pytest.approx(m.parameters[name] * math.exp(eta[j]),
                                                   rel=1e-14)
    other = draw(m, 40, seed=124)
    assert not np.any(other["V1"] == whole["V1"])


@pytest.mark.parametrize("section, fragment", [
    ({"cv_pct": {"CLX": 30}}, "unknown parameter 'CLX'"),
    ({"cv_pct": {"CL": -1}}, "cv_pct.CL"),
    ({"cv_pct": {"CL": 30}, "omega2": {"CL": 0.1}}, "both"),
    ({"cv_pct": {"CL": 30, "V": 30}, "block": [{"names": ["CL", "V"],
                                                 "correlation": [[1, 1.5], [1.5, 1]]}]},
     "[-1, 1]"),
    ({"cv_pct": {"CL": 30, "V": 30}, "block": [{"names": ["CL", "V"],
                                                 "correlation": [[1, 1.0], [1.0, 1]]}]},
     "positive definite"),
    ({"cv_pct": {"CL": 30}, "block": [{"names": ["CL", "V"],
                                       "correlation": [[1, 0.5], [0.5, 1]]}]}, "no variance"),
    ({"covariates": {"age": "CL"}}, "unknown column 'age'"),
    ({"cv": {"CL": 30}}, "unknown key 'cv'"),
])
def test_bad_variability_sections_name_the_field(section, fragment):
    with pytest.raises(KetasimInputError) as e:
        parse_variability(section, {"CL": 1.0, "V": 1.0}, "m.toml")
    msg = str(e.value)
    assert fragment in msg and "[variability]" in msg and "\n" not in msg


def test_presets_carry_cited_variability():
    for name in ketasim.list_presets():
        v = ketasim.load_model(name).variability
        assert v and v.source
    nasal = ketasim.load_model("esketamine-nasal").variability
    assert nasal.cv_pct["V1"] == pytest.approx(27.5, rel=1e-9)     # Perez-Ruixo 2021, Table 3
    assert nasal.covariates == {"age_y": "AGE"}
    assert ketasim.load_model("ketamine-iv").variability.cv_pct == pytest.approx({"CL": 13.0})


# ---------------------------------------------------------------------- population
def test_population_matches_direct_session_metrics_whatever_the_chunking():
    n, seed = 9, 42
    ref_params = draw("ketamine-iv", n, seed)
    ref = session_metrics("ketamine-iv", ONE_MONTH, params=ref_params, weight_kg=np.full(n, 70.0),
                          metrics=METRICS)
    runs = [population("ketamine-iv", ONE_MONTH, n, seed, metrics=METRICS, chunk_size=cs,
                       threads=th, progress=False)
            for cs, th in ((1, 1), (4, 2), (9, None))]
    for r in runs:
        assert list(r.columns)[:2] == ["subject", "param_CL"]
        _same(r["param_CL"], ref_params["CL"])
        for k, v in ref.items():
            if k != "session_start_h":
                _same(r[k], v)
        np.testing.assert_array_equal(r.session_start_h, ref["session_start_h"])
    assert r.units["cmax_s2"] == "ng/mL" and r.units["time_above_occ_0.3"] == "h"
    df = runs[0].to_dataframe()
    assert df.shape[0] == n and "cmax_s8" in df.columns


def test_a_threshold_spelt_another_way_reads_the_same_column():
    # asked for in two spellings, a threshold metric is computed once (under the first); the
    # second spelling, per session and as a sweep's summary, still reads that column
    r = population("ketamine-iv", ONE_MONTH, 3, 5, progress=False,
                   metrics=("time_above_occ_0.1", "time_above_occ_0.10", "cmax"))
    ref = session_metrics("ketamine-iv", ONE_MONTH, params=draw("ketamine-iv", 3, 5),
                          weight_kg=np.full(3, 70.0), metrics=("time_above_occ_0.10",))
    assert "time_above_occ_0.10" not in r.columns
    _same(r["time_above_occ_0.10"], ref["time_above_occ_0.10"])
    _same(r["time_above_occ_.1_s2"], ref["time_above_occ_0.10_s2"])
    assert r["time_above_occ_0.100"].max() > 0
    s = sweep("ketamine-iv", ONE_MONTH, {"CL": [80.0, 100.0]}, n=3, seed=5, progress=False,
              metrics=("time_above_conc_100",))
    _same(s["time_above_conc_1e2_p50"], s["time_above_conc_100_p50"])
    for wrong in ("time_above_occ_0.2", "time_above_occ_x", "cmax_s99"):
        with pytest.raises(KetasimInputError, match="no column"):
            r[wrong]


def test_dose_tables_with_subjects(tmp_path):
    """A dose table of one subject (a subject column with one ID) is that table for every
    virtual subject; one of several subjects is refused, naming the file and the way out."""
    rows = "subject,time_h,amount_mg,route,duration_h\n5,0,35,iv,0.6667\n5,48,35,iv,0.6667\n"
    one = tmp_path / "one.csv"
    one.write_text(rows)
    plain = ketasim.Doses([0.0, 48.0], [35.0, 35.0], ["iv"] * 2, [0.6667] * 2)
    a = population("ketamine-iv", ketasim.read_doses(one), 4, 3, metrics=("cmax",),
                   progress=False)
    b = population("ketamine-iv", plain, 4, 3, metrics=("cmax",), progress=False)
    _same(a["cmax_s2"], b["cmax_s2"])
    two = tmp_path / "two.csv"
    two.write_text(rows + "6,0,40,iv,0.6667\n")
    for call in (lambda d: population("ketamine-iv", d, 4, 3, progress=False),
                 lambda d: sweep("ketamine-iv", d, {"CL": [80.0, 90.0]}, progress=False)):
        with pytest.raises(KetasimInputError, match=r"two\.csv has a subject column \(2 "
                           r"subjects\).*ketasim simulate"):
            call(ketasim.read_doses(two))


def test_subject_rows_do_not_depend_on_population_size():
    a = population("esketamine-iv", ONE_MONTH, 3, 7, metrics=("cmax",), progress=False)
    b = population("esketamine-iv", ONE_MONTH, 6, 7, metrics=("cmax",), chunk_size=2,
                   progress=False)
    _same(a["cmax"], b["cmax"][:3])


def test_bands_agree_with_quantiles_of_all_curves():
    n, seed = 40, 3
    times = np.linspace(0.0, 6.0, 25)
    doses = ketasim.Doses.single(56.0, "intranasal")
    r = population("esketamine-nasal", doses, n, seed, metrics=("cmax",), bands=times,
                   band_outputs=("plasma", "occupancy"), chunk_size=7, progress=False)
    curves = ketasim.simulate("esketamine-nasal", doses, times,
                              params=draw("esketamine-nasal", n, seed), weight_kg=np.full(n, 70.))
    width = 10 ** ((np.log10(BAND_RANGE[1]) - np.log10(BAND_RANGE[0])) / (BAND_BINS - 2))
    for name, scale in (("plasma", 1000.0), ("occupancy", 1.0)):
        y = np.sort(curves.data[:, curves.names.index(name), :] * scale, axis=0)
        got = r.bands.get(name)
        for key, q in (("p05", 0.05), ("p50", 0.5), ("p95", 0.95)):
            k = q * n                       # between order statistics ceil(k) - 1 and ceil(k)
            lo = y[max(math.ceil(k) - 1, 0)] / width
            hi = y[min(math.ceil(k), n - 1)] * width
            v = got[key][1:]                # t = 0: every value is 0
            assert np.all((v >= lo[1:] * (1 - 1e-12)) & (v <= hi[1:] * (1 + 1e-12))), (name, key)
        assert np.all(got["p05"] <= got["p50"]) and np.all(got["p50"] <= got["p95"])


@pytest.mark.parametrize("n", [2, 4, 5, 20])
def test_bands_are_numpys_quantiles_of_the_curves_for_few_subjects(n):
    """The bands are the quantile the summary and a sweep's _p05/_p50/_p95 use (numpy's
    default, linear between order statistics), to one bin: with 4 subjects the median band had
    been the second smallest curve (17 % below the median of the 4 curves half an hour after a
    nasal dose), and with 20 the 5 % band the smallest (11 % low)."""
    times = np.array([0.5, 1.0, 3.0])
    doses = ketasim.Doses.single(56.0, "intranasal")
    r = population("esketamine-nasal", doses, n, 1, metrics=("cmax",), bands=times,
                   band_outputs=("plasma", "occupancy"), chunk_size=3, progress=False)
    curves = ketasim.simulate("esketamine-nasal", doses, times,
                              params=draw("esketamine-nasal", n, 1), weight_kg=np.full(n, 70.))
    width = 10 ** ((np.log10(BAND_RANGE[1]) - np.log10(BAND_RANGE[0])) / (BAND_BINS - 2))
    for name, scale in (("plasma", 1000.0), ("occupancy", 1.0)):
        y = curves.data[:, curves.names.index(name), :] * scale
        got = r.bands.get(name)
        for key, q in (("p05", 5.0), ("p50", 50.0), ("p95", 95.0)):
            ref = np.percentile(y, q, axis=0)
            assert np.all(np.abs(got[key] / ref - 1.0) <= width - 1.0), (name, key)


def test_a_band_between_a_value_below_the_bins_and_one_in_them_is_numpys_quantile():
    """The bins start at 1e-4: a quantile between a value below that and one above it takes
    the lower one exactly (the largest value below the bins), and a quantile below 1e-4 is 0.
    Two subjects at 9e-5 and 1.2e-4 ng/mL had a median band of 6e-5 (the value below the bins
    read as 0: 43 % low) instead of 1.05e-4, a 95 % band of 1.14e-4 instead of 1.185e-4, and a
    5 % band of 6e-6 where the quantile, 9.15e-5, is below the bins (reported as 0)."""
    m = ketasim.Model.from_dict({
        "parameters": {"CL": 10.0, "V": 50.0}, "compartments": {"central": "V"},
        "flows": [{"from": "central", "to": "out", "cl": "CL"}],
        "routes": {"iv": {"to": "central"}}, "observe": {"plasma": "central"},
        "weight": {"reference_kg": 70.0, "allometric": {"CL": 1.0, "V": 1.0}}})
    dose_mg = 1e-6                      # just after it: 1e-6 mg / V L = 1e-3 / V ng/mL
    conc = np.array([9e-5, 1.2e-4])     # ng/mL, one either side of the bins' 1e-4
    wt = 1e-3 / conc / 50.0 * 70.0      # V = 50 (WT / 70) L
    times = np.array([0.0, 0.5])
    r = population(m, ketasim.Doses.single(dose_mg, "iv"), 2, 1, metrics=("cmax",),
                   bands=times, band_outputs=("plasma",), weight_kg=wt, variability=False,
                   progress=False)
    curves = ketasim.simulate(m, ketasim.Doses.single(dose_mg, "iv"), times, weight_kg=wt)
    y = curves.concentration("plasma")
    np.testing.assert_allclose(y[:, 0], conc, rtol=1e-12)
    width = 10 ** ((np.log10(BAND_RANGE[1]) - np.log10(BAND_RANGE[0])) / (BAND_BINS - 2))
    got = r.bands.get("plasma")
    for key, q in (("p05", 5.0), ("p50", 50.0), ("p95", 95.0)):
        ref = np.percentile(y, q, axis=0)
        for i in range(times.size):
            if ref[i] < BAND_RANGE[0]:
                assert got[key][i] == 0.0, (key, i)
            else:
                assert abs(got[key][i] / ref[i] - 1.0) <= width - 1.0, (key, i, got[key][i])
    assert got["p05"][0] == 0.0 and got["p50"][0] == pytest.approx(1.05e-4, rel=0.0051)


def test_glutamate_bands_keep_its_rise_and_stay_within_the_values():
    """Glutamate is binned as its rise above its baseline of 1: at the baseline (before the
    dose, every subject at exactly 1) the bands are exactly 1, and during a small surge they
    read the rise to 0.51 % of itself (they had read it from bins 0.51 % of the whole signal
    wide, a rise of 0.6 % off by more than half, and p05 below the baseline at t = 0). Every
    band stays within the curves' own smallest and largest value."""
    n, seed = 40, 5
    times = np.linspace(0.0, 6.0, 25)
    doses = ketasim.Doses.single(28.0, "intranasal", time_h=0.5)
    r = population("esketamine-nasal", doses, n, seed, metrics=("cmax",), bands=times,
                   band_outputs=("glutamate", "occupancy"), chunk_size=7, progress=False)
    curves = ketasim.simulate("esketamine-nasal", doses, times,
                              params=draw("esketamine-nasal", n, seed), weight_kg=np.full(n, 70.))
    g = np.sort(curves.output("glutamate"), axis=0)
    got = r.bands.get("glutamate")
    assert got["p05"][0] == got["p50"][0] == got["p95"][0] == 1.0
    width = 10 ** ((np.log10(BAND_RANGE[1]) - np.log10(BAND_RANGE[0])) / (BAND_BINS - 2))
    rise = g - 1.0
    live = rise[0] > 1e-3                       # times with a rise the bins resolve
    assert live.sum() > 5
    for key, q in (("p05", 0.05), ("p50", 0.5), ("p95", 0.95)):
        k = q * n
        lo = rise[max(math.ceil(k) - 1, 0)] / width
        hi = rise[min(math.ceil(k), n - 1)] * width
        v = got[key] - 1.0
        assert np.all((v[live] >= lo[live] * (1 - 1e-9)) & (v[live] <= hi[live] * (1 + 1e-9)))
    for name in ("glutamate", "occupancy"):
        y = curves.output(name)
        for v in r.bands.get(name).values():
            assert np.all(v >= y.min(axis=0)) and np.all(v <= y.max(axis=0)), name


def test_histogram_quantile_within_one_bin():
    rng = np.random.default_rng(0)
    x = np.exp(rng.normal(2.0, 1.0, 50_000))            # log-normal values, ng/mL-like
    counts = np.bincount(_bin_index(x), minlength=BAND_BINS).reshape(1, 1, BAND_BINS)
    q = _quantiles_from_counts(counts)[0, :, 0]
    exact = np.quantile(x, [0.05, 0.5, 0.95])
    np.testing.assert_allclose(q, exact, rtol=0.0051)
    assert _bin_index(np.array([0.0, 5e-5, 1e5, 2e6])).tolist() == [0, 0, BAND_BINS - 1,
                                                                      BAND_BINS - 1]


def test_bins_are_the_log_bins_of_the_documented_range():
    """Each value's bin against the definition written out in numpy: 0 below 1e-4 (negative
    values and NaN too), the last bin at or above 1e5, and floor((log10 v - lo) / w) + 1
    between, with lo = -4 and w = 9 / (BAND_BINS - 2) decades (values kept a hundredth of a
    bin away from an edge, where two log10s may round apart)."""
    lo, w = -4.0, 9.0 / (BAND_BINS - 2)
    rng = np.random.default_rng(5)
    k = rng.integers(1, BAND_BINS - 1, 20_000)
    v = 10.0 ** (lo + (k - 1 + rng.uniform(0.01, 0.99, k.size)) * w)
    assert _bin_index(v).tolist() == k.tolist()
    odd = np.array([-1.0, -0.0, 0.0, np.nan, 9.99e-5, 1e5, 3e7, np.inf])
    assert _bin_index(odd).tolist() == [0] * 5 + [BAND_BINS - 1] * 3
    assert _bin_index(v.reshape(100, 200)).shape == (100, 200)


def test_band_counts_are_the_histograms_and_extremes_of_the_values(monkeypatch):
    """The compiled counting pass against numpy on made-up curves that reach below and above
    the bins' range: every time point's histogram is the bincount of its values' bins, in
    ng/mL for a concentration and as the rise above 1 for glutamate; and the smallest,
    largest, largest-below-range and smallest-at-or-above-range values are numpy's."""
    pop_mod = __import__("ketasim.population", fromlist=["_count_row"])
    rng = np.random.default_rng(9)
    n, T = 37, 45
    data = np.empty((n, 3, T))
    data[:, 0] = np.exp(rng.normal(-3.0, 6.0, (n, T)))           # mg/L: 1e-10 .. 1e5 ng/mL
    data[:, 1] = 1.0 + np.exp(rng.normal(-4.0, 7.0, (n, T)))     # glutamate: its rise 1e-12 .. 1e9
    data[:, 2] = rng.uniform(0.0, 1.0, (n, T))
    for threads in (1, 2):
        for row, name, val in ((0, "plasma", data[:, 0] * 1000.0),
                               (1, "glutamate", data[:, 1] - 1.0)):
            total = np.zeros(2 * T * BAND_BINS, np.int64)
            ext = tuple(np.full(T, f) for f in (np.inf, -np.inf, -np.inf, np.inf))
            pop_mod._count_row(data, row, name, total, T * BAND_BINS, ext, threads)
            want = np.zeros((T, BAND_BINS), np.int64)
            for i in range(T):
                want[i] = np.bincount(_bin_index(val[:, i]), minlength=BAND_BINS)
            assert not total[:T * BAND_BINS].any()
            np.testing.assert_array_equal(total[T * BAND_BINS:].reshape(T, BAND_BINS), want)
            np.testing.assert_array_equal(ext[0], val.min(axis=0))
            np.testing.assert_array_equal(ext[1], val.max(axis=0))
            lo_ok = val < BAND_RANGE[0]
            hi_ok = val >= BAND_RANGE[1]
            assert lo_ok.any() and hi_ok.any()
            np.testing.assert_array_equal(ext[2], np.where(lo_ok, val, -np.inf).max(axis=0))
            np.testing.assert_array_equal(ext[3], np.where(hi_ok, val, np.inf).min(axis=0))


def test_age_covariate_sets_the_model_parameter():
    doses = ketasim.Doses.single(56.0, "intranasal")
    n = 4
    r = population("esketamine-nasal", doses, n, 1, metrics=("auc",),
                   covariates={"age_y": [40, 70, 80, 86]}, progress=False)
    p = draw("esketamine-nasal", n, 1)
    p["AGE"] = np.array([40.0, 70, 80, 86])
    ref = session_metrics("esketamine-nasal", doses, params=p, weight_kg=np.full(n, 70.0),
                          metrics=("auc",))
    _same(r["auc"], ref["auc"])
    _same(r["age_y"], [40, 70, 80, 86])
    with pytest.raises(KetasimInputError, match="does not use 'age_y'"):
        population("ketamine-iv", doses, 2, 1, covariates={"age_y": [50, 60]})


def test_without_variability_every_subject_is_typical():
    r = population("ketamine-iv", ONE_MONTH, 3, 1, metrics=("cmax",), variability=False,
                   progress=False)
    ref = session_metrics("ketamine-iv", ONE_MONTH, metrics=("cmax",))
    _same(r["cmax"], np.repeat(ref["cmax"], 3))


@pytest.mark.parametrize("kw, fragment", [
    ({"n": 0}, "n: got 0"), ({"seed": -1}, "seed"), ({"metrics": ("cmaxx",)}, "did you mean"),
    ({"metrics": ("time_above_occ_2",)}, "occupancy in [0, 1]"), ({"chunk_size": 0}, "chunk_size"),
    ({"params": {"CLL": 3.0}}, "unknown parameter"), ({"bands": True, "band_outputs": ("x",)},
                                                      "band_outputs"),
    ({"weight_kg": [60.0, 70.0]}, "expected 3 values"),
    ({"metrics": 5}, "metrics: got 5, expected metric names"),
])
def test_population_bad_inputs(kw, fragment):
    args = {"n": 3, "seed": 1}
    args.update(kw)
    with pytest.raises(KetasimInputError, match=None) as e:
        population("ketamine-iv", ONE_MONTH, args.pop("n"), args.pop("seed"), **args)
    assert fragment in str(e.value)


# ---------------------------------------------------------------------- sweeps
@pytest.mark.parametrize("vary", [{5: [1.0, 2.0]}, [("CL", [50.0, 60.0], 3)], 5, [7]])
def test_a_malformed_vary_is_one_line_error(vary):
    """A vary that is no name and values had raised AttributeError, ValueError or TypeError
    from inside sweep."""
    with pytest.raises(KetasimInputError, match=r"^vary: got .*, expected"):
        sweep("ketamine-iv", ONE_MONTH, vary, metrics=("cmax",), progress=False)


def test_one_vary_text_is_one_axis():
    """A single "NAME=LO:HI:N" (not in a list) is that axis: it had been read letter by
    letter ("--vary: got 'C'")."""
    a = sweep("ketamine-iv", ONE_MONTH, "CL=50:60:2", metrics=("cmax",), horizon_h=10.0,
              progress=False)
    ref = session_metrics("ketamine-iv", ONE_MONTH, params={"CL": np.array([50.0, 60.0])},
                          metrics=("cmax",), horizon_h=10.0)
    _same(a["cmax"], ref["cmax"])


def test_vary_as_numpy_text_a_pair_or_a_frame():
    """A NumPy array of "NAME=LO:HI:N" texts had ended in NumPy's "truth value of an array
    ... is ambiguous", a pandas DataFrame or Series in pandas' own; one (name, values) pair
    not in a list had been read as the text "CL"; a NumPy name (np.str_) had named the
    column as np.str_."""
    pd = pytest.importorskip("pandas")
    kw = dict(metrics=("cmax",), horizon_h=10.0, progress=False)
    want = sweep("ketamine-iv", ONE_MONTH, ["CL=50:60:2", "V1=90:100:2"], **kw)
    got = sweep("ketamine-iv", ONE_MONTH, np.array(["CL=50:60:2", "V1=90:100:2"]), **kw)
    _same(got["cmax"], want["cmax"])
    pair = sweep("ketamine-iv", ONE_MONTH, ("CL", [50.0, 60.0]), **kw)
    _same(pair["cmax"], sweep("ketamine-iv", ONE_MONTH, "CL=50:60:2", **kw)["cmax"])
    named = sweep("ketamine-iv", ONE_MONTH, {np.str_("CL"): [50.0]}, **kw)
    assert all(type(c) is str for c in named.columns)
    for frame in (pd.DataFrame({"CL": [50.0, 60.0]}), pd.Series({"CL": 50.0})):
        with pytest.raises(KetasimInputError, match=r"^vary: got a (DataFrame|Series), "
                                                    r"expected \{name: values\}"):
            sweep("ketamine-iv", ONE_MONTH, frame, **kw)


def test_a_varied_covariate_parameter_outside_its_fitted_range_names_the_grid_value():
    """A sweep of esketamine-nasal's AGE outside the ages the model was fitted to is refused
    under the varied name and value, before anything runs (it had been refused from inside the
    run as "subject 0, counted from 0 as in the subject column", of a table with no subjects)."""
    with pytest.raises(KetasimInputError, match=r"^vary AGE: the value 10 is refused by the "
                       r"model: AGE \(the age_y covariate\): got 10, outside 18-86"):
        sweep("esketamine-nasal", "spravato", {"AGE": [50.0, 10.0]}, metrics=("cmax",),
              progress=False)


def test_parse_vary():
    assert parse_vary("CL=1:3:3")[1].tolist() == [1.0, 2.0, 3.0]
    np.testing.assert_allclose(parse_vary("CL=log:1:100:3")[1], [1, 10, 100], rtol=1e-12)
    for bad in ("CL", "CL=1:2", "CL=log:0:1:3", "CL=a:b:c", "CL=1:2:0"):
        with pytest.raises(KetasimInputError):
            parse_vary(bad)


def test_model_parameter_sweep_matches_direct_calls():
    res = sweep("ketamine-iv", ONE_MONTH, {"CL": [80.0, 110.0], "V1": [100.0, 150.0, 200.0]},
                metrics=("cmax", "trough"), chunk_size=4, progress=False)
    assert list(res.columns)[:2] == ["CL", "V1"]
    cl, v1 = np.meshgrid([80.0, 110.0], [100.0, 150.0, 200.0], indexing="ij")
    _same(res["CL"], cl.ravel())
    ref = session_metrics("ketamine-iv", ONE_MONTH, params={"CL": cl.ravel(), "V1": v1.ravel()},
                          weight_kg=np.full(6, 70.0), metrics=("cmax", "trough"))
    for k in ("cmax", "cmax_s1", "trough_s3"):
        _same(res[k], ref[k])
    a, b, z = res.grid("cmax")
    assert z.shape == (2, 3) and z[0, 0] == res["cmax"][0]


def test_course_parameter_sweep_groups_by_dose_table_and_is_dose_linear():
    res = sweep("ketamine-iv", "standard-iv",
                [("dose_mg_per_kg", [0.25, 0.5, 1.0]), ("maintenance_days", [14.0, 28.0]),
                 ("months", [2.0])], metrics=("cmax", "auc"), progress=False)
    for i in range(6):
        d = resolve_doses("standard-iv", dose_mg_per_kg=float(res["dose_mg_per_kg"][i]),
                          maintenance_days=float(res["maintenance_days"][i]), months=2.0)
        ref = session_metrics("ketamine-iv", d, metrics=("cmax", "auc"))
        _same(res["auc"][i], ref["auc"][0])
    # PK metrics are linear in the dose (an invariant of the linear network)
    np.testing.assert_allclose(res["cmax"][4] / res["cmax"][2], 2.0, rtol=1e-9)
    np.testing.assert_allclose(res["auc"][1] / res["auc"][3], 0.5, rtol=1e-9)
    # a 14-day maintenance interval has more sessions within two months than 28 days
    assert np.isfinite(res["cmax_s10"][0]) and np.isnan(res["cmax_s10"][1])


def test_sweep_with_subjects_summarises_the_same_subjects_at_every_point():
    n = 6
    res = sweep("ketamine-iv", ONE_MONTH, {"V1": [120.0, 140.0]}, metrics=("cmax",), n=n,
                seed=9, chunk_size=5, progress=False)
    assert {"cmax_p50", "cmax_p05", "cmax_p95", "cmax_s1_p50"} <= set(res.columns)
    for i, v1 in enumerate((120.0, 140.0)):
        pop = population("ketamine-iv", ONE_MONTH, n, 9, metrics=("cmax",),
                         params={"V1": v1}, progress=False)
        np.testing.assert_allclose([res["cmax_p50"][i], res["cmax_p05"][i], res["cmax_p95"][i]],
                                   np.percentile(pop["cmax"], [50, 5, 95]), rtol=1e-12)
    # a metric asked for by its bare name points to its median ('cmax' had been answered with
    # 'cmax_p95', the nearest text)
    with pytest.raises(KetasimInputError, match=r"no column 'cmax' \(did you mean "
                                                r"'cmax_p50', the median"):
        res["cmax"]


def test_sweep_bad_names():
    with pytest.raises(KetasimInputError, match="need doses to name a course"):
        sweep("ketamine-iv", ONE_MONTH, {"dose_mg_per_kg": [0.5]})
    with pytest.raises(KetasimInputError, match="did you mean"):
        sweep("ketamine-iv", "standard-iv", {"maintenance_dayz": [14.0]})
    # a misspelt course parameter: the message lists the course's own (it had said only
    # "expected a model parameter or weight_kg", as if a course had none)
    with pytest.raises(KetasimInputError,
                       match=r"or a parameter of the course standard-iv \(dose_mg_per_kg, "
                             r"months, maintenance_days, infusion_min\)$"):
        sweep("ketamine-iv", "standard-iv", {"dose_mgkg": [0.5]})
    with pytest.raises(KetasimInputError,
                       match=r"or a parameter of the course spravato \(dose_mg, months\)$"):
        sweep("esketamine-nasal", "spravato", {"dosemg": [56.0]})
    with pytest.raises(KetasimInputError, match="dose"):
        sweep("esketamine-nasal", "spravato", {"dose_mg": [60.0], "months": [1.0]})


# ---------------------------------------------------------------------- command line
def test_cli_population_csv_parquet_bands(tmp_path, capsys):
    pq = pytest.importorskip("pyarrow.parquet")
    pd = pytest.importorskip("pandas")
    out, par, bands, fig = (tmp_path / "pop.csv", tmp_path / "pop.parquet",
                            tmp_path / "bands.csv", tmp_path / "bands.png")
    base = ["population", "--model", "ketamine-iv", "--months", "1", "--n", "5", "--seed", "4",
            "--metrics", "cmax,time_above_occ_0.3", "--quiet"]
    assert main(base + ["--out", str(out), "--bands", str(bands), "--plot", str(fig),
                        "--band-step", "2"]) == 0
    assert main(base + ["--out", str(par)]) == 0
    text = out.read_text().splitlines()
    assert text[0].startswith("# ketasim population") and "seed 4" in text[0]
    assert "cmax: ng/mL" in text[1] and "time_above_occ_0.3: h" in text[1]
    df = pd.read_csv(out, comment="#")
    tab = pq.read_table(par)
    assert list(df.columns) == tab.column_names
    assert df.shape == (5, tab.num_rows and len(tab.column_names))
    np.testing.assert_allclose(df["cmax"], tab.column("cmax").to_numpy(), rtol=1e-9)
    assert tab.schema.field("cmax").metadata[b"unit"] == b"ng/mL"
    assert b"ketasim" in tab.schema.metadata
    ref = population("ketamine-iv", ONE_MONTH, 5, 4, metrics=("cmax",), progress=False)
    np.testing.assert_allclose(tab.column("cmax").to_numpy(), ref["cmax"], rtol=1e-15)
    b = pd.read_csv(bands, comment="#")
    assert list(b.columns)[:4] == ["time_h", "plasma_p05", "plasma_p50", "plasma_p95"]
    # the bands' units line says how its columns read (it had carried the metrics table's
    # sentence on sessions, whole course and troughs)
    units = bands.read_text().splitlines()[1]
    assert units.endswith("; <output>_p05/_p50/_p95 the 5/50/95 % over subjects at each time")
    assert "session" not in units and "trough" not in units
    assert fig.stat().st_size > 10_000
    assert "cmax:" in capsys.readouterr().out


def test_cli_sweep_and_heat_map(tmp_path):
    pd = pytest.importorskip("pandas")
    out, fig = tmp_path / "s.csv", tmp_path / "h.png"
    assert main(["sweep", "--model", "ketamine-iv", "--doses", "standard-iv", "--months", "1",
                 "--vary", "dose_mg_per_kg=0.25:0.75:3", "--vary", "CL=log:80:120:2",
                 "--metrics", "cmax,auc", "--out", str(out), "--plot", str(fig), "-q"]) == 0
    df = pd.read_csv(out, comment="#")
    assert df.shape[0] == 6 and list(df.columns)[:3] == ["dose_mg_per_kg", "CL", "months"]
    np.testing.assert_allclose(df["cmax"][4] / df["cmax"][0], 3.0, rtol=1e-9)  # 0.75 vs 0.25
    assert fig.stat().st_size > 10_000


def test_cli_population_and_sweep_write_csv_to_standard_output(tmp_path, capsys):
    """`simulate --out -` wrote its table to standard output; population and sweep refused
    '-' (expected a file ending in .csv). Now `--out -` prints the very CSV `--out FILE`
    writes, with the summary and every message on standard error."""
    import ketasim.cli as kcli

    base = ["population", "--months", "1", "--n", "3", "--seed", "4", "--metrics", "cmax",
            "--quiet"]
    sweep = ["sweep", "--months", "1", "--vary", "CL=80:100:2", "--metrics", "cmax", "-q"]
    for argv in (base, sweep):
        f = tmp_path / f"{argv[0]}.csv"
        assert main(argv + ["--out", str(f)]) == 0
        capsys.readouterr()
        assert main(argv + ["--out", "-"]) == 0
        out, err = capsys.readouterr()
        assert out == f.read_text()
        assert "wrote standard output" in err
    assert main(base + ["--out", "-"]) == 0
    assert "3 subjects: median" in capsys.readouterr().err       # (the summary)
    for cmd in ("population", "sweep"):          # the help says so
        helps = {a.dest: a.help for a in kcli.build_parser()._subparsers._group_actions[0]
                 .choices[cmd]._actions}
        assert "- for CSV on standard output" in helps["out"]


@pytest.mark.parametrize("argv, fragment", [
    (["population", "--n", "3", "--metrics", "cmaxx"], "did you mean"),
    (["population", "--n", "3", "--model", "esketamine-iv", "--age", "50"], "age_y"),
    (["sweep", "--vary", "CLX=1:2:2"], "unknown name"),
    (["sweep", "--vary", "CL=-10:100:3"], "vary CL: the value -10 is refused by the model"),
    (["sweep", "--vary", "CL=1:2:2", "--vary", "V1=1:2:2", "--vary", "Q2=1:2:2",
      "--plot", "PLOT"], "two --vary"),
])
def test_cli_bad_input_is_one_line_and_leaves_no_file(tmp_path, capsys, argv, fragment):
    out = tmp_path / "t.csv"
    argv = [a if a != "PLOT" else str(tmp_path / "h.png") for a in argv]
    assert main(argv + ["--out", str(out), "--months", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert fragment in err and "\n" not in err and err.startswith("ketasim: error:")
    assert list(tmp_path.iterdir()) == []


def test_interrupt_leaves_no_file(tmp_path, monkeypatch, capsys):
    import sys

    P = sys.modules["ketasim.population"]     # the module (ketasim.population is the function)
    real = P._run_chunk
    calls = []

    def interrupted(job, a, b):
        calls.append(a)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(job, a, b)

    monkeypatch.setattr(P, "_run_chunk", interrupted)
    out = tmp_path / "pop.csv"
    assert main(["population", "--n", "40", "--months", "1", "--out", str(out), "-q",
                 "--metrics", "cmax"]) == 130
    assert list(tmp_path.iterdir()) == []
    assert "interrupted" in capsys.readouterr().err


def test_numba_cache_folder_for_read_only_packages(tmp_path, monkeypatch):
    from ketasim import _numba_cache

    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    monkeypatch.setattr(_numba_cache.os, "access", lambda p, mode: False)
    assert _numba_cache.choose_cache_dir(tmp_path, env) == str(tmp_path / "cache" / "ketasim" /
                                                                "numba")
    assert _numba_cache.choose_cache_dir(tmp_path, {"NUMBA_CACHE_DIR": "/x"}) is None
    monkeypatch.setattr(_numba_cache.os, "access", lambda p, mode: True)
    assert _numba_cache.choose_cache_dir(tmp_path, env) is None


def test_numba_cache_folder_without_a_home_folder_is_a_private_temporary_one(tmp_path,
                                                                            monkeypatch):
    # a read-only install, HOME unset and a user id the system does not list (a container):
    # import ketasim had failed ("Could not determine home directory"), and Numba's own
    # default would make a folder named "~" in the current folder
    import numba

    from ketasim import _numba_cache

    def no_home():
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(_numba_cache.os, "access", lambda p, mode: False)
    monkeypatch.setattr(_numba_cache.Path, "home", staticmethod(no_home))
    monkeypatch.setattr(_numba_cache.tempfile, "tempdir", str(tmp_path))
    private = tmp_path / f"ketasim-{os.getuid()}"
    assert _numba_cache.choose_cache_dir(tmp_path, {}) == str(private / "numba")
    assert private.stat().st_mode & 0o777 == 0o700
    # a relative XDG_CACHE_HOME is ignored, as the XDG specification says
    assert _numba_cache.choose_cache_dir(tmp_path, {"XDG_CACHE_HOME": "cache"}) == \
        str(private / "numba")
    # a home cache that cannot be written (HOME=/ for a user of its own): the private folder
    monkeypatch.setattr(_numba_cache, "_home_cache", lambda env: str(tmp_path / "f" / "c"))
    (tmp_path / "f").write_text("a file, not a folder")
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(numba.config, "CACHE_DIR", numba.config.CACHE_DIR)
    _numba_cache.configure()
    assert os.environ["NUMBA_CACHE_DIR"] == str(private / "numba")
    assert (private / "numba").is_dir()
    # a temporary ketasim-<uid> that others may write is not used (a cache holds code)
    private.chmod(0o777)
    assert _numba_cache._private_cache() is None


def test_weight_sweep_rebuilds_the_mg_per_kg_course_and_per_subject_weights():
    res = sweep("ketamine-iv", "standard-iv", [("weight_kg", [50.0, 90.0]), ("months", [1.0])],
                metrics=("auc",), progress=False)
    for i, w in enumerate((50.0, 90.0)):
        d = resolve_doses("standard-iv", weight_kg=w, months=1.0)
        ref = session_metrics("ketamine-iv", d, weight_kg=w, metrics=("auc",))
        _same(res["auc"][i], ref["auc"][0])
    w = np.array([55.0, 70.0, 95.0])
    r = population("ketamine-iv", ONE_MONTH, 3, 2, metrics=("auc",), weight_kg=w,
                   progress=False)
    ref = session_metrics("ketamine-iv", ONE_MONTH, params=draw("ketamine-iv", 3, 2),
                          weight_kg=w, metrics=("auc",))
    _same(r["auc"], ref["auc"])
    _same(r["weight_kg"], w)
    with pytest.raises(KetasimInputError, match="one dose table per subject"):
        population("ketamine-iv", "standard-iv", 3, 2, weight_kg=w)


@pytest.mark.slow
def test_ctrl_c_stops_a_long_run_and_leaves_no_file(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
    out = tmp_path / "pop.csv"
    p = subprocess.Popen([sys.executable, "-m", "ketasim", "population", "--n", "1000000",
                          "--out", str(out), "--metrics", "cmax", "-q"], env=env,
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(6.0)                                      # imports, kernels, first chunks
    assert p.poll() is None
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert list(tmp_path.iterdir()) == []


def test_covariates_apply_without_variability_too():
    """--no-variability drops the random effects, not the covariates: age still sets AGE."""
    doses = ketasim.Doses.single(56.0, "intranasal")
    r = population("esketamine-nasal", doses, 2, 1, metrics=("auc",), variability=False,
                   covariates={"age_y": [30, 80]}, progress=False)
    ref = session_metrics("esketamine-nasal", doses, params={"AGE": np.array([30.0, 80.0])},
                          weight_kg=np.full(2, 70.0), metrics=("auc",))
    _same(r["auc"], ref["auc"])
    assert r["auc"][1] > r["auc"][0]


def test_covariates_file_rows_follow_its_subject_column_and_is_never_overwritten(tmp_path,
                                                                                capsys):
    d = tmp_path / "d.csv"
    d.write_text("time_h,amount_mg,route,duration_h\n0,35,iv,0.6667\n")
    cov = tmp_path / "cov.csv"
    cov.write_text("subject,weight_kg\n1,80\n0,50\n")
    out = tmp_path / "p.csv"
    assert main(["population", "--doses", str(d), "--n", "2", "--covariates", str(cov),
                 "--metrics", "cmax", "--out", str(out), "-q"]) == 0
    rows = [ln.split(",") for ln in out.read_text().splitlines() if not ln.startswith("#")]
    assert rows[0][:2] == ["subject", "weight_kg"] and [r[:2] for r in rows[1:]] == \
        [["0", "50"], ["1", "80"]]
    before = cov.read_bytes()
    for argv, fragment in (
            (["--out", str(cov)], "same file as the --covariates input"),
            (["--out", str(out), "--bands", str(cov)], "same file as the --covariates input")):
        assert main(["population", "--doses", str(d), "--n", "2", "--covariates", str(cov),
                     "-q"] + argv) == 1
        assert fragment in capsys.readouterr().err
    assert cov.read_bytes() == before
    cov2 = tmp_path / "cov2.csv"
    cov2.write_text("subject,weight_kg\n5,80\n0,50\n")
    assert main(["population", "--doses", str(d), "--n", "2", "--covariates", str(cov2),
                 "-q"]) == 1
    assert "subject column: got 5; expected each of the subjects 0 to 1 once" in \
        capsys.readouterr().err


def test_covariates_read_from_standard_input_as_a_file_is(tmp_path, monkeypatch, capsys):
    """``--covariates -`` reads the table from standard input, as ``--doses -`` does (it had
    been "file '-' not found"); with ``--doses -`` too it is refused, naming both, and with
    standard input closed it says so."""
    import io
    import sys

    d = tmp_path / "d.csv"
    d.write_text("time_h,amount_mg,route,duration_h\n0,35,iv,0.6667\n")
    text = "subject,weight_kg\n1,80\n0,50\n"
    by_file, by_stdin = tmp_path / "f.csv", tmp_path / "s.csv"
    cov = tmp_path / "cov.csv"
    cov.write_text(text)
    base = ["population", "--doses", str(d), "--n", "2", "--metrics", "cmax", "-q"]
    assert main([*base, "--covariates", str(cov), "--out", str(by_file)]) == 0
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    assert main([*base, "--covariates", "-", "--out", str(by_stdin)]) == 0
    strip = [ln for ln in by_file.read_text().splitlines() if not ln.startswith("#")]
    assert [ln for ln in by_stdin.read_text().splitlines() if not ln.startswith("#")] == strip
    capsys.readouterr()
    assert main(["population", "--doses", "-", "--n", "2", "--covariates", "-", "-q"]) == 1
    assert "--covariates: '-': standard input is the --doses input already" in \
        capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", None)
    assert main([*base, "--covariates", "-"]) == 1
    assert "--covariates: standard input is closed" in capsys.readouterr().err


def test_covariates_file_errors_name_the_files_own_line_and_the_value(tmp_path, capsys):
    """A bad cell is reported at its line in the file (comments and blank lines counted),
    with the value; a short row shows what it holds; a binary file or a pipe is named as
    what it is."""
    d = tmp_path / "d.csv"
    d.write_text("time_h,amount_mg,route,duration_h\n0,35,iv,0.6667\n")
    cases = [("# my cohort\nweight_kg\n50\n\n70\nabc\n",
              "line 6, weight_kg: got 'abc', expected a number"),
             ("weight_kg\n70,\n50\n70\n", "line 2: got 2 values ('70,'), expected 1 (weight_kg)"),
             (b"\x00\x01\x02\x03\xff" * 20, "this is a binary file, expected a covariates CSV"),
             # a weight or age out of range: the file's line (it had named neither)
             ("weight_kg\n50\n-70\n60\n", "line 3, weight_kg: got -70, expected kg > 0"),
             ("weight_kg,age_y\n50,30\n70,40\n60,140\n",
              "line 4, age_y: got 140, expected an age in years (0-130)")]
    for k, (text, fragment) in enumerate(cases):
        cov = tmp_path / f"cov{k}.csv"
        (cov.write_bytes if isinstance(text, bytes) else cov.write_text)(text)
        assert main(["population", "--doses", str(d), "--n", "3", "--covariates", str(cov),
                     "-q"]) == 1
        err = capsys.readouterr().err
        assert fragment in err and err.count("\n") == 1, err
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert main(["population", "--doses", str(d), "--n", "3", "--covariates", str(fifo),
                 "-q"]) == 1
    assert "is not a regular file (a device or a pipe)" in capsys.readouterr().err


def test_covariates_file_values_may_be_quoted_as_its_header_may(tmp_path, capsys):
    d = tmp_path / "d.csv"
    d.write_text("time_h,amount_mg,route,duration_h\n0,35,iv,0.6667\n")
    for k, text in enumerate(('"weight_kg"\n"80"\n" 70 "\n', "weight_kg\n80\n70\n")):
        cov = tmp_path / f"cov{k}.csv"
        cov.write_text(text)
        out = tmp_path / f"p{k}.csv"
        assert main(["population", "--doses", str(d), "--n", "2", "--covariates", str(cov),
                     "--metrics", "cmax", "--out", str(out), "-q"]) == 0, capsys.readouterr()
    rows = [[ln for ln in (tmp_path / f"p{k}.csv").read_text().splitlines()
             if not ln.startswith("#")] for k in (0, 1)]      # (the header names the file)
    assert rows[0] == rows[1] and len(rows[0]) == 3


def test_sweep_grid_size_is_checked_before_it_is_built(capsys, tmp_path):
    import resource

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert main(["sweep", "--vary", "CL=1:2:200000", "--vary", "V1=1:2:200000", "--out",
                 str(tmp_path / "s.csv")]) == 1
    assert "40,000,000,000 points, expected at most 10,000,000" in capsys.readouterr().err
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 200_000   # kB
    with pytest.raises(KetasimInputError, match="'CL' is also given in params"):
        sweep("ketamine-iv", "standard-iv", {"CL": [80.0, 90.0]}, params={"CL": 50.0},
              progress=False)


def test_no_occupancy_means_no_time_above_an_occupancy_threshold():
    m = ketasim.Model.from_dict({
        "model": {"name": "one"}, "parameters": {"CL": 10.0, "V": 50.0},
        "compartments": {"central": "V"}, "flows": [{"from": "central", "to": "out",
                                                     "k": "CL / V"}],
        "routes": {"iv": {"to": "central"}}})
    # (never 0 h: refused, naming the metric and the model, as population() refuses it; it
    # had been a column of NaN)
    with pytest.raises(KetasimInputError, match=r"^metrics: time_above_occ_0.3 needs occupancy"
                       r".*model 'one' has none"):
        session_metrics(m, ketasim.Doses.single(100.0, "iv"), metrics=("auc",
                        "time_above_occ_0.3"))
    r = session_metrics(m, ketasim.Doses.single(100.0, "iv"), metrics=("auc",))
    np.testing.assert_allclose(r["auc"][0], 100.0 / 10.0 * 1000.0 * (1 - np.exp(
        -10.0 / 50.0 * ketasim.engine.default_horizon_h(ketasim.Doses.single(100.0, "iv")))),
        rtol=1e-9)


def test_bands_above_their_range_are_reported(tmp_path, capsys):
    d = tmp_path / "huge.csv"
    d.write_text("time_h,amount_mg,route,duration_h\n0,40000,iv,0.6667\n")
    assert main(["population", "--doses", str(d), "--n", "5", "--bands",
                 str(tmp_path / "b.csv"), "-q"]) == 0
    err = capsys.readouterr().err
    assert "warning: bands: plasma: a quantile is at or above 100000 ng/mL" in err
    lines = [ln for ln in (tmp_path / "b.csv").read_text().splitlines() if ln[0] != "#"]
    head = lines[0].split(",")
    vals = np.array([[float(c) for c in ln.split(",")] for ln in lines[1:]])
    assert np.isnan(vals[:, head.index("plasma_p95")]).any()
    assert np.isfinite(vals[-1, head.index("plasma_p05")])


def test_weight_given_twice_on_the_command_line_is_refused(tmp_path, capsys):
    d = tmp_path / "d.csv"
    d.write_text("time_h,amount_mg,route,duration_h\n0,35,iv,0.6667\n")
    cov = tmp_path / "cov.csv"
    cov.write_text("weight_kg\n50\n100\n")
    for argv, fragment in (
            (["population", "--doses", str(d), "--n", "2", "--covariates", str(cov),
              "--weight", "120"], "gives each subject's weight (weight_kg); give weights in "
                                  "one place"),
            (["sweep", "--doses", str(d), "--vary", "weight_kg=50:100:2", "--weight", "120",
              "--out", str(tmp_path / "s.csv")], "weight_kg is also varied")):
        assert main(argv + ["-q"]) == 1
        assert fragment in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()


def test_heat_map_draws_log_axes_on_a_log_scale_and_says_when_it_is_empty():
    """A log:LO:HI:N axis is drawn on a log scale, its cells centred (geometrically) on the
    grid values; a metric that is NaN everywhere gets a note instead of a blank plot."""
    from ketasim.cli_population import _geometric, plot_heatmap

    assert _geometric(np.geomspace(10, 1000, 5)) and not _geometric(np.linspace(10, 1000, 5))
    assert not _geometric(np.array([1.0, 2.0])) and not _geometric(np.array([-1.0, -2, -4]))

    def Two(z):
        return _sweep_stub(("CL", "dose_mg_per_kg"),
                           {"CL": "L/h", "dose_mg_per_kg": "mg/kg", "cmax": "ng/mL"},
                           np.geomspace(10, 1000, 3), np.linspace(0.25, 0.75, 3), z)

    fig = plot_heatmap(Two(np.arange(9.0).reshape(3, 3)), "cmax", "t")
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_xscale() == "linear"
    lo, hi = ax.get_ylim()     # half a decade beyond 10 and 1000 (the midpoints: 10^1.5, 10^2.5)
    np.testing.assert_allclose([lo, hi], [10 ** 0.5, 10 ** 3.5], rtol=1e-12)
    assert not [t for t in ax.texts if "no value" in t.get_text()]
    fig = plot_heatmap(Two(np.full((3, 3), np.nan)), "cmax", "t")
    assert [t for t in fig.axes[0].texts if "no value of cmax" in t.get_text()]


def test_an_effectively_zero_heat_map_writes_its_colour_bar_ticks_out():
    """A map of near-zero values (a washed-out trough, 1e-19 ng/mL) says "effectively zero",
    but its colour bar had ticks 0-6 under a "1e\u221219" multiplier above it; each tick is
    now written out ("6e\u221219"), with no multiplier. A map of values that matter keeps
    matplotlib's ticks."""
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from ketasim.cli_population import plot_heatmap

    def Two(z):
        return _sweep_stub(("CL", "V1"), {"CL": "L/h", "V1": "L", "trough": "ng/mL"},
                           np.array([50.0, 100, 150]), np.array([80.0, 120, 160]), z)

    for scale, tiny in ((1e-19, True), (1e-13, True), (1.0, False)):
        fig = plot_heatmap(Two(np.arange(9.0).reshape(3, 3) * scale), "trough", "t")
        try:
            FigureCanvasAgg(fig).draw()
            cbar = fig.axes[1].yaxis
            assert cbar.get_offset_text().get_text() == "", scale
            shown = [(t.get_position()[1], t.get_text()) for t in cbar.get_ticklabels()
                     if t.get_text()]
            assert len(shown) >= 3
            for at, text in shown:
                assert float(text.replace("\u2212", "-")) == pytest.approx(at, rel=0.01,
                                                                           abs=1e-300)
            assert any("e\u2212" in text for _at, text in shown) == tiny
            said = any("effectively zero" in t.get_text() for t in fig.axes[0].texts)
            assert said == tiny
        finally:
            plt.close(fig)


def test_heat_map_words_an_occupancy_threshold_in_percent():
    """The figures draw occupancy in % (0-40 %), but a threshold metric's colour bar read
    "hours with occupancy >= 0.1" (the column's fraction); it reads ">= 10 %". The column
    name, a contract, is kept as it is."""
    import matplotlib.pyplot as plt

    from ketasim.cli_population import _describe, plot_heatmap

    assert _describe("time_above_occ_0.1") == "hours with occupancy >= 10 %, whole course"
    assert _describe("time_above_occ_0.30_s2_p50") == \
        "median of hours with occupancy >= 30 %, session 2"
    assert _describe("time_above_occ_0.07").startswith("hours with occupancy >= 7 %")
    assert _describe("time_above_conc_100").startswith("hours with concentration >= 100 ng/mL")

    two = _sweep_stub(("dose_mg_per_kg", "CL"), {"dose_mg_per_kg": "mg/kg", "CL": "L/h",
                                                 "time_above_occ_0.125_s12_p95": "h"},
                      np.linspace(0.25, 1, 4), np.array([50.0, 100, 150]),
                      np.arange(12.0).reshape(4, 3))
    fig = plot_heatmap(two, "time_above_occ_0.125_s12_p95", "t", calibration="in-vivo")
    try:
        label = fig.axes[1].get_ylabel()
        assert label.split("\n")[0] == "time_above_occ_0.125_s12_p95 (h)"
        assert "occupancy >= 12.5 %" in " ".join(label.split()), label
        assert ">= 0.125" not in label and "12.5\n%" not in label
    finally:
        plt.close(fig)


def test_heat_map_title_stays_on_the_figure():
    """A sweep with a few options had its heat map's title run off both edges of the figure
    (the model and the number of subjects cut); it is wrapped to the room over the map, every
    word kept, and a short title is left as it is."""
    import matplotlib
    import matplotlib.pyplot as plt

    from ketasim.cli_population import plot_heatmap

    two = _sweep_stub(("dose_mg_per_kg", "maintenance_days"),
                      {"dose_mg_per_kg": "mg/kg", "maintenance_days": "days",
                       "time_above_occ_0.3_p95": "h"},
                      np.linspace(0.25, 1, 4), np.array([14.0, 28, 42]),
                      np.arange(12.0).reshape(4, 3))

    title = ("ketamine-iv, standard-iv | months 3 | weight 80 kg | V1 = 120 | Q2 = 25: "
             "time_above_occ_0.3_p95 (95th percentile of 20 subjects)\nmodel-predicted; a "
             "research tool, not a dosing recommendation")
    for t, lines in ((title, None), ("t\nsecond line", 2)):
        fig = plot_heatmap(two, "time_above_occ_0.3_p95", t, analyte="ketamine (S + R)")
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        shown = fig.axes[0].title
        assert shown.get_text().split() == t.split()
        assert lines is None or shown.get_text() == t
        for text in fig.findobj(matplotlib.text.Text):
            if text.get_visible() and text.get_text().strip():
                b = text.get_window_extent(r)
                assert b.x0 >= 0 and b.x1 <= fig.bbox.width, text.get_text()
                assert b.y0 >= 0 and b.y1 <= fig.bbox.height, text.get_text()
        plt.close(fig)


def test_sweep_grid_keeps_each_value_with_its_row_whatever_the_axis_order():
    """An axis given high to low (or unsorted) is returned sorted with the metric moved with
    it (the heat map was drawn against the wrong labels); a value given twice is refused."""
    from ketasim.errors import KetasimInputError

    m = ketasim.load_model("ketamine-iv")
    r = ketasim.sweep(m, ONE_MONTH, {"CL": [100.0, 50.0, 200.0], "V1": [150.0, 100.0]},
                      metrics=("cmax",))
    a, b, z = r.grid("cmax")
    np.testing.assert_array_equal(a, [50.0, 100.0, 200.0])
    np.testing.assert_array_equal(b, [100.0, 150.0])
    for cl, v1, c in zip(r.columns["CL"], r.columns["V1"], r["cmax"]):
        assert z[list(a).index(cl), list(b).index(v1)] == c
    assert z[0, 0] > z[2, 1]             # low CL and V1: the highest peak
    with pytest.raises(KetasimInputError, match="a value is given twice"):
        ketasim.sweep(m, ONE_MONTH, {"CL": [100.0, 100.0]}, metrics=("cmax",))
    with pytest.raises(KetasimInputError, match=r"params \(--param\): the model refuses"):
        ketasim.sweep(m, ONE_MONTH, {"V1": [100.0, 120.0]}, params={"CL": -1.0},
                      metrics=("cmax",))


def test_parameter_units_read_a_section_heading_with_a_comment(tmp_path):
    from ketasim.modelfile import parameter_notes

    notes = parameter_notes("[parameters]   # typical values\nCL = 10.0   # L/h, clearance\n")
    assert notes["CL"][0] == "L/h"


def test_metric_columns_are_ordered_per_metric_then_by_session_for_a_long_course():
    """Course columns first per metric, then its sessions in session order, then the rest as
    given; a course of 20,000 sessions (40,000 columns) is ordered in one pass (the earlier
    list search made a 100,000-session population look like a hang)."""
    from ketasim.population import _order_columns

    n = 20_000
    rng = np.random.default_rng(3)
    cols = ([f"cmax_s{i}" for i in range(1, n + 1)] + [f"auc_s{i}" for i in range(1, n + 1)]
            + ["auc", "cmax", "param_CL", "subject"])
    shuffled = [cols[i] for i in rng.permutation(len(cols))]
    out = _order_columns(shuffled, ("cmax", "auc"))
    rest = [c for c in shuffled if c in ("param_CL", "subject")]
    assert out == (["cmax"] + [f"cmax_s{i}" for i in range(1, n + 1)] + ["auc"]
                   + [f"auc_s{i}" for i in range(1, n + 1)] + rest)


def test_a_derived_name_is_refused_saying_it_is_derived_and_what_can_be_varied(tmp_path,
                                                                               capsys):
    """sweep --vary K10=... (K10 a [derived] value of the model file) had said 'unknown name',
    as for a typo; population --param K10=... 'unknown parameter'. Both now say that it is
    derived, from what, and list what can be set or varied."""
    m = tmp_path / "one.toml"
    m.write_text(ONE_CPT_TOML + '[derived]\nK10 = "CL / V"\n')
    out = tmp_path / "o.csv"
    for argv, want in (
            (["sweep", "--vary", "K10=0.1:0.2:2"],
             "ketasim: error: --vary: 'K10' is derived (computed from parameters: K10 = CL / V)"
             ", so it cannot be varied; expected a model parameter (CL, V) or weight_kg"),
            (["population", "--n", "2", "--param", "K10=0.2"],
             "ketasim: error: --param: 'K10' is derived (computed from parameters: K10 = CL / "
             "V), so it cannot be set; expected a model parameter (CL, V)")):
        assert main(argv + ["--model", str(m), "--months", "1", "--out", str(out)]) == 1
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith(want), err
        assert not out.exists()
    with pytest.raises(KetasimInputError, match="'K10' is derived .* a course parameter "
                                                r"\(dose_mg_per_kg, months"):
        ketasim.sweep(str(m), "standard-iv", {"K10": [0.1, 0.2]}, metrics=("cmax",),
                      progress=False)


def test_metrics_a_model_cannot_give_are_left_out_by_default_and_refused_by_name(tmp_path,
                                                                                  capsys):
    """A model without occupancy: the default metrics are those it has (no all-NaN occupancy
    columns); naming an occupancy metric, or --thresholds for simulate --summary, is an error
    that leaves no file."""
    m = tmp_path / "one.toml"
    m.write_text(ONE_CPT_TOML)
    out = tmp_path / "pop.csv"
    assert main(["population", "--model", str(m), "--n", "3", "--months", "1", "-q",
                 "--out", str(out)]) == 0
    text = out.read_text()
    assert "cmax" in text and "occupancy" not in text
    capsys.readouterr()
    bad = tmp_path / "bad.csv"
    for argv in (["population", "--model", str(m), "--n", "3", "--months", "1",
                  "--metrics", "cmax,peak_occupancy", "--out", str(bad)],
                 ["sweep", "--model", str(m), "--vary", "CL=5:10:2", "--months", "1",
                  "--metrics", "time_above_occ_0.3", "--out", str(bad)],
                 ["simulate", "--model", str(m), "--summary", "--thresholds", "0.3",
                  "--out", str(bad)]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "occupancy" in err and "'one'" in err
    assert not bad.exists()


def test_parquet_without_pyarrow_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    import sys

    P = sys.modules["ketasim.population"]
    ran = []
    monkeypatch.setattr(P, "_run_chunk", lambda *a: ran.append(a))
    monkeypatch.setitem(sys.modules, "pyarrow", None)        # import pyarrow fails
    with pytest.raises(SystemExit) as exc:
        main(["population", "--n", "1000", "--out", str(tmp_path / "p.parquet")])
    assert exc.value.code == 2 and not ran
    assert "pip install 'ketasim[parquet]'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_band_figure_close_up_follows_the_first_dose_and_labels_its_outputs():
    """A first dose at 24 h: the close-up shows the 8 h after it (it had shown 0-8 h, empty),
    and every output's axis names its unit, schematic outputs as SCHEMATIC."""
    from ketasim.cli_population import plot_bands_figure

    d = ketasim.Doses([24.0, 72.0], [35.0, 35.0], ["iv", "iv"], [2 / 3, 2 / 3])
    res = ketasim.population("ketamine-iv", d, 8, metrics=("cmax",), bands=True,
                             band_outputs=("plasma", "occupancy_high", "consolidation"),
                             progress=False)
    fig = plot_bands_figure(res.bands, "t", first_dose_h=24.0)
    axes = fig.axes
    close = axes[1].lines[0]                      # plasma median, close-up
    x, y = close.get_xdata(), close.get_ydata()
    assert x.min() == 0.0 and x.max() <= 8.0 and y.max() > 100.0    # ng/mL: the first peak
    labels = [axes[2 * r].get_ylabel() for r in range(3)]
    assert "ng/mL" in labels[0] and "model-predicted" in labels[1]
    assert "SCHEMATIC" in labels[2]


def test_the_bands_figure_keeps_a_long_title_on_the_figure():
    """A population run with a few options (--months, --weight, --param ...) had the bands
    figure's title run off both edges; it is wrapped to the figure, every word kept, above
    the panels' own titles."""
    import matplotlib.pyplot as plt

    from ketasim.cli_population import plot_bands_figure

    title = ("ketamine-iv: 4 virtual patients (standard-iv | months 1 | weight 100 kg | CL = 50 "
             "| V1 = 120 | Q2 = 30 | Q3 = 150 | CLM = 60 | VM1 = 100)\nmodel-predicted, not a "
             "dosing recommendation")
    res = ketasim.population("ketamine-iv", ONE_MONTH, 4, metrics=("cmax",), bands=True,
                             band_outputs=("plasma", "metabolite"), progress=False)
    fig = plot_bands_figure(res.bands, title, model=ketasim.load_model("ketamine-iv"))
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    head = fig._suptitle
    box = head.get_window_extent(r)
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height
    assert head.get_text().split() == title.split()
    assert all(box.y0 > ax.title.get_window_extent(r).y1 for ax in fig.axes)
    plt.close(fig)


def test_the_bands_figures_row_labels_keep_to_their_rows():
    """On a bands figure of many outputs each row is short: 'glutamate signal (SCHEMATIC)' and
    the occupancy labels had run into the labels of the rows above and below. A label longer
    than the rows' spacing is wrapped, words whole ('in-vivo' not cut at its hyphen)."""
    import matplotlib.pyplot as plt

    from ketasim.cli_population import plot_bands_figure

    outs = ("plasma", "metabolite", "occupancy", "occupancy_low", "occupancy_high",
            "glutamate", "plasticity", "consolidation")
    res = ketasim.population("ketamine-iv", ONE_MONTH, 4, metrics=("cmax",), bands=True,
                             band_outputs=outs, progress=False)
    fig = plot_bands_figure(res.bands, "t", model=ketasim.load_model("ketamine-iv"))
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    left = [ax for ax in fig.axes if ax.get_ylabel()]
    assert len(left) == len(outs)
    boxes = [ax.yaxis.label.get_window_extent(r) for ax in left]
    assert all(a.y0 > b.y1 + 5 for a, b in zip(boxes, boxes[1:]))
    assert not any("in-\n" in ax.get_ylabel() for ax in left)
    assert "glutamate signal" in " ".join(left[5].get_ylabel().split())
    plt.close(fig)


def test_the_bands_figure_says_where_it_draws_nothing():
    """A quantile at or above the top of the bands' range is NaN and not drawn: the figure
    says so (it had silently started the close-up at the first time it could draw)."""
    from ketasim.cli_population import plot_bands_figure
    from ketasim.population import Bands

    t = np.arange(0.0, 10.0)
    v = np.tile(np.linspace(9e4, 1e3, t.size), (1, 3, 1))
    ok = Bands(times_h=t, outputs=("plasma",), quantiles=(0.05, 0.5, 0.95), values=v,
               units={"plasma": "ng/mL"})
    assert [x.get_text() for x in plot_bands_figure(ok, "x").texts] == ["x"]   # the title
    v = v.copy()
    v[0, 2, :2] = np.nan
    cut = Bands(times_h=t, outputs=("plasma",), quantiles=(0.05, 0.5, 0.95), values=v,
                units={"plasma": "ng/mL"})
    texts = [x.get_text() for x in plot_bands_figure(cut, "x").texts]
    assert texts == ["x", "plasma: not drawn at 2 of 10 times (from 0 h), where a quantile is at "
                     "or above 100000 ng/mL, the top of the bands' range"]


def _figure_titles(monkeypatch) -> list:
    """The titles the population and sweep commands give their figures, as they draw them."""
    from ketasim import cli_population

    titles = []
    real_bands, real_heat = cli_population.plot_bands_figure, cli_population.plot_heatmap
    monkeypatch.setattr(cli_population, "plot_bands_figure",
                        lambda b, title, *a, **k: titles.append(title) or
                        real_bands(b, title, *a, **k))
    monkeypatch.setattr(cli_population, "plot_heatmap",
                        lambda r, met, title, **k: titles.append(title) or
                        real_heat(r, met, title, **k))
    return titles


def test_population_and_sweep_figures_state_the_run_and_speak_as_the_course_figure(
        tmp_path, capsys, monkeypatch):
    """From a lecturer's review: the bands figure's title left out --weight, --param and
    --months (whose numbers it shows), drew occupancy as a fraction where the course figure
    uses %, named the curves 'plasma' and 'metabolite', and had no source; the heat map's
    title left out the run's options, its log axis was not called one, and its colour bar
    spoke of 'the analyte'."""
    from ketasim.cli import main

    titles = _figure_titles(monkeypatch)
    fig_path = tmp_path / "p.png"
    assert main(["population", "--n", "20", "--weight", "100", "--param", "CL=50",
                 "--months", "1", "--plot", str(fig_path), "--quiet"]) == 0
    assert fig_path.read_bytes()[:4] == b"\x89PNG"
    assert "months 1 | CL = 50" in titles[0] and "· 100 kg" in titles[0]    # (weight once)

    import matplotlib.pyplot as plt

    from ketasim.cli_population import plot_bands_figure, plot_heatmap

    m = ketasim.load_model("ketamine-iv")
    res = ketasim.population(m, "standard-iv", 20, metrics=("cmax",), bands=True,
                             band_outputs=("plasma", "occupancy", "consolidation"),
                             progress=False)
    fig = plot_bands_figure(res.bands, "t", model=m)
    labels = [fig.axes[2 * r].get_ylabel() for r in range(3)]
    assert labels[0].startswith("ketamine (S + R)") and "% of receptors" in labels[1]
    assert "index 0-1" in labels[2]
    occ = fig.axes[2].lines[0].get_ydata()
    assert occ.max() == pytest.approx(100 * res.bands.get("occupancy")["p50"].max())
    foot = " ".join(t.get_text() for t in fig.texts)
    assert "Fanta S et al." in foot and "not a dosing recommendation" in foot
    plt.close(fig)

    out, png = tmp_path / "s.csv", tmp_path / "h.png"
    assert main(["sweep", "--vary", "CL=log:50:150:5", "--vary", "V1=80:200:4", "--metrics",
                 "cmax", "--weight", "80", "--out", str(out), "--plot", str(png),
                 "--quiet"]) == 0
    assert "standard-iv: cmax" in titles[-1] and "· 80 kg" in titles[-1]      # (weight once)
    sw = ketasim.sweep(m, "standard-iv", [("CL", np.geomspace(50, 150, 5)),
                                           ("V1", np.linspace(80, 200, 4))],
                       metrics=("cmax",), progress=False)
    fig = plot_heatmap(sw, "cmax", "t", analyte="ketamine (S + R)")
    ax, cb = fig.axes
    assert ax.get_ylabel() == "CL (L/h), log scale" and ax.get_xlabel() == "V1 (L)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["80", "120", "160", "200"]
    assert "ketamine (S + R)" in cb.get_ylabel() and "the analyte" not in cb.get_ylabel()
    plt.close(fig)


def test_population_figure_title_names_the_dose_and_weight(tmp_path, monkeypatch):
    """The bands figure's title named the course (standard-iv) but neither the dose per
    session nor the weight simulated (35 mg, 70 kg with the defaults): a slide of it could not
    say what the patients were given. A model without a weight effect gets no weight."""
    from ketasim import cli_population
    from ketasim.cli import main

    titles = []
    real = cli_population.plot_bands_figure
    monkeypatch.setattr(cli_population, "plot_bands_figure",
                        lambda b, title, *a, **k: titles.append(title) or real(b, title, *a, **k))
    png = tmp_path / "p.png"
    assert main(["population", "--n", "5", "--months", "1", "--plot", str(png), "-q"]) == 0
    assert "\n0.5 mg/kg (35 mg) IV infusion over 40 min · 70 kg; model-predicted" in titles[-1]
    assert main(["population", "--n", "5", "--months", "1", "--weight", "50", "--plot",
                 str(png), "-q"]) == 0
    assert "0.5 mg/kg (25 mg) IV infusion over 40 min · 50 kg" in titles[-1]
    assert main(["population", "--model", "esketamine-nasal", "--doses", "spravato", "--n",
                 "5", "--months", "1", "--plot", str(png), "-q"]) == 0
    assert "\n56 mg nasal spray; model-predicted" in titles[-1] and " kg" not in titles[-1]


def test_population_figure_says_plasma_or_effect_site():
    """The bands figure's concentration rows were labelled "ketamine (S + R) (ng/mL)": a
    slide did not say whether that was in plasma or at the effect site."""
    import matplotlib.pyplot as plt

    from ketasim.cli_population import plot_bands_figure

    m = ketasim.load_model("ketamine-iv")
    res = ketasim.population(m, ketasim.standard_iv_course(months=1), 5, metrics=("cmax",),
                             bands=True, band_outputs=("plasma", "ce_s"), progress=False)
    fig = plot_bands_figure(res.bands, "t", model=m)
    assert fig.axes[0].get_ylabel() == "ketamine (S + R)\nin plasma (ng/mL)"
    assert fig.axes[2].get_ylabel() == "S-ketamine\nat the effect site (ng/mL)"
    plt.close(fig)


def test_population_figure_says_when_its_bands_miss_the_peak(tmp_path):
    """With --band-step 1 the bands' median topped out at 105 ng/mL in the first session,
    a third below the median exact peak of 159 ng/mL printed in the summary, and the figure
    said nothing; on the default grid (every 5 minutes after a session) no note is drawn."""
    import matplotlib.pyplot as plt

    from ketasim.cli_population import _peaks_between_band_times, plot_bands_figure

    m = ketasim.load_model("ketamine-iv")
    d = ketasim.standard_iv_course(months=1)
    res = ketasim.population(m, d, 20, metrics=("cmax",), bands=1.0, progress=False)
    notes = _peaks_between_band_times(res, m, 0.0)
    exact = float(np.median(res["cmax_s1"]))
    assert len(notes) == 1 and f"median exact peak (cmax_s1) {exact:.0f} ng/mL" in notes[0]
    fig = plot_bands_figure(res.bands, "t", model=m, notes=notes)
    assert notes[0] in [t.get_text() for t in fig.texts]
    plt.close(fig)
    fine = ketasim.population(m, d, 20, metrics=("cmax",), bands=True, progress=False)
    assert _peaks_between_band_times(fine, m, 0.0) == []
    # a step longer than the close-up (--band-step 1e308: band times 0 and the end) had been
    # said as "the bands (every nan min)"
    for step, every in ((1e308, "every 1344 h"), (24.0, "every 24 h")):
        coarse = ketasim.population(m, d, 2, metrics=("cmax",), bands=step, progress=False)
        note = _peaks_between_band_times(coarse, m, 0.0)
        assert len(note) == 1 and f"the bands ({every}) pass below" in note[0], note


def test_population_figure_blames_the_band_grid_only_when_it_is_the_cause():
    """Nasal esketamine's subjects peak at different times, so the median curve stays below
    the median exact peak on any grid (on a 6-second grid as on the default one); the note had
    said "the bands (every 5 min) pass below the peaks", which a finer --band-step does not
    mend. It says so now; with a grid coarse against the peak times' spread it names both."""
    from ketasim.cli_population import _peaks_between_band_times

    m = ketasim.load_model("esketamine-nasal")
    age = {"age_y": np.full(200, 70.0)}
    fine = ketasim.population(m, "spravato", 200, covariates=age, bands=True, progress=False)
    note = _peaks_between_band_times(fine, m, 0.0)
    assert len(note) == 1 and note[0].endswith("subjects peak at different times"), note
    assert "the bands (" not in note[0]
    assert f"(cmax_s1) {np.median(fine['cmax_s1']):.3g} ng/mL" in note[0]
    coarse = ketasim.population(m, "spravato", 200, covariates=age, bands=1.0, progress=False)
    note = _peaks_between_band_times(coarse, m, 0.0)
    assert len(note) == 1 and "the bands (every 60 min) pass below the peaks, which " \
        "subjects reach at different times" in note[0], note


def test_heat_map_of_occupancy_names_its_calibration():
    """The heat map's colour bar said "model-predicted peak NMDA occupancy" without the Ki
    calibration the population figure names ("in-vivo Ki")."""
    import matplotlib.pyplot as plt

    from ketasim.cli_population import plot_heatmap

    sw = ketasim.sweep("ketamine-iv", ketasim.standard_iv_course(months=1),
                       [("CL", [80.0, 100.0]), ("V1", [100.0, 140.0])],
                       metrics=("peak_occupancy", "cmax"), progress=False)
    fig = plot_heatmap(sw, "peak_occupancy", "t", calibration="in-vivo")
    label = fig.axes[1].get_ylabel()
    assert "(in-vivo Ki)" in label.replace("\n", " ") and "in-\n" not in label
    plt.close(fig)
    fig = plot_heatmap(sw, "cmax", "t", calibration="in-vivo")
    assert "Ki" not in fig.axes[1].get_ylabel()
    plt.close(fig)


def test_sweep_heat_map_title_names_the_fixed_dose_and_weight(tmp_path, monkeypatch):
    """The heat map's title named neither the dose per session nor the weight that every grid
    point shares; what the grid varies is left to its axes."""
    from ketasim import cli_population
    from ketasim.cli import main

    titles = []
    real = cli_population.plot_heatmap
    monkeypatch.setattr(cli_population, "plot_heatmap",
                        lambda r, met, title, **k: titles.append(title) or real(r, met, title,
                                                                                **k))
    out, png = tmp_path / "s.csv", tmp_path / "h.png"
    base = ["sweep", "--months", "1", "--metrics", "cmax", "--out", str(out), "--plot",
            str(png), "-q"]
    assert main(base + ["--vary", "CL=80:100:2", "--vary", "V1=100:140:2"]) == 0
    assert "\n0.5 mg/kg (35 mg) IV infusion over 40 min · 70 kg\n" in titles[-1]
    assert main(base + ["--vary", "dose_mg_per_kg=0.5:1:2", "--vary", "CL=80:100:2"]) == 0
    assert "\n70 kg\n" in titles[-1] and "mg/kg (" not in titles[-1]
    assert main(base + ["--vary", "weight_kg=50:90:2", "--vary", "CL=80:100:2"]) == 0
    assert " kg" not in titles[-1].replace("mg/kg", "")


@pytest.mark.parametrize("bad", ["abc", [1.0], -1.0])
def test_population_and_sweep_name_a_bad_horizon(bad):
    """horizon_h='abc' had raised numpy's "could not convert string to float"."""
    d = ketasim.standard_iv_course(months=1)
    with pytest.raises(ketasim.KetasimInputError, match=r"horizon_h: got .*expected hours > 0"):
        ketasim.population("ketamine-iv", d, 2, horizon_h=bad, progress=False)
    with pytest.raises(ketasim.KetasimInputError, match=r"horizon_h: got .*expected hours > 0"):
        ketasim.sweep("ketamine-iv", d, [("CL", [90.0, 100.0])], horizon_h=bad, progress=False)


def test_population_summary_prints_a_washed_out_trough_as_below_a_bound(capsys):
    """The population summary had printed 'trough: 8.618e-27 ng/mL' where the course summary
    says '<0.005'."""
    from ketasim.cli import main

    assert main(["population", "--n", "5", "--quiet", "--metrics", "trough,cmax"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("trough:"))
    assert "<0.001" in line and "e-" not in line


def test_population_summary_of_one_subject_says_subject(capsys):
    from ketasim.cli import main

    assert main(["population", "--n", "1", "--quiet", "--metrics", "cmax"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("1 subject: median")
    assert main(["population", "--n", "2", "--quiet", "--metrics", "cmax"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("2 subjects: median")


def test_heat_map_draws_occupancy_in_percent_as_the_other_figures_do():
    """Peak occupancy had been on a 'fraction' colour bar where every other figure uses %."""
    import matplotlib.pyplot as plt

    from ketasim.cli_population import plot_heatmap

    m = ketasim.load_model("ketamine-iv")
    sw = ketasim.sweep(m, "standard-iv", [("CL", [80.0, 120.0]), ("V1", [80.0, 200.0])],
                       metrics=("peak_occupancy",), progress=False)
    fig = plot_heatmap(sw, "peak_occupancy", "t")
    ax, cb = fig.axes
    assert "% of receptors" in cb.get_ylabel() and "fraction" not in cb.get_ylabel()
    drawn = ax.collections[0].get_array()
    assert float(np.nanmax(drawn)) == pytest.approx(
        100 * float(np.nanmax(sw.columns["peak_occupancy"])))
    plt.close(fig)


def test_the_bands_figure_names_a_model_file_as_a_model_and_says_only_what_it_has(tmp_path):
    """The bands figure's caption had called any model with a citation a 'Preset' (a model
    file too), and said occupancy and the schematic response of a model that has neither."""
    from ketasim.cli_population import plot_bands_figure
    from ketasim.population import Bands

    m = tmp_path / "one.toml"
    m.write_text(ONE_CPT_TOML.replace('name = "one"', 'name = "one"\ncitation = "Me 2024"'))
    t = np.arange(0.0, 10.0)
    b = Bands(times_h=t, outputs=("plasma",), quantiles=(0.05, 0.5, 0.95),
              values=np.tile(np.linspace(90.0, 1.0, t.size), (1, 3, 1)),
              units={"plasma": "ng/mL"})
    texts = [x.get_text() for x in plot_bands_figure(b, "x", model=ketasim.load_model(m)).texts]
    assert "Model one: Me 2024" in texts and not any("Preset" in x for x in texts)
    assert not any("ccupancy" in x or "SCHEMATIC" in x for x in texts)
    texts = [x.get_text() for x in plot_bands_figure(
        b, "x", model=ketasim.load_model("ketamine-iv")).texts]
    assert any(x.startswith("Preset ketamine-iv: ") for x in texts)
    assert any("SCHEMATIC" in x for x in texts)


@pytest.mark.parametrize("extra_h", [-ONE_MONTH_HORIZON + 48.0, 100.0])
def test_bands_end_at_the_horizon_of_the_run(extra_h):
    """Bands (the default grid or a step) run to the population's horizon_h, as its metrics
    do: a run ending 48 h after the first dose had its bands up to 28 days after the course's
    last dose (sessions its metrics leave out), and one ending after that stopped short."""
    horizon = ONE_MONTH_HORIZON + extra_h
    for bands in (True, 6.0):
        r = population("ketamine-iv", ONE_MONTH, 5, 2, metrics=("auc",), bands=bands,
                       band_outputs=("plasma",), horizon_h=horizon, progress=False)
        t = r.bands.times_h
        assert t[0] == 0.0 and t[-1] == pytest.approx(horizon, rel=1e-12)
        curves = ketasim.simulate("ketamine-iv", ONE_MONTH, t,
                                  params=draw("ketamine-iv", 5, 2), weight_kg=np.full(5, 70.))
        y = curves.concentration("plasma")
        live = np.all(y > 1e-4, axis=0)
        width = 10 ** ((np.log10(BAND_RANGE[1]) - np.log10(BAND_RANGE[0])) / (BAND_BINS - 2))
        ref = np.percentile(y, 50, axis=0)
        assert np.all(np.abs(r.bands.get("plasma")["p50"][live] / ref[live] - 1) <= width - 1)


def test_default_bands_are_of_what_the_model_has():
    """bands=True without band_outputs: the main concentration and the occupancy where the
    model has it, as the CLI (a model without occupancy, or whose concentration is not
    called plasma, had been refused for outputs it was never asked for); occupancy asked of
    such a model is named under band_outputs."""
    model = ketasim.Model.from_dict({
        "parameters": {"V": 50.0, "CL": 10.0}, "compartments": {"central": "V"},
        "flows": [{"from": "central", "to": "out", "cl": "CL"}],
        "routes": {"iv": {"to": "central"}}})
    d = ketasim.Doses.single(100.0, "iv")
    r = population(model, d, 3, bands=[0.0, 1.0], metrics=("cmax",), progress=False)
    assert r.bands.outputs == ("central",)
    np.testing.assert_allclose(r.bands.get("central")["p50"], [2000.0, 2000.0 * math.exp(-0.2)],
                               rtol=0.0052)
    with pytest.raises(KetasimInputError, match=r"^band_outputs: .*'occupancy'"):
        population(model, d, 3, bands=True, band_outputs=("central", "occupancy"),
                   progress=False)
    r = population("ketamine-iv", ONE_MONTH, 2, metrics=("cmax",), bands=[0.0, 1.0],
                   progress=False)
    assert r.bands.outputs == ("plasma", "occupancy")


@pytest.mark.parametrize("step", [np.int64(4), np.float32(4.0), np.int32(4), np.array(4.0)])
def test_a_numpy_band_step_is_a_step(step):
    """bands=np.int64(4) is a step of 4 h, as bands=4 (it had been taken as the one band time
    4 h); so is a 0-d array, np.array(4.0)."""
    kw = dict(metrics=("cmax",), band_outputs=("plasma",), horizon_h=24.0, progress=False)
    got = population("ketamine-iv", ONE_MONTH, 2, bands=step, **kw).bands
    want = population("ketamine-iv", ONE_MONTH, 2, bands=4, **kw).bands
    np.testing.assert_array_equal(got.times_h, np.arange(0.0, 25.0, 4.0))
    np.testing.assert_array_equal(got.values, want.values)


def test_numpy_booleans_are_bands_on_and_off():
    """bands=np.True_ is bands=True and np.False_ no bands (both had been refused as band
    times)."""
    kw = dict(metrics=("cmax",), band_outputs=("plasma",), horizon_h=24.0, progress=False)
    on = population("ketamine-iv", ONE_MONTH, 2, bands=np.True_, **kw).bands
    np.testing.assert_array_equal(
        on.times_h, population("ketamine-iv", ONE_MONTH, 2, bands=True, **kw).bands.times_h)
    kw.pop("band_outputs")
    assert population("ketamine-iv", ONE_MONTH, 2, bands=np.False_, **kw).bands is None


@pytest.mark.parametrize("bands, says", [
    (np.timedelta64(1, "h"), "expected True, a step in hours or an array of band times"),
    ("4", "expected True, a step in hours or an array of band times"),
    ([3.0, 1.0], "not sorted"), ([-1.0], "expected times >= 0"), ([], "non-empty")])
def test_band_times_that_cannot_be_are_named_under_bands(bands, says):
    """Band times that are not sorted hours are refused under bands (the message had named
    times, which the caller had not given)."""
    with pytest.raises(KetasimInputError, match=f"^bands: .*{says}"):
        population("ketamine-iv", ONE_MONTH, 2, metrics=("cmax",), bands=bands,
                   progress=False)


def test_band_outputs_that_are_not_names_are_named():
    # (band_outputs=123 had failed with "TypeError: 'int' object is not iterable")
    with pytest.raises(KetasimInputError, match="band_outputs: got 123, expected an output"):
        population("ketamine-iv", ONE_MONTH, 2, bands=True, band_outputs=123, progress=False)


def test_population_and_sweep_take_dose_records_as_simulate_does():
    # (a list of dose records had been refused as "neither a file nor a course", with the
    # list's text as its name)
    rec = [{"time_h": 0, "amount_mg": 35, "route": "iv", "duration_h": 0.5},
           {"time_h": 48, "amount_mg": 35, "route": "iv", "duration_h": 0.5}]
    d = ketasim.Doses.from_records(rec)
    kw = dict(metrics=("cmax", "auc"), progress=False)
    _same(population("ketamine-iv", rec, 3, **kw)["auc"],
          population("ketamine-iv", d, 3, **kw)["auc"])
    a = sweep("ketamine-iv", rec, {"CL": [80.0, 90.0]}, **kw).to_dataframe()
    b = sweep("ketamine-iv", d, {"CL": [80.0, 90.0]}, **kw).to_dataframe()
    assert a.equals(b)


def test_python_default_metrics_are_those_the_model_has_and_named_ones_it_lacks_are_refused():
    """population() and sweep() with their default metrics on a model without occupancy gave
    peak_occupancy and time_above_occ_0.3 columns of NaN (the CLI leaves them out); naming
    one is refused with the model's name, as the CLI does. The numbers left are a one-
    compartment bolus: cmax = dose / V, auc = dose / CL."""
    model = ketasim.Model.from_dict({
        "parameters": {"V": 50.0, "CL": 10.0}, "compartments": {"central": "V"},
        "flows": [{"from": "central", "to": "out", "cl": "CL"}],
        "routes": {"iv": {"to": "central"}}})
    d = ketasim.Doses.single(100.0, "iv")
    r = population(model, d, 2, progress=False)
    assert r.metrics == ("cmax", "tmax", "auc", "trough")
    assert not any("occ" in c for c in r.columns)
    np.testing.assert_allclose(r.columns["cmax"], 100.0 / 50.0 * 1000.0, rtol=1e-12)
    np.testing.assert_allclose(r.columns["auc"], 100.0 / 10.0 * 1000.0 * (1 - math.exp(
        -10.0 / 50.0 * ketasim.engine.default_horizon_h(d))), rtol=1e-9)
    sw = sweep(model, d, {"CL": [5.0, 10.0]}, progress=False)
    assert not any("occ" in c for c in sw.columns)
    np.testing.assert_allclose(sw.columns["cmax"], 2000.0, rtol=1e-12)
    for named in (("cmax", "peak_occupancy"), ("time_above_occ_0.3",), ("peak_glutamate",)):
        with pytest.raises(KetasimInputError,
                           match=rf"^metrics: {named[-1]} needs .*model 'model' has none"):
            population(model, d, 2, metrics=named, progress=False)
        with pytest.raises(KetasimInputError, match=rf"^metrics: {named[-1]} needs"):
            sweep(model, d, {"CL": [5.0, 10.0]}, metrics=named, progress=False)
    # a model with occupancy: the default set is the whole DEFAULT_METRICS, as before
    r = population("ketamine-iv", ONE_MONTH, 2, progress=False)
    assert r.metrics == DEFAULT_METRICS
    assert np.all(np.isfinite(r.columns["peak_occupancy"]))


def test_python_covariates_take_a_subject_column_as_the_cli_file_does(tmp_path):
    """covariates= with a subject column (a dict or a DataFrame, as --covariates reads a CSV
    with one) had been refused as "unknown column 'subject'": rows are matched to subjects
    by it, in any order. The same subjects with rows in subject order, and the CLI with the
    same table, give the same numbers; a 50 kg subject's peak after a 35 mg infusion is above
    an 80 kg subject's."""
    d = ketasim.Doses.single(35.0, "iv", duration_h=2 / 3)
    kw = dict(metrics=("cmax", "auc"), variability=False, progress=False)
    ref = population("ketamine-iv", d, 3, covariates={"weight_kg": [50.0, 80.0, 65.0]}, **kw)
    shuffled = {"subject": [1, 2, 0], "weight_kg": [80.0, 65.0, 50.0]}
    got = population("ketamine-iv", d, 3, covariates=shuffled, **kw)
    pd = pytest.importorskip("pandas")
    frame = population("ketamine-iv", d, 3, covariates=pd.DataFrame(shuffled), **kw)
    for r in (got, frame):
        assert list(r.columns["weight_kg"]) == [50.0, 80.0, 65.0]
        _same(r.columns["cmax"], ref.columns["cmax"])
        _same(r.columns["auc"], ref.columns["auc"])
    assert ref.columns["cmax"][0] > ref.columns["cmax"][2] > ref.columns["cmax"][1]
    # the command line, its --covariates file in the same order
    csv_d = tmp_path / "d.csv"
    csv_d.write_text("time_h,amount_mg,route,duration_h\n0,35,iv,0.6666666666666666\n")
    cov = tmp_path / "cov.csv"
    cov.write_text("subject,weight_kg\n1,80\n2,65\n0,50\n")
    out = tmp_path / "p.csv"
    assert main(["population", "--doses", str(csv_d), "--n", "3", "--covariates", str(cov),
                 "--no-variability", "--metrics", "cmax", "--out", str(out), "-q"]) == 0
    rows = [ln.split(",") for ln in out.read_text().splitlines() if not ln.startswith("#")]
    j = rows[0].index("cmax")
    np.testing.assert_allclose([float(r[j]) for r in rows[1:]], ref.columns["cmax"],
                               rtol=1e-9)
    # the same checks as the file's
    for bad, fragment in (({"subject": [0, 5, 1], "weight_kg": [60.0, 70.0, 80.0]},
                           r"covariates\['subject'\]: got 5; expected each of the subjects 0 "
                           "to 2 once"),
                          ({"subject": [0, 0, 1], "weight_kg": [60.0, 70.0, 80.0]},
                           "a subject appears twice"),
                          ({"subject": [0, 1, 2]}, "only subject")):
        with pytest.raises(KetasimInputError, match=fragment):
            population("ketamine-iv", d, 3, covariates=bad, **kw)


def test_a_horizon_before_later_sessions_warns_how_many_are_left_out():
    """horizon_h before the last sessions left them out of the metrics without a word. The
    standard course over 6 months has sessions on days 0, 2, 4, 7, 10, 14, 21, 28, then every
    28 days to day 168 (13): a horizon at day 10 keeps the first 4 and says 9 are left out,
    once per call (not once per chunk of subjects); a horizon after the last session, or the
    default, says nothing."""
    import warnings

    d = ketasim.standard_iv_course(0.5, 70, 6)
    days = [0, 2, 4, 7, 10, 14, 21, 28] + list(range(56, 169, 28))
    np.testing.assert_array_equal(session_starts_days(d), days)
    msg = r"horizon_h = 240 h: 9 of 13 sessions \(9 doses\) start at or after it \(from day 10\)"
    with pytest.warns(ketasim.KetasimWarning, match=msg) as got:
        sm = session_metrics("ketamine-iv", d, metrics=("cmax",), horizon_h=240.0)
    assert len(got) == 1
    np.testing.assert_array_equal(sm["session_start_h"], [0, 48, 96, 168])
    with pytest.warns(ketasim.KetasimWarning, match=msg) as got:
        population("ketamine-iv", d, 3, metrics=("cmax",), horizon_h=240.0, chunk_size=1,
                   progress=False)
    assert len(got) == 1
    with pytest.warns(ketasim.KetasimWarning, match="sweep: " + msg) as got:
        sweep("ketamine-iv", d, {"CL": [80.0, 90.0]}, metrics=("cmax",), horizon_h=240.0,
              chunk_size=1, progress=False)
    assert len(got) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", ketasim.KetasimWarning)
        session_metrics("ketamine-iv", d, metrics=("cmax",), horizon_h=169 * 24.0)
        session_metrics("ketamine-iv", d, metrics=("cmax",))
        population("ketamine-iv", d, 2, metrics=("cmax",), progress=False)


def session_starts_days(d):
    return ketasim.engine.session_starts(d) / 24.0


def test_heat_map_ticks_are_round_numbers_with_a_tick_at_each_grid_value():
    """V1 = 80:200:8 had been labelled 80, 97.143, 114.29, 131.43 ... at the cells, and
    log:0.1:10:7 0.1, 0.215, 0.464 ...: an axis of such grid values is now labelled at round
    numbers (1-2-2.5-5 steps; 1-2-5 on a log scale), with an unlabelled tick at each grid
    value; round grid values (0.25, 0.5, 0.75, 1) keep their own labels at the cells."""
    from ketasim.cli_population import plot_heatmap

    def Two(a, b):
        return _sweep_stub(("V1", "CL"), {"V1": "L", "CL": "L/h", "cmax": "ng/mL"}, a, b,
                           np.add.outer(np.log(a), np.log(b)))

    def shown(axis):
        lo, hi = sorted(axis.get_view_interval())
        return [(loc, lab.get_text()) for loc, lab in zip(axis.get_majorticklocs(),
                                                          axis.get_ticklabels())
                if lo <= loc <= hi and lab.get_text()]

    def round_number(m, mantissas=(1, 2, 2.5, 5, 10)):
        e = np.floor(np.log10(abs(m)))
        return any(np.isclose(m / 10 ** e, f) for f in mantissas)

    v1, cl = np.linspace(80, 200, 8), np.geomspace(0.1, 10, 7)
    fig = plot_heatmap(Two(v1, cl), "cmax", "t")
    fig.canvas.draw()
    ax = fig.axes[0]
    for axis, grid, log in ((ax.yaxis, v1, False), (ax.xaxis, cl, True)):
        ticks = shown(axis)
        assert len(ticks) >= 4, ticks
        values = [float(t) for _, t in ticks]
        assert np.allclose(values, [loc for loc, _ in ticks])
        if log:       # 0.1, 0.2, 0.5, 1 ...
            assert all(round_number(x, (1, 2, 5, 10)) for x in values), ticks
        else:         # one round step: 80, 100, 120 ...
            steps = np.diff(values)
            assert np.allclose(steps, steps[0]) and round_number(steps[0]), ticks
        # a tick at each cell's centre (a minor one, or the labelled one where they meet)
        locs = np.r_[axis.get_minorticklocs(), axis.get_majorticklocs()]
        assert all(np.isclose(locs, g).any() for g in grid)
    texts = [t for _, t in shown(ax.yaxis) + shown(ax.xaxis)]
    assert "97.143" not in texts and "0.215" not in texts
    # a log axis over less than a decade: at least three round labels (CL = log:50:150:9
    # had been labelled 50 and 100 only, the other seven rows left to guess)
    for lo, hi, want in ((50, 150, ["50", "70", "100", "150"]), (2, 5, ["2", "3", "5"]),
                         (0.12, 0.5, ["0.15", "0.2", "0.3", "0.5"])):
        fig = plot_heatmap(Two(np.geomspace(lo, hi, 9), cl), "cmax", "t")
        fig.canvas.draw()
        assert [t for _, t in shown(fig.axes[0].yaxis)] == want
    # round grid values: labelled as they are, at the cells
    fig = plot_heatmap(Two(np.linspace(50, 100, 6), np.array([0.25, 0.5, 0.75, 1.0])), "cmax",
                       "t")
    fig.canvas.draw()
    ax = fig.axes[0]
    assert [t for _, t in shown(ax.xaxis)] == ["0.25", "0.5", "0.75", "1"]
    assert [t for _, t in shown(ax.yaxis)] == ["50", "60", "70", "80", "90", "100"]


def test_population_figure_rows_name_their_outputs_in_words_with_units():
    """The population figure had labelled its rows with output names (``s_central``,
    ``ce_s``, ``ce_s_nor``, ``consolidation``, ``occupancy (low)``); they are named as the
    course figure names them, with where the drug is and its unit."""
    import matplotlib.pyplot as plt

    from ketasim.cli_population import plot_bands_figure

    m = ketasim.load_model("ketamine-iv")
    outs = ("s_central", "ce_s", "ce_s_nor", "occupancy_low", "consolidation", "plasticity")
    res = ketasim.population(m, ONE_MONTH, 5, metrics=("cmax",), bands=True,
                             band_outputs=outs, progress=False)
    fig = plot_bands_figure(res.bands, "t", model=m)
    labels = [" ".join(fig.axes[2 * r].get_ylabel().split()) for r in range(len(outs))]
    plt.close(fig)
    assert labels == [
        "S-ketamine in plasma (ng/mL)",
        "S-ketamine at the effect site (ng/mL)",
        "S-norketamine at the effect site (ng/mL)",
        "NMDA occupancy, lowest over Ki calibrations (in-vitro, in-vivo) % of receptors, "
        "model-predicted",
        "consolidated plasticity (slow) (SCHEMATIC) (index 0-1)",
        "plasticity index (SCHEMATIC) (index 0-1)"]
    n = ketasim.load_model("esketamine-nasal")
    res = ketasim.population(n, resolve_doses("spravato", months=1), 3, metrics=("cmax",),
                             bands=True,
                             band_outputs=("metabolite", "ce", "liver"), progress=False)
    fig = plot_bands_figure(res.bands, "t", model=n)
    labels = [" ".join(fig.axes[2 * r].get_ylabel().split()) for r in range(3)]
    plt.close(fig)
    assert labels == ["noresketamine in plasma (ng/mL)", "esketamine at the effect site (ng/mL)",
                      "compartment liver (ng/mL)"]


def test_population_figure_names_the_calibrations_and_is_laid_out_as_the_others():
    """The population figure's occupancy_low/_high rows had said "lowest over the Ki
    calibrations" without naming them (the course figure says "range over Ki calibrations
    (in-vitro, in-vivo)"); its caption was 9 pt where every other figure's is CAPTION_PT; and
    about half an inch was left blank under its title."""
    import matplotlib.pyplot as plt

    from ketasim.cli_population import plot_bands_figure
    from ketasim.plotting import CAPTION_PT

    m = ketasim.load_model("ketamine-iv")
    cals = ", ".join(m.calibrations)
    res = ketasim.population(m, ONE_MONTH, 3, metrics=("cmax",), bands=True,
                             band_outputs=("occupancy", "occupancy_low", "occupancy_high"),
                             progress=False)
    fig = plot_bands_figure(res.bands, "a title\non two lines", model=m)
    try:
        labels = [" ".join(fig.axes[2 * r].get_ylabel().split()) for r in range(3)]
        assert labels[1].startswith(f"NMDA occupancy, lowest over Ki calibrations ({cals})")
        assert labels[2].startswith(f"NMDA occupancy, highest over Ki calibrations ({cals})")
        assert "in-vivo" in cals and "in-vitro" in cals
        # the default calibration's row keeps "(in-vivo Ki)" on one line
        assert any(line.endswith("Ki)") and "(" in line
                   for line in fig.axes[0].get_ylabel().split("\n")), fig.axes[0].get_ylabel()
        caption = [t for t in fig.texts if t.get_text() != fig._suptitle.get_text()]
        assert caption and {t.get_fontsize() for t in caption} == {CAPTION_PT}
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        title = fig._suptitle.get_window_extent(r)
        panels = max(ax.title.get_window_extent(r).y1 for ax in fig.axes[:2])
        gap = (title.y0 - panels) / fig.dpi
        assert 0.05 < gap < 0.25, gap
        assert fig.bbox.y1 - title.y1 < 0.15 * fig.dpi          # near the top, inside it
    finally:
        plt.close(fig)


def test_population_caption_lines_of_digits_stay_inside_the_figure():
    """The caption was wrapped at a width in characters estimated from an average letter:
    a line of digits (wider) ran past the figure's right edge and was cut."""
    import matplotlib.pyplot as plt

    from ketasim.cli_population import plot_bands_figure

    m = ketasim.load_model("ketamine-iv")
    res = ketasim.population(m, ONE_MONTH, 3, metrics=("cmax",), bands=True,
                             band_outputs=("plasma",), progress=False)
    note = "plasma: not drawn at " + " ".join(["1,234,567.890 of 9,876,543.210"] * 12)
    fig = plot_bands_figure(res.bands, "t", model=m, notes=[note])
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    caption = [t for t in fig.texts if t.get_text() and t is not fig._suptitle]
    assert len(caption) > 2
    for t in caption:
        box = t.get_window_extent(r)
        assert box.x0 >= 0 and box.x1 <= fig.bbox.x1, (t.get_text(), box)
    shown = " ".join(t.get_text() for t in caption)
    assert shown.count("9,876,543.210") == 12            # nothing left out
    plt.close(fig)


@pytest.mark.parametrize("plot_metric, n, ok", [
    ("cmx", None, False), ("cmax_p50", None, False), ("cmax", "2", False),
    ("cmax_s0", None, False), ("cmax_s", None, False), ("cmax", None, True),
    ("cmax_s2", None, True), ("auc_s1_p95", "2", True), ("CL", "2", True)])
def test_sweep_plot_metric_is_checked_before_the_run(tmp_path, capsys, monkeypatch,
                                                     plot_metric, n, ok):
    """A misspelt --plot-metric had been refused only after the whole sweep ran."""
    import sys

    P = sys.modules["ketasim.population"]
    ran = []
    real = P.sweep
    monkeypatch.setattr(P, "sweep", lambda *a, **k: ran.append(1) or real(*a, **k))
    out, fig = tmp_path / "s.csv", tmp_path / "h.png"
    argv = ["sweep", "--months", "1", "--metrics", "cmax,auc", "--vary", "CL=80:120:2",
            "--vary", "V1=80:120:2", "--out", str(out), "--plot", str(fig),
            "--plot-metric", plot_metric, "-q"] + (["--n", n] if n else [])
    rc = main(argv)
    err = capsys.readouterr().err
    if ok:
        assert rc == 0 and ran and fig.exists()
    else:
        assert rc == 1 and not ran and "--plot-metric" in err and err.count("\n") == 1
        assert list(tmp_path.iterdir()) == []


def test_an_output_named_twice_has_one_band():
    """band_outputs=('occupancy', 'occupancy') had kept occupancy twice in the bands (the
    CLI's CSV dropped the second quietly)."""
    res = population("ketamine-iv", ONE_MONTH, 3, 1, bands=True, progress=False,
                     band_outputs=("occupancy", "plasma", "occupancy"))
    once = population("ketamine-iv", ONE_MONTH, 3, 1, bands=True, progress=False,
                      band_outputs=("occupancy", "plasma"))
    assert list(res.bands.outputs) == ["occupancy", "plasma"]
    cols, ref = res.bands.columns(), once.bands.columns()
    assert list(cols) == list(ref)
    for k in ref:
        np.testing.assert_array_equal(cols[k], ref[k])


def test_a_refused_typical_value_is_named_as_given_not_as_drawn():
    """--param CL=-1 in a population had been refused as 'CL = -0.745196 for subject 1 of 10',
    a value drawn around the one given, which the user never typed; the typical value is
    checked first and named as given."""
    with pytest.raises(KetasimInputError, match=r"^params \(--param\): the model refuses the "
                       r"typical values: .*evaluated to -1 L/h \(from CL = -1,") as e:
        population("ketamine-iv", ONE_MONTH, 10, params={"CL": -1.0}, progress=False)
    assert "subject" not in str(e.value)
    # a valid typical value whose draws are all accepted still runs
    ok = population("ketamine-iv", ONE_MONTH, 3, params={"CL": 80.0}, metrics=("cmax",),
                    progress=False)
    assert np.all(np.isfinite(ok["cmax"]))


def test_band_outputs_without_bands_are_refused():
    """population(band_outputs=["plasma"]) without bands had returned no bands and said
    nothing (the CLI refuses --band-outputs without --bands or --plot)."""
    with pytest.raises(KetasimInputError, match=r"^band_outputs: got \['plasma'\] without "
                       r"bands; expected bands=True"):
        population("ketamine-iv", ONE_MONTH, 2, band_outputs=["plasma"], progress=False)
    assert population("ketamine-iv", ONE_MONTH, 2, bands=True, band_outputs=["plasma"],
                      progress=False).bands.outputs == ("plasma",)


def test_bands_that_fit_memory_only_once_are_refused_before_the_run(monkeypatch):
    """The band check counted the run's histograms once, but while a chunk is counted three
    are held (the run's, the chunk's own and NumPy's bincount of it: 3.0x the histograms'
    size measured with tracemalloc), so bands at a one-minute step over a six-month course
    (about 18 GiB of histograms) had passed the check on a 24-GiB machine and then run out of
    memory. Now all three are counted before anything runs."""
    import importlib

    eng = importlib.import_module("ketasim.engine")
    pop = importlib.import_module("ketasim.population")    # (ketasim.population: the function)
    times = np.linspace(0.0, 24.0, 64)
    hist = 2 * times.size * BAND_BINS * 8               # plasma and occupancy, int64 counts
    monkeypatch.setattr(eng, "_available_bytes", lambda: int(2 * hist / 0.8))   # fits 2, not 3
    ran = []
    monkeypatch.setattr(pop, "_execute", lambda *a, **k: ran.append(1) or iter(()))
    with pytest.raises(KetasimInputError, match=r"band histograms: 2 outputs x 64 times x "
                                                r"4096 bins, three copies"):
        population("ketamine-iv", ketasim.Doses.single(35.0, "iv"), 2, bands=times,
                   metrics=["cmax"])
    assert not ran


def test_band_counting_holds_no_histogram_per_output():
    """Each chunk had counted its curves into histograms of its own, the size of the run's
    (R outputs x T times x 4096 bins), with a bincount over all of them for each output and
    sub-chunk: a chunk cost R times the histograms' size however few its subjects, and the
    chunks' sizing (about half a second each) then ran bands of many outputs one subject a
    chunk (300 subjects with 21 band outputs: over 10 minutes, now about 10 s); three
    histograms' worth of memory were held. A local run now counts into the run's histograms,
    each time point over the bins its values span; the bands are the same."""
    import tracemalloc

    from ketasim.result import PD_OUTPUTS

    times = np.linspace(0.0, 48.0, 40)
    outs = ["plasma", "s_central", "r_central", "occupancy", "glutamate", "plasticity"]
    hist = len(outs) * times.size * BAND_BINS * 8       # int64 counts of the whole run
    d = ketasim.Doses.single(35.0, "iv")
    population("ketamine-iv", d, 3, bands=times, band_outputs=outs, metrics=["cmax"],
               progress=False)                          # (compiled before it is measured)
    tracemalloc.start()
    try:
        res = population("ketamine-iv", d, 30, seed=4, bands=times, band_outputs=outs,
                         metrics=["cmax"], progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2.5 * hist, f"peak {peak / hist:.2f}x the histograms"
    sim = ketasim.simulate("ketamine-iv", d, times, outputs=outs,
                           params={"CL": res["param_CL"]})
    for j, o in enumerate(outs):
        y = sim.data[:, sim.names.index(o), :] * (1.0 if o in PD_OUTPUTS else 1000.0)
        if o == "glutamate":
            y = y - 1.0
        q = np.quantile(y, [0.05, 0.5, 0.95], axis=0)
        got = res.bands.values[j] - (1.0 if o == "glutamate" else 0.0)
        ok = q > 1e-3
        np.testing.assert_allclose(got[ok], q[ok], rtol=0.0052)


@pytest.mark.parametrize("run", ["population", "sweep"])
def test_progress_is_a_switch(run, monkeypatch):
    """progress=0 or np.False_ had shown the bar (only ``progress is False`` turned it off),
    and the text 'no' had shown it too."""
    import importlib

    pop = importlib.import_module("ketasim.population")
    seen = []
    monkeypatch.setattr(pop, "_progress_bar", lambda total, progress, desc: seen.append(progress))
    d = ketasim.Doses.single(35.0, "iv")

    def call(progress):
        if run == "population":
            return population("ketamine-iv", d, 2, metrics=["cmax"], progress=progress)
        return sweep("ketamine-iv", d, {"CL": [90.0, 100.0]}, metrics=["cmax"],
                     progress=progress)
    for off in (0, np.False_, False):
        call(off)
    assert seen == [False, False, False]
    with pytest.raises(KetasimInputError, match=r"progress: got 'no', expected True or False"):
        call("no")


def test_plot_bands_days_is_a_switch():
    """plot_bands(days="no") had drawn the time axis in days (any text is true): days takes
    True or False (a NumPy bool, 0 or 1), as progress= does, or None for the default."""
    from ketasim.plotting import plot_bands

    y, t = np.ones((3, 5)), np.arange(5.0)
    for days, unit in ((True, "days"), (np.False_, "hours"), (1, "days"), (None, "hours")):
        assert plot_bands(y, times=t, days=days).axes[0].get_xlabel() == unit
    for bad in ("yes", "no", 2, 0.5):
        with pytest.raises(KetasimInputError,
                           match=rf"^plot_bands: days: got {bad!r}, expected True or False$"):
            plot_bands(y, times=t, days=bad)


def test_a_populations_info_names_its_course_and_the_analyte_its_metrics_describe():
    """info['analyte'] had said 'plasma' for a model without plasma, whose metrics describe
    its first concentration, and info['doses'] had said 'course' for a course named as
    'standard-iv' (a sweep's said 'standard-iv')."""
    import tomllib

    from test_bad_inputs import GOOD_MODEL

    spec = tomllib.loads(GOOD_MODEL)
    spec["variability"] = {"cv_pct": {"CL": 30.0}}
    m = ketasim.Model.from_dict(spec, source="one-cpt")
    res = population(m, ketasim.Doses.single(10.0, "iv"), 2, metrics=["cmax"])
    assert res.info["analyte"] == "central" and res.info["doses"] == "<doses>"
    res = population("ketamine-iv", "standard-iv", 2, metrics=["cmax"])
    assert res.info["analyte"] == "plasma" and res.info["doses"] == "standard-iv"


@pytest.mark.parametrize("run", ["population", "sweep"])
def test_a_typical_value_given_as_a_0d_array_is_its_number(run):
    """params={'CL': np.array(90.0)} had been refused ('expected a finite number') by a
    population or sweep, though simulate() takes it, and so does weight_kg=np.array(70.0)."""
    d = ketasim.Doses.single(35.0, "iv", duration_h=0.5)
    if run == "population":
        a = population("ketamine-iv", d, 3, params={"CL": np.array(90.0)}, metrics=["cmax"])
        b = population("ketamine-iv", d, 3, params={"CL": 90.0}, metrics=["cmax"])
    else:
        a = sweep("ketamine-iv", d, {"V1": [20.0, 30.0]}, params={"CL": np.array(90.0)},
                  metrics=["cmax"])
        b = sweep("ketamine-iv", d, {"V1": [20.0, 30.0]}, params={"CL": 90.0},
                  metrics=["cmax"])
    assert np.array_equal(a["cmax"], b["cmax"])



def test_a_figure_title_says_the_weight_once(tmp_path, monkeypatch):
    # '... | weight 80 kg: cmax_p50 ...' and then '... · 80 kg' on the dose line
    from ketasim import cli_population

    titles = []
    heat, bands = cli_population.plot_heatmap, cli_population.plot_bands_figure
    monkeypatch.setattr(cli_population, "plot_heatmap", lambda res, metric, title, **k:
                        titles.append(title) or heat(res, metric, title, **k))
    monkeypatch.setattr(cli_population, "plot_bands_figure", lambda b, title, *a, **k:
                        titles.append(title) or bands(b, title, *a, **k))
    common = ["--months", "1", "--weight", "80", "--metrics", "cmax", "-q"]
    assert main(["sweep", "--vary", "CL=60:120:2", "--vary", "V2=100:200:2", "--n", "3",
                 "--out", str(tmp_path / "s.csv"), "--plot", str(tmp_path / "s.png")]
                + common) == 0
    assert main(["population", "--n", "5", "--out", str(tmp_path / "p.csv"), "--plot",
                 str(tmp_path / "p.png")] + common) == 0
    assert len(titles) == 2
    for t in titles:
        assert t.count("80 kg") == 1 and "months 1" in t, t
    # a model without a weight effect keeps it among the options (its dose line has none)
    assert main(["population", "--model", "esketamine-nasal", "--doses", "spravato", "--n",
                 "5", "--out", str(tmp_path / "n.csv"), "--plot", str(tmp_path / "n.png")]
                + common) == 0
    assert "weight 80 kg" in titles[-1]


def test_a_heat_maps_colour_bar_keeps_s_plus_r_on_one_line(tmp_path, monkeypatch):
    # the description had been wrapped inside '(S + R)': 'ketamine (S' / '+ R), whole course'
    from ketasim import cli_population

    figs = []
    heat = cli_population.plot_heatmap
    monkeypatch.setattr(cli_population, "plot_heatmap", lambda *a, **k:
                        figs.append(heat(*a, **k)) or figs[-1])
    assert main(["sweep", "--vary", "CL=60:120:2", "--vary", "V2=100:200:2", "--months", "1",
                 "--metrics", "cmax", "--out", str(tmp_path / "s.csv"), "--plot",
                 str(tmp_path / "s.png"), "-q"]) == 0
    label = figs[0].axes[1].get_ylabel()
    assert "(S + R)" in label and not any(
        ln.rstrip().endswith("(S") for ln in label.splitlines()), label


@pytest.mark.parametrize("cmd", ["population", "sweep"])
def test_metrics_help_names_every_metric(cmd):
    """--metrics' help names every metric a population or sweep can give (it named only the
    default set and time_above_occ_<X>, so time_above_conc_<X>, peak_glutamate,
    plasticity_end and consolidation_end were found only in the README or an error)."""
    from ketasim.cli import build_parser

    sub = next(a for a in build_parser()._actions if hasattr(a, "choices") and a.choices)
    act = next(a for a in sub.choices[cmd]._actions if "--metrics" in a.option_strings)
    text = " ".join(act.help.split())
    for name in ("cmax", "tmax", "auc", "trough", "peak_occupancy", "time_above_occ_<X>",
                 "time_above_conc_<X>", "peak_glutamate", "plasticity_end",
                 "consolidation_end"):
        assert name in text, name


def test_a_long_covariates_file_is_read_in_memory_about_its_size(tmp_path):
    """A covariates CSV of many short rows (a results table given by mistake, say) had been
    held as a list of every line: 60 times the file's size in memory (5.6 GB for 90 MB, and
    past any laptop's memory within the 512 MiB the file may have). It is read a line at a
    time, and a file of too many rows is refused at the first row too many."""
    import tracemalloc

    from ketasim.cli_population import _read_covariates

    f = tmp_path / "cov.csv"
    f.write_text("weight_kg\n" + "7\n" * 2_000_000)
    tracemalloc.start()
    try:
        with pytest.raises(KetasimInputError) as exc:
            _read_covariates(f, 2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * f.stat().st_size
    assert "has more than 2 rows, expected 2 (one per subject, --n)" in str(exc.value)
    f.write_text("# weights\nweight_kg\n\n70\n# the second\n80\n")
    assert list(_read_covariates(f, 2)["weight_kg"]) == [70.0, 80.0]
    with pytest.raises(KetasimInputError, match="has 2 rows, expected 3"):
        _read_covariates(f, 3)
    f.write_text("weight_kg\r\n70\r\nx\r\n")
    with pytest.raises(KetasimInputError, match="line 3, weight_kg: got 'x'"):
        _read_covariates(f, 2)


def test_a_drawn_subject_the_model_refuses_is_named_by_its_subject_number():
    """A subject drawn with a rate above the model's limit had been named by its place in the
    chunk ('for subject 661 of 2049' for subject 1610 of a population of 3000), so the name
    changed with chunk_size, and a chunk of one subject named none; it is named as in the
    subject column, in populations and sweeps alike."""
    m = ketasim.Model.from_dict({
        "parameters": {"K": 2e5, "V": 50.0},
        "compartments": {"central": "V"},
        "flows": [{"from": "central", "to": "out", "k": "K"}],
        "routes": {"iv": {"to": "central"}},
        "variability": {"omega2": {"K": 1.0}}})
    doses = [{"time_h": 0.0, "amount_mg": 10.0, "route": "iv"}]
    bad = np.flatnonzero(draw(m, 40, seed=0)["K"] > 1e6)
    assert bad.size and bad[0] > 0
    for chunk in (1, 7, 40):
        with pytest.raises(KetasimInputError,
                           match=rf"^subject {bad[0]} \(from 0, as in the subject column\): "
                           r".*k = K gives a rate of [0-9.e+]+ 1/h, expected at most") as e:
            population(m, doses, 40, seed=0, metrics=("cmax",), chunk_size=chunk,
                       progress=False)
        assert "for subject" not in str(e.value)
    with pytest.raises(KetasimInputError, match=rf"^subject {bad[0]} \(from 0\) of the grid "
                       r"point V = 50, weight_kg = 70: .*k = K gives a rate"):
        ketasim.sweep(m, doses, {"V": [50.0, 60.0]}, n=40, seed=0, metrics=("cmax",),
                      chunk_size=7, progress=False)


def test_covariate_weights_the_model_does_not_use_are_said_to_change_nothing(tmp_path, capsys):
    """--weight 100 with esketamine-nasal (no weight effect) is warned about, but a
    --covariates table's weight_kg column was taken without a word, and written into the
    table as if it had changed each subject's numbers."""
    cov = tmp_path / "cov.csv"
    cov.write_text("weight_kg\n50\n120\n")
    assert main(["population", "--model", "esketamine-nasal", "--doses", "spravato",
                 "--months", "1", "--n", "2", "--covariates", str(cov), "--metrics", "cmax",
                 "--out", str(tmp_path / "p.csv"), "-q"]) == 0
    assert ("model 'esketamine-nasal' has no weight effect (no weight covariate, doses in mg): "
            f"--covariates {cov} (weight_kg) changes nothing" in capsys.readouterr().err)
    dz = tmp_path / "d.csv"
    dz.write_text("time_h,amount_mg,route,duration_h\n0,35,iv,0.5\n")
    assert main(["population", "--doses", str(dz), "--n", "2", "--covariates", str(cov),
                 "--metrics", "cmax", "--out", str(tmp_path / "q.csv"), "-q"]) == 0
    assert "weight effect" not in capsys.readouterr().err      # ketamine-iv scales with it


def test_drawn_parameters_are_at_the_reference_weight_only_where_weight_matters():
    """The param_* columns are the values drawn at the model's reference weight: said for
    ketamine-iv (weight scales its parameters), not for esketamine-nasal, which has no
    weight effect (its values had been said to be "at 70 kg" too)."""
    iv = population("ketamine-iv", ONE_MONTH, 2, metrics=("cmax",), progress=False)
    assert iv.units["param_CL"] == "L/h at 70 kg"
    nasal = population("esketamine-nasal", "spravato", 2, metrics=("cmax",), progress=False)
    assert nasal.units["param_QH"] == "L/h" and nasal.units["param_V1"] == "L"


def test_figure_titles_name_input_files_by_their_names(tmp_path, monkeypatch):
    """A population or sweep figure's title had carried the whole path of --doses and
    --covariates across the slide ('(/home/.../study/d.csv | covariates /home/.../cov.csv)');
    it names each file alone, while the table's header line keeps the paths as given."""
    titles = _figure_titles(monkeypatch)
    study = tmp_path / "study"
    study.mkdir()
    (study / "d.csv").write_text("time_h,amount_mg,route\n0,56,intranasal\n72,56,intranasal\n")
    (study / "cov.csv").write_text("subject,age_y\n0,70\n1,40\n")
    out = tmp_path / "p.csv"
    assert main(["population", "--model", "esketamine-nasal", "--doses", str(study / "d.csv"),
                 "--n", "2", "--covariates", str(study / "cov.csv"), "--out", str(out),
                 "--plot", str(tmp_path / "p.png"), "--quiet"]) == 0
    assert "(d.csv | covariates cov.csv)" in titles[0] and str(study) not in titles[0]
    head = out.read_text().splitlines()[0]
    assert f"doses {study / 'd.csv'}" in head and f"covariates {study / 'cov.csv'}" in head
    assert main(["sweep", "--model", "esketamine-nasal", "--doses", str(study / "d.csv"),
                 "--vary", "QH=100:150:2", "--vary", "V1=100:150:2", "--metrics", "cmax",
                 "--out", str(tmp_path / "s.csv"), "--plot", str(tmp_path / "s.png")]) == 0
    assert titles[1].startswith("esketamine-nasal, d.csv") and str(study) not in titles[1]


COURSE_FILE = """amount_mg = 35
route = "iv"
duration_h = 0.6667
months = 2
[[phase]]
weeks = 2
per_week = 3
[[phase]]
every_days = 14
"""


def test_a_sweep_varies_the_months_of_a_course_file(tmp_path, capsys):
    """A course file's length is varied as a course's is (``--vary months=1:3:3``), each grid
    point the file's dose table of that many months, as ``--months`` sets it: it had been
    refused as a course parameter needing a course name. Given with --months too, it is
    refused, as for a course."""
    f = tmp_path / "c.toml"
    f.write_text(COURSE_FILE)
    res = sweep("ketamine-iv", str(f), {"months": [1.0, 3.0]}, metrics=("cmax", "auc"),
                progress=False)
    for i, months in enumerate((1.0, 3.0)):
        ref = session_metrics("ketamine-iv", ketasim.read_course_toml(f, months=months))
        np.testing.assert_allclose(res["auc"][i], ref["auc"][0], rtol=1e-12)
        np.testing.assert_allclose(res["cmax"][i], ref["cmax"][0], rtol=1e-12)
    assert res["auc"][1] > 1.5 * res["auc"][0]         # (three months: more sessions)
    out = tmp_path / "s.csv"
    assert main(["sweep", "--doses", str(f), "--vary", "months=1:3:2", "--metrics", "auc",
                 "-q", "--out", str(out)]) == 0
    rows = [r.split(",") for r in out.read_text().splitlines() if not r.startswith("#")]
    assert rows[0][:2] == ["months", "auc"]
    np.testing.assert_allclose([float(r[1]) for r in rows[1:]], res["auc"], rtol=1e-9)
    assert main(["sweep", "--doses", str(f), "--months", "2", "--vary", "months=1:3:2",
                 "-q", "--out", str(tmp_path / "t.csv")]) == 1
    assert "--months: months is also varied" in capsys.readouterr().err
    assert not (tmp_path / "t.csv").exists()
