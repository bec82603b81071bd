"""CSV text of a float table, compiled: exactly the text of ``"%.10g" % value`` (``"%.9g"`` in
a column of float32 values, the fewest digits that read back exactly; ``"%d"`` for an integer
column), about five times faster than Python's formatting.

A value is scaled to ten (or nine) significant digits in floating point and rounded. The
scaling is off by at most a few millionths of a unit in the last digit, so the rounding is
certain unless the scaled value lies within :data:`_TIE` of a half: those few values and the
special ones (nan, inf, subnormal or beyond 1e290) are formatted by Python itself. The result
is the same text, value for value, as ``numpy.savetxt`` or the ``%`` operator gives.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_TIE = 1e-5              # >> the 2.3e-6 worst-case error of the scaled value (about 1e10 * 2**-52)
_E_MIN, _E_MAX = -290, 290
_OFF = 400               # _POW10[k + _OFF] == 10.0**k, correctly rounded, k in [-300, 300]
_POW10 = np.array([float(f"1e{k}") if -300 <= k <= 300 else np.nan
                   for k in range(-_OFF, _OFF + 1)])
_PYTHON = -10_000        # exponent code: formatted by Python
_INT = -20_000           # exponent code: an integer column ("%d")
_ZERO = -30_000          # exponent code: zero ("0", or "-0" for -0.0)
CELL_MAX = 18            # the longest cell and its separator: "-1.234567891e-100,"


@njit(cache=True, nogil=True)
def _scale(block, int_col, ndig, pow10, digits, expo):
    """``ndig[j]`` (10 or 9) significant digits and the decimal exponent of every cell
    (row-major), or a code in ``expo`` for the cells formatted otherwise; returns how many
    need Python."""
    n_rows, n_cols = block.shape
    n_py = 0
    for i in range(n_rows):
        for j in range(n_cols):
            k = i * n_cols + j
            v = block[i, j]
            nd = ndig[j]
            lo = pow10[nd - 1 + _OFF]           # 1e9 for ten digits
            hi = pow10[nd + _OFF]
            digits[k] = 0
            if j == int_col:
                digits[k] = np.int64(v)
                expo[k] = _INT
                continue
            if v == 0.0:
                expo[k] = _ZERO
                if math.copysign(1.0, v) < 0.0:
                    digits[k] = 1
                continue
            a = abs(v)
            if not (1e-290 <= a <= 1e290):          # nan, inf, subnormal, extreme
                expo[k] = _PYTHON
                n_py += 1
                continue
            e = np.int64(np.floor(np.log10(a)))
            s = a * pow10[nd - 1 - e + _OFF]
            if s < lo:
                e -= 1
                s = a * pow10[nd - 1 - e + _OFF]
            elif s >= hi:
                e += 1
                s = a * pow10[nd - 1 - e + _OFF]
            f = s - np.floor(s)
            # not certain: a near tie, out of range. (Near the edges of ten digits either
            # reading gives the same text: just below 1e9 is 1e10 one exponent down, rounded
            # up; just below 1e10 rounds up to 1e10 either way; so for nine.)
            if not (lo <= s < hi) or abs(f - 0.5) < _TIE or e < _E_MIN or e > _E_MAX:
                expo[k] = _PYTHON
                n_py += 1
                continue
            r = np.int64(np.floor(s + 0.5))
            if r >= np.int64(hi):                    # 9999999999.5 and up: one digit more
                r = np.int64(lo)
                e += 1
            digits[k] = -r if v < 0.0 else r
            expo[k] = e
    return n_py


@njit(cache=True, nogil=True)
def _emit(digits, expo, ndig, py_text, py_start, out):
    """Write the cells as CSV rows into ``out`` (uint8), column j with ``ndig[j]`` significant
    digits; returns the length written.

    ``py_text[py_start[m]:py_start[m + 1]]`` is the text of the m-th cell coded _PYTHON."""
    n_cols = ndig.size
    p = 0
    m = 0
    d = np.empty(10, np.int64)
    for k in range(digits.size):
        e = expo[k]
        r = digits[k]
        if e == _PYTHON:
            for q in range(py_start[m], py_start[m + 1]):
                out[p] = py_text[q]
                p += 1
            m += 1
        elif e == _ZERO:
            if r:
                out[p] = 45                           # "-"
                p += 1
            out[p] = 48
            p += 1
        elif e == _INT:
            if r < 0:
                out[p] = 45
                p += 1
                r = -r
            n = 0
            while True:
                d[n] = r % 10
                r //= 10
                n += 1
                if r == 0:
                    break
            for q in range(n - 1, -1, -1):
                out[p] = 48 + d[q]
                p += 1
        else:
            if r < 0:
                out[p] = 45
                p += 1
                r = -r
            width = ndig[k % n_cols]
            for q in range(width - 1, -1, -1):
                d[q] = r % 10
                r //= 10
            nd = width
            while d[nd - 1] == 0:
                nd -= 1
            if e < -4 or e >= width:
                out[p] = 48 + d[0]
                p += 1
                if nd > 1:
                    out[p] = 46                       # "."
                    p += 1
                    for q in range(1, nd):
                        out[p] = 48 + d[q]
                        p += 1
                out[p] = 101                          # "e"
                out[p + 1] = 45 if e < 0 else 43      # "-" or "+"
                p += 2
                x = -e if e < 0 else e
                if x >= 100:
                    out[p] = 48 + x // 100
                    p += 1
                out[p] = 48 + (x // 10) % 10
                out[p + 1] = 48 + x % 10
                p += 2
            elif e >= 0:
                for q in range(e + 1):
                    out[p] = 48 + d[q]
                    p += 1
                if nd > e + 1:
                    out[p] = 46
                    p += 1
                    for q in range(e + 1, nd):
                        out[p] = 48 + d[q]
                        p += 1
            else:
                out[p] = 48
                out[p + 1] = 46
                p += 2
                for _q in range(-e - 1):
                    out[p] = 48
                    p += 1
                for q in range(nd):
                    out[p] = 48 + d[q]
                    p += 1
        out[p] = 10 if (k + 1) % n_cols == 0 else 44  # "\n" or ","
        p += 1
    return p


class BlockFormatter:
    """Format blocks of rows of one table shape, reusing the work arrays between blocks."""

    def __init__(self, n_cols: int, int_col: int = -1, digits=10):
        """``digits``: significant digits, 10 or 9, for every column or one per column."""
        self.n_cols = n_cols
        self.int_col = int_col
        self.ndig = np.broadcast_to(np.asarray(digits, np.int64), (n_cols,)).copy()
        if not np.isin(self.ndig, (9, 10)).all():
            raise ValueError(f"digits: got {digits!r}, expected 10 or 9 (per column)")
        self._size = 0

    def _arrays(self, n_cells):
        if n_cells > self._size:
            self._digits = np.empty(n_cells, np.int64)
            self._expo = np.empty(n_cells, np.int64)
            self._out = np.empty(n_cells * CELL_MAX, np.uint8)
            self._size = n_cells
        return self._digits[:n_cells], self._expo[:n_cells], self._out

    def text(self, block: np.ndarray, exact: np.ndarray | None = None) -> str:
        """``block`` (rows x n_cols, float64) as CSV rows; "%d" in ``int_col`` (whose values
        must be whole numbers below 2**53 in size), "%.10g" (or "%.9g") elsewhere.

        ``exact``: optional booleans of the block's shape; a cell marked True is written as its
        shortest text that reads back exactly (Python's ``repr``), not rounded."""
        block = np.ascontiguousarray(block, dtype=np.float64)
        digits, expo, out = self._arrays(block.size)
        n_py = _scale(block, self.int_col, self.ndig, _POW10, digits, expo)
        flat_exact = None
        if exact is not None:
            flat_exact = np.asarray(exact, bool).reshape(block.shape).ravel()
            if flat_exact.any():
                expo[flat_exact] = _PYTHON
                n_py = int(np.count_nonzero(expo == _PYTHON))
            else:
                flat_exact = None
        if n_py:
            at = np.flatnonzero(expo == _PYTHON)
            vals = block.ravel()[at].tolist()
            ex = (flat_exact[at].tolist() if flat_exact is not None
                  else [False] * len(vals))
            strs = [(repr(v) if x else "%.*g" % (nd, v)).encode("ascii")
                    for nd, v, x in zip(self.ndig[at % self.n_cols].tolist(), vals, ex)]
            py_text = np.frombuffer(b"".join(strs), np.uint8)
            py_start = np.zeros(len(strs) + 1, np.int64)
            np.cumsum([len(s) for s in strs], out=py_start[1:])
        else:
            py_text = np.zeros(0, np.uint8)
            py_start = np.zeros(1, np.int64)
        n = _emit(digits, expo, self.ndig, py_text, py_start, out)
        return out[:n].tobytes().decode("ascii")
