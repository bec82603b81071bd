"""Dose tables (courses, which build dose tables, live in :mod:`ketasim.courses`).

A dose table (CSV) has the columns ``time_h, amount_mg, route`` and optionally ``duration_h``
(infusion length; 0 or blank = a bolus, or the route's own default), ``addl`` and ``ii_h``
(NONMEM-style: ``addl`` additional doses every ``ii_h`` hours). Rows may come in any order.
:func:`expand` is the one function that turns such a table into sorted, single dose events.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import KetasimInputError, suggest

__all__ = ["Doses", "read_doses", "write_doses", "expand", "MAX_EVENTS"]

COLUMNS = ("time_h", "amount_mg", "route", "duration_h", "addl", "ii_h")
REQUIRED = ("time_h", "amount_mg", "route")
MAX_EVENTS = 10_000_000


@dataclass(frozen=True, eq=False)
class Doses:
    """A dose table (frozen). All arrays have the same length D.

    Attributes
    ----------
    time_h : float64 (D,)      dose time, hours
    amount_mg : float64 (D,)   amount, mg (for nasal esketamine: the session's total)
    route : tuple of str (D,)  route name defined in the model
    duration_h : float64 (D,)  infusion duration, hours; 0 = bolus or the route's default
    addl : int64 (D,)          number of additional doses
    ii_h : float64 (D,)        interval between the additional doses, hours
    """

    time_h: np.ndarray
    amount_mg: np.ndarray
    route: tuple
    duration_h: np.ndarray = None
    addl: np.ndarray = None
    ii_h: np.ndarray = None
    source: str = field(default="<doses>", compare=False)

    def __post_init__(self):
        def arr(name, dtype, default):
            v = getattr(self, name)
            v = np.full(len(self.route), default, dtype) if v is None else v
            try:
                a = np.array(v, dtype=dtype, ndmin=1)
            except (TypeError, ValueError, OverflowError):
                raise KetasimInputError(f"{self.source}: {name}: got {v!r}, expected numbers") \
                    from None
            if a.ndim != 1:
                raise KetasimInputError(f"{self.source}: {name}: expected a 1-D sequence (one "
                                        f"value per dose), got shape {a.shape}")
            a.setflags(write=False)
            object.__setattr__(self, name, a)

        route = self.route
        try:
            route = (route,) if isinstance(route, str) else tuple(str(r) for r in route)
        except TypeError:
            raise KetasimInputError(f"{self.source}: route: got {route!r}, expected a route "
                                    "name per dose") from None
        object.__setattr__(self, "route", route)
        arr("time_h", np.float64, 0.0)
        arr("amount_mg", np.float64, 0.0)
        arr("duration_h", np.float64, 0.0)
        arr("ii_h", np.float64, 0.0)
        addl = self.addl
        try:
            a = None if addl is None else np.asarray(addl)
        except (TypeError, ValueError, OverflowError):
            a = None                                   # reported by arr("addl") below
        if a is not None:
            if a.dtype.kind == "f" and np.any(np.isfinite(a) & (a != np.round(a))):
                bad = a[np.isfinite(a) & (a != np.round(a))][0]
                raise KetasimInputError(f"{self.source}: addl: got {bad!r}, expected a whole "
                                        "number >= 0")
            if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
                raise KetasimInputError(f"{self.source}: addl: got "
                                        f"{float(a[~np.isfinite(a)][0])!r}, expected a whole "
                                        "number >= 0")
            if a.dtype.kind in "fiu" and a.size and np.max(a) > MAX_EVENTS:
                raise KetasimInputError(f"{self.source}: addl: got {float(np.max(a)):g}, "
                                        f"expected at most {MAX_EVENTS:,} repeats")
        arr("addl", np.int64, 0)
        D = len(self.route)
        for name in ("time_h", "amount_mg", "duration_h", "addl", "ii_h"):
            if getattr(self, name).shape != (D,):
                raise KetasimInputError(
                    f"{self.source}: {name} has {getattr(self, name).size} values, route has {D}")
        self._check()

    def _check(self):
        src = self.source
        for name, unit in (("time_h", "h"), ("amount_mg", "mg"), ("duration_h", "h"),
                           ("ii_h", "h")):
            a = getattr(self, name)
            bad = ~np.isfinite(a)
            if bad.any():
                i = int(np.argmax(bad))
                raise KetasimInputError(f"{src}: row {i + 1}: {name}: got {a[i]!r}, expected a "
                                        "finite number")
            if np.any(a < 0):
                i = int(np.argmax(a < 0))
                raise KetasimInputError(f"{src}: row {i + 1}: {name}: got {a[i]:g} {unit}, "
                                        "expected a number >= 0")
        if np.any(self.addl < 0):
            i = int(np.argmax(self.addl < 0))
            raise KetasimInputError(f"{src}: row {i + 1}: addl: got {self.addl[i]}, expected a "
                                    "whole number >= 0")
        with np.errstate(all="ignore"):
            last = self.time_h + self.addl * self.ii_h
        if not np.all(np.isfinite(last)):
            i = int(np.argmax(~np.isfinite(last)))
            raise KetasimInputError(f"{src}: row {i + 1}: time_h + addl x ii_h overflows "
                                    f"({self.time_h[i]:g} + {self.addl[i]} x {self.ii_h[i]:g} h)"
                                    "; expected finite hours")
        need = (self.addl > 0) & (self.ii_h <= 0)
        if need.any():
            i = int(np.argmax(need))
            raise KetasimInputError(f"{src}: row {i + 1}: ii_h: got {self.ii_h[i]:g} with addl = "
                                    f"{self.addl[i]}, expected an interval > 0 hours")
        total = int(np.sum(self.addl + 1))
        if total > MAX_EVENTS:
            raise KetasimInputError(f"{src}: addl: the table expands to {total:,} doses, more "
                                    f"than the {MAX_EVENTS:,} ketasim accepts")

    def __len__(self):
        return len(self.route)

    def __eq__(self, other):
        if not isinstance(other, Doses):
            return NotImplemented
        return self.route == other.route and all(
            np.array_equal(getattr(self, f), getattr(other, f))
            for f in ("time_h", "amount_mg", "duration_h", "addl", "ii_h"))

    __hash__ = None

    @classmethod
    def single(cls, amount_mg: float, route: str, time_h: float = 0.0,
               duration_h: float = 0.0, addl: int = 0, ii_h: float = 0.0) -> "Doses":
        """One dose row (optionally repeated with ``addl``/``ii_h``)."""
        return cls([time_h], [amount_mg], [route], [duration_h], [addl], [ii_h])

    @classmethod
    def from_records(cls, records, source: str = "<doses>") -> "Doses":
        """Build from dicts with the dose-table column names."""
        records = list(records)
        cols = {c: [] for c in COLUMNS}
        for i, r in enumerate(records):
            if not isinstance(r, dict):
                raise KetasimInputError(f"{source}: row {i + 1}: got {type(r).__name__}, "
                                        "expected a dict with time_h, amount_mg, route")
            for c in REQUIRED:
                if c not in r:
                    raise KetasimInputError(f"{source}: row {i + 1}: missing {c}")
            for c in COLUMNS:
                cols[c].append(r.get(c, 0.0 if c != "route" else ""))
        return cls(cols["time_h"], cols["amount_mg"], cols["route"], cols["duration_h"],
                   cols["addl"], cols["ii_h"], source=source)

    def __add__(self, other: "Doses") -> "Doses":
        return Doses(np.r_[self.time_h, other.time_h], np.r_[self.amount_mg, other.amount_mg],
                     self.route + other.route, np.r_[self.duration_h, other.duration_h],
                     np.r_[self.addl, other.addl], np.r_[self.ii_h, other.ii_h])

    def scaled(self, factor: float) -> "Doses":
        """The same table with every amount multiplied by ``factor``."""
        return Doses(self.time_h, self.amount_mg * factor, self.route, self.duration_h,
                     self.addl, self.ii_h, source=self.source)

    def to_records(self) -> list[dict]:
        return [dict(time_h=float(t), amount_mg=float(a), route=r, duration_h=float(d),
                     addl=int(n), ii_h=float(ii))
                for t, a, r, d, n, ii in zip(self.time_h, self.amount_mg, self.route,
                                             self.duration_h, self.addl, self.ii_h)]


def expand(doses: Doses) -> Doses:
    """Expand ``addl``/``ii_h`` repeats into single doses, sorted by time (stable).

    The only function that realises repeats; the result has ``addl == 0`` everywhere.
    """
    n = doses.addl + 1
    idx = np.repeat(np.arange(len(doses)), n)
    k = np.arange(idx.size) - np.repeat(np.cumsum(n) - n, n)
    t = doses.time_h[idx] + k * doses.ii_h[idx]
    order = np.argsort(t, kind="stable")
    idx, t = idx[order], t[order]
    return Doses(t, doses.amount_mg[idx], tuple(doses.route[i] for i in idx),
                 doses.duration_h[idx], np.zeros(idx.size, np.int64), np.zeros(idx.size),
                 source=doses.source)


# ---------------------------------------------------------------------- CSV
def _decode(data: bytes, where: str) -> str:
    if b"\x00" in data:
        raise KetasimInputError(f"{where}: this is a binary file, expected a CSV dose table")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise KetasimInputError(f"{where}: not UTF-8 text (bad byte at offset {exc.start}); "
                                "expected a CSV dose table") from None


def read_doses(path_or_text, *, source: str | None = None) -> Doses:
    """Read a dose table from a CSV file (or file-like object).

    Columns ``time_h, amount_mg, route`` are required; ``duration_h``, ``addl``, ``ii_h`` are
    optional (blank = 0). Extra columns are an error (to catch typos such as ``ammount_mg``).
    """
    if not hasattr(path_or_text, "read") and not isinstance(path_or_text, (str, os.PathLike)):
        raise KetasimInputError(f"doses: got {type(path_or_text).__name__}, expected a CSV path "
                                "or an open file")
    if hasattr(path_or_text, "read"):
        data = path_or_text.read()
        where = source or getattr(path_or_text, "name", "<doses>")
        text = data if isinstance(data, str) else _decode(data, where)
    else:
        p = Path(path_or_text)
        where = source or str(p)
        if not p.is_file():
            raise KetasimInputError(f"doses: {str(p)!r} is a folder, expected a CSV file"
                                    if p.is_dir() else f"doses: file {str(p)!r} not found")
        text = _decode(p.read_bytes(), where)
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise KetasimInputError(f"{where}: not a readable CSV dose table ({exc})") from None
    rows = [r for r in rows if any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    if not rows:
        raise KetasimInputError(f"{where}: empty dose table; expected a header "
                                "time_h,amount_mg,route then one row per dose")
    header = [h.strip() for h in rows[0]]
    for h in header:
        if h not in COLUMNS:
            raise KetasimInputError(f"{where}: line 1: unknown column {h!r}{suggest(h, COLUMNS)}; "
                                    f"expected {', '.join(COLUMNS)}")
    if len(set(header)) != len(header):
        raise KetasimInputError(f"{where}: line 1: a column appears twice in {header}")
    for c in REQUIRED:
        if c not in header:
            raise KetasimInputError(f"{where}: line 1: missing column {c!r} (header: "
                                    f"{','.join(header)}); required: {', '.join(REQUIRED)}")
    cols = {c: [] for c in COLUMNS}
    for line_no, r in enumerate(rows[1:], start=2):
        if len(r) != len(header):
            raise KetasimInputError(f"{where}: line {line_no}: {len(r)} fields, expected "
                                    f"{len(header)} ({','.join(header)})")
        rec = dict(zip(header, (c.strip() for c in r)))
        for c in COLUMNS:
            v = rec.get(c, "")
            if c == "route":
                if not v:
                    raise KetasimInputError(f"{where}: line {line_no}: route is blank; expected "
                                            "a route name such as iv")
                cols[c].append(v)
                continue
            if v == "":
                if c in REQUIRED:
                    raise KetasimInputError(f"{where}: line {line_no}: {c} is blank; expected a "
                                            "number")
                v = "0"
            try:
                x = float(v)
            except ValueError:
                raise KetasimInputError(f"{where}: line {line_no}: {c}: got {v!r}, expected a "
                                        "number") from None
            if not math.isfinite(x):
                raise KetasimInputError(f"{where}: line {line_no}: {c}: got {v!r}, expected a "
                                        "finite number")
            if x < 0:
                raise KetasimInputError(f"{where}: line {line_no}: {c}: got {v}, expected a "
                                        "number >= 0")
            if c == "addl" and (x != int(x) or x > MAX_EVENTS):
                raise KetasimInputError(f"{where}: line {line_no}: addl: got {v}, expected a "
                                        f"whole number <= {MAX_EVENTS:,}")
            cols[c].append(x)
    if len(rows) == 1:
        raise KetasimInputError(f"{where}: the dose table has a header but no doses")
    return Doses(cols["time_h"], cols["amount_mg"], cols["route"], cols["duration_h"],
                 np.asarray(cols["addl"], dtype=np.int64), cols["ii_h"], source=where)


def write_doses(doses: Doses, path) -> None:
    """Write a dose table as CSV, atomically (temporary file, then rename)."""
    from .io import atomic_write

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in doses.to_records():
        w.writerow([f"{r['time_h']:.10g}", f"{r['amount_mg']:.10g}", r["route"],
                    f"{r['duration_h']:.10g}", r["addl"], f"{r['ii_h']:.10g}"])
    atomic_write(path, buf.getvalue())
