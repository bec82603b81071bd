"""Exact, grid-free metrics (engine.run_metrics) against closed forms, and their invariance to
the output grid, the chunk size and the thread count."""

import math
import re

import _models
import numpy as np
import pytest
from scipy.optimize import brentq

import ketasim
from ketasim.engine import run_metrics, session_metrics
from ketasim.metrics import course_metrics

KA, CL, V, KE0 = 1.3, 7.0, 50.0, 2.2
K = CL / V


def oral_model():
    return ketasim.Model.from_dict({
        "parameters": {"CL": CL, "V": V, "KA": KA, "KE0": KE0},
        "compartments": {"depot": 0, "central": "V"},
        "flows": [{"from": "depot", "to": "central", "k": "KA"},
                  {"from": "central", "to": "out", "cl": "CL"}],
        "routes": {"oral": {"to": "depot"}},
        "effects": {"ce": {"of": "central", "ke0": "KE0"}},
        "observe": {"plasma": "central"},
        "occupancy": {"ligands": [{"site": "ce", "ki_um": 1.0, "fu": 1.0, "mw_g_mol": 1000.0}]},
    })


def bateman(t, dose):
    """Concentration (mg/L) after an oral dose at 0 (closed form)."""
    t = np.asarray(t, dtype=float)
    return np.where(t >= 0, dose * KA / (V * (KA - K)) * (np.exp(-K * t) - np.exp(-KA * t)), 0)


def conc(t, doses):
    return sum(bateman(t - t0, d) for t0, d in doses)


def effect(t, dose):
    """Effect-site concentration (mg/L) after an oral dose at 0: the sum-of-exponentials
    closed form of the three-state chain depot -> central -> ce."""
    a = dose * KA / (V * (KA - K))
    # ce' = KE0 (c - ce), c = a (e^{-kt} - e^{-ka t})
    def part(r):
        return KE0 / (KE0 - r) * (np.exp(-r * t) - np.exp(-KE0 * t))
    return np.where(t >= 0, a * (part(K) - part(KA)), 0)


DOSES = [(0.0, 100.0), (24.0, 60.0)]


@pytest.fixture(scope="module")
def result():
    d = ketasim.Doses([t for t, _ in DOSES], [a for _, a in DOSES], ["oral"] * 2)
    return ketasim.simulate(oral_model(), d, ketasim.time_grid(48, 0.5))


def test_cmax_tmax_auc_trough_closed_form(result):
    cm = course_metrics(result, thresholds=(), conc_thresholds_ng_ml=(800.0,))
    # session 1: the Bateman peak
    tmax1 = np.log(KA / K) / (KA - K)
    assert cm.tmax_h[0] == pytest.approx(tmax1, abs=1e-9)
    assert cm.cmax_ng_ml[0] == pytest.approx(1000 * bateman(tmax1, 100.0), rel=1e-12)
    # session 2: the peak of the superposed curve, found independently
    f = lambda t: -conc(t, DOSES)  # noqa: E731
    tp = brentq(lambda t: (conc(t + 1e-7, DOSES) - conc(t - 1e-7, DOSES)), 24.2, 30)
    assert cm.tmax_h[1] == pytest.approx(tp - 24, abs=1e-6)
    assert cm.cmax_ng_ml[1] == pytest.approx(-1000 * f(tp), rel=1e-12)
    # AUC: the closed-form integral of each window
    def integral(a, b):
        tot = 0.0
        for t0, d in DOSES:
            lo, hi = max(a - t0, 0), max(b - t0, 0)
            c = d * KA / (V * (KA - K))
            tot += c * ((np.exp(-K * lo) - np.exp(-K * hi)) / K
                        - (np.exp(-KA * lo) - np.exp(-KA * hi)) / KA)
        return 1000 * tot
    np.testing.assert_allclose(cm.auc_ng_h_ml, [integral(0, 24), integral(24, 48)], rtol=1e-11)
    assert cm.trough_ng_ml[0] == pytest.approx(1000 * conc(24.0 - 1e-300, DOSES[:1]), rel=1e-12)
    assert np.isnan(cm.trough_ng_ml[1])
    # time above 800 ng/mL: solved crossings of the closed form
    g = lambda t: 1000 * conc(t, DOSES) - 800  # noqa: E731
    up, down = brentq(g, 0, tmax1), brentq(g, tmax1, 24)
    assert cm.time_above_conc_h[800.0][0] == pytest.approx(down - up, abs=1e-9)


def test_occupancy_peak_and_time_above_closed_form(result):
    cm = course_metrics(result, thresholds=(0.2,))
    # occupancy = s / (1 + s), s = ce (mg/L) * 1000 / (mw * Ki) = ce
    t = np.linspace(0, 24, 200001)
    ce = effect(t, 100.0)
    i = int(np.argmax(ce))
    tp = brentq(lambda x: effect(x + 1e-7, 100.0) - effect(x - 1e-7, 100.0), t[i - 5], t[i + 5])
    peak = effect(tp, 100.0)
    assert cm.peak_occupancy[0] == pytest.approx(peak / (1 + peak), rel=1e-11)
    thr = 0.2 / 0.8
    up = brentq(lambda x: effect(x, 100.0) - thr, 0, tp)
    down = brentq(lambda x: effect(x, 100.0) - thr, tp, 24)
    assert cm.time_above_h[0.2][0] == pytest.approx(down - up, abs=1e-9)


