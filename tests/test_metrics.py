"""Course metrics against values computed by hand from the curves and closed forms."""

import _models
import numpy as np
import pytest

import ketasim
from ketasim.engine import session_metrics
from ketasim.metrics import course_metrics, maintenance_start, session_starts


def one_cpt():
    return _models.one_cpt(V=100.0, CL=10.0, observe=True)


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
    # evenly spaced sessions (or a course cut within its induction) have no maintenance phase:
    # its minimum would otherwise be the value before the first dose
    assert np.isnan(maintenance_start(s[:3]))
    assert np.isnan(maintenance_start(np.arange(5) * 168.0))
    assert maintenance_start(np.r_[0.0, 24.0, np.arange(1, 5) * 168.0]) == 168.0
    assert np.isnan(maintenance_start(s[:6]))      # days 0-14: a last interval of its own


def _dataset(tmp_path):
    """Two subjects of the standard course's first week: subject 7 three sessions (one a
    double dose, the maintenance rule needs three), subject 9 one session."""
    p = tmp_path / "d.csv"
    p.write_text("subject,time_h,amount_mg,route,duration_h\n"
                 "7,0,35,iv,0.6667\n7,48,35,iv,0.6667\n7,96,70,iv,0.6667\n"
                 "9,24,40,iv,0.6667\n")
    return p


def test_dataset_metrics_are_each_subjects_own_run(tmp_path):
    """A dose table with subjects: each subject's sessions and metrics, the course values
    included, equal those of that subject's doses run alone."""
    d = ketasim.read_doses(_dataset(tmp_path))
    t = ketasim.time_grid(24 * 8, 0.1)
    pop = course_metrics(ketasim.simulate("ketamine-iv", d, t))
    assert pop.session_start_h.shape == (2, 3)
    np.testing.assert_array_equal(pop.session_start_h[1], [24.0, np.nan, np.nan])
    for i, rows in enumerate(([0.0, 48.0, 96.0], [24.0])):
        alone = ketasim.Doses(rows, [35.0, 35.0, 70.0][:len(rows)] if i == 0 else [40.0],
                              ["iv"] * len(rows), [0.6667] * len(rows))
        one = course_metrics(ketasim.simulate("ketamine-iv", alone, t))
        s = len(rows)
        np.testing.assert_allclose(pop.cmax_ng_ml[i, :s], one.cmax_ng_ml, rtol=1e-12)
        np.testing.assert_allclose(pop.auc_ng_h_ml[i, :s], one.auc_ng_h_ml, rtol=1e-12)
        assert pop.plasticity_end[i] == pytest.approx(one.plasticity_end, rel=1e-9)
        sub = pop.subject(i)
        (h1, r1), (h2, r2) = sub.table(), one.table()
        assert h1 == h2
        np.testing.assert_allclose(np.array(r1, float), np.array(r2, float), rtol=1e-12)
        np.testing.assert_equal(sub.maintenance_start_h, one.maintenance_start_h)
        np.testing.assert_equal(sub.plasticity_min_maintenance, one.plasticity_min_maintenance)
    head, rows = pop.table(subjects=[7, 9])
    assert head[:3] == ["subject", "session", "start_day"]
    assert [r[:2] for r in rows] == [[7, 1], [7, 2], [7, 3], [9, 1]]
    with pytest.raises(ketasim.KetasimInputError, match="labels"):
        pop.table()


def test_lowest_plasticity_in_maintenance_ends_at_the_last_session_not_the_washout():
    """Maintenance every 14 days, the course simulated 28 days past its last session: the
    lowest schematic plasticity during maintenance is the lowest trough before a maintenance
    session (a dense grid's minimum from maintenance's start to the last session), not the
    washout value after the course ends (which it had been)."""
    from ketasim.explore import course_doses

    d = course_doses("ketamine-iv", 0.5, 70.0, 14.0, months=3)
    starts = np.unique(d.time_h)
    t = ketasim.time_grid(starts[-1] + 28 * 24, 0.05)
    r = ketasim.simulate("ketamine-iv", d, t, outputs=["plasma", "plasticity"])
    cm = course_metrics(r)
    ms = cm.maintenance_start_h
    assert np.isfinite(ms)
    p = r.output("plasticity")
    inside = p[(t >= ms) & (t <= starts[-1])]
    np.testing.assert_allclose(cm.plasticity_min_maintenance, inside.min(), rtol=1e-3)
    assert cm.plasticity_min_maintenance > 10 * p[-1]      # the washout is far lower


def test_course_metrics_warns_of_sessions_after_the_results_end():
    """A result that ends before later sessions gave their metrics silently left out (the CLI
    said so; Python did not): a KetasimWarning now names how many, as a horizon does, and a
    result over the whole course says nothing."""
    import warnings

    d = ketasim.standard_iv_course(0.5, 70, 6)
    short = ketasim.simulate("ketamine-iv", d, np.arange(0.0, 240.01, 0.5), outputs=["plasma"])
    msg = (r"course_metrics: times\[-1\] = 240 h: 9 of 13 sessions \(9 doses\) start at or "
           r"after it \(from day 10\)")
    with pytest.warns(ketasim.KetasimWarning, match=msg) as got:
        cm = course_metrics(short)
    assert len(got) == 1
    np.testing.assert_array_equal(cm.session_start_h, [0, 48, 96, 168])
    whole = ketasim.simulate("ketamine-iv", d, ketasim.time_grid(170 * 24, 1.0),
                             outputs=["plasma"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ketasim.KetasimWarning)
        course_metrics(whole)


def test_course_metrics_of_a_model_without_plasma_describe_its_first_concentration():
    """course_metrics(result) had refused a model without a plasma alias ("analyte: unknown
    name 'plasma'") though session_metrics, population and run_course describe its first
    concentration."""
    import tomllib

    from test_bad_inputs import GOOD_MODEL

    m = ketasim.Model.from_dict(tomllib.loads(GOOD_MODEL), source="one-cpt")
    d = ketasim.Doses.single(10.0, "iv")
    cm = course_metrics(ketasim.simulate(m, d, ketasim.time_grid(24, 1)))
    assert cm.analyte == "central"
    assert cm.cmax_ng_ml[0] == pytest.approx(10.0 / 50.0 * 1000.0)
    ref = session_metrics(m, d, metrics=["cmax", "auc"], horizon_h=24.0)
    assert cm.auc_ng_h_ml[0] == pytest.approx(ref["auc_s1"][0], rel=1e-12)
