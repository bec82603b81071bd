"""Every bad input gets one clear line — the file, the field, the value, what was expected — and
no output file.

Most cases go through the command line (``ketasim.cli.main``): exit status 2 for usage errors
(argparse raises SystemExit(2)), 1 for bad inputs, one line on stderr without a traceback, and
the ``--out`` path (inside a folder that does not exist yet) never appears. The rest call the
Python API, which raises :class:`ketasim.KetasimInputError` (a ValueError).
"""

from __future__ import annotations

import importlib
import io
import os
import re

import numpy as np
import pytest

import ketasim
from ketasim import KetasimInputError
from ketasim.cli import main

GOOD_MODEL = """\
[model]
name = "one-cpt"

[parameters]
CL = 10.0
V = 50.0
KA = 1.2
F = 0.8
KE0 = 2.0

[derived]
K10 = "CL / V"

[compartments]
depot = 0
central = "V"

[[flows]]
from = "depot"
to = "central"
k = "KA"

[[flows]]
from = "central"
to = "out"
cl = "CL"

[routes.oral]
to = "depot"
f = "F"

[routes.iv]
to = "central"

[effects]
ce = { of = "central", ke0 = "KE0" }
"""
GOOD_DOSES = "time_h,amount_mg,route,duration_h\n0,10,iv,0\n12,20,oral,0\n"
GOOD_COURSE = 'amount_mg = 35\nroute = "iv"\nduration_h = 0.6667\nmonths = 3\n' \
              '[[phase]]\nweeks = 2\nper_week = 3\n[[phase]]\nevery_days = 28\n'


def model_with(old, new):
    assert old in GOOD_MODEL, old
    return GOOD_MODEL.replace(old, new, 1)


def run_cli(argv, capsys):
    try:
        rc = main(argv)
    except SystemExit as exc:          # argparse usage errors
        rc = exc.code
    cap = capsys.readouterr()
    return rc, cap.err


SIM = ["simulate", "--model", "{m}", "--doses", "{d}", "--until", "24", "--out", "{o}"]

