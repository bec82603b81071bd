"""The compiled CSV formatter gives exactly Python's ``"%.10g"`` (and ``"%d"``) text."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ketasim._csvtext import BlockFormatter


def python_text(block, int_col=-1):
    row = ",".join("%d" if j == int_col else "%.10g" for j in range(block.shape[1])) + "\n"
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


@pytest.mark.parametrize("kind", ["special", "edges", "wide", "unit", "grid", "ties", "round"])
def test_same_text_as_python(kind):
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
        assert BlockFormatter(cols).text(block) == python_text(block)


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
