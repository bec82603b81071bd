"""Course metrics against values computed by hand from the curves and closed forms."""

import numpy as np
import pytest

import ketasim
from ketasim.metrics import course_metrics, maintenance_start, session_starts


def one_cpt():
    return ketasim.Model.from_dict({
        "parameters": {"CL": 10.0, "V": 100.0},
        "compartments": {"central": "V"},
        "flows": [{"from": "central", "to": "out", "cl": "CL"}],
        "routes": {"iv": {"to": "central"}},
        "observe": {"plasma": "central"}})


def test_bolus_metrics_closed_form():
    m = one_cpt()
    d = ketasim.Doses([0.0, 24.0, 48.0], [100.0] * 3, ["iv"] * 3)
    t = ketasim.time_grid(72, 0.001)
    cm = course_metrics(ketasim.simulate(m, d, t), thresholds=())
    k = 0.1
    c0 = 100.0 / 100.0 * 1000  # ng/mL
    acc = np.array([1, 1 + np.exp(-24 * k), 1 + np.exp(-24 * k) + np.exp(-48 * k)])
    np.testing.assert_allclose(cm.cmax_ng_ml, c0 * acc, rtol=1e-9)
    np.testing.assert_allclose(cm.tmax_h, 0, atol=1e-12)
    auc = c0 * acc / k * (1 - np.exp(-24 * k))
    np.testing.assert_allclose(cm.auc_ng_h_ml, auc, rtol=1e-12)
    # the trough is the value just before the next dose, exactly
    np.testing.assert_allclose(cm.trough_ng_ml[:2], c0 * acc[:2] * np.exp(-k * 24), rtol=1e-12)
    assert np.isnan(cm.trough_ng_ml[2])
    assert np.all(np.isnan(cm.peak_occupancy))


def test_population_metrics_match_single_runs():
    model = ketasim.load_model("esketamine-nasal")
    d = ketasim.spravato_course(months=1)
    t = ketasim.time_grid(24 * 30, 0.05)
    kel = np.array([0.8, 1.11, 1.5])
    pop = course_metrics(ketasim.simulate(model, d, t, params={"KEL": kel}))
    for i, k in enumerate(kel):
        one = course_metrics(ketasim.simulate(model, d, t, params={"KEL": float(k)}))
        np.testing.assert_allclose(pop.cmax_ng_ml[i], one.cmax_ng_ml, rtol=1e-12)
        np.testing.assert_allclose(pop.time_above_h[0.3][i], one.time_above_h[0.3])
        assert pop.plasticity_end[i] == pytest.approx(one.plasticity_end)


def test_time_above_threshold_against_curve():
    model = ketasim.load_model("esketamine-nasal")
    d = ketasim.Doses.single(84.0, "intranasal")
    t = ketasim.time_grid(24, 0.001)
    r = ketasim.simulate(model, d, t)
    cm = course_metrics(r, thresholds=(0.2,))       # in-vivo occupancy peaks near 0.25
    above = t[r.occupancy >= 0.2]
    assert above.size > 100
    assert cm.time_above_h[0.2][0] == pytest.approx(above[-1] - above[0], abs=0.003)
    assert cm.peak_glutamate[0] == pytest.approx(r.glutamate.max())


def test_sessions_and_maintenance_start():
    d = ketasim.standard_iv_course(months=6)
    s = session_starts(d)
    assert list(s / 24) == [0, 2, 4, 7, 10, 14, 21, 28, 56, 84, 112, 140, 168]
    assert maintenance_start(s) == 28 * 24
    nasal = ketasim.spravato_course(56, "biweekly", 6)
    assert maintenance_start(session_starts(nasal)) == 56 * 24
