"""Fuzzing the model, dose-table and course parsers (and simulate's arguments) with hypothesis.

Whatever the input, ketasim either works or raises its one documented error type,
:class:`ketasim.KetasimInputError` (a ValueError). numpy warnings count as failures too: they
would be extra lines on a user's terminal.
"""

from __future__ import annotations

import copy
import io
import math
import tomllib
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

import ketasim
from ketasim import KetasimInputError
from ketasim.courses import read_course_toml
from ketasim.dosing import COLUMNS

from test_bad_inputs import GOOD_COURSE, GOOD_DOSES, GOOD_MODEL

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                       HealthCheck.function_scoped_fixture])
GOOD_SPEC = tomllib.loads(GOOD_MODEL)
TIMES = np.linspace(0.0, 24.0, 25)


@pytest.fixture(autouse=True)
def warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # Numba's own hint while it compiles the kernels (first run on a fresh cache only)
        warnings.filterwarnings("ignore", message=r".*is faster on contiguous arrays")
        # ketasim's own warnings are documented outcomes, as its errors are (a dose table
        # with route 1, a compartment's number, is warned about: it goes in whole)
        warnings.filterwarnings("ignore", category=ketasim.KetasimWarning)
        yield


def only_documented_errors(fn, *args, **kwargs):
    """Call fn; a KetasimInputError is fine (and must say something), anything else fails."""
    try:
        out = fn(*args, **kwargs)
    except KetasimInputError as exc:
        assert isinstance(exc, ValueError) and str(exc).strip()
        assert "\n" not in str(exc).strip(), "an error message must be one line"
        event(f"{fn.__name__}: KetasimInputError")
        return None
    event(f"{fn.__name__}: accepted")
    return out


def try_simulate(model, doses=None):
    doses = doses if doses is not None else ketasim.Doses(
        [0.0, 2.0], [10.0, 5.0], [next(iter(model.routes), "iv")] * 2, [0.0, 1.0])
    r = only_documented_errors(ketasim.simulate, model, doses, TIMES, amounts=True)
    if r is not None:
        assert np.all(np.isfinite(r.data))
    return r


# ------------------------------------------------------------------------------ values
NAMES = ["depot", "central", "out", "ce", "CL", "V", "KA", "F", "KE0", "K10", "iv", "oral",
         "AMT", "WT", "centrl", "", " ", "1x", "a b", "é", "__class__"]
EXPRS = ["CL / V", "KA * 2", "exp(-KA)", "log(0)", "1 / 0", "V ** 400", "min(CL, V)",
         "max(CL)", "CL +", "__import__('os')", "(CL).real", "CL if V else KA", "[1]",
         "1e309", "-1", "0", "AMT / 28", "sqrt(-1)", "abs(-CL)", "KA * 1e9", "WT / 0"]
scalars = st.one_of(
    st.integers(-10, 10), st.integers(-2**70, 2**70), st.sampled_from([2**63, -2**63, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, 1e-320, 1e308]),
    st.booleans(), st.none(), st.sampled_from(NAMES), st.sampled_from(EXPRS),
    st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.one_of(st.sampled_from(NAMES),
                                                           st.text(max_size=6), st.integers()),
                                                 inner, max_size=3)), max_leaves=6)


def paths(obj, prefix=()):
    """Every (path, value) inside nested dicts and lists."""
    yield prefix, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from paths(v, prefix + (i,))


ALL_PATHS = [p for p, _ in paths(GOOD_SPEC) if p]


plausible = st.one_of(st.floats(0.0, 1e4), st.floats(1e-6, 1.0), st.sampled_from(
    ["depot", "central", "ce", "CL", "V", "KA", "F", "KE0", "K10", "CL / V", "KA * 2",
     "min(F, 1)", "AMT / 100", "WT / 70"]))


