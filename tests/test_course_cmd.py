"""ketasim course / compare and the friendlier CLI, as a new user runs them."""

import csv
import math
import re
from pathlib import Path

import numpy as np
import pytest

import ketasim
from ketasim.cli import build_parser, main
from ketasim.cli_teach import TABLE_STEP_H, fmt, parse_spec

ROOT = Path(__file__).resolve().parents[1]


def _read_csv(path):
    with open(path) as fh:
        rows = list(csv.reader(fh))
    return rows[0], np.array(rows[1:], float)


def test_course_from_an_empty_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["course"]) == 0
    out = capsys.readouterr().out
    png = tmp_path / "ketasim-output" / "course.png"
    table = tmp_path / "ketasim-output" / "course.csv"
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 50_000
    assert sorted(p.name for p in png.parent.iterdir()) == ["course.csv", "course.png"]
    # a readable summary: no nan, no exponent notation, a footnote for the missing trough
    assert not re.search(r"\bnan\b", out) and not re.search(r"\de-\d", out)
    assert "–" in out and "no next session" in out
    assert "racemic ketamine" in out and "70 kg" in out
    head = next(ln for ln in out.splitlines() if ln.lstrip().startswith("session"))
    assert "h_occ_ge" not in out and "peak ng/mL" in head and "occupancy %" in head
    rows = [ln.split() for ln in out.splitlines() if ln.strip()[:2].strip().isdigit()]
    n_sessions = len(ketasim.expand(ketasim.standard_iv_course()))
    assert len(rows) == n_sessions == 13
    # the table: named analytes and PD outputs, one row per 15 min plus the infusion ends
    cols, data = _read_csv(table)
    assert cols[:3] == ["time_h", "plasma_ng_ml", "metabolite_ng_ml"]
    assert {"occupancy", "glutamate", "plasticity", "s_ketamine_ng_ml"} <= set(cols)
    assert table.stat().st_size < 4_000_000
    t = data[:, 0]
    ends = ketasim.expand(ketasim.standard_iv_course()).time_h + 40 / 60
    assert np.abs(t[:, None] - ends[None, :]).min(axis=0).max() < 1e-6
    assert np.median(np.diff(t)) == pytest.approx(TABLE_STEP_H)
    # the same numbers as the Python API at the same times
    r = ketasim.simulate("ketamine-iv", ketasim.standard_iv_course(), t)
    # (times in the file have 10 digits: a 3e-9 h shift at a kink moves values by ~1e-8)
    np.testing.assert_allclose(data[:, 1], r.concentration("plasma"), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(data[:, cols.index("occupancy")], r.occupancy, rtol=1e-5,
                               atol=1e-7)
    # the printed first-session peak is the end-of-infusion value
    peak = r.concentration("plasma")[np.argmin(np.abs(t - 40 / 60))]
    assert rows[0][2] == fmt(peak)


@pytest.mark.slow
def test_course_options_and_formats(tmp_path, capsys):
    out = tmp_path / "nasal"
    assert main(["course", "--model", "esketamine-nasal", "--doses", "spravato", "--dose",
                 "84", "--months", "3", "--weight", "60", "--out-dir", str(out), "--format",
                 "png,svg,pdf"]) == 0
    text = capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir())
    assert names == ["course.csv", "course.pdf", "course.png", "course.svg"]
    assert (out / "course.pdf").read_bytes()[:4] == b"%PDF"
    assert b"<svg" in (out / "course.svg").read_bytes()[:500]
    d = ketasim.spravato_course(84, months=3)
    rows = [ln for ln in text.splitlines() if ln.strip()[:2].strip().isdigit()]
    assert len(rows) == len(d)
    cols, data = _read_csv(out / "course.csv")
    assert data[-1, 0] == pytest.approx(d.time_h.max() + 28 * 24)
    assert "esketamine_ng_ml" not in cols and "plasma_ng_ml" in cols


