"""The compiled CSV formatter gives exactly Python's ``"%.10g"`` (``"%.9g"``, ``"%d"``) text;
a float32 result's CSV reads back exactly with nine digits."""

import io
import re
from dataclasses import replace

import _models
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ketasim
from ketasim import io as kio
from ketasim._csvtext import BlockFormatter


def python_text(block, int_col=-1, digits=10):
    nd = np.broadcast_to(digits, (block.shape[1],))
    row = ",".join("%d" if j == int_col else f"%.{nd[j]}g" for j in range(block.shape[1])) + "\n"
    return "".join(row % tuple(r) for r in block.tolist())


def _special():
    p = np.array([10.0 ** k for k in range(-323, 309)])
    edges = [p, np.nextafter(p, 0), np.nextafter(p, np.inf)]
    x = np.array([0.0, -0.0, np.nan, -np.nan, np.inf, -np.inf, 5e-324, 1e-310,
                  2.2250738585072014e-308, 1.7976931348623157e308, 0.5, 1.25, 9999999999.5,
                  9999999999.4, 999999999.95,
                  1234567890.5, 0.00012345678905, 1e-5, 1e-4, 9.9999999995e-5, 99999.999995,
                  1e10, 9999999999.0, 0.1 + 0.2, 1 / 3, 2.0 ** 52, 2.0 ** 53 + 2])
    return np.concatenate(edges + [x, -x])


def _edges():
    """Around every power of ten: values that round up to it, or just miss, at ten digits."""
    p = 10.0 ** np.arange(-295, 295)
    m = np.array([0, 1e-11, 4e-11, 4.9999e-11, 5e-11, 5.0001e-11, 6e-11, 1e-10, 5e-10, 1e-9])
    v = np.concatenate([(p[:, None] * (1 - m)).ravel(), (p[:, None] * (1 + m)).ravel()])
    return np.concatenate([v, np.nextafter(v, 0), np.nextafter(v, np.inf)])