@st.composite
def mutated_specs(draw):
    spec = copy.deepcopy(GOOD_SPEC)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(ALL_PATHS))
        parent = spec
        try:
            for key in path[:-1]:
                parent = parent[key]
            leaf = path[-1]
            action = draw(st.sampled_from(["set", "set", "delete", "rename"]))
            if action == "set":
                parent[leaf] = draw(st.one_of(plausible, plausible, values))
            elif action == "delete":
                del parent[leaf]
            elif isinstance(parent, dict):
                parent[draw(st.sampled_from(NAMES))] = parent.pop(leaf)
        except (KeyError, IndexError, TypeError):
            pass   # an earlier mutation removed or replaced part of the path
    return spec


@settings(max_examples=300, **SETTINGS)
@given(mutated_specs())
def test_fuzz_model_dict(spec):
    model = only_documented_errors(ketasim.Model.from_dict, spec)
    if model is not None:
        try_simulate(model)


# ------------------------------------------------------------------------------ model text
LINES = GOOD_MODEL.splitlines()
TOKENS = ["=", "[", "]", "[[", "]]", '"', "'", "{", "}", ",", "#", "\\", "\n", "-", ".", "e",
          "nan", "inf", "0", "1e999", "true", "depot", "central", "out", "\x00", "\u00e9",
          '"""', "\t", " "]


@st.composite
def mutated_model_text(draw):
    lines = list(LINES)
    for _ in range(draw(st.integers(1, 5))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["token", "token", "delete", "duplicate", "swap", "replace"]))
        if op == "token":
            line = lines[i]
            j = draw(st.integers(0, len(line)))
            cut = draw(st.integers(0, 3))
            lines[i] = line[:j] + draw(st.sampled_from(TOKENS)) + line[j + cut:]
        elif op == "delete" and len(lines) > 1:
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            k = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[k] = lines[k], lines[i]
        else:
            key = lines[i].split("=")[0] if "=" in lines[i] else "x "
            lines[i] = f"{key}= {draw(st.sampled_from(EXPRS + NAMES))!r}".replace("'", '"')
    return "\n".join(lines) + "\n"


@settings(max_examples=300, **SETTINGS)
@given(mutated_model_text())
def test_fuzz_model_file_text(tmp_path, text):
    path = tmp_path / "fuzz.toml"
    path.write_text(text, encoding="utf-8")
    model = only_documented_errors(ketasim.load_model, str(path))
    if model is not None:
        try_simulate(model)


@settings(max_examples=150, **SETTINGS)
@given(st.one_of(st.binary(max_size=300),
                 st.binary(max_size=200).map(lambda b: GOOD_MODEL.encode()[:150] + b)))
def test_fuzz_model_file_bytes(tmp_path, data):
    path = tmp_path / "fuzz.toml"
    path.write_bytes(data)
    only_documented_errors(ketasim.load_model, str(path))


# ------------------------------------------------------------------------------ dose tables
CELLS = ["0", "1", "-1", "2.5", "1e3", "1e999", "nan", "inf", "-inf", "", " ", "abc", "iv",
         "oral", "ivv", "IV", "0x10", "1_000", "١", "1,5", "1e-320", "99999999999", "1e30",
         '"1"', "'iv'", "\u00e9", "#", "true", "3.", ".5", "+2", "1e8"]
VALID = {"time_h": ["0", "1", "2.5", "12", "0.25", "23.9"],
         "amount_mg": ["0", "10", "1e3", "0.5"], "route": ["iv", "oral"],
         "duration_h": ["0", "", "0.5", "2"], "addl": ["0", "", "1", "3"],
         "ii_h": ["0", "", "4", "12.5"]}
HEADERS = list(COLUMNS) + ["ammount_mg", "time", "Time_h", "", "route ", "extra"]


