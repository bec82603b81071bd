"""Dose tables that carry subjects or covariate columns, in every command that takes a dose
table: each value comes from one place (a column and an option for the same value is refused,
never silently resolved either way), and a command that gives one table to everyone it runs
takes a one-subject table and refuses a table of several subjects."""

from __future__ import annotations

import numpy as np
import pytest

import ketasim
from ketasim.cli import main
from ketasim.errors import KetasimInputError
from ketasim.metrics import course_metrics
from ketasim.population import population, sweep

ROWS = "0,35,iv,0.6667\n48,35,iv,0.6667\n"


def _table(tmp_path, name, header_extra="", rows=None, extra=""):
    p = tmp_path / name
    body = rows if rows is not None else "".join(
        f"{r.strip()}{extra}\n" for r in ROWS.strip().splitlines())
    p.write_text(f"time_h,amount_mg,route,duration_h{header_extra}\n{body}")
    return p


def test_course_of_a_one_subject_table_uses_its_weight(tmp_path, capsys):
    """NONMEM-style one-subject table with WT: the course runs at that weight (figure title
    and numbers), as the same doses at --weight 80 without the column do."""
    t = tmp_path / "one.csv"
    t.write_text("ID,TIME,AMT,CMT,DUR,WT\n7,0,35,iv,0.6667,80\n7,48,35,iv,0.6667,80\n")
    plain = _table(tmp_path, "plain.csv")
    assert main(["course", "--doses", str(t), "--out-dir", str(tmp_path / "a")]) == 0
    a = capsys.readouterr().out
    assert main(["course", "--doses", str(plain), "--weight", "80", "--out-dir",
                 str(tmp_path / "b")]) == 0
    b = capsys.readouterr().out
    assert a == b and "80 kg" in a
    assert (tmp_path / "a" / "course.csv").read_bytes() == \
        (tmp_path / "b" / "course.csv").read_bytes()


@pytest.mark.parametrize("argv, fragment", [
    (["course", "--doses", "{many}"], "has a subject column (2 subjects); a course figure"),
    (["compare", "ketamine-iv@{many}"], "has a subject column (2 subjects); a comparison"),
    (["course", "--doses", "{wt}", "--weight", "80"], "wt.csv has a weight column"),
    (["simulate", "--doses", "{wt}", "--weight", "80", "--out", "{out}"],
     "wt.csv has a weight column"),
    (["simulate", "--doses", "{cl}", "--param", "CL=100", "--out", "{out}"],
     "cl.csv; give it in one place"),
    (["population", "--doses", "{wt}", "--n", "3", "--out", "{out}"],
     "wt.csv has covariate columns (weight_kg); a population"),
    (["sweep", "--doses", "{cl}", "--vary", "V1=100:150:2", "--out", "{out}"],
     "cl.csv has covariate columns (CL); a sweep"),
])
def test_conflicts_and_several_subjects_are_one_line_errors(tmp_path, capsys, argv, fragment):
    many = tmp_path / "many.csv"
    many.write_text("subject,time_h,amount_mg,route,duration_h\n1,0,35,iv,0.6667\n"
                    "2,0,40,iv,0.6667\n")
    files = {"many": many, "wt": _table(tmp_path, "wt.csv", ",weight_kg", extra=",90"),
             "cl": _table(tmp_path, "cl.csv", ",CL", extra=",50"),
             "out": tmp_path / "out" / "o.csv"}
    argv = [a.format(**files) for a in argv]
    if argv[0] in ("course", "compare"):
        argv += ["--out-dir", str(tmp_path / "out")]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ketasim: error: ") and "\n" not in err and fragment in err, err
    assert not (tmp_path / "out").exists()


def test_api_column_and_argument_for_the_same_value(tmp_path):
    """A parameter column wins over the model's value; the same parameter in params as well is
    refused; weights as an array beside a weight column are refused, and the scalar default
    gives way to the column. Results equal the same subject given its values directly."""
    cl = ketasim.read_doses(_table(tmp_path, "cl.csv", ",CL", extra=",50"))
    wt = ketasim.read_doses(_table(tmp_path, "wt.csv", ",weight_kg", extra=",90"))
    plain = ketasim.read_doses(_table(tmp_path, "plain.csv"))
    t = ketasim.time_grid(96, 0.5)
    a = ketasim.simulate("ketamine-iv", cl, t, outputs=["plasma"])
    b = ketasim.simulate("ketamine-iv", plain, t, params={"CL": 50.0}, outputs=["plasma"])
    np.testing.assert_array_equal(a.data, b.data)
    with pytest.raises(KetasimInputError, match=r"params\['CL'\].*also a column of .*cl\.csv"):
        ketasim.simulate("ketamine-iv", cl, t, params={"CL": 60.0})
    c = ketasim.simulate("ketamine-iv", wt, t, outputs=["plasma"])
    d = ketasim.simulate("ketamine-iv", plain, t, weight_kg=90.0, outputs=["plasma"])
    np.testing.assert_array_equal(c.data, d.data)
    with pytest.raises(KetasimInputError, match=r"weight_kg: .*wt\.csv has a weight column"):
        ketasim.simulate("ketamine-iv", wt, t, weight_kg=np.array([60.0, 70.0]))
    # the metrics re-run the same subject: the column applies again, not twice
    np.testing.assert_allclose(course_metrics(a).cmax_ng_ml, course_metrics(b).cmax_ng_ml,
                               rtol=1e-12)


