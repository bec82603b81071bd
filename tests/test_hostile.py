"""A hostile user's list: inputs meant to lose data, print a wrong number, crash or hang ketasim,
each with the outcome it must have.

Families (the ``family`` of every table row, and the section headings below):

- **data loss**: a failed or interrupted command never removes, truncates or replaces a file the
  user had, never overwrites an input, and leaves no temporary file or new folder behind;
- **wrong output**: a name that would be confused with a reserved column or would break the CSV
  header is refused; a dose never delivers more than its amount;
- **traceback**: every input gives either a result or one line (exit 1, or 2 for usage errors)
  naming the file or option, the field and what was expected;
- **blow-up**: sizes are bounded before work starts (states, flows, file size, expressions);
- **message**: the message says what is really wrong (an encoding, not "binary").

Cases whose fix belongs to another part of ketasim (the engine's event times and propagators, the
dose-table reader) are here too, with the exact behaviour expected.
"""

from __future__ import annotations

import copy
import importlib
import io
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import time
import tomllib
from fractions import Fraction
from pathlib import Path

import _models
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ketasim
from ketasim import KetasimInputError
from ketasim import io as kio
from ketasim.cli import main
from ketasim.modelfile import MAX_MODEL_BYTES, MAX_STATES, RESERVED_NAMES

from conftest import ONE_CPT_TOML
from test_bad_inputs import GOOD_COURSE, GOOD_DOSES, GOOD_MODEL, model_with

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                       HealthCheck.too_slow])
GOOD_SPEC = tomllib.loads(GOOD_MODEL)
SENTINEL = "previous results, keep me\n"
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def run_cli(argv, capsys):
    try:
        rc = main(argv)
    except SystemExit as exc:          # argparse usage errors
        rc = exc.code
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def one_line_error(err: str, *expected: str) -> None:
    """One line on stderr, no traceback, not the catch-all, naming everything expected."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert err.startswith("ketasim") and "Traceback" not in err, err
    assert "internal error" not in err, err
    for s in expected:
        assert s in err, f"{s!r} not in {err!r}"


def snapshot(folder: Path) -> dict:
    """Every file under folder (relative path -> bytes; folders -> None)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        out[str(p.relative_to(folder))] = None if p.is_dir() else p.read_bytes()
    return out


def many_compartments(n: int) -> str:
    comps = "\n".join(f'c{i} = "V"' for i in range(n))
    return f"[parameters]\nV = 10.0\nK = 1.0\n[compartments]\n{comps}\n" \
           '[[flows]]\nfrom = "c0"\nto = "out"\nk = "K"\n[routes.iv]\nto = "c0"\n'


def nested_parts(*fs) -> str:
    parts = ", ".join(f'{{ to = "central", f = {f} }}' for f in fs)
    return model_with('[routes.iv]\nto = "central"\n', f"[routes.iv]\nparts = [{parts}]\n")


SIM = ["simulate", "--model", "{m}", "--doses", "{d}", "--until", "24", "--out", "{o}"]

# (family, id, model text or bytes, doses text or bytes, argv, exit status, message substrings)
REFUSED = [
    # --- data loss: an input is never an output
    ("data loss", "--out is the --doses file", None, None,
     ["simulate", "--model", "{m}", "--doses", "{d}", "--out", "{d}"], 1,
     ["--out", "d.csv", "same file as the --doses input"]),
    ("data loss", "--out is the --model file (named .csv)", None, None,
     ["simulate", "--model", "{mcsv}", "--doses", "{d}", "--out", "{mcsv}"], 1,
     ["--out", "m.csv", "same file as the --model input"]),
    ("data loss", "--out is a hard link to the --doses file", None, None,
     ["simulate", "--model", "{m}", "--doses", "{d}", "--out", "{hard}"], 1,
     ["--out", "hard.csv", "--doses", "d.csv"]),
    ("data loss", "--out is a symbolic link to the --doses file", None, None,
     ["simulate", "--model", "{m}", "--doses", "{d}", "--out", "{soft}"], 1,
     ["--out", "--doses", "d.csv"]),
    ("data loss", "--out reaches the --doses file through ..", None, None,
     ["simulate", "--model", "{m}", "--doses", "{d}", "--out", "{dotdot}"], 1,
     ["--out", "same file as the --doses input"]),
    ("data loss", "schedule --out is its phases file", None, None,
     ["schedule", "custom", "{pcsv}", "--out", "{pcsv}"], 1,
     ["--out", "p.csv", "same file as the phases input"]),
    ("data loss", "--plot cannot be written: --out already written must not be lost", None,
     None, SIM + ["--plot", "{blocker}/fig.png"], 1, ["Not a folder", "blocker"]),
    ("data loss", "--plot inside a folder under a file", None, None,
     SIM + ["--plot", "{blocker}/x/y/fig.png"], 1, ["Not a folder", "blocker"]),
    ("data loss", "population: --plot cannot be written, --out kept", None, None,
     ["population", "--model", "{m}", "--doses", "{d}", "--n", "3", "--no-variability",
      "--quiet", "--out", "{o}", "--plot", "{blocker}/fig.png"], 1, ["Not a folder", "blocker"]),
    ("data loss", "population: --out is the --doses file", None, None,
     ["population", "--model", "{m}", "--doses", "{d}", "--n", "3", "--no-variability",
      "--quiet", "--out", "{d}"], 1, ["d.csv", "same file as the --doses input"]),
    # --- wrong output: reserved names (each would be written under a reserved column)
    *[("wrong output", f"compartment named {nm}", model_with('central = "V"',
                                                            f'central = "V"\n{nm} = "V"'),
       None, SIM, 1, ["m.toml", f"[compartments] '{nm}'", "reserved"])
      for nm in sorted(RESERVED_NAMES)],
    *[("wrong output", f"observe alias named {nm}", GOOD_MODEL + f'[observe]\n{nm} = "central"\n',
       None, SIM, 1, ["m.toml", f"[observe] alias '{nm}'", "reserved"])
      for nm in ("occupancy", "glutamate", "plasticity", "time_h")],
    ("wrong output", "effect site named glutamate",
     model_with("ce = {", "glutamate = {"), None, SIM, 1,
     ["m.toml", "effect site 'glutamate'", "reserved"]),
    ("wrong output", "parameter named subject", model_with("KE0 = 2.0", "KE0 = 2.0\nsubject = 1"),
     None, SIM, 1, ["m.toml", "parameter 'subject'", "reserved"]),
    ("wrong output", "derived value named occupancy_high",
     model_with('K10 = "CL / V"', 'occupancy_high = "CL / V"'), None, SIM, 1,
     ["m.toml", "[derived] 'occupancy_high'", "reserved"]),
    # --- wrong output: names that break the CSV header or look like another name
    ("wrong output", "alias with a comma", GOOD_MODEL + '[observe]\n"plasma,total" = "central"\n',
     None, SIM, 1, ["m.toml", "'plasma,total'", "ASCII identifier", "[A-Za-z_][A-Za-z0-9_]*"]),
    ("wrong output", "alias with a line break", GOOD_MODEL + '[observe]\n"pl\\nasma" = "central"\n',
     None, SIM, 1, ["m.toml", "pl\\nasma", "ASCII identifier"]),
    ("wrong output", "alias with a quote", GOOD_MODEL + '[observe]\n\'a"b\' = "central"\n',
     None, SIM, 1, ["m.toml", "ASCII identifier"]),
    ("wrong output", "compartment with an accent", model_with('central = "V"',
                                                             'central = "V"\n"centr\u00e1l" = "V"'),
     None, SIM, 1, ["m.toml", "'centr\u00e1l'", "ASCII identifier"]),
    ("wrong output", "full-width parameter (would mean CL)",
     model_with("CL = 10.0", "CL = 10.0\n\"\uff23\uff2c\" = 99.0"), None, SIM, 1,
     ["m.toml", "'\uff23\uff2c'", "ASCII identifier"]),
    ("wrong output", "full-width name in an expression (Python would read it as CL)",
     model_with('K10 = "CL / V"', 'K10 = "\uff23\uff2c / V"'), None, SIM, 1,
     ["m.toml", "[derived] K10", "non-ASCII character", "U+FF23", "position 1"]),
    ("wrong output", "compartment name starting with a digit",
     model_with('central = "V"', 'central = "V"\n"1st" = "V"'), None, SIM, 1,
     ["m.toml", "'1st'", "ASCII identifier"]),
    ("wrong output", "empty compartment name",
     model_with('central = "V"', 'central = "V"\n"" = "V"'), None, SIM, 1,
     ["m.toml", "[compartments] ''", "ASCII identifier"]),
    ("wrong output", "name of 101 characters",
     model_with('central = "V"', 'central = "V"\n' + "c" * 101 + ' = "V"'), None, SIM, 1,
     ["m.toml", "at most 100 characters"]),
    ("wrong output", "route with a space", model_with("[routes.iv]", '[routes."i v"]'), None,
     SIM, 1, ["m.toml", "[routes] 'i v'", "ASCII name"]),
    ("wrong output", "full-width route (looks like iv)", model_with("[routes.iv]",
                                                                    '[routes."\uff49\uff56"]'),
     None, SIM, 1, ["m.toml", "[routes]", "ASCII name"]),
    # --- wrong output: mass is conserved by construction
    ("wrong output", "split route fractions add up to 1.8", nested_parts(0.9, 0.9), None, SIM, 1,
     ["m.toml", "routes.iv", "add up to 1.8", "<= 1"]),
    ("wrong output", "split route fractions as expressions add up to 1.2",
     nested_parts('"0.6"', '"3 / 5"'), None, SIM, 1, ["m.toml", "routes.iv", "add up to 1.2"]),
    ("wrong output", "split route: a whole dose plus half a dose", nested_parts(1, 0.5), None,
     SIM, 1, ["m.toml", "routes.iv", "add up to 1.5"]),
    ("wrong output", "route fraction as a constant expression above 1",
     model_with('f = "F"', 'f = "2 * 0.9"'), None, SIM, 1,
     ["m.toml", "routes.oral.f", "'2 * 0.9'", "1.8", "[0, 1]"]),
    ("wrong output", "volume so small that 1/V overflows", model_with('central = "V"',
                                                                     "central = 1e-320"),
     None, SIM, 1, ["m.toml", "compartments.central", "1e-320", "too small"]),
    ("wrong output", "volume expression so small that 1/V overflows",
     model_with('central = "V"', 'central = "1e-310"'), None, SIM, 1,
     ["m.toml", "compartments.central", "1e-310", "volume >= 1e-300"]),
    # --- traceback: numbers and expressions
    ("traceback", "401-digit number in [derived]",
     model_with('K10 = "CL / V"', 'K10 = "' + "9" * 401 + '"'), None, SIM, 1,
     ["m.toml", "[derived] K10", "401 digits", "finite"]),
    ("traceback", "401-digit integer literal in [derived]",
     model_with('K10 = "CL / V"', "K10 = " + "9" * 401), None, SIM, 1,
     ["m.toml", "[derived] K10", "401 digits"]),
    ("traceback", "1e999 in an expression", model_with('K10 = "CL / V"', 'K10 = "CL * 1e999"'),
     None, SIM, 1, ["m.toml", "[derived] K10", "too large for a float"]),
    ("traceback", "constant expression overflowing", model_with('K10 = "CL / V"',
                                                                'K10 = "10 ** 400"'),
     None, SIM, 1, ["m.toml", "[derived] K10", "'10 ** 400'", "inf", "overflow"]),
    ("traceback", "exp(1000) as a rate", model_with('k = "KA"', 'k = "exp(1000)"'), None, SIM, 1,
     ["m.toml", "flows[0].k", "inf"]),
    ("traceback", "division by zero in a constant", model_with('K10 = "CL / V"', 'K10 = "1 / 0"'),
     None, SIM, 1, ["m.toml", "[derived] K10", "'1 / 0'", "inf"]),
    ("traceback", "square root of -1 as a lag",
     model_with('f = "F"', 'f = "F"\nlag_h = "sqrt(-1)"'), None, SIM, 1,
     ["m.toml", "routes.oral.lag_h", "nan"]),
    ("traceback", "expression overflowing at run time",
     model_with('K10 = "CL / V"', 'K10 = "exp(CL * 100)"'), None, SIM, 1,
     ["m.toml", "derived K10", "inf"]),
    ("traceback", "--summary on a model without a volume",
     "[parameters]\nK = 1.0\n[compartments]\ngut = 0\n[[flows]]\nfrom = \"gut\"\nto = \"out\"\n"
     "k = \"K\"\n[routes.iv]\nto = \"gut\"\n", "time_h,amount_mg,route\n0,10,iv\n",
     SIM + ["--summary"], 1, ["--summary", "no concentration", "volume"]),
    ("traceback", "TOML arrays nested 100,000 deep", "x = " + "[" * 100_000 + "]" * 100_000,
     None, SIM, 1, ["m.toml", "nested too deeply"]),
    # --- message: encodings named precisely
    ("message", "empty model name", None, None,
     ["simulate", "--model", "", "--doses", "{d}", "--out", "{o}"], 1,
     ["model", "''", "preset name", "ketamine-iv"]),
    ("message", "UTF-16 model without a byte-order mark", GOOD_MODEL.encode("utf-16-le"), None,
     SIM, 1, ["m.toml", "UTF-16", "without a byte-order mark", "UTF-8"]),
    ("message", "UTF-16 byte-order mark on bytes that are not UTF-16",
     b"\xff\xfe" + b"\x00\xd8" + b"a", None, SIM, 1, ["m.toml", "UTF-16 byte-order mark",
                                                       "not valid UTF-16"]),
    # --- blow-up: sizes are bounded before any work
    ("blow-up", f"{MAX_STATES + 1} compartments", many_compartments(MAX_STATES + 1),
     "time_h,amount_mg,route\n0,10,iv\n", SIM, 1,
     ["m.toml", f"{MAX_STATES + 1} compartments", f"at most {MAX_STATES}"]),
    ("blow-up", "5,000 compartments", many_compartments(5000), "time_h,amount_mg,route\n0,10,iv\n",
     SIM, 1, ["m.toml", "5,000 compartments", f"at most {MAX_STATES}"]),
    ("blow-up", "10,001 flows", GOOD_MODEL + '[[flows]]\nfrom = "central"\nto = "out"\nk = 1\n'
     * 10_001, None, SIM, 1, ["m.toml", "10,003 flows", "at most 10,000"]),
    ("blow-up", "model file over the size limit",
     GOOD_MODEL + ("# " + "x" * 98 + "\n") * (MAX_MODEL_BYTES // 100 + 1), None, SIM, 1,
     ["m.toml", f"larger than {MAX_MODEL_BYTES:,} bytes"]),
    ("blow-up", "expression of 2,500 characters",
     model_with('K10 = "CL / V"', 'K10 = "' + "+".join(["CL"] * 833) + '"'), None, SIM, 1,
     ["m.toml", "[derived] K10", "characters", "at most 2,000"]),
    ("blow-up", "expression nested 300 deep",
     model_with('K10 = "CL / V"', 'K10 = "' + "(" * 300 + "CL" + ")" * 300 + '"'), None, SIM, 1,
     ["m.toml", "[derived] K10", "nested"]),
    ("blow-up", "1,001 routes", GOOD_MODEL + "".join(f'[routes.r{i}]\nto = "central"\n'
                                                      for i in range(1001)), None, SIM, 1,
     ["m.toml", "1,003 routes", "at most 1,000"]),
]


def _ids(rows, k=1):
    return [r[k] for r in rows]


def test_the_hostile_list_is_long_and_distinct():
    names = [r[1] for r in REFUSED] + [r[0] for r in ACCEPTED]
    assert len(set(names)) == len(names) >= 60
    assert {r[0] for r in REFUSED} == {"data loss", "wrong output", "traceback", "blow-up",
                                       "message"}


def _setup(tmp_path, model_text, doses_text):
    files = {"m.toml": GOOD_MODEL if model_text is None else model_text,
             "d.csv": GOOD_DOSES if doses_text is None else doses_text,
             "p.csv": 'amount_mg = 35\nroute = "iv"\nduration_h = 0.6667\nweeks = 2\n'
                      "[[phase]]\nweeks = 2\nper_week = 3\n"}
    files["m.csv"] = files["m.toml"]
    for fn, content in files.items():
        (tmp_path / fn).write_bytes(content if isinstance(content, bytes) else content.encode())
    os.link(tmp_path / "d.csv", tmp_path / "hard.csv")
    os.symlink(tmp_path / "d.csv", tmp_path / "soft.csv")
    (tmp_path / "blocker").write_text("a file where a folder should be")
    (tmp_path / "sub").mkdir()
    results = tmp_path / "results"
    results.mkdir()
    out = results / "run.csv"
    out.write_text(SENTINEL)                      # a user's earlier results
    return {"{m}": str(tmp_path / "m.toml"), "{mcsv}": str(tmp_path / "m.csv"),
            "{d}": str(tmp_path / "d.csv"), "{hard}": str(tmp_path / "hard.csv"),
            "{soft}": str(tmp_path / "soft.csv"), "{pcsv}": str(tmp_path / "p.csv"),
            "{dotdot}": str(tmp_path / "sub" / ".." / "d.csv"),
            "{blocker}": str(tmp_path / "blocker"), "{o}": str(out)}


def _argv(argv, subs):
    args = []
    for a in argv:
        for k, v in subs.items():
            a = a.replace(k, v)
        args.append(a)
    return args


@pytest.mark.parametrize("case", REFUSED, ids=_ids(REFUSED))
def test_refused_with_one_line_and_no_file_touched(case, tmp_path, capsys):
    family, name, model_text, doses_text, argv, status, expected = case
    subs = _setup(tmp_path, model_text, doses_text)
    before = snapshot(tmp_path)
    rc, _, err = run_cli(_argv(argv, subs), capsys)
    assert rc == status, err
    one_line_error(err, *expected)
    assert snapshot(tmp_path) == before       # existing files as they were; nothing new


# ------------------------------------------------------------------------------ accepted inputs
def _bom(codec_bom, codec):
    return codec_bom + GOOD_MODEL.encode(codec)


# (id, model text or bytes, doses, extra argv, check(tmp_path, stdout, stderr))
def _csv_header(path):
    return Path(path).read_text().splitlines()[0]


ACCEPTED = [
    ("model with a UTF-8 byte-order mark", _bom(b"\xef\xbb\xbf", "utf-8"), None, [], None),
    ("UTF-16 little-endian model with a byte-order mark", GOOD_MODEL.encode("utf-16"), None, [],
     None),
    ("UTF-16 big-endian model with a byte-order mark", _bom(b"\xfe\xff", "utf-16-be"), None, [],
     None),
    ("UTF-32 model with a byte-order mark", GOOD_MODEL.encode("utf-32"), None, [], None),
    ("dose table with a UTF-8 byte-order mark", None, b"\xef\xbb\xbf" + GOOD_DOSES.encode(), [],
     None),
    ("split route fractions adding up to 1 within rounding",
     nested_parts(0.1, 0.2, 0.7), "time_h,amount_mg,route\n0,10,iv\n", [], None),
    ("name of exactly 100 characters",
     GOOD_MODEL + "[observe]\n" + "a" * 100 + ' = "central"\n', None, [], None),
    ("--debug after the command", None, None, ["--debug"], None),
    ("names that merely contain reserved words",
     GOOD_MODEL + '[observe]\noccupancy_site = "central"\nmy_glutamate = "ce"\n', None, [],
     None),
]


@pytest.mark.parametrize("case", ACCEPTED, ids=_ids(ACCEPTED, 0))
def test_accepted_and_written_whole(case, tmp_path, capsys):
    name, model_text, doses_text, extra, _ = case
    subs = _setup(tmp_path, model_text, doses_text)
    out = Path(subs["{o}"])
    rc, _, err = run_cli(_argv(SIM + extra, subs), capsys)
    assert rc == 0, err
    rows = out.read_text().splitlines()
    assert len(rows) == 242 and rows[0].startswith("time_h,")
    header = rows[0].split(",")
    assert len(set(header)) == len(header)
    assert all(len(r.split(",")) == len(header) for r in rows)
    assert sorted(os.listdir(out.parent)) == ["run.csv"]       # no temporary left


@pytest.mark.parametrize("codec", ["utf-16", "utf-32", "utf-8-sig"])
def test_presets_reads_a_model_file_as_simulate_does(codec, tmp_path, capsys):
    """`presets FILE` read the file as UTF-8 only: a UTF-16 or UTF-32 model with a byte-order
    mark, which simulate accepts, was an internal error there, and a sweep over such a model
    lost its parameters' units."""
    from ketasim.modelfile import model_text, parameter_units

    path = tmp_path / "m.toml"
    path.write_bytes(model_text("ketamine-iv").encode(codec))
    assert main(["presets", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Parameters (typical values at 70 kg)" in out and "L/h" in out
    units = parameter_units(ketasim.load_model(str(path)))
    assert units == parameter_units(ketasim.load_model("ketamine-iv")) and units["CL"] == "L/h"


def test_presets_takes_debug_too(capsys):
    assert main(["presets", "--debug"]) == 0


def test_debug_after_the_command_shows_the_traceback(tmp_path):
    subs = _setup(tmp_path, None, "time_h,amount_mg,route\n0,10,ivv\n")
    with pytest.raises(KetasimInputError, match="did you mean 'iv'"):
        main(_argv(SIM + ["--debug"], subs))
    assert Path(subs["{o}"]).read_text() == SENTINEL


# ------------------------------------------------------------------------------ data loss
def test_unwritable_plot_keeps_the_existing_csv(tmp_path, capsys):
    """The issue's first case: out.csv existed, --plot could not be written -> out.csv kept."""
    subs = _setup(tmp_path, None, None)
    rc, _, err = run_cli(_argv(SIM + ["--plot", "{blocker}/fig.png"], subs), capsys)
    assert rc == 1
    assert Path(subs["{o}"]).read_text() == SENTINEL


@pytest.mark.parametrize("exc", [RuntimeError("figure failed"), KeyboardInterrupt()],
                         ids=["error", "Ctrl-C"])
def test_a_figure_that_fails_while_the_table_is_written_leaves_every_file(tmp_path, capsys,
                                                                          monkeypatch, exc):
    """simulate --plot draws the figure while the table is written: when the drawing fails
    (or Ctrl-C arrives while waiting for it), the table written meanwhile is not kept."""
    import ketasim.plotting

    def fail(*args, **kwargs):
        raise exc

    monkeypatch.setattr(ketasim.plotting, "encode_figure", fail)
    subs = _setup(tmp_path, None, None)
    Path(subs["{o}"]).write_text(SENTINEL)
    before = snapshot(tmp_path)
    rc, _, err = run_cli(_argv(SIM + ["--plot", str(tmp_path / "fig.png")], subs), capsys)
    assert rc == (1 if isinstance(exc, RuntimeError) else 130)
    assert ("figure failed" in err) if rc == 1 else ("interrupted" in err)
    assert snapshot(tmp_path) == before


def test_no_new_folder_survives_a_failure(tmp_path, capsys):
    subs = _setup(tmp_path, None, None)
    out = tmp_path / "a" / "b" / "c" / "run.csv"
    before = snapshot(tmp_path)
    rc, _, err = run_cli(_argv(["simulate", "--model", "{m}", "--doses", "{d}", "--until", "24",
                                "--out", str(out), "--plot", "{blocker}/x/fig.png"], subs),
                         capsys)
    assert rc == 1
    one_line_error(err, "blocker")
    assert snapshot(tmp_path) == before


def test_a_replaced_output_keeps_its_permissions(tmp_path, capsys):
    subs = _setup(tmp_path, None, None)
    out = Path(subs["{o}"])
    out.chmod(0o600)
    rc, _, err = run_cli(_argv(SIM, subs), capsys)
    assert rc == 0, err
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and out.read_text() != SENTINEL


def test_a_write_protected_output_is_refused_and_kept(tmp_path, capsys):
    # (a shell's ">" refuses it too; a rename over it would need only the folder's permission)
    subs = _setup(tmp_path, None, None)
    out = Path(subs["{o}"])
    out.chmod(0o444)
    rc, _, err = run_cli(_argv(SIM, subs), capsys)
    assert rc == 1
    one_line_error(err, "write-protected")
    assert out.name in err
    assert out.read_text() == SENTINEL and stat.S_IMODE(out.stat().st_mode) == 0o444
    with pytest.raises(KetasimInputError, match="write-protected"):
        kio.OutputSet().add(out, b"x")
    out.chmod(0o644)            # writable again: replaced as usual
    rc, _, err = run_cli(_argv(SIM, subs), capsys)
    assert rc == 0, err
    assert out.read_text() != SENTINEL


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="only root may give a file to another owner")
def test_a_replaced_output_keeps_its_owner(tmp_path):
    # ``sudo ketasim course`` over a user's files: they stay the user's
    out = tmp_path / "run.csv"
    out.write_text("old\n")
    os.chown(out, 12345, 23456)
    out.chmod(0o640)
    kio.OutputSet().add(out, "new\n").commit()
    st = out.stat()
    assert out.read_text() == "new\n"
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (12345, 23456, 0o640)


def test_each_output_reaches_the_disk_before_it_is_renamed_into_place(tmp_path, monkeypatch):
    # a power cut just after a rename must not leave an empty file where the old one was
    log = []
    fsync, replace = os.fsync, os.replace

    def logged_fsync(fd):
        log.append(("fsync", os.readlink(f"/proc/self/fd/{fd}") if os.path.isdir("/proc/self/fd")
                    else fd))
        fsync(fd)

    def logged_replace(a, b):
        log.append(("replace", str(a)))
        replace(a, b)

    monkeypatch.setattr(kio.os, "fsync", logged_fsync)
    monkeypatch.setattr(kio.os, "replace", logged_replace)
    kio.OutputSet().add(tmp_path / "a.csv", "x\n").add(tmp_path / "b.png", b"png").commit()
    replaced = [p for what, p in log if what == "replace"]
    synced = [p for what, p in log if what == "fsync"]
    assert len(replaced) == 2 and len(synced) == 2
    assert log.index(("replace", replaced[0])) > max(i for i, e in enumerate(log)
                                                     if e[0] == "fsync")
    if os.path.isdir("/proc/self/fd"):
        assert sorted(synced) == sorted(replaced)


def test_outputs_are_written_where_chmod_is_refused(tmp_path, monkeypatch):
    # a FAT-formatted USB stick refuses chmod (EPERM); the files are written all the same
    def refuse(*a, **k):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(kio.os, "chmod", refuse)
    kio.OutputSet().add(tmp_path / "a.csv", "x\n").add(tmp_path / "b.png", b"png").commit()
    assert (tmp_path / "a.csv").read_text() == "x\n" and (tmp_path / "b.png").read_bytes() == b"png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.png"]     # no temporaries


def test_an_output_that_is_a_link_writes_through_the_link(tmp_path, capsys):
    subs = _setup(tmp_path, None, None)
    target = tmp_path / "results" / "run.csv"
    link = tmp_path / "latest.csv"
    link.symlink_to(target)
    rc, _, err = run_cli(_argv(SIM[:-1] + [str(link)], subs), capsys)
    assert rc == 0, err
    assert link.is_symlink() and target.read_text().startswith("time_h,")


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="needs /dev/null")
def test_an_output_that_is_a_device_is_refused():
    before = os.stat("/dev/null")
    with pytest.raises(KetasimInputError, match="not a regular file"):
        kio.OutputSet().add("/dev/null", b"x")
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_model_that_is_a_pipe_is_named_not_read(tmp_path, capsys):
    """Reading a named pipe would wait forever for a writer."""
    os.mkfifo(tmp_path / "m.toml")
    (tmp_path / "d.csv").write_text(GOOD_DOSES)
    rc, _, err = run_cli(["simulate", "--model", str(tmp_path / "m.toml"), "--doses",
                          str(tmp_path / "d.csv"), "--out", str(tmp_path / "o.csv")], capsys)
    assert rc == 1
    one_line_error(err, "m.toml", "not a regular file")
    assert not (tmp_path / "o.csv").exists()