@st.composite
def dose_csv(draw):
    header = draw(st.lists(st.sampled_from(HEADERS), min_size=0, max_size=7))
    if draw(st.booleans()):
        header = draw(st.permutations(["time_h", "amount_mg", "route"] + draw(
            st.lists(st.sampled_from(["duration_h", "addl", "ii_h"]), unique=True))))
    rows = []
    for _ in range(draw(st.integers(0, 5))):
        width = len(header) + draw(st.sampled_from([0] * 8 + [-1, 1]))
        rows.append(",".join(draw(st.sampled_from(CELLS)) if draw(st.integers(0, 9)) == 0
                             else draw(st.sampled_from(VALID.get(h, CELLS)))
                             for h in (header + ["x"] * 2)[:max(width, 0)]))
    if draw(st.booleans()):
        rows = [",".join(draw(st.sampled_from(VALID[h])) if h in VALID else "1" for h in header)
                for _ in range(draw(st.integers(1, 4)))] + rows
    sep = draw(st.sampled_from(["\n", "\r\n"]))
    text = sep.join([",".join(header)] + rows) + draw(st.sampled_from(["", sep]))
    if draw(st.integers(0, 6)) == 0:      # a stray byte sequence
        return text.encode() + draw(st.binary(min_size=1, max_size=8))
    return text.encode(draw(st.sampled_from(["utf-8", "utf-8-sig"])))


@settings(max_examples=300, **SETTINGS)
@given(dose_csv())
def test_fuzz_dose_table(tmp_path, data):
    path = tmp_path / "doses.csv"
    path.write_bytes(data)
    doses = only_documented_errors(ketasim.read_doses, str(path))
    also = only_documented_errors(ketasim.read_doses, io.BytesIO(data))
    assert (doses is None) == (also is None)
    if doses is not None:
        try_simulate(ketasim.Model.from_dict(GOOD_SPEC), doses)


@settings(max_examples=100, **SETTINGS)
@given(st.binary(max_size=300))
def test_fuzz_dose_table_bytes(tmp_path, data):
    path = tmp_path / "doses.csv"
    path.write_bytes(data)
    only_documented_errors(ketasim.read_doses, str(path))


dose_values = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                        st.integers(-2**65, 2**65), st.sampled_from(["1", "x", None, True]))


@settings(max_examples=200, **SETTINGS)
@given(st.lists(st.fixed_dictionaries(
    {"time_h": dose_values, "amount_mg": dose_values,
     "route": st.sampled_from(["iv", "oral", "ivv", "", 5])},
    optional={"duration_h": dose_values, "addl": dose_values, "ii_h": dose_values}),
    max_size=4))
def test_fuzz_dose_records(records):
    doses = only_documented_errors(ketasim.Doses.from_records, records)
    if doses is not None:
        try_simulate(ketasim.Model.from_dict(GOOD_SPEC), doses)


columns = st.one_of(st.lists(st.floats(0.0, 48.0), min_size=2, max_size=2),
                    st.lists(st.integers(0, 3), min_size=2, max_size=2), values)


@settings(max_examples=200, **SETTINGS)
@given(st.fixed_dictionaries({"time_h": columns, "amount_mg": columns,
                              "route": st.one_of(st.just(["iv", "oral"]), values)},
                             optional={"duration_h": columns, "addl": columns, "ii_h": columns}))
def test_fuzz_doses_constructor(columns):
    doses = only_documented_errors(ketasim.Doses, **columns)
    if doses is not None:
        try_simulate(ketasim.Model.from_dict(GOOD_SPEC), doses)


# ------------------------------------------------------------------------------ courses
COURSE_KEYS = ["amount_mg", "route", "duration_h", "months", "first_amount_mg", "phase",
               "weeks", "per_week", "every_days", "count", "after_days", "phases"]
course_values = st.one_of(st.integers(1, 8), st.integers(1, 8), st.integers(-3, 60),
                          st.floats(-1.0, 100.0), st.sampled_from(
    ["nan", "inf", '"iv"', '"x"', "[]", "[1]", "{}", "true", "1e999", "9223372036854775807",
     "-1", "0", "1e9"]))