@pytest.mark.parametrize("digits", [10, 9])
@pytest.mark.parametrize("kind", ["special", "edges", "wide", "unit", "grid", "ties", "round"])
def test_same_text_as_python(kind, digits):
    rng = np.random.default_rng(7)
    n = 60_000
    v = {"special": _special(), "edges": _edges(),
         "wide": rng.standard_normal(n) * 10.0 ** rng.integers(-300, 300, n),
         "unit": rng.random(n),
         "grid": np.arange(n) * 0.1,
         # exact binary values with 11 significant digits ending in 5: true ties at digit 10
         "ties": (rng.integers(10 ** 10, 10 ** 11, n) * 2 + 1) / 2.0 * 2.0 ** -rng.integers(
             0, 60, n),
         "round": np.round(rng.random(n) * 1e6) / 1e3}[kind]
    for cols in (1, 7):
        block = np.resize(v, (len(v) // cols + 1) * cols).reshape(-1, cols)
        assert BlockFormatter(cols, digits=digits).text(block) == python_text(block,
                                                                              digits=digits)
    if digits == 9:         # a column of each, side by side
        block = np.resize(v, (len(v) // 3 + 1) * 3).reshape(-1, 3)
        assert BlockFormatter(3, digits=(10, 9, 9)).text(block) == python_text(
            block, digits=(10, 9, 9))


def test_integer_column():
    rng = np.random.default_rng(3)
    block = np.column_stack([rng.integers(-2 ** 53 + 1, 2 ** 53, 500).astype(float),
                             rng.random(500), rng.standard_normal(500)])
    block[:3, 0] = (0.0, -0.0, 7.0)
    f = BlockFormatter(3, 0)
    assert f.text(block) == python_text(block, 0)
    assert f.text(block[:2]) == python_text(block[:2], 0)      # work arrays reused, smaller


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=60),
       st.integers(1, 5))
def test_property_any_float(values, cols):
    block = np.resize(np.array(values), (len(values) // cols + 1) * cols).reshape(-1, cols)
    assert BlockFormatter(cols).text(block) == python_text(block)


@pytest.mark.parametrize("compiled", [True, False])
def test_float32_result_csv_has_nine_digits_that_read_back_exactly(compiled, monkeypatch):
    """A float32 result (dtype="float32") was written with ten significant digits; nine are the
    fewest that always read back exactly, and now every value has at most nine and reads back
    bit-exactly as the float32 it was (concentrations after ng/mL -> mg/L)."""
    if not compiled:            # the writer's way when Numba is disabled
        monkeypatch.setattr(kio, "_block_formatter", lambda *a, **k: None)
    model = ketasim.load_model("ketamine-iv")
    r = ketasim.simulate(model, ketasim.standard_iv_course(months=1), np.arange(0.0, 80.0, 0.1),
                         params={"CL": [60.0, 75.0]}, amounts=True, dtype="float32")
    rng = np.random.default_rng(11)
    wide = (rng.standard_normal(r.data.shape) * 10.0 ** rng.integers(-30, 30, r.data.shape))
    for res in (r, replace(r, data=wide.astype(np.float32))):
        buf = io.StringIO()
        kio.write_result_table(res, buf)
        lines = buf.getvalue().splitlines()
        cells = [ln.split(",")[2:] for ln in lines[1:]]       # (subject, time_h, outputs)
        for c in cells[:50] + cells[-50:]:
            for t in c:
                sig = re.sub(r"e.*$", "", t).replace("-", "").replace(".", "").strip("0")
                assert len(sig) <= 9, (t, lines[0])
        got = np.array(cells, dtype=np.float64) / res.csv_scale()
        want = res.data.transpose(0, 2, 1).reshape(-1, res.data.shape[1])
        assert np.array_equal(got.astype(np.float32).view(np.uint32), want.view(np.uint32))
        times = [ln.split(",")[1] for ln in lines[1:]]         # times (float64): ten digits
        assert times == ["%.10g" % t for t in np.tile(res.times, res.n_subjects)]


@pytest.mark.parametrize("compiled", [True, False])
def test_distinct_times_never_share_a_text(compiled, monkeypatch):
    """Two dose times 1e-13 h apart (each an output row of its own) were both written as
    0.25 with ten digits, with different values; such times are now written exactly (their
    shortest text that reads back), every other time still with "%.10g"."""
    from ketasim.cli_population import write_table

    if not compiled:            # the writer's way when Numba is disabled
        monkeypatch.setattr(kio, "_block_formatter", lambda *a, **k: None)
    doses = [{"time_h": 0.1, "amount_mg": 100, "route": "iv", "duration_h": 0.3},
             {"time_h": 0.25, "amount_mg": 50, "route": "iv"},
             {"time_h": 0.2500000000001, "amount_mg": 50, "route": "iv"}]
    times = np.array([0.0, 0.1, 0.25, 0.2500000000001, 1 / 3, 0.4])
    r = ketasim.simulate(_models.one_cpt(), doses, times, params={"CL": [10.0, 20.0]})
    for res in (r, replace(r, data=r.data[:1])):
        buf = io.StringIO()
        kio.write_result_table(res, buf, rows_per_block=4)
        got = [ln.split(",")[-2] for ln in buf.getvalue().splitlines()[1:]]
        want = ["0", "0.1", "0.25", "0.2500000000001", "0.3333333333", "0.4"] * res.n_subjects
        assert got == want
        assert np.array_equal(np.array(got[:4], float), times[:4])      # read back exactly
    buf = io.StringIO()
    write_table(buf, {"time_h": times, "x": np.arange(6.0)}, {"time_h": "h"}, "t")
    got = [ln.split(",")[0] for ln in buf.getvalue().splitlines()[3:]]
    assert got == ["0", "0.1", "0.25", "0.2500000000001", "0.3333333333", "0.4"]
    assert kio.exact_times(np.arange(0.0, 100.0, 0.1)) is None


def test_exact_cells_are_written_as_repr():
    block = np.array([[0.25, 1 / 3], [0.2500000000001, 2 / 3]])
    ex = np.array([[True, False], [True, True]])
    assert BlockFormatter(2).text(block, ex) == (
        "0.25,0.3333333333\n0.2500000000001,0.6666666666666666\n")
    assert BlockFormatter(2).text(block, np.zeros((2, 2), bool)) == python_text(block)