# (id, model text or bytes, doses text or bytes, argv, exit status, substrings of the message)
CASES = [
    # --- model file: names
    ("misspelled compartment in a route", model_with('to = "depot"\nf', 'to = "dept"\nf'),
     None, SIM, 1, ["m.toml", "routes.oral.to", "'dept'", "did you mean 'depot'"]),
    ("misspelled compartment in a flow", model_with('from = "central"', 'from = "centrl"'),
     None, SIM, 1, ["m.toml", "flows[1].from", "'centrl'", "did you mean 'central'"]),
    ("unknown parameter in a flow", model_with('k = "KA"', 'k = "KAA"'), None, SIM, 1,
     ["m.toml", "flows[0].k", "'KAA'", "did you mean 'KA'"]),
    ("misspelled section", model_with("[[flows]]", "[[flow]]"), None, SIM, 1,
     ["m.toml", "unknown key 'flow'", "did you mean 'flows'"]),
    ("misspelled flow key", model_with('cl = "CL"', 'cll = "CL"'), None, SIM, 1,
     ["m.toml", "flows[1]", "'cll'", "did you mean 'cl'"]),
    ("a name with a line break", model_with("[effects]\n", '[effects]\n"c\\ne" = 5\n'),
     None, SIM, 1, ["m.toml", "effects.c\\ne", "expected {of"]),
    ("unknown effect-site compartment", model_with('of = "central"', 'of = "plasma"'), None,
     SIM, 1, ["m.toml", "effects.ce.of", "'plasma'"]),
    # --- model file: values
    ("negative volume literal", model_with('central = "V"', "central = -5.0"), None, SIM, 1,
     ["m.toml", "compartments.central", "-5.0", "expected > 0"]),
    ("negative volume parameter", model_with("V = 50.0", "V = -50.0"), None, SIM, 1,
     ["m.toml", "compartments.central", "V evaluated to -50", "expected > 0"]),
    ("non-finite parameter", model_with("V = 50.0", "V = nan"), None, SIM, 1,
     ["m.toml", "[parameters] V", "nan", "finite"]),
    ("infinite rate parameter", model_with("KA = 1.2", "KA = inf"), None, SIM, 1,
     ["m.toml", "KA", "inf", "finite"]),
    ("negative rate literal", model_with('k = "KA"', "k = -1.2"), None, SIM, 1,
     ["m.toml", "flows[0]", "k = -1.2", ">= 0"]),
    ("negative rate parameter", model_with("KA = 1.2", "KA = -1.2"), None, SIM, 1,
     ["m.toml", "depot -> central", "k = KA evaluated to -1.2", ">= 0"]),
    ("rate far too fast (units?)", model_with("KA = 1.2", "KA = 1.2e9"), None, SIM, 1,
     ["m.toml", "depot -> central", "1.2e+09 1/h", "at most 1e+06"]),
    ("fraction literal above 1", model_with('f = "F"', "f = 1.5"), None, SIM, 1,
     ["m.toml", "routes.oral.f", "1.5", "[0, 1]"]),
    ("fraction parameter above 1", model_with("F = 0.8", "F = 1.8"), None, SIM, 1,
     ["m.toml", "routes.oral.f = F", "1.8", "<= 1"]),
    ("negative lag", model_with('f = "F"', 'f = "F"\nlag_h = -0.5'), None, SIM, 1,
     ["m.toml", "routes.oral.lag_h", "-0.5", ">= 0"]),
    ("flow with both k and cl", model_with('k = "KA"', 'k = "KA"\ncl = "CL"'), None, SIM, 1,
     ["m.toml", "flows[0]", "exactly one of k", "both"]),
    ("clearance out of an amount-only compartment", model_with('k = "KA"', 'cl = "CL"'),
     None, SIM, 1, ["m.toml", "flows[0]", "cl needs a volume", "'depot' is amount-only"]),
    ("effect site with zero ke0", model_with("KE0 = 2.0", "KE0 = 0.0"), None, SIM, 1,
     ["m.toml", "effects.ce", "ke0 = KE0", "0", "> 0"]),
    ("bad expression", model_with('K10 = "CL / V"', 'K10 = "CL // V"'), None, SIM, 1,
     ["m.toml", "[derived] K10", "'CL // V'", "not a supported expression"]),
    ("unknown function", model_with('K10 = "CL / V"', 'K10 = "expp(CL)"'), None, SIM, 1,
     ["m.toml", "[derived] K10", "'expp'", "did you mean 'exp'"]),
    # --- model file: the file itself
    ("TOML syntax error", model_with("KA = 1.2", "KA = = 1.2"), None, SIM, 1,
     ["m.toml", "TOML syntax error", "line 7"]),
    ("model file not UTF-8", GOOD_MODEL.replace('"one-cpt"', '"caf\u00e9"').encode("latin-1"),
     None, SIM, 1, ["m.toml", "not UTF-8", "offset"]),
    ("binary model file", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", None, SIM, 1,
     ["m.toml", "binary file", "TOML"]),
    ("missing model file", None, None,
     ["simulate", "--model", "nowhere/m.toml", "--doses", "{d}", "--out", "{o}"], 1,
     ["'nowhere/m.toml'", "not found"]),
    ("misspelled preset", None, None,
     ["simulate", "--model", "ketamine-vi", "--doses", "{d}", "--out", "{o}"], 1,
     ["'ketamine-vi'", "did you mean 'ketamine-iv'"]),
    # --- dose table
    ("unknown route", None, "time_h,amount_mg,route\n0,10,iv\n1,10,ivv\n", SIM, 1,
     ["d.csv", "row 2: route", "'ivv'", "did you mean 'iv'"]),
    ("misspelled column", None, "time_h,ammount_mg,route\n0,10,iv\n", SIM, 1,
     ["d.csv", "line 1", "'ammount_mg'", "did you mean 'amount_mg'"]),
    ("missing column", None, "time_h,route\n0,iv\n", SIM, 1,
     ["d.csv", "line 1", "missing column 'amount_mg'"]),
    ("negative amount", None, "time_h,amount_mg,route\n0,10,iv\n1,-10,iv\n", SIM, 1,
     ["d.csv", "line 3", "amount_mg", "-10", ">= 0"]),
    ("non-finite time", None, "time_h,amount_mg,route\ninf,10,iv\n", SIM, 1,
     ["d.csv", "line 2", "time_h", "'inf'", "finite"]),
    ("negative duration", None, "time_h,amount_mg,route,duration_h\n0,10,iv,-1\n", SIM, 1,
     ["d.csv", "line 2", "duration_h", "-1"]),
    ("malformed number", None, "time_h,amount_mg,route\n0,10mg,iv\n", SIM, 1,
     ["d.csv", "line 2", "amount_mg", "'10mg'", "expected a number"]),
    ("wrong number of fields", None, "time_h,amount_mg,route\n0,10,iv\n1,5,iv,3\n", SIM, 1,
     ["d.csv", "line 3", "4 fields", "expected 3"]),
    ("fractional addl", None, "time_h,amount_mg,route,addl,ii_h\n0,10,iv,1.5,12\n", SIM, 1,
     ["d.csv", "line 2", "addl", "1.5", "whole number"]),
    ("addl without an interval", None, "time_h,amount_mg,route,addl,ii_h\n0,10,iv,2,0\n",
     SIM, 1, ["d.csv", "row 1", "ii_h", "addl = 2", "> 0"]),
    ("far too many repeats", None,
     "time_h,amount_mg,route,addl,ii_h\n0,10,iv,100000000,1\n", SIM, 1,
     ["d.csv", "addl", "100000000"]),
    ("blank route", None, "time_h,amount_mg,route\n0,10,\n", SIM, 1,
     ["d.csv", "line 2", "route is blank"]),
    ("dose table not UTF-8", None, "time_h,amount_mg,route\n0,10,iv\u00e9\n".encode("cp1252"),
     SIM, 1, ["d.csv", "not UTF-8", "offset"]),
    ("binary dose table", None, bytes(range(256)), SIM, 1, ["d.csv", "binary file", "CSV"]),
    ("empty dose table", None, "\n\n", SIM, 1, ["d.csv", "empty dose table"]),
    ("header but no doses", None, "time_h,amount_mg,route\n", SIM, 1, ["d.csv", "no doses"]),
    ("misspelled course name", None, None,
     ["simulate", "--model", "{m}", "--doses", "standard_iv", "--out", "{o}"], 1,
     ["--doses", "'standard_iv'", "did you mean 'standard-iv'"]),
    # (the message had named neither --doses nor the file)
    ("dose so large the output overflows", None, "time_h,amount_mg,route\n0,1e300,iv\n",
     SIM, 1, ["--doses: ", "d.csv: ", "output 'central'", "overflows"]),
    ("dose so large the metrics overflow", None, "time_h,amount_mg,route\n0,1e300,iv\n",
     ["population", "--model", "{m}", "--doses", "{d}", "--n", "2", "--no-variability",
      "--out", "{o}"], 1,
     ["--doses: ", "d.csv: ", "a concentration overflows"]),
    # (compare names the SPEC, as its other messages do: it had said 'doses: d.csv: ...')
    ("dose so large a comparison's run overflows", None, "time_h,amount_mg,route\n0,1e300,iv\n",
     ["compare", "{m}@{d}", "{m}@{d}:again", "--out-dir", "{o}"], 1,
     ["ketasim: error: compare: ", "m.toml@", "d.csv: doses: ", "d.csv: ", "overflows"]),
    # --- command-line values that are bad inputs (exit 1)
    ("unknown --param name", None, None, SIM + ["--param", "CLL=3"], 1,
     ["--param: ", "'CLL'", "did you mean 'CL'"]),
    ("derived --param", None, None, SIM + ["--param", "K10=3"], 1,
     ["--param: ", "'K10' is derived"]),
    ("negative --param", None, None, SIM + ["--param", "CL=-3"], 1,
     ["central -> out", "cl = CL evaluated to -3", ">= 0"]),
    ("non-finite --param", None, None, SIM + ["--param", "V=nan"], 1,
     ["--param V", "nan", "finite"]),
    ("--param fraction above 1", None, "time_h,amount_mg,route\n0,10,oral\n",
     SIM + ["--param", "F=1.2"], 1, ["routes.oral.f = F", "1.2", "<= 1"]),
    ("grid with too many points", None, None,
     ["simulate", "--model", "{m}", "--doses", "{d}", "--until", "1000", "--step", "1e-9",
      "--out", "{o}"], 1, ["1e-09", "1,000,000,000,00", "allowed", "larger step"]),
    # --- usage errors (exit 2)
    ("negative --weight", None, None, SIM + ["--weight", "-3"], 2,
     ["--weight", "-3", "> 0"]),
    ("zero --step", None, None, SIM + ["--step", "0"], 2, ["--step", "0", "> 0"]),
    ("non-finite --until", None, None,
     ["simulate", "--model", "{m}", "--doses", "{d}", "--until", "nan", "--out", "{o}"], 2,
     ["--until", "'nan'", "finite"]),
    ("--param without =", None, None, SIM + ["--param", "CL"], 2,
     ["--param", "'CL'", "NAME=VALUE"]),
    ("--param value not a number", None, None, SIM + ["--param", "CL=abc"], 2,
     ["--param", "'abc'", "not a number"]),
    ("--out with the wrong suffix", None, None,
     ["simulate", "--model", "{m}", "--doses", "{d}", "--out", "{o}.txt"], 2,
     ["--out", ".csv.txt", "ending in .csv"]),
    # (the command's own parser answers, naming the option meant: it had been "ketasim:
    # usage error: unrecognized arguments: --wieght 60 (see ketasim --help)", whose help
    # lists no command's options)
    ("misspelled option", None, None, SIM + ["--wieght", "60"], 2,
     ["ketasim simulate: usage error", "--wieght", "did you mean --weight?",
      "see ketasim simulate --help"]),
    ("misspelled option of schedule custom", None, None,
     ["schedule", "custom", "{c}", "--out", "{o}", "--monhts", "3"], 2,
     ["ketasim schedule custom: usage error", "--monhts", "did you mean --months?"]),
    ("unknown option, nothing close", None, None, SIM + ["--outputs", "plasma"], 2,
     ["ketasim simulate: usage error", "unrecognized arguments: --outputs plasma (see"]),
    ("misspelled command", None, None, ["simulat", "--out", "{o}"], 2,
     ["'simulat'", "simulate"]),
    ("missing --out", None, None, ["simulate", "--model", "{m}", "--doses", "{d}"], 2,
     ["--out", "required"]),
    # (the misspelt option named, not the required one it left out: it had said only
    # "the following arguments are required: --out")
    ("misspelled option and no --out", None, None,
     ["simulate", "--model", "{m}", "--doses", "{d}", "--oot", "{o}"], 2,
     ["unrecognized arguments", "--oot", "did you mean --out?"]),
    # --- courses
    ("course: too many sessions a week", None, None,
     ["schedule", "custom", "{c}", "--out", "{o}"], 1, ["c.toml", "phase[0]", "per_week", "9"]),
    ("course: misspelled key", None, None,
     ["schedule", "custom", "{c}", "--out", "{o}"], 1,
     ["c.toml", "phase[1]", "'every_day'", "did you mean 'every_days'"]),
    ("course: negative amount", None, None,
     ["schedule", "custom", "{c}", "--out", "{o}"], 1, ["c.toml", "amount_mg", "-35"]),
    ("course: TOML syntax error", None, None,
     ["schedule", "custom", "{c}", "--out", "{o}"], 1, ["c.toml", "TOML syntax error", "line 2"]),
    ("course: every_days without an end", None, None,
     ["schedule", "custom", "{c}", "--out", "{o}"], 1, ["c.toml", "every_days", "months"]),
    ("course: thousand-million months", None, None,
     ["schedule", "standard-iv", "--months", "1e9", "--out", "{o}"], 1,
     ["10,000,000 sessions", "months"]),
    ("course: spravato dose", None, None,
     ["schedule", "spravato", "--dose", "50", "--out", "{o}"], 2, ["--dose", "50", "56, 84"]),
    ("course: zero weight", None, None,
     ["schedule", "standard-iv", "--weight", "0", "--out", "{o}"], 2, ["--weight", "0"]),
]

COURSE_FILES = {
    "course: too many sessions a week": GOOD_COURSE.replace("per_week = 3", "per_week = 9"),
    "course: misspelled key": GOOD_COURSE.replace("every_days", "every_day"),
    "course: negative amount": GOOD_COURSE.replace("amount_mg = 35", "amount_mg = -35"),
    "course: TOML syntax error": GOOD_COURSE.replace('route = "iv"', "route = iv"),
    "course: every_days without an end": GOOD_COURSE.replace("months = 3\n", ""),
}