def test_population_and_sweep_refuse_covariate_columns_in_python(tmp_path):
    cl = ketasim.read_doses(_table(tmp_path, "cl.csv", ",CL", extra=",50"))
    with pytest.raises(KetasimInputError, match=r"covariate columns \(CL\); a population"):
        population("ketamine-iv", cl, 3, progress=False)
    with pytest.raises(KetasimInputError, match=r"covariate columns \(CL\); a sweep"):
        sweep("ketamine-iv", cl, {"V1": [100.0, 150.0]}, progress=False)


def test_summary_of_subjects_keeps_every_column_and_exact_ids(tmp_path, capsys):
    """The summary's columns are the population's (the last subject having no session within
    --until drops none); IDs that are not whole numbers print exactly, in the table and the
    CSV, so two subjects never print alike."""
    d = tmp_path / "d.csv"
    d.write_text("subject,time_h,amount_mg,route,duration_h\n1,0,35,iv,0.6667\n"
                 "1.00000000001,0,70,iv,0.6667\n2,100,35,iv,0.6667\n")
    out = tmp_path / "o.csv"
    assert main(["simulate", "--doses", str(d), "--until", "48", "--out", str(out),
                 "--summary"]) == 0
    lines = capsys.readouterr().out.splitlines()
    head = lines[1].split()
    assert head[0] == "subject" and head[-2:] == ["peak_occupancy", "peak_glutamate"]
    rows = [ln.split() for ln in lines[2:4]]
    assert [r[0] for r in rows] == ["1", "1.00000000001"]
    assert all(len(r) == len(head) for r in rows)
    ids = np.loadtxt(out, delimiter=",", skiprows=1, usecols=0)
    assert list(np.unique(ids)) == [1.0, 1.00000000001, 2.0]
    # as the table gives them: whole numbers without a decimal point, beside the others too
    texts = [ln.split(",", 1)[0] for ln in out.read_text().splitlines()[1:]]
    assert list(dict.fromkeys(texts)) == ["1", "1.00000000001", "2"]


def test_course_metrics_subject_view_and_a_result_at_time_zero(tmp_path):
    d = tmp_path / "d.csv"
    d.write_text("subject,time_h,amount_mg,route,duration_h\n1,0,35,iv,0.6667\n"
                 "1,48,35,iv,0.6667\n2,0,40,iv,0.6667\n")
    cm = course_metrics(ketasim.simulate("ketamine-iv", ketasim.read_doses(d),
                                         ketasim.time_grid(96, 0.5)))
    assert cm.subject(1).cmax_ng_ml.shape == (1,) and cm.subject(0).cmax_ng_ml.shape == (2,)
    with pytest.raises(KetasimInputError, match="subject: got 2, expected an index from 0 to 1"):
        cm.subject(2)
    with pytest.raises(KetasimInputError, match="the result ends at 0 h"):
        course_metrics(ketasim.simulate("ketamine-iv", "standard-iv", [0.0]))


def test_arrays_beside_a_table_of_subjects_have_one_value_per_subject(tmp_path):
    d = tmp_path / "d.csv"
    d.write_text("subject,time_h,amount_mg,route,duration_h\n1,0,35,iv,0.6667\n"
                 "2,0,40,iv,0.6667\n3,0,45,iv,0.6667\n")
    doses, t = ketasim.read_doses(d), ketasim.time_grid(12, 0.5)
    with pytest.raises(KetasimInputError, match=r"params\['CL'\]: 2 values, but .*d\.csv has 3 "
                       r"subjects"):
        ketasim.simulate("ketamine-iv", doses, t, params={"CL": [80.0, 90.0]})
    with pytest.raises(KetasimInputError, match=r"weight_kg: 4 values, but .*3 subjects"):
        ketasim.simulate("ketamine-iv", doses, t, weight_kg=np.full(4, 70.0))
    r = ketasim.simulate("ketamine-iv", doses, t, params={"CL": [80.0, 90.0, 100.0]},
                         outputs=["plasma"])
    one = ketasim.simulate("ketamine-iv", ketasim.Doses([0.0], [40.0], ["iv"], [0.6667]), t,
                           params={"CL": 90.0}, outputs=["plasma"])
    np.testing.assert_array_equal(r.data[1], one.data[0])