def test_metrics_do_not_depend_on_the_output_grid():
    model = ketasim.load_model("ketamine-iv")
    d = ketasim.standard_iv_course(months=2)
    ms = []
    for step in (0.1, 1 / 60, 1.0, 7.3):
        r = ketasim.simulate(model, d, ketasim.time_grid(24 * 60, step),
                             outputs=["plasma", "occupancy", "glutamate"])
        ms.append(course_metrics(r, thresholds=(0.3,)))
    for m in ms[1:]:
        for f in ("cmax_ng_ml", "tmax_h", "auc_ng_h_ml", "trough_ng_ml", "peak_occupancy",
                  "peak_glutamate"):
            np.testing.assert_allclose(getattr(m, f), getattr(ms[0], f), rtol=1e-12,
                                       err_msg=f)
        np.testing.assert_allclose(m.time_above_h[0.3], ms[0].time_above_h[0.3], rtol=1e-12)


def test_metrics_do_not_depend_on_chunks_or_threads():
    model = ketasim.load_model("ketamine-iv")
    d = ketasim.standard_iv_course(months=2)
    # 23 subjects: 2 or 3 threads share a chunk in ranges of several subjects, most of them
    # not starting at the chunk's first subject
    params = {"CL": np.linspace(70, 120, 23), "V1": np.linspace(100, 160, 23)}
    names = ("cmax", "auc", "trough", "tmax", "peak_occupancy", "time_above_occ_0.3",
             "peak_glutamate", "plasticity_end")
    ref = session_metrics(model, d, params, metrics=names, chunk_size=23, threads=1)
    for chunk, threads in ((1, 1), (3, 2), (7, 2), (23, 2), (20, 3)):
        got = session_metrics(model, d, params, metrics=names, chunk_size=chunk,
                              threads=threads)
        for k in ref:
            np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
    # and each subject alone gives the same numbers
    for i in (0, 9, 22):
        one = session_metrics(model, d, {k: v[i] for k, v in params.items()}, metrics=names)
        for k in ref:
            if k != "session_start_h":
                np.testing.assert_allclose(one[k][0], ref[k][i], rtol=1e-12, err_msg=k)


def test_session_metrics_columns_and_units():
    d = ketasim.Doses([0.0, 24.0], [100.0, 60.0], ["oral"] * 2)
    m = session_metrics(oral_model(), d, metrics=("cmax", "auc", "trough"), horizon_h=48)
    cm = course_metrics(ketasim.simulate(oral_model(), d, ketasim.time_grid(48, 1.0)))
    assert m["cmax_s1"][0] == pytest.approx(cm.cmax_ng_ml[0], rel=1e-14)
    assert m["cmax"][0] == pytest.approx(max(cm.cmax_ng_ml), rel=1e-14)
    assert m["auc"][0] == pytest.approx(cm.auc_ng_h_ml.sum(), rel=1e-14)
    assert m["trough"][0] == pytest.approx(cm.trough_ng_ml[0], rel=1e-14)


def test_peak_glutamate_against_a_dense_grid():
    model = ketasim.load_model("esketamine-iv")
    d = ketasim.Doses.single(20.0, "iv", duration_h=0.5)
    r = ketasim.simulate(model, d, ketasim.time_grid(24, 1 / 3600), pd_rtol=1e-10)
    mr = run_metrics(model, d, horizon_h=24)
    assert mr.per_session[0, 5, 0] == pytest.approx(r.glutamate.max(), rel=1e-6)


def test_metrics_without_a_concentration_are_refused():
    m = ketasim.Model.from_dict({"parameters": {"K": 1.0}, "compartments": {"gut": 0},
                                 "flows": [{"from": "gut", "to": "out", "k": "K"}],
                                 "routes": {"oral": {"to": "gut"}}})
    with pytest.raises(ketasim.KetasimInputError, match="no concentration"):
        run_metrics(m, ketasim.Doses.single(1.0, "oral"))


def test_a_dataset_has_each_subjects_own_sessions():
    """Subjects of a dataset with different schedules: each subject's per-session metrics
    equal a separate run of that subject alone."""
    import io

    csv = ("ID,TIME,AMT,CMT,DUR,WT\n1,0,35,iv,0.6667,70\n1,48,35,iv,0.6667,70\n"
           "2,0,50,iv,0.6667,100\n2,24,50,iv,0.6667,100\n2,72,50,iv,0.6667,100\n")
    d = ketasim.read_doses(io.StringIO(csv))
    names = ("cmax", "trough", "auc", "tmax")
    both = session_metrics("ketamine-iv", d, metrics=names, horizon_h=120)
    alone = [session_metrics("ketamine-iv", ketasim.Doses(t, [a] * len(t), ["iv"] * len(t),
                                                          [0.6667] * len(t)),
                             weight_kg=w, metrics=names, horizon_h=120)
             for t, a, w in (([0.0, 48.0], 35.0, 70.0), ([0.0, 24.0, 72.0], 50.0, 100.0))]
    for i, one in enumerate(alone):
        for k, v in one.items():
            if k == "session_start_h":
                np.testing.assert_array_equal(both[k][i, :v.size], v)
            else:
                np.testing.assert_allclose(both[k][i], v[0], rtol=1e-12, err_msg=k)
    assert np.isnan(both["cmax_s3"][0])      # subject 1 has two sessions