def test_there_are_at_least_25_distinct_bad_inputs():
    assert len({c[0] for c in CASES}) == len(CASES) >= 25


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_cli_bad_input(case, tmp_path, capsys):
    name, model_text, doses_text, argv, status, expected = case
    files = {"m.toml": GOOD_MODEL if model_text is None else model_text,
             "d.csv": GOOD_DOSES if doses_text is None else doses_text,
             "c.toml": COURSE_FILES.get(name, GOOD_COURSE)}
    for fn, content in files.items():
        p = tmp_path / fn
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
    out = tmp_path / "results" / "run.csv"
    subs = {"{m}": str(tmp_path / "m.toml"), "{d}": str(tmp_path / "d.csv"),
            "{c}": str(tmp_path / "c.toml"), "{o}": str(out)}
    args = [a for a in argv]
    for i, a in enumerate(args):
        for k, v in subs.items():
            a = a.replace(k, v)
        args[i] = a
    before = set(os.listdir(tmp_path))
    rc, err = run_cli(args, capsys)
    assert rc == status, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err                                    # one line ...
    assert "Traceback" not in err and err.startswith("ketasim")    # ... and no traceback
    for s in expected:
        assert s in err, f"{s!r} not in {err!r}"
    assert not out.exists() and not out.parent.exists()           # no output, no folder
    assert set(os.listdir(tmp_path)) == before                     # and no temporary file


# ------------------------------------------------------------------------------ CLI behaviour
def _files(tmp_path, model=GOOD_MODEL, doses=GOOD_DOSES):
    (tmp_path / "m.toml").write_text(model)
    (tmp_path / "d.csv").write_text(doses)
    return str(tmp_path / "m.toml"), str(tmp_path / "d.csv")


def test_good_input_writes_the_output(tmp_path, capsys):
    m, d = _files(tmp_path)
    out = tmp_path / "results" / "run.csv"
    rc, err = run_cli(["simulate", "--model", m, "--doses", d, "--until", "24",
                       "--out", str(out)], capsys)
    assert rc == 0, err
    head = out.read_text().splitlines()
    assert head[0] == "time_h,central_ng_ml,ce_ng_ml" and len(head) == 242
    assert os.listdir(out.parent) == ["run.csv"]


def test_debug_shows_the_traceback(tmp_path, capsys):
    m, d = _files(tmp_path, doses="time_h,amount_mg,route\n0,10,ivv\n")
    out = tmp_path / "run.csv"
    with pytest.raises(KetasimInputError, match="did you mean 'iv'"):
        main(["--debug", "simulate", "--model", m, "--doses", d, "--out", str(out)])
    assert not out.exists()


def test_grid_too_large_for_memory_is_refused_before_allocating(tmp_path, capsys, monkeypatch):
    sim = importlib.import_module("ketasim.engine")     # where the memory check lives
    monkeypatch.setattr(sim, "_available_bytes", lambda: 64 * 2**20)     # pretend: 64 MiB
    m, d = _files(tmp_path)
    out = tmp_path / "run.csv"
    rc, err = run_cli(["simulate", "--model", m, "--doses", d, "--until", "2000",
                       "--step", "0.0002", "--out", str(out)], capsys)
    assert rc == 1
    assert "10,000,001 points" in err and "GiB" in err and "available" in err
    assert not out.exists()
    # the grid alone fits, the outputs (2 x 10,000,001 values) do not
    rc, err = run_cli(["simulate", "--model", m, "--doses", d, "--until", "2000",
                       "--step", "0.0005", "--out", str(out)], capsys)
    assert rc == 1 and "2 outputs x 4,000,001 times" in err and "GiB" in err, err
    # (the share is said: "0.1 GiB, more than fits in memory (about 0.1 GiB available)" had
    # read as a contradiction)
    assert "more than 80 % of the memory available (about 0.1 GiB)" in err, err
    assert not out.exists()


def test_failure_in_a_later_output_removes_the_earlier_one(tmp_path, capsys):
    m, d = _files(tmp_path)
    (tmp_path / "blocker").write_text("a file where a folder should be")
    out = tmp_path / "run.csv"
    rc, err = run_cli(["simulate", "--model", m, "--doses", d, "--until", "24",
                       "--out", str(out), "--plot", str(tmp_path / "blocker" / "fig.png")],
                      capsys)
    assert rc == 1 and len(err.strip().splitlines()) == 1 and "blocker" in err, err
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["blocker", "d.csv", "m.toml"]


def test_an_existing_output_is_left_untouched_on_failure(tmp_path, capsys):
    m, d = _files(tmp_path, doses="time_h,amount_mg,route\n0,-1,iv\n")
    out = tmp_path / "run.csv"
    out.write_text("previous results\n")
    rc, err = run_cli(["simulate", "--model", m, "--doses", d, "--out", str(out)], capsys)
    assert rc == 1 and "amount_mg" in err
    assert out.read_text() == "previous results\n"
    assert sorted(os.listdir(tmp_path)) == ["d.csv", "m.toml", "run.csv"]


def test_out_is_a_folder(tmp_path, capsys):
    m, d = _files(tmp_path)
    (tmp_path / "x.csv").mkdir()
    rc, err = run_cli(["simulate", "--model", m, "--doses", d, "--out",
                       str(tmp_path / "x.csv")], capsys)
    assert rc == 2 and "is a folder" in err


def test_an_output_name_ending_in_a_slash_is_a_folder(tmp_path, capsys):
    # 'x.csv/' (a folder meant, or a slip) had written a file x.csv, as the shell's '>'
    # would not
    m, d = _files(tmp_path)
    for argv in (["simulate", "--model", m, "--doses", d, "--out", f"{tmp_path}/x.csv/"],
                 ["simulate", "--model", m, "--doses", d, "--out", f"{tmp_path}/y.csv",
                  "--plot", f"{tmp_path}/x.png/"],
                 ["population", "--n", "2", "--out", f"{tmp_path}/x.parquet/"],
                 ["schedule", "spravato", "--out", f"{tmp_path}/x.csv/"]):
        rc, err = run_cli(argv, capsys)
        assert rc == 2 and "ends in '/', a folder; expected a file name" in err, err
    assert sorted(os.listdir(tmp_path)) == ["d.csv", "m.toml"]


def test_no_command_is_a_usage_error(capsys):
    rc, err = run_cli([], capsys)
    assert rc == 2 and "usage error" in err


# ------------------------------------------------------------------------------ Python API
def _model():
    import tomllib

    return tomllib.loads(GOOD_MODEL)