def test_messages_show_plain_numbers(capsys):
    """No numpy reprs and no 300-digit numbers in one-line errors."""
    with pytest.raises(KetasimInputError, match=r"^times: got nan at index 1, expected finite"):
        ketasim.simulate("ketamine-iv", "standard-iv", [0.0, float("nan")])
    assert main(["simulate", "--step", "1e-300", "--until", "1", "--out", "-"]) == 1
    err = capsys.readouterr().err.strip()
    assert "gives 1e+300 time points" in err and len(err) < 200


def test_a_course_scheduled_for_a_weight_is_simulated_at_that_weight(tmp_path):
    """schedule standard-iv --weight 80 writes mg amounts for 80 kg and records the weight, so
    the table simulates as the course at 80 kg (not at the default 70 kg); the same weight on
    the command line is accepted, another refused; without --weight nothing is recorded."""
    sched = tmp_path / "s80.csv"
    assert main(["schedule", "standard-iv", "--weight", "80", "--months", "1", "--out",
                 str(sched)]) == 0
    assert sched.read_text().splitlines()[0].endswith(",weight_kg")
    a, b, c = (tmp_path / f"{k}.csv" for k in "abc")
    assert main(["simulate", "--doses", str(sched), "--until", "700", "--out", str(a)]) == 0
    assert main(["simulate", "--doses", str(sched), "--weight", "80", "--until", "700",
                 "--out", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()
    want = ketasim.simulate("ketamine-iv", ketasim.standard_iv_course(weight_kg=80.0, months=1),
                            ketasim.time_grid(700, 0.1), weight_kg=80.0, outputs=["plasma"])
    got = np.loadtxt(a, delimiter=",", skiprows=1)
    head = a.read_text().splitlines()[0].split(",")
    np.testing.assert_allclose(got[:, head.index("plasma_ng_ml")],
                               want.concentration("plasma"), rtol=1e-9, atol=1e-12)
    assert main(["simulate", "--doses", str(sched), "--weight", "60", "--out", str(c)]) == 1
    plain = tmp_path / "s.csv"
    assert main(["schedule", "standard-iv", "--months", "1", "--out", str(plain)]) == 0
    assert "weight_kg" not in plain.read_text().splitlines()[0]


def test_covariates_header_reads_as_a_dose_tables_does(tmp_path, capsys):
    """WEIGHT_KG and "weight_kg" had been refused where dose tables take any letter case and
    quotes; a file with only a subject column was taken, silently changing nothing."""
    from ketasim.cli import main

    d = tmp_path / "d.csv"
    d.write_text("time_h,amount_mg,route\n0,35,iv\n")
    plain = tmp_path / "a.csv"
    plain.write_text("subject,weight_kg\n0,60\n1,80\n")
    odd = tmp_path / "b.csv"
    odd.write_text('subject,"WEIGHT_KG"\n0,60\n1,80\n')
    outs = []
    for cov in (plain, odd):
        out = tmp_path / f"o_{cov.stem}.csv"
        assert main(["population", "--n", "2", "--covariates", str(cov), "--doses", str(d),
                     "--quiet", "--out", str(out)]) == 0
        outs.append([ln for ln in out.read_text().splitlines() if not ln.startswith("#")])
    assert outs[0] == outs[1]
    only = tmp_path / "c.csv"
    only.write_text("subject\n0\n1\n")
    assert main(["population", "--n", "2", "--covariates", str(only), "--doses", str(d),
                 "--quiet"]) == 1
    assert "no covariate column (only subject)" in capsys.readouterr().err


def test_an_age_outside_the_fitted_range_in_a_table_names_the_tables_subject_id():
    # (it had named "subject 1, counted from 0 as in the subject column": the position, not
    # the ID 20 the table gives that subject)
    d = ketasim.Doses([0, 0], [56, 56], ["intranasal"] * 2, subject=[10, 20],
                      covariates={"AGE": [30.0, 100.0]}, source="ages.csv")
    with pytest.raises(KetasimInputError, match=r"^AGE \(the age_y covariate\) \(subject 20 of "
                                                r"ages.csv\): got 100, outside 18-86"):
        ketasim.simulate("esketamine-nasal", d, [0.0, 1.0])


def test_a_table_with_a_covariate_not_given_on_some_rows_is_written_and_read_back(tmp_path):
    # (write_doses had written the missing value as "nan", which read_doses refuses)
    d = ketasim.Doses.from_records([
        {"time_h": 0, "amount_mg": 35, "route": "iv", "subject": 1, "weight_kg": 70},
        {"time_h": 24, "amount_mg": 35, "route": "iv", "subject": 1},
        {"time_h": 0, "amount_mg": 40, "route": "iv", "subject": 2, "weight_kg": 80.5}])
    p = tmp_path / "d.csv"
    ketasim.write_doses(d, p)
    assert p.read_text().splitlines()[2].endswith(",1,")
    assert ketasim.read_doses(p) == d