def test_course_bad_input_is_one_line(tmp_path, capsys):
    assert main(["course", "--doses", "standrd-iv", "--out-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "standard-iv" in err
    assert main(["course", "--doses", "spravato", "--dose", "70", "--model",
                 "esketamine-nasal", "--out-dir", str(tmp_path)]) == 1
    assert "56 or 84" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_course_writes_all_files_or_none(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "course.png").write_bytes(b"old figure")
    (out / "course.csv").mkdir()              # cannot be replaced by a file
    assert main(["course", "--months", "1", "--out-dir", str(out)]) == 1
    assert "course.csv" in capsys.readouterr().err
    assert (out / "course.png").read_bytes() == b"old figure"
    assert sorted(p.name for p in out.iterdir()) == ["course.csv", "course.png"]


def test_compare_overlays_and_tables(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "ketamine-iv@standard-iv", "esketamine-nasal@spravato:Spravato",
                 "--out-dir", str(out)]) == 0
    text = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["compare.csv", "compare.png"]
    with open(out / "compare.csv") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["metric", "unit", "ketamine-iv", "Spravato"]
    table = {r[0]: r[2:] for r in rows[1:]}
    # the first-session peaks against independent single-dose simulations
    iv = ketasim.simulate("ketamine-iv", ketasim.Doses.single(35.0, "iv", duration_h=40 / 60),
                          [40 / 60], outputs=["plasma"]).concentration("plasma")[0]
    nasal = ketasim.simulate("esketamine-nasal", ketasim.Doses.single(56.0, "intranasal"),
                             np.r_[0:3:1 / 60], outputs=["plasma"]).concentration("plasma")
    assert float(table["first session: peak"][0]) == pytest.approx(iv, rel=1e-5)
    assert float(table["first session: peak"][1]) == pytest.approx(nasal.max(), rel=0.01)
    assert float(table["total drug given"][0]) == pytest.approx(
        35.0 * len(ketasim.standard_iv_course()))
    # the first session's AUC runs to the next session: 48 h for the IV course, 72 h for
    # Spravato (days 0 and 3), and the table says so
    assert table["first session: AUC window (to the next session, or the end)"] == ["48", "72"]
    assert "Spravato" in text and "first session: peak" in text
    assert not re.search(r"\bnan\b", text)


def test_compare_table_states_each_runs_body_weight(tmp_path, capsys):
    """A dose table written for 80 kg beside the course at 70 kg: the table had left each run's
    weight to be read out of "40 mg (0.5 mg/kg at 80 kg)" and "0.5 mg/kg (35 mg)"."""
    doses = tmp_path / "w80.csv"
    assert main(["schedule", "standard-iv", "--weight", "80", "--months", "1", "--out",
                 str(doses)]) == 0
    out = tmp_path / "cmp"
    assert main(["compare", f"ketamine-iv@{doses}:table", "ketamine-iv@standard-iv:course",
                 "--months", "1", "--out-dir", str(out)]) == 0
    rows = {r[0]: r for r in csv.reader(open(out / "compare.csv"))}
    assert rows["body weight"][1:] == ["kg", "80", "70"]
    assert re.search(r"body weight +kg +80 +70", capsys.readouterr().out)


def test_dose_with_a_course_file_names_it_a_course_file(tmp_path, capsys):
    """`course --doses my.toml --dose 0.5` is refused; the message had called the course file
    a dose table."""
    toml = tmp_path / "c.toml"
    toml.write_text('amount_mg = 20\nroute = "iv"\nduration_h = 0.6667\nmonths = 1\n'
                    "[[phase]]\nweeks = 2\nper_week = 2\n")
    assert main(["course", "--doses", str(toml), "--dose", "0.5",
                 "--out-dir", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "is a course file (its amount_mg sets the dose)" in err and "dose table" not in err
    table = tmp_path / "d.csv"
    table.write_text("time_h,amount_mg,route,duration_h\n0,35,iv,0.6667\n")
    assert main(["course", "--doses", str(table), "--dose", "0.5",
                 "--out-dir", str(tmp_path / "o")]) == 1
    assert "is a dose table" in capsys.readouterr().err


def test_course_summary_says_the_concentrations_are_in_plasma(tmp_path, capsys):
    """The summary's header named the analyte, and the effect site for occupancy, but not
    where its ng/mL columns were measured."""
    assert main(["course", "--months", "1", "--out-dir", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "Per session (ketamine (S + R) in plasma; occupancy model-predicted, peak at the " \
           "effect site" in out


def test_course_summary_of_a_model_whose_analyte_is_plasma_says_it_once(tmp_path, capsys):
    """examples/one_compartment.toml names its analyte 'plasma': the header had read
    'Per session (plasma in plasma)'."""
    ex = Path(__file__).resolve().parent.parent / "examples"
    assert main(["course", "--model", str(ex / "one_compartment.toml"), "--doses",
                 str(ex / "one_compartment_doses.csv"), "--out-dir", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "Per session (plasma):" in out and "plasma in plasma" not in out


def test_compare_warns_on_route_mismatch(tmp_path, capsys):
    assert main(["compare", "esketamine-nasal@standard-iv", "esketamine-iv@standard-iv",
                 "--months", "1", "--out-dir", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "nasal-spray model" in err
    assert main(["compare", "ketamine-iv@spravato", "esketamine-nasal@spravato",
                 "--out-dir", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    # one error that names the cause (not a warning, then an unknown route with the model's
    # compartments as the nearest names)
    assert "error" in err and "no nasal route" in err and "nasal model" in err
    assert "warning" not in err and "did you mean" not in err
    assert not (tmp_path / "x").exists()
    assert main(["simulate", "--model", "ketamine-iv", "--doses", "spravato",
                 "--out", str(tmp_path / "s.csv")]) == 1
    assert "no nasal route" in capsys.readouterr().err and not (tmp_path / "s.csv").exists()


def test_parse_spec():
    assert parse_spec("ketamine-iv@standard-iv") == ("ketamine-iv", "standard-iv", None)
    assert parse_spec("m.toml@d.csv:My run") == ("m.toml", "d.csv", "My run")
    assert parse_spec("m@C:\\doses.csv") == ("m", "C:\\doses.csv", None)
    with pytest.raises(ketasim.KetasimInputError, match="MODEL@DOSES"):
        parse_spec("ketamine-iv")


def test_parse_spec_paths_with_at_signs_and_colons(tmp_path, monkeypatch):
    """A model path may hold an @ (a cloud-drive folder) and a dose file a colon: the spec is
    cut where a preset or an existing file ends."""
    d = tmp_path / "GoogleDrive-me@gmail.com"
    d.mkdir()
    (d / "m.toml").write_text("x")
    (tmp_path / "d:1.csv").write_text("x")
    monkeypatch.chdir(tmp_path)
    m = str(d / "m.toml")
    assert parse_spec(f"{m}@d:1.csv") == (m, "d:1.csv", None)
    assert parse_spec(f"{m}@d:1.csv:Label") == (m, "d:1.csv", "Label")
    assert parse_spec(f"{m}@standard-iv:S") == (m, "standard-iv", "S")
    assert parse_spec("ketamine-iv@spravato") == ("ketamine-iv", "spravato", None)


def test_a_compare_label_may_hold_a_colon(tmp_path, monkeypatch):
    """A label with a colon of its own ("Dose: high") had been cut at that colon: the doses
    read as 'standard-iv:Dose', a course that does not exist."""
    (tmp_path / "d.csv").write_text("x")
    monkeypatch.chdir(tmp_path)
    assert parse_spec("ketamine-iv@standard-iv:Dose: high") == ("ketamine-iv", "standard-iv",
                                                               "Dose: high")
    assert parse_spec("ketamine-iv@d.csv:a:b") == ("ketamine-iv", "d.csv", "a:b")
    assert parse_spec("m@C:\\doses.csv:run") == ("m", "C:\\doses.csv", "run")


def test_fmt():
    assert fmt(7.889e-27) == "<0.005" and fmt(-3e-15) == "0" and fmt(0.0) == "0"
    assert fmt(float("nan")) == "–"
    assert fmt(158.88) == "159" and fmt(2.3145) == "2.31" and fmt(4921.3) == "4,921"
    assert fmt(0.398, "pct") == "40"
    # a small value is shown as small, not as 0 (a plasticity index of 9.2e-06 at the end)
    assert fmt(9.17e-06) == "<0.005" and fmt(-0.002) == ">-0.005" and fmt(0.0051) == "0.0051"
    assert not math.isnan(float(fmt(0.0137)))


def test_simulate_out_dash_writes_csv_to_stdout(tmp_path, capsys):
    f = tmp_path / "a.csv"
    assert main(["simulate", "--until", "2", "--step", "0.5", "--out", str(f)]) == 0
    capsys.readouterr()
    assert main(["simulate", "--until", "2", "--step", "0.5", "--out", "-"]) == 0
    assert capsys.readouterr().out == f.read_text()


def test_schedule_prints_without_out(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["schedule", "standard-iv"]) == 0
    out = capsys.readouterr().out
    lines = [ln.split() for ln in out.splitlines() if ln.strip()[:2].strip().isdigit()
             and len(ln.split()) == 7]
    assert len(lines) == 13 and lines[0][:4] == ["1", "0", "1", "Mon"]
    assert lines[4][1] == "10" and lines[-1][1] == "168"
    assert list(tmp_path.iterdir()) == []
    assert main(["schedule", "spravato", "--out", "-"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0] == "time_h,amount_mg,route,duration_h,addl,ii_h"
    (tmp_path / "s.csv").write_text(text)
    assert ketasim.read_doses(tmp_path / "s.csv") == ketasim.spravato_course()


def test_schedule_and_course_summary_tell_sessions_an_hour_apart(tmp_path, capsys):
    """Session days had been printed to 3 significant digits: sessions an hour apart on day
    28 both read "28" (and day 128.1 read "128"). A session off midnight now shows its day and
    clock time."""
    toml = tmp_path / "c.toml"
    toml.write_text('amount_mg = 35\nroute = "iv"\nmonths = 12\n'
                    "[[phase]]\nevery_days = 28\ncount = 2\n"
                    "[[phase]]\nevery_days = 0.05\ncount = 2\n"
                    "[[phase]]\nafter_days = 100\nevery_days = 0.25\ncount = 2\n")
    assert main(["schedule", "custom", str(toml)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["session", "day", "week"]
    days = [re.match(r"\s*\d+\s+(\d+(?: \d\d:\d\d)?)\s+\d+\s", ln).group(1)
            for ln in out[1:7]]
    assert days == ["0", "28", "28 01:12", "28 02:24", "128 02:24", "128 08:24"]
    # a session at a clock time has its weekday too (day 0 a Monday; it had been "–")
    weekdays = [ln.split()[4 if re.match(r"\s*\d+\s+\d+ \d\d:\d\d", ln) else 3]
                for ln in out[1:7]]
    assert weekdays == ["Mon", "Mon", "Mon", "Mon", "Wed", "Wed"]   # (day 128: 18 weeks + 2)
    table = tmp_path / "d.csv"
    table.write_text("time_h,amount_mg,route,duration_h\n0,35,iv,0.5\n672,35,iv,0.5\n"
                     "673,35,iv,0.5\n")
    assert main(["course", "--doses", str(table), "--out-dir", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out.splitlines()
    i = next(k for k, ln in enumerate(out) if ln.split()[:2] == ["session", "day"])
    days = [re.match(r"\s*\d+\s+(\d+(?: \d\d:\d\d)?)\s", ln).group(1)
            for ln in out[i + 1:i + 4]]
    assert days == ["0", "28", "28 01:00"]


def test_schedule_of_huge_amounts_is_compact_and_never_says_inf(tmp_path, capsys):
    """A course file with amount_mg = 1e308 had printed a 300-digit dose column, NumPy's
    "overflow encountered in reduce" warning and "inf mg in all"."""
    toml = tmp_path / "big.toml"
    toml.write_text('amount_mg = 1e308\nroute = "iv"\nmonths = 2\n[[phase]]\nevery_days = 7\n')
    import warnings

    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        assert main(["schedule", "custom", str(toml)]) == 0
    assert not said, [str(w.message) for w in said]
    cap = capsys.readouterr()
    assert cap.err == ""
    lines = cap.out.splitlines()
    assert max(len(ln) for ln in lines[:-1]) < 80, lines[1]
    assert lines[1].split()[4] == "1e+308"
    assert not re.search(r"\binf\b", cap.out) and "too large to add up" in lines[-1]
    toml.write_text('amount_mg = 33.25\nroute = "iv"\nmonths = 1\n[[phase]]\nevery_days = 7\n')
    assert main(["schedule", "custom", str(toml)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[4] == "33.25" and lines[-1].startswith("5 sessions, 166.25 mg in all")
    # the summary's numbers of such a course: compact too
    assert fmt(5.00762504289e202) == "5.01e+202" and fmt(-2e12) == "-2e+12"


def test_presets_name_lists_parameters_and_routes(capsys):
    assert main(["presets", "ketamine-iv"]) == 0
    out = capsys.readouterr().out
    cl = next(ln for ln in out.splitlines() if ln.startswith("CL "))
    assert cl.split()[:3] == ["CL", "95.2", "L/h"] and "Fanta 2015" in cl
    ki = next(ln for ln in out.splitlines() if ln.startswith("KI_S "))
    assert "µM" in ki and "Ebert" in ki
    assert "SCHEMATIC" in out and "GLU_EC50" in out
    assert "Routes:" in out and "iv: to s_central, f = 0.5; to r_central, f = 0.5" in out
    assert main(["presets", "esketamine-nasal"]) == 0
    out = capsys.readouterr().out
    assert "intranasal:" in out and "Perez-Ruixo 2021" in out


@pytest.mark.parametrize("name, said", [
    ("ketamin-iv", "'ketamin-iv' is neither a file nor a preset (did you mean 'ketamine-iv'?)"),
    ("nosuch.toml", "file 'nosuch.toml' not found"),
    ("", "got '', expected a preset name"),
])
def test_presets_names_its_argument_in_errors(name, said, capsys):
    """`presets ketamin-iv` had been refused as "model: ...", naming an option presets does
    not have; the error now names the command's NAME argument."""
    assert main(["presets", name]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"ketasim: error: presets NAME: {said}"), err
    assert len(err.splitlines()) == 1


def test_debug_works_after_the_subcommand(capsys):
    assert main(["presets", "no-such-model"]) == 1
    with pytest.raises(ketasim.KetasimInputError):
        main(["presets", "no-such-model", "--debug"])
    with pytest.raises(ketasim.KetasimInputError):
        main(["--debug", "presets", "no-such-model"])


def _actions(parser, path=()):
    import argparse

    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sp in a.choices.items():
                yield from _actions(sp, path + (name,))
        elif a.option_strings and a.dest not in ("help", "version"):
            yield path, a




def test_every_option_says_its_default():
    missing = [f"{' '.join(p)} {a.option_strings[0]}" for p, a in _actions(build_parser())
               if not a.help or ("default" not in a.help and not a.required)]
    assert missing == []


def test_course_months_help_says_a_course_file_keeps_its_own_length(tmp_path, capsys):
    """`course --months` defaults to 6 only for a course name: a course TOML file keeps its own
    months, and a dose table takes no --months (refused); the help said "default: 6"."""
    a = next(a for p, a in _actions(build_parser())
             if p == ("course",) and "--months" in a.option_strings)
    assert "the file's" in a.help and "dose table" in a.help
    toml = tmp_path / "c.toml"
    toml.write_text('amount_mg = 35\nroute = "iv"\nduration_h = 0.6667\nmonths = 2\n'
                    '[[phase]]\nweeks = 2\nper_week = 3\n[[phase]]\nevery_days = 14\n')
    assert main(["course", "--doses", str(toml), "--out-dir", str(tmp_path / "o")]) == 0
    assert "over 53 days" in capsys.readouterr().out


def test_course_too_long_for_its_figure_is_refused_at_once_naming_months(tmp_path, capsys):
    """A course whose 5-minute figure grid is beyond the grid limit, or whose outputs on it
    cannot be held, is refused before anything is computed, naming --months (it used to fill
    memory and then blame --step and --until, which course does not have)."""
    out = tmp_path / "o"
    assert main(["course", "--months", "30000", "--out-dir", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ketasim: error: --months: got 30000:") and "200,000,000" in err
    assert not out.exists() or not any(out.iterdir())
    assert main(["compare", "ketamine-iv@standard-iv", "esketamine-nasal@spravato",
                 "--months", "30000", "--out-dir", str(out)]) == 1
    assert "--months: got 30000:" in capsys.readouterr().err


def test_compare_months_sets_the_courses_and_leaves_dose_tables(tmp_path, capsys):
    """--months applies to the SPECs that name a course; a dose-table SPEC keeps its own
    times (it used to refuse the whole command); with no course named it is refused."""
    table = tmp_path / "two_months.csv"
    assert main(["schedule", "standard-iv", "--months", "2", "--out", str(table)]) == 0
    capsys.readouterr()
    out = tmp_path / "cmp"
    assert main(["compare", "ketamine-iv@standard-iv:course", f"ketamine-iv@{table}:table",
                 "--months", "2", "--out-dir", str(out)]) == 0
    text = capsys.readouterr().out
    sessions = [ln for ln in text.splitlines() if ln.startswith("sessions")]
    assert sessions and sessions[0].split()[1:] == ["9", "over", "56", "days"] * 2
    assert main(["compare", f"ketamine-iv@{table}:a", f"esketamine-iv@{table}:b",
                 "--months", "2", "--out-dir", str(out)]) == 1
    assert "--months: got 2, but no SPEC names a course" in capsys.readouterr().err


def test_a_compare_label_too_long_for_the_figure_is_refused():
    assert parse_spec("ketamine-iv@standard-iv:" + "x" * 60)[2] == "x" * 60
    with pytest.raises(ketasim.KetasimInputError, match="61 characters; expected at most 60"):
        parse_spec("ketamine-iv@standard-iv:" + "x" * 61)


def test_a_dose_in_mg_given_for_the_mg_per_kg_course_is_refused(tmp_path, capsys):
    """--dose 56 with the default standard-iv course meant 56 mg/kg (112 times the standard
    dose, a peak of 17,800 ng/mL) with no warning."""
    from ketasim.cli import main

    assert main(["course", "--dose", "56", "--out-dir", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err
    assert "mg/kg" in err and "at most 10" in err
    assert not (tmp_path / "c").exists()


def test_a_nasal_session_entered_one_row_per_device_is_warned_about():
    """Three 28-mg rows five minutes apart are each taken as a first device (the nasal
    fraction depends on a row's amount: +28 % Cmax against one 84-mg row): warned; the label
    course (sessions days apart) is not."""
    from ketasim.cli_teach import route_warning

    m = ketasim.load_model("esketamine-nasal")
    per_device = ketasim.Doses([0.0, 5 / 60, 10 / 60], [28.0] * 3, ["intranasal"] * 3)
    one_row = ketasim.Doses([0.0], [84.0], ["intranasal"])
    t = np.linspace(0.0, 4.0, 241)
    with pytest.warns(ketasim.KetasimWarning, match="5 min apart"):     # (Python says so too)
        a = ketasim.simulate(m, per_device, t, outputs=["plasma"]).data.max()
    b = ketasim.simulate(m, one_row, t, outputs=["plasma"]).data.max()
    assert a > 1.2 * b                                 # why the warning matters
    msg = route_warning(m, per_device)
    assert msg is not None and "5 min apart" in msg and "one row per session" in msg
    assert route_warning(m, ketasim.spravato_course(months=2)) is None
    assert route_warning(ketasim.load_model("ketamine-iv"), ketasim.standard_iv_course()) is None


def test_a_compare_label_with_dollar_signs_is_drawn_as_text(tmp_path, capsys):
    """A label is text: "$...$" in it is not a formula (an unknown command in one had ended in
    an internal error from matplotlib's formula parser)."""
    out = tmp_path / "cmp"
    assert main(["compare", r"ketamine-iv@standard-iv:$\undefinedcmd$",
                 "esketamine-nasal@spravato:Spravato", "--months", "1",
                 "--out-dir", str(out)]) == 0
    with open(out / "compare.csv") as fh:
        assert next(csv.reader(fh))[2] == r"$\undefinedcmd$"


def test_simulate_to_a_closed_standard_output_is_refused(monkeypatch, capsys):
    import sys

    monkeypatch.setattr(sys, "stdout", None)
    assert main(["simulate", "--until", "10", "--out", "-"]) == 1
    err = capsys.readouterr().err
    assert "--out -: standard output is closed" in err


def test_compare_reads_standard_input_once_for_every_spec(tmp_path, capsys, monkeypatch):
    """`cat doses.csv | ketasim compare ketamine-iv@-:a esketamine-iv@-:b` had read the table
    for the first SPEC and then found standard input empty ('<stdin>: empty dose table')."""
    import io
    import sys

    data = b"time_h,amount_mg,route,duration_h\n0,35,iv,0.6667\n48,35,iv,0.6667\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    out = tmp_path / "c"
    assert main(["compare", "ketamine-iv@-:a", "esketamine-iv@-:b", "--out-dir", str(out)]) == 0
    rows = {r[0]: r for r in csv.reader(open(out / "compare.csv"))}
    assert rows["metric"][2:] == ["a", "b"]
    assert "35 mg" in rows["route and dose per session"][3]
    assert rows["sessions"][2] == rows["sessions"][3] == "2 over 2 days"


def test_a_course_toml_file_is_taken_as_doses(tmp_path, capsys):
    """`--doses my-course.toml` had been read as a CSV ("unknown column 'amount_mg=20'"): a
    course file now gives the same dose table as `schedule custom` writes."""
    toml = tmp_path / "e.toml"
    toml.write_text('amount_mg = 20\nroute = "iv"\nduration_h = 0.6667\nmonths = 1\n'
                    "[[phase]]\nweeks = 2\nper_week = 2\n")
    csv_path = tmp_path / "e.csv"
    assert main(["schedule", "custom", str(toml), "--out", str(csv_path)]) == 0
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert main(["simulate", "--doses", str(toml), "--out", str(a)]) == 0
    assert main(["simulate", "--doses", str(csv_path), "--out", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()
    d = ketasim.resolve_doses(str(toml), months=2)
    assert len(d.time_h) == 4 and d.amount_mg[0] == 20.0
    with pytest.raises(ketasim.KetasimInputError, match="a course file .* sets its own"):
        ketasim.resolve_doses(str(toml), dose_mg_per_kg=1.0)


def test_schedule_custom_reads_the_course_file_from_standard_input(tmp_path, capsys,
                                                                   monkeypatch):
    """`schedule custom -` had been "course: file '-' not found": '-' now reads the course
    file from standard input, as `--doses -` reads a dose table."""
    import io
    import sys

    toml = tmp_path / "e.toml"
    toml.write_text('amount_mg = 20\nroute = "iv"\nduration_h = 0.6667\nmonths = 1\n'
                    "[[phase]]\nweeks = 2\nper_week = 2\n")
    assert main(["schedule", "custom", str(toml), "--out", "-"]) == 0
    want = capsys.readouterr().out
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(toml.read_bytes())))
    assert main(["schedule", "custom", "-", "--out", "-"]) == 0
    assert capsys.readouterr().out == want
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'amount_mg = 20\n')))
    assert main(["schedule", "custom", "-"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ketasim: error: <stdin>: missing 'route'"), err


def test_compare_refuses_blank_labels_and_more_runs_than_its_figure_holds(tmp_path, capsys):
    """A label of spaces made a blank column and legend entry; eight SPECs overflowed the
    legends; a duplicate label was listed among the others, ambiguous with commas in them."""
    out = str(tmp_path / "c")
    for argv, msg in (
            (["ketamine-iv@standard-iv:  ", "esketamine-iv@standard-iv"],
             "the label after ':' is blank"),
            ([f"ketamine-iv@standard-iv:r{i}" for i in range(6)],
             "got 6 SPECs, expected at most 5"),
            (['ketamine-iv@standard-iv:A, "q"', 'esketamine-iv@standard-iv:A, "q"'],
             """two SPECs have the same label 'A, "q"'; expected a different :LABEL for """
             "each")):
        assert main(["compare", *argv, "--months", "1", "--out-dir", out]) == 1
        assert msg in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_a_weight_the_model_does_not_use_is_said_to_change_nothing(tmp_path, capsys):
    """esketamine-nasal has no weight effect: --weight 100 gave a table identical to 70 kg,
    and a sweep over weight_kg a flat heat map, with nothing saying why."""
    assert main(["course", "--model", "esketamine-nasal", "--doses", "spravato", "--weight",
                 "100", "--months", "1", "--out-dir", str(tmp_path / "a")]) == 0
    assert "has no weight effect" in capsys.readouterr().err
    assert main(["sweep", "--model", "esketamine-nasal", "--doses", "spravato", "--months",
                 "1", "--vary", "weight_kg=50:110:2", "--out", str(tmp_path / "s.csv"),
                 "--quiet"]) == 0
    assert "varying weight_kg changes nothing" in capsys.readouterr().err
    assert main(["course", "--weight", "100", "--months", "1", "--out-dir",
                 str(tmp_path / "b")]) == 0
    assert "weight effect" not in capsys.readouterr().err      # ketamine-iv scales with it


def test_a_small_occupancy_keeps_its_column_in_the_course_summary(tmp_path, capsys):
    """At 0.001 mg/kg every peak occupancy rounded to '0' and the column was dropped, while
    the figure drew the occupancy row."""
    assert main(["course", "--dose", "0.001", "--months", "1", "--out-dir",
                 str(tmp_path / "t")]) == 0
    out = capsys.readouterr().out
    head = next(ln for ln in out.splitlines() if ln.startswith("session"))
    assert "occupancy %" in head and "<0.5" in out


def test_weekly_induction_sessions_are_not_called_maintenance(tmp_path, capsys):
    """A named course's maintenance is its own: over one month the standard course's weekly
    sessions of weeks 3-5 had been 'lowest during maintenance (day 14 to 28)' in the summary
    (and a row of the comparison), over two months the Spravato course's weekly weeks 5-8
    'day 28 to 56', though neither reaches its maintenance (every 4 and every 2 weeks)."""
    for months in (1, 1.5):
        assert main(["course", "--months", str(months), "--out-dir", str(tmp_path / "a")]) == 0
        assert "maintenance" not in capsys.readouterr().out
    assert main(["course", "--model", "esketamine-nasal", "--doses", "spravato", "--months",
                 "2", "--out-dir", str(tmp_path / "b")]) == 0
    assert "maintenance" not in capsys.readouterr().out
    assert main(["compare", "ketamine-iv@standard-iv", "--months", "1", "--out-dir",
                 str(tmp_path / "c")]) == 0
    assert "maintenance" not in capsys.readouterr().out
    # the full courses as before: maintenance from the last weekly session (standard, its
    # first 4-week interval) and from the first session every 2 weeks (Spravato)
    assert main(["course", "--out-dir", str(tmp_path / "d")]) == 0
    assert "lowest during maintenance (day 28 to 168)" in capsys.readouterr().out
    from ketasim.plotting import course_maintenance_start

    sprav = ketasim.resolve_doses("spravato")
    assert course_maintenance_start("spravato", sprav) == 56 * 24
    # a maintenance interval equal to the induction's last: from the last induction session
    weekly = ketasim.spravato_course(84, "weekly")
    assert course_maintenance_start("spravato", weekly) == 49 * 24
    every7 = ketasim.standard_iv_course(maintenance_every_days=7.0)
    assert course_maintenance_start("standard-iv", every7) == 28 * 24
    assert course_maintenance_start("my-course.csv", weekly) is None    # not a course name


def test_every_command_ends_a_course_where_the_metrics_do():
    # one default horizon (28 days after the last dose starts) for the course figure and
    # summary, session_metrics, populations and simulate: the end-of-course plasticity agrees
    # (the course had ended 40 minutes later, at the last infusion's end + 28 days: 1 % apart)
    from ketasim.engine import default_horizon_h, session_metrics
    from ketasim.plotting import course_end_h, run_course

    d = ketasim.standard_iv_course(months=2)
    m = ketasim.load_model("ketamine-iv")
    assert course_end_h(d) == default_horizon_h(d) == d.time_h.max() + 28 * 24
    ref = session_metrics(m, d, metrics=("plasticity_end",))["plasticity_end"][0]
    assert run_course(m, d, 70.0).metrics.plasticity_end == pytest.approx(ref, rel=1e-6)
    sw = ketasim.sweep(m, d, {"CL": [m.parameters["CL"]]}, metrics=("plasticity_end",))
    assert sw["plasticity_end"][0] == pytest.approx(ref, rel=1e-12)


def test_compare_csv_holds_no_cell_a_spreadsheet_reads_as_a_formula(tmp_path, capsys):
    """A label such as '=1+2' or '@SUM(1)' headed its column of compare.csv, where a
    spreadsheet runs it as a formula: such labels are refused (a label is a column name,
    never changed), before any file is written. A model file's drug name starting with '='
    is a text cell: written after a ' in compare.csv, every number and column name as
    without it."""
    out = tmp_path / "c"
    for label in ("=1+2", "+A1", "-2+3", "@SUM(1)", "\tx"):
        assert main(["compare", f"ketamine-iv@standard-iv:{label}", "esketamine-iv@standard-iv",
                     "--months", "1", "--out-dir", str(out)]) == 1
        err = capsys.readouterr().err
        assert f"label {label!r} starts with {label[0]!r}" in err and "formula" in err, err
    assert not out.exists()
    # a model file's name starting with '-' as the default label: refused, :LABEL named
    toml = (ROOT / "src/ketasim/presets/esketamine-iv.toml").read_text()
    named = tmp_path / "named.toml"
    named.write_text(toml.replace('name = "esketamine-iv"', 'name = "-esk"', 1))
    assert main(["compare", f"{named}@standard-iv", "--months", "1",
                 "--out-dir", str(out)]) == 1
    assert "the label '-esk' (the model's name)" in capsys.readouterr().err
    assert not out.exists()
    # a drug name starting with '=': a text cell with a leading '
    drug = tmp_path / "drug.toml"
    drug.write_text(toml.replace("[model]\n", '[model]\ndrug = "=HYPERLINK(1)"\n', 1))
    for spec, where in ((f"{drug}@standard-iv:mine", "a"),
                        ("esketamine-iv@standard-iv:mine", "b")):
        assert main(["compare", spec, "--months", "1", "--out-dir", str(tmp_path / where)]) == 0
    capsys.readouterr()
    with open(tmp_path / "a" / "compare.csv", newline="") as fh:
        a = list(csv.reader(fh))
    with open(tmp_path / "b" / "compare.csv", newline="") as fh:
        b = list(csv.reader(fh))
    assert a[0] == b[0] == ["metric", "unit", "mine"]
    assert a[1] == ["drug", "", "'=HYPERLINK(1) (esketamine-iv)"]
    assert b[1] == ["drug", "", "esketamine (esketamine-iv)"]
    assert a[2:] == b[2:]
    assert not any(c.startswith(("=", "+", "@")) for r in a for c in r)


def test_course_summary_names_the_day_of_the_plasticity_at_the_end(tmp_path, capsys):
    """The consolidated plasticity's 'at the end 0.0644' beside 'lowest during maintenance
    0.0645' read as a contradiction: the end is the washout, 28 days after the last session
    (day 168 of the six-month standard course). Its day is said, and the value is the
    result's at that day."""
    import re

    assert main(["course", "--out-dir", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("Schematic consolidated"))
    m = re.search(r"at the end \(day (\d+)\) ([0-9.]+); lowest during maintenance \(day 28 to "
                  r"168\) ([0-9.]+)\.$", line)
    assert m is not None, line
    assert int(m.group(1)) == 168 + 28
    table = np.genfromtxt(tmp_path / "o" / "course.csv", delimiter=",", names=True)
    assert table["time_h"][-1] == 196 * 24
    assert float(m.group(2)) == pytest.approx(table["consolidation"][-1], rel=1e-3)
    assert float(m.group(2)) < float(m.group(3))


@pytest.mark.parametrize("cmd", ["course", "compare"])
@pytest.mark.parametrize("case", ["write-protected", "input", "folder"])
def test_course_and_compare_outputs_are_checked_before_any_work(cmd, case, tmp_path, capsys,
                                                                monkeypatch):
    """A course.csv (compare.csv) that cannot be replaced had been found only after the whole
    course was simulated and drawn, as every other command finds it before any work."""
    import ketasim.plotting

    def no_work(*a, **k):
        raise AssertionError("simulated before its outputs were checked")

    monkeypatch.setattr(ketasim.plotting, "run_course", no_work)
    out = tmp_path / "o"
    out.mkdir()
    table = out / f"{cmd}.csv"
    doses = "standard-iv"
    if case == "write-protected":
        table.write_text("keep me\n")
        table.chmod(0o444)
    elif case == "input":
        table.write_text("time_h,amount_mg,route\n0,35,iv\n")
        doses = str(table)
    else:
        table.mkdir()
    argv = ["course", "--doses", doses] if cmd == "course" else [
        "compare", f"ketamine-iv@{doses}", "esketamine-iv@standard-iv"]
    before = sorted(p.name for p in out.iterdir())
    assert main(argv + ["--out-dir", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{cmd}.csv" in err
    assert sorted(p.name for p in out.iterdir()) == before
    if case != "folder":
        assert table.read_text().startswith(("keep me", "time_h"))


def _api_calls():
    from ketasim.engine import session_metrics
    from ketasim.plotting import run_course

    return {
        "simulate": lambda m, d: ketasim.simulate(m, d, [0.0, 1.0]),
        "session_metrics": lambda m, d: session_metrics(m, d),
        "population": lambda m, d: ketasim.population(m, d, 2, metrics=["cmax"],
                                                      bands=[0.5, 1.0]),
        "sweep": lambda m, d: ketasim.sweep(m, d, {"V2": [100.0, 200.0]}, metrics=["cmax"]),
        "run_course": lambda m, d: run_course(m, d, closeup_h=1.0),
    }


@pytest.mark.parametrize("call", ["simulate", "session_metrics", "population", "sweep",
                                  "run_course"])
def test_the_python_api_warns_of_doses_that_give_other_numbers_than_meant(call):
    """The CLI warned of a nasal session entered one row per device (+28 % Cmax) and of a dose
    into the spray's compartment by its name (twice the concentrations); Python said nothing.
    Each API call now gives one KetasimWarning, named by the function called and pointing at
    the caller's line; the label course gives none."""
    import warnings

    m = ketasim.load_model("esketamine-nasal")
    run = _api_calls()[call]
    for d, words in ((ketasim.Doses([0.0, 5 / 60, 10 / 60], [28.0] * 3, ["intranasal"] * 3),
                      "5 min apart"),
                     (ketasim.Doses([0.0], [56.0], ["nasal"]), "go straight into compartment")):
        with pytest.warns(ketasim.KetasimWarning, match=f"^{call}: .*{words}") as got:
            run(m, d)
        assert len(got) == 1 and got[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error", ketasim.KetasimWarning)
        run(m, ketasim.spravato_course(months=1))


def test_two_subjects_dosed_at_the_same_time_are_not_one_session_split_per_device():
    """The per-device warning compared rows of every subject together: two subjects of a dose
    table dosed at the same hour had been warned about as one session split in two."""
    from ketasim.cli_teach import route_warning

    m = ketasim.load_model("esketamine-nasal")
    d = ketasim.Doses([0.0, 0.0, 72.0, 72.0], [56.0] * 4, ["intranasal"] * 4,
                      subject=[1, 2, 1, 2])
    assert route_warning(m, d) is None


@pytest.mark.parametrize("command", [["population", "--n", "2"],
                                     ["sweep", "--vary", "V2=100:200:2"]])
def test_population_and_sweep_commands_warn_of_a_session_split_per_device(command, tmp_path,
                                                                          capsys):
    """simulate, course and compare warned of it; population and sweep did not."""
    doses = tmp_path / "d.csv"
    doses.write_text("time_h,amount_mg,route\n0,28,intranasal\n0.0833333,28,intranasal\n")
    assert main([*command, "--model", "esketamine-nasal", "--doses", str(doses),
                 "--metrics", "cmax", "--out", str(tmp_path / "o.csv"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("ketasim: warning: route intranasal: doses at 0 h and 0.0833333 h are "
                     "5 min apart") == 1
    assert "KetasimWarning" not in err


def test_course_and_compare_figures_give_a_named_courses_length(tmp_path, capsys, monkeypatch):
    """A comparison's caption named its courses without their length, so '--months 3' read
    as the six-month default; it says '...; 3 months' as the course figure's title does
    (and '1 month', not '1 months'). A dose table keeps its sessions and days."""
    import ketasim.plotting as plotting

    regimens = []
    real = plotting.run_course

    def spy(*a, **k):
        run = real(*a, **k)
        regimens.append(run.regimen)
        return run

    monkeypatch.setattr(plotting, "run_course", spy)
    monkeypatch.setenv("KETASIM_FORK", "0")
    assert main(["course", "--months", "1", "--out-dir", str(tmp_path / "a")]) == 0
    assert regimens[-1].endswith(" (3/wk in week 1, 2 in week 2, weekly in weeks 3-5); 1 month")
    table = tmp_path / "t.csv"
    assert main(["schedule", "standard-iv", "--months", "1", "--out", str(table)]) == 0
    assert main(["compare", "ketamine-iv@standard-iv", "esketamine-nasal@spravato",
                 f"ketamine-iv@{table}:table", "--months", "3",
                 "--out-dir", str(tmp_path / "b")]) == 0
    assert [r.rsplit("; ", 1)[-1] for r in regimens[-3:-1]] == ["3 months"] * 2
    assert regimens[-1] == "8 sessions over 28 days"
    assert main(["compare", "ketamine-iv@standard-iv", "esketamine-nasal@spravato",
                 "--out-dir", str(tmp_path / "c")]) == 0
    assert [r.rsplit("; ", 1)[-1] for r in regimens[-2:]] == ["6 months"] * 2
    capsys.readouterr()


def test_schedule_of_sessions_millions_of_years_away_prints_days_it_can_tell(tmp_path, capsys):
    """A course file with a session after 1e306 days had ended in an internal error
    (OverflowError: cannot convert float infinity to integer) where the table rounds its time
    to the minute; one after 1e16 days had printed a clock time ("10000000000000008 12:48") that
    a time in hours that large cannot hold (it is exact to 32 h there) and a 300-digit day. A
    session beyond a minute's resolution now shows its day alone, compactly."""
    from ketasim.cli_teach import session_day

    toml = tmp_path / "far.toml"
    # (after 1e306 days a week later is the same number: one session there)
    for after, count, want in (("1e306", 1, "1e+306"), ("1e16", 2, "1e+16"),
                               ("1e14", 2, "100000000000000")):
        toml.write_text('amount_mg = 35\nroute = "iv"\n[[phase]]\nevery_days = 7\ncount = 1\n'
                        f"[[phase]]\nevery_days = 7\ncount = {count}\nafter_days = {after}\n")
        assert main(["schedule", "custom", str(toml)]) == 0
        cap = capsys.readouterr()
        assert cap.err == ""
        lines = cap.out.splitlines()
        assert max(len(ln) for ln in lines[:-1]) < 90, lines
        days = [ln.split()[1] for ln in lines[1:2 + count]]
        assert days[0] == "0" and days[1] == want, lines
        assert not re.search(r"\d\d:\d\d", cap.out), lines
        assert len(set(days)) == len(days), lines     # sessions a week apart: told apart
    # at the edge of a minute's resolution the clock is still shown, and never as 24:00
    assert session_day(2.0 ** 40 + 0.5) == f"{int((2 ** 40) // 24)} 16:30"
    assert session_day(28 * 24 - 0.1 / 3600) == "28"
    assert session_day(28 * 24 + 0.1 / 3600) == "28"
    assert session_day(float("inf")) == "–"


def test_a_schedule_of_many_sessions_is_printed_in_bounded_memory(monkeypatch):
    """The schedule's table had been built whole before it was printed: 7.3 GB for a course
    of 8.7 million sessions (spravato --maintenance weekly --months 2e6), where the course
    itself takes about 300 MB. It is printed in parts, the same text."""
    import contextlib
    import io
    import tracemalloc

    from ketasim import cli_teach

    class Sink(io.TextIOBase):
        def __init__(self):
            self.parts = []

        def write(self, s):
            self.parts.append(s)
            return len(s)

    def printed(doses, chunk=None):
        if chunk is not None:
            monkeypatch.setattr(cli_teach, "SCHEDULE_CHUNK_ROWS", chunk, raising=False)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            cli_teach.print_schedule(doses)
        monkeypatch.undo()
        return out.getvalue()

    # widths found over every part: a wider day, dose or length far down the table
    toml_like = [ketasim.Phase(every_days=0.5, count=9), ketasim.Phase(every_days=7, count=3,
                                                                       amount_mg=1234.5)]
    small = ketasim.course_from_phases(toml_like, 35.0, "iv", duration_h=0.5)
    want = printed(small)
    assert printed(small, chunk=4) == want and printed(small, chunk=1) == want
    lines = want.splitlines()
    assert len({len(ln) for ln in lines[:-1]}) <= 2, lines   # (a last column of "–" or 40)

    # 20,000 sessions in parts of 1,000 rows: about 1 MB at the peak, where the whole table
    # took 13 MB
    big = ketasim.course_from_phases([ketasim.Phase(every_days=0.25, count=20_000)], 35.0,
                                     "iv", duration_h=0.5)
    monkeypatch.setattr(cli_teach, "SCHEDULE_CHUNK_ROWS", 1000)
    sink = Sink()
    tracemalloc.start()
    try:
        with contextlib.redirect_stdout(sink):
            cli_teach.print_schedule(big)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    text = "".join(sink.parts)
    assert text.count("\n") == 20_002 and text.endswith("for CSV here).\n")
    assert peak < 4e6, f"{peak / 1e6:.1f} MB"


def test_a_course_too_long_for_its_grid_says_so_in_short_numbers(tmp_path, capsys):
    """A dose table with a dose at 1e306 h had been refused with its length and number of
    time points written out in full, two numbers of over 400 characters with their commas."""
    table = tmp_path / "far.csv"
    table.write_text("time_h,amount_mg,route,duration_h\n0,35,iv,0.5\n1e306,35,iv,0.5\n")
    assert main(["course", "--doses", str(table), "--out-dir", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert len(err) < 300 and "1e+306 h" in err and "more than the 200,000,000" in err, err


def test_peaks_at_the_session_start_keep_their_time_column(tmp_path, capsys):
    """IV boluses peak at 0 min in every session: the "at min" column had been left out as
    a column of zeros, so the table no longer said when the peaks were."""
    doses = tmp_path / "bolus.csv"
    doses.write_text("time_h,amount_mg,route\n0,35,iv\n48,35,iv\n")
    assert main(["course", "--doses", str(doses), "--out-dir", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    head = next(ln for ln in lines if ln.lstrip().startswith("session"))
    assert "peak ng/mL  at min" in head, head
    rows = [ln.split() for ln in lines if ln.strip()[:1].isdigit()]
    # session, day, peak, at min
    assert len(rows) == 2 and all(r[3] == "0" for r in rows), rows


def test_compare_refuses_labels_given_alike_before_any_run(tmp_path, capsys, monkeypatch):
    """Two SPECs labelled alike by hand had been refused only after every run was simulated
    (minutes for long courses); the labels are checked first."""
    from ketasim import plotting

    def no_run(*a, **k):
        raise AssertionError("a run was simulated before the labels were checked")

    monkeypatch.setattr(plotting, "run_course", no_run)
    assert main(["compare", "ketamine-iv@standard-iv:A", "esketamine-iv@standard-iv:A",
                 "--out-dir", str(tmp_path / "c")]) == 1
    assert "two SPECs have the same label 'A'" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