API_CASES = [
    ("params not a dict", lambda m, d: ketasim.simulate(m, d, [0, 1], params=[1, 2]),
     ["params", "list", "dict"]),
    ("params of different lengths",
     lambda m, d: ketasim.simulate(m, d, [0, 1], params={"CL": [1, 2], "V": [1, 2, 3]}),
     ["params", "CL: 2", "V: 3"]),
    ("params 2-D", lambda m, d: ketasim.simulate(m, d, [0, 1], params={"CL": [[1.0]]}),
     ["params['CL']", "shape (1, 1)"]),
    ("unknown param", lambda m, d: ketasim.simulate(m, d, [0, 1], params={"cl": 1.0}),
     ["params", "'cl'", "did you mean 'CL'"]),
    ("times unsorted", lambda m, d: ketasim.simulate(m, d, [0, 2, 1]),
     ["times", "not sorted", "2 h is followed by 1 h"]),
    ("times negative", lambda m, d: ketasim.simulate(m, d, [-1.0, 2]), ["times", "-1"]),
    ("times with nan", lambda m, d: ketasim.simulate(m, d, [0, np.nan]),
     ["times", "nan", "index 1"]),
    ("weight zero", lambda m, d: ketasim.simulate(m, d, [0, 1], weight_kg=0),
     ["weight_kg", "0", "> 0"]),
    ("weight nan in a population",
     lambda m, d: ketasim.simulate(m, d, [0, 1], weight_kg=[70, np.nan]),
     ["weight_kg", "nan", "index 1"]),
    ("unknown output", lambda m, d: ketasim.simulate(m, d, [0, 1], outputs=["centrl"]),
     ["outputs", "'centrl'", "did you mean 'central'"]),
    ("threads zero", lambda m, d: ketasim.simulate(m, d, [0, 1], threads=0), ["threads", "0"]),
    ("pd tolerance zero", lambda m, d: ketasim.simulate(m, d, [0, 1], pd_rtol=0),
     ["pd_rtol", "0"]),
    # (below 1e-11 rounding sets the error: 1e-12 had been taken, and was less accurate)
    ("pd tolerance below rounding", lambda m, d: ketasim.simulate(m, d, [0, 1], pd_rtol=1e-12),
     ["pd_rtol: got 1e-12", "between 1e-11 and 0.1", "rounding"]),
    ("doses of the wrong type", lambda m, d: ketasim.simulate(m, 5, [0, 1]),
     ["doses", "int"]),
    ("dose records that are not dicts", lambda m, d: ketasim.Doses.from_records([1, 2]),
     ["row 1", "int", "time_h"]),
    ("dose columns of different lengths",
     lambda m, d: ketasim.Doses([0, 1], [1.0], ["iv", "iv"]), ["amount_mg", "1 values", "2"]),
    ("dose columns 2-D", lambda m, d: ketasim.Doses([[0.0]], [[1.0]], ["iv"]),
     ["time_h", "1-D", "(1, 1)"]),
    ("huge addl", lambda m, d: ketasim.Doses([0.0], [1.0], ["iv"], addl=[1e30], ii_h=[1.0]),
     ["addl", "1e+30"]),
    ("repeats past the float range",
     lambda m, d: ketasim.Doses([0.0], [1.0], ["iv"], addl=[3], ii_h=[1e308]),
     ["row 1", "addl x ii_h", "1e+308"]),
    ("read_doses of a number", lambda m, d: ketasim.read_doses(5), ["doses", "int"]),
    ("read_doses of a folder", lambda m, d: ketasim.read_doses(os.getcwd()), ["folder"]),
    ("model from a folder", lambda m, d: ketasim.load_model(os.getcwd() + "/"), ["folder"]),
    ("time grid step zero", lambda m, d: ketasim.time_grid(24, 0), ["step", "0"]),
    ("time grid of strings", lambda m, d: ketasim.time_grid("24", 1), ["until", "'24'"]),
    ("non-string compartment name",
     lambda m, d: ketasim.Model.from_dict(dict(_model(), compartments={1: "V"})),
     ["[compartments]", "1", "string"]),
    ("non-string parameter name",
     lambda m, d: ketasim.Model.from_dict(dict(_model(), parameters={5: 1.0})),
     ["[parameters]", "5", "string"]),
    ("expression nested too deeply",
     lambda m, d: ketasim.Model.from_dict(dict(_model(), derived={"X": "-(" * 150 + "CL" + ")" *
                                                                   150})),
     ["[derived] X", "nested too deeply"]),
    ("expression far too long",
     lambda m, d: ketasim.Model.from_dict(dict(_model(), derived={"X": "+".join(["CL"] * 1500)})),
     ["[derived] X", "characters"]),
    ("ligands not a list",
     lambda m, d: ketasim.Model.from_dict(dict(_model(), occupancy={"ligands": 5})),
     ["[occupancy] ligands", "list", "int"]),
    ("ligand fraction unbound above 1",
     lambda m, d: ketasim.Model.from_dict(dict(_model(), occupancy={"ligands": [
         {"site": "ce", "ki_um": 0.3, "mw_g_mol": 238.0, "fu": 1.5}]})),
     ["occupancy.ligands[0].fu", "1.5", "[0, 1]"]),
    # (a ligand listed twice had been counted twice: 0.5 occupancy read as 0.67)
    ("ligand listed twice",
     lambda m, d: ketasim.Model.from_dict(dict(_model(), occupancy={"ligands": [
         {"name": "S", "site": "ce", "ki_um": 0.3, "mw_g_mol": 238.0}] * 2})),
     ["occupancy.ligands[1]", "ligand 'S' is listed twice"]),
    ("parameter too large for a float",
     lambda m, d: ketasim.Model.from_dict(dict(_model(), parameters={"CL": 10**400})),
     ["[parameters] CL", "finite"]),
    ("infinite reference weight",
     lambda m, d: ketasim.Model.from_dict(dict(_model(), weight={"reference_kg": float("inf")})),
     ["[weight] reference_kg", "inf"]),
    # (a volume listed twice had been multiplied by the weight twice: 4,900 times too large)
    ("per-kg parameter listed twice",
     lambda m, d: ketasim.Model.from_dict(dict(_model(), weight={"per_kg": ["V", "V"]})),
     ["[weight] per_kg", "'V' is listed twice"]),
    ("course with a bad first dose",
     lambda m, d: ketasim.course_from_phases([ketasim.Phase(weeks=1, per_week=2)], 10.0, "iv",
                                             first_amount_mg=-1.0),
     ["first_amount_mg", "-1"]),
    ("phase that is not a Phase",
     lambda m, d: ketasim.course_from_phases([{"weeks": 1}], 10.0, "iv"),
     ["phases", "dict", "Phase"]),
    ("a sweep varying the weight it is also given",
     lambda m, d: ketasim.sweep("ketamine-iv", "standard-iv", {"weight_kg": [50.0, 70.0]},
                                weight_kg=100.0, metrics=("cmax",)),
     ["weight_kg", "also given", "one place"]),
    ("a weekly phase with an every_days key",
     lambda m, d: ketasim.Phase(weeks=1, per_week=2, after_days=14.0),
     ["after_days = 14.0", "only an every_days phase"]),
    ("derived value used before it is defined",
     lambda m, d: ketasim.Model.from_dict(dict(_model(), derived={"A1": "B1", "B1": "CL"})),
     ["[derived] A1", "'B1'", "defines after it"]),
    ("derived value defined from itself",
     lambda m, d: ketasim.Model.from_dict(dict(_model(), derived={"A1": "A1 + 1"})),
     ["[derived] A1", "as itself"]),
    ("a drawn value breaks a volume: the subject is named",
     lambda m, d: ketasim.simulate(ketasim.Model.from_dict(dict(
         _model(), compartments={"depot": 0, "central": "V - 4 * CL"})), d, [0, 1],
         params={"CL": [1.0, 2.0, 100.0]}),
     ["volume V - 4 * CL", "for subject 3 of 3", "> 0"]),
    ("a dose table with a trailing comma in its header",
     lambda m, d: ketasim.read_doses(io.StringIO("time_h,amount_mg,route,\n0,1,iv,\n")),
     ["empty column name", "a comma too many"]),
    ("a concentration asked for by a number",
     lambda m, d: ketasim.simulate(m, d, [0, 1]).concentration(3),
     ["output: unknown name 3", "expected one of"]),
]


@pytest.mark.parametrize("case", API_CASES, ids=[c[0] for c in API_CASES])
def test_python_api_bad_input(case):
    _, call, expected = case
    m = ketasim.Model.from_dict(_model(), source="one-cpt")
    d = ketasim.Doses.single(10.0, "iv")
    with pytest.raises(KetasimInputError) as exc:
        call(m, d)
    assert isinstance(exc.value, ValueError)
    for s in expected:
        assert s in str(exc.value), f"{s!r} not in {str(exc.value)!r}"


def test_a_population_or_sweep_too_large_for_memory_is_refused_before_it_runs(
        tmp_path, capsys, monkeypatch):
    """A sweep of 9 million points x 1,000 subjects had run for seconds and built its grid
    before the first chunk's results found the table too large, and it advised a coarser step
    or a shorter horizon, which a metrics run has not; the count it gave was of subjects, not
    of table rows. Now the metrics every subject keeps (each metric per session and for the
    course) are counted before anything runs."""
    pop = importlib.import_module("ketasim.population")
    eng = importlib.import_module("ketasim.engine")
    monkeypatch.setattr(eng, "_available_bytes", lambda: 64 * 2**20)     # pretend: 64 MiB
    ran = []
    monkeypatch.setattr(pop, "_execute", lambda *a, **k: ran.append(1) or iter(()))
    out = tmp_path / "sw.csv"
    rc, err = run_cli(["sweep", "--vary", "CL=50:100:300", "--vary", "V1=50:100:300",
                       "--n", "100", "--out", str(out), "--quiet"], capsys)
    assert rc == 1 and not ran and not out.exists()
    assert "90,000 grid points x 100 subjects each" in err and "GiB" in err
    assert "fewer grid points, fewer subjects per point (n, --n)" in err
    assert "coarser step" not in err and "horizon" not in err
    # 100,000 subjects x 6 metrics x (13 sessions + the course) = 8.4 million values
    rc, err = run_cli(["population", "--n", "100000", "--quiet"], capsys)
    assert rc == 1 and not ran
    assert "100,000 subjects x 84 values (the 6 metrics of each session and of the course)" in err
    assert "fewer subjects (n, --n) or fewer metrics" in err and "coarser step" not in err


def test_dose_records_with_blank_cells_are_the_table_read_from_the_csv(tmp_path):
    """Doses.from_records takes the rows of csv.DictReader as read_doses takes the file: a
    blank, "." or None in a column is not given (an empty duration_h had been refused as
    "expected numbers"); a blank required column is named as missing."""
    import csv

    p = tmp_path / "d.csv"
    p.write_text("time_h,amount_mg,route,duration_h,rate_mg_h,addl,ii_h,ss,evid,subject,WT\n"
                 "0,10,iv,,,,,,,1,\n12,20,iv,1,.,2,6,,.,1,80\n")
    with open(p, newline="") as fh:
        d = ketasim.Doses.from_records(csv.DictReader(fh))
    assert d == ketasim.read_doses(p)
    assert list(d.duration_h) == [0.0, 1.0] and list(d.addl) == [0, 2]
    e = ketasim.Doses.from_records([{"time_h": 0, "amount_mg": 5, "route": "iv",
                                     "duration_h": None, "rate_mg_h": " "}])
    assert e == ketasim.Doses.single(5.0, "iv")
    for col in ("time_h", "amount_mg", "route"):
        row = {"time_h": 0, "amount_mg": 5, "route": "iv", col: ""}
        with pytest.raises(KetasimInputError, match=f"row 1: missing {col}"):
            ketasim.Doses.from_records([row])


