"""Courses expand exactly as described, for any weight and length."""

import math
import re
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ketasim
from ketasim import KetasimInputError
from ketasim.courses import DAYS_PER_MONTH, Phase, course_from_phases, read_course_toml


def expected_standard_days(months, every=28.0):
    days = [0, 2, 4, 7, 10, 14, 21, 28]
    d = 28 + every
    while d < months * DAYS_PER_MONTH:
        days.append(d)
        d += every
    return [x for x in days if x < months * DAYS_PER_MONTH]


@settings(max_examples=60, deadline=None)
@given(weight=st.floats(3.0, 250.0), months=st.floats(0.1, 36.0),
       mgkg=st.floats(0.05, 2.0))
def test_standard_iv_course(weight, months, mgkg):
    d = ketasim.standard_iv_course(dose_mg_per_kg=mgkg, weight_kg=weight, months=months)
    np.testing.assert_allclose(d.time_h / 24.0, expected_standard_days(months))
    np.testing.assert_allclose(d.amount_mg, mgkg * weight)
    np.testing.assert_allclose(d.duration_h, 40 / 60)
    assert set(d.route) == {"iv"}


def test_standard_iv_six_months_by_hand():
    d = ketasim.standard_iv_course()
    assert list(d.time_h / 24) == [0, 2, 4, 7, 10, 14, 21, 28, 56, 84, 112, 140, 168]
    assert np.all(d.amount_mg == 35.0)
    # three sessions in week 1, two in week 2, one in each of weeks 3-5
    week = (d.time_h / 24 // 7).astype(int)
    assert [int(np.sum(week == w)) for w in range(5)] == [3, 2, 1, 1, 1]


@settings(max_examples=40, deadline=None)
@given(months=st.floats(0.1, 24.0), dose=st.sampled_from([56, 84]),
       maint=st.sampled_from(["weekly", "biweekly"]))
def test_spravato_course(months, dose, maint):
    d = ketasim.spravato_course(dose, maint, months)
    end = months * DAYS_PER_MONTH
    every = 7 if maint == "weekly" else 14
    days = [0, 3, 7, 10, 14, 17, 21, 24, 28, 35, 42, 49]
    x = 56
    while x < end:
        days.append(x)
        x += every
    days = [x for x in days if x < end]
    np.testing.assert_allclose(d.time_h / 24, days)
    assert d.amount_mg[0] == 56.0
    np.testing.assert_allclose(d.amount_mg[1:], dose)
    assert set(d.route) == {"intranasal"}
    assert np.all(d.duration_h == 0)


def test_phases_builder_and_toml(tmp_path):
    phases = [Phase(weeks=2, per_week=3), Phase(every_days=10, count=3)]
    d = course_from_phases(phases, 20.0, "iv", duration_h=1.0)
    assert list(d.time_h / 24) == [0, 2, 4, 7, 9, 11, 21, 31, 41]
    f = tmp_path / "c.toml"
    f.write_text('amount_mg = 20\nroute = "iv"\nduration_h = 1.0\n'
                 "[[phase]]\nweeks = 2\nper_week = 3\n"
                 "[[phase]]\nevery_days = 10\ncount = 3\n")
    assert read_course_toml(f) == d


def test_an_empty_phase_in_a_course_file_is_named_as_empty(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('amount_mg = 20\nroute = "iv"\n[[phase]]\nweeks = 1\nper_week = 2\n'
                 "[[phase]]\n")
    with pytest.raises(ketasim.KetasimInputError, match=r"phase\[1\]: empty; expected weeks"):
        read_course_toml(f)


def test_course_cli_writes_dose_table(tmp_path):
    from ketasim.cli import main
    out = tmp_path / "doses.csv"
    assert main(["schedule", "standard-iv", "--weight", "80", "--months", "3",
                 "--out", str(out)]) == 0
    d = ketasim.read_doses(out)
    np.testing.assert_allclose(d.time_h / 24, expected_standard_days(3))
    np.testing.assert_allclose(d.amount_mg, 40.0)
    out2 = tmp_path / "s.csv"
    assert main(["schedule", "spravato", "--dose", "84", "--maintenance", "weekly",
                 "--months", "4", "--out", str(out2)]) == 0
    s = ketasim.read_doses(out2)
    assert s.amount_mg[0] == 56 and np.all(s.amount_mg[1:] == 84)
    assert math.isclose(s.time_h[-1] / 24 % 7, 0)


def test_a_phase_cannot_start_at_the_instant_of_the_previous_session():
    import pytest

    from ketasim.errors import KetasimInputError

    ok = course_from_phases([Phase(weeks=1, per_week=3), Phase(every_days=7, count=2,
                                                               after_days=1.5)], 35.0, "iv")
    np.testing.assert_allclose(ok.time_h / 24, [0, 2, 4, 5.5, 12.5])
    with pytest.raises(KetasimInputError, match="after_days: got 0"):
        course_from_phases([Phase(weeks=1, per_week=3), Phase(every_days=7, count=2,
                                                              after_days=0)], 35.0, "iv")
    # a course may start with such a phase: there is no previous session
    first = course_from_phases([Phase(every_days=7, count=2, after_days=0)], 35.0, "iv")
    np.testing.assert_allclose(first.time_h / 24, [0, 7])


def test_no_phase_may_follow_one_that_runs_to_the_end_of_the_course():
    """An every_days phase without a count runs until the end of the course: a phase after it
    is refused (it had added one stray session when its first week began before the end, and
    none otherwise), naming the phase; with a count, later phases are fine."""
    import pytest

    from ketasim.errors import KetasimInputError

    phases = [Phase(weeks=1, per_week=3), Phase(every_days=5), Phase(weeks=1, per_week=1)]
    for months in (1.5, 2.0):
        with pytest.raises(KetasimInputError, match=r"phase 2: every_days = 5 with no count"):
            course_from_phases(phases, 10.0, "iv", months=months)
    ok = course_from_phases([Phase(weeks=1, per_week=3), Phase(every_days=5, count=2),
                             Phase(weeks=1, per_week=1)], 10.0, "iv", months=1.5)
    np.testing.assert_allclose(ok.time_h / 24, [0, 2, 4, 9, 14, 21])


def test_a_phase_count_or_weeks_beyond_the_course_end_is_cut_by_months_not_refused():
    """The session limit counts only the sessions a phase can add before the course ends:
    count = 10,000,001 every 7 days in a six-month course is 27 sessions (it was refused as
    more than 10,000,000), and 100,000,000 weeks of two sessions stop at the end too."""
    weekly = course_from_phases([Phase(every_days=7, count=10_000_001)], 35.0, "iv", months=6)
    assert len(weekly.time_h) == 27
    np.testing.assert_allclose(np.diff(weekly.time_h), 7 * 24.0)
    twice = course_from_phases([Phase(weeks=100_000_000, per_week=2)], 35.0, "iv", months=6)
    assert len(twice.time_h) == 2 * math.ceil(6 * DAYS_PER_MONTH / 7) - 1 or \
        len(twice.time_h) == 2 * math.ceil(6 * DAYS_PER_MONTH / 7)
    assert twice.time_h.max() < 6 * DAYS_PER_MONTH * 24
    with __import__("pytest").raises(ketasim.KetasimInputError, match="10,000,000 sessions"):
        course_from_phases([Phase(every_days=0.01)], 35.0, "iv", months=6_000_000)


@pytest.mark.parametrize("months", [1e300, 1e308, sys.float_info.max])
def test_a_course_longer_than_floats_reach_is_too_many_sessions(months):
    """months x 30.44 days past the float range had been taken for "no course length given"
    (every_days without count needs one): it is a course of too many sessions."""
    for course in (ketasim.standard_iv_course, ketasim.spravato_course):
        with pytest.raises(KetasimInputError, match="more than 10,000,000 sessions"):
            course(months=months)


def test_a_binary_or_pipe_course_file_is_named_as_a_toml_course_file(tmp_path):
    import os

    b = tmp_path / "c.toml"
    b.write_bytes(b"\x00\x01\x02\x03\xff" * 20)
    with pytest.raises(KetasimInputError, match="this is a binary file, expected a TOML course "
                                                "file"):
        ketasim.read_course_toml(b)
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    with pytest.raises(KetasimInputError, match="is not a regular file"):
        ketasim.read_course_toml(fifo)


@pytest.mark.parametrize("phases, field", [
    ("[[phase]]\nevery_days = 1e-300\ncount = 5\n", "every_days: got 1e-300"),
    ("[[phase]]\nevery_days = 7\ncount = 1\n[[phase]]\nevery_days = 7\nafter_days = 0.001\n",
     "after_days: got 0.001"),
])
def test_course_sessions_are_at_least_an_hour_apart(tmp_path, phases, field):
    """every_days = 1e-300 with count 5 had put five sessions on day 0, which the metrics
    then took as one session holding every dose."""
    p = tmp_path / "c.toml"
    p.write_text('amount_mg = 35\nroute = "iv"\nmonths = 1\n' + phases)
    with pytest.raises(ketasim.KetasimInputError, match=field + r".*at least 0.0416667 days"):
        ketasim.read_course_toml(p)


def test_a_course_infusion_longer_than_a_year_is_refused():
    """duration_h = 1e300 had been accepted: a 300-digit infusion length in the schedule and
    a concentration of 0 everywhere, without a word."""
    with pytest.raises(ketasim.KetasimInputError, match=r"duration_h: got 1e\+300.*at most 8784"):
        ketasim.course_from_phases([ketasim.Phase(every_days=7.0)], 35.0, "iv",
                                   duration_h=1e300, months=1)
    d = ketasim.course_from_phases([ketasim.Phase(every_days=7.0)], 35.0, "iv",
                                   duration_h=96.0, months=1)    # a 4-day infusion: fine
    assert d.duration_h[0] == 96.0


@pytest.mark.parametrize("cast", [np.int64, np.int32, np.float32, np.float64])
def test_course_builders_take_numpy_numbers_as_python_numbers(cast):
    # a weight or a length taken from an array or a DataFrame column is a NumPy scalar: the
    # same course as the Python number, in float64 (np.int64(70) had been "not a number > 0")
    want = ketasim.standard_iv_course(dose_mg_per_kg=1, weight_kg=70, months=2, infusion_min=40)
    got = ketasim.standard_iv_course(dose_mg_per_kg=cast(1), weight_kg=cast(70),
                                     months=cast(2), infusion_min=cast(40))
    assert got == want and got.amount_mg.dtype == np.float64
    assert ketasim.resolve_doses("standard-iv", weight_kg=cast(70)) == \
        ketasim.resolve_doses("standard-iv", weight_kg=70)
    assert ketasim.spravato_course(months=cast(2)) == ketasim.spravato_course(months=2)
    ph = Phase(every_days=cast(7), count=np.int64(3), amount_mg=cast(10))
    assert course_from_phases([ph], cast(10), "iv", duration_h=cast(1), months=cast(1)) == \
        course_from_phases([Phase(every_days=7, count=3, amount_mg=10)], 10, "iv",
                           duration_h=1, months=1)
    assert Phase(weeks=np.int64(1), per_week=np.int32(2)) == Phase(weeks=1, per_week=2)
    with pytest.raises(KetasimInputError, match="weight_kg"):
        ketasim.standard_iv_course(weight_kg=np.bool_(True))


def test_simulate_and_session_metrics_take_a_course_file_as_population_does(tmp_path):
    # (simulate and session_metrics had read a course TOML file as a CSV dose table:
    # "unknown column 'amount_mg = 35.0'")
    from ketasim.engine import session_metrics

    p = tmp_path / "c.toml"
    p.write_text('amount_mg = 35.0\nroute = "iv"\nduration_h = 0.5\nmonths = 1\n'
                 "[[phase]]\nweeks = 2\nper_week = 2\n")
    d = read_course_toml(p)
    for spec in (str(p), p):
        r = ketasim.simulate("ketamine-iv", spec, [0.0, 1.0, 100.0])
        assert r.doses == d
        np.testing.assert_array_equal(
            r.data, ketasim.simulate("ketamine-iv", d, [0.0, 1.0, 100.0]).data)
        np.testing.assert_array_equal(session_metrics("ketamine-iv", spec)["cmax"],
                                      session_metrics("ketamine-iv", d)["cmax"])


def test_sum_of_dose_tables_is_their_addition():
    """``sum([d1, d2])`` (which starts from 0) is ``d1 + d2``: it had raised a TypeError."""
    d1 = ketasim.Doses.single(35.0, "iv", duration_h=40 / 60)
    d2 = ketasim.Doses.single(20.0, "iv", time_h=48.0)
    d3 = ketasim.Doses.single(10.0, "iv", time_h=96.0)
    assert sum([d1, d2, d3]) == d1 + d2 + d3
    assert sum([d1]) == d1
    with pytest.raises(TypeError):
        1 + d1
    with pytest.raises(TypeError):
        True + d1


def test_named_courses_name_their_sources():
    """The default dose and timing of the named courses carry their sources: the standard IV
    course's 0.5 mg/kg over 40 min (Zarate 2006, Murrough 2013) with its schedule said to be a
    clinic's, not a trial's; the Spravato course the prescribing information."""
    import inspect
    import re

    from ketasim import courses

    iv = inspect.getdoc(courses.standard_iv_course)
    assert "Zarate" in iv and "Murrough" in iv and "not the protocol of a published trial" in iv
    assert "prescribing information" in inspect.getdoc(courses.spravato_course)
    text = inspect.getsource(courses)
    for name in ("STANDARD_IV_PHASES", "STANDARD_MG_PER_KG"):
        before = text[:text.index(f"\n{name} = ")]
        comment = before[before.rstrip().rfind("\n\n"):]
        assert re.search(r"(19|20)\d\d", comment), name


def test_sessions_an_hour_apart_by_adding_days_are_sessions():
    """Sessions every 1/24 day are an hour apart, but adding 1/24 day at a time puts some a
    few ulp short of it: the course had been refused ("... are 1 h apart; expected at least
    0.0416667 days (1 hour)"), and such doses taken for one session."""
    from ketasim.engine import session_starts

    d = ketasim.course_from_phases([ketasim.Phase(every_days=1 / 24, count=30)], 10.0, "iv",
                                   months=1)
    gaps = np.diff(d.time_h)
    assert (gaps < 1.0).any()                  # the rounding this is about
    np.testing.assert_allclose(gaps, 1.0, rtol=0, atol=1e-12)
    assert session_starts(d).size == 30
    # a dose truly inside the hour still joins the session before it
    near = ketasim.Doses([0.0, 1.0 - 1e-6, 2.0], [10.0] * 3, ["iv"] * 3)
    assert session_starts(near).tolist() == [0.0, 2.0]


@pytest.mark.parametrize("body, said", [
    ('route = "iv"\n[[phase]]\nevery_days = 7\ncount = 1\nafter_days = 1e308\n',
     r"course: the session on day 1e\+308 is at more than .* h, the most a time can be; "
     r"expected.*after_days"),
    ('route = " "\n[[phase]]\nevery_days = 7\ncount = 1\n',
     r"route: got ' ', expected a route name"),
    ('route = "i\\nv"\n[[phase]]\nevery_days = 7\ncount = 1\n',
     r"route: got 'i\\nv', expected a route name .*no control characters"),
])
def test_a_course_file_that_makes_no_dose_table_is_named_once(tmp_path, body, said):
    """after_days = 1e308 had printed NumPy's 'overflow encountered in multiply' and then
    '<file>: <file>: row 1: time_h: got np.float64(inf), expected a finite number'; a blank
    route had been '<file>: <file>: row 1: route is blank' (a course file has no rows); a
    route with a line break in it had been taken, splitting the schedule's table rows."""
    import warnings

    p = tmp_path / "c.toml"
    p.write_text("amount_mg = 35\n" + body)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(KetasimInputError) as exc:
            read_course_toml(p)
    msg = str(exc.value)
    assert msg.count(str(p)) == 1 and "row 1" not in msg and "np." not in msg, msg
    assert re.match(re.escape(str(p)) + ": " + said, msg), msg


@pytest.mark.parametrize("text", ["", "\n\n", "   \n# only a comment\n"])
def test_an_empty_course_file_is_said_to_be_empty(tmp_path, monkeypatch, text):
    """An empty course file, or nothing on standard input (``schedule custom - < /dev/null``,
    a pipe from a command that failed), had been "missing 'amount_mg'", as if the file had
    other keys: it is said to be empty."""
    import io

    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(KetasimInputError, match=re.escape(f"{p}: empty; expected a TOML "
                                                          "course file")):
        read_course_toml(p)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    with pytest.raises(KetasimInputError, match="^<stdin>: empty; expected a TOML course file"):
        read_course_toml("-")


def test_a_course_file_larger_than_a_course_is_refused_before_it_is_read(tmp_path,
                                                                       monkeypatch):
    """A course file is a few hundred bytes. On standard input one of over 1,000,000 bytes was
    refused, but the same file by name was read whole (1.6 GB took 3 minutes and 3 GB of
    memory before it was parsed; a dose table given by mistake, as long): both are refused,
    alike, after reading at most courses.MAX_COURSE_BYTES + 1 bytes."""
    import io

    head = 'amount_mg = 35\nroute = "iv"\nmonths = 1\n'
    body = "# x\n" * 300_000 + "[[phase]]\nevery_days = 7\n"
    p = tmp_path / "big.toml"
    p.write_text(head + body)
    with pytest.raises(KetasimInputError, match=re.escape(f"{p}: larger than 1,000,000 bytes; "
                                                          "expected a TOML course file")):
        read_course_toml(p)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(p.read_bytes())))
    with pytest.raises(KetasimInputError, match=r"^<stdin>: larger than 1,000,000 bytes"):
        read_course_toml("-")
    p.write_text(head + "[[phase]]\nevery_days = 7\n")      # a course's size: read
    assert len(read_course_toml(p)) == 5


def test_phases_without_sessions_are_named_not_the_course_length():
    """Phases that all have count = 0 had been refused as 'no sessions fall within the course
    length', which no course length mends."""
    with pytest.raises(KetasimInputError, match=r"its phases have no sessions \(count = 0 in "
                                                r"each\); expected a count >= 1"):
        course_from_phases([Phase(every_days=7, count=0)], 84.0, "intranasal", months=1)
    with pytest.raises(KetasimInputError, match="no sessions fall within the course length"):
        course_from_phases([Phase(every_days=7, count=2, after_days=40)], 84.0, "intranasal",
                           months=1)