def test_schematic_metrics_over_a_course_against_the_grid():
    """Peak glutamate of each session and plasticity at the end, from the metric steps (which
    grow to days between sessions, with the exponential step for the stiff glutamate signal),
    against the grid integrator at a tight tolerance on a one-second grid around each peak."""
    model = ketasim.load_model("ketamine-iv")
    d = ketasim.standard_iv_course(months=2)
    horizon = 24 * 60.0
    got = session_metrics(model, d, metrics=("peak_glutamate", "plasticity_end"),
                          horizon_h=horizon)
    starts = ketasim.engine.session_starts(d, 1.0)
    # the whole course on a coarse grid (plasticity at the end), then each session's first
    # six hours on a one-second grid (the glutamate peak)
    coarse = ketasim.simulate(model, d, ketasim.time_grid(horizon, 0.5),
                              outputs=["glutamate", "plasticity"], pd_rtol=1e-10)
    assert got["plasticity_end"][0] == pytest.approx(coarse.data[0, 1, -1], rel=1e-6)
    assert coarse.data[0, 1, -1] > 0.01                    # it did build up
    for k, t0 in enumerate(starts, start=1):
        fine = ketasim.simulate(model, d, t0 + np.arange(0, 6 * 3600 + 1) / 3600.0,
                                outputs=["glutamate"], pd_rtol=1e-10)
        assert got[f"peak_glutamate_s{k}"][0] == pytest.approx(fine.data[0, 0].max(), rel=1e-6)


def _one_cpt():
    """V 50 L, CL 10 L/h (k = 0.2 /h): a bolus D gives C = D/V exp(-k t)."""
    return _models.one_cpt(V=50.0, CL=10.0, observe=True)


def test_a_reset_or_steady_state_dose_keeps_the_exact_auc():
    """A reset (evid 3 or 4, ss = 1) empties the body, not the AUC integrator of the exact
    metrics: each session's AUC is its own closed-form integral (it was the difference from
    the AUC before the reset: negative after evid 3)."""
    from ketasim.engine import session_metrics

    m, k, c0 = _one_cpt(), 0.2, 100.0 / 50.0 * 1000.0       # ng/mL per 100 mg bolus
    part = c0 / k * -math.expm1(-k * 12.0)                   # 12 h of one bolus's curve
    d = ketasim.Doses.from_records([          # bolus; reset at 12 h; 50 mg at 12 h; 100 mg
        {"time_h": 0, "amount_mg": 100, "route": "iv"},      # with reset (evid 4) at 24 h
        {"time_h": 12, "amount_mg": 0, "route": "", "evid": 3},
        {"time_h": 12, "amount_mg": 50, "route": "iv"},
        {"time_h": 24, "amount_mg": 100, "route": "iv", "evid": 4}])
    r = session_metrics(m, d, metrics=("auc", "cmax"), horizon_h=36.0)
    np.testing.assert_allclose([r["auc_s1"][0], r["auc_s2"][0], r["auc_s3"][0]],
                               [part, part / 2, part], rtol=1e-12)
    np.testing.assert_allclose([r["cmax_s2"][0], r["cmax_s3"][0]], [c0 / 2, c0], rtol=1e-12)
    # ss = 1 at 24 h (every 12 h): the steady-state curve, C(0) = c0 / (1 - exp(-12 k))
    d = ketasim.Doses.from_records([{"time_h": 0, "amount_mg": 100, "route": "iv"},
                                    {"time_h": 24, "amount_mg": 100, "route": "iv", "ss": 1,
                                     "ii_h": 12}])
    r = session_metrics(m, d, metrics=("auc",), horizon_h=36.0)
    np.testing.assert_allclose(r["auc_s2"][0], part / -math.expm1(-12 * k), rtol=1e-12)


def test_a_reset_row_starts_no_session():
    from ketasim.engine import session_starts
    from ketasim.plotting import _regimen, describe_doses

    d = ketasim.Doses.from_records([{"time_h": 0, "amount_mg": 100, "route": "iv"},
                                    {"time_h": 12, "amount_mg": 0, "route": "", "evid": 3},
                                    {"time_h": 24, "amount_mg": 100, "route": "iv"}])
    np.testing.assert_array_equal(session_starts(d), [0.0, 24.0])
    assert _regimen(d) == "2 sessions over 1 days"
    assert describe_doses(d) == "100 mg IV bolus"


@pytest.mark.parametrize("kw, field", [
    ({"conc_thresholds_ng_ml": (float("nan"),)}, "conc_thresholds_ng_ml"),
    ({"conc_thresholds_ng_ml": (-1.0,)}, "conc_thresholds_ng_ml"),
    ({"conc_thresholds_ng_ml": (np.inf,)}, "conc_thresholds_ng_ml"),
    ({"thresholds": (1.5,)}, "thresholds"),
    ({"thresholds": (True,)}, "thresholds"),
])
def test_course_metrics_refuses_bad_thresholds(kw, field):
    """A NaN concentration threshold had counted every hour as above it (every comparison with
    NaN is False, so `below` never held): now refused, naming the argument and the value."""
    m = ketasim.load_model("ketamine-iv")
    r = ketasim.simulate(m, ketasim.standard_iv_course(months=1), ketasim.time_grid(24 * 7, 0.5))
    with pytest.raises(ketasim.KetasimInputError, match=field):
        course_metrics(r, **kw)


def test_course_metrics_takes_numpy_thresholds():
    m = ketasim.load_model("ketamine-iv")
    r = ketasim.simulate(m, ketasim.standard_iv_course(months=1), ketasim.time_grid(24 * 7, 0.5))
    a = course_metrics(r, thresholds=(np.float32(0.125),), conc_thresholds_ng_ml=(np.int64(50),))
    b = course_metrics(r, thresholds=(0.125,), conc_thresholds_ng_ml=(50.0,))
    assert np.array_equal(a.time_above_h[0.125], b.time_above_h[0.125])
    assert np.array_equal(a.time_above_conc_h[50.0], b.time_above_conc_h[50.0])
    assert a.time_above_conc_h[50.0][0] > 0