def test_dose_record_cells_are_read_as_the_csv_reads_them(tmp_path):
    """csv.DictReader rows whose cells read as they do in the file (a route with spaces
    around it, an addl or evid written 2.0) had been refused, while text the reader refuses
    as a typo (1_00) had been read as 100; True or False had been read as a number (a dose
    at time_h=True was given at 1 h)."""
    import csv

    text = ("time_h,amount_mg,route,addl,ii_h,evid,WT\n"
            "0, 100 , iv ,2.0,12,1.0,80\n30,50,iv,0,0,1,80.0\n")
    p = tmp_path / "d.csv"
    p.write_text(text)
    with open(p, newline="") as fh:
        d = ketasim.Doses.from_records(csv.DictReader(fh))
    assert d == ketasim.read_doses(p)
    m = ketasim.Model.from_dict({
        "parameters": {"V": 50.0, "CL": 10.0}, "compartments": {"central": "V"},
        "flows": [{"from": "central", "to": "out", "cl": "CL"}],
        "routes": {"iv": {"to": "central"}}})
    t = np.array([1.0, 25.0, 31.0])
    k = 10.0 / 50.0
    want = [sum(a / 50 * np.exp(-k * (x - t0)) for t0, a in ((0, 100), (12, 100), (24, 100),
                                                            (30, 50)) if x >= t0) for x in t]
    np.testing.assert_allclose(ketasim.simulate(m, d, t).concentration("central", "mg/L"),
                               want, rtol=1e-12)
    with pytest.raises(KetasimInputError, match=r"row 1: amount_mg: got '1_00', expected a "
                                                r"number"):
        ketasim.Doses.from_records([{"time_h": 0, "amount_mg": "1_00", "route": "iv"}])
    for col in ("time_h", "amount_mg", "ss"):
        row = {"time_h": 0, "amount_mg": 5, "route": "iv", "ii_h": 12, col: True}
        with pytest.raises(KetasimInputError, match=rf"row 1: {col}: got True, expected a "
                                                     r"number \(True or False is no number\)"):
            ketasim.Doses.from_records([row])
    with pytest.raises(KetasimInputError, match=r"time_h: got array\(\[ True\]\)"):
        ketasim.Doses(np.array([True]), [5.0], ["iv"])


def test_a_dose_table_plus_something_else_is_a_type_error():
    d = ketasim.Doses.single(5.0, "iv")
    for other in (1, "x", None, [d]):
        with pytest.raises(TypeError, match="unsupported operand"):
            d + other
    assert d + ketasim.Doses.single(1.0, "iv", 2.0) == ketasim.Doses([0.0, 2.0], [5.0, 1.0],
                                                                       ["iv", "iv"])


@pytest.mark.parametrize("factor", ["2", None, np.nan, np.inf, -1.0, [2.0], True])
def test_scaling_a_dose_table_by_what_is_not_a_factor_names_the_factor(factor):
    # (text had failed inside numpy's multiply; NaN or a negative factor had been reported
    # as the table's amount_mg at row 1)
    with pytest.raises(KetasimInputError, match=r"scaled: got a factor of .*expected a finite "
                                                 r"number >= 0"):
        ketasim.Doses.single(5.0, "iv", rate_mg_h=10.0).scaled(factor)
    assert ketasim.Doses.single(5.0, "iv").scaled(np.float32(2)) == ketasim.Doses.single(10.0,
                                                                                         "iv")


def test_a_numpy_tolerance_is_a_tolerance():
    # (np.float32(1e-6) had been refused as "expected a relative tolerance between 1e-13
    # and 0.1")
    d = ketasim.Doses.single(35.0, "iv", duration_h=0.67)
    a = ketasim.simulate("ketamine-iv", d, [0.0, 1.0, 6.0], outputs=["glutamate"],
                         pd_rtol=np.float32(1e-6))
    b = ketasim.simulate("ketamine-iv", d, [0.0, 1.0, 6.0], outputs=["glutamate"],
                         pd_rtol=float(np.float32(1e-6)))
    np.testing.assert_array_equal(a.glutamate, b.glutamate)
    with pytest.raises(KetasimInputError, match="pd_rtol"):
        ketasim.simulate("ketamine-iv", d, [0.0, 1.0], pd_rtol=np.bool_(True))


@pytest.mark.parametrize("cast", [np.float32, np.int64, np.float64])
def test_a_model_dict_of_numpy_numbers_is_the_model_of_python_numbers(cast):
    # a spec filled from arrays holds NumPy scalars (np.float32(50) had been refused as
    # "expected a number" in [parameters], [weight], volumes and rates)
    def spec(num):
        return {"parameters": {"V": num(50), "CL": num(10)},
                "weight": {"reference_kg": num(70), "allometric": {"CL": num(1)}},
                "compartments": {"central": "V", "periph": num(20)},
                "flows": [{"from": "central", "to": "out", "cl": "CL"},
                          {"from": "central", "to": "periph", "k": num(2)},
                          {"from": "periph", "to": "central", "k": num(1)}],
                "routes": {"iv": {"to": np.str_("central"), "f": num(1)}}}
    assert ketasim.Model.from_dict(spec(cast)) == ketasim.Model.from_dict(spec(float))
    with pytest.raises(KetasimInputError, match="expected a number"):
        ketasim.Model.from_dict({**spec(float), "parameters": {"V": np.bool_(True)}})


def test_model_from_toml_names_a_missing_file_or_a_folder(tmp_path):
    # (Model.from_toml had let the OSError of open() through: "[Errno 2] No such file ...")
    for path, what in ((tmp_path / "none.toml", "not found"), (tmp_path, "is a folder")):
        with pytest.raises(KetasimInputError, match=f"^model: .*{what}"):
            ketasim.Model.from_toml(path)
    p = tmp_path / "m.toml"
    p.write_text(GOOD_MODEL)
    assert ketasim.Model.from_toml(p) == ketasim.load_model(str(p))


@pytest.mark.parametrize("spec,near", [("standard_iv", "standard-iv"), ("spravatto", "spravato")])
def test_a_misspelt_course_given_to_simulate_names_the_nearest_course(spec, near):
    # (simulate and session_metrics had looked for a file of that name: "file 'standard_iv'
    # not found"; population said what a course is)
    from ketasim.engine import session_metrics

    for run in (lambda: ketasim.simulate("ketamine-iv", spec, [0.0, 1.0]),
                lambda: session_metrics("ketamine-iv", spec)):
        with pytest.raises(KetasimInputError, match=f"neither a file nor a course .did you mean "
                                                    f"'{near}'"):
            run()


def test_outputs_that_are_not_names_are_named_and_numpy_names_are_names():
    # (outputs=123 had failed with "TypeError: 'int' object is not iterable", and NumPy
    # strings had been kept as np.str_ in result.names)
    d = ketasim.Doses.single(35.0, "iv")
    with pytest.raises(KetasimInputError, match="outputs: got 123, expected an output name"):
        ketasim.simulate("ketamine-iv", d, [0.0, 1.0], outputs=123)
    # (a dict had given its keys, its values dropped without a word)
    with pytest.raises(KetasimInputError, match=r"outputs: got \{'plasma': 1\}, expected an "
                                                "output name or a list of names"):
        ketasim.simulate("ketamine-iv", d, [0.0, 1.0], outputs={"plasma": 1})
    r = ketasim.simulate("ketamine-iv", d, [0.0, 1.0], outputs=np.array(["plasma", "occupancy"]))
    assert r.names == ("plasma", "occupancy") and all(type(n) is str for n in r.names)


@pytest.mark.parametrize("name", ["WT", "weight_kg"])
def test_a_weight_given_as_a_parameter_points_to_weight_kg(name):
    # (it had been an unknown name with the nearest parameter: "did you mean 'MW_KET'?")
    d = ketasim.Doses.single(35.0, "iv")
    for run in (lambda: ketasim.simulate("ketamine-iv", d, [0.0, 1.0], params={name: 80.0}),
                lambda: ketasim.population("ketamine-iv", d, 2, params={name: 80.0},
                                           progress=False)):
        with pytest.raises(KetasimInputError, match=f"params: '{name}' is the body weight; "
                                                    "give it as weight_kg="):
            run()