def test_the_same_output_twice_is_refused(tmp_path):
    outs = kio.OutputSet().add(tmp_path / "a.csv", b"1")
    with pytest.raises(KetasimInputError, match="given twice"):
        outs.add(tmp_path / "sub" / ".." / "a.csv", b"2")


class Boom(Exception):
    pass


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt(),
                                 MemoryError(), Boom("a bug while formatting")],
                         ids=["disk full", "Ctrl-C", "out of memory", "a bug"])
@pytest.mark.parametrize("where", [0, 1, 2])
def test_a_failure_while_writing_leaves_every_file_as_it_was(tmp_path, exc, where):
    (tmp_path / "old.csv").write_text(SENTINEL)
    (tmp_path / "fig.png").write_bytes(b"old figure")
    before = snapshot(tmp_path)

    def writer(i):
        def write(fh):
            fh.write("time_h\n" + "1\n" * 10_000)     # a partial write, then the failure
            if i == where:
                raise exc
        return write

    outs = kio.OutputSet()
    outs.add(tmp_path / "old.csv", writer(0))
    outs.add(tmp_path / "new" / "deep" / "t.csv", writer(1))
    outs.add(tmp_path / "fig.png", writer(2))
    with pytest.raises(type(exc)):
        outs.commit()
    assert snapshot(tmp_path) == before


def test_a_failing_move_puts_back_the_files_already_moved(tmp_path, monkeypatch):
    for n in ("a.csv", "b.csv"):
        (tmp_path / n).write_text(f"old {n}\n")
    before = snapshot(tmp_path)
    real = os.replace
    calls = []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 3:                   # a.csv and b.csv moved, then c.csv fails
            raise OSError(5, "Input/output error", str(dst))
        return real(src, dst)

    monkeypatch.setattr(kio.os, "replace", flaky)
    outs = kio.OutputSet()
    for n in ("a.csv", "b.csv", "c.csv"):
        outs.add(tmp_path / n, f"new {n}\n".encode())
    with pytest.raises(OSError):
        outs.commit()
    monkeypatch.setattr(kio.os, "replace", real)
    assert snapshot(tmp_path) == before


def test_two_outputs_the_file_system_takes_for_one_are_refused_and_none_written(
        tmp_path, monkeypatch):
    """On a case-insensitive file system (macOS, Windows) ``--out Pop.csv --bands pop.csv``
    name one file, which neither check can see while neither exists: the second move had
    replaced the first output, and both were reported written. Emulated here: once Pop.csv is
    in place, pop.csv names it too."""
    real = os.replace

    def case_blind(src, dst):
        real(src, dst)
        if Path(dst).name == "Pop.csv" and not (Path(dst).parent / "pop.csv").exists():
            os.symlink("Pop.csv", Path(dst).parent / "pop.csv")

    monkeypatch.setattr(kio.os, "replace", case_blind)
    outs = kio.OutputSet()
    outs.add(tmp_path / "new" / "Pop.csv", b"the table\n")
    outs.add(tmp_path / "new" / "pop.csv", b"the bands\n")
    with pytest.raises(KetasimInputError, match="one file on this file system"):
        outs.commit()
    monkeypatch.setattr(kio.os, "replace", real)
    assert not (tmp_path / "new" / "Pop.csv").exists()
    assert not any(p.name.endswith(".tmp") or p.name.endswith(".old")
                   for p in tmp_path.rglob("*"))


def test_outputs_differing_only_in_case_are_refused_before_the_run_where_case_is_ignored(
        tmp_path, monkeypatch, capsys):
    """``--out Pop.csv --bands pop.csv`` on a file system that does not tell letter case apart
    had been found only when the files were moved into place, after the whole population had
    run. Emulated here: the probe file made in the folder has a twin in capitals."""
    import tempfile

    real = tempfile.mkstemp

    def case_blind(*args, **kw):
        fd, tmp = real(*args, **kw)
        name = os.path.basename(tmp)
        if name.startswith(".ketasim-case-"):
            os.symlink(name, os.path.join(os.path.dirname(tmp), name.upper()))
        return fd, tmp

    def no_run(*args, **kw):
        raise AssertionError("the population ran")

    monkeypatch.setattr(tempfile, "mkstemp", case_blind)
    monkeypatch.setattr(importlib.import_module("ketasim.population"), "population", no_run)
    out = tmp_path / "new"
    assert main(["population", "--n", "2", "--out", str(out / "Pop.csv"),
                 "--bands", str(out / "pop.csv")]) == 1
    err = capsys.readouterr().err
    assert "are one file on this file system (it does not tell letter case apart)" in err, err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ketasim-case-")]


def test_outputs_differing_only_in_case_are_two_files_where_case_counts(tmp_path, capsys):
    if kio._ignores_case(tmp_path):
        pytest.skip("this file system does not tell letter case apart")
    assert not list(tmp_path.iterdir())          # (the probe leaves nothing)
    assert main(["population", "--n", "2", "--months", "1", "--metrics", "cmax", "--out",
                 str(tmp_path / "Pop.csv"), "--bands", str(tmp_path / "pop.csv")]) == 0
    assert (tmp_path / "Pop.csv").read_text().startswith("# ketasim population")
    assert "_p50" in (tmp_path / "pop.csv").read_text()


def test_an_output_that_is_a_loop_of_links_is_refused_before_the_run(tmp_path, monkeypatch,
                                                                     capsys):
    """It had been found only when the files were written, after the whole population had
    run; a folder that is a loop of links had been called 'a symbolic link to ..., which does
    not exist'."""
    def no_run(*args, **kw):
        raise AssertionError("the population ran")

    monkeypatch.setattr(importlib.import_module("ketasim.population"), "population", no_run)
    for a, b in (("l1.csv", "l2.csv"), ("d1", "d2")):
        os.symlink(b, tmp_path / a)
        os.symlink(a, tmp_path / b)
    assert main(["population", "--n", "2", "--out", str(tmp_path / "l1.csv")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"ketasim: error: --out: '{tmp_path / 'l1.csv'}' is a symbolic link "
                          "that cannot be followed ("), err
    assert main(["population", "--n", "2", "--out", str(tmp_path / "d1" / "x.csv")]) == 1
    err = capsys.readouterr().err
    assert "folder '" in err and "which cannot be followed (" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d1", "d2", "l1.csv", "l2.csv"]


def _disk_full(fh):
    fh.write("partial")
    raise OSError(28, "No space left on device")


@settings(max_examples=60, **SETTINGS)
@given(existing=st.lists(st.booleans(), min_size=1, max_size=4),
       fail_at=st.one_of(st.none(), st.integers(0, 3)), data=st.data())
def test_property_all_or_nothing(tmp_path_factory, existing, fail_at, data):
    """Any set of outputs, some already there, a failure anywhere: all new or all old."""
    folder = tmp_path_factory.mktemp("outs")
    paths = [folder / f"o{i}.csv" if i % 2 else folder / "d" / f"o{i}.csv"
             for i in range(len(existing))]
    for p, e in zip(paths, existing):
        if e:
            p.parent.mkdir(exist_ok=True)
            p.write_text(f"old {p.name}")
    before = snapshot(folder)
    new = [data.draw(st.binary(max_size=50)) for _ in paths]
    outs = kio.OutputSet()
    for i, (p, b) in enumerate(zip(paths, new)):
        if i == fail_at:
            outs.add(p, _disk_full)
        else:
            outs.add(p, b)
    if fail_at is not None and fail_at < len(paths):
        with pytest.raises(OSError):
            outs.commit()
        assert snapshot(folder) == before
    else:
        outs.commit()
        assert [p.read_bytes() for p in paths] == new
        assert not [f for f in folder.rglob("*") if f.name.endswith(".tmp")]


@pytest.mark.parametrize("step", ["mkstemp", "mkdir", "replace", "unlink"])
def test_an_interrupt_inside_a_critical_step_waits_for_its_end(tmp_path, monkeypatch, step):
    """A signal handler that fires inside tempfile.mkstemp (after the file exists), inside a
    folder's creation, between two moves or during the clean-up: no temporary file, no new
    folder, never a half-replaced set of outputs (all old, or all new once moving began)."""
    (tmp_path / "a.csv").write_text(SENTINEL)
    before = snapshot(tmp_path)
    fired = []

    def hook(real):
        def wrapped(*args, **kwargs):
            out = real(*args, **kwargs)
            if not fired:
                fired.append(1)
                kio.interrupt(KeyboardInterrupt())      # as the command line's handler does
            return out
        return wrapped

    target = {"mkstemp": (kio.tempfile, "mkstemp"), "mkdir": (Path, "mkdir"),
              "replace": (kio.os, "replace"), "unlink": (kio.os, "unlink")}[step]
    monkeypatch.setattr(*target, hook(getattr(*target)))
    outs = kio.OutputSet()
    outs.add(tmp_path / "a.csv", b"new a")
    outs.add(tmp_path / "new" / "b.csv", _disk_full if step == "unlink" else b"new b")
    with pytest.raises((KeyboardInterrupt, OSError)):
        outs.commit()
    monkeypatch.undo()
    assert fired and not kio._pending and kio._held == 0
    if step == "replace":       # the moves had begun: they all finish, then the interrupt
        assert snapshot(tmp_path) == {"a.csv": b"new a", "new": None, "new/b.csv": b"new b"}
    else:
        assert snapshot(tmp_path) == before


def test_write_outputs_streams_text_and_binary(tmp_path):
    kio.write_outputs([(tmp_path / "t.csv", lambda fh: fh.write("time_h\n")),
                       (tmp_path / "b.bin", lambda fh: fh.write(b"\x00\x01"), True),
                       (tmp_path / "s.txt", "text"), (tmp_path / "y.png", b"\x89PNG")])
    assert snapshot(tmp_path) == {"b.bin": b"\x00\x01", "s.txt": b"text", "t.csv": b"time_h\n",
                                  "y.png": b"\x89PNG"}


def test_write_outputs_refuses_an_input(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text(SENTINEL)
    with pytest.raises(KetasimInputError, match="same file as the --doses input"):
        kio.write_outputs([(tmp_path / "in.csv", b"x")], [("--doses", src)])
    assert src.read_text() == SENTINEL


@settings(max_examples=40, **SETTINGS)
@given(n=st.integers(1, 3), t=st.integers(1, 40), block=st.integers(1, 17),
       values=st.lists(st.one_of(st.floats(-1e300, 1e300), st.sampled_from(
           [0.0, -0.0, 1e-320, 1e300, 123456789.0123, np.nan, np.inf, -np.inf])),
                       min_size=1, max_size=50))
def test_property_result_csv_matches_numpy_savetxt(n, t, block, values):
    """The block-formatted writer gives exactly numpy.savetxt's text, whatever the values, the
    subjects and the block size (an independent reference for every number written)."""
    import io as sio

    from ketasim.result import Result

    names = ("central", "amount:depot", "occupancy")
    data = np.resize(np.array(values), n * len(names) * t).reshape(n, len(names), t)
    times = np.arange(t) * 0.1
    r = Result(times=times, names=names, data=data, population=n > 1, params={}, model=None)
    buf = sio.StringIO()
    kio.write_result_table(r, buf, rows_per_block=block)
    ref = sio.StringIO()
    ref.write(",".join((["subject"] if n > 1 else []) + ["time_h", "central_ng_ml",
                                                          "amount_depot_mg", "occupancy"]) + "\n")
    for s in range(n):
        table = np.column_stack([times, data[s, 0] * 1000.0, data[s, 1], data[s, 2]])
        if n > 1:
            table = np.column_stack([np.full(t, s), table])
        np.savetxt(ref, table, delimiter=",", fmt=(["%d"] if n > 1 else []) + ["%.10g"] * 4)
    assert buf.getvalue() == ref.getvalue()


def test_a_value_that_overflows_in_ng_per_ml_is_an_error_not_inf(tmp_path):
    from ketasim.result import Result

    r = Result(times=np.array([0.0, 1.0]), names=("central",),
               data=np.array([[[1.0, 1e306]]]), population=False, params={}, model=None)
    (tmp_path / "o.csv").write_text(SENTINEL)
    with pytest.raises(KetasimInputError, match="'central': 1e\\+306 mg/L is too large"):
        kio.write_result_csv(r, tmp_path / "o.csv")
    assert snapshot(tmp_path) == {"o.csv": SENTINEL.encode()}


# ------------------------------------------------------------------------------ signals
SIGNAL_MODEL = GOOD_MODEL + "[observe]\n" + "".join(f'a{i} = "central"\n' for i in range(40))


def _start(tmp_path, until, step):
    (tmp_path / "m.toml").write_text(SIGNAL_MODEL)
    (tmp_path / "d.csv").write_text(GOOD_DOSES)
    out = tmp_path / "results" / "run.csv"
    out.parent.mkdir()
    out.write_text(SENTINEL)
    cmd = [sys.executable, "-m", "ketasim", "simulate", "--model", str(tmp_path / "m.toml"),
           "--doses", str(tmp_path / "d.csv"), "--until", str(until), "--step", str(step),
           "--out", str(out)]
    # as from a terminal: SIGINT raises KeyboardInterrupt even when this test runs in the
    # background (where the shell would have set it to be ignored)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    return proc, out


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143),
                                         (getattr(signal, "SIGHUP", None), 129)],
                         ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_signal_while_writing_leaves_no_file(tmp_path, sig, status):
    """A long write (300,001 rows x 42 columns) is interrupted once its temporary file exists:
    the command stops within seconds, the earlier results are intact, nothing else is left."""
    proc, out = _start(tmp_path, 300_000, 1)
    deadline = time.monotonic() + 120
    seen = False
    while time.monotonic() < deadline and proc.poll() is None:
        if any(n.endswith(".tmp") for n in os.listdir(out.parent)):
            seen = True
            break
        time.sleep(0.005)
    if not seen:
        proc.kill()
        proc.wait()
        pytest.skip("the run ended before its write could be interrupted")
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"still running 30 s after {sig.name}")
    assert time.monotonic() - t0 < 10
    assert proc.returncode == status, err
    assert b"Traceback" not in err and len(err.decode().strip().splitlines()) == 1, err
    assert out.read_text() == SENTINEL
    assert os.listdir(out.parent) == ["run.csv"]


CHAIN_MODEL = ("[parameters]\nV = 10.0\nK = 1.0\n[compartments]\n"
               + "".join(f"c{i} = 0\n" for i in range(99)) + 'c99 = "V"\n'
               + "".join(f'[[flows]]\nfrom = "c{i}"\nto = "c{i + 1}"\nk = "K"\n'
                         for i in range(99))
               + '[[flows]]\nfrom = "c99"\nto = "out"\nk = "K"\n[routes.iv]\nto = "c0"\n')