def test_course_metrics_takes_thresholds_as_any_iterable_of_numbers(result):
    """A set or a generator of thresholds had been refused as "thresholds: got {0.3},
    expected occupancies in [0, 1]", as if the numbers were out of range: any iterable of
    numbers is taken, as other lists are; what is not one is refused as such."""
    ref = course_metrics(result, thresholds=[0.1, 0.3], conc_thresholds_ng_ml=[100.0])
    for occ, conc in (({0.1, 0.3}, {100.0}), ((t for t in (0.1, 0.3)), iter([100.0])),
                      (np.array([0.1, 0.3]), np.array(100.0))):
        m = course_metrics(result, thresholds=occ, conc_thresholds_ng_ml=conc)
        assert sorted(m.time_above_h) == [0.1, 0.3] and list(m.time_above_conc_h) == [100.0]
        for t in (0.1, 0.3):
            assert np.array_equal(m.time_above_h[t], ref.time_above_h[t])
    for bad, what in (("0.3", "'0.3'"), ({0.3: 1}, r"\{0.3: 1\}"), ([[0.3]], r"\[0.3\] in")):
        with pytest.raises(ketasim.KetasimInputError,
                           match=rf"^thresholds: got {what}.*expected a number or a list of "
                                 r"numbers \(occupancies in \[0, 1\]\)$"):
            course_metrics(result, thresholds=bad)
    with pytest.raises(ketasim.KetasimInputError, match=r"^conc_thresholds_ng_ml: got 'x', "
                                                        "expected a number or a list"):
        course_metrics(result, conc_thresholds_ng_ml="x")
    # run_metrics names its own arguments
    with pytest.raises(ketasim.KetasimInputError, match=r"^thresholds_occ: got 2, expected "):
        run_metrics(oral_model(), result.doses, thresholds_occ=[2])


def test_thresholds_that_would_share_a_name_are_refused(result):
    """course_metrics(r, thresholds=[0.3, 0.30000000001]).to_dict() had one key,
    time_above_occ_0.3_h, for both thresholds (named by {t:g}), and one was silently lost:
    refused, naming both values; the same value twice is still one threshold."""
    for kw, field, a, b, col in (
            ({"thresholds": [0.3, 0.30000000001]}, "thresholds", "0.3", "0.30000000001",
             "time_above_occ_0.3_h"),
            ({"conc_thresholds_ng_ml": [100.0, 100.000001]}, "conc_thresholds_ng_ml",
             "100.0", "100.000001", "time_above_conc_100_h")):
        with pytest.raises(ketasim.KetasimInputError,
                           match=rf"^{field}: {re.escape(a)} and {re.escape(b)} would share "
                                 rf"the name .*\({col}: "):
            course_metrics(result, **kw)
    m = course_metrics(result, thresholds=[0.3, 0.3, 0.30001])
    assert [k for k in m.to_dict() if k.startswith("time_above_occ")] == [
        "time_above_occ_0.3_h", "time_above_occ_0.30001_h"]