def test_an_empty_outputs_list_is_refused():
    """outputs=[] had returned a result with no outputs at all, without a word."""
    import numpy as np

    d = ketasim.Doses.single(35.0, "iv")
    with pytest.raises(ketasim.KetasimInputError, match=r"outputs: empty; expected at least one"):
        ketasim.simulate("ketamine-iv", d, np.array([0.0, 1.0]), outputs=[])
    # with amounts=True the amounts are the outputs, as before
    r = ketasim.simulate("ketamine-iv", d, np.array([0.0, 1.0]), outputs=[], amounts=True)
    assert "amount:s_central" in r.names


def test_nan_in_optional_columns_of_dataframe_records_is_not_given(tmp_path):
    """DataFrame.to_dict("records") of a table mixing boluses and infusions has NaN where a
    CSV has a blank cell (a bolus row's rate_mg_h): it had been refused as "rate_mg_h: got
    nan, expected a finite number". NaN (and pandas' NA) is now not given, as a blank cell;
    in time_h, amount_mg or route of a dose row it is still refused, naming the row and
    column."""
    pd = pytest.importorskip("pandas")
    csv_text = ("time_h,amount_mg,route,rate_mg_h,addl,ii_h,weight_kg\n"
                "0,100,iv,,,,\n24,100,iv,50,,,80\n48,100,iv,,1,12,\n")
    p = tmp_path / "d.csv"
    p.write_text(csv_text)
    df = pd.DataFrame({"time_h": [0.0, 24.0, 48.0], "amount_mg": [100.0, 100.0, 100.0],
                       "route": ["iv", "iv", "iv"], "rate_mg_h": [np.nan, 50.0, np.nan],
                       "addl": pd.array([pd.NA, pd.NA, 1], dtype="Int64"),
                       "ii_h": [np.nan, np.nan, 12.0], "weight_kg": [np.nan, 80.0, np.nan]})
    d = ketasim.Doses.from_records(df.to_dict("records"))
    assert d == ketasim.read_doses(p)
    # one compartment (V 50 L, CL 10 L/h): a bolus, then 100 mg at 50 mg/h from 24 h
    m = ketasim.Model.from_dict({
        "parameters": {"V": 50.0, "CL": 10.0}, "compartments": {"central": "V"},
        "flows": [{"from": "central", "to": "out", "cl": "CL"}],
        "routes": {"iv": {"to": "central"}}})
    t = np.array([1.0, 25.0])
    r = ketasim.simulate(m, df.iloc[:2].to_dict("records"), t, outputs=["central"])
    k = 10.0 / 50.0
    want = [100 / 50 * np.exp(-k * 1.0),
            100 / 50 * np.exp(-k * 25.0) + 50.0 / 10.0 * (1 - np.exp(-k * 1.0))]
    np.testing.assert_allclose(r.concentration("central", "mg/L"), want, rtol=1e-12)
    for col, what in (("time_h", "a time in hours"), ("amount_mg", "an amount in mg"),
                      ("route", "a route name")):
        bad = df.copy()
        bad.loc[1, col] = np.nan
        with pytest.raises(KetasimInputError,
                           match=rf"^<doses>: row 2: {col}: got nan, expected {what}"):
            ketasim.Doses.from_records(bad.to_dict("records"))
    # a reset row (evid 3) gives no dose: its amount and route may be empty, as in a CSV
    reset = pd.DataFrame({"time_h": [0.0, 10.0], "amount_mg": [100.0, np.nan],
                          "route": ["iv", np.nan], "evid": [1, 3]})
    assert list(ketasim.Doses.from_records(reset.to_dict("records")).evid) == [1, 3]
    # the DataFrame itself, as rxode2 and mrgsolve take a data frame of events (it had been
    # refused: "doses: got DataFrame, expected a Doses, ..."): the same table, the same numbers
    assert ketasim.Doses.from_frame(df) == d
    r2 = ketasim.simulate(m, df.iloc[:2], t, outputs=["central"])
    np.testing.assert_allclose(r2.concentration("central", "mg/L"), want, rtol=1e-12)
    from ketasim.engine import session_metrics
    sm = session_metrics(m, df.iloc[:1], metrics=("cmax",))
    np.testing.assert_allclose(sm["cmax"], [100 / 50 * 1000.0], rtol=1e-12)
    pop = ketasim.population(m, df.iloc[:1], 2, metrics=("cmax",), variability=False,
                             progress=False)
    np.testing.assert_allclose(pop.columns["cmax"], [2000.0, 2000.0], rtol=1e-12)


@pytest.mark.parametrize("call", ["population", "cli"])
def test_a_metric_in_the_wrong_letter_case_names_the_metric_meant(call, tmp_path, capsys):
    # ("Cmax", as pharmacology writes it, had been answered "did you mean 'tmax'?")
    if call == "population":
        with pytest.raises(KetasimInputError, match=r"did you mean 'cmax'\?"):
            ketasim.population("ketamine-iv", "standard-iv", 10, metrics=["Cmax", "AUC"])
    else:
        rc, err = run_cli(["population", "--model", "ketamine-iv", "--n", "10", "--metrics",
                           "cmax,AUC", "--out", str(tmp_path / "p.csv")], capsys)
        assert rc == 1 and "did you mean 'auc'?" in err, err
    from ketasim.errors import suggest
    assert suggest("Tmax", ["cmax", "tmax"]) == " (did you mean 'tmax'?)"
    assert suggest("V", ["V1", "V2", "v"]) == " (did you mean 'v'?)"


@pytest.mark.parametrize("call, field", [
    (lambda v: ketasim.simulate("ketamine-iv", ketasim.Doses.single(35.0, "iv"), [0.0, 1.0],
                                outputs=["plasma"], amounts=v), "amounts"),
    (lambda v: ketasim.population("ketamine-iv", "standard-iv", 2, variability=v,
                                  metrics=("cmax",), progress=False), "variability"),
    (lambda v: ketasim.population("ketamine-iv", "standard-iv", 2, keep_parameters=v,
                                  metrics=("cmax",), progress=False), "keep_parameters"),
])
def test_a_yes_no_switch_given_as_text_is_refused(call, field):
    """amounts="no" had recorded every amount, variability="no" varied the subjects and
    keep_parameters="no" kept the param_ columns: text is true to Python whatever it says."""
    for bad in ("no", "False", 2, None, 0.5):
        with pytest.raises(ketasim.KetasimInputError,
                           match=rf"^{field}: got {re.escape(repr(bad))}, expected True or "
                                 "False$"):
            call(bad)
    call(np.bool_(False))
    call(0)


@pytest.mark.parametrize("name", ["", "   ", 5])
def test_a_model_name_must_be_text_that_is_not_blank(name):
    """[model] name = "" had been accepted: a figure titled by nothing, messages naming the
    model ''. A number had been taken as its text."""
    spec = {"model": {"name": name}, "parameters": {"V": 10.0, "K": 1.0},
            "compartments": {"c": "V"}, "flows": [{"from": "c", "to": "out", "k": "K"}],
            "routes": {"iv": {"to": "c"}}}
    with pytest.raises(KetasimInputError, match=r"^<model>: \[model\] name: got "
                       + re.escape(repr(name)) + r", expected a name \(text that is not blank\)$"):
        ketasim.Model.from_dict(spec)
    spec["model"]["name"] = "one compartment"
    assert ketasim.Model.from_dict(spec).name == "one compartment"


