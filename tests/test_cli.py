"""The main job as a user runs it: the README's Quick start command, end to end."""

import csv
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import ketasim
from ketasim.cli import main
from ketasim.metrics import course_metrics

ROOT = Path(__file__).resolve().parents[1]


def quickstart_commands():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"^## Quick start.*?```bash\n(.*?)```", text, re.S | re.M).group(1)
    return [ln for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]


def test_readme_quickstart_has_two_commands_and_ci_runs_the_second():
    cmds = quickstart_commands()
    assert len(cmds) == 2
    assert cmds[0] == "pip install . && ketasim course" and "pytest" in cmds[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert cmds[1].replace("pip install", "python -m pip install --quiet") in ci


def test_main_job(tmp_path, capsys, monkeypatch):
    """The first Quick start command (without the install), from an empty folder."""
    args = quickstart_commands()[0].split("&&", 1)[1].split()[1:]
    monkeypatch.chdir(tmp_path)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Per session" in out and "SCHEMATIC" in out
    png = tmp_path / "ketasim-output" / "course.png"
    assert png.stat().st_size > 50_000 and png.read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "ketasim-output" / "course.csv").stat().st_size > 100_000


def test_simulate_course_csv(tmp_path, capsys):
    """The older full-table command: every compartment, alias and PD output."""
    csv_path = tmp_path / "ketasim-out" / "course.csv"
    png = tmp_path / "ketasim-out" / "course.png"
    assert main(["simulate", "--model", "ketamine-iv", "--doses", "standard-iv", "--out",
                 str(csv_path), "--plot", str(png), "--summary"]) == 0
    out = capsys.readouterr().out
    assert "Per-session metrics" in out and "schematic" in out
    assert png.stat().st_size > 50_000 and png.read_bytes()[:4] == b"\x89PNG"
    with open(csv_path) as fh:
        header = next(csv.reader(fh))
    assert header[0] == "time_h"
    assert header[1:11] == [f"{c}_ng_ml" for c in ketasim.load_model("ketamine-iv").compartments]
    assert {"plasma_ng_ml", "metabolite_ng_ml", "occupancy", "glutamate", "plasticity"} <= \
        set(header)
    data = np.loadtxt(csv_path, delimiter=",", skiprows=1)
    # the CSV holds the same numbers as the Python API (ng/mL at the edge)
    r = ketasim.simulate("ketamine-iv", ketasim.standard_iv_course(), data[:, 0])
    np.testing.assert_allclose(data[:, header.index("plasma_ng_ml")],
                               r.concentration("plasma"), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(data[:, header.index("occupancy")], r.occupancy, rtol=1e-9,
                               atol=1e-12)


def test_simulate_amounts_option_writes_every_compartments_amount(tmp_path, capsys):
    """--amounts adds amount_<compartment>_mg columns and amount_eliminated_mg, the same
    numbers as amounts=True in Python; between sessions they add up to the drug given."""
    out = tmp_path / "a.csv"
    assert main(["simulate", "--model", "ketamine-iv", "--doses", "standard-iv", "--until",
                 "100", "--out", str(out), "--amounts"]) == 0
    with open(out) as fh:
        header = next(csv.reader(fh))
    model = ketasim.load_model("ketamine-iv")
    names = [f"amount_{c}_mg" for c in model.compartments] + ["amount_eliminated_mg"]
    assert all(n in header for n in names)
    data = np.loadtxt(out, delimiter=",", skiprows=1)
    r = ketasim.simulate(model, ketasim.standard_iv_course(), data[:, 0], amounts=True)
    for c in model.compartments:
        np.testing.assert_allclose(data[:, header.index(f"amount_{c}_mg")], r.amount(c),
                                   rtol=1e-9, atol=1e-12)
    total = sum(data[:, header.index(n)] for n in names)
    t = data[:, 0]
    between = (t > 1.0) & (t < 48.0)          # the first 35-mg session over, the next not begun
    np.testing.assert_allclose(total[between], 35.0, rtol=1e-8)
    assert main(["simulate", "--model", "ketamine-iv", "--until", "10", "--out",
                 str(tmp_path / "b.csv")]) == 0
    with open(tmp_path / "b.csv") as fh:
        assert not any(h.startswith("amount_") for h in next(csv.reader(fh)))


def test_simulate_summary_explains_the_last_sessions_missing_trough(tmp_path, capsys):
    """The last session in the simulated time has no trough (no next session): the summary
    prints a dash and says why, never a bare 'nan'."""
    assert main(["simulate", "--until", "200", "--out", str(tmp_path / "a.csv"),
                 "--summary"]) == 0
    out = capsys.readouterr().out
    assert not re.search(r"\bnan\b", out)
    rows = [ln.split() for ln in out.splitlines() if ln.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["1", "2", "3", "4"]
    assert rows[-1][5] == "–" and all(r[5] != "–" for r in rows[:-1])
    assert "no next session" in out or "has none in the simulated time" in out


def test_summary_of_a_course_at_one_interval_says_why_it_has_no_maintenance(tmp_path,
                                                                            capsys):
    """Five weekly sessions: no maintenance phase (no induction before it); the words had
    said a maintenance phase is three or more sessions at one interval up to the end, which
    this course is."""
    course = tmp_path / "weekly.toml"
    course.write_text('amount_mg = 35\nroute = "iv"\nduration_h = 0.6667\nmonths = 1\n'
                      "[[phase]]\nevery_days = 7\n")
    assert main(["simulate", "--doses", str(course), "--out", str(tmp_path / "a.csv"),
                 "--summary"]) == 0
    out = capsys.readouterr().out
    assert "no maintenance phase" in out
    assert "after sessions at another interval" in out


def test_simulate_summary_and_figure_of_a_dataset_with_subjects(tmp_path, capsys):
    """--summary and --plot on a dose table with subjects: one row per subject and session,
    with the numbers of each subject's doses run alone; the figure shows median and band."""
    doses = tmp_path / "d.csv"
    doses.write_text("subject,time_h,amount_mg,route,duration_h\n"
                     "1,0,35,iv,0.6667\n1,48,35,iv,0.6667\n2,0,40,iv,0.6667\n")
    png = tmp_path / "p.png"
    assert main(["simulate", "--doses", str(doses), "--out", str(tmp_path / "o.csv"),
                 "--plot", str(png), "--summary", "--until", "100"]) == 0
    out = capsys.readouterr().out.splitlines()
    i = next(k for k, line in enumerate(out) if line.split()[:2] == ["subject", "session"])
    rows = [line.split() for line in out[i + 1:i + 4]]
    assert [r[:2] for r in rows] == [["1", "1"], ["1", "2"], ["2", "1"]]
    alone = ketasim.Doses([0.0], [40.0], ["iv"], [0.6667])
    cm = course_metrics(ketasim.simulate("ketamine-iv", alone, ketasim.time_grid(100, 0.1)))
    assert float(rows[2][3]) == pytest.approx(cm.cmax_ng_ml[0], rel=1e-3)   # 4 digits
    assert any(line.startswith("Course (schematic)") for line in out)
    assert png.stat().st_size > 50_000


def test_simulate_with_files(tmp_path):
    model = tmp_path / "m.toml"
    model.write_text('[parameters]\nCL = 10.0\nV = 50.0\n[compartments]\ncentral = "V"\n'
                     '[[flows]]\nfrom = "central"\nto = "out"\ncl = "CL"\n'
                     '[routes.iv]\nto = "central"\n[observe]\nplasma = "central"\n')
    doses = tmp_path / "d.csv"
    doses.write_text("time_h,amount_mg,route\n0,100,iv\n")
    out = tmp_path / "o.csv"
    assert main(["simulate", "--model", str(model), "--doses", str(doses), "--until", "10",
                 "--step", "1", "--out", str(out), "--param", "CL=5"]) == 0
    data = np.loadtxt(out, delimiter=",", skiprows=1)
    np.testing.assert_allclose(data[:, 1], 100 / 50 * np.exp(-0.1 * data[:, 0]) * 1000,
                               rtol=1e-9)
    assert out.read_text().splitlines()[0] == "time_h,central_ng_ml,plasma_ng_ml"


def test_presets_command(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in ("ketamine-iv", "esketamine-iv", "esketamine-nasal"):
        assert name in out
    assert "Perez-Ruixo" in out and "Fanta" in out


def test_presets_of_a_file_show_lag_relative_f_and_per_kg(tmp_path, capsys):
    f = tmp_path / "lag.toml"
    f.write_text('[parameters]\nV = 50.0\nCL = 10.0\nKA = 1.0\nF = 1.2\nLAG = 0.5\n'
                 'VK = 0.7\n[weight]\nper_kg = ["VK"]\n[compartments]\ndepot = 0\n'
                 'central = "V"\n[[flows]]\nfrom = "depot"\nto = "central"\nk = "KA"\n'
                 '[[flows]]\nfrom = "central"\nto = "out"\ncl = "CL"\n[routes.oral]\n'
                 'to = "depot"\nf = "F"\nlag_h = "LAG"\nrelative_f = true\n')
    assert main(["presets", str(f)]) == 0
    out = capsys.readouterr().out
    assert "oral: to depot, f = F (relative bioavailability), lag LAG h" in out
    assert [ln for ln in out.splitlines() if ln.startswith("VK")][0].endswith("[per kg: × WT]")


def test_console_script_entry_point():
    r = subprocess.run([sys.executable, "-m", "ketasim", "--version"], capture_output=True,
                       text=True)
    assert r.returncode == 0 and "ketasim" in r.stdout


def test_console_exit_runs_exit_handlers_and_flushes(tmp_path):
    """The program ends without tearing the interpreter down, but exit handlers still run,
    output still arrives whole and the exit status is the command's."""
    code = ("import atexit, sys; atexit.register(lambda: print('handler ran')); "
            "from ketasim.cli import console; sys.stdout.write('x' * 100000); "
            "sys.exit(console(sys.argv[1:]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(ketasim.__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", code, "schedule", "standard-iv", "--out", "-"],
                       capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("x" * 100000) and r.stdout.endswith("handler ran\n")
    assert "time_h" in r.stdout and r.stderr == ""
    r = subprocess.run([sys.executable, "-c", code, "simulate", "--model", "nope", "--out",
                        str(tmp_path / "o.csv")], capture_output=True, text=True, env=env)
    assert r.returncode == 1 and "handler ran" in r.stdout and "error" in r.stderr


def _cli_output(argv, encoding, cwd) -> tuple[bytes, bytes]:
    env = dict(os.environ, PYTHONIOENCODING=encoding,
               PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "ketasim", *argv], capture_output=True, cwd=cwd,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout, r.stderr


def _aligned_at(rows, head, names):
    """Every row of a table has its column ``name`` starting where the header has it."""
    for name in names:
        at = head.index(name)
        for row in rows:
            assert row[at - 2:at] == "  " and row[at] != " ", (name, row)


def test_tables_on_a_terminal_without_their_characters_stay_plain_and_aligned(tmp_path):
    """Where standard output cannot encode a table's "–", "×", "·" or "µ" (an ASCII
    terminal, ``PYTHONIOENCODING=ascii``), each is written as "-", "x", ".", "u": they had
    been written as escapes (``\\u2013``, ``\\xd7``), six or four characters where the table
    had counted one, so every column after them was shifted. A UTF-8 terminal gets the text
    as it is."""
    plain = str.maketrans({"–": "-", "×": "x", "·": ".", "µ": "u", "Σ": "sum"})
    nasal = _cli_output(["schedule", "spravato"], "utf-8", tmp_path)[0].decode("utf-8")
    assert "  –\n" in nasal     # (a nasal dose has no infusion time)
    for argv in (["schedule", "spravato"], ["schedule", "standard-iv"], ["presets"],
                 ["presets", "ketamine-iv"]):
        utf8 = _cli_output(argv, "utf-8", tmp_path)[0].decode("utf-8")
        for encoding in ("ascii", "latin-1"):
            raw = _cli_output(argv, encoding, tmp_path)[0]
            text = raw.decode(encoding)
            assert "\\u" not in text and "\\x" not in text, (argv, encoding)
            # only the characters the encoding lacks are replaced; nothing else changes
            assert text.translate(plain) == utf8.translate(plain), (argv, encoding)
            if encoding == "ascii":
                assert raw.isascii()
            lines = text.splitlines()
            if argv[0] == "schedule":
                table = lines[:lines.index(next(ln for ln in lines if "sessions, " in ln))]
                assert table[0].startswith("session") and len(table) > 10
                assert len({len(row) for row in table}) == 1, (argv, encoding)
            elif len(argv) == 2:
                start = lines.index("Parameters (typical values at 70 kg):") + 1
                assert lines[start].split() == ["name", "value", "unit", "source"]
                rows = lines[start + 1:lines.index("", start)]
                assert any(row.split()[2] == "-" for row in rows)
                _aligned_at(rows, lines[start], ("unit", "source"))


def test_summary_thresholds(tmp_path, capsys):
    out = tmp_path / "n.csv"
    assert main(["simulate", "--model", "esketamine-nasal", "--doses", "spravato", "--until",
                 "200", "--out", str(out), "--summary", "--thresholds", "0.25,0.45"]) == 0
    text = capsys.readouterr().out
    assert "h_occ_ge_0.25" in text and "h_occ_ge_0.45" in text and "h_occ_ge_0.3" not in text
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--out", str(tmp_path / "x.csv"), "--thresholds", "1.5"])
    assert exc.value.code == 2
    assert "--thresholds" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_schedule_to_stdout_is_the_file_it_writes(tmp_path, capsys):
    """`schedule --out -` prints the very text `--out FILE` writes, and it reads back as the
    same course to the last bit (the 40-minute infusion is 2/3 h, not a rounded 0.6666666667)."""
    from ketasim.dosing import read_doses

    f = tmp_path / "c.csv"
    assert main(["schedule", "standard-iv", "--weight", "83", "--out", str(f)]) == 0
    capsys.readouterr()
    assert main(["schedule", "standard-iv", "--weight", "83", "--out", "-"]) == 0
    assert capsys.readouterr().out == f.read_text()
    back = read_doses(f)
    ref = ketasim.standard_iv_course(weight_kg=83.0)
    assert np.array_equal(back.duration_h, ref.duration_h)
    assert np.array_equal(back.amount_mg, ref.amount_mg)
    assert np.array_equal(back.time_h, ref.time_h)


@pytest.mark.parametrize("raised", [
    "KeyboardInterrupt",
    # Python 3.11 reports a Ctrl-C inside a class body's __set_name__ (NumPy's finfo, say)
    # as a RuntimeError caused by it: that had been a traceback and status 1
    "RuntimeError('Error calling __set_name__') from KeyboardInterrupt()"])
@pytest.mark.parametrize("argv, code, line", [
    (["-m", "ketasim", "presets"], 130, "ketasim: interrupted (Ctrl-C)"),
    (["/usr/local/bin/ketasim", "presets"], 130, "ketasim: interrupted (Ctrl-C)"),
    (["-c", "import ketasim"], None, "KeyboardInterrupt")])
def test_ctrl_c_while_the_program_imports_is_one_line(argv, code, line, raised):
    """Ctrl-C before the command's handler is set (while ketasim imports): the program says it
    was interrupted, in one line with status 130, not a traceback; any other process (a script
    importing ketasim) gets the KeyboardInterrupt as usual."""
    if code is None and raised != "KeyboardInterrupt":
        line = "RuntimeError: Error calling __set_name__"
    probe = textwrap.dedent(f"""
        import builtins, sys
        sys.orig_argv[:] = [sys.executable] + {argv!r}
        real = builtins.__import__

        def imp(name, *a, **k):
            if name == "population" or name.endswith(".population"):
                raise {raised}
            return real(name, *a, **k)

        builtins.__import__ = imp
        import ketasim
    """)
    p = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == code if code else p.returncode != 130, p.stderr
    if code == 130:
        assert p.stderr == line + "\n"
    else:
        assert "Traceback" in p.stderr and p.stderr.strip().endswith(line)


def test_ctrl_c_while_the_command_sets_itself_up_is_one_line(monkeypatch, capsys):
    """Ctrl-C after ketasim is imported but before main() has set its handlers (about 0.1 s
    of each start) had been a KeyboardInterrupt traceback."""
    import ketasim.cli as cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "plain_output", interrupted)
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    try:
        rc = main(["presets"])
    except KeyboardInterrupt:
        pytest.fail("the KeyboardInterrupt left main()")
    assert rc == 130
    assert capsys.readouterr().err == "ketasim: interrupted (Ctrl-C)\n"
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


@pytest.mark.parametrize("table, until, said", [
    # sessions at days 0, 3, 7, 10: two listed, and nothing said of the other two
    ("time_h,amount_mg,route,duration_h\n0,20,iv,0.6667\n72,20,iv,0.6667\n"
     "168,20,iv,0.6667\n240,20,iv,0.6667\n", ("100", "400"),
     "2 later sessions of the dose table start at or after the grid's end (100 h)"),
    # a dose table with subjects: a subject whose only session starts after --until had been
    # left out of the summary without a word (the CSV has its rows)
    ("subject,time_h,amount_mg,route,duration_h\n1,0,35,iv,0.6667\n1,48,35,iv,0.6667\n"
     "2,100,20,iv,0.5\n", ("60", "200"),
     "1 later session of subject 2 starts at or after the grid's end (60 h) and is not shown"),
])
def test_summary_says_which_sessions_the_grid_does_not_reach(tmp_path, capsys, table, until,
                                                             said):
    """simulate --until --summary says the sessions its grid does not reach (it had listed
    those it reaches and said nothing of the others), and nothing when it reaches them all."""
    d = tmp_path / "d.csv"
    d.write_text(table)
    short, whole = until
    assert main(["simulate", "--doses", str(d), "--until", short, "--out",
                 str(tmp_path / "u.csv"), "--summary"]) == 0
    assert said in capsys.readouterr().out
    assert main(["simulate", "--doses", str(d), "--until", whole, "--out",
                 str(tmp_path / "v.csv"), "--summary"]) == 0
    assert "later session" not in capsys.readouterr().out


def test_summary_does_not_call_a_session_ending_at_the_grids_end_cut(tmp_path, capsys):
    """A session that ends exactly where the grid ends (the next one starts there) is whole,
    with its trough in the table: the note had said it was cut at the grid's end."""
    d = tmp_path / "d.csv"
    d.write_text("time_h,amount_mg,route,duration_h\n0,20,iv,0.6667\n48,20,iv,0.6667\n"
                 "96,20,iv,0.6667\n")
    assert main(["simulate", "--doses", str(d), "--until", "96", "--out",
                 str(tmp_path / "u.csv"), "--summary"]) == 0
    out = capsys.readouterr().out
    assert "1 later session of the dose table starts at or after the grid's end (96 h)" in out
    assert "cut" not in out and "ends there, where the next one starts" in out
    row = next(ln.split() for ln in out.splitlines() if ln.lstrip().startswith("2 "))
    assert row[5] != "–"                        # the second session's trough is there
    assert main(["simulate", "--doses", str(d), "--until", "95", "--out",
                 str(tmp_path / "v.csv"), "--summary"]) == 0
    assert "the last session shown is cut there" in capsys.readouterr().out


@pytest.mark.parametrize("argv, head", [
    (["population", "--n", "3", "--param", "CLX=5"], "ketasim: error: --param: unknown"),
    (["simulate", "--out", "{tmp}/s.csv", "--param", "CLX=3"],
     "ketasim: error: preset ketamine-iv: --param: unknown name 'CLX'"),
    (["population", "--n", "3", "--metrics", "cmax,nope"], "ketasim: error: --metrics: unknown"),
    (["population", "--n", "3", "--bands", "{tmp}/b.csv", "--band-outputs", "nope"],
     "ketasim: error: --band-outputs: model"),
    (["sweep", "--vary", "CLX=1:2:3", "--out", "{tmp}/w.csv"], "ketasim: error: --vary: unknown"),
    (["simulate", "--out", "{tmp}/s.csv", "--occupancy-calibration", "nope"],
     "ketasim: error: --occupancy-calibration: unknown"),
    (["population", "--model", "esketamine-nasal", "--doses", "spravato", "--n", "3", "--age",
      "150"], "ketasim: error: --age: got 150"),
    # (a name with what it is about: params['CL'], vary weight_kg; a course's horizon)
    (["population", "--n", "3", "--param", "CL=nan", "--out", "{tmp}/p.csv"],
     "ketasim: error: --param CL: got nan, expected a finite number"),
    (["simulate", "--param", "CL=nan", "--out", "{tmp}/s.csv"],
     "ketasim: error: --param CL: got nan"),
    (["sweep", "--vary", "weight_kg=-1:2:3", "--out", "{tmp}/w.csv"],
     "ketasim: error: --vary weight_kg: got -1, expected kg > 0"),
    (["population", "--n", "2", "--months", "100000", "--out", "{tmp}/p.csv"],
     "ketasim: error: --months: exact metrics up to 7.30504e+07 h are beyond"),
])
def test_an_input_error_names_the_option_that_set_it(tmp_path, capsys, argv, head):
    """A value refused by the API is named by the command's option, not by the Python
    argument it became (``params:`` had answered ``--param``); nothing is written."""
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(head), err
    assert list(tmp_path.iterdir()) == []


def test_an_input_error_keeps_the_name_of_a_file_column(tmp_path, capsys):
    # the age from a --covariates table is that table's column, not --age
    cov = tmp_path / "cov.csv"
    cov.write_text("subject,age_y\n0,150\n1,40\n")
    rc = main(["population", "--model", "esketamine-nasal", "--doses", "spravato", "--n", "2",
               "--covariates", str(cov), "--out", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err
    assert rc == 1 and "--age" not in err and "150" in err


def test_an_unknown_mplbackend_is_named(tmp_path):
    """A matplotlib backend named by the environment that matplotlib does not know is an
    input error naming the variable (it had been an 'internal error ... please report it')."""
    env = dict(os.environ, MPLBACKEND="nonexistent", KETASIM_FORK="0",
               PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-m", "ketasim", "simulate", "--until", "2", "--out",
                        str(tmp_path / "s.csv"), "--plot", str(tmp_path / "s.png")],
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines()[-1].startswith(
        "ketasim: error: MPLBACKEND (environment): got 'nonexistent'"), p.stderr
    assert "internal error" not in p.stderr and list(tmp_path.iterdir()) == []


def test_no_colour_reset_is_left_on_the_terminal_after_the_last_line(tmp_path):
    """At a terminal, Numba's error highlighting (colorama, loaded with Numba's list support)
    wrote ESC [0m after a command's last line when the program exited."""
    pytest.importorskip("colorama")
    import pty
    import select

    env = dict(os.environ, KETASIM_FORK="0",
               PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("NUMBA_DISABLE_ERROR_MESSAGE_HIGHLIGHTING", None)
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "ketasim", "simulate", "--until", "2", "--out",
                          str(tmp_path / "s.csv")], env=env, stdin=subprocess.DEVNULL,
                         stdout=slave, stderr=slave)
    os.close(slave)
    got = b""
    while True:
        r, _, _ = select.select([master], [], [], 300)
        if not r:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:          # the program has closed the terminal
            break
        if not chunk:
            break
        got += chunk
    os.close(master)
    assert p.wait(timeout=300) == 0, got
    assert b"wrote" in got and b"\x1b[" not in got, got[-200:]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a pseudo-terminal")
def test_a_table_read_from_the_terminal_is_asked_for(tmp_path):
    """``--doses -`` with standard input at the terminal waits for a typed table: it says so
    on standard error before it waits (it had waited without a word, as if it hung), and
    reads what is typed up to Ctrl-D."""
    import pty
    import select

    env = dict(os.environ, KETASIM_FORK="0",
               PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    master, slave = pty.openpty()
    out = tmp_path / "s.csv"
    p = subprocess.Popen([sys.executable, "-m", "ketasim", "simulate", "--doses", "-",
                          "--until", "2", "--out", str(out)], env=env, stdin=slave,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.close(slave)
    try:
        said = b""
        end = time.monotonic() + 60
        while b"\n" not in said and time.monotonic() < end:
            r, _, _ = select.select([p.stderr], [], [], 1.0)
            if r:
                chunk = os.read(p.stderr.fileno(), 4096)
                if not chunk:
                    break
                said += chunk
        assert b"reading the --doses input from the terminal" in said, said
        assert b"Ctrl-D" in said, said
        os.write(master, b"time_h,amount_mg,route\n0,35,iv\n\x04")
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
    assert p.returncode == 0, said + err
    assert out.exists()


def test_readme_gives_the_unit_of_the_output_columns_simulate_writes(tmp_path, capsys):
    """The README listed the columns `ketasim simulate` writes without saying that occupancy
    is a fraction (0-1, where the figures show %), glutamate a ratio to its baseline of 1 and
    the plasticity indices 0-1: 0.19 in the table read as 0.19 %. What it says is what the
    table holds."""
    text = (ROOT / "README.md").read_text()
    para = text[text.index("`ketasim simulate` writes `time_h`"):]
    para = " ".join(para[:para.index("`--doses` takes")].split())
    assert "`occupancy_high` (fractions of receptors, 0–1, where the figures show %)" in para
    assert "`glutamate` (schematic, relative to its baseline of 1)" in para
    assert "`consolidation` (schematic indices, 0–1)" in para
    out = tmp_path / "s.csv"
    assert main(["simulate", "--model", "ketamine-iv", "--doses", "standard-iv", "--until",
                 "168", "--out", str(out)]) == 0
    capsys.readouterr()
    with open(out) as fh:
        rows = list(csv.reader(fh))
    cols = {name: np.array([float(r[i]) for r in rows[1:]]) for i, name in enumerate(rows[0])}
    for name in ("occupancy", "occupancy_low", "occupancy_high", "plasticity", "consolidation"):
        assert 0 <= cols[name].min() and cols[name].max() <= 1, name
    assert cols["occupancy"].max() > 0.1                  # 19 % at its peak: 0.19, not 19
    assert cols["glutamate"][0] == 1.0 and cols["glutamate"].max() > 1.5


def test_schedule_warns_of_a_weight_no_person_has_naming_the_option(tmp_path, capsys):
    """`schedule standard-iv --weight 70000` (grams meant) wrote 35,000-mg sessions without a
    word, where every other command given that weight warns; it now warns the same way,
    naming --weight, and still writes the table (as the others run as given)."""
    f = tmp_path / "c.csv"
    assert main(["schedule", "standard-iv", "--weight", "70000", "--out", str(f)]) == 0
    err = capsys.readouterr().err
    assert "ketasim: warning: --weight: 70000 kg is more than any person weighs" in err, err
    assert f.exists()
    assert main(["schedule", "standard-iv", "--weight", "80", "--out", str(f)]) == 0
    assert "warning" not in capsys.readouterr().err