# ``python -m ketasim ARGS`` with the kernel's calls counted: on its third call (a piece of
# the grid) a thread sends this process SIGINT while the call runs, as a terminal's Ctrl-C
# would; at exit it prints the calls, those begun after the signal was sent, and whether it was
_KERNEL_INTERRUPTED = r"""
import atexit, os, runpy, signal, sys, threading, time
from ketasim import _kernels

real = _kernels.grid_range
calls = []                  # per call: whether the signal had been sent when it began
sent = threading.Event()

def send():
    time.sleep(0.05)        # (inside the compiled call, which releases the GIL)
    os.kill(os.getpid(), signal.SIGINT)
    sent.set()

def grid_range(*args):
    calls.append(sent.is_set())
    if len(calls) == 3:
        threading.Thread(target=send, daemon=True).start()
    return real(*args)

_kernels.grid_range = grid_range
atexit.register(lambda: print(len(calls), sum(calls), sent.is_set(), flush=True))
sys.argv[0] = "ketasim"
runpy.run_module("ketasim", run_name="__main__", alter_sys=True)
"""


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_during_a_long_kernel_is_honoured_within_seconds(tmp_path):
    """A 100-state chain on 3,000,001 grid points (a kernel of about 120 pieces of a fraction
    of a second each, one output): a Ctrl-C that lands inside the kernel stops the command
    before the next piece, with status 130, never after its outputs. (The signal is sent from
    inside, at the third piece: sent from outside after a fixed 3 s, it had landed before the
    kernel on a loaded machine, and the exit had been waited for only 3 s.)"""
    (tmp_path / "m.toml").write_text(CHAIN_MODEL)
    (tmp_path / "d.csv").write_text("time_h,amount_mg,route\n0,100,iv\n")
    (tmp_path / "run.py").write_text(_KERNEL_INTERRUPTED)
    out = tmp_path / "results" / "run.csv"
    out.parent.mkdir()
    out.write_text(SENTINEL)
    p = subprocess.run(
        [sys.executable, str(tmp_path / "run.py"), "simulate", "--model",
         str(tmp_path / "m.toml"), "--doses", str(tmp_path / "d.csv"), "--until", "300000",
         "--step", "0.1", "--out", str(out)], capture_output=True, text=True, timeout=600,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert p.returncode == 130, p.stdout + p.stderr
    assert p.stderr.strip() == "ketasim: interrupted (Ctrl-C)", p.stderr
    calls, after, sent = p.stdout.split()
    # the kernel ran in pieces; none began after the signal but the one it may have been
    # starting as the signal came
    assert sent == "True" and int(calls) >= 3 and int(after) <= 1, p.stdout
    assert out.read_text() == SENTINEL and os.listdir(out.parent) == ["run.csv"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes")
def test_a_closed_pipe_is_not_a_traceback():
    """``ketasim presets | head -c 10``: the reader goes away; no traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "ketasim", "presets", "-v"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()                  # the reader is gone before the first line
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert b"Traceback" not in err and b"Exception ignored" not in err, err


# ------------------------------------------------------------------------------ names (property)
def _spec_with(section, name, value):
    spec = copy.deepcopy(GOOD_SPEC)
    spec.setdefault(section, {})[name] = value
    return spec


name_text = st.one_of(st.text(max_size=12), st.sampled_from(sorted(RESERVED_NAMES)),
                      st.sampled_from(["\uff23\uff2c", "a\u200bb", "a,b", "a\nb", "\u212a",
                                       "ﬁle", "x\u0301", "_", "a" * 101]))


@settings(max_examples=200, **SETTINGS)
@given(section=st.sampled_from(["compartments", "observe", "parameters", "derived", "effects"]),
       name=name_text)
def test_property_accepted_names_are_safe_columns(section, name):
    """Whatever the name, it is refused in one line, or it is an ASCII identifier, not reserved,
    and it is the exact name in the model (no normalisation)."""
    value = {"compartments": "V", "observe": "central", "parameters": 1.0, "derived": "CL / V",
             "effects": {"of": "central", "ke0": "KE0"}}[section]
    spec = _spec_with(section, name, value)
    try:
        m = ketasim.Model.from_dict(spec)
    except KetasimInputError as exc:
        assert "\n" not in str(exc)
        return
    assert IDENT.fullmatch(name) and name not in RESERVED_NAMES and len(name) <= 100
    assert name in {"compartments": m.compartments, "observe": m.observe,
                    "parameters": m.parameters, "derived": m.derived,
                    "effects": [e.name for e in m.effects]}[section]


@settings(max_examples=200, **SETTINGS)
@given(st.text(min_size=1, max_size=20).filter(lambda s: not s.isascii()))
def test_property_non_ascii_expressions_are_refused(text):
    from ketasim import _expr

    with pytest.raises(KetasimInputError, match="non-ASCII|empty"):
        _expr.parse(text, "field")


@settings(max_examples=100, **SETTINGS)
@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=4))
def test_property_constant_split_fractions(fs):
    """Constant split fractions: accepted exactly when they add up to at most 1 (+ rounding),
    and then a dose delivers at most its amount."""
    spec = copy.deepcopy(GOOD_SPEC)
    spec["routes"]["iv"] = {"parts": [{"to": "central", "f": f} for f in fs]}
    try:
        m = ketasim.Model.from_dict(spec)
    except KetasimInputError as exc:
        assert sum(fs) > 1.0 and "add up to" in str(exc)
        return
    assert sum(fs) <= 1.0 + 1e-12
    r = ketasim.simulate(m, ketasim.Doses.single(100.0, "iv"), [0.0], amounts=True,
                         outputs=["amount:central"])
    assert r.output("amount:central")[0] <= 100.0 * (1 + 1e-12)


def test_limits_are_exact():
    """MAX_STATES states are fine; one more is refused (the limit itself is not off by one)."""
    m = ketasim.Model.from_dict(tomllib.loads(many_compartments(MAX_STATES)))
    assert len(m.state_names) == MAX_STATES


# ------------------------------------------------------------------------------ engine, doses
ONE_CPT = _models.one_cpt_spec(V=50.0, CL=10.0)


def test_value_at_a_dose_time_is_the_value_just_after_it():
    """The issue's case: a dose at 0.9 h on a 0.3-h grid (3 x 0.3 < 0.9 in floating point)."""
    m = ketasim.Model.from_dict(ONE_CPT)
    grid = np.arange(0, 11) * 0.3                 # grid[3] = 0.8999999999999999
    r = ketasim.simulate(m, ketasim.Doses([0.9], [100.0], ["iv"]), grid)
    assert r.concentration("central")[3] == pytest.approx(2000.0, rel=1e-6)


@settings(max_examples=60, **SETTINGS)
@given(step=st.sampled_from(["0.1", "0.3", "0.7", "0.05", "1/60", "1/3", "0.25"]),
       k=st.integers(1, 20_000))
def test_property_dose_on_a_grid_point_is_seen_at_that_point(step, k):
    """The dose time as a user writes it (k x step, correctly rounded) and the grid point
    (k x float(step), as time_grid computes it) differ by a few units in the last place."""
    m = ketasim.Model.from_dict(ONE_CPT)
    grid = np.array([0.0, k - 1, k, k + 1]) * float(Fraction(step))
    t_dose = float(Fraction(step) * k)
    r = ketasim.simulate(m, ketasim.Doses([t_dose], [100.0], ["iv"]), grid)
    assert r.concentration("central")[2] == pytest.approx(2000.0, rel=1e-6)


TWO_CPT = {"parameters": {"V": 50.0}, "compartments": {"central": "V", "p": "V"},
           "flows": [{"from": "central", "to": "p", "k": 1.0}],
           "routes": {"iv": {"to": "central"}}}


@settings(max_examples=20, **SETTINGS)
@given(t0=st.floats(0.0, 2000.0), dur=st.floats(1e-12, 1.0), at=st.floats(0.0, 1.0))
def test_property_results_do_not_depend_on_the_horizon(t0, dur, at):
    """A short infusion with another event inside it: the values at the times two runs share
    are the same whether the grid ends at t0 + 24 h or at 1e6 h."""
    m = ketasim.Model.from_dict(TWO_CPT)
    d = ketasim.Doses([t0, t0 + at * dur], [100.0, 0.0], ["iv", "iv"], [dur, 0.0])
    times = np.linspace(0, t0 + 2, 21)
    a = ketasim.simulate(m, d, np.append(times, t0 + 24), amounts=True).data[0, :, :-1]
    b = ketasim.simulate(m, d, np.append(times, 1e6), amounts=True).data[0, :, :-1]
    np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("t0, dur", [(1.0, 1e-13), (1000.0, 1e-12), (1000.0, 1e-13),
                                     (10.0, 1e-15)])
def test_a_vanishing_infusion_delivers_its_whole_amount(t0, dur):
    """Infusion amounts are exact however short the infusion (1e-13 h once lost 14-24 %)."""
    test_an_infusion_shorter_than_any_step_is_a_bolus(t0, dur)


def test_a_1e_300_hour_infusion_at_time_zero_is_a_bolus():
    test_an_infusion_shorter_than_any_step_is_a_bolus(0.0, 1e-300)


@pytest.mark.parametrize("t0, dur", [(1.0, 5e-324), (24.0, 1e-300)])
def test_an_infusion_shorter_than_any_step_is_a_bolus(t0, dur):
    m = ketasim.Model.from_dict(TWO_CPT)
    r = ketasim.simulate(m, ketasim.Doses([t0], [100.0], ["iv"], [dur]), [0.0, t0 + 2.0],
                         amounts=True, outputs=["amount:central", "amount:p"])
    assert r.data[0, :, 1].sum() == pytest.approx(100.0, rel=1e-9)


def test_an_infusion_that_never_ends_within_a_run_is_refused_naming_its_row(tmp_path, capsys):
    """rate_mg_h = 1e-300 with 100 mg (an infusion of 1e302 h) had been taken: simulate
    --summary showed a peak and an AUC of 0 without a word, course refused a "1e+302 h" course.
    An infusion longer than the longest run ketasim computes metrics for (1e7 h) is refused,
    naming the row and the rate (or the duration)."""
    m = ketasim.Model.from_dict(ONE_CPT)
    want = (r"line 2: row 1 \(dose at 0 h\): rate_mg_h 1e-300 mg/h gives its 100 mg over "
            r"1e\+302 h, an infusion longer than the longest run ketasim computes metrics for "
            r"\(10,000,000 h")
    f = tmp_path / "d.csv"
    f.write_text("time_h,amount_mg,route,rate_mg_h\n0,100,iv,1e-300\n")
    d = ketasim.read_doses(f)
    with pytest.raises(KetasimInputError, match=want):
        ketasim.simulate(m, d, [0.0, 1.0])
    with pytest.raises(KetasimInputError, match=want):
        ketasim.population(m, d, 2, progress=False)
    with pytest.raises(KetasimInputError, match=r"row 1 \(dose at 0 h\): duration_h 1e\+08 h"
                                                r", an infusion longer .* a shorter duration_h"):
        ketasim.simulate(m, ketasim.Doses([0.0], [100.0], ["iv"], [1e8]), [0.0, 1.0])
    mf = tmp_path / "one.toml"
    mf.write_text(ONE_CPT_TOML)
    for argv in (["simulate", "--summary", "--out", str(tmp_path / "o.csv")],
                 ["course", "--out-dir", str(tmp_path / "q")]):
        rc, _, err = run_cli(argv + ["--model", str(mf), "--doses", str(f)], capsys)
        assert rc == 1
        one_line_error(err, "d.csv: line 2: row 1 (dose at 0 h): rate_mg_h 1e-300 mg/h",
                       "expected a higher rate_mg_h")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv", "one.toml"]
    # a long infusion that ends within the longest run is still taken
    r = ketasim.simulate(m, ketasim.Doses([0.0], [100.0], ["iv"], rate_mg_h=[1e-3]), [0.0, 1e5])
    assert r.data[0, 0, 1] > 0


def test_an_infusion_still_running_past_the_default_end_of_a_run_is_named(tmp_path, capsys):
    """100 mg at rate_mg_h 0.001 (100,000 h) in a run that ends 28 days after it starts: the
    summary had shown 0.67 mg's worth without a word; simulate, population and sweep now say
    which row runs past the end and how much of it is given."""
    f = tmp_path / "d.csv"
    f.write_text("time_h,amount_mg,route,rate_mg_h\n0,100,iv,0.001\n")
    mf = tmp_path / "one.toml"
    mf.write_text(ONE_CPT_TOML)
    want = ("ketasim: warning: " + str(f) + ": line 2: row 1 (dose at 0 h): the infusion of "
            "100 mg at rate_mg_h 0.001 mg/h runs to 100000 h, past the end of the run (672 h):"
            " only 0.672 mg of it is given there")
    for argv in (["simulate", "--summary"], ["population", "--n", "2"],
                 ["sweep", "--vary", "CL=5:10:2"]):
        rc, _, err = run_cli(argv + ["--model", str(mf), "--doses", str(f), "--out",
                                     str(tmp_path / "o.csv")], capsys)
        assert rc == 0, err
        assert [ln for ln in err.splitlines() if "warning" in ln][0].startswith(want), err
    # a run that lasts past its end, or a horizon chosen short of a 10-h infusion: nothing
    g = tmp_path / "e.csv"
    g.write_text("time_h,amount_mg,route,rate_mg_h\n0,100,iv,10\n")
    for doses, until in ((f, "1e6"), (g, "1")):
        rc, _, err = run_cli(["simulate", "--model", str(mf), "--doses", str(doses), "--until",
                              until, "--out", str(tmp_path / "o.csv")], capsys)
        assert rc == 0 and "warning" not in err, err


def test_split_fractions_from_parameters_above_one_are_refused():
    spec = copy.deepcopy(ONE_CPT)
    spec["parameters"].update(F1=0.9, F2=0.9)
    spec["routes"]["iv"] = {"parts": [{"to": "central", "f": "F1"}, {"to": "central", "f": "F2"}]}
    m = ketasim.Model.from_dict(spec)
    with pytest.raises(KetasimInputError, match="routes.iv"):
        ketasim.simulate(m, ketasim.Doses.single(100.0, "iv"), [0.0, 1.0])


def test_step_5e_324(tmp_path, capsys):
    subs = _setup(tmp_path, None, None)
    rc, _, err = run_cli(_argv(SIM + ["--step", "5e-324"], subs), capsys)
    assert rc in (1, 2)
    one_line_error(err, "step", "larger step")
    assert Path(subs["{o}"]).read_text() == SENTINEL


def test_until_1e308(tmp_path, capsys):
    with pytest.raises(KetasimInputError, match="until|step"):
        ketasim.time_grid(1e308, 0.1)


def test_dose_at_1e308_hours(tmp_path, capsys):
    """Without --until the horizon is the last dose + 4 weeks: 1e308 h."""
    subs = _setup(tmp_path, None, "time_h,amount_mg,route\n1e308,10,iv\n")
    rc, _, err = run_cli(_argv(["simulate", "--model", "{m}", "--doses", "{d}", "--out", "{o}"],
                               subs), capsys)
    assert rc == 1
    one_line_error(err, "until", "1e+308")
    assert Path(subs["{o}"]).read_text() == SENTINEL


def test_utf16_dose_table_is_read(tmp_path, capsys):
    subs = _setup(tmp_path, None, GOOD_DOSES.encode("utf-16"))
    rc, _, err = run_cli(_argv(SIM, subs), capsys)
    assert rc == 0, err


def test_dose_table_line_numbers_count_blank_and_comment_lines(tmp_path, capsys):
    subs = _setup(tmp_path, None, "time_h,amount_mg,route\n\n# a comment\n0,-1,iv\n")
    rc, _, err = run_cli(_argv(SIM, subs), capsys)
    assert rc == 1
    one_line_error(err, "d.csv", "line 4", "amount_mg")


@pytest.mark.parametrize("spec", ["-", "/dev/stdin"])
def test_doses_from_standard_input(tmp_path, spec):
    (tmp_path / "m.toml").write_text(GOOD_MODEL)
    out = tmp_path / "o.csv"
    r = subprocess.run([sys.executable, "-m", "ketasim", "simulate", "--model",
                        str(tmp_path / "m.toml"), "--doses", spec, "--until", "24", "--out",
                        str(out)], input=GOOD_DOSES, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert out.read_text().startswith("time_h,")


@pytest.mark.parametrize("text, line", [
    (GOOD_COURSE, GOOD_COURSE.strip().splitlines()[0]),
    ("# my course\n\n" + GOOD_COURSE, GOOD_COURSE.strip().splitlines()[0]),
    (GOOD_MODEL, "[model]"),
    ('title = "x"\n', 'title = "x"'),
], ids=["course", "course-after-a-comment", "model", "key"])
def test_a_toml_file_read_as_a_dose_table_is_named_as_toml(text, line, tmp_path, monkeypatch,
                                                            capsys):
    """A course file on standard input (``--doses - < course.toml``) or under another name
    than .toml is read as a dose table: that had been "unknown column 'amount_mg = 35';
    expected time_h, amount_mg, ...", as if a column were misspelt."""
    import io as _io

    assert not line.startswith("#") and "," not in line
    monkeypatch.setattr(sys, "stdin", _io.TextIOWrapper(_io.BytesIO(text.encode())))
    rc, _, err = run_cli(["course", "--doses", "-", "--out-dir", str(tmp_path / "d")], capsys)
    assert rc == 1
    one_line_error(err, "<stdin>", repr(line.strip()), "TOML", "CSV dose table", ".toml")
    assert not (tmp_path / "d").exists()


def test_a_folder_named_like_a_preset_or_course_does_not_hide_it(tmp_path, monkeypatch, capsys):
    """``ketasim course --out-dir standard-iv`` (or ``--out-dir ketamine-iv``) leaves a folder
    of that name, which had then been taken for the dose table (or model) in every later
    command that names it, the defaults included: "'standard-iv' is a folder, expected a CSV
    file", and for ``course`` "course parameters ['months'] need a course name ..., got
    'standard-iv'". A folder is never a model or dose file; a file of that name still wins."""
    monkeypatch.chdir(tmp_path)
    for name in ("ketamine-iv", "esketamine-nasal", "standard-iv", "spravato"):
        (tmp_path / name).mkdir()
    rc, _, err = run_cli(["simulate", "--until", "1", "--out", "o.csv"], capsys)
    assert rc == 0, err
    rc, _, err = run_cli(["course", "--months", "0.1", "--out-dir", "c"], capsys)
    assert rc == 0, err
    assert (tmp_path / "c" / "course.csv").is_file()
    rc, _, err = run_cli(["compare", "--months", "0.1", "--out-dir", "k",
                          "ketamine-iv@standard-iv:A", "esketamine-nasal@spravato:B"], capsys)
    assert rc == 0, err
    assert ketasim.load_model("ketamine-iv").name == ketasim.load_model(
        str(_preset_path("ketamine-iv"))).name
    assert ketasim.resolve_doses("spravato").time_h.size > 0
    (tmp_path / "spravato").rmdir()
    (tmp_path / "spravato").write_text(GOOD_DOSES)     # a file of a course's name: the file
    assert ketasim.resolve_doses("spravato").time_h.size == ketasim.read_doses(
        str(tmp_path / "spravato")).time_h.size


TWO_NO_PLASMA = """
[model]
name = "two"
[parameters]
CL = 10.0
V = 50.0
Q = 5.0
V2 = 10.0
[compartments]
periph = "V2"
central = "V"
[[flows]]
from = "central"
to = "out"
cl = "CL"
[[flows]]
from = "central"
to = "periph"
cl = "Q"
[[flows]]
from = "periph"
to = "central"
cl = "Q"
[routes.iv]
to = "central"
"""


@pytest.mark.parametrize("argv", [["population", "--n", "2"],
                                  ["sweep", "--vary", "CL=5:10:2"]])
def test_population_and_sweep_tables_name_an_analyte_that_is_not_plasma(argv, tmp_path, capsys):
    """A model without ``plasma`` has its metrics taken from its first compartment with a
    volume, here a peripheral one: the table had said only "cmax: ng/mL", so its peripheral
    concentrations read as the central ones."""
    (tmp_path / "m.toml").write_text(TWO_NO_PLASMA)
    (tmp_path / "d.csv").write_text("time_h,amount_mg,route\n0,100,iv\n")
    out = tmp_path / "o.csv"
    rc, printed, err = run_cli(argv + ["--model", str(tmp_path / "m.toml"), "--doses",
                                       str(tmp_path / "d.csv"), "--metrics", "cmax", "-q",
                                       "--out", str(out)], capsys)
    assert rc == 0, err
    assert "| analyte periph |" in out.read_text().splitlines()[0]
    if argv[0] == "population":
        assert "over the course (concentrations: periph)" in printed
    # a model with plasma: as before, nothing added
    rc, _, err = run_cli(argv + ["--metrics", "cmax", "-q", "--out", str(out)], capsys)
    assert rc == 0, err
    assert "analyte" not in out.read_text().splitlines()[0]


def test_compare_says_whose_concentrations_when_a_run_has_no_plasma(tmp_path, capsys):
    """compare set a model's peripheral compartment (its first with a volume, no plasma)
    beside another run's plasma under one "first session: peak" row, without a word."""
    (tmp_path / "two.toml").write_text(TWO_NO_PLASMA)
    (tmp_path / "d.csv").write_text("time_h,amount_mg,route\n0,100,iv\n")
    rc, printed, err = run_cli(["compare", f"{tmp_path / 'two.toml'}@{tmp_path / 'd.csv'}:A",
                                f"ketamine-iv@{tmp_path / 'd.csv'}:B", "--out-dir",
                                str(tmp_path / "c")], capsys)
    assert rc == 0, err
    rows = (tmp_path / "c" / "compare.csv").read_text().splitlines()
    assert "concentrations of,,periph,plasma" in rows
    assert "concentrations of" in printed
    rc, _, err = run_cli(["compare", f"ketamine-iv@{tmp_path / 'd.csv'}:A",
                          f"esketamine-iv@{tmp_path / 'd.csv'}:B", "--out-dir",
                          str(tmp_path / "p")], capsys)
    assert rc == 0, err
    assert "concentrations of" not in (tmp_path / "p" / "compare.csv").read_text()


@pytest.mark.parametrize("argv", [
    ["population", "--n", "2", "-q", "--no-variability"],
    ["sweep", "--vary", "CL=5:10:2", "-q", "--out", "{d}/s.csv"],
    ["simulate", "--summary", "--out", "{d}/s.csv"],
    ["course", "--out-dir", "{d}/c"],
], ids=["population", "sweep", "simulate", "course"])
def test_a_table_of_reset_rows_only_is_named_as_the_doses(argv, tmp_path, capsys):
    """A table with only a reset row (evid 3) had been "metrics: the dose table has no
    doses" in population, sweep and simulate --summary, naming no option nor file (the
    course figure named --doses and the file)."""
    (tmp_path / "m.toml").write_text(GOOD_MODEL)
    (tmp_path / "r.csv").write_text("time_h,amount_mg,route,evid\n0,,,3\n")
    rc, _, err = run_cli([a.format(d=tmp_path) for a in argv]
                         + ["--model", str(tmp_path / "m.toml"), "--doses",
                            str(tmp_path / "r.csv")], capsys)
    assert rc == 1
    one_line_error(err, "--doses: ", "r.csv has no doses", "expected at least one")
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize("header, shown", [("WT", "'WT' (write weight_kg)"),
                                           ("ID,weight_kg", "'ID' (write subject)"),
                                           ("Weight", "'Weight';")])
def test_an_unknown_covariates_column_is_named_as_written(header, shown, tmp_path, capsys):
    """A covariates header WT had been refused as "unknown column 'wt'", a name the file does
    not hold, without saying that this file (unlike a dose table) takes weight_kg only."""
    cols = header.count(",") + 1
    (tmp_path / "d.csv").write_text("time_h,amount_mg,route\n0,35,iv\n")
    (tmp_path / "c.csv").write_text(header + "\n" + "\n".join([",".join(["60"] * cols)] * 2))
    rc, _, err = run_cli(["population", "--n", "2", "-q", "--covariates",
                          str(tmp_path / "c.csv"), "--doses", str(tmp_path / "d.csv")], capsys)
    assert rc == 1
    one_line_error(err, f"unknown column {shown}")


@pytest.mark.parametrize("model, doses, vary, lead", [
    ("ketamine-iv", "standard-iv", "maintenance_days=28:0:2", "maintenance_days: got 0"),
    ("esketamine-nasal", "spravato", "dose_mg=28:56:2", "dose_mg: got 28"),
], ids=["maintenance_days", "dose_mg"])
def test_a_course_value_a_sweep_varies_is_refused_under_the_varied_name(model, doses, vary,
                                                                         lead, tmp_path,
                                                                         capsys):
    """The course builder's own argument names had led the message ("sweep at
    maintenance_days = 0: maintenance_every_days: got 0.0", "... dose: got 28"), names the
    sweep never shows."""
    rc, _, err = run_cli(["sweep", "--model", model, "--doses", doses, "--vary", vary, "-q",
                          "--out", str(tmp_path / "s.csv")], capsys)
    assert rc == 1
    one_line_error(err, f"sweep at {vary.split('=')[0]} = ", f": {lead}")
    assert "maintenance_every_days" not in err and ": dose:" not in err


@pytest.mark.parametrize("argv, advice", [
    (["sweep", "--vary", "CL=50:150:3", "-q", "--out", "{d}/s.csv"], "fewer grid points"),
    (["population", "--n", "3", "-q", "--out", "{d}/p.csv"], "fewer subjects (--n)"),
], ids=["sweep", "population"])
def test_out_of_memory_advice_names_the_commands_own_options(argv, advice, tmp_path, capsys,
                                                             monkeypatch):
    """A sweep or population out of memory had been told to "use a coarser --step, a shorter
    --until or a shorter course", options neither command has."""
    P = importlib_module("ketasim.population")

    def no_memory(*a, **k):
        raise MemoryError

    monkeypatch.setattr(P, "population", no_memory)
    monkeypatch.setattr(P, "sweep", no_memory)
    rc, _, err = run_cli([a.format(d=tmp_path) for a in argv], capsys)
    assert rc == 1
    one_line_error(err, "out of memory; ", advice)
    assert "--step" not in err and "--until" not in err
    assert not any(tmp_path.iterdir())


def _preset_path(name):
    from importlib import resources

    return resources.files("ketasim") / "presets" / f"{name}.toml"


def test_a_volume_parameter_too_small_for_its_reciprocal_is_one_line():
    """A volume given by a parameter (so not checked when the file is read) that is so small
    that 1/V overflows is refused when the model is used, naming the compartment."""
    spec = copy.deepcopy(ONE_CPT)
    first = next(iter(spec["compartments"]))
    spec["parameters"]["VTINY"] = 1.0
    spec["compartments"][first] = "VTINY"
    m = ketasim.Model.from_dict(spec)
    with pytest.raises(KetasimInputError, match=f"compartments.{first}.*at least 1e-300 L"):
        ketasim.simulate(m, ketasim.Doses.single(1.0, "iv"), [0.0, 1.0],
                         params={"VTINY": 1e-320})


# ------------------------------------------------------------ a later pass (options, labels)
@pytest.mark.parametrize("argv, fragment", [
    (["simulate", "--param", "CL=1", "--param", "CL=20", "--until", "1"], "CL is given twice"),
    (["population", "--n", "2", "--months", "1", "--metrics", "time_above_conc_1_000"],
     "'time_above_conc_1_000'"),
    (["course", "--closeup", "1e300"], "expected hours <= 672"),
    (["compare", "ketamine-iv@standard-iv", "--closeup", "1e12"], "expected hours <= 672"),
    # (a close-up under a minute had held one time of its one-minute grid: the figure said
    # "the output grid is too coarse (step 0.0833 h; a step of 0.1 h or less ...)")
    (["course", "--closeup", "1e-300"], "expected hours >= 0.0166667 (a minute"),
    (["compare", "ketamine-iv@standard-iv", "--closeup", "0.01"], "expected hours >= 0.01666"),
    # (it had been refused after the run's inputs were read, as 'expected a whole number >= 0')
    (["population", "--n", "2", "--seed", str(2**128)],
     f"--seed: {2**128} is out of range: expected a seed below 2**128"),
])
def test_options_out_of_bounds_are_one_line_errors(tmp_path, capsys, argv, fragment):
    try:
        rc = main(argv + (["--out", str(tmp_path / "o.csv")]
                          if argv[0] in ("simulate", "population")
                          else ["--out-dir", str(tmp_path / "d")]))
    except SystemExit as exc:        # a usage error (exit 2)
        rc = exc.code
    err = capsys.readouterr().err.strip()
    assert rc in (1, 2) and fragment in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_seed_beyond_the_generators_key_says_what_is_expected():
    with pytest.raises(KetasimInputError, match=r"seed: got 3402.*from 0 to 2\*\*128 - 1"):
        ketasim.population("ketamine-iv", "standard-iv", 2, seed=2**128)
    assert ketasim.population("ketamine-iv", "standard-iv", 2, seed=2**128 - 1,
                              metrics=("cmax",))["cmax"].shape == (2,)


def test_out_dir_that_is_a_file_is_named_before_any_work(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("keep")
    assert main(["course", "--out-dir", str(f)]) == 1
    assert "--out-dir:" in capsys.readouterr().err and f.read_text() == "keep"


def test_values_that_are_not_numbers_or_doses_are_refused():
    with pytest.raises(KetasimInputError, match="not True/False"):
        ketasim.simulate("ketamine-iv", "standard-iv", [0.0, 1.0], params={"CL": True})
    for v in (None, "80", ["80"]):
        with pytest.raises(KetasimInputError, match="not text or None"):
            ketasim.simulate("ketamine-iv", "standard-iv", [0.0, 1.0], params={"CL": v})
    with pytest.raises(KetasimInputError, match="on a reset row .evid 3., which gives no dose"):
        ketasim.Doses.from_records([{"time_h": 0, "amount_mg": 100, "route": "iv"},
                                    {"time_h": 5, "amount_mg": 50, "route": "iv", "evid": 3}])
    from ketasim.courses import Phase
    with pytest.raises(KetasimInputError, match="every_days: got 0"):
        Phase(every_days=0)


def test_population_header_names_every_option_that_changes_the_numbers(tmp_path):
    out = tmp_path / "p.csv"
    assert main(["population", "--months", "1", "--weight", "90", "--param", "CL=80", "--n",
                 "2", "--out", str(out), "-q"]) == 0
    head = out.read_text().splitlines()[0]
    assert "| months 1 | weight 90 kg | CL = 80 |" in head
    assert main(["population", "--months", "1", "--weight", "70.1234567", "--n", "2", "--out",
                 str(out), "-q"]) == 0
    assert "| weight 70.1234567 kg |" in out.read_text().splitlines()[0]    # not rounded


def test_summary_header_says_only_what_the_model_has(tmp_path, capsys):
    model = tmp_path / "one.toml"
    model.write_text('[parameters]\nV = 50.0\nCL = 10.0\n[compartments]\ncentral = "V"\n'
                     '[[flows]]\nfrom = "central"\nto = "out"\ncl = "CL"\n'
                     '[routes.iv]\nto = "central"\n')
    doses = tmp_path / "d.csv"
    doses.write_text("time_h,amount_mg,route\n0,100,iv\n")
    assert main(["course", "--model", str(model), "--doses", str(doses), "--out-dir",
                 str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "model one (" in out and "preset" not in out.splitlines()[0]
    assert "occupancy" not in out and "glutamate" not in out and "IV bolus" not in out[:0]


AMOUNT_ONLY = ('[model]\nname = "amt"\n[parameters]\nK = 0.1\n[compartments]\na = 0\n'
               '[[flows]]\nfrom = "a"\nto = "out"\nk = "K"\n[routes.iv]\nto = "a"\n')


def test_a_model_without_concentration_gives_its_amounts():
    """Every compartment amount-only: the default outputs are the amounts (they had been
    nothing at all: a CSV of times only), against the closed form 100 exp(-0.1 t)."""
    m = ketasim.Model.from_dict(tomllib.loads(AMOUNT_ONLY))
    t = np.linspace(0.0, 24.0, 97)
    r = ketasim.simulate(m, ketasim.Doses.single(100.0, "iv"), t)
    assert r.names == ("amount:a", "amount:eliminated")
    np.testing.assert_allclose(r.amount("a"), 100.0 * np.exp(-0.1 * t), rtol=1e-13)
    np.testing.assert_allclose(r.amount("a") + r.amount("eliminated"), 100.0, rtol=1e-13)


@pytest.mark.parametrize("argv", [
    ["simulate", "--model", "{m}", "--doses", "{d}", "--out", "{o}/o.csv", "--plot",
     "{o}/p.png"],
    ["course", "--model", "{m}", "--doses", "{d}", "--out-dir", "{o}"],
    ["compare", "{m}@{d}", "--out-dir", "{o}"],
    ["population", "--model", "{m}", "--doses", "{d}", "--n", "2", "--out", "{o}/p.csv",
     "--bands", "{o}/b.csv", "-q"],
    ["population", "--model", "{m}", "--doses", "{d}", "--n", "2", "--out", "{o}/p.csv", "-q"],
])
def test_a_model_without_concentration_is_refused_where_one_is_needed(argv, tmp_path, capsys):
    """Figures, summaries, bands and metrics need a concentration: a clear error naming the
    model (they had ended in an internal IndexError), and no file written."""
    (tmp_path / "amt.toml").write_text(AMOUNT_ONLY)
    (tmp_path / "d.csv").write_text("time_h,amount_mg,route\n0,100,iv\n")
    out = tmp_path / "out"
    argv = [a.format(m=tmp_path / "amt.toml", d=tmp_path / "d.csv", o=out) for a in argv]
    rc, _, err = run_cli(argv, capsys)
    assert rc == 1 and "'amt' has no concentration" in err and "internal" not in err, err
    assert not out.exists() or not any(out.iterdir())


def test_a_route_named_like_a_compartment_is_refused():
    """A dose row's route may be a compartment's name: a route of that name had silently
    taken the row (into the depot, half the dose), so such a model is refused, naming both."""
    spec = _models.one_cpt_spec(KA=1.0)
    spec["routes"]["central"] = {"to": "depot", "f": 0.5}
    with pytest.raises(KetasimInputError, match=r"routes\.central: name clashes with a "
                                                r"compartment"):
        ketasim.Model.from_dict(spec)


@pytest.mark.parametrize("argv", [
    ["compare", "ketamine-iv@standrd-iv", "--months", "1", "--out-dir", "{o}"],
    ["population", "--doses", "standrd-iv", "--months", "1", "--n", "3", "--out", "{o}/p.csv"],
    ["course", "--doses", "standrd-iv", "--months", "1", "--out-dir", "{o}"],
    ["sweep", "--doses", "standrd-iv", "--months", "1", "--vary", "CL=50:60:2", "--out",
     "{o}/s.csv"],
])
def test_a_mistyped_course_is_named_before_months_is_blamed(argv, tmp_path, capsys):
    """With --months, a typo of a course name had been reported as a misuse of --months
    ("no SPEC names a course"): the typo is the error, with the course it resembles."""
    rc, _, err = run_cli([a.format(o=tmp_path / "o") for a in argv], capsys)
    assert rc == 1 and "'standrd-iv' is neither a file nor a course" in err, err
    assert "did you mean 'standard-iv'" in err and "--months" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("eol", ["\r", "\r\n", "\n"])
def test_dose_tables_with_any_line_ending_read_the_same(eol, tmp_path):
    """Lines ended by CR alone (classic Mac, Excel's "CSV (Macintosh)") had been refused with
    csv's "new-line character seen in unquoted field"; an error still names the line."""
    rows = ["time_h,amount_mg,route", "0,100,iv", "1,50,iv", "2.5,25,iv"]
    f = tmp_path / "d.csv"
    f.write_bytes(eol.join(rows).encode() + eol.encode())
    d = ketasim.read_doses(f)
    assert list(d.time_h) == [0.0, 1.0, 2.5] and list(d.amount_mg) == [100.0, 50.0, 25.0]
    f.write_bytes(eol.join(rows[:2] + ["1,50,ivv"]).encode())
    with pytest.raises(KetasimInputError, match="line 3: row 2: route: unknown name 'ivv'"):
        ketasim.simulate(ketasim.Model.from_dict(ONE_CPT), ketasim.read_doses(f), [0.0, 1.0])


@pytest.mark.parametrize("cell", ["3_5", "１００", "٣٥", "0x10", "1,0"])
def test_a_dose_cell_that_is_not_a_plain_number_is_refused(cell, tmp_path):
    """Python's float() reads 3_5 as 35 and full-width or Arabic-Indic digits as numbers: in a
    dose column they are typos, refused naming the line, the column and the text."""
    f = tmp_path / "d.csv"
    f.write_text(f'time_h,amount_mg,route\n0,"{cell}",iv\n', encoding="utf-8")
    with pytest.raises(KetasimInputError, match=f"line 2: amount_mg: got '{cell}', expected a "
                                                "number"):
        ketasim.read_doses(f)


@pytest.mark.parametrize("argv, option", [
    (["simulate", "--weight", "7_0"], "--weight"),
    (["simulate", "--param", "CL=1_0"], "--param"),
    (["simulate", "--until", "２４"], "--until"),
    (["population", "--n", "1_0"], "--n"),
    (["population", "--n", "2", "--seed", "1_2"], "--seed"),
    (["schedule", "spravato", "--dose", "5_6"], "--dose"),
    (["explore", "--port", "8_765"], "--port"),
    (["explore", "--port", "70000"], "--port"),
    (["bench", "--repeats", "0"], "--repeats"),
    # (had been refused by the course as 'duration_h: got 16666.7 ... at most 8784' and
    # 'phase: every_days: got 0.01', exit 1, in other units and names)
    (["schedule", "standard-iv", "--infusion-min", "1e6"],
     "--infusion-min: 1e6 is out of range: expected minutes <= 527040"),
    (["schedule", "standard-iv", "--maintenance-days", "0.01"],
     "--maintenance-days: 0.01 is out of range: expected days (an hour at least"),
])
def test_option_values_are_plain_numbers_in_range(argv, option, tmp_path, capsys):
    """Underscores and non-ASCII digits had been read as numbers (--n 1_0 ran 10 subjects),
    and an out-of-range --port exited 1 (a bad input) instead of 2 (a usage error)."""
    rc, _, err = run_cli(argv + ["--out", str(tmp_path / "o.csv")]
                         if argv[0] in ("simulate", "population") else argv, capsys)
    assert rc == 2 and option in err, err
    assert not (tmp_path / "o.csv").exists()


def test_vary_takes_plain_numbers_only():
    from ketasim.population import parse_vary

    assert parse_vary("CL=50:60:2")[1].tolist() == [50.0, 60.0]
    with pytest.raises(KetasimInputError, match="^vary CL"):
        parse_vary("CL=5_0:6_0:2")


def test_sweep_messages_name_the_python_argument_or_the_option(tmp_path, capsys):
    """sweep(vary="CL=80:100") had been refused as "--vary CL: ...", and a course parameter
    varied with a dose table as needing "--doses", options of the command line, from Python:
    the API names its arguments (vary, doses), the command its options."""
    with pytest.raises(KetasimInputError, match=r"^vary CL: got '80:100', expected LO:HI:N"):
        ketasim.sweep("ketamine-iv", "standard-iv", vary="CL=80:100", metrics=["cmax"],
                      progress=False)
    d = tmp_path / "d.csv"
    d.write_text("time_h,amount_mg,route,duration_h\n0,35,iv,0.5\n")
    with pytest.raises(KetasimInputError, match="need doses to name a course") as exc:
        ketasim.sweep("ketamine-iv", str(d), {"dose_mg_per_kg": [0.5]}, progress=False)
    assert "--" not in str(exc.value)
    out = str(tmp_path / "s.csv")
    rc, _, err = run_cli(["sweep", "--vary", "CL=80:100", "--out", out, "-q"], capsys)
    assert rc == 1 and err.startswith("ketasim: error: --vary CL: got '80:100'"), err
    rc, _, err = run_cli(["sweep", "--doses", str(d), "--vary", "dose_mg_per_kg=0.5:1:2",
                          "--out", out, "-q"], capsys)
    assert rc == 1 and err.startswith("ketasim: error: --vary: unknown name 'dose_mg_per_kg'")
    assert "need --doses to name a course" in err, err


@pytest.mark.parametrize("argv, option", [
    (["population", "--n", "2", "--months", "1", "--band-outputs", "plasma", "--out",
      "{o}"], "--band-outputs"),
    (["population", "--n", "2", "--months", "1", "--band-step", "0.5", "--out", "{o}"],
     "--band-step"),
    (["simulate", "--until", "48", "--thresholds", "0.5", "--out", "{o}"], "--thresholds"),
])
def test_an_option_that_would_do_nothing_is_refused(argv, option, tmp_path, capsys):
    """Options of an output nobody asked for had been accepted and ignored."""
    out = tmp_path / "o.csv"
    rc, _, err = run_cli([a.format(o=out) for a in argv], capsys)
    assert rc == 1 and f"{option}: only with" in err and not out.exists(), err


def test_after_days_of_a_first_phase_delays_the_course(tmp_path):
    """after_days counts from the previous session; a first phase has none, and its
    after_days had been ignored (sessions from day 0): it counts from the course start."""
    from ketasim.courses import Phase, course_days

    assert course_days([Phase(every_days=7, count=3, after_days=3)])[0] == [3.0, 10.0, 17.0]
    assert course_days([Phase(every_days=7, count=2)])[0] == [0.0, 7.0]
    assert course_days([Phase(weeks=1, per_week=3),
                        Phase(every_days=7, count=2, after_days=3)])[0] == [0, 2, 4, 7, 14]


def test_an_output_named_twice_is_one_output():
    """A schematic or occupancy name given twice had made a second row that was never written
    (uninitialised memory, or a false overflow error)."""
    m = ketasim.load_model("ketamine-iv")
    d = ketasim.standard_iv_course(months=1)
    t = ketasim.time_grid(240, 0.5)
    once = ketasim.simulate(m, d, t, outputs=["plasma", "occupancy", "glutamate", "plasticity"])
    twice = ketasim.simulate(m, d, t, outputs=["glutamate", "plasma", "glutamate", "occupancy",
                                               "occupancy", "plasticity", "plasma", "glutamate"])
    assert twice.names == once.names
    assert np.array_equal(twice.data, once.data)


def test_the_course_name_standard_iv_is_dosed_at_the_weight_given():
    """The API had built the mg/kg course for 70 kg whatever weight_kg was (35 mg at 100 kg:
    Cmax 115 instead of 164 ng/mL), while the CLI, populations and sweeps used the weight."""
    from ketasim.engine import session_metrics

    t = ketasim.time_grid(24, 1 / 60)
    by_name = ketasim.simulate("ketamine-iv", "standard-iv", t, weight_kg=100,
                               outputs=["plasma"])
    by_table = ketasim.simulate("ketamine-iv", ketasim.standard_iv_course(0.5, 100), t,
                                weight_kg=100, outputs=["plasma"])
    assert np.array_equal(by_name.data, by_table.data)
    cm = session_metrics("ketamine-iv", "standard-iv", weight_kg=100, metrics=("cmax",))
    assert cm["cmax_s1"][0] == pytest.approx(by_table.concentration("plasma").max(), rel=1e-6)
    with pytest.raises(KetasimInputError, match="per-subject weights with the mg/kg course"):
        ketasim.simulate("ketamine-iv", "standard-iv", t, weight_kg=[50.0, 100.0])


@pytest.mark.parametrize("w", [True, "70", None, b"70", np.array([True, False]),
                               np.array(["60", "70"])])
def test_a_weight_that_is_not_a_number_is_refused(w):
    """True had run at 1 kg and '70' had been read as 70: refused, naming weight_kg."""
    with pytest.raises(KetasimInputError, match="weight_kg: got"):
        ketasim.simulate("ketamine-iv", ketasim.standard_iv_course(months=1), [0.0, 1.0],
                         weight_kg=w)


def test_a_result_keeps_what_its_metrics_are_computed_from():
    """course_metrics re-runs a result's subjects from its inputs: they had been the caller's
    own arrays and model, so editing them afterwards changed the metrics of curves computed
    before (AUC 4798/2402 became 1441/1441)."""
    from ketasim.metrics import course_metrics

    m = ketasim.load_model("ketamine-iv")
    d = ketasim.standard_iv_course(months=1)
    cl, w = np.array([60.0, 120.0]), np.array([60.0, 90.0])
    r = ketasim.simulate(m, d, ketasim.time_grid(720, 0.25), params={"CL": cl}, weight_kg=w,
                         outputs=["plasma"])
    before = course_metrics(r)
    cl[:] = 200.0
    w[:] = 150.0
    m.parameters["V1"] = 3 * m.parameters["V1"]
    after = course_metrics(r)
    assert np.array_equal(before.auc_ng_h_ml, after.auc_ng_h_ml)
    assert np.array_equal(before.cmax_ng_ml, after.cmax_ng_ml)
    with pytest.raises(ValueError):
        r.params["CL"][0] = 1.0


def test_session_metrics_computes_one_threshold_spelt_twice_once():
    """time_above_occ_0.3 and time_above_occ_0.30 are one metric: population() makes one
    column of it, under the first spelling; session_metrics had returned both."""
    from ketasim.engine import session_metrics

    d = ketasim.standard_iv_course(months=1)
    got = session_metrics("ketamine-iv", d, metrics=["time_above_occ_0.3", "cmax",
                                                     "time_above_occ_0.30"])
    pop = ketasim.population("ketamine-iv", d, 1, variability=False,
                             metrics=["time_above_occ_0.3", "cmax", "time_above_occ_0.30"])
    assert set(got) - {"session_start_h"} == set(pop.columns) - {"subject"}
    assert "time_above_occ_0.30" not in got and "time_above_occ_0.30_s1" not in got
    later = session_metrics("ketamine-iv", d, metrics=["time_above_occ_0.30",
                                                       "time_above_occ_0.3"])
    assert "time_above_occ_0.30_s1" in later and "time_above_occ_0.3_s1" not in later
    np.testing.assert_array_equal(later["time_above_occ_0.30"], got["time_above_occ_0.3"])


def test_session_metrics_takes_metric_names_as_population_does():
    """A NumPy array or pandas Series of metric names, or 'cmax,auc', had been refused by
    session_metrics ('expected a list of metric names') while population() took them; the
    names are plain str in both (a NumPy array's np.str_ had named population's columns)."""
    pd = pytest.importorskip("pandas")
    from ketasim.engine import session_metrics

    d = ketasim.standard_iv_course(months=1)
    want = session_metrics("ketamine-iv", d, metrics=["cmax", "auc"])
    for names in (np.array(["cmax", "auc"]), pd.Series(["cmax", "auc"]), "cmax, auc"):
        got = session_metrics("ketamine-iv", d, metrics=names)
        assert list(got) == list(want)
        assert all(type(k) is str for k in got)
        np.testing.assert_array_equal(got["auc"], want["auc"])
    pop = ketasim.population("ketamine-iv", d, 2, metrics=np.array(["cmax"]), progress=False)
    assert all(type(m) is str for m in pop.metrics)
    assert all(type(k) is str for k in pop.columns)
    for bad in (3, None, [1, 2], {"cmax": 1}):
        with pytest.raises(KetasimInputError, match="^metrics: got"):
            session_metrics("ketamine-iv", d, metrics=bad)


@pytest.mark.parametrize("model", [None, 3, {"parameters": {}}, b"ketamine-iv"])
def test_a_model_that_is_no_name_path_or_model_is_named_as_given(model):
    """load_model(None) had said "'None' is neither a file nor a preset" (the text of None);
    the value is now shown as given, with what a model can be."""
    for call in (lambda: ketasim.load_model(model),
                 lambda: ketasim.simulate(model, ketasim.Doses.single(35.0, "iv"), [0.0])):
        with pytest.raises(KetasimInputError, match=r"^model: got " + re.escape(repr(model))
                           + ", expected a Model, a preset name"):
            call()


_HUGE = 10**400      # a Python int no float holds
ONE_IV = ketasim.Doses.single(35.0, "iv")


@pytest.mark.parametrize("call, field", [
    (lambda: ketasim.simulate("ketamine-iv", "standard-iv", [0.0], weight_kg=_HUGE),
     "weight_kg"),
    (lambda: ketasim.population("ketamine-iv", ONE_IV, 2, params={"CL": _HUGE}),
     r"params\['CL'\]"),
    (lambda: ketasim.population("ketamine-iv", ONE_IV, 2, weight_kg=_HUGE), "weight_kg"),
    (lambda: ketasim.population("ketamine-iv", ONE_IV, 2, horizon_h=_HUGE), "horizon_h"),
    (lambda: ketasim.population("ketamine-iv", ONE_IV, 2, bands=_HUGE), "bands"),
    (lambda: ketasim.population("ketamine-iv", ONE_IV, _HUGE), "metrics of 10,000"),
    (lambda: ketasim.engine.session_metrics("ketamine-iv", ONE_IV, merge_h=_HUGE), "merge_h"),
    (lambda: ketasim.engine.session_metrics("ketamine-iv", ONE_IV, horizon_h=_HUGE),
     "horizon_h"),
    (lambda: ketasim.time_grid(_HUGE, 1.0), "until"),
    (lambda: ketasim.standard_iv_course(weight_kg=_HUGE), "weight_kg"),
])
def test_an_int_too_large_for_a_float_is_refused_by_name(call, field):
    """10**400 passed every 'is it a number' check and then ended in Python's OverflowError
    ('int too large to convert to float') or NumPy's TypeError, deep inside."""
    with pytest.raises(KetasimInputError, match=f"^{field}"):
        call()


def test_a_horizon_before_the_first_session_is_named():
    """A horizon at or before the first session had been refused as "metrics: no session
    starts within the horizon", naming nothing the caller gave."""
    from ketasim.engine import session_metrics
    from ketasim.metrics import course_metrics

    d = ketasim.Doses.single(35.0, "iv", time_h=48.0)
    says = r"got {} h, expected hours after the first session start \(48 h\)"
    with pytest.raises(KetasimInputError, match="^horizon_h: " + says.format(24)):
        session_metrics("ketamine-iv", d, horizon_h=24.0)
    with pytest.raises(KetasimInputError, match="^horizon_h: " + says.format(48)):
        ketasim.population("ketamine-iv", d, 2, horizon_h=48.0, progress=False)
    with pytest.raises(KetasimInputError, match=r"^times\[-1\]: " + says.format(2)):
        course_metrics(ketasim.simulate("ketamine-iv", d, [0.0, 1.0, 2.0]))


def test_time_grid_is_float_and_ends_at_until():
    assert ketasim.time_grid(10, 1, start_h=5).dtype == np.float64
    t = ketasim.time_grid(0.7, 0.1)
    assert t[-1] == 0.7 and t.size == 8 and np.all(np.diff(t) > 0)


@pytest.mark.parametrize("until, step, size", [(1.0, 0.3333333333, 4), (1e-6, 3e-9, 335),
                                               (4800.0, 1 / 60, 288001), (1.0, 0.3, 5)])
def test_time_grid_ends_at_until_whatever_its_size(until, step, size):
    """A last grid point less than 1e-9 h short of until (3 x 0.3333333333 = 0.9999999999,
    or 333 x 3e-9 = 9.99e-7 for until 1e-6) had ended the grid there, short of until."""
    t = ketasim.time_grid(until, step)
    assert t[-1] == until and t.size == size and np.all(np.diff(t) > 0)
    assert t[0] == 0.0 and ketasim.time_grid(1e-20, 1.0).tolist() == [0.0, 1e-20]
    assert ketasim.time_grid(1344, 1e308).tolist() == [0.0, 1344.0]


@pytest.mark.parametrize("kw, field", [
    ({"merge_h": float("nan")}, "merge_h"), ({"merge_h": -1.0}, "merge_h"),
    ({"merge_h": "1"}, "merge_h"), ({"horizon_h": "10"}, "horizon_h"),
    ({"metrics": None}, "metrics"), ({"metrics": []}, "metrics"), ({"metrics": ()}, "metrics"),
    ({"chunk_size": 0}, "chunk_size"),
    ({"chunk_size": 1.5}, "chunk_size"), ({"chunk_size": True}, "chunk_size"),
    ({"metrics": ("plasticity_end",), "horizon_h": 1e300}, "horizon_h"),
])
def test_session_metrics_arguments_are_checked(kw, field):
    """merge_h = NaN had merged a whole course into one session; text and None had ended in
    numpy's or Python's own errors; a schematic horizon of 1e300 h had run for ever; no
    metric at all had returned only the session starts (population() refuses it)."""
    from ketasim.engine import session_metrics

    kw = {"metrics": ("cmax",), **kw}
    with pytest.raises(KetasimInputError, match=field):
        session_metrics("ketamine-iv", ketasim.standard_iv_course(months=1), **kw)


def test_the_schematic_response_has_a_horizon_limit_and_pk_has_none():
    """Schematic steps are at most 64 h: 1e12 h would run for hours inside one compiled call
    (no Ctrl-C), so it is refused; plasma alone over the same grid is exact and quick."""
    m = ketasim.load_model("ketamine-iv")
    d = ketasim.standard_iv_course(months=1)
    with pytest.raises(KetasimInputError, match="times: the schematic response"):
        ketasim.simulate(m, d, [0.0, 1e12], outputs=["glutamate"])
    r = ketasim.simulate(m, d, [0.0, 1e12], outputs=["plasma"])
    assert r.data[0, 0, 1] == 0.0


def test_one_threshold_may_be_a_number():
    from ketasim.metrics import course_metrics

    r = ketasim.simulate("ketamine-iv", ketasim.standard_iv_course(months=1),
                         ketasim.time_grid(720, 0.5))
    assert np.array_equal(course_metrics(r, thresholds=0.1).time_above_h[0.1],
                          course_metrics(r, thresholds=(0.1,)).time_above_h[0.1])


def test_population_and_sweep_inputs_are_numbers():
    """Booleans had been read as 1 and 0 (1-kg subjects, ages 1 and 0, CL swept over 1 and
    0); a sweep's bad weight had been blamed on its first axis."""
    d = ketasim.standard_iv_course(months=1)
    cases = [
        (lambda: ketasim.population("ketamine-iv", ketasim.Doses.single(35.0, "iv"), 2,
                                    weight_kg=np.array([True, True]), metrics=("cmax",),
                                    progress=False), "weight_kg: got"),
        (lambda: ketasim.population("esketamine-nasal", ketasim.spravato_course(months=1), 2,
                                    covariates={"age_y": [True, False]}, metrics=("cmax",),
                                    progress=False), r"covariates\['age_y'\]: got"),
        (lambda: ketasim.sweep("ketamine-iv", d, {"CL": [True, False]}, metrics=("cmax",),
                               progress=False), "vary CL: got"),
        (lambda: ketasim.sweep("ketamine-iv", d, {"CL": [80.0]}, weight_kg=-1,
                               metrics=("cmax",), progress=False), "weight_kg: got -1"),
        (lambda: ketasim.simulate("ketamine-iv", d, ["0", "1"]), "times: got"),
    ]
    for call, msg in cases:
        with pytest.raises(KetasimInputError, match=msg):
            call()


def test_population_covariates_may_be_a_dataframe():
    pd = pytest.importorskip("pandas")
    course = ketasim.spravato_course(months=1)
    kw = {"metrics": ("cmax",), "progress": False, "seed": 3}
    a = ketasim.population("esketamine-nasal", course, 3,
                           covariates=pd.DataFrame({"age_y": [30.0, 60.0, 85.0]}), **kw)
    b = ketasim.population("esketamine-nasal", course, 3,
                           covariates={"age_y": np.array([30.0, 60.0, 85.0])}, **kw)
    assert np.array_equal(a["cmax"], b["cmax"]) and np.array_equal(a["age_y"], [30, 60, 85])


def test_a_parameter_given_both_typically_and_per_subject_is_refused(tmp_path, capsys):
    """AGE given as a typical value (params / --param AGE=80) and per subject (covariates /
    --age 70): the covariate had silently won while the table's header still named AGE = 80.
    Given in two places, it is an error, as weight is."""
    course = ketasim.spravato_course(months=1)
    kw = {"metrics": ("auc",), "progress": False}
    with pytest.raises(KetasimInputError, match=r"params\['AGE'\].*got 80.*covariates\['age_y'\]"):
        ketasim.population("esketamine-nasal", course, 2, params={"AGE": 80.0},
                           covariates={"age_y": [70.0, 70.0]}, **kw)
    # each alone still applies, and differently (the age effect is real)
    a = ketasim.population("esketamine-nasal", course, 2, params={"AGE": 80.0},
                           variability=False, **kw)["auc"]
    b = ketasim.population("esketamine-nasal", course, 2, covariates={"age_y": [70.0, 70.0]},
                           variability=False, **kw)["auc"]
    assert np.all(a > b * 1.05)
    out = tmp_path / "p.csv"
    rc, _, err = run_cli(["population", "--model", "esketamine-nasal", "--doses", "spravato",
                          "--months", "1", "--n", "1", "--no-variability", "--metrics", "auc",
                          "--quiet", "--age", "70", "--param", "AGE=80", "--out", str(out)],
                         capsys)
    assert rc == 1 and "--param AGE" in err and "--age" in err and not out.exists()


def test_an_age_outside_the_fitted_population_is_refused():
    """esketamine-nasal's age effect (QH - 2.19 L/h per year over 60) is fitted on ages 18-86:
    at 100-130 it had driven the hepatic flow to 0 and the AUC to millions, silently."""
    course = ketasim.spravato_course(months=1)
    # (subjects counted from 0, as in the output's and --covariates' subject columns)
    with pytest.raises(KetasimInputError, match=r"subject 1 \(from 0, as in the subject "
                                                r"column\): got 100, outside 18-86"):
        ketasim.population("esketamine-nasal", course, 2, covariates={"age_y": [40.0, 100.0]},
                           metrics=("auc",), progress=False)
    spec = tomllib.loads(Path(ketasim.__file__).with_name("presets").joinpath(
        "esketamine-nasal.toml").read_text())
    spec["variability"]["covariate_range"] = {"age_y": [60, 18]}
    with pytest.raises(KetasimInputError, match="covariate_range.age_y"):
        ketasim.Model.from_dict(spec)


def test_a_zero_dimensional_weight_is_a_weight():
    w = np.array(80.0)
    d = ketasim.Doses.single(35.0, "iv")
    a = ketasim.simulate("ketamine-iv", d, [0.0, 1.0], weight_kg=w, outputs=["plasma"])
    b = ketasim.simulate("ketamine-iv", d, [0.0, 1.0], weight_kg=80.0, outputs=["plasma"])
    assert np.array_equal(a.data, b.data)
    kw = {"metrics": ("cmax",), "progress": False}
    assert np.array_equal(ketasim.population("ketamine-iv", d, 2, weight_kg=w, **kw)["cmax"],
                          ketasim.population("ketamine-iv", d, 2, weight_kg=80.0, **kw)["cmax"])
    assert np.array_equal(
        ketasim.sweep("ketamine-iv", d, {"CL": [80.0]}, weight_kg=w, **kw)["cmax"],
        ketasim.sweep("ketamine-iv", d, {"CL": [80.0]}, weight_kg=80.0, **kw)["cmax"])


def test_an_unreadable_csv_row_is_named_by_its_line(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("time_h,amount_mg,route\n0,1,iv\n0," + "x" * 200_000 + ",iv\n")
    with pytest.raises(KetasimInputError, match=r"d\.csv: line 3: not a readable CSV row \(a "
                                                r"field longer than 131,072 characters"):
        ketasim.read_doses(f)


@pytest.mark.parametrize("text, line, cell", [
    ('0,100,"iv', 3, "route"),                     # the last line, no line ending
    ('0,100,"iv\n', 3, "route"),
    ('0,100,"iv\n5,100,iv\n', 3, "route"),        # the rows below had become its route
    ('0,"100,iv\n5,1"00,iv\n', 3, "amount_mg"),   # closed on a later line
    ('0,100,"iv\r', 3, "route"),
])
def test_a_quote_left_open_is_refused_naming_its_line(text, line, cell, tmp_path):
    """A cell whose closing quote is missing ('0,100,"iv' as the last line) had been read as
    'iv' without a word (csv reads on to the end of the file), or with the lines below in it."""
    f = tmp_path / "d.csv"
    f.write_bytes(("time_h,amount_mg,route\n1,50,iv\n" + text).encode())
    with pytest.raises(KetasimInputError, match=rf"d\.csv: line {line}: {cell}: a quote "
                                                r"\(\"\) is not closed on its line") as e:
        ketasim.read_doses(f)
    assert "\n" not in str(e.value)
    with pytest.raises(KetasimInputError, match=rf"<doses>: line {line}: {cell}: a quote"):
        ketasim.read_doses(io.StringIO("time_h,amount_mg,route\n1,50,iv\n" + text))
    # quoted cells closed on their line still read, a last line without an ending too
    d = ketasim.read_doses(io.StringIO('time_h,amount_mg,route\n0,"100","iv"\n1, "5" ,"iv"'))
    assert list(d.amount_mg) == [100.0, 5.0]


def test_an_output_that_is_a_loop_of_links_is_refused_and_left_alone(tmp_path, capsys):
    subs = _setup(tmp_path, None, None)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.symlink_to(b)
    b.symlink_to(a)
    rc, _, err = run_cli(_argv(SIM[:-1] + [str(a)], subs), capsys)
    assert rc == 1 and "symbolic link that cannot be followed" in err
    assert a.is_symlink() and b.is_symlink()         # not replaced by a regular file


def test_an_age_outside_the_fitted_population_is_refused_however_it_is_given():
    """The same range holds when AGE is given as a parameter (params, --param, --vary): an
    AGE of 150 had cut the hepatic flow to 0 and raised the AUC 400-fold, silently."""
    course = ketasim.spravato_course(months=1)
    for call in (lambda: ketasim.simulate("esketamine-nasal", course, [0.0, 1.0],
                                          params={"AGE": 150.0}),
                 lambda: ketasim.sweep("esketamine-nasal", course, {"AGE": [40.0, 200.0]},
                                       metrics=("auc",)),
                 lambda: ketasim.population("esketamine-nasal", course, 3, params={"AGE": 17.0},
                                            metrics=("auc",), progress=False)):
        with pytest.raises(KetasimInputError, match=r"AGE \(the age_y covariate\).*outside "
                                                    r"18-86"):
            call()
    assert ketasim.simulate("esketamine-nasal", course, [0.0, 1.0],
                            params={"AGE": 86.0}).data.shape[0] == 1


def test_a_ctrl_c_swallowed_on_the_way_still_stops_the_command_before_its_files(
        tmp_path, monkeypatch, capsys):
    """A Ctrl-C whose KeyboardInterrupt is swallowed where it is raised (Python ignores an
    exception in a callback from the JIT compiler's C code, and the command goes on) still
    stops the command when it reaches its outputs: no file is written, exit code 130."""
    from ketasim import cli_teach
    from ketasim import io as kio

    real = cli_teach.course_summary

    def swallowing(run):
        try:
            kio.interrupt(KeyboardInterrupt())      # as the command line's signal handler
        except KeyboardInterrupt:
            pass                                    # ... lost, as in a C callback
        return real(run)

    monkeypatch.setattr(cli_teach, "course_summary", swallowing)
    out = tmp_path / "o"
    assert main(["course", "--months", "1", "--out-dir", str(out)]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())
    monkeypatch.setattr(cli_teach, "course_summary", real)
    assert main(["course", "--months", "1", "--out-dir", str(out)]) == 0   # the next run
    assert sorted(p.name for p in out.iterdir()) == ["course.csv", "course.png"]


def test_options_without_effect_and_out_of_range_doses_are_refused(tmp_path, capsys):
    """--seed where no subject is drawn (sweep without --n, population with
    --no-variability) had been accepted and ignored; schedule's --dose-mg-per-kg had no upper
    limit where course --dose has 10 mg/kg. A one-session table is 'one session'."""
    rc, _, err = run_cli(["sweep", "--vary", "CL=50:150:3", "--seed", "3", "--out",
                          str(tmp_path / "s.csv")], capsys)
    assert rc == 1
    one_line_error(err, "--seed", "only with --n")
    rc, _, err = run_cli(["population", "--n", "3", "--seed", "2", "--no-variability", "-q"],
                         capsys)
    assert rc == 1
    one_line_error(err, "--seed", "--no-variability")
    rc, _, err = run_cli(["schedule", "standard-iv", "--dose-mg-per-kg", "11"], capsys)
    assert rc == 2 and "11 is out of range: expected mg/kg <= 10" in err
    assert not list(tmp_path.iterdir())
    rc, out, _ = run_cli(["schedule", "standard-iv", "--months", "0.01"], capsys)
    assert rc == 0 and "1 session, 35 mg in all" in out


@pytest.mark.parametrize("argv", [
    ["population", "--doses", "spravato", "--n", "3", "--quiet"],
    ["sweep", "--doses", "spravato", "--vary", "CL=50:60:2", "--out", "{o}", "--quiet"],
    ["course", "--doses", "spravato", "--out-dir", "{r}"],
])
def test_a_nasal_course_for_an_iv_model_says_so_in_every_command(argv, tmp_path, capsys):
    """population and sweep had answered the nasal course on the IV preset with the dose
    table's unknown-route message, whose suggestion was a compartment ('s_central')."""
    out = tmp_path / "sw.csv"
    argv = [a.replace("{o}", str(out)).replace("{r}", str(tmp_path / "r")) for a in argv]
    rc, _, err = run_cli(argv, capsys)
    assert rc == 1
    assert "model 'ketamine-iv' has no nasal route (routes: iv)" in err
    assert "esketamine-nasal" in err and "s_central" not in err
    assert not out.exists() and not (tmp_path / "r").exists()
    with pytest.raises(KetasimInputError, match="has no nasal route"):
        ketasim.simulate("ketamine-iv", "spravato", [0.0, 1.0])


def test_the_standard_course_dose_limit_holds_in_the_api_and_a_sweep(tmp_path, capsys):
    """`course --dose 11` and `schedule --dose-mg-per-kg 11` were refused, but a sweep over
    dose_mg_per_kg = 1000 wrote Cmax near 318,000 ng/mL and the API took any dose: the limit
    now lives in standard_iv_course."""
    with pytest.raises(KetasimInputError, match=r"dose_mg_per_kg: got 11, expected at most 10"):
        ketasim.standard_iv_course(dose_mg_per_kg=11)
    assert ketasim.standard_iv_course(dose_mg_per_kg=10).amount_mg[0] == 700.0
    out = tmp_path / "sw.csv"
    rc, _, err = run_cli(["sweep", "--vary", "dose_mg_per_kg=1000:1001:2", "--out", str(out),
                          "--quiet"], capsys)
    assert rc == 1 and "dose_mg_per_kg = 1000" in err and "at most 10 mg/kg" in err
    assert not out.exists()


def test_a_swallowed_ctrl_c_that_breaks_the_command_is_an_interrupt_not_an_internal_error(
        tmp_path, monkeypatch, capsys):
    """A Ctrl-C swallowed inside the JIT compiler's callback can leave a module half imported,
    and the command then fails with, say, "module 'numba' has no attribute 'core'": that had
    been reported as an internal error (exit 1); the interrupt is what stopped it (130)."""
    from ketasim import cli_teach
    from ketasim import io as kio

    def broken(run):
        try:
            kio.interrupt(KeyboardInterrupt())
        except KeyboardInterrupt:
            pass
        raise AttributeError("module 'numba' has no attribute 'core'")

    monkeypatch.setattr(cli_teach, "course_summary", broken)
    out = tmp_path / "o"
    assert main(["course", "--months", "1", "--out-dir", str(out)]) == 130
    err = capsys.readouterr().err
    assert "interrupted (Ctrl-C)" in err and "internal error" not in err
    # without an interrupt, the same failure is an internal error, as before
    monkeypatch.setattr(cli_teach, "course_summary", lambda run: {}["x"])
    assert main(["course", "--months", "1", "--out-dir", str(out)]) == 1
    assert "internal error (KeyError" in capsys.readouterr().err


def test_ctrl_c_while_an_option_is_checked_is_an_interrupt(tmp_path, monkeypatch, capsys):
    """Checking a Parquet --out imports pyarrow while the options are parsed; Ctrl-C there
    had escaped the command's handler (a traceback, killed by SIGINT)."""
    from ketasim import cli_population

    def interrupted(v):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_population, "_table_out", interrupted)
    assert main(["population", "--n", "3", "--out", str(tmp_path / "p.parquet")]) == 130
    assert "interrupted (Ctrl-C)" in capsys.readouterr().err


def test_sweep_and_band_messages_name_what_the_user_gave(tmp_path, capsys):
    """--vary WT had suggested 'MW_KET'; a refused weight_kg value was reported without the
    varied name; --band-step was called 'step'."""
    out = str(tmp_path / "s.csv")
    rc, _, err = run_cli(["sweep", "--vary", "WT=50:100:3", "--out", out], capsys)
    assert rc == 1 and "did you mean 'weight_kg'?" in err and "MW_KET" not in err
    rc, _, err = run_cli(["sweep", "--vary", "weight_kg=1e-300:1e-299:2", "--out", out], capsys)
    assert rc == 1 and "vary weight_kg: the value 1e-300 is refused by the model" in err
    rc, _, err = run_cli(["population", "--n", "3", "--bands", str(tmp_path / "b.csv"),
                          "--band-step", "1e-9"], capsys)
    assert rc == 1 and err.startswith("ketasim: error: --band-step: got a step of 1e-09")
    assert not list(tmp_path.iterdir())
    rc, _, err = run_cli(["sweep", "--vary", "weight_kg=50:90:3", "--out", out, "--quiet"],
                         capsys)
    assert rc == 0, err


def test_band_histograms_too_large_name_the_band_step(tmp_path, capsys, monkeypatch):
    """Band times too many for the histograms' memory had been refused as "band histograms:
    ... use a coarser step", naming neither bands= nor --band-step; and a step too fine for a
    time grid had named --band-step from Python too."""
    eng = importlib.import_module("ketasim.engine")
    monkeypatch.setattr(eng, "_available_bytes", lambda: 2**30)
    rc, _, err = run_cli(["population", "--n", "2", "--months", "1", "--bands",
                          str(tmp_path / "b.csv"), "--band-step", "0.01", "-q"], capsys)
    assert rc == 1 and err.startswith("ketasim: error: --band-step: band histograms: "), err
    assert not list(tmp_path.iterdir())
    d = ketasim.Doses.single(35.0, "iv")
    with pytest.raises(KetasimInputError, match="^bands: band histograms: ") as exc:
        ketasim.population("ketamine-iv", d, 2, bands=0.01, metrics=["cmax"], progress=False)
    with pytest.raises(KetasimInputError, match="^bands: got a step of 1e-09 h") as exc2:
        ketasim.population("ketamine-iv", d, 2, bands=1e-9, metrics=["cmax"], progress=False)
    assert "--" not in str(exc.value) + str(exc2.value)


def test_an_interrupt_python_can_only_report_is_not_printed(tmp_path):
    """Ctrl-C inside the JIT compiler's C callback had printed Python's "Exception ignored
    on calling ctypes callback function" block with a traceback before the command's own
    one line; the interrupt still stops the command (130), without the block. (Run in its
    own process: pytest takes such reports over in its own.)"""
    code = textwrap.dedent(f"""
        import sys
        from ketasim import cli, cli_teach
        from ketasim import io as kio

        real = cli_teach.course_summary

        class Callback:
            def __del__(self):     # as a C callback: an exception here is only reported
                kio.interrupt(KeyboardInterrupt())

        def interrupted(run):
            Callback()
            return real(run)

        cli_teach.course_summary = interrupted
        sys.exit(cli.main(["course", "--months", "1", "--out-dir", {str(tmp_path / "o")!r}]))
        """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(Path(ketasim.__file__).parents[1])))
    assert p.returncode == 130, p.stderr
    assert "Exception ignored" not in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.strip().splitlines()[-1] == "ketasim: interrupted (Ctrl-C)"
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


# --- a hostile pass over file inputs: standard input, NONMEM items, rates, phases, models
def test_standard_input_is_never_overwritten_by_the_output(tmp_path):
    """``--doses - < d.csv --out d.csv`` had replaced the dose table with the results (the
    input '-' was not seen as a file); it is refused like ``--doses d.csv --out d.csv``."""
    d = tmp_path / "d.csv"
    d.write_text(GOOD_DOSES)
    with open(d, "rb") as fh:
        p = subprocess.run([sys.executable, "-m", "ketasim", "simulate", "--model", "ketamine-iv",
                            "--doses", "-", "--until", "24", "--out", str(d)], stdin=fh,
                           capture_output=True, text=True,
                           env=dict(os.environ,
                                    PYTHONPATH=str(Path(ketasim.__file__).parents[1])))
    assert p.returncode == 1, p.stderr
    one_line_error(p.stderr, "--out", "d.csv", "standard input", "--doses")
    assert d.read_text() == GOOD_DOSES


def test_nonmem_dates_are_refused_and_comment_rows_skipped_whatever_their_length(tmp_path):
    """A DATE column turns TIME into a clock time in NM-TRAN: the three daily doses below had
    been read as one 300-mg dose at 8 h. A C row with fewer fields had been refused."""
    f = tmp_path / "date.csv"
    f.write_text("ID,DATE,TIME,AMT,CMT,EVID\n1,01/01/2020,8,100,1,1\n1,01/02/2020,8,100,1,1\n")
    with pytest.raises(KetasimInputError, match=r"line 2: DATE: got '01/01/2020'.*clock time"):
        ketasim.read_doses(f)
    f.write_text("ID,DATE,TIME,AMT,CMT,EVID\n1,.,8,100,1,1\n1,,32,100,1,1\n")
    assert list(ketasim.read_doses(f).time_h) == [8.0, 32.0]
    f.write_text("C,ID,TIME,AMT,CMT\n.,1,0,100,1\nC,excluded: sample lost\n.,1,24,100,1\n")
    d = ketasim.read_doses(f)
    assert list(d.time_h) == [0.0, 24.0] and list(d.amount_mg) == [100.0, 100.0]


def test_an_infusion_given_by_its_rate_is_an_infusion_in_words_bars_and_tables():
    """A RATE row (100 mg at 30 mg/h: 200 min) had been described and drawn as an IV bolus,
    and the course table had no row at its end (the peak there 1.8 % low)."""
    from ketasim.plotting import describe_doses, event_times, row_durations

    by_rate = ketasim.Doses([0.0], [100.0], ["iv"], rate_mg_h=[30.0])
    by_dur = ketasim.Doses([0.0], [100.0], ["iv"], [100.0 / 30.0])
    assert describe_doses(by_rate, 70.0) == describe_doses(by_dur, 70.0)
    assert "over 200 min" in describe_doses(by_rate, 70.0)
    assert list(event_times(by_rate)) == [0.0, 100.0 / 30.0]
    assert list(row_durations(by_rate)) == [100.0 / 30.0]
    m = ketasim.load_model("ketamine-iv")
    runs = [ketasim.plotting.run_course(m, d, 70.0) for d in (by_rate, by_dur)]
    from ketasim.cli_teach import table_result

    a, b = (table_result(r) for r in runs)
    assert 100.0 / 30.0 in set(a.times)
    np.testing.assert_allclose(a.data.max(), b.data.max(), rtol=1e-12)


def test_a_file_name_too_long_is_one_line(tmp_path, capsys):
    long = str(tmp_path / ("x" * 300 + ".csv"))
    rc, _, err = run_cli(["simulate", "--out", long], capsys)
    assert rc == 2
    one_line_error(err, "--out", "File name too long")
    rc, _, err = run_cli(["course", "--out-dir", ""], capsys)
    assert rc == 2
    one_line_error(err, "--out-dir", "empty")


@pytest.mark.parametrize("entry, ok", [("cv_pct = { CL = 1e200 }", False),
                                       ("cv_pct = { CL = 1000.0 }", True),
                                       ("omega2 = { CL = 11.0 }", False),
                                       ("omega2 = { CL = 10.0 }", True)])
def test_variances_beyond_any_log_normal_model_are_refused(entry, ok):
    """cv_pct = 1e200 had overflowed into "internal error" on loading the model."""
    text = GOOD_MODEL + f"[variability]\n{entry}\n"
    if ok:
        ketasim.Model.from_dict(tomllib.loads(text))
        return
    with pytest.raises(KetasimInputError, match=r"variability.*CL: got .*expected a number "
                                                r"from 0 to"):
        ketasim.Model.from_dict(tomllib.loads(text))


def test_steady_state_ignores_compartments_the_dose_never_reaches():
    """A compartment without outflow that no dose reaches had made every steady state
    'not exist'; it stays empty and the steady state is the closed form's."""
    side = ketasim.Model.from_dict(tomllib.loads(model_with('central = "V"',
                                                            'central = "V"\nside = 10')))
    d = ketasim.Doses([0.0], [100.0], ["iv"], ii_h=[12.0], ss=[1], addl=[2])
    t = np.array([0.0, 12.0 - 1e-9])
    r = ketasim.simulate(side, d, t, outputs=["central"])
    k = 10.0 / 50.0
    peak = 100.0 / 50.0 / (1 - np.exp(-k * 12.0)) * 1000.0       # ng/mL
    np.testing.assert_allclose(r.concentration("central"),
                               [peak, peak * np.exp(-k * (12.0 - 1e-9))], rtol=1e-10)
    # an amount-only compartment the drug reaches and never leaves (urine) has no steady
    # amount: it starts empty at the steady-state dose, as NONMEM's output compartment, and
    # the rest is the steady state without it (it had been refused)
    sink = ketasim.Model.from_dict(tomllib.loads(model_with(
        'central = "V"', 'central = "V"\nurine = 0') + '[[flows]]\nfrom = "central"\n'
        'to = "urine"\nk = "KA"\n'))
    r2 = ketasim.simulate(sink, d, np.array([0.0, 12.0]), amounts=True)
    k2 = k + 1.2                       # CL/V and the flow to urine (KA = 1.2 /h)
    peak2 = 100.0 / (1 - np.exp(-k2 * 12.0))              # mg in central just after the dose
    central = r2.data[0, list(r2.names).index("amount:central")]
    urine = r2.data[0, list(r2.names).index("amount:urine")]
    np.testing.assert_allclose(central, [peak2, peak2], rtol=1e-10)
    assert urine[0] == 0.0
    # over one interval central loses one dose (100 mg), and urine collects 1.2/k2 of it
    np.testing.assert_allclose(urine[1], 1.2 / k2 * 100.0, rtol=1e-9)


def test_model_section_keys_observe_names_and_phase_overlaps_are_checked(tmp_path):
    with pytest.raises(KetasimInputError, match=r"\[model\]: unknown key 'citaton' \(did you "
                                                r"mean 'citation'\?\)"):
        ketasim.Model.from_dict(tomllib.loads(model_with('name = "one-cpt"',
                                                         'name = "one-cpt"\ncitaton = 5')))
    with pytest.raises(KetasimInputError, match=r"observe.plasma: 'central' is listed twice"):
        ketasim.Model.from_dict(tomllib.loads(GOOD_MODEL + '[observe]\nplasma = ["central", '
                                                           '"central"]\n'))
    c = tmp_path / "c.toml"
    c.write_text('amount_mg = 35\nroute = "iv"\nmonths = 1\n[[phase]]\nevery_days = 6.99\n'
                 'count = 1\nafter_days = 6.99\n[[phase]]\nweeks = 2\nper_week = 1\n')
    with pytest.raises(KetasimInputError, match=r"sessions on day 6.99 and day 7 are 0.24 h "
                                                r"apart"):
        ketasim.read_course_toml(c)


def test_compare_months_sets_a_course_files_length(tmp_path, capsys):
    """``compare --months`` had been ignored for a course file (and refused when no SPEC
    named a course), while ``course --months`` applies it."""
    c = tmp_path / "c.toml"
    c.write_text(GOOD_COURSE)
    rc, out, err = run_cli(["compare", f"ketamine-iv@{c}", "--months", "1", "--out-dir",
                            str(tmp_path / "o")], capsys)
    assert rc == 0, err
    n = len(ketasim.read_course_toml(c, months=1).time_h)
    assert n < len(ketasim.read_course_toml(c).time_h)
    sessions = next(r for r in (tmp_path / "o" / "compare.csv").read_text().splitlines()
                    if r.startswith("sessions,"))
    assert sessions.split(",")[2].startswith(f"{n} over")


# --- a hostile pass over the research API: the schematic response's range, sweep options
@pytest.mark.parametrize("params, what", [
    ({"PLAS_KOUT": 1e4}, "plasticity_kin x (1 + emax) + plasticity_kout"),
    ({"GLU_EMAX": 3e4}, "plasticity_kin x (1 + emax) + plasticity_kout"),
    ({"CONS_KIN": 1e5}, "consolidation_kin + consolidation_kout"),
    ({"GLU_EMAX": 1e10, "PLAS_KIN": 0.0}, "emax"),
    ({"GLU_HILL": 1000.0}, "hill")])
def test_schematic_parameters_beyond_the_integrators_range_are_refused(params, what):
    """Such values had given NaN metrics without a word (the metrics path), a step size
    shrinking without end (the grid path, GLU_EMAX 1e10), or a ZeroDivisionError from inside
    the compiled kernel (GLU_HILL 1000: occ^h and ec50^h both 0)."""
    m = ketasim.load_model("ketamine-iv")
    with pytest.raises(KetasimInputError, match=re.escape(f"glutamate.{what} evaluated to")):
        ketasim.engine.session_metrics(m, "standard-iv", params=params,
                                       metrics=("plasticity_end",), horizon_h=100.0)


@pytest.mark.parametrize("params", [{"GLU_EMAX": 1600.0}, {"PLAS_KOUT": 99.0},
                                    {"CONS_KIN": 99.0}, {"GLU_KOUT": 1e6},
                                    {"GLU_HILL": 100.0}, {"GLU_HILL": 2.0}])
def test_at_the_edge_of_its_range_the_schematic_response_is_finite_on_both_paths(params):
    """The exact metrics and the output grid integrate the schematic response separately:
    they agree at the edge of the accepted range too (NaN had come from the metrics path)."""
    m = ketasim.load_model("ketamine-iv")
    d = ketasim.standard_iv_course(months=1)
    h = 24.0 * 30
    c = ketasim.engine.session_metrics(m, d, params=params, horizon_h=h,
                                       metrics=("plasticity_end", "consolidation_end"))
    r = ketasim.simulate(m, d, np.linspace(0.0, h, 2881), params=params,
                         outputs=["plasticity", "consolidation"])
    got = [float(np.ravel(c["plasticity_end"])[0]), float(np.ravel(c["consolidation_end"])[0])]
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, r.data[0, :, -1], rtol=1e-5, atol=1e-10)


def test_sweep_plot_metric_needs_plot_and_covariate_errors_show_the_value(tmp_path, capsys):
    rc, _, err = run_cli(["sweep", "--months", "1", "--metrics", "cmax", "--vary",
                          "CL=50:100:2", "--plot-metric", "nonsense", "--out",
                          str(tmp_path / "s.csv"), "--quiet"], capsys)
    assert rc == 1
    one_line_error(err, "--plot-metric", "only with --plot")
    assert not (tmp_path / "s.csv").exists()
    rc, _, err = run_cli(["population", "--model", "esketamine-nasal", "--doses", "spravato",
                          "--n", "2", "--age", "86.0000001", "--out", str(tmp_path / "p.csv"),
                          "--quiet"], capsys)
    assert rc == 1
    one_line_error(err, "got 86.0000001, outside 18-86")


def test_course_metrics_see_the_schematic_response_in_any_of_its_outputs():
    """A result simulated with only ``consolidation`` of the schematic outputs had course
    metrics without plasticity (NaN): they looked for glutamate or plasticity only."""
    from ketasim.metrics import course_metrics

    t = ketasim.time_grid(24 * 60, 0.5)
    full = course_metrics(ketasim.simulate("ketamine-iv", "standard-iv", t))
    some = course_metrics(ketasim.simulate("ketamine-iv", "standard-iv", t,
                                           outputs=["plasma", "consolidation"]))
    assert np.isfinite(some.plasticity_end)
    assert some.plasticity_end == full.plasticity_end


def test_messages_name_what_the_user_gave(tmp_path, capsys):
    """A negative --param CL had been reported against the derived CL_S_MET only; a dose table
    with covariates given to a sweep had been told to use --covariates, which sweep lacks; a
    --until at the first session had failed with a metrics message naming no option; a course
    file in mg had been described as dosed per kg."""
    rc, _, err = run_cli(["simulate", "--param", "CL=-1", "--out", str(tmp_path / "o.csv")],
                         capsys)
    assert rc == 1
    one_line_error(err, "CL_S_MET evaluated to -1 L/h", "(from CL = -1")
    d = ketasim.Doses([0.0], [35.0], ["iv"], [2 / 3], covariates={"weight_kg": [80.0]})
    with pytest.raises(KetasimInputError, match=r"--vary\)") as exc:
        ketasim.sweep("ketamine-iv", d, [("CL", np.array([80.0, 90.0]))])
    assert "--covariates" not in str(exc.value)
    f = tmp_path / "d.csv"
    f.write_text("time_h,amount_mg,route\n5,100,iv\n")
    rc, _, err = run_cli(["simulate", "--doses", str(f), "--until", "5", "--summary", "--out",
                          str(tmp_path / "o.csv")], capsys)
    assert rc == 1
    one_line_error(err, "--until: got 5 h", "first session starts at 5 h", "--summary")
    assert not (tmp_path / "o.csv").exists()
    c = tmp_path / "c.toml"
    c.write_text(GOOD_COURSE)
    from ketasim.plotting import describe_doses

    assert describe_doses(ketasim.read_course_toml(c), 70.0).startswith(
        "35 mg (0.5 mg/kg at 70 kg)")
    assert describe_doses(ketasim.standard_iv_course(), 70.0).startswith("0.5 mg/kg (35 mg)")


def test_heat_map_cells_without_a_value_are_hatched_and_said(tmp_path):
    """A session-k metric over a grid of course lengths: the points whose course has fewer
    sessions have no value. Their cells had been left blank, unexplained; they are hatched, a
    legend below the map says why, and the cells with values keep their colours."""
    import matplotlib
    import matplotlib.pyplot as plt

    from ketasim.cli_population import plot_heatmap

    res = ketasim.sweep("ketamine-iv", "standard-iv",
                        {"months": [0.5, 3.0], "dose_mg_per_kg": [0.25, 0.5]},
                        metrics=("cmax", "trough"))
    z = res.grid("cmax_s9")[2]
    assert np.isnan(z[0]).all() and np.isfinite(z[1]).all()    # (session 9: day 56)

    def legend_text(fig):
        leg = fig.axes[0].get_legend()
        return None if leg is None else " ".join(t.get_text() for t in leg.get_texts())

    fig = plot_heatmap(res, "cmax_s9", "t")
    assert "no session 9 at these grid points" in legend_text(fig)
    assert any(p.get_hatch() for p in fig.axes[0].patches)
    fig = plot_heatmap(res, "trough_s9", "t")       # (a trough needs the next session)
    assert "no session 10 at these grid points, so no trough" in legend_text(fig)
    fig = plot_heatmap(res, "cmax_s1", "t")         # every cell has its value
    assert legend_text(fig) is None and not fig.axes[0].patches
    assert "no session" not in " ".join(t.get_text() for t in fig.findobj(matplotlib.text.Text))
    plt.close("all")


def test_heat_maps_are_readable_and_say_what_they_show(tmp_path, capsys, monkeypatch):
    """Sweep heat maps: V1 = 80:200:8 had ticked '97.1429114.286…' run together; a schematic
    metric had been titled 'model-predicted'; a trough of 1e-13 ng/mL had spread over the
    whole colour scale as if it mattered."""
    import matplotlib

    from ketasim.cli_population import plot_heatmap

    res = ketasim.sweep("ketamine-iv", "standard-iv",
                        [("CL", np.array([60.0, 120.0])), ("V1", np.linspace(80.0, 200.0, 8))],
                        metrics=("peak_occupancy", "trough"), horizon_h=None)
    fig = plot_heatmap(res, "peak_occupancy", "t")
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    labels = [t for t in fig.axes[0].get_xticklabels() if t.get_text()]
    assert all(len(t.get_text()) <= 6 for t in labels)
    boxes = [t.get_window_extent(r) for t in labels]
    assert not any(a.x1 > b.x0 for a, b in zip(boxes, boxes[1:]))
    # text at the course figure's sizes for a slide (it had been matplotlib's 10 pt)
    from ketasim.plotting import BODY_PT
    ax, cax = fig.axes[0], fig.axes[1]
    shown = ([t for t in ax.get_xticklabels() + ax.get_yticklabels() + cax.get_yticklabels()
              if t.get_text()] + [ax.xaxis.label, ax.yaxis.label, cax.yaxis.label, ax.title])
    assert min(t.get_fontsize() for t in shown) >= BODY_PT - 1
    assert np.nanmax(np.abs(res.grid("trough")[2])) < 1e-3      # (a month after a session)
    fig = plot_heatmap(res, "trough", "t")
    assert "effectively zero" in " ".join(t.get_text() for t in fig.findobj(matplotlib.text.Text))
    fig = plot_heatmap(res, "peak_occupancy", "t")
    assert "effectively zero" not in " ".join(t.get_text()
                                              for t in fig.findobj(matplotlib.text.Text))
    from ketasim import cli_population

    titles = []

    def keep(result, metric, title, **kw):
        titles.append(title)
        return plot_heatmap(result, metric, title, **kw)

    monkeypatch.setattr(cli_population, "plot_heatmap", keep)
    for metric in ("plasticity_end", "cmax"):
        rc, _, err = run_cli(["sweep", "--months", "2", "--vary", "dose_mg_per_kg=0.25:1:2",
                              "--vary", "maintenance_days=14:28:2", "--metrics", metric, "--out",
                              str(tmp_path / "s.csv"), "--plot", str(tmp_path / "s.png"),
                              "--quiet"], capsys)
        assert rc == 0, err
    assert "SCHEMATIC" in titles[0] and "model-predicted" not in titles[0]
    assert "model-predicted" in titles[1]
    import matplotlib.pyplot as plt
    plt.close("all")


def test_a_dose_named_by_a_routes_compartment_is_warned_about():
    """route = "nasal" (the spray's compartment) had given twice the spray's concentrations
    without a word: the dose goes in whole, not as the route 'intranasal' delivers it."""
    from ketasim.cli_teach import route_warning

    m = ketasim.load_model("esketamine-nasal")
    w = route_warning(m, ketasim.Doses([0.0], [56.0], ["nasal"]))
    assert w and "'intranasal'" in w and "f = 1" in w
    assert route_warning(m, ketasim.Doses([0.0], [56.0], ["intranasal"])) is None


def test_nasal_doses_split_per_device_name_their_subject():
    """The one-row-per-session warning of a dataset compares each subject's doses; a split
    had been named by its times only, not by the subject whose rows they are."""
    from ketasim.cli_teach import route_warning

    m = ketasim.load_model("esketamine-nasal")
    two = ketasim.Doses([0.0, 0.0], [56.0, 56.0], ["intranasal"] * 2, subject=[1, 7])
    assert route_warning(m, two) is None
    split = ketasim.Doses([0.0, 0.0, 0.1], [56.0, 28.0, 28.0], ["intranasal"] * 3,
                          subject=[1, 7, 7])
    w = route_warning(m, split)
    assert w and "subject 7: doses at 0 h and 0.1 h are 6 min apart" in w
    one = ketasim.Doses([0.0, 0.1], [28.0, 28.0], ["intranasal"] * 2)
    assert route_warning(m, one).startswith("route intranasal: doses at 0 h and 0.1 h")


@pytest.mark.parametrize("cmt", ["1", "1.0"])
def test_a_dose_into_a_compartment_by_its_number_is_warned_about_as_by_its_name(cmt):
    """NONMEM's CMT = 1 on racemic ketamine put the whole dose into S-ketamine's central
    compartment (no R-ketamine, a higher occupancy) without the warning its name gets."""
    from ketasim.cli_teach import route_warning

    m = ketasim.load_model("ketamine-iv")
    w = route_warning(m, ketasim.Doses([0.0], [35.0], [cmt]))
    assert w and f"route '{cmt}'" in w and "'s_central'" in w and "number 1" in w
    assert "write route = 'iv'" in w
    with pytest.warns(UserWarning, match="s_central"):
        ketasim.simulate(m, ketasim.Doses([0.0], [35.0], [cmt]), np.linspace(0, 2, 5))
    # a compartment a route delivers to as it is (f = 1, no lag) is no surprise
    plain = ketasim.Model.from_dict(tomllib.loads(GOOD_MODEL))
    assert route_warning(plain, ketasim.Doses([0.0], [35.0], ["2"])) is None


def test_population_and_sweep_outputs_are_checked_and_named_before_the_run(tmp_path, capsys,
                                                                        monkeypatch):
    """An output under a file (b.json/x.csv) had been found only when writing, after the whole
    run, and without the option's name; a varied parameter named like a metric had been
    overwritten by it in the table; above 2,000,000 subjects the param_* columns had been left
    out without a word."""
    from ketasim import cli_population

    P = importlib_module("ketasim.population")
    (tmp_path / "b.json").write_text("{}")
    monkeypatch.setattr(P, "population", lambda *a, **k: pytest.fail("ran before the check"))
    rc, _, err = run_cli(["population", "--n", "3", "-q", "--out",
                          str(tmp_path / "b.json" / "x.csv")], capsys)
    assert rc == 1
    one_line_error(err, "--out", "Not a folder", "b.json")
    monkeypatch.undo()
    spec = tomllib.loads(GOOD_MODEL.replace("CL = 10.0", "cmax = 10.0").replace('"CL / V"',
                                                                                 '"cmax / V"')
                         .replace('cl = "CL"', 'cl = "cmax"'))
    m = ketasim.Model.from_dict(spec)
    with pytest.raises(KetasimInputError, match=r"vary: 'cmax' is also the name of a metric "
                                                r"column"):
        ketasim.sweep(m, ketasim.Doses([0.0], [10.0], ["iv"]), [("cmax", np.array([5.0, 20.0]))],
                      metrics=("cmax",))
    monkeypatch.setattr(P, "MAX_PARAM_COLUMNS_N", 5)
    small = ketasim.population("ketamine-iv", "standard-iv", 5, metrics=("cmax",),
                               progress=False)
    big = ketasim.population("ketamine-iv", "standard-iv", 6, metrics=("cmax",),
                             progress=False)
    assert "param_CL" in small.columns and "note" not in small.info
    assert "param_CL" not in big.columns and "param_*" in big.info["note"]
    assert cli_population is not None


@pytest.mark.parametrize("argv, inner, outer", [
    (["simulate", "--until", "2", "--out", "{d}/x.csv", "--plot", "{d}/x.csv/y.png"],
     "--plot", "--out"),
    (["population", "--n", "3", "-q", "--out", "{d}/a.csv", "--bands", "{d}/a.csv/b.csv"],
     "--bands", "--out"),
    (["population", "--n", "3", "-q", "--bands", "{d}/a.csv", "--out", "{d}/a.csv/b.parquet"],
     "--out", "--bands"),
    (["sweep", "-q", "--vary", "CL=50:100:2", "--vary", "V1=80:100:2", "--out",
      "{d}/s.csv", "--plot", "{d}/s.csv/h.png"], "--plot", "--out"),
], ids=["simulate", "population", "population-reversed", "sweep"])
def test_an_output_inside_another_output_is_refused_before_the_run(argv, inner, outer,
                                                                    tmp_path, capsys,
                                                                    monkeypatch):
    """``--out run/x.csv --plot run/x.csv/y.png`` asks for x.csv as a file and as a folder: it
    had been found only when writing, after the whole run, as a bare "Is a directory: ..."
    naming neither option."""
    from ketasim import cli, cli_population

    P = importlib_module("ketasim.population")
    monkeypatch.setattr(P, "population", lambda *a, **k: pytest.fail("ran before the check"))
    monkeypatch.setattr(P, "sweep", lambda *a, **k: pytest.fail("ran before the check"))
    monkeypatch.setattr(cli, "_simulate_rest",
                        lambda *a, **k: pytest.fail("ran before the check"))
    d = tmp_path / "new"
    rc, _, err = run_cli([a.format(d=d) for a in argv], capsys)
    assert rc == 1
    one_line_error(err, inner, outer, "inside")
    assert not d.exists()
    assert cli_population is not None


def importlib_module(name):
    import importlib

    return importlib.import_module(name)


def test_bench_json_empty_is_named_as_empty(capsys):
    rc, _, err = run_cli(["bench", "--quick", "--only", "trivial", "--json", ""], capsys)
    assert rc == 1
    one_line_error(err, "--json: empty")


def test_small_leftovers_of_the_hostile_passes(tmp_path):
    """time_above_occ_0.3 and _0.30 had given two identical column sets; a parameter could be
    named weight_kg, the body weight's own name in tables and sweeps; a closed Client had
    raised a bare RuntimeError from inside Dask; a close-up shorter than the infusion had
    labelled a peak it does not show, with a marker outside the panel."""
    from ketasim.population import _check_metrics

    assert _check_metrics("cmax,time_above_occ_0.3,time_above_occ_0.30") == (
        "cmax", "time_above_occ_0.3")
    with pytest.raises(KetasimInputError, match=r"weight_kg.*reserved"):
        ketasim.Model.from_dict(tomllib.loads(model_with("KE0 = 2.0",
                                                         "KE0 = 2.0\nweight_kg = 70.0")))
    from ketasim.plotting import plot_course, run_course

    run = run_course("ketamine-iv", "standard-iv", 70, closeup_h=0.5)
    fig = plot_course(run)
    note = next(t.get_text() for t in fig.findobj(matplotlib_text()) if
                t.get_text().startswith("peak "))
    assert "after this 30-min panel" in note
    axz = fig.subfigs[0].axes[0]
    assert not [ln for ln in axz.get_lines() if ln.get_marker() == "o"
                and np.any(np.asarray(ln.get_xdata()) > 0.5)]


def matplotlib_text():
    import matplotlib.text

    return matplotlib.text.Text


def test_presets_table_shows_a_whole_comment_and_its_unit():
    """``ketasim presets NAME`` lists each parameter's unit and source from its comment:
    GLU_EC50's comment continues on an indented line, and had been cut at "0.30 on the
    in-vitro"; CONS_KIN's unit "1/h per unit P" (a capital after "per") had been read as no
    unit, and shown in the source column. A continued comment is no heading for the next
    parameter."""
    from ketasim.modelfile import model_text, parameter_notes

    for name in ketasim.list_presets():
        notes = parameter_notes(model_text(name))
        assert notes["GLU_EC50"][1].endswith("divided by the in-vivo/in-vitro ratio 2.9")
        assert notes["CONS_KIN"][:2] == ("1/h per unit P", "build-up of the consolidated index Q")
    notes = parameter_notes("[parameters]\nA = 1.0  # L, first part\n"
                            "         # (Smith 2001) second part\nB = 2.0  # L/h\n")
    assert notes["A"] == ("L", "first part (Smith 2001) second part", "parameters")
    assert notes["B"] == ("L/h", "", "parameters")
    # a quoted key is its name (its unit and source had been dropped)
    notes = parameter_notes('[parameters]\n"V" = 50.0   # L, central volume (Smith 2000)\n'
                            "'K' = 0.2  # 1/h\n")
    assert notes["V"] == ("L", "central volume (Smith 2000)", "parameters")
    assert notes["K"] == ("1/h", "", "parameters")


def test_summaries_print_large_numbers_without_an_exponent(capsys):
    """``simulate --summary`` and the population summary print 4 significant digits; from
    10,000 up (an AUC in ng·h/mL, often) they had printed 1e+04 and 1.44e+04, beside 8747 in
    the same line."""
    from ketasim.cli import _format_table
    from ketasim.cli_population import _print_summary

    table = _format_table(["session", "auc_ng_h_ml", "trough_ng_ml"],
                          [[1, 9999.99999, 4.3e-09], [2, 14412.6, 0.5]])
    assert "e+" not in table
    assert "10000" in table and "14413" in table and "4.3e-09" in table
    _print_summary({"auc": np.array([8747.0, 14400.0, 23100.0])}, ("auc",),
                   {"auc": "ng*h/mL"}, 3)
    out = capsys.readouterr().out
    assert "e+" not in out and "14400" in out


@pytest.mark.parametrize("command", ["simulate", "course", "compare", "population", "sweep"])
def test_every_doses_help_names_the_course_toml_it_takes(command):
    """Every command that takes doses takes a course TOML file too (the README says so); its
    --help had named only a dose table and the course names, and compare's SPEC help left
    out its limit of five."""
    import argparse

    from ketasim.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = sub.choices[command]
    act = next(a for a in parser._actions
               if "--doses" in a.option_strings or a.dest == "specs")
    assert "course TOML file" in act.help
    if command == "compare":
        assert "up to five" in act.help


def test_population_and_sweep_take_months_for_a_course_file(tmp_path, capsys):
    """--months sets a course TOML file's length in population and sweep, as in course and
    compare; both had refused it, calling the file a dose table."""
    course = tmp_path / "c.toml"
    course.write_text('amount_mg = 35\nroute = "iv"\nduration_h = 0.6667\nmonths = 6\n'
                      "[[phase]]\nweeks = 2\nper_week = 3\n[[phase]]\nevery_days = 14\n")
    pop, grid = tmp_path / "p.csv", tmp_path / "s.csv"
    assert main(["population", "--doses", str(course), "--months", "2", "--n", "2", "-q",
                 "--metrics", "cmax", "--out", str(pop)]) == 0
    assert main(["sweep", "--doses", str(course), "--months", "2", "--vary", "CL=50:100:2",
                 "--metrics", "cmax", "--out", str(grid)]) == 0
    n_sessions = len(ketasim.read_course_toml(str(course), months=2).time_h)
    assert n_sessions == 9
    for path in (pop, grid):
        header = next(ln for ln in path.read_text().splitlines() if not ln.startswith("#"))
        assert header.endswith(f",cmax_s{n_sessions}")
    capsys.readouterr()
    table = tmp_path / "d.csv"
    table.write_text("time_h,amount_mg,route\n0,35,iv\n")
    assert main(["population", "--doses", str(table), "--months", "2", "--n", "2", "-q"]) == 1
    assert "a course TOML file, not the dose table" in capsys.readouterr().err


@pytest.mark.parametrize("cmd", ["simulate", "course", "compare", "population", "sweep",
                                 "schedule", "explore", "bench"])
def test_help_never_splits_a_name_at_its_hyphen(cmd, monkeypatch, capsys):
    # (argparse's wrapping had cut "esketamine-nasal@spravato" into "esketamine-" and
    # "nasal@spravato" in compare's description: a copied example failed)
    from ketasim.cli import main
    for width in (60, 72, 80, 100, 120):
        monkeypatch.setenv("COLUMNS", str(width))
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        text = capsys.readouterr().out
        assert not [ln for ln in text.splitlines() if re.search(r"[A-Za-z]-$", ln)], (cmd, width)


@pytest.mark.parametrize("kb", [1e-6, 1e-8, 1e-10])
@pytest.mark.parametrize("tau", [0.5, 12.0])
def test_steady_state_with_a_slow_compartment_keeps_every_digit(kb, tau):
    # a deep compartment emptying slowly next to 1/ii: I − Φ(τ) formed as a difference had
    # cancelled (1 − e^(−kb·τ) ≈ kb·τ), a relative error of about 1e-16 / (kb·τ) in every
    # compartment (4e-9 at kb = 1e-8 /h, 5e-7 at 1e-10 /h)
    D, k, kd = 100.0, 0.5, 0.1
    m = ketasim.Model.from_dict({
        "parameters": {"V": 10.0, "K": k, "KD": kd, "KB": kb, "VD": 100.0},
        "compartments": {"central": "V", "deep": "VD"},
        "flows": [{"from": "central", "to": "out", "k": "K"},
                  {"from": "central", "to": "deep", "k": "KD"},
                  {"from": "deep", "to": "out", "k": "KB"}],
        "routes": {"iv": {"to": "central"}}})
    doses = ketasim.Doses.from_records([dict(time_h=0, amount_mg=D, route="iv", ss=1,
                                             ii_h=tau)])
    r = ketasim.simulate(m, doses, np.array([0.0]), amounts=True)
    kc = k + kd
    central = D / -np.expm1(-kc * tau)                          # just after the dose
    deep = D * kd / (kc - kb) * (1 / np.expm1(kb * tau) - 1 / np.expm1(kc * tau))
    assert r.amount("central")[0] == pytest.approx(central, rel=1e-13)
    assert r.amount("deep")[0] == pytest.approx(deep, rel=1e-12)


def test_population_bands_output_is_checked_and_named_before_the_run(tmp_path, capsys,
                                                                     monkeypatch):
    """--bands that is --out, an input, or under a file had been found only when writing,
    after the whole run, as "output" rather than --bands."""
    P = importlib_module("ketasim.population")
    monkeypatch.setattr(P, "population", lambda *a, **k: pytest.fail("ran before the check"))
    (tmp_path / "b.json").write_text("{}")
    (tmp_path / "d.csv").write_text(GOOD_DOSES)
    a, d = str(tmp_path / "a.csv"), str(tmp_path / "d.csv")
    for argv, expected in (
            (["--out", a, "--bands", a], ["--out and --bands", "both write"]),
            (["--doses", d, "--bands", d], ["--bands", "same file as the --doses input"]),
            (["--bands", str(tmp_path / "b.json" / "x.csv")], ["--bands", "Not a folder"])):
        before = snapshot(tmp_path)
        rc, _, err = run_cli(["population", "--n", "3", "-q", *argv], capsys)
        assert rc == 1
        one_line_error(err, *expected)
        assert snapshot(tmp_path) == before


def test_standard_output_redirected_to_an_input_is_refused(tmp_path):
    """``--out - >> d.csv`` had appended the results to the dose table they were computed
    from (and ``schedule custom p.toml --out - >> p.toml`` the table to its phases file); it
    is refused, as ``cat d.csv >> d.csv`` is, and the input is left as it was."""
    env = dict(os.environ, PYTHONPATH=str(Path(ketasim.__file__).parents[1]))
    d, p = tmp_path / "d.csv", tmp_path / "p.toml"
    d.write_text(GOOD_DOSES)
    p.write_text(GOOD_COURSE)
    runs = ((["simulate", "--doses", str(d), "--until", "24", "--out", "-"], d, None,
             ["--out -", "--doses input", "d.csv"]),
            (["simulate", "--doses", "-", "--until", "24", "--out", "-"], d, d,
             ["--out -", "standard input", "--doses input '-'"]),
            (["schedule", "custom", str(p), "--out", "-"], p, None,
             ["--out -", "the phases input", "p.toml"]))
    _refused_appending_to_input(runs, env)


def _refused_appending_to_input(runs, env) -> None:
    """Each (argv, target, stdin, expected) run, its standard output appended to ``target``
    (standard input from ``stdin``, else nothing), fails in one line naming ``expected`` and
    leaves ``target`` as it was."""
    for argv, target, stdin, expected in runs:
        before = target.read_bytes()
        with open(target, "ab") as out, open(stdin or os.devnull, "rb") as inp:
            r = subprocess.run([sys.executable, "-m", "ketasim", *argv], stdin=inp, stdout=out,
                               stderr=subprocess.PIPE, text=True, env=env)
        assert r.returncode == 1, r.stderr
        one_line_error(r.stderr, *expected)
        assert target.read_bytes() == before


def test_what_a_command_prints_is_never_appended_to_its_input(tmp_path):
    """``ketasim course --doses d.csv >> d.csv`` had appended the summary to the dose table it
    was made from, ``presets m.toml >> m.toml`` the parameter list to the model file and
    ``schedule custom p.toml >> p.toml`` the table to its phases file (only ``--out -`` was
    checked); each is refused before any work, and the input left as it was."""
    env = dict(os.environ, PYTHONPATH=str(Path(ketasim.__file__).parents[1]))
    d, p, m = tmp_path / "d.csv", tmp_path / "p.toml", tmp_path / "m.toml"
    g = tmp_path / "g.csv"
    d.write_text("time_h,amount_mg,route,duration_h\n0,35,iv,0.6667\n48,35,iv,0.6667\n")
    g.write_text(GOOD_DOSES)
    p.write_text(GOOD_COURSE)
    m.write_text(GOOD_MODEL)
    out = str(tmp_path / "out")
    runs = ((["course", "--doses", str(d), "--out-dir", out], d, None,
             ["standard output", "the --doses input", "d.csv"]),
            (["compare", f"ketamine-iv@{d}", "ketamine-iv@standard-iv:B", "--out-dir", out],
             d, None, ["standard output", f"SPEC ketamine-iv@{d} input", "d.csv"]),
            (["simulate", "--model", str(m), "--doses", str(g), "--until", "24", "--out",
              str(tmp_path / "s.csv"), "--summary"], m, None,
             ["standard output", "the --model input", "m.toml"]),
            (["population", "--doses", "-", "--n", "2", "--months", "1"], d, d,
             ["standard output", "standard input", "--doses input '-'"]),
            (["presets", str(m)], m, None, ["standard output", "presets NAME input", "m.toml"]),
            (["schedule", "custom", str(p)], p, None,
             ["standard output", "the phases input", "p.toml"]))
    _refused_appending_to_input(runs, env)
    assert sorted(q.name for q in tmp_path.iterdir()) == ["d.csv", "g.csv", "m.toml", "p.toml"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_schedule_to_a_full_standard_output_names_it():
    """``schedule ... --out - > /dev/full`` had said 'No space left on device' alone, where
    simulate names standard output."""
    env = dict(os.environ, PYTHONPATH=str(Path(ketasim.__file__).parents[1]))
    with open("/dev/full", "wb") as out:
        r = subprocess.run([sys.executable, "-m", "ketasim", "schedule", "spravato", "--out",
                            "-"], stdout=out, stderr=subprocess.PIPE, text=True, env=env)
    assert r.returncode == 1
    one_line_error(r.stderr, "No space left on device: standard output")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("argv", [["presets"], ["presets", "ketamine-iv"],
                                  ["schedule", "standard-iv"],
                                  # (more than a buffer: the error comes inside the command)
                                  ["schedule", "standard-iv", "--months", "200"],
                                  ["--help"], ["explore", "--help"], ["--version"],
                                  ["schedule", "custom", "-h"]])
def test_a_table_or_help_printed_to_a_full_standard_output_names_it(argv):
    """``presets > /dev/full`` and the terminal table of ``schedule`` had said 'No space left
    on device' alone, naming nothing, where ``--out -`` names standard output; ``ketasim
    --help > /dev/full`` (and a command's --help, and --version) had ended with status 0 and
    nothing said (argparse drops an error writing them)."""
    env = dict(os.environ, PYTHONPATH=str(Path(ketasim.__file__).parents[1]))
    with open("/dev/full", "wb") as out:
        r = subprocess.run([sys.executable, "-m", "ketasim", *argv], stdout=out,
                           stderr=subprocess.PIPE, text=True, env=env)
    assert r.returncode == 1
    one_line_error(r.stderr, "No space left on device: standard output")


def test_help_to_a_closed_pipe_and_to_a_stream_is_as_before(monkeypatch, capsys):
    """The help to a reader that went away: no traceback; to a working stream: printed, 0."""
    proc = subprocess.Popen([sys.executable, "-m", "ketasim", "--help"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ,
                                     PYTHONPATH=str(Path(ketasim.__file__).parents[1])))
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert b"Traceback" not in err and b"Exception ignored" not in err, err
    rc, out, err = run_cli(["explore", "--help"], capsys)
    assert rc == 0 and out.startswith("usage: ketasim explore") and err == ""


def test_a_full_standard_output_is_named_in_process(monkeypatch, capsys):
    """The same through :func:`ketasim.cli.main`, with a stream that refuses every write."""
    import io

    class FullDisk(io.TextIOBase):
        def write(self, s):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(sys, "stdout", FullDisk())
    rc = main(["presets"])
    monkeypatch.undo()
    assert rc == 1
    one_line_error(capsys.readouterr().err, "No space left on device: standard output")


@pytest.mark.parametrize("argv, files", [
    (["course", "--months", "1", "--out-dir", "{d}"], ["course.png", "course.csv"]),
    (["compare", "ketamine-iv@standard-iv", "esketamine-iv@standard-iv", "--months", "1",
      "--out-dir", "{d}"], ["compare.png", "compare.csv"]),
    (["simulate", "--until", "24", "--summary", "--out", "{d}/s.csv"], ["s.csv"]),
    (["population", "--n", "3", "-q", "--out", "{d}/p.csv"], ["p.csv"]),
])
def test_a_summary_that_cannot_be_printed_leaves_the_files_as_they_were(
        tmp_path, monkeypatch, capsys, argv, files):
    """``ketasim course > /dev/full`` (and compare, simulate --summary and population with
    their summary on standard output) had written its files and then failed naming standard
    output, without saying the files were written: the summary is now printed first, so the
    command fails before a file is replaced, as a table for ``--out -`` does."""
    import io

    class FullDisk(io.TextIOBase):
        def write(self, s):
            raise OSError(28, "No space left on device")

    out = tmp_path / "o"
    out.mkdir()
    for f in files:
        (out / f).write_text("before")
    monkeypatch.setattr(sys, "stdout", FullDisk())
    rc = main([a.replace("{d}", str(out)) for a in argv])
    monkeypatch.undo()
    assert rc == 1
    one_line_error(capsys.readouterr().err, "No space left on device: standard output")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {f: b"before" for f in files}


@pytest.mark.parametrize("argv, option", [
    (["population", "--n", "3", "--out", "-", "--bands", "-"], "--bands"),
    (["population", "--n", "3", "--out", "-", "--plot", "-"], "--plot"),
    (["sweep", "--vary", "CL=10:20:2", "--vary", "V1=5:9:2", "--out", "-", "--plot", "-"],
     "--plot"),
    (["simulate", "--out", "-", "--plot", "-"], "--plot"),
])
def test_standard_output_for_an_option_that_writes_a_file_says_so(capsys, argv, option):
    """``--out - --bands -`` had been refused as "'-': expected a file ending in .csv", as if
    the name were misspelt: it now says that the option writes a file, not standard output."""
    rc, _, err = run_cli(argv, capsys)
    assert rc == 2
    assert f"argument {option}: '-': {option} writes a file, not standard output" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_line_break_in_a_file_name_stays_inside_the_tables_comment_header(tmp_path, capsys):
    """A --doses file named with a line break had ended the first ``#`` line of the
    population, bands and sweep tables: the rest of the name and of the line were read as the
    column names (``pandas.read_csv(path, comment="#")`` gave one column)."""
    d = tmp_path / "doses\nx.csv"
    d.write_text("time_h,amount_mg,route,duration_h\n0,35,iv,0.6667\n")
    pop, bands, sw = (str(tmp_path / f) for f in ("pop.csv", "bands.csv", "sweep.csv"))
    for argv in (["population", "--doses", str(d), "--n", "3", "-q", "--out", pop, "--bands",
                  bands],
                 ["sweep", "--doses", str(d), "--vary", "CL=50:60:2", "-q", "--out", sw]):
        rc, _, err = run_cli(argv, capsys)
        assert rc == 0, err
    for path, first in ((pop, "subject"), (bands, "time_h"), (sw, "CL")):
        lines = Path(path).read_text().splitlines()
        assert [ln[:1] for ln in lines[:3]] == ["#", "#", first[0]], lines[:3]
        assert "doses\\nx.csv" in lines[0]
        assert lines[2].split(",")[0] == first


def test_an_output_folder_that_is_a_broken_link_is_named_as_one(tmp_path, capsys):
    """A folder of an output that is a symbolic link to a missing folder had been reported,
    after the run, as "File exists: dl" (mkdir's words for the link); it is named as a broken
    link, with the option, before any work."""
    (tmp_path / "dl").symlink_to(tmp_path / "gone" / "dir")
    dl = str(tmp_path / "dl")
    for argv, option in ((["simulate", "--until", "24", "--out", f"{dl}/x.csv"], "--out"),
                         (["course", "--out-dir", f"{dl}/sub"], "--out-dir"),
                         (["population", "--n", "3", "-q", "--bands", f"{dl}/b.csv"],
                          "--bands")):
        rc, _, err = run_cli(argv, capsys)
        assert rc == 1
        one_line_error(err, option, "symbolic link", "gone/dir", "does not exist")
    with pytest.raises(KetasimInputError, match=r"output folder .*dl.* symbolic link .*does "
                                                r"not exist"):
        ketasim.write_doses(ketasim.Doses([0.0], [10.0], ["iv"]), f"{dl}/d.csv")
    assert sorted(os.listdir(tmp_path)) == ["dl"]


def test_a_terminal_without_the_summarys_characters_gets_plain_ones_not_an_error(tmp_path):
    """On an ASCII terminal (``PYTHONIOENCODING=ascii``) the summary's "–" and "×" had failed
    the command after its files were written: exit status 1, an internal error, and no word
    of the files. They are written as plain "-" and "x" instead, on standard output and, with
    ``--out -``, on standard error, the summary's columns aligned."""
    env = dict(os.environ, PYTHONIOENCODING="ascii",
               PYTHONPATH=str(Path(ketasim.__file__).parents[1]))
    out = tmp_path / "s.csv"
    for dest in (str(out), "-"):
        r = subprocess.run([sys.executable, "-m", "ketasim", "simulate", "--summary", "--until",
                            "48", "--out", dest], capture_output=True, text=True,
                           encoding="ascii", env=env)
        assert r.returncode == 0, r.stderr
        summary = r.stdout if dest != "-" else r.stderr
        assert "\\u" not in summary and "\n- 12 later sessions" in summary
        table = summary.splitlines()[1:3]
        assert table[0].startswith("session") and len(table[0]) == len(table[1])
        assert r.stderr.splitlines()[-1].startswith("wrote ")
    assert out.is_file()


def test_an_interrupt_after_the_files_are_written_does_not_say_none_were(tmp_path, capsys,
                                                                         monkeypatch):
    """Ctrl-C while a population's summary was printed, its table already in place, had been
    reported as "interrupted; no file was written". (The summary is now printed before the
    files are written: Ctrl-C just after they are in place.)"""
    from ketasim import cli_population

    def ctrl_c(*a, **k):
        raise KeyboardInterrupt

    write_some = cli_population._write_some

    def written_then_ctrl_c(*a, **k):
        write_some(*a, **k)
        raise KeyboardInterrupt

    out = tmp_path / "pop.csv"
    out.write_text(SENTINEL)
    monkeypatch.setattr(cli_population, "_write_some", written_then_ctrl_c)
    rc, _, err = run_cli(["population", "--n", "3", "-q", "--out", str(out)], capsys)
    assert rc == 130
    assert out.read_text() != SENTINEL and "no file was written" not in err, err
    monkeypatch.setattr(cli_population, "_write_some", write_some)
    monkeypatch.setattr(importlib_module("ketasim.population"), "population", ctrl_c)
    rc, _, err = run_cli(["population", "--n", "3", "-q", "--out", str(out)], capsys)
    assert rc == 130 and "no file was written" in err, err


def test_a_move_that_fails_names_the_users_file_not_the_temporary_one(tmp_path, monkeypatch,
                                                                      capsys):
    """A move refused by the system (a file of another user in a sticky folder such as /tmp:
    "Operation not permitted"; a mount point: "Device or resource busy") had been reported
    with the name of the temporary file, which no longer exists, instead of the output."""
    out = tmp_path / "run.csv"
    out.write_text(SENTINEL)

    def refused(src, dst):
        raise PermissionError(1, "Operation not permitted", str(src), None, str(dst))

    monkeypatch.setattr(kio.os, "replace", refused)
    rc, _, err = run_cli(["schedule", "standard-iv", "--out", str(out)], capsys)
    assert rc == 1
    one_line_error(err, "Operation not permitted", str(out))
    assert ".tmp" not in err and out.read_text() == SENTINEL
    assert os.listdir(tmp_path) == ["run.csv"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_an_output_that_is_a_pipe_is_refused_with_its_option_before_the_run(tmp_path, capsys,
                                                                           monkeypatch):
    """A named pipe (or a link to a device) as --out had been refused only when writing, after
    the whole run (a population of 100,000 subjects: 20 s), as "output"."""
    os.mkfifo(tmp_path / "p.csv")
    os.mkfifo(tmp_path / "p.json")
    (tmp_path / "null.csv").symlink_to(os.devnull)
    P = importlib_module("ketasim.population")
    monkeypatch.setattr(P, "population", lambda *a, **k: pytest.fail("ran before the check"))
    B = importlib_module("ketasim.bench")
    monkeypatch.setattr(B, "run_suite", lambda *a, **k: pytest.fail("ran before the check"))
    for argv, option, name in (
            (["population", "--n", "3", "-q", "--out", str(tmp_path / "p.csv")], "--out",
             "p.csv"),
            (["population", "--n", "3", "-q", "--bands", str(tmp_path / "null.csv")],
             "--bands", "null.csv"),
            (["bench", "--quick", "--only", "trivial", "--json", str(tmp_path / "p.json")],
             "--json", "p.json")):
        rc, _, err = run_cli(argv, capsys)
        assert rc == 1
        one_line_error(err, option, name, "not a regular file")
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_schedule_to_a_closed_standard_output_is_refused(monkeypatch, capsys):
    """``ketasim schedule standard-iv --out - >&-`` had ended in an internal error
    (AttributeError); it is refused in one line, as simulate refuses it."""
    monkeypatch.setattr(sys, "stdout", None)
    rc, _, err = run_cli(["schedule", "standard-iv", "--out", "-"], capsys)
    assert rc == 1
    one_line_error(err, "--out -", "standard output is closed")


@pytest.mark.parametrize("argv, what", [(["presets"], "the list"),
                                        (["presets", "ketamine-iv"], "ketamine-iv"),
                                        (["schedule", "standard-iv"], "--out")])
def test_a_listing_to_a_closed_standard_output_is_refused(monkeypatch, capsys, argv, what):
    """``ketasim presets >&-`` and ``schedule standard-iv >&-`` had ended with status 0 and
    nothing said: what they print had gone nowhere. Refused, as ``--out -`` is."""
    monkeypatch.setattr(sys, "stdout", None)
    rc, _, err = run_cli(argv, capsys)
    assert rc == 1
    one_line_error(err, "standard output is closed", what)


def test_with_standard_error_closed_standard_output_holds_only_the_table(monkeypatch, capsys):
    """With standard error closed (``2>&-``) every message had gone to standard output: the
    table of ``--out -`` ended in a line "wrote standard output (...)" (and the summary and
    warnings were mixed into it)."""
    monkeypatch.setattr(sys, "stderr", None)
    rc = main(["simulate", "--until", "2", "--summary", "--out", "-"])
    out = capsys.readouterr().out
    assert rc == 0 and sys.stderr is None
    lines = out.splitlines()
    assert lines[0].startswith("time_h,") and len(lines) == 22, lines[-3:]
    assert all(ln[:1].isdigit() for ln in lines[1:]), lines[-3:]


def test_a_table_that_cannot_go_to_standard_output_leaves_the_figure_as_it_was(
        tmp_path, monkeypatch, capsys):
    """``simulate --out - --plot p.png > full-disk/x.csv``: the figure had replaced p.png, and
    then the command failed on the table ("No space left on device", naming nothing)."""
    import io

    class FullDisk(io.TextIOBase):
        def write(self, s):
            raise OSError(28, "No space left on device")

    plot = tmp_path / "p.png"
    plot.write_bytes(b"old figure")
    monkeypatch.setattr(sys, "stdout", FullDisk())
    rc = main(["simulate", "--until", "24", "--out", "-", "--plot", str(plot)])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert rc == 1
    one_line_error(err, "No space left on device", "standard output")
    assert plot.read_bytes() == b"old figure" and os.listdir(tmp_path) == ["p.png"]


def test_parquet_without_pyarrows_parquet_module_is_refused_before_the_run(tmp_path, capsys,
                                                                           monkeypatch):
    """A pyarrow without its Parquet module (conda's pyarrow-core) had passed the check of
    --out x.parquet and failed after the whole run, as an internal error; a pyarrow that does
    not load (built for another numpy) had been reported as "invalid _table_out value"."""
    P = importlib_module("ketasim.population")
    monkeypatch.setattr(P, "population", lambda *a, **k: pytest.fail("ran before the check"))
    out = str(tmp_path / "p.parquet")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    rc, _, err = run_cli(["population", "--n", "3", "-q", "--out", out], capsys)
    assert rc == 2
    one_line_error(err, "--out", "p.parquet", "pip install 'ketasim[parquet]'",
                   "pyarrow.parquet")

    class Broken:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "pyarrow":
                raise ValueError("numpy.dtype size changed, may indicate binary "
                                 "incompatibility")

    for name in [m for m in sys.modules if m.split(".")[0] == "pyarrow"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [Broken(), *sys.meta_path])
    rc, _, err = run_cli(["sweep", "--vary", "CL=50:60:2", "-q", "--out", out], capsys)
    assert rc == 2
    one_line_error(err, "--out", "pip install 'ketasim[parquet]'", "binary incompatibility")
    assert list(tmp_path.iterdir()) == []


def test_standard_output_redirected_to_another_output_is_refused(tmp_path):
    """``simulate --out - --plot p.png > p.png``: the figure replaced the file standard output
    wrote to, so the table went to a file no longer there, and "wrote standard output" was
    said of it."""
    plot = tmp_path / "p.png"
    with open(plot, "wb") as out:
        r = subprocess.run([sys.executable, "-m", "ketasim", "simulate", "--until", "24",
                            "--out", "-", "--plot", str(plot)], stdout=out,
                           stderr=subprocess.PIPE, text=True,
                           env=dict(os.environ,
                                    PYTHONPATH=str(Path(ketasim.__file__).parents[1])))
    assert r.returncode == 1, r.stderr
    one_line_error(r.stderr, "--out - and --plot", "p.png", "different output files")
    assert plot.read_bytes() == b""


def test_an_output_linked_to_a_preset_is_refused(tmp_path, monkeypatch, capsys):
    """An output that is a link to ketasim's own preset file (a preset named by name is an
    input no option names) had replaced the installed preset with the results table."""
    from pathlib import Path

    import ketasim
    from ketasim.cli import main

    preset = Path(ketasim.__file__).resolve().parent / "presets" / "ketamine-iv.toml"
    before = preset.read_bytes()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "o.csv").symlink_to(preset)
    try:
        assert main(["simulate", "--model", "ketamine-iv", "--until", "2",
                     "--out", "o.csv"]) == 1
    finally:
        after = preset.read_bytes()
        if after != before:           # (the code before the fix: put the preset back)
            preset.write_bytes(before)
    assert after == before
    assert "leads to ketasim's own file" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["o.csv", "new/deep/o.csv"])
def test_an_output_in_a_folder_that_cannot_be_written_is_refused_before_the_run(
        tmp_path, capsys, monkeypatch, where):
    """An output in a read-only folder (a read-only file system, a folder without write
    permission) had been found only when the files were written, after the whole run."""
    import importlib

    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(kio.os, "access", lambda path, mode, *a, **k: False
                        if Path(path) == ro and mode & os.W_OK else real(path, mode, *a, **k))
    P = importlib.import_module("ketasim.population")
    monkeypatch.setattr(P, "population", lambda *a, **k: pytest.fail("ran before the check"))
    rc, _, err = run_cli(["population", "--n", "2", "--months", "1", "--out",
                          str(ro / where), "-q"], capsys)
    assert rc == 1
    one_line_error(err, "--out", "cannot be written")
    assert list(ro.iterdir()) == []


def test_results_can_be_compared_kept_in_lists_and_used_as_keys():
    """Results are frozen dataclasses of arrays: the generated == compared the arrays and
    raised NumPy's 'truth value of an array ... is ambiguous' (so did ``r in [other, r]``),
    and hash() raised 'unhashable type'. A result is now equal only to itself."""
    from ketasim.metrics import course_metrics
    from ketasim.plotting import run_course

    d = ketasim.Doses.single(35.0, "iv", duration_h=0.5)

    def made(k):
        r = ketasim.simulate("ketamine-iv", d, [0.0, 1.0, 2.0 + k])
        return {"Result": r, "CourseMetrics": course_metrics(r),
                "PopulationResult": ketasim.population("ketamine-iv", d, 2 + k,
                                                       metrics=["cmax"], bands=[1.0, 2.0]),
                "SweepResult": ketasim.sweep("ketamine-iv", d, {"CL": [90.0, 100.0 + k]},
                                             metrics=["cmax"]),
                "CourseRun": run_course("ketamine-iv", d, weight_kg=70.0 + k)}
    a, b = made(0), made(1)
    a["Bands"], b["Bands"] = a["PopulationResult"].bands, b["PopulationResult"].bands
    for name in a:
        x, y = a[name], b[name]
        assert x == x and x != y and x in [y, x] and [y, x].index(x) == 1, name
        assert {x: 1, y: 2}[x] == 1, name


def test_a_results_dataframe_costs_about_its_own_size_and_is_refused_when_it_cannot_fit(
        monkeypatch):
    """Result.to_dataframe() held three copies of the table at once (the outputs in CSV units,
    the row-major table, a subject column stacked onto it) and pandas copied the columns again:
    a 400-MB DataFrame peaked 1.2 GB above the result, and one too large for memory was not
    refused but ran out of it. The table is now filled column by column and handed to pandas
    as it is, and checked against the memory first."""
    import tracemalloc

    pytest.importorskip("pandas")
    r = ketasim.simulate("ketamine-iv", ketasim.Doses.single(35.0, "iv"),
                         ketasim.time_grid(100, 0.05), params={"CL": np.linspace(80, 120, 20)})
    N, R, T = r.data.shape
    table = N * T * (R + 2) * 8
    tracemalloc.start()
    try:
        df = r.to_dataframe()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.3 * table                       # (it had been about 3x)
    assert list(df.columns[:3]) == ["subject", "time_h", "s_central_ng_ml"]
    assert np.array_equal(df["plasma_ng_ml"].to_numpy(),
                          r.concentration("plasma").ravel())
    assert df["subject"].dtype == np.int64
    eng = importlib.import_module("ketasim.engine")
    monkeypatch.setattr(eng, "_available_bytes", lambda: table)
    with pytest.raises(KetasimInputError, match=r"table: 20 subjects x 2,001 times = 40,020 "
                                                r"rows x 26 columns"):
        r.to_dataframe()


def test_a_long_dose_table_is_written_in_time_in_proportion_to_its_rows(monkeypatch):
    """Each row had looked over the whole table for its optional columns: `schedule
    standard-iv --months 100000` (108,712 sessions) took 12 s to write, in the square of
    its rows."""
    from ketasim.dosing import Doses, doses_csv_text

    d = ketasim.standard_iv_course(months=300)
    calls = []
    scan = Doses._optional_columns
    monkeypatch.setattr(Doses, "_optional_columns", lambda self: calls.append(1) or scan(self))
    text = doses_csv_text(d)
    assert text.count("\n") == len(d) + 1 and len(d) > 300
    assert len(calls) <= 2

@pytest.mark.parametrize("argv, expected", [
    (["simulate", "--until", "2e7", "--step", "1e6", "--out", "{o}"],
     "--until: the run ends at 2e+07 h, beyond the 1e+07-h limit (about 1,100 years) of the "
     "schematic response"),
    (["simulate", "--doses", "{late}", "--step", "1e6", "--out", "{o}"],
     "--doses {late} (a run ends 28 days after the last dose starts): the run ends at 1e+09 h"),
    (["simulate", "--model", "{m}", "--doses", "{late}", "--step", "1e6", "--summary",
      "--out", "{o}"], "of the exact metrics of --summary"),
    (["population", "--n", "2", "-q", "--months", "1e6", "--out", "{o}"],
     "--months: exact metrics up to 7.305e+08 h are beyond"),
    (["population", "--n", "2", "-q", "--doses", "{late}", "--out", "{o}"],
     "--doses {late} (a run ends 28 days after the last dose starts): exact metrics"),
    (["sweep", "--vary", "months=1:1e6:2", "-q", "--out", "{o}"],
     "sweep at months = 1e+06: doses (a run ends 28 days after the last dose starts): exact "
     "metrics up to 7.305e+08 h"),
    (["sweep", "--vary", "CL=50:60:2", "-q", "--doses", "{late}", "--out", "{o}"],
     "--doses {late} (a run ends"),
])
def test_a_run_beyond_the_horizon_limit_names_the_option_it_comes_from(argv, expected,
                                                                      tmp_path, capsys):
    """--until, --months or a dose table reaching past the 1e7-h limit of the schematic
    response and the exact metrics had been refused as 'times: ...' or 'horizon_h: ...',
    names of the Python API that the command line does not have."""
    late = tmp_path / "late.csv"
    late.write_text("time_h,amount_mg,route\n1e9,35,iv\n")
    m = tmp_path / "m.toml"
    m.write_text(GOOD_MODEL)
    out = tmp_path / "o.csv"
    argv = [a.replace("{o}", str(out)).replace("{late}", str(late)).replace("{m}", str(m))
            for a in argv]
    rc, _, err = run_cli(argv, capsys)
    assert rc == 1 and not out.exists()
    one_line_error(err, expected.replace("{late}", str(late)))
    assert "horizon_h" not in err and "times:" not in err


@pytest.mark.filterwarnings("ignore:horizon_h = 2e")
def test_a_pk_only_table_runs_to_any_until_and_the_api_names_its_own_arguments(tmp_path,
                                                                              capsys):
    m = tmp_path / "m.toml"
    m.write_text(GOOD_MODEL)
    out = tmp_path / "o.csv"
    rc, _, err = run_cli(["simulate", "--model", str(m), "--until", "2e7", "--step", "1e6",
                          "--out", str(out)], capsys)
    assert rc == 0 and out.exists(), err
    late = ketasim.Doses([1e9], [35.0], ["iv"])
    with pytest.raises(KetasimInputError, match=r"^doses \(a run ends 28 days after the last "
                       r"dose starts\): exact metrics up to 1e\+09 h"):
        ketasim.population("ketamine-iv", late, 2)
    with pytest.raises(KetasimInputError, match="^horizon_h: exact metrics up to 2e"):
        ketasim.population("ketamine-iv", late, 2, horizon_h=2e7)

@pytest.mark.parametrize("argv, fragment", [
    (["simulate", "--doses", "", "--out", "{t}/o.csv"], "--doses: got '', expected a course name"),
    (["population", "--n", "2", "-q", "--doses", " "], "--doses: got ' ', expected a course"),
    (["population", "--n", "2", "-q", "--covariates", "", "--out", "{t}/o.csv"],
     "--covariates: got '', expected a CSV file"),
    (["schedule", "custom", "", "--out", "{t}/o.csv"], "course: got '', expected a TOML file"),
])
def test_an_empty_file_name_is_named_as_given(argv, fragment, tmp_path, capsys):
    """An empty --doses or course file had been refused as "'.' is a folder" (the empty path is
    the current folder), a value the user never gave; an empty --covariates had been taken
    for none, and the run went on without the covariates."""
    rc, _, err = run_cli([a.replace("{t}", str(tmp_path)) for a in argv], capsys)
    assert rc == 1
    one_line_error(err, fragment)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(KetasimInputError, match="^doses: got '', expected a course name"):
        ketasim.simulate("ketamine-iv", "", [0.0, 1.0])
    with pytest.raises(KetasimInputError, match="^doses: got '', expected a CSV path"):
        ketasim.read_doses("")


@pytest.mark.parametrize("value", ["=5", " =5"])
@pytest.mark.parametrize("command", [["simulate", "--until", "1"], ["population", "--n", "2"]])
def test_a_param_without_a_name_is_a_usage_error(value, command, tmp_path, capsys):
    """--param =5 had been refused after the inputs were read, as "unknown name ''"."""
    rc, _, err = run_cli(command + ["--param", value, "--out", str(tmp_path / "o.csv")], capsys)
    assert rc == 2 and f"argument --param: {value!r}: the name is empty; expected NAME=VALUE" \
        in err, err
    assert list(tmp_path.iterdir()) == []

@pytest.mark.parametrize("column, value, model, fragment", [
    ("CL", "-5", None, "cl = CL evaluated to -5 L/h for subject 7 of {src}"),
    ("WT", "0", None, "weight_kg: got 0 for subject 7 of {src}"),
    ("AGE", "100", "esketamine-nasal", "AGE (the age_y covariate) (subject 7 of {src}): got 100"),
])
def test_a_dose_tables_subject_is_named_by_its_id(column, value, model, fragment, tmp_path):
    """A bad covariate of a dataset's subject had been named by its place ('for subject 2 of
    3'; AGE: 'subject 1, counted from 0 as in the subject column', whose column reads 7), or
    not at all (a weight of 0)."""
    src = tmp_path / "ds.csv"
    route = "intranasal" if model else "iv"
    src.write_text(f"ID,TIME,AMT,CMT,{column}\n1,0,56,{route},70\n7,0,56,{route},{value}\n"
                   f"9,0,56,{route},60\n")
    m = model or ketasim.Model.from_dict(tomllib.loads(GOOD_MODEL))
    with pytest.raises(KetasimInputError) as exc:
        ketasim.simulate(m, ketasim.read_doses(src), [0.0, 1.0])
    assert fragment.format(src=src) in str(exc.value)


def test_a_single_subjects_value_is_not_given_a_subject_number():
    spec = tomllib.loads(GOOD_MODEL)
    spec["derived"]["X"] = "V / CL"
    with pytest.raises(KetasimInputError, match=r"derived X = V / CL evaluated to inf; "):
        ketasim.simulate(ketasim.Model.from_dict(spec), ketasim.Doses.single(1.0, "iv"),
                         [0.0, 1.0], params={"CL": 0.0})

@pytest.mark.parametrize("argv, covs, fragment", [
    (["--age", "50"], None, "--age: model 'ketamine-iv' has no age covariate"),
    (["--covariates", "{c}"], "age_y\n50\n60\n",
     "--covariates: {c}: column age_y: model 'ketamine-iv' has no age_y covariate"),
    (["--covariates", "{c}"], "weight_kg\n60\n80\n",
     "--covariates: per-subject weights with the mg/kg course standard-iv"),
    # a header as a dose table's is read: it had been "unknown column 'weight_kg;age_y'" and
    # "unknown column ''"
    (["--covariates", "{c}"], "# ages\nweight_kg;age_y\n60;50\n80;60\n",
     "--covariates: {c}: line 2: one column 'weight_kg;age_y': the file seems to separate its "
     "columns with semicolons; expected commas"),
    (["--covariates", "{c}"], "weight_kg,\n60,\n80,\n",
     "--covariates: {c}: line 1: an empty column name in 'weight_kg,' (a comma too many, at "
     "the end of the line?)"),
])
def test_population_covariate_messages_name_the_option(argv, covs, fragment, tmp_path,
                                                       capsys):
    """--age and a --covariates column on a model without that covariate had been refused
    as 'covariates: model ... does not use 'age_y'', and per-subject weights with the course
    named standard-iv as 'weight_kg: ... give one weight', names of the Python API."""
    c = tmp_path / "c.csv"
    if covs:
        c.write_text(covs)
    rc, _, err = run_cli(["population", "--n", "2", "-q"] + [a.replace("{c}", str(c))
                                                              for a in argv], capsys)
    assert rc == 1
    one_line_error(err, fragment.replace("{c}", str(c)))

@pytest.mark.parametrize("argv, fragment", [
    (["simulate", "--model", "{t}", "--out", "{t}/o.csv"], "--model: '{t}' is a folder"),
    (["population", "--n", "2", "-q", "--scheduler", "foo"], "--scheduler: got 'foo'"),
    (["simulate", "--step", "1e-9", "--until", "1", "--out", "{t}/o.csv"],
     "--step: until 1 h / step 1e-09 h gives 1,000,000,001 time points"),
    (["simulate", "--occupancy-calibration", "nope", "--until", "1", "--out", "{t}/o.csv"],
     "--occupancy-calibration: unknown calibration 'nope'"),
])
def test_messages_about_an_option_name_the_option(argv, fragment, tmp_path, capsys):
    """Such messages had named the Python API's argument ('model:', 'scheduler:', 'step:',
    'occupancy_calibration:'), where --doses was already named as the option."""
    t = str(tmp_path)
    rc, _, err = run_cli([a.replace("{t}", t) for a in argv], capsys)
    assert rc == 1
    one_line_error(err, fragment.replace("{t}", t))
    assert list(tmp_path.iterdir()) == []


def test_in_asks_a_result_or_table_for_a_name():
    """result["plasma"] reads an output, but "plasma" in result had tried result[0] and
    failed as "output: unknown name 0" (a population's table: "no column 0"); list(result)
    too."""
    r = ketasim.simulate("ketamine-iv", "standard-iv", [0.0, 1.0])
    assert "plasma" in r and "occupancy" in r and "nonsense" not in r and 0 not in r
    with pytest.raises(TypeError):
        list(r)
    p = ketasim.population("ketamine-iv", "standard-iv", 2, metrics=("cmax",
                           "time_above_occ_0.3"), progress=False)
    assert "cmax" in p and "time_above_occ_0.30" in p and "auc" not in p and 0 not in p
    with pytest.raises(TypeError):
        list(p)


def test_a_command_in_a_deleted_folder_says_so_before_any_work(tmp_path, monkeypatch, capsys):
    # `cd build && rm -rf ../build` in another terminal, then `ketasim ...`: the outputs had
    # been refused only when written, after the run, as "No such file or directory: p.csv"
    import sys

    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    P = sys.modules["ketasim.population"]     # the module (ketasim.population is the function)
    ran = []
    monkeypatch.setattr(P, "_run_chunk", lambda *a: ran.append(a))
    for argv in (["population", "--n", "2", "-q", "--out", "p.csv"],
                 ["course", "--out-dir", "out"], ["schedule", "standard-iv", "--out", "d.csv"]):
        assert main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("ketasim: error: --out") and "\n" not in err
        assert "the current folder, which has been deleted" in err
    assert ran == []
    assert list(tmp_path.iterdir()) == []

    # what fails on the way for want of the folder (the JIT compiler names its source
    # relative to it) is named as that, not as a "No such file or directory" with no name
    def compile_fails(*a):
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(P, "_run_chunk", compile_fails)
    assert main(["population", "--n", "2", "-q", "--metrics", "cmax", "--months", "1"]) == 1
    assert capsys.readouterr().err.strip() == (
        "ketasim: error: the current folder has been deleted; expected to be run in a folder "
        "that exists (change to one)")


def test_a_home_that_cannot_be_written_leaves_no_matplotlib_folder_behind(tmp_path):
    """Where matplotlib's own folders (~/.config/matplotlib, ~/.cache/matplotlib) cannot be
    made (a read-only home, a container's user without one), matplotlib made a new temporary
    folder in each process that drew, with two lines of warnings; the figure helper's, which
    ends without Python's clean-up, was left in the temporary folder by every run. The
    program keeps matplotlib's settings in its own temporary folder instead, once."""
    blocked = tmp_path / "file"
    blocked.write_text("a file where the home's folders would be")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, XDG_CONFIG_HOME=str(blocked / "config"),
               XDG_CACHE_HOME=str(blocked / "cache"), TMPDIR=str(tmp),
               PYTHONPATH=str(Path(ketasim.__file__).parents[1]))
    env.pop("MPLCONFIGDIR", None)
    for _ in range(2):
        r = subprocess.run([sys.executable, "-m", "ketasim", "simulate", "--until", "24",
                            "--out", str(tmp_path / "s.csv"), "--plot",
                            str(tmp_path / "s.png")], capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr
        assert r.stderr.startswith("wrote ") and "atplotlib" not in r.stderr, r.stderr
        assert sorted(p.name for p in tmp.iterdir()) == [f"ketasim-{os.getuid()}"]
    assert (tmp / f"ketasim-{os.getuid()}" / "matplotlib").is_dir()


def test_a_file_name_that_is_not_utf8_is_written_as_its_escape(tmp_path, capsys):
    """A dose table named with bytes that are not UTF-8 (b"d\\xff.csv", as Linux allows) had
    failed population, sweep and compare after the whole run, as an internal error: the name,
    in a table's title line, a compare label or a figure's title, could not be encoded. It is
    written as the escape standard error shows ('d\\udcff.csv')."""
    name = os.fsdecode(b"d\xff.csv")
    d = tmp_path / name
    d.write_text("time_h,amount_mg,route,duration_h\n0,35,iv,0.6667\n48,35,iv,0.6667\n")
    shown = "d\\udcff.csv"
    pop, png = tmp_path / "p.csv", tmp_path / "p.png"
    assert main(["population", "--doses", str(d), "--n", "2", "--metrics", "cmax", "-q",
                 "--out", str(pop), "--plot", str(png)]) == 0, capsys.readouterr().err
    assert shown in pop.read_text(encoding="utf-8").splitlines()[0] and png.is_file()
    sw, heat = tmp_path / "s.csv", tmp_path / "s.png"
    assert main(["sweep", "--doses", str(d), "--metrics", "cmax", "-q", "--vary", "CL=50:60:2",
                 "--vary", "V1=50:60:2", "--out", str(sw), "--plot", str(heat)]) == 0, \
        capsys.readouterr().err
    assert shown in sw.read_text(encoding="utf-8").splitlines()[0] and heat.is_file()
    out = tmp_path / "cmp"
    assert main(["compare", f"ketamine-iv@{d}", "ketamine-iv@standard-iv:B", "--months", "1",
                 "--out-dir", str(out)]) == 0, capsys.readouterr().err
    assert shown in (out / "compare.csv").read_text(encoding="utf-8").splitlines()[0]
    assert (out / "compare.png").is_file()


@pytest.mark.parametrize("target", ["new.csv", "sub/new.csv"])
def test_an_output_linked_into_a_folder_that_cannot_be_written_is_refused_before_the_run(
        tmp_path, capsys, monkeypatch, target):
    """An output that is a link to a file yet to be written (``latest.csv`` -> a share) is
    written where the link leads; when that folder could not be written, the folder checked
    had been the link's own, and the failure came only when writing, after the whole run."""
    import importlib

    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(kio.os, "access", lambda path, mode, *a, **k: False
                        if Path(path) == ro and mode & os.W_OK else real(path, mode, *a, **k))
    link = tmp_path / "latest.csv"
    link.symlink_to(ro / target)
    P = importlib.import_module("ketasim.population")
    monkeypatch.setattr(P, "population", lambda *a, **k: pytest.fail("ran before the check"))
    rc, _, err = run_cli(["population", "--n", "2", "--months", "1", "--out", str(link), "-q"],
                         capsys)
    assert rc == 1
    one_line_error(err, "--out", "latest.csv (a link to", "cannot be written")
    assert list(ro.iterdir()) == [] and link.is_symlink()


def test_no_folder_for_the_compiled_kernels_names_numba_cache_dir(tmp_path, capsys,
                                                                 monkeypatch):
    """With the package read-only, no home folder that can be written and NUMBA_CACHE_DIR set
    to a folder that cannot be written either, Numba refuses to load a kernel ('cannot cache
    function ...: no locator available'): that had been an internal error."""
    import importlib

    P = importlib.import_module("ketasim.population")

    def no_locator(*a, **k):
        raise RuntimeError("cannot cache function '_matmul': no locator available for file "
                           "'/usr/lib/python3/site-packages/ketasim/_kernels.py'")

    monkeypatch.setattr(P, "population", no_locator)
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/read-only/cache")
    rc, _, err = run_cli(["population", "--n", "2", "--months", "1", "-q"], capsys)
    assert rc == 1
    one_line_error(err, "compiled kernels", "NUMBA_CACHE_DIR (environment) '/read-only/cache' "
                   "cannot be written")


def test_an_input_named_in_a_deleted_folder_says_the_folder_is_gone(tmp_path, monkeypatch,
                                                                      capsys):
    """A relative input in a current folder that has been deleted had been 'not found' alone,
    while `ls` in the same terminal shows the file was never there to be found."""
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    for argv, field in ((["simulate", "--doses", "d.csv", "--out", "-"], "--doses"),
                        (["population", "--n", "2", "--covariates", "cov.csv", "-q"],
                         "--covariates"),
                        (["presets", "m.toml"], "presets NAME"),
                        (["schedule", "custom", "c.toml"], "course"),
                        (["simulate", "--model", "mine", "--out", str(tmp_path / "s.csv")],
                         "--model")):
        assert main(argv) == 1
        err = capsys.readouterr().err
        one_line_error(err, field, "the current folder, where it would be, has been deleted")
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "--doses", "nope.csv", "--out", "-"]) == 1
    assert capsys.readouterr().err.strip() == "ketasim: error: --doses: file 'nope.csv' not found"


@pytest.mark.parametrize("argv", [
    ["simulate", "--doses", "-", "--out", "{t}/s.csv"],
    ["population", "--n", "2", "-q", "--doses", "-"],
    ["compare", "ketamine-iv@-", "ketamine-iv@standard-iv:B", "--out-dir", "{t}/c"]])
def test_doses_from_a_closed_standard_input_are_one_line(argv, tmp_path, monkeypatch, capsys):
    """``--doses -`` with standard input closed (``<&-``) had been an internal error
    (AttributeError: 'NoneType' object has no attribute 'buffer'), where a course file from a
    closed standard input was already one line."""
    monkeypatch.setattr(sys, "stdin", None)
    rc, _, err = run_cli([a.replace("{t}", str(tmp_path)) for a in argv], capsys)
    assert rc == 1
    one_line_error(err, "standard input is closed", "a CSV dose table")
    assert list(tmp_path.iterdir()) == []


def test_a_heat_map_axis_over_the_course_length_does_not_repeat_its_name_as_its_unit():
    """A sweep over months had its axis labelled 'months (months)'; dose_mg_per_kg keeps its
    unit, 'dose_mg_per_kg (mg/kg)'."""
    import matplotlib.pyplot as plt

    from ketasim.cli_population import plot_heatmap

    res = ketasim.sweep("ketamine-iv", "standard-iv",
                        [("dose_mg_per_kg", np.array([0.25, 0.5])),
                         ("months", np.array([1.0, 2.0]))],
                        metrics=("cmax",), horizon_h=None)
    fig = plot_heatmap(res, "cmax", "t")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "months"
    assert ax.get_ylabel() == "dose_mg_per_kg (mg/kg)"
    plt.close(fig)


@pytest.mark.parametrize("argv", [["presets", "x" * 5000],
                                  ["simulate", "--doses", "x" * 5000, "--out", "a.csv"],
                                  ["schedule", "custom", "x" * 5000]])
def test_a_file_name_too_long_is_one_short_line_naming_the_argument(argv, capsys, tmp_path,
                                                                     monkeypatch):
    """A path the system refuses as too long had printed its whole name (5,000 characters)
    and no argument: "File name too long: xxxx..."."""
    from ketasim.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and len(err) < 300, err[:400]
    assert "file name too long" in err and "5,000 characters" in err
    assert err.split(": ")[2] in ("NAME", "--doses", "phases"), err


def test_an_output_name_too_long_is_one_short_line(capsys, tmp_path, monkeypatch):
    """--out with a name the system refuses as too long had its whole name (5,000
    characters) printed in the usage error."""
    from ketasim.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["simulate", "--out", "x" * 5000 + "/a.csv"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert len(err) < 300 and "argument --out" in err and "(5,006 characters)" in err, err[:400]