def test_thresholds_that_would_share_a_column_name_the_cli_option(tmp_path, capsys):
    from ketasim.cli import main

    d = tmp_path / "d.csv"
    d.write_text("time_h,amount_mg,route,duration_h\n0,35,iv,0.5\n")
    assert main(["simulate", "--doses", str(d), "--until", "48", "--summary", "--thresholds",
                 "0.3,0.30000000001", "--out", str(tmp_path / "o.csv")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ketasim: error: --thresholds: 0.3 and 0.30000000001 would share"), err
    assert not (tmp_path / "o.csv").exists()


def test_a_session_starting_at_the_horizon_is_left_out():
    """A session starting exactly at the last output time has no window: it had been reported
    with the previous session's leftover as its Cmax (and tmax 0, AUC 0); and the dose at the
    horizon is no part of the previous session's peak (C0 = 100 mg / 50 L = 2000 ng/mL)."""
    m = _one_cpt()
    d = ketasim.Doses([0.0, 24.0, 48.0], [100.0] * 3, ["iv"] * 3)
    r = ketasim.simulate(m, d, ketasim.time_grid(48.0, 0.5))
    cm = course_metrics(r)
    assert cm.session_start_h.tolist() == [0.0, 24.0]
    k = 10.0 / 50.0
    assert cm.cmax_ng_ml[1] == pytest.approx(2000.0 * (1 + math.exp(-24 * k)), rel=1e-12)
    assert cm.auc_ng_h_ml[1] == pytest.approx(2000.0 * (1 + math.exp(-24 * k))
                                              * (1 - math.exp(-24 * k)) / k, rel=1e-12)
    r = ketasim.simulate(m, d, ketasim.time_grid(48.5, 0.5))
    assert course_metrics(r).session_start_h.tolist() == [0.0, 24.0, 48.0]
    # the session before it still ends there: its trough is the value just before that dose
    # (closed form), as with a longer horizon; without a session at the horizon, none
    trough = 2000.0 * (1 + math.exp(-24 * k)) * math.exp(-24 * k)
    assert cm.trough_ng_ml[1] == pytest.approx(trough, rel=1e-12)
    got = session_metrics(m, d, metrics=("trough",), horizon_h=48.0)
    assert got["trough_s2"][0] == pytest.approx(trough, rel=1e-12)
    assert math.isnan(session_metrics(m, d, metrics=("trough",), horizon_h=47.0)["trough_s2"][0])
    # a dataset: each subject's own sessions (subject 2's second one is at the horizon)
    ds = ketasim.Doses.from_records(
        [{"subject": 1, "time_h": 0.0, "amount_mg": 100.0, "route": "iv"},
         {"subject": 1, "time_h": 24.0, "amount_mg": 100.0, "route": "iv"},
         {"subject": 2, "time_h": 0.0, "amount_mg": 100.0, "route": "iv"},
         {"subject": 2, "time_h": 48.0, "amount_mg": 100.0, "route": "iv"}])
    both = session_metrics(m, ds, metrics=("trough",), horizon_h=48.0)
    assert math.isnan(both["trough_s2"][0])                      # subject 1: no next session
    assert both["trough_s1"][1] == pytest.approx(2000.0 * math.exp(-48 * k), rel=1e-12)


def test_the_course_trough_is_the_one_before_a_session_at_the_horizon():
    """The whole course's trough is the one before its last session: when that session starts
    exactly at the horizon (so it has no window of its own), it is the trough of the session
    before it, which has a value (closed form); it had been NaN with one session before it
    and the trough of the session before that with more."""
    m, k = _one_cpt(), 0.2
    one = session_metrics(m, ketasim.Doses([0.0, 24.0], [100.0] * 2, ["iv"] * 2),
                          metrics=("trough",), horizon_h=24.0)
    assert one["trough_s1"][0] == pytest.approx(2000.0 * math.exp(-24 * k), rel=1e-12)
    assert one["trough"][0] == one["trough_s1"][0]
    d = ketasim.Doses([0.0, 24.0, 48.0], [100.0] * 3, ["iv"] * 3)
    two = session_metrics(m, d, metrics=("trough",), horizon_h=48.0)
    assert two["trough"][0] == two["trough_s2"][0]
    # without a session at the horizon: the trough before the last session, as before
    assert session_metrics(m, d, metrics=("trough",), horizon_h=60.0)["trough"][0] == \
        two["trough_s2"][0]
    # a dataset: each subject's own last session (subject 2's is at the horizon)
    ds = ketasim.Doses.from_records(
        [{"subject": 1, "time_h": 0.0, "amount_mg": 100.0, "route": "iv"},
         {"subject": 1, "time_h": 12.0, "amount_mg": 100.0, "route": "iv"},
         {"subject": 2, "time_h": 0.0, "amount_mg": 100.0, "route": "iv"},
         {"subject": 2, "time_h": 24.0, "amount_mg": 100.0, "route": "iv"}])
    both = session_metrics(m, ds, metrics=("trough",), horizon_h=24.0)
    np.testing.assert_allclose(both["trough"], [2000.0 * math.exp(-12 * k),
                                                2000.0 * math.exp(-24 * k)], rtol=1e-12)


def test_metrics_not_asked_for_are_not_searched_and_change_nothing_else():
    """Cmax/Tmax and peak occupancy are searched for only when asked for (a search costs about
    as much as the rest): every other metric is the same, bit for bit, with or without them."""
    m = ketasim.load_model("ketamine-iv")
    d = ketasim.standard_iv_course(months=2)
    p = {"CL": np.array([60.0, 95.0, 140.0])}
    full = session_metrics(m, d, params=p, metrics=("cmax", "tmax", "auc", "trough",
                                                      "peak_occupancy", "time_above_occ_0.1",
                                                      "time_above_conc_50"))
    for ask in [("auc",), ("trough", "time_above_conc_50"), ("cmax", "auc"),
                ("peak_occupancy",), ("time_above_occ_0.1", "auc")]:
        part = session_metrics(m, d, params=p, metrics=ask)
        for k, v in part.items():
            assert np.array_equal(v, full[k], equal_nan=True), (ask, k)
    mr = run_metrics(m, d, p, conc_peaks=False, occupancy_peaks=False)
    assert np.isnan(mr.per_session[:, 0]).all()           # Cmax not searched: NaN, not a guess


@pytest.mark.parametrize("n_transit, ktr", [(50, 16.5), (100, 16.5), (40, 8.0)])
def test_a_dip_and_a_peak_inside_one_metric_step_are_found(n_transit, ktr):
    """An IV bolus and an oral dose through a long transit chain, both at 0: the curve falls,
    dips, rises to a second peak and falls again, and the dip and the peak can sit inside one
    step of the metrics' ladder with a falling slope at both its ends. The peak, its time and
    the time above a threshold just under it must still be exact (reference: scipy's expm on
    a fine grid, refined by scipy's bounded minimiser and brentq)."""
    import scipy.linalg
    from scipy.optimize import minimize_scalar

    v, cl, bolus, oral = 10.0, 3.0, 30.0, 60.0
    comps = {f"t{i}": 0 for i in range(n_transit)}
    comps["central"] = "V"
    flows = [{"from": f"t{i}", "to": f"t{i + 1}" if i < n_transit - 1 else "central",
              "k": "KTR"} for i in range(n_transit)]
    flows.append({"from": "central", "to": "out", "cl": "CL"})
    model = ketasim.Model.from_dict({
        "parameters": {"KTR": ktr, "V": v, "CL": cl}, "compartments": comps, "flows": flows,
        "routes": {"oral": {"to": "t0"}, "iv": {"to": "central"}}})
    doses = ketasim.Doses.from_records([{"time_h": 0.0, "amount_mg": bolus, "route": "iv"},
                                        {"time_h": 0.0, "amount_mg": oral, "route": "oral"}])
    # reference
    K = np.zeros((n_transit + 1, n_transit + 1))
    for i in range(n_transit):
        K[i, i] = -ktr
        K[i + 1, i] = ktr
    K[-1, -1] = -cl / v
    x0 = np.zeros(n_transit + 1)
    x0[0], x0[-1] = oral, bolus

    def conc(t):             # ng/mL
        return (scipy.linalg.expm(K * t) @ x0)[-1] / v * 1e3

    dt = 1e-3
    step = scipy.linalg.expm(K * dt)
    xs = [x0]
    for _ in range(int(12.0 / dt)):
        xs.append(step @ xs[-1])
    y = np.array(xs)[:, -1] / v * 1e3
    tt = np.arange(y.size) * dt
    inner = np.flatnonzero((np.diff(y)[:-1] > 0) & (np.diff(y)[1:] <= 0)) + 1
    assert inner.size == 1                             # the second peak (the first is at 0)
    j = int(inner[0])
    res = minimize_scalar(lambda t: -conc(t), bounds=(tt[j - 1], tt[j + 1]), method="bounded",
                          options={"xatol": 1e-12})
    peak, tpeak = float(-res.fun), float(res.x)
    assert peak > y[0]                                 # the bump is the session's peak
    thr = 0.98 * peak
    up = brentq(lambda t: conc(t) - thr, tt[j] - 2.0, tpeak, xtol=1e-13) \
        if conc(tt[j] - 2.0) < thr else 0.0
    lo = tpeak
    while conc(lo) >= thr:
        lo += 0.05
    down = brentq(lambda t: conc(t) - thr, tpeak, lo, xtol=1e-13)
    got = session_metrics(model, doses, metrics=["cmax", "tmax", f"time_above_conc_{thr!r}"],
                          horizon_h=24.0)
    assert got["cmax_s1"][0] == pytest.approx(peak, rel=1e-9)
    assert got["tmax_s1"][0] == pytest.approx(tpeak, abs=1e-5)
    assert got[f"time_above_conc_{thr!r}_s1"][0] == pytest.approx(down - up, abs=1e-8)


@pytest.mark.parametrize("amount_mg", [1e300, 1e307])
def test_metrics_refuse_an_overflow_as_the_curves_do(amount_mg):
    """A peak at or above the curves' overflow limit (1e250 mg/L) is refused with the same
    kind of error as simulate gives, never returned as inf or as a huge number."""
    m = ketasim.Model.from_dict({"parameters": {"V": 50.0, "CL": 10.0},
                                 "compartments": {"central": "V"},
                                 "flows": [{"from": "central", "to": "out", "cl": "CL"}],
                                 "routes": {"iv": {"to": "central"}}})
    # (named as the argument given, doses, with the table's name)
    d = ketasim.Doses.from_records([dict(time_h=0.0, amount_mg=amount_mg, route="iv")],
                                   source="big.csv")
    with pytest.raises(ketasim.KetasimInputError, match="^doses: big.csv: .*overflows"):
        ketasim.simulate(m, d, ketasim.time_grid(24, 1))
    with pytest.raises(ketasim.KetasimInputError,
                       match="^doses: big.csv: metrics: a concentration overflows"):
        session_metrics(m, d, metrics=("cmax", "auc"), analyte="central", horizon_h=24.0)
    # a large but representable course still has its exact metrics (AUC = dose / CL)
    d = ketasim.Doses.from_records([dict(time_h=0.0, amount_mg=1e200, route="iv")])
    r = session_metrics(m, d, metrics=("cmax", "auc"), analyte="central", horizon_h=1e4)
    assert r["cmax"][0] == pytest.approx(1e200 / 50.0 * 1000.0, rel=1e-12)
    assert r["auc"][0] == pytest.approx(1e200 / 10.0 * 1000.0, rel=1e-9)


@pytest.mark.parametrize("n", [12, 96])
def test_a_pulse_inside_one_long_step_is_found(n):
    """Compartment A (1 L, out at 0.01/h) gets a bolus; a transit chain of n compartments
    (1/h each) feeds B (1 L, out at 1/h); the analyte is A + B. The chain's pulse can rise and
    fall inside one 64-h step while A falls at both ends (Cmax had been reported as A's
    1,200 ng/mL at 0 h, 73 % low, and the 27 h above 2,000 ng/mL as 0). Against the closed
    form: A = 1.2 e^(-0.01 t), B = 100 t^n e^(-t) / n! (mg/L), the chain and B's outflow
    all at 1/h."""
    from scipy.optimize import minimize_scalar
    from scipy.special import gammaln

    comps = {"A": 1.0, **{f"T{i}": 0 for i in range(1, n + 1)}, "B": 1.0}
    flows = [{"from": "A", "to": "out", "k": 0.01}, {"from": "B", "to": "out", "k": 1.0}]
    flows += [{"from": f"T{i}", "to": f"T{i + 1}", "k": 1.0} for i in range(1, n)]
    flows += [{"from": f"T{n}", "to": "B", "k": 1.0}]
    m = ketasim.Model.from_dict({"parameters": {"X": 1.0}, "compartments": comps,
                                 "flows": flows, "routes": {"ivA": {"to": "A"},
                                                            "tr": {"to": "T1"}},
                                 "observe": {"plasma": ["A", "B"]}})
    d = ketasim.Doses.from_records([dict(time_h=0, amount_mg=1.2, route="ivA"),
                                    dict(time_h=0, amount_mg=100, route="tr")])

    def f(t):          # ng/mL
        return 1000 * (1.2 * np.exp(-0.01 * t) + 100 * np.exp(n * np.log(t) - t - gammaln(n + 1)))

    best = minimize_scalar(lambda t: -f(t), bounds=(n * 0.8, n * 1.2), method="bounded",
                           options={"xatol": 1e-10})
    thr = 2000.0
    lo = brentq(lambda t: f(t) - thr, 1.0, best.x)
    hi = brentq(lambda t: f(t) - thr, best.x, 400.0)
    km = session_metrics(m, d, metrics=("cmax", "tmax", "time_above_conc_2000"),
                         horizon_h=400.0)
    assert km["cmax"][0] == pytest.approx(-best.fun, rel=1e-9)
    assert km["tmax"][0] == pytest.approx(best.x, abs=1e-4)
    assert km["time_above_conc_2000"][0] == pytest.approx(hi - lo, rel=1e-8)


@pytest.mark.parametrize("below", [1e-2, 1e-4, 1e-6])
def test_a_threshold_just_below_the_peak_counts_both_sides(below):
    """A threshold so close below the peak that both crossings lie in one cell of the metric
    step's lattice: the crossing after the peak had been searched from the cell's start,
    before the first crossing, and the time after the peak was lost (half the time above).
    Against the closed form (Bateman), both crossings by brentq."""
    d = ketasim.Doses.single(100.0, "oral")
    tp = math.log(KA / K) / (KA - K)
    peak = float(conc(tp, [(0.0, 100.0)])) * 1000.0                  # ng/mL
    thr = peak - below
    f = lambda t: float(conc(t, [(0.0, 100.0)])) * 1000.0 - thr  # noqa: E731
    ref = brentq(f, tp, 40.0, xtol=1e-15) - brentq(f, 0.0, tp, xtol=1e-15)
    name = f"time_above_conc_{thr!r}"
    got = session_metrics(oral_model(), d, metrics=[name], horizon_h=48.0)[name][0]
    assert got == pytest.approx(ref, rel=1e-6)


def test_a_threshold_just_above_a_dip_counts_only_the_time_above():
    """The mirror case: an IV bolus falling, then an oral dose through a transit compartment
    lifting the level again, with the threshold 1e-3 ng/mL above the dip's bottom (the time
    above had come out too long by about half the 2e-4 h spent below)."""
    from scipy.linalg import expm
    from scipy.optimize import minimize_scalar

    m = ketasim.Model.from_dict({
        "parameters": {"V": 50.0, "CL": 50.0, "KA": 3.0},
        "compartments": {"depot": 0, "transit": 0, "central": "V"},
        "flows": [{"from": "central", "to": "out", "cl": "CL"},
                  {"from": "depot", "to": "transit", "k": "KA"},
                  {"from": "transit", "to": "central", "k": "KA"}],
        "routes": {"iv": {"to": "central"}, "oral": {"to": "depot"}},
        "observe": {"plasma": "central"}})
    d = ketasim.Doses.from_records([dict(time_h=0.0, amount_mg=100.0, route="iv"),
                                    dict(time_h=0.0, amount_mg=1000.0, route="oral")])
    Km = np.array([[-3.0, 0.0, 0.0], [3.0, -3.0, 0.0], [0.0, 3.0, -1.0]])
    x0 = np.array([1000.0, 0.0, 100.0])

    def c(t):               # ng/mL
        return float((expm(Km * t) @ x0)[2]) / 50.0 * 1000.0

    r = minimize_scalar(c, bounds=(0.005, 0.02), method="bounded", options={"xatol": 1e-13})
    thr = float(r.fun + 1e-3)
    a = brentq(lambda t: c(t) - thr, 0.0, r.x, xtol=1e-15)
    b = brentq(lambda t: c(t) - thr, r.x, 0.3, xtol=1e-15)
    e = brentq(lambda t: c(t) - thr, 0.3, 47.0, xtol=1e-13)
    name = f"time_above_conc_{thr!r}"
    got = session_metrics(m, d, metrics=[name], horizon_h=48.0)[name][0]
    assert e - b + a == pytest.approx(got, abs=1e-9)
    assert b - a > 1e-4          # the gap the old code half counted


def _oral_fast():
    return ketasim.Model.from_dict({
        "parameters": {"CL": 90.0, "V": 50.0, "KA": 2.0},
        "compartments": {"depot": 0, "central": "V"},
        "flows": [{"from": "depot", "to": "central", "k": "KA"},
                  {"from": "central", "to": "out", "cl": "CL"}],
        "routes": {"oral": {"to": "depot"}}, "observe": {"plasma": "central"}})


def _bateman_fast(t):          # ng/mL, the model above, 100 mg at 0
    k = 90.0 / 50.0
    return 1000 * 100.0 * 2.0 / (50.0 * (2.0 - k)) * (np.exp(-k * t) - np.exp(-2.0 * t))


def test_a_crossing_newton_has_not_reached_is_bisected():
    """1e-9 below the peak, Newton from the cell's start approaches the crossing by halves and
    had stopped after 8 steps inside the bracket: 3.7e-8 h off (8 % at 1e-10), where the
    problem's own conditioning allows about 1e-11 h."""
    k = 90.0 / 50.0
    tp = math.log(2.0 / k) / (2.0 - k)
    peak = float(_bateman_fast(tp))
    # (tolerances: what the crossings' conditioning allows in double precision, for the
    # reference too; the errors had been 3.7e-8 h and 1.7e-6 h)
    for rel, tol in ((1e-9, 5e-11), (1e-10, 5e-10)):
        thr = peak * (1 - rel)
        f = lambda t, thr=thr: float(_bateman_fast(t)) - thr  # noqa: E731
        ref = brentq(f, tp, 0.7, xtol=1e-16) - brentq(f, 0.4, tp, xtol=1e-16)
        name = f"time_above_conc_{thr!r}"
        got = session_metrics(_oral_fast(), ketasim.Doses.single(100.0, "oral"), metrics=[name],
                              horizon_h=48.0)[name][0]
        assert got == pytest.approx(ref, abs=tol)


def test_a_step_shorter_than_the_ladder_base_is_searched_like_any_other():
    """The last step before a dose that is not on the ladder's lattice (shorter than its base)
    had its crossing interpolated linearly (1.2e-5 h off at a mid-curve threshold) and no
    peak searched for (Cmax the value at the step's end, time above 92 % low)."""
    k = 90.0 / 50.0
    one = ketasim.Model.from_dict({
        "parameters": {"CL": 90.0, "V": 50.0}, "compartments": {"central": "V"},
        "flows": [{"from": "central", "to": "out", "cl": "CL"}],
        "routes": {"iv": {"to": "central"}}, "observe": {"plasma": "central"}})
    cross = math.log(2000.0 / 50.0) / k          # C0 = 2000 ng/mL falls through 50
    for t2 in (cross + 0.0053, 2.0546774745077423):
        r = session_metrics(one, ketasim.Doses([0.0, t2], [100.0, 100.0], ["iv", "iv"]),
                            metrics=["time_above_conc_50"], horizon_h=48.0)
        assert r["time_above_conc_50_s1"][0] == pytest.approx(cross, abs=1e-12)
    tp = math.log(2.0 / k) / (2.0 - k)
    peak = float(_bateman_fast(tp))
    t2 = tp + 5.2e-4
    thr = peak * (1 - 1e-6)
    name = f"time_above_conc_{thr!r}"
    d = ketasim.Doses([0.0, t2], [100.0, 100.0], ["oral", "oral"])
    r = session_metrics(_oral_fast(), d, metrics=["cmax", "tmax", name], horizon_h=48.0,
                        merge_h=1e-6)
    up = brentq(lambda t: float(_bateman_fast(t)) - thr, 0.4, tp, xtol=1e-16)
    assert r["cmax_s1"][0] == pytest.approx(peak, rel=1e-12)
    assert r["tmax_s1"][0] == pytest.approx(tp, abs=1e-9)
    assert r[name + "_s1"][0] == pytest.approx(t2 - up, rel=1e-7)


def test_a_horizon_beyond_the_metrics_limit_is_refused_at_once():
    """Exact metrics step at most 64 h, with or without the schematic response: a horizon of
    1e12 h had run for about 20 minutes a subject inside one compiled call that neither Ctrl-C
    nor SIGTERM stops (the schematic response was refused beyond 1e7 h, the PK metrics not).
    Up to the limit the AUC is the closed form dose / CL."""
    doses = ketasim.Doses.single(100.0, "oral")
    r = session_metrics(oral_model(), doses, metrics=("auc",), horizon_h=1e7)
    assert r["auc"][0] == pytest.approx(100.0 / CL * 1000.0, rel=1e-10)
    for h in (1e8, 1e12):
        with pytest.raises(ketasim.KetasimInputError,
                           match="^" + re.escape(f"horizon_h: exact metrics up to {h:g} h are "
                                                 "beyond their 1e+07-h limit")):
            session_metrics(oral_model(), doses, metrics=("auc",), horizon_h=h)


@pytest.mark.parametrize("given, shown", [("r.csv", "str"), (None, "NoneType")])
def test_course_metrics_of_what_is_not_a_result_names_it(given, shown):
    with pytest.raises(ketasim.KetasimInputError) as exc:
        course_metrics(given)
    assert str(exc.value) == (f"result: got {shown}, expected a Result of ketasim.simulate")


@pytest.mark.parametrize("given", ["100", True, np.inf, [100.0]])
def test_course_metrics_refuses_a_maintenance_start_that_is_not_hours(given):
    """Text had been read as a number ("100" as 100 h), True as 1 h."""
    m = ketasim.load_model("ketamine-iv")
    r = ketasim.simulate(m, ketasim.standard_iv_course(months=1), ketasim.time_grid(24 * 7, 0.5))
    with pytest.raises(ketasim.KetasimInputError) as exc:
        course_metrics(r, maintenance_from_h=given)
    assert str(exc.value) == (f"maintenance_from_h: got {given!r}, expected hours (a number; "
                              "NaN: no maintenance)")
    assert course_metrics(r, maintenance_from_h=np.float32(100)).maintenance_start_h == 100.0


def test_a_late_sessions_auc_is_exact_relative_to_itself():
    """Each session's AUC is its own integral, not a difference of the course's running one:
    a session whose AUC is 1e-9 of the course's had kept only the course's absolute rounding
    (8e-5 of itself off here, 2 % in a random network). Closed form: two IV boluses, k = 1/h."""
    m = ketasim.Model.from_dict({"parameters": {"V": 1.0, "K": 1.0}, "compartments": {"c": "V"},
                                 "flows": [{"from": "c", "to": "out", "k": "K"}],
                                 "routes": {"iv": {"to": "c"}}})
    d = ketasim.Doses.from_records([{"time_h": 0.0, "amount_mg": 1000.0, "route": "iv"},
                                    {"time_h": 30.0, "amount_mg": 1e-9, "route": "iv"}])
    want = [1000.0 * (1 - math.exp(-30.0)) * 1000,                                # ng·h/mL
            (1000.0 * math.exp(-30.0) + 1e-9) * (1 - math.exp(-1.0)) * 1000]
    cols = session_metrics(m, d, metrics=["auc"], horizon_h=31.0)
    r = ketasim.simulate(m, d, np.linspace(0.0, 31.0, 32))
    for got in ([cols["auc_s1"][0], cols["auc_s2"][0]], course_metrics(r).auc_ng_h_ml):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    assert cols["auc"][0] == pytest.approx(sum(want), rel=1e-14)