@st.composite
def course_text(draw):
    lines = GOOD_COURSE.splitlines()
    for _ in range(draw(st.sampled_from([1, 1, 2]))):
        i = draw(st.integers(0, len(lines) - 1))
        key = lines[i].split("=")[0].strip() if "=" in lines[i] else None
        op = draw(st.sampled_from(["value", "value", "value", "key", "insert"]))
        if op == "value" and key:                        # same key, another value
            lines[i] = f"{key} = {draw(course_values)}"
        elif op == "key" and key:                        # another (maybe repeated) key
            lines[i] = f"{draw(st.sampled_from(COURSE_KEYS))} = {lines[i].split('=', 1)[1]}"
        else:
            lines.insert(i, f"{draw(st.sampled_from(COURSE_KEYS))} = {draw(course_values)}")
    return "\n".join(lines) + "\n"


@settings(max_examples=200, **SETTINGS)
@given(course_text())
def test_fuzz_course_file(tmp_path, text):
    path = tmp_path / "course.toml"
    path.write_text(text)
    doses = only_documented_errors(read_course_toml, str(path))
    if doses is not None:
        assert len(doses) >= 1 and np.all(np.diff(doses.time_h) >= 0)


@settings(max_examples=100, **SETTINGS)
@given(st.fixed_dictionaries({}, optional={
    "dose_mg_per_kg": dose_values, "weight_kg": dose_values, "months": dose_values,
    "infusion_min": dose_values, "maintenance_every_days": dose_values}))
def test_fuzz_standard_course_options(kwargs):
    assume(not (isinstance(kwargs.get("months"), float) and math.isfinite(kwargs["months"])
                and kwargs["months"] > 1e4))   # valid but slow: very long courses
    only_documented_errors(ketasim.standard_iv_course, **kwargs)


# ------------------------------------------------------------------------------ simulate args
good_arrays = st.one_of(st.floats(0.1, 100.0), st.lists(st.floats(0.1, 100.0), min_size=2,
                                                         max_size=2))
arrays = st.one_of(good_arrays, good_arrays, good_arrays, dose_values,
                   st.lists(dose_values, max_size=3))


@settings(max_examples=200, **SETTINGS)
@given(times=st.one_of(st.lists(st.floats(0.0, 48.0), min_size=1, max_size=6).map(sorted),
                       st.lists(st.one_of(st.floats(-1.0, 48.0), st.just(math.nan)),
                                max_size=6),
                       st.sampled_from([[], [0.0], "abc", None, [[0.0, 1.0]], 3.0])),
       params=st.one_of(st.none(), st.dictionaries(st.sampled_from(["CL", "V", "KA", "KE0"]),
                                                   good_arrays, max_size=3),
                        st.dictionaries(st.sampled_from(["CL", "V", "KA", "F", "K10", "cl",
                                                         "WT"]), arrays, max_size=3),
                        st.just([1.0])),
       weight=arrays,
       outputs=st.one_of(st.none(), st.lists(st.sampled_from(
           ["central", "ce", "occupancy", "amount:depot", "amount:eliminated", "amount:x",
            "centrl", "glutamate"]), max_size=3)),
       threads=st.sampled_from([None, None, 1, 2, 0, -1, 1.5, "2"]))
def test_fuzz_simulate_arguments(times, params, weight, outputs, threads):
    model = ketasim.Model.from_dict(GOOD_SPEC)
    doses = ketasim.read_doses(io.StringIO(GOOD_DOSES))
    r = only_documented_errors(ketasim.simulate, model, doses, times, params=params,
                               weight_kg=weight, outputs=outputs, threads=threads)
    if r is not None:
        assert np.all(np.isfinite(r.data))
        assert r.data.size == 0 or r.data.min() >= -1e-12 * np.abs(r.data).max()   # roundoff