def test_a_weight_no_person_has_is_run_with_a_warning(tmp_path, capsys):
    # 70000 "kg" (grams meant) had run without a word: 1,000 times the mg/kg course's doses
    import warnings

    m = ketasim.load_model("ketamine-iv")
    d = ketasim.standard_iv_course(months=1)
    t = ketasim.time_grid(24, 1.0)
    with pytest.warns(ketasim.KetasimWarning, match=r"weight_kg: 7000 kg .*2 of 3 weights") as w:
        r = ketasim.simulate(m, d, t, weight_kg=[70.0, 7000.0, 8000.0])
    assert w[0].filename == __file__           # shown at the caller's line
    ref = ketasim.simulate(m, d, t, weight_kg=[70.0])
    np.testing.assert_array_equal(r.data[0], ref.data[0])       # run as given
    with pytest.warns(ketasim.KetasimWarning, match=r"0\.1 kg is less than any person"):
        ketasim.simulate(m, d, t, weight_kg=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ketasim.simulate(m, d, t, weight_kg=[0.2, 0.6, 70.0, 650.0])    # (preterm: 0.6)
        # a model file may be of any species (a rat, a horse): no warning
        rat = ketasim.Model.from_dict(__import__("tomllib").loads(GOOD_MODEL), source="rat.toml")
        ketasim.simulate(rat, [{"time_h": 0.0, "amount_mg": 1.0, "route": "iv"}], t,
                         weight_kg=0.25)
    out = tmp_path / "c.csv"
    assert main(["simulate", "--weight", "70000", "--until", "24", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("ketasim: warning: --weight: 70000 kg is more than any person") \
        and "grams or pounds" in err.splitlines()[0] and "wrote" in err and out.exists()


_TD = np.timedelta64(24, "h")     # NumPy counts a duration among its integers


@pytest.mark.parametrize("call, field", [
    (lambda: ketasim.time_grid(_TD, 1.0), "until"),
    (lambda: ketasim.simulate("ketamine-iv", "standard-iv", [0, 1], threads=_TD), "threads"),
    (lambda: ketasim.simulate("ketamine-iv", "standard-iv", [0, 1], weight_kg=_TD),
     "weight_kg"),
    (lambda: ketasim.population("ketamine-iv", "standard-iv", _TD), "n"),
    (lambda: ketasim.population("ketamine-iv", "standard-iv", 2, seed=_TD), "seed"),
    (lambda: ketasim.population("ketamine-iv", "standard-iv", 2, horizon_h=_TD), "horizon_h"),
    (lambda: ketasim.population("ketamine-iv", "standard-iv", 2, params={"CL": _TD}),
     "params['CL']"),
    (lambda: ketasim.standard_iv_course(months=_TD), "months"),
    (lambda: ketasim.Phase(weeks=_TD, per_week=2), "weeks"),
    (lambda: importlib.import_module("ketasim.engine").session_metrics(
        "ketamine-iv", "standard-iv", merge_h=_TD), "merge_h"),
    (lambda: importlib.import_module("ketasim.plotting").run_course(
        "ketamine-iv", "standard-iv", closeup_h=_TD), "closeup_h"),
])
def test_a_numpy_duration_is_not_taken_for_a_number(call, field):
    """np.timedelta64 is a NumPy integer type: it had passed the checks for a number, then
    failed deep inside NumPy (a population's horizon_h, a time grid, a run_course close-up:
    TypeError or UFuncTypeError) or been taken as a count in its own unit (n, seed, threads,
    a course's months)."""
    with pytest.raises(KetasimInputError, match=re.escape(field) + r": got .*timedelta64"):
        call()


_NO_NUMBERS = {
    "a date": (lambda pd: np.datetime64("2020-01-01"), "not dates or durations"),
    "durations": (lambda pd: np.array([1, 2], dtype="m8[h]"), "not dates or durations"),
    "a Series of True": (lambda pd: pd.Series([True, True]), "not True/False"),
    "a Series of text": (lambda pd: pd.Series(["90", "100"]), "not text or None"),
    "a masked value": (lambda pd: np.ma.masked_array([90.0, 100.0], [False, True]),
                       "masked values"),
}


@pytest.mark.parametrize("what", list(_NO_NUMBERS))
@pytest.mark.parametrize("call", ["simulate", "session_metrics"])
def test_parameter_values_that_only_numpy_reads_as_numbers_are_refused(what, call):
    """A date had been a clearance of 18,262 L/h (days since 1970), a duration its count, a
    pandas Series of True its 1.0 and of '90' its 90, and a masked value the number under the
    mask: each run went on without a word."""
    make, words = _NO_NUMBERS[what]
    value = make(pytest.importorskip("pandas"))
    run = (ketasim.simulate if call == "simulate" else
           importlib.import_module("ketasim.engine").session_metrics)
    args = ([0.0, 1.0],) if call == "simulate" else ()
    with pytest.raises(KetasimInputError, match=r"params\['CL'\]: got .*" + re.escape(words)):
        run("ketamine-iv", ketasim.Doses.single(35.0, "iv"), *args, params={"CL": value})


@pytest.mark.parametrize("time_h", [np.array([0, 3], dtype="m8[h]"),
                                    np.array(["2020-01-01", "2020-01-02"], dtype="M8[D]"),
                                    [np.timedelta64(0, "h"), np.timedelta64(3, "h")]])
def test_dose_times_given_as_dates_or_durations_are_refused(time_h):
    """A duration array had been read as its count (in minutes, say, for hours) and a date as
    days since 1970."""
    with pytest.raises(KetasimInputError, match=r"row 1: time_h: got .*not a date or a "
                                                r"duration"):
        ketasim.Doses(time_h, [35.0, 35.0], ["iv", "iv"])


@pytest.mark.parametrize("call", [
    lambda: ketasim.population("ketamine-iv", [], 3),
    lambda: ketasim.sweep("ketamine-iv", [], {"CL": [90.0, 100.0]}),
    lambda: importlib.import_module("ketasim.plotting").run_course("ketamine-iv", []),
    lambda: importlib.import_module("ketasim.plotting").run_course("ketamine-iv", [],
                                                                   until_h=10.0),
], ids=["population", "sweep", "run_course", "run_course until_h"])
def test_a_dose_table_without_rows_is_named_not_a_numpy_error(call):
    """An empty list of dose records (or an empty DataFrame) had ended a population, a sweep
    or run_course with NumPy's 'zero-size array to reduction operation maximum which has no
    identity'."""
    with pytest.raises(KetasimInputError, match=r"doses: <doses> has no doses; expected at "
                                                r"least one"):
        call()


@pytest.mark.parametrize("call, expected", [
    (lambda: ketasim.spravato_course(np.array([56, 84])), "dose: got array([56, 84]), expected "
                                                          "56 or 84"),
    (lambda: ketasim.spravato_course(np.array([56])), "dose: got array([56]), expected 56 or 84"),
    (lambda: ketasim.course_from_phases(ketasim.Phase(weeks=1, per_week=2), 35.0, "iv"),
     "phases: got Phase(weeks=1, per_week=2"),
    (lambda: ketasim.course_from_phases(5, 35.0, "iv"), "phases: got 5, expected a list of "
                                                        "Phase"),
    (lambda: ketasim.course_from_phases([], 35.0, "iv"), "phases: got none, expected at least "
                                                         "one Phase"),
])
def test_course_builders_name_what_is_wrong_with_their_arguments(call, expected):
    """An array dose for the Spravato course had raised NumPy's 'truth value of an array ...
    is ambiguous' (or 'only 0-dimensional arrays can be converted'); one Phase for the list of
    phases 'Phase object is not iterable'; an empty list said no sessions fall within the
    course length."""
    with pytest.raises(KetasimInputError, match=re.escape(expected)):
        call()


def test_a_weight_no_person_has_is_said_by_populations_sweeps_and_courses(tmp_path, capsys):
    # the course, population and sweep runs keep their per-run warnings quiet: the weight is
    # said by them once
    from ketasim.plotting import run_course

    with pytest.warns(ketasim.KetasimWarning, match=r"weight_kg: 70000 kg is more"):
        run_course("ketamine-iv", "standard-iv", weight_kg=70000.0)
    d = ketasim.standard_iv_course(months=1)
    kw = dict(metrics=("cmax",), progress=False)
    with pytest.warns(ketasim.KetasimWarning, match=r"weight_kg: 900 kg .*1 of 2 weights"):
        ketasim.population("ketamine-iv", d, 2, 0, weight_kg=[70.0, 900.0], **kw)
    with pytest.warns(ketasim.KetasimWarning, match=r"weight_kg: 0\.15 kg is less"):
        ketasim.population("ketamine-iv", d, 2, 0, weight_kg=0.15, **kw)
    with pytest.warns(ketasim.KetasimWarning, match=r"weight_kg: 2000 kg"):
        ketasim.sweep("ketamine-iv", d, {"weight_kg": [70.0, 2000.0]}, **kw)
    with pytest.warns(ketasim.KetasimWarning, match=r"700 kg is more .*650 kg\); run") as w:
        ketasim.sweep("ketamine-iv", d, {"CL": [70.0, 80.0]}, weight_kg=700.0, **kw)
    assert len(w) == 1 and "weights" not in str(w[0].message)   # (not '2 of 2 weights')
    capsys.readouterr()
    assert main(["course", "--weight", "900", "--months", "1", "--out-dir",
                 str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert err.count("ketasim: warning: --weight: 900 kg is more than any person") == 1, err


def test_a_weight_no_person_has_from_a_dose_table_is_said_once_by_course(tmp_path, capsys):
    # the check of the course's size and its run each said it: a "once" filter forgets what
    # it showed whenever the filters change, as run_course's catch_warnings block does
    doses = tmp_path / "d.csv"
    assert main(["schedule", "standard-iv", "--weight", "900", "--months", "1", "--out",
                 str(doses)]) == 0
    capsys.readouterr()
    assert main(["course", "--doses", str(doses), "--out-dir", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert err.count("900 kg is more than any person") == 1, err


def test_a_weight_no_person_has_names_the_file_or_option_it_comes_from(tmp_path, capsys):
    # a --covariates file's 900 kg had been warned about as "weight_kg: 900 kg ...", naming
    # neither the option nor the file (so for a dose table's weight column, a --vary grid and
    # a compare SPEC's table)
    cov = tmp_path / "cov.csv"
    cov.write_text("weight_kg\n70\n900\n")
    doses = tmp_path / "d.csv"
    assert main(["schedule", "standard-iv", "--weight", "900", "--months", "1", "--out",
                 str(doses)]) == 0
    zero = tmp_path / "w0.csv"
    zero.write_text("time_h,amount_mg,route,weight_kg\n0,35,iv,0\n")
    out = tmp_path / "o.csv"
    for argv, head in [
            (["population", "--n", "2", "--model", "esketamine-nasal", "--doses", "spravato",
              "--months", "1", "--covariates", str(cov), "--metrics", "cmax"],
             f"warning: --covariates: {cov}: weight_kg: 900 kg is more"),
            (["simulate", "--doses", str(doses), "--until", "24", "--out", str(out)],
             f"warning: --doses: {doses}: weight_kg: 900 kg is more"),
            (["sweep", "--vary", "weight_kg=70:900:2", "--months", "1", "--metrics", "cmax",
              "--out", str(out)],
             "warning: --vary weight_kg: 900 kg is more"),
            (["compare", f"ketamine-iv@{doses}:heavy", "ketamine-iv@standard-iv",
              "--out-dir", str(tmp_path)],
             f"warning: compare: ketamine-iv@{doses}:heavy: weight_kg: 900 kg is more"),
            (["simulate", "--doses", str(zero), "--out", str(out)],
             f"error: --doses: {zero}: weight_kg: got 0, expected"),
    ]:
        capsys.readouterr()
        main(argv)
        err = capsys.readouterr().err
        assert f"ketasim: {head}" in err, (argv, err)
    # --weight itself is named as before
    assert main(["simulate", "--weight", "900", "--until", "24", "--out", str(out)]) == 0
    assert "ketasim: warning: --weight: 900 kg" in capsys.readouterr().err


def test_a_table_refused_by_a_population_names_the_option(tmp_path, capsys):
    doses = tmp_path / "d.csv"
    doses.write_text("time_h,amount_mg,route,weight_kg\n0,35,iv,80\n")
    assert main(["population", "--n", "2", "--doses", str(doses)]) == 1
    assert capsys.readouterr().err.startswith(f"ketasim: error: --doses: {doses} has "
                                              "covariate columns (weight_kg)")


def test_an_age_outside_the_model_range_names_the_option_and_file(tmp_path, capsys):
    # had been "covariates['age_y'] (--age or --covariates): subject 1 ...": the Python
    # argument, both options, and not the file
    cov = tmp_path / "ages.csv"
    cov.write_text("age_y\n40\n17\n")
    base = ["population", "--model", "esketamine-nasal", "--doses", "spravato", "--months",
            "1", "--n", "2", "--metrics", "cmax"]
    assert main(base + ["--covariates", str(cov)]) == 1
    assert capsys.readouterr().err.startswith(
        f"ketasim: error: --covariates: {cov}: age_y: subject 1 (from 0, as in the subject "
        "column): got 17, outside 18-86")
    assert main(base + ["--age", "17"]) == 1
    assert capsys.readouterr().err.startswith("ketasim: error: --age: got 17, outside 18-86")


def test_a_model_with_ligands_keeps_its_name():
    assert [ketasim.load_model(p).name for p in ("ketamine-iv", "esketamine-nasal")] == [
        "ketamine-iv", "esketamine-nasal"]
    m = ketasim.Model.from_dict(dict(_model(), model={"name": "mine"}, occupancy={"ligands": [
        {"name": "S", "site": "ce", "ki_um": 0.3, "mw_g_mol": 238.0}]}))
    assert m.name == "mine" and [lg.name for lg in m.ligands] == ["S"]


def test_a_weight_no_person_has_is_said_once_by_a_population_or_sweep():
    """Their checks of the values before the run had said it a second time (seen with
    warnings.simplefilter("always"), or a log of warnings)."""
    import warnings

    d = ketasim.standard_iv_course(months=1)
    kw = dict(metrics=("cmax",), progress=False)
    for run in (lambda: ketasim.sweep("ketamine-iv", d, {"weight_kg": [70.0, 2000.0]}, **kw),
                lambda: ketasim.population("ketamine-iv", d, 2, 0, weight_kg=900.0,
                                           params={"CL": 60.0}, **kw)):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            run()
        said = [str(x.message) for x in w if issubclass(x.category, ketasim.KetasimWarning)]
        assert len(said) == 1 and said[0].startswith("weight_kg: "), said


@pytest.mark.parametrize("line, message", [
    ('labels = "ketamine"', r"\[model\] labels: got 'ketamine', expected a table of analyte"),
    ("labels = { plasma = 3 }", r"\[model\] labels: got \{'plasma': 3\}, expected a table"),
    ('labels = { plasmaa = "ketamine" }', r"\[model\] labels: unknown name 'plasmaa' \(did "
                                          r"you mean 'plasma'\?\)"),
    ("sampling = 1", r"\[model\] sampling: got 1, expected text"),
    ("title = 3", r"\[model\] title: got 3, expected text"),
    ("dose_note = [1]", r"\[model\] dose_note: got \[1\], expected text"),
])
def test_model_text_fields_are_checked(tmp_path, capsys, line, message):
    """[model]'s text fields and labels are drawn in figures: labels that were no table, or a
    sampling that was no text, had been an internal error of --plot (AttributeError,
    TypeError), other non-text values drawn as written, and a misspelt analyte's label left
    out without a word."""
    text = GOOD_MODEL.replace('name = "one-cpt"\n', f'name = "one-cpt"\n{line}\n', 1)
    text = text.replace("[effects]", '[observe]\nplasma = "central"\n\n[effects]', 1)
    m = tmp_path / "m.toml"
    m.write_text(text)
    with pytest.raises(KetasimInputError, match=message):
        ketasim.load_model(str(m))
    d = tmp_path / "d.csv"
    d.write_text(GOOD_DOSES)
    out = tmp_path / "new" / "o.csv"
    rc, err = run_cli(["simulate", "--model", str(m), "--doses", str(d), "--until", "24",
                       "--out", str(out), "--plot", str(tmp_path / "new" / "o.png")], capsys)
    assert rc == 1 and re.search(message, err) and "internal error" not in err
    assert not out.parent.exists()
    ok = text.replace(line, 'labels = { plasma = "drug X" }\nsampling = "venous"')
    m.write_text(ok)
    assert ketasim.load_model(str(m)).meta["labels"] == {"plasma": "drug X"}


@pytest.mark.parametrize("table, message", [
    ('[[bands]]\nname = 5\nanalyte = "plasma"\nlo_ng_ml = 1\nhi_ng_ml = 2\nsource = "x"',
     r"bands\[0\]\.name: got 5, expected text"),
    ('[[bands]]\nname = "w"\nlo_ng_ml = 1\nhi_ng_ml = 2\nsource = 7',
     r"bands\[0\]\.source: got 7, expected text"),
    ('[occupancy]\nreceptor = 1\n[[occupancy.ligands]]\nname = "d"\nsite = "ce"\n'
     'ki_um = 1.0\nmw_g_mol = 200.0', r"\[occupancy\] receptor: got 1, expected text"),
    ('[[occupancy.ligands]]\nname = 5\nsite = "ce"\nki_um = 1.0\nmw_g_mol = 200.0',
     r"occupancy\.ligands\[0\]\.name: got 5, expected text"),
])
def test_model_band_and_ligand_names_are_text(tmp_path, table, message):
    """A published window's name and source, the receptor and a ligand's name are drawn,
    printed and (a ligand's) named by calibrations as text: a number had been taken as it
    was written ("5")."""
    text = GOOD_MODEL.replace("[effects]", '[observe]\nplasma = "central"\n\n[effects]', 1)
    m = tmp_path / "m.toml"
    m.write_text(text + "\n" + table + "\n")
    with pytest.raises(KetasimInputError, match=message):
        ketasim.load_model(str(m))
    m.write_text(text + "\n" + table.replace(" 5\n", ' "five"\n').replace(" 7", ' "x"')
                 .replace("receptor = 1", 'receptor = "NMDA"') + "\n")
    ketasim.load_model(str(m))
