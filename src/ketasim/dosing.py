"""Dose tables (courses, which build dose tables, live in :mod:`ketasim.courses`).

A dose table (CSV) has the columns ``time_h, amount_mg, route`` and optionally ``duration_h``,
``rate_mg_h``, ``addl``, ``ii_h``, ``ss``, ``evid``, ``subject`` and covariate columns
(``weight_kg`` or a model parameter name). NONMEM's names are accepted as aliases, in any letter
case: ``TIME``, ``AMT``, ``CMT``, ``DUR``, ``RATE``, ``ADDL``, ``II``, ``SS``, ``EVID``, ``ID``,
``WT`` (see :data:`ALIASES`); other NONMEM data items (``DV``, ``MDV``, ...) are read past,
and a row with anything but blank, ``.`` or 0 in a ``C`` column is a comment (NONMEM's
``IGNORE=C``), skipped like a ``#`` line.
Rows may come in any order. :func:`expand` is the one function that turns ``addl``/``ii_h``
repeats into single dose events; :mod:`ketasim.events` turns those into the kernel's events.

Meaning of the columns (units in the names):

``time_h``      dose (record) time, h
``amount_mg``   amount, mg (for nasal esketamine: the session's total)
``route``       a route of the model, a compartment name, or a compartment number (1-based, in
                ``[compartments]`` order), as NONMEM's CMT; blank on a reset row
``duration_h``  infusion length, h; 0 or blank = not given (a bolus, or the route's own
                duration). Bioavailability then changes the *rate*.
``rate_mg_h``   infusion rate, mg/h; 0 or blank = not given. Bioavailability then changes the
                *duration* (``f·amount / rate``), as NONMEM's RATE. ``-2`` (NONMEM: duration
                from the model): the route's own ``duration_h``; on a route part without one
                it is an error, as in NONMEM.
``addl, ii_h``  ``addl`` additional doses every ``ii_h`` hours
``ss``          0 = an ordinary dose; 1 = steady state: the state is replaced by the periodic
                steady state of this dose repeated every ``ii_h`` hours forever (then the dose
                is given); 2 = that steady state is added to the current state. With
                ``ii_h = 0``, ``amount_mg = 0`` and a ``rate_mg_h``: the steady state of a
                constant infusion at that rate (bioavailability does not lower it, as in
                NONMEM), which then keeps running.
``evid``        1 or blank = a dose; 0 (observation) and 2 (other) rows are skipped and counted
                (:attr:`Doses.n_skipped`; a dose item on one, ``amount_mg``, ``rate_mg_h``,
                ``ii_h``, ``addl`` or ``ss`` not 0 or blank, is refused, as NONMEM refuses
                it); 3 = every compartment is emptied; 4 = emptied, then the dose is given.
``subject``     subject ID (a number): one simulated subject per ID, with its own rows and
                covariates.
covariates      ``weight_kg`` (alias ``WT``) and any model parameter name: one value per
                subject (constant over the table when there is no ``subject`` column).
"""

from __future__ import annotations

import array
import csv
import datetime
import difflib
import io
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._memo import Derived
from ._numtext import to_float
from .errors import KetasimInputError, is_real, where_gone

__all__ = ["Doses", "read_doses", "write_doses", "expand", "MAX_EVENTS", "MAX_DOSE_FILE_BYTES",
           "COLUMNS", "ALIASES", "NONMEM_IGNORED"]


#: Hours by which two dose times may fall short of ``merge_h`` apart and still start two
#: sessions: sessions an hour apart, built by adding days (1/24 at a time), are a few ulp
#: short of an hour apart (rounding), and had been taken for one session.
SESSION_TOL_H = 1e-9


def new_session(gap_h, merge_h: float = 1.0):
    """Whether dose times ``gap_h`` (h) after the one before start a new session: at least
    ``merge_h`` apart, to within :data:`SESSION_TOL_H`."""
    return np.asarray(gap_h) >= merge_h - SESSION_TOL_H


COLUMNS = ("time_h", "amount_mg", "route", "duration_h", "rate_mg_h", "addl", "ii_h", "ss",
           "evid", "subject")
REQUIRED = ("time_h", "amount_mg", "route")
WEIGHT = "weight_kg"
# NONMEM data item -> ketasim column (matched in any letter case, as are ketasim's names)
ALIASES = {"TIME": "time_h", "AMT": "amount_mg", "CMT": "route", "DUR": "duration_h",
           "RATE": "rate_mg_h", "ADDL": "addl", "II": "ii_h", "SS": "ss", "EVID": "evid",
           "ID": "subject", "WT": WEIGHT}
# NONMEM data items that describe observations or bookkeeping: read past (MDV is used to tell
# observation rows when there is no EVID column)
NONMEM_IGNORED = ("DV", "MDV", "DVID", "CENS", "LIMIT", "BLQ", "LLOQ", "PCMT", "CALL", "CONT",
                  "L1", "L2", "C", "DATE", "DAT1", "DAT2", "DAT3", "XVID1", "XVID2", "XVID3",
                  "XVID4", "XVID5", "TAD", "NTIME", "NTAD", "OCC", "LNDV")
MAX_EVENTS = 10_000_000
MAX_DOSE_FILE_BYTES = 512 * 2**20   # 512 MiB: larger dose files are refused before parsing
_INT_COLUMNS = ("addl", "ss", "evid")

_CANON = {c.lower(): c for c in COLUMNS + (WEIGHT,)}
_CANON.update({k.lower(): v for k, v in ALIASES.items()})
_IGNORED = {c.lower() for c in NONMEM_IGNORED}


_DATES = (np.datetime64, np.timedelta64, datetime.date, datetime.time, datetime.timedelta)


def _plain(v, name: str, src: str):
    """The values of a numeric column as a CSV dose table reads its cells: text is a plain
    decimal (surrounding spaces allowed; ``3_5`` or other digits than ASCII are refused, as
    the reader refuses them), and True or False is no number (it had been read as 1 or 0: a
    dose at ``time_h=True`` was given at 1 h). Numeric arrays are returned as they are."""
    if isinstance(v, np.ndarray) and v.dtype.kind in "iuf":
        return v
    if isinstance(v, np.ndarray) and v.dtype.kind == "b" or isinstance(v, (bool, np.bool_)):
        raise KetasimInputError(f"{src}: {name}: got {v!r}, expected numbers (True or False is "
                                "no number)")
    if isinstance(v, (str, bytes)) or not hasattr(v, "__len__"):
        items, one = [v], True
    else:
        items, one = list(np.asarray(v, dtype=object).ravel()) \
            if isinstance(v, np.ndarray) else list(v), False
        if isinstance(v, np.ndarray) and v.ndim != 1:
            return v                                   # (its shape is refused by the caller)
    out = []
    for i, x in enumerate(items):
        at = "" if one else f"row {i + 1}: "
        if isinstance(x, _DATES):
            # (NumPy reads a duration as a count of its own unit, a date as days since 1970)
            raise KetasimInputError(f"{src}: {at}{name}: got {x!r}, expected a number (not a "
                                    "date or a duration)")
        if isinstance(x, (bool, np.bool_)):
            raise KetasimInputError(f"{src}: {at}{name}: got {x!r}, expected a number (True or "
                                    "False is no number)")
        if isinstance(x, str):
            try:
                x = to_float(x)
            except ValueError:
                raise KetasimInputError(f"{src}: {at}{name}: got {x!r}, expected a number") \
                    from None
        out.append(x)
    return out[0] if one else out


def _frozen(a: np.ndarray) -> np.ndarray:
    """A read-only view of ``a`` (which the caller gives up) whose write flag cannot be turned
    back on: a dose table never changes after its checks, so what is derived from it (its
    expansion, its events) can be kept with it."""
    a.setflags(write=False)
    v = a.view()
    v.setflags(write=False)
    return v


def _canonical(name: str):
    """ketasim column for a header cell, "" for a NONMEM item read past, None if unknown."""
    low = name.lower()
    if low in _CANON:
        return _CANON[low]
    if low in _IGNORED:
        return ""
    return None


def _near_column(name: str) -> str:
    """A did-you-mean for a header cell that looks like a misspelt dose-table column."""
    names = list(COLUMNS) + [WEIGHT] + list(ALIASES)
    low = {n.lower(): n for n in names}
    close = difflib.get_close_matches(name.lower(), list(low), n=1, cutoff=0.8)
    return f" (did you mean '{low[close[0]]}'?)" if close else ""


@dataclass(frozen=True, eq=False)
class Doses(Derived):
    """A dose table (frozen). All arrays have the same length D.

    Attributes
    ----------
    time_h : float64 (D,)      record time, hours
    amount_mg : float64 (D,)   amount, mg (for nasal esketamine: the session's total)
    route : tuple of str (D,)  route name, compartment name or number ("" on a reset row)
    duration_h : float64 (D,)  infusion duration, hours; 0 = not given
    addl : int64 (D,)          number of additional doses
    ii_h : float64 (D,)        interval between the additional doses (and of ``ss``), hours
    source : str               where the table came from (for messages)
    rate_mg_h : float64 (D,)   infusion rate, mg/h; 0 = not given (the duration then follows)
    ss : int64 (D,)            0, 1 (reset to steady state) or 2 (add the steady state)
    evid : int64 (D,)          1 dose, 3 reset, 4 reset then dose
    subject : float64 (D,) or None   subject ID per row (None: every subject gets every row)
    covariates : dict name -> float64 (D,)   per-row covariate values (``weight_kg`` or model
                               parameters); see :func:`ketasim.events.subject_covariates`
    n_skipped : int            observation/other rows (EVID 0 or 2) skipped when reading
    observation_only_subjects : tuple of float   subject IDs whose every row was skipped
                               (observations only): they have no dose, so they are not
                               simulated (the CLI says so)
    line : int64 (D,) or None  physical line of each row in its file (for messages)
    """

    time_h: np.ndarray
    amount_mg: np.ndarray
    route: tuple
    duration_h: np.ndarray = None
    addl: np.ndarray = None
    ii_h: np.ndarray = None
    source: str = field(default="<doses>", compare=False)
    rate_mg_h: np.ndarray = None
    ss: np.ndarray = None
    evid: np.ndarray = None
    subject: np.ndarray = None
    covariates: dict = None
    n_skipped: int = field(default=0, compare=False)
    line: np.ndarray = field(default=None, compare=False)
    observation_only_subjects: tuple = field(default=(), compare=False)

    def __post_init__(self):
        src = self.source

        def arr(name, dtype, default, v=None):
            v = getattr(self, name) if v is None else v
            v = np.full(len(self.route), default, dtype) if v is None else _plain(v, name, src)
            try:
                a = np.array(v, dtype=dtype, ndmin=1)
            except (TypeError, ValueError, OverflowError):
                raise KetasimInputError(f"{src}: {name}: got {v!r}, expected numbers") \
                    from None
            if a.ndim != 1:
                raise KetasimInputError(f"{src}: {name}: expected a 1-D sequence (one "
                                        f"value per dose), got shape {a.shape}")
            return _frozen(a)

        route = self.route
        try:
            route = (route.strip(),) if isinstance(route, str) else tuple(
                str(r).strip() for r in route)
        except TypeError:
            raise KetasimInputError(f"{src}: route: got {route!r}, expected a route "
                                    "name per dose") from None
        object.__setattr__(self, "route", route)
        for name in ("time_h", "amount_mg", "duration_h", "ii_h", "rate_mg_h"):
            object.__setattr__(self, name, arr(name, np.float64, 0.0))
        for name, default in (("addl", 0), ("ss", 0), ("evid", 1)):
            v = getattr(self, name)
            v = None if v is None else _plain(v, name, src)
            try:
                a = None if v is None else np.asarray(v)
            except (TypeError, ValueError, OverflowError):
                a = None                               # reported by arr() below
            if a is not None and a.dtype.kind == "f":
                fin = np.isfinite(a)
                if np.any(fin & (a != np.round(a))) or not np.all(fin):
                    bad = a[~fin | (a != np.round(a))][0]
                    raise KetasimInputError(f"{src}: {name}: got {float(bad)!r}, expected a "
                                            "whole number")
            if a is not None and a.dtype.kind in "fiu" and a.size and np.max(a) > MAX_EVENTS:
                raise KetasimInputError(f"{src}: {name}: got {float(np.max(a)):g}, expected at "
                                        f"most {MAX_EVENTS:,}")
            object.__setattr__(self, name, arr(name, np.int64, default, v))
        if self.subject is not None:
            raw = self.subject
            if not isinstance(raw, np.ndarray) or raw.dtype.kind in "iuOU":
                for i, v in enumerate(np.asarray(raw, dtype=object).ravel()):
                    if not _id_exact(v):
                        raise KetasimInputError(
                            f"{src}: subject: row {i + 1}: got {v}, an ID with more digits than "
                            "a number keeps (other IDs would merge with it); expected an ID a "
                            "double keeps exactly (15 significant digits at most)")
            object.__setattr__(self, "subject", arr("subject", np.float64, 0.0))
        if self.line is not None:
            object.__setattr__(self, "line", arr("line", np.int64, 0))
        covs = {}
        if self.covariates is not None:
            if not isinstance(self.covariates, dict):
                raise KetasimInputError(f"{src}: covariates: got "
                                        f"{type(self.covariates).__name__}, expected a dict of "
                                        "name -> one value per row")
            for k, v in self.covariates.items():
                if not isinstance(k, str) or not k.isidentifier():
                    raise KetasimInputError(f"{src}: covariates: {k!r} is not a name (letters, "
                                            "digits, _)")
                covs[k] = arr(f"covariate {k}", np.float64, 0.0, v)
        object.__setattr__(self, "covariates", covs)
        D = len(self.route)
        named = ["time_h", "amount_mg", "duration_h", "addl", "ii_h", "rate_mg_h", "ss", "evid"]
        named += [n for n in ("subject", "line") if getattr(self, n) is not None]
        for name in named:
            if getattr(self, name).shape != (D,):
                raise KetasimInputError(
                    f"{src}: {name} has {getattr(self, name).size} values, route has {D}")
        for k, a in covs.items():
            if a.shape != (D,):
                raise KetasimInputError(f"{src}: covariate {k} has {a.size} values, route has "
                                        f"{D}")
        self._check()

    # ------------------------------------------------------------------ checks
    def where(self, i: int) -> str:
        """``row i+1`` (and its file line where known), for messages."""
        if self.line is not None and i < self.line.size and self.line[i] > 0:
            return f"line {int(self.line[i])}: row {i + 1}"
        return f"row {i + 1}"

    def _check(self):
        src = self.source

        def fail(mask, msg):
            i = int(np.argmax(mask))
            raise KetasimInputError(f"{src}: {self.where(i)}: {msg(i)}")

        for name, unit in (("time_h", "h"), ("amount_mg", "mg"), ("duration_h", "h"),
                           ("ii_h", "h"), ("rate_mg_h", "mg/h")):
            a = getattr(self, name)
            bad = ~np.isfinite(a)
            if bad.any():
                i = int(np.argmax(bad))
                raise KetasimInputError(f"{src}: {self.where(i)}: {name}: got {a[i]!r}, "
                                        "expected a finite number")
            neg = a < 0
            if name == "rate_mg_h":
                neg &= a != -2.0
            if np.any(neg):
                i = int(np.argmax(neg))
                raise KetasimInputError(f"{src}: {self.where(i)}: {name}: got {a[i]:g} {unit}, "
                                        "expected a number >= 0")
        if np.any(self.addl < 0):
            fail(self.addl < 0, lambda i: f"addl: got {self.addl[i]}, expected a whole number "
                 ">= 0")
        bad = ~np.isin(self.ss, (0, 1, 2))
        if bad.any():
            fail(bad, lambda i: f"ss: got {self.ss[i]}, expected 0, 1 (reset to steady state) "
                 "or 2 (add the steady state)")
        bad = ~np.isin(self.evid, (1, 3, 4))
        if bad.any():
            fail(bad, lambda i: f"evid: got {self.evid[i]}, expected 1 (dose), 3 (reset) or 4 "
                 "(reset and dose); rows with evid 0 or 2 are skipped by read_doses and "
                 "Doses.from_records")
        if self.subject is not None and not np.all(np.isfinite(self.subject)):
            fail(~np.isfinite(self.subject), lambda i: f"subject: got {self.subject[i]!r}, "
                 "expected a finite number")
        for k, a in self.covariates.items():
            if not np.all(np.isfinite(a) | np.isnan(a)):
                i = int(np.argmax(~(np.isfinite(a) | np.isnan(a))))
                raise KetasimInputError(f"{src}: {self.where(i)}: {k}: got {a[i]!r}, expected "
                                        "a finite number")
        both = (self.duration_h > 0) & (self.rate_mg_h > 0)
        if both.any():
            fail(both, lambda i: f"duration_h = {self.duration_h[i]:g} and rate_mg_h = "
                 f"{self.rate_mg_h[i]:g}: give one of them (or neither, for a bolus)")
        reset = self.evid == 3
        if np.any(reset & (self.addl > 0)):
            fail(reset & (self.addl > 0), lambda i: f"addl: got {self.addl[i]} on a reset row "
                 "(evid 3), expected 0")
        if np.any(reset & (self.ss > 0)):
            fail(reset & (self.ss > 0), lambda i: f"ss: got {self.ss[i]} on a reset row (evid "
                 "3), expected 0 (use evid 4 to reset and dose)")
        if np.any(reset & (self.amount_mg != 0)):
            fail(reset & (self.amount_mg != 0), lambda i: f"amount_mg: got "
                 f"{self.amount_mg[i]:g} on a reset row (evid 3), which gives no dose; expected "
                 "0 (use evid 4 to reset and dose)")
        blank = np.array([r.strip() == "" for r in self.route], bool) & ~reset
        if blank.any():
            fail(blank, lambda i: "route is blank; expected a route name such as iv")
        with np.errstate(all="ignore"):
            last = self.time_h + self.addl * self.ii_h
        if not np.all(np.isfinite(last)):
            fail(~np.isfinite(last), lambda i: f"time_h + addl x ii_h overflows "
                 f"({self.time_h[i]:g} + {self.addl[i]} x {self.ii_h[i]:g} h); expected finite "
                 "hours")
        need = (self.addl > 0) & (self.ii_h <= 0)
        if need.any():
            fail(need, lambda i: f"ii_h: got {self.ii_h[i]:g} with addl = {self.addl[i]}, "
                 "expected an interval > 0 hours")
        ss = self.ss > 0
        const = ss & (self.ii_h == 0) & (self.amount_mg == 0) & (self.rate_mg_h > 0)
        need = ss & (self.ii_h <= 0) & ~const
        if need.any():
            fail(need, lambda i: f"ii_h: got {self.ii_h[i]:g} with ss = {self.ss[i]}, expected "
                 "the dosing interval (> 0 hours), or ii_h = 0 with amount_mg = 0 and a "
                 "rate_mg_h for a constant infusion at steady state")
        # NONMEM: with RATE > 0 the amount must be positive, except for a constant infusion at
        # steady state; an amount of 0 at a rate would be an infusion of nothing
        zero = (self.evid != 3) & (self.amount_mg == 0) & (self.rate_mg_h > 0) & ~const
        if zero.any():
            fail(zero, lambda i: f"amount_mg: got 0 with rate_mg_h = {self.rate_mg_h[i]:g}"
                 f"{f' and ss = {self.ss[i]}, ii_h = {self.ii_h[i]:g}' if self.ss[i] else ''}"
                 ", an infusion of nothing; expected an amount > 0 (it runs for f x amount / "
                 "rate hours), or ss = 1 with ii_h = 0 for a constant infusion at steady state "
                 "(as in NONMEM)")
        total = int(np.sum(self.addl + 1))
        if total > MAX_EVENTS:
            raise KetasimInputError(f"{src}: addl: the table expands to {total:,} doses, more "
                                    f"than the {MAX_EVENTS:,} ketasim accepts")

    # ------------------------------------------------------------------ basics
    def __len__(self):
        return len(self.route)

    def __setstate__(self, state):
        # arrays come back from a pickle writeable: make them read-only again
        for k, v in state.items():
            if isinstance(v, np.ndarray):
                v = _frozen(v)
            elif k == "covariates" and v:
                v = {c: _frozen(a) if isinstance(a, np.ndarray) else a for c, a in v.items()}
            object.__setattr__(self, k, v)

    _ARRAYS = ("time_h", "amount_mg", "duration_h", "addl", "ii_h", "rate_mg_h", "ss", "evid")

    def __eq__(self, other):
        if not isinstance(other, Doses):
            return NotImplemented
        if (self.subject is None) != (other.subject is None) or \
                set(self.covariates) != set(other.covariates):
            return False
        return (self.route == other.route
                and all(np.array_equal(getattr(self, f), getattr(other, f))
                        for f in self._ARRAYS)
                and (self.subject is None or np.array_equal(self.subject, other.subject))
                and all(np.array_equal(self.covariates[k], other.covariates[k], equal_nan=True)
                        for k in self.covariates))

    __hash__ = None

    @property
    def subject_ids(self) -> tuple | None:
        """Subject IDs in order of first appearance (None without a ``subject`` column)."""
        if self.subject is None:
            return None
        _, first = np.unique(self.subject, return_index=True)
        return tuple(float(self.subject[i]) for i in np.sort(first))

    def one_table(self, what: str) -> "Doses":
        """This table for a command that gives one dose table to everyone it runs (a
        population, a sweep, a course figure): a ``subject`` column with one ID is dropped;
        several subjects are refused, naming the table and where they can run."""
        ids = self.subject_ids
        if ids is None:
            return self
        if len(ids) == 1:
            import dataclasses
            return dataclasses.replace(self, subject=None)
        src = self.source or "the dose table"
        raise KetasimInputError(
            f"doses: {src} has a subject column ({len(ids):,} subjects); {what} gives one dose "
            "table to all its subjects: keep one subject's rows or leave out the column, or run "
            "the table's own subjects with ketasim.simulate / ketasim simulate")

    def _take(self, idx, **over) -> "Doses":
        """Rows ``idx`` (an index array) as a new table; keyword arguments replace columns."""
        kw = {f: getattr(self, f)[idx] for f in self._ARRAYS}
        kw["route"] = tuple(self.route[i] for i in idx)
        kw["subject"] = None if self.subject is None else self.subject[idx]
        kw["covariates"] = {k: v[idx] for k, v in self.covariates.items()}
        kw["line"] = None if self.line is None else self.line[idx]
        kw.update(over)
        kw.setdefault("observation_only_subjects", self.observation_only_subjects)
        return Doses(kw.pop("time_h"), kw.pop("amount_mg"), kw.pop("route"), source=self.source,
                     n_skipped=self.n_skipped, **kw)

    @classmethod
    def single(cls, amount_mg: float, route: str, time_h: float = 0.0,
               duration_h: float = 0.0, addl: int = 0, ii_h: float = 0.0, *,
               rate_mg_h: float = 0.0, ss: int = 0, evid: int = 1) -> "Doses":
        """One dose row (optionally repeated with ``addl``/``ii_h``, or at steady state)."""
        return cls([time_h], [amount_mg], [route], [duration_h], [addl], [ii_h],
                   rate_mg_h=[rate_mg_h], ss=[ss], evid=[evid])

    @classmethod
    def from_frame(cls, frame, source: str = "<DataFrame>") -> "Doses":
        """Build from a pandas DataFrame with the dose-table columns, as a CSV table would
        give them (one row per dose; NaN is not given, see :meth:`from_records`)."""
        return cls.from_records(frame.to_dict("records"), source=source)

    @classmethod
    def from_records(cls, records, source: str = "<doses>") -> "Doses":
        """Build from dicts with the dose-table column names (or their NONMEM aliases, any
        letter case), e.g. the rows of ``csv.DictReader`` or ``DataFrame.to_dict("records")``:
        a value ``None``, blank, ``"."``, NaN or pandas' ``NA`` is not given, as a blank cell
        of a CSV table (a bolus row's NaN ``rate_mg_h``, say); in ``time_h``, ``amount_mg``
        or ``route`` of a dose row it is refused. Rows with ``evid`` 0 or 2 are skipped
        and counted in ``n_skipped``, and so, as :func:`read_doses` reads a NONMEM dataset,
        are rows without an ``evid`` whose ``MDV`` is 0, or 1 with no dose item (with neither, in
        records with a ``DV`` key, rows whose dose items are all 0 or blank); a dose item
        (``amount_mg``, ``rate_mg_h``, ``ii_h``, ``addl``, ``ss``) set on a row with ``evid`` 0
        or 2 or ``MDV`` 0 is refused, as NONMEM refuses it; a row with
        anything but blank, ``.`` or 0 in a ``C`` key is a comment and skipped, and a
        ``DATE`` (``DAT1``-``DAT3``) must be blank;
        other keys must be covariates (``weight_kg`` or model parameter names, checked when the
        table is simulated) or NONMEM data items, which are read past."""
        rows = []
        skipped_ids = []        # the subject of each skipped row that names one
        obs_cov: dict = {}      # (subject text, covariate) -> its values on skipped rows
        n_obs = [0]             # rows skipped
        restarts = _TimeRestart(source)

        def skip(rec):
            """An observation row (evid 0 or 2, or told by MDV): counted, its subject and
            covariates kept, as read_doses keeps them."""
            n_obs[0] += 1
            restarts.see(rec.get("subject", ""), rec.get("time_h"), 0, f"row {i + 1}",
                         nonmem or "MDV" in keys, False)
            sid = rec.get("subject")
            if sid is not None:
                skipped_ids.append(sid)
            _keep_record_covariates(rec, obs_cov)
        for i, r in enumerate(records):
            if not isinstance(r, dict):
                raise KetasimInputError(f"{source}: row {i + 1}: got {type(r).__name__}, "
                                        "expected a dict with time_h, amount_mg, route")
            rec = {}
            missing = set()
            nm = {}                 # the NONMEM items read_doses reads: MDV, C, DATE, DAT1-3
            names = {}              # column -> the key the record gives it by (AMT, RATE, ...)
            nonmem = False          # a DV key: a NONMEM dataset's record
            keys = {str(k).upper() for k in r}
            for k, v in r.items():
                c = _canonical(str(k))
                if c is None:
                    k = str(k)
                    hint = _near_column(k)
                    if hint or not k.isidentifier():
                        raise KetasimInputError(f"{source}: row {i + 1}: unknown column {k!r}"
                                                f"{hint}; expected {', '.join(COLUMNS)}, a "
                                                "covariate or a NONMEM data item")
                    c = k
                if c == "" and str(k).upper() == "DV":
                    nonmem = True
                if c == "" and str(k).upper() in ("MDV", "C", "DATE", "DAT1", "DAT2", "DAT3") \
                        and not _blank_item(v):
                    nm[str(k).upper()] = v
                if c == "" or v is None or (isinstance(v, str) and v.strip() in ("", ".")):
                    continue               # (a blank, "." or None cell is not given, as in a CSV)
                if _missing_value(v):
                    # a DataFrame's empty cell (NaN, pandas NA): not given, as a blank cell;
                    # a required column's is refused below, by name
                    missing.add(c)
                    continue
                if c in rec:
                    raise KetasimInputError(f"{source}: row {i + 1}: column {c!r} given twice")
                rec[c] = v
                names[c] = str(k)
            # as read_doses: a row flagged in a C column is a comment (NONMEM's IGNORE=C), a
            # date is refused, and without an evid, MDV tells observation rows
            if "C" in nm and not _zero_item(nm["C"]):
                continue
            for k in ("DATE", "DAT1", "DAT2", "DAT3"):
                if k in nm and not _zero_item(nm[k]):
                    raise KetasimInputError(
                        f"{source}: row {i + 1}: {k}: got {nm[k]!r}; with a date, NONMEM reads "
                        "TIME as a clock time on that day, which ketasim does not: expected "
                        f"TIME (time_h) in hours since the first dose, and {k} blank or left "
                        "out")
            ev = rec.get("evid")
            if ev is None or (isinstance(ev, str) and ev.strip() in ("", ".")):
                if "MDV" in nm:
                    try:
                        mdv = float(nm["MDV"])
                    except (TypeError, ValueError):
                        raise KetasimInputError(f"{source}: row {i + 1}: MDV: got "
                                                f"{nm['MDV']!r}, expected a number") from None
                    if mdv == 0:
                        # (a dose item on it had been dropped without a word: NONMEM refuses it)
                        _no_record_dose_items(rec, names, source, i + 1, "MDV 0")
                    # (MDV 1: a dose when any dose item is set, NM-TRAN's EVID 1: a constant
                    # infusion at steady state, AMT 0 with RATE and SS, had been skipped)
                    if mdv == 0 or all(_zero_item(rec.get(c)) for c in _DOSE_ITEMS):
                        skip(rec)
                        continue
                elif nonmem and all(_zero_item(rec.get(c)) for c in _DOSE_ITEMS):
                    skip(rec)               # (NM-TRAN's EVID 0: no dose item, see read_doses)
                    continue
                ev = rec["evid"] = 1
            if isinstance(ev, str):
                try:
                    ev = float(ev)
                except ValueError:
                    pass                               # reported by Doses
            if isinstance(ev, (int, float, np.integer, np.floating)) and \
                    not isinstance(ev, bool) and ev in (0, 2):
                _no_record_dose_items(rec, names, source, i + 1, f"evid {ev:g}")
                skip(rec)
                continue
            for c in REQUIRED:
                if c not in rec and not (c != "time_h" and ev == 3):
                    if c in missing:
                        raise KetasimInputError(
                            f"{source}: row {i + 1}: {c}: got nan, expected "
                            + {"time_h": "a time in hours", "amount_mg": "an amount in mg",
                               "route": "a route name such as iv"}[c]
                            + f" ({c} is required on every dose row; NaN is an empty cell)")
                    raise KetasimInputError(f"{source}: row {i + 1}: missing {c}")
            restarts.see(rec.get("subject", ""), rec.get("time_h"),
                         int(ev) if isinstance(ev, (int, float, np.integer, np.floating))
                         and ev in (3, 4) else 0, f"row {i + 1}", nonmem or "MDV" in keys,
                         ev != 3, rec.get("ss"))
            rows.append(rec)
        has_subject = any("subject" in rec for rec in rows)
        for j, rec in enumerate(rows):
            if has_subject and rec.get("subject") is None:
                raise KetasimInputError(f"{source}: row {j + 1}: subject is missing; expected "
                                        "an ID on every row")
        cols = {c: [rec.get(c, {"route": "", "evid": 1}.get(c, 0.0)) for rec in rows]
                for c in COLUMNS}
        cov_names = list(dict.fromkeys([*(k for rec in rows for k in rec if k not in COLUMNS),
                                        *(k for _, k in obs_cov)]))
        covs = {k: [rec.get(k, np.nan) for rec in rows] for k in cov_names}
        if obs_cov and rows:
            # a covariate blank on every dose row of a subject takes its value from the
            # subject's observation rows, as read_doses does
            try:
                subj = [float(v) for v in cols["subject"]] if has_subject else None
            except (TypeError, ValueError):
                subj = None                 # (an ID that is no number: refused by Doses)
            if subj is not None or not has_subject:
                data = {k: v for k, v in covs.items()}
                if subj is not None:
                    data["subject"] = subj
                _fill_from_observation_rows(data, cov_names, obs_cov, source)
        return cls(cols["time_h"], cols["amount_mg"], cols["route"], cols["duration_h"],
                   cols["addl"], cols["ii_h"], source=source, rate_mg_h=cols["rate_mg_h"],
                   ss=cols["ss"], evid=cols["evid"],
                   subject=cols["subject"] if has_subject else None, covariates=covs or None,
                   n_skipped=n_obs[0],
                   observation_only_subjects=_observation_only(
                       skipped_ids, cols["subject"] if has_subject else ()))

    def __radd__(self, other) -> "Doses":
        """``0 + doses``: ``sum([d1, d2, ...])`` starts from 0, and gives ``d1 + d2 + ...``."""
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self
        return NotImplemented

    def __add__(self, other: "Doses") -> "Doses":
        if not isinstance(other, Doses):
            return NotImplemented          # (Python's TypeError names both types)
        if (self.subject is None) != (other.subject is None):
            raise KetasimInputError(f"{self.source} + {other.source}: one table has a subject "
                                    "column and the other not")
        keys = list(dict.fromkeys([*self.covariates, *other.covariates]))

        def cov(d, k):
            return d.covariates.get(k, np.full(len(d), np.nan))
        line = (None if self.line is None or other.line is None
                else np.r_[self.line, other.line])
        return Doses(np.r_[self.time_h, other.time_h], np.r_[self.amount_mg, other.amount_mg],
                     self.route + other.route, np.r_[self.duration_h, other.duration_h],
                     np.r_[self.addl, other.addl], np.r_[self.ii_h, other.ii_h],
                     rate_mg_h=np.r_[self.rate_mg_h, other.rate_mg_h],
                     ss=np.r_[self.ss, other.ss], evid=np.r_[self.evid, other.evid],
                     subject=(None if self.subject is None
                              else np.r_[self.subject, other.subject]),
                     covariates={k: np.r_[cov(self, k), cov(other, k)] for k in keys} or None,
                     n_skipped=self.n_skipped + other.n_skipped, line=line,
                     observation_only_subjects=_observation_only(
                         self.observation_only_subjects + other.observation_only_subjects,
                         () if self.subject is None else np.r_[self.subject, other.subject]))

    def scaled(self, factor: float) -> "Doses":
        """The same table with every amount (and infusion rate) multiplied by ``factor``."""
        if not (is_real(factor) and 0 <= factor < np.inf):
            raise KetasimInputError(f"{self.source}: scaled: got a factor of {factor!r}, "
                                    "expected a finite number >= 0")
        return self._take(np.arange(len(self)), amount_mg=self.amount_mg * factor,
                          rate_mg_h=np.where(self.rate_mg_h > 0, self.rate_mg_h * factor,
                                             self.rate_mg_h))

    def to_records(self) -> list[dict]:
        """One dict per row with ketasim's column names (the optional columns only where a
        row uses them: ``rate_mg_h``, ``ss``, ``evid``, ``subject``, covariates)."""
        out = []
        optional = self._optional_columns()   # (once: per row, it had made a long table's
        # records take time in the square of its rows, 12 s for 100,000 sessions)
        for i in range(len(self)):
            r = dict(time_h=float(self.time_h[i]), amount_mg=float(self.amount_mg[i]),
                     route=self.route[i], duration_h=float(self.duration_h[i]),
                     addl=int(self.addl[i]), ii_h=float(self.ii_h[i]))
            for name in optional:
                if name == "subject":
                    r[name] = float(self.subject[i])
                elif name in self.covariates:
                    r[name] = float(self.covariates[name][i])
                else:
                    a = getattr(self, name)
                    r[name] = float(a[i]) if a.dtype.kind == "f" else int(a[i])
            out.append(r)
        return out

    def _optional_columns(self) -> list[str]:
        cols = [c for c, default in (("rate_mg_h", 0.0), ("ss", 0), ("evid", 1))
                if np.any(getattr(self, c) != default)]
        if self.subject is not None:
            cols.append("subject")
        return cols + list(self.covariates)


def is_frame(obj) -> bool:
    """Whether ``obj`` is a pandas DataFrame (without importing pandas)."""
    return type(obj).__name__ == "DataFrame" and type(obj).__module__.startswith("pandas")


def records_table(spec) -> Doses | None:
    """The dose table of dose records (a list or tuple of dicts, :meth:`Doses.from_records`)
    or of a pandas DataFrame of them (:meth:`Doses.from_frame`); None for anything else."""
    if isinstance(spec, (list, tuple)) and all(isinstance(r, dict) for r in spec):
        return Doses.from_records(spec)
    if is_frame(spec):
        return Doses.from_frame(spec)
    return None


def expand(doses: Doses) -> Doses:
    """Expand ``addl``/``ii_h`` repeats into single doses, sorted by time (stable).

    The only function that realises repeats; the result has ``addl == 0`` everywhere. A
    repeat is an ordinary dose: ``ss`` and a reset (``evid`` 4) apply to the row's first dose
    only, and ``ii_h`` is kept only where ``ss`` needs it. A reset (``evid`` 3 or 4, or
    ``ss = 1``) of the same subject after a row's record time cancels the row's repeats at and
    after the reset time, as in NONMEM.

    A table that is already expanded (no repeats, sorted by time, ``ii_h`` only on ``ss``
    rows) is returned as it is; the expansion of a small table is kept with the table (dose
    tables are immutable), as long as its covariates are the same arrays.
    """
    D = len(doses)
    if D == 0 or (not doses.addl.any() and bool(np.all(doses.time_h[1:] >= doses.time_h[:-1]))
                  and not np.any((doses.ss == 0) & (doses.ii_h != 0))):
        return doses
    memo = doses._memo()
    hit = memo.get("expand")
    if hit is not None and _same_covariates(hit[0], doses.covariates):
        return hit[1]
    out = _expand(doses)
    if len(out) <= _MEMO_MAX_ROWS:
        memo["expand"] = (dict(doses.covariates), out)
    return out


_MEMO_MAX_ROWS = 10_000        # expansions kept with their table up to this many doses


def _same_covariates(a: dict, b: dict) -> bool:
    """The same (read-only) covariate arrays: a covariate replaced in the dict, or one put in
    writeable, is not trusted."""
    return len(a) == len(b) and all(b.get(k) is v and not v.flags.writeable
                                    for k, v in a.items())


def _expand(doses: Doses) -> Doses:
    n = doses.addl + 1
    idx = np.repeat(np.arange(len(doses)), n)
    k = np.arange(idx.size) - np.repeat(np.cumsum(n) - n, n)
    t = doses.time_h[idx] + k * doses.ii_h[idx]
    order = np.argsort(t, kind="stable")
    idx, t, k = idx[order], t[order], k[order]
    keep = ~_cancelled_repeats(doses, idx, k, t)
    if not keep.all():
        idx, t, k = idx[keep], t[keep], k[keep]
    first = k == 0
    ss = np.where(first, doses.ss[idx], 0)
    evid = np.where(first, doses.evid[idx], 1)
    return doses._take(idx, time_h=t, addl=np.zeros(idx.size, np.int64),
                       ii_h=np.where(ss > 0, doses.ii_h[idx], 0.0), ss=ss, evid=evid)


def _cancelled_repeats(doses: Doses, idx, k, t) -> np.ndarray:
    """Which expanded doses (row ``idx``, repeat ``k``, time ``t``) a later reset cancels.

    A reset (``evid`` 3 or 4, or ``ss = 1``) of the same subject after a row's record time
    cancels the row's additional doses still to come, those at the reset time included (a
    reset applies before any dose at its time): NONMEM's SS = 1 "zeroes out" earlier doses and
    cancels "infusions in progress or pending additional doses" (NONMEM Users Guide VIII, SS
    data item), and EVID 3 re-initializes the whole kinetic system (EVID data item), more than
    SS = 1 does. Repeats had gone on after the reset, each adding its dose to the emptied
    system. The row's own first dose, and the repeats of a row that is itself the reset
    (evid 4 or ss = 1 with addl), are kept."""
    reset = (doses.evid == 3) | (doses.evid == 4) | (doses.ss == 1)
    out = np.zeros(idx.size, bool)
    if not reset.any() or not np.any(k > 0):
        return out
    if doses.subject is None:
        code = np.zeros(len(doses), np.int64)
    else:
        code = np.unique(doses.subject, return_inverse=True)[1].ravel().astype(np.int64)
    q = np.flatnonzero(k > 0)
    r = np.flatnonzero(reset)
    # resets and the repeats' record times sorted together by (subject, time), a reset before
    # a record time equal to it (a reset at the record time is not after it); then, for each
    # repeat, the next reset in that order, if it is the same subject's
    c = np.concatenate([code[r], code[idx[q]]])
    tt = np.concatenate([doses.time_h[r], doses.time_h[idx[q]]])
    is_q = np.concatenate([np.zeros(r.size, bool), np.ones(q.size, bool)])
    order = np.lexsort((is_q, tt, c))
    c, tt, is_q = c[order], tt[order], is_q[order]
    pos = np.where(is_q, c.size, np.arange(c.size))
    nxt = np.minimum.accumulate(pos[::-1])[::-1]          # next reset at or after each place
    has = nxt < c.size
    j = np.minimum(nxt, c.size - 1)
    t_reset = np.where(has & (c[j] == c), tt[j], np.inf)
    which = order[is_q] - r.size                          # place of each repeat in q
    out[q[which]] = t_reset[is_q] <= t[q[which]]
    return out


# ---------------------------------------------------------------------- CSV
def check_commas(header, text: str, where: str, expected: str) -> None:
    """Refuse a CSV header read as one column that another separator splits (semicolons,
    tabs, '|'), saying so: it had read as one unknown column named after the whole line."""
    if len(header) != 1:
        return
    sep = next((n for c, n in ((";", "semicolons"), ("\t", "tabs"), ("|", "'|'"))
                if c in header[0]), None)
    if sep is not None:
        raise KetasimInputError(f"{where}: one column {text!r}: the file seems to separate "
                                f"its columns with {sep}; expected commas ({expected})")


_TOML_LINE = re.compile(r"\s*(\[\[?\s*[A-Za-z0-9_.\"' -]+\s*\]\]?|[A-Za-z0-9_-]+\s*=.*)\s*")


def _not_toml(header, where: str) -> None:
    """Refuse a dose table whose header is a TOML line (``amount_mg = 35``, ``[model]``): a
    course or model file given where a CSV is read (``--doses -`` with a course file on
    standard input, a course file not named .toml). It had been "unknown column 'amount_mg =
    35'", a list of the dose table's columns."""
    if len(header) != 1 or not _TOML_LINE.fullmatch(header[0]):
        return
    raise KetasimInputError(
        f"{where}: {header[0].strip()!r} is a line of a TOML file, expected a CSV dose table "
        "(header time_h,amount_mg,route): a course file is read as one by its name ending in "
        ".toml (standard input and other names are read as dose tables), and a model file "
        "goes to --model")


def _read_at_most(stream, limit: int, too_large: str) -> bytes:
    """The bytes of ``stream`` (text is encoded as UTF-8), at most ``limit`` of them: more is
    refused with the message ``too_large``, so an endless stream (``< /dev/zero``) is not read
    until memory runs out."""
    data = stream.read(limit + 1)
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) > limit:
        raise KetasimInputError(too_large)
    return data


def _decode(data: bytes, where: str, what: str = "a CSV dose table") -> str:
    """Text of a small file held in memory: UTF-8 (BOM or not), or UTF-16/32 with a BOM."""
    enc = _encoding(data[:4096], where, what) if data else "utf-8"
    try:
        return data.decode(enc if enc != "utf-8" else "utf-8-sig")
    except UnicodeDecodeError as exc:
        name = "UTF-8" if enc.startswith("utf-8") else enc.upper()
        raise KetasimInputError(f"{where}: not {name} text (bad byte at offset {exc.start}); "
                                f"expected {what}") from None



def _encoding(head: bytes, where: str, what: str = "a CSV dose table") -> str:
    """The text encoding of a dose file (or of ``what``) from its first bytes (BOM, or UTF-16
    without one)."""
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return "utf-32"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    if len(head) >= 4 and b"\x00" in head:
        even, odd = head[0::2], head[1::2]
        if odd.count(0) >= len(odd) // 2 and even.count(0) == 0:
            return "utf-16-le"
        if even.count(0) >= len(even) // 2 and odd.count(0) == 0:
            return "utf-16-be"
        raise KetasimInputError(f"{where}: this is a binary file, expected {what}")
    return "utf-8"


class _Lines:
    """Decoded lines of a binary stream, with a byte budget (MAX_DOSE_FILE_BYTES)."""

    def __init__(self, fh, where: str, limit: int):
        self.fh, self.where, self.limit = fh, where, limit
        head = fh.peek(4096)[:4096] if hasattr(fh, "peek") else b""
        self.head = head
        self.encoding = _encoding(head, where) if head else "utf-8"
        self.nbytes = 0

    def _budget(self, n):
        self.nbytes += n
        if self.nbytes > self.limit:
            raise KetasimInputError(
                f"{self.where}: dose table larger than the {self.limit / 2**20:.0f} MiB limit "
                "(MAX_DOSE_FILE_BYTES); split it, or use addl/ii_h for repeated doses")

    def __iter__(self):
        self._gen = self._generate()
        return self._gen

    def close(self):
        gen = getattr(self, "_gen", None)
        if gen is not None:
            gen.close()

    def _generate(self):
        if self.encoding.startswith("utf-8"):
            offset = 0
            first = True
            for raw in self.fh:
                self._budget(len(raw))
                if b"\x00" in raw:
                    raise KetasimInputError(f"{self.where}: this is a binary file, expected a "
                                            "CSV dose table")
                try:
                    text = raw.decode("utf-8-sig" if first else "utf-8")
                except UnicodeDecodeError as exc:
                    raise KetasimInputError(
                        f"{self.where}: not UTF-8 text (bad byte at offset "
                        f"{offset + exc.start}); expected a CSV dose table (UTF-8 or UTF-16)") \
                        from None
                first = False
                offset += len(raw)
                if "\r" in text[:-2]:
                    # lines ended by CR alone (classic Mac, Excel's "CSV (Macintosh)"): the
                    # file is read by \n, so split them here, each a line of its own
                    yield from _CR_LINE.findall(text)
                else:
                    yield text
        else:
            wrapper = io.TextIOWrapper(self.fh, encoding=self.encoding, newline="")
            try:
                while True:
                    text = wrapper.readline()
                    if not text:
                        break
                    self._budget(len(text) * (4 if self.encoding == "utf-32" else 2))
                    yield text
            except UnicodeDecodeError:
                raise KetasimInputError(f"{self.where}: not valid {self.encoding.upper()} text "
                                        "(a byte-order mark says so, the content disagrees); "
                                        "expected a CSV dose table") from None
            finally:
                wrapper.detach()


_CR_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")    # one line with its ending


def _open_source(path_or_text, source):
    """(iterable of text lines, where, closer) for a path, '-', or an open file."""
    if hasattr(path_or_text, "read"):
        where = source or getattr(path_or_text, "name", "<doses>")
        if isinstance(path_or_text, io.TextIOBase) or isinstance(
                getattr(path_or_text, "encoding", None), str):
            fh = path_or_text

            def lines():
                n = 0
                for text in fh:
                    n += len(text)
                    if n > MAX_DOSE_FILE_BYTES:
                        raise KetasimInputError(
                            f"{where}: dose table larger than the "
                            f"{MAX_DOSE_FILE_BYTES / 2**20:.0f} MiB limit (MAX_DOSE_FILE_BYTES)"
                            "; split it, or use addl/ii_h for repeated doses")
                    if "\x00" in text:
                        raise KetasimInputError(f"{where}: this is a binary file, expected a "
                                                "CSV dose table")
                    yield text[1:] if n == len(text) and text.startswith("\ufeff") else text
            return lines(), str(where), None
        fh = path_or_text if hasattr(path_or_text, "peek") else io.BufferedReader(
            _RawAdapter(path_or_text))
        return _Lines(fh, str(where), MAX_DOSE_FILE_BYTES), str(where), None
    if not isinstance(path_or_text, (str, os.PathLike)):
        raise KetasimInputError(f"doses: got {type(path_or_text).__name__}, expected a CSV path "
                                "or an open file")
    s = os.fspath(path_or_text)
    if isinstance(s, str) and not s.strip():       # (Path("") is the folder ".")
        raise KetasimInputError(f"doses: got {s!r}, expected a CSV path (or '-' for standard "
                                "input)")
    if s == "-" or (s == "/dev/stdin" and not Path(s).exists()):
        where = source or "<stdin>"
        if sys.stdin is None:       # (started with it closed, <&-: had been an internal error)
            raise KetasimInputError(f"{where}: standard input is closed; expected a CSV dose "
                                    "table there, or a file name")
        return _Lines(sys.stdin.buffer, where, MAX_DOSE_FILE_BYTES), where, None
    p = Path(s)
    where = source or str(p)
    if p.is_dir():
        raise KetasimInputError(f"doses: {str(p)!r} is a folder, expected a CSV file")
    if not p.exists():
        raise KetasimInputError(f"doses: file {str(p)!r} not found{where_gone(p)}")
    if p.is_file() and p.stat().st_size > MAX_DOSE_FILE_BYTES:
        raise KetasimInputError(
            f"{where}: {p.stat().st_size / 2**20:.0f} MiB, larger than the "
            f"{MAX_DOSE_FILE_BYTES / 2**20:.0f} MiB limit for a dose table "
            "(MAX_DOSE_FILE_BYTES); split it, or use addl/ii_h for repeated doses")
    fh = open(p, "rb")   # a regular file, a pipe or /dev/stdin
    try:
        return _Lines(fh, where, MAX_DOSE_FILE_BYTES), where, fh.close
    except BaseException:
        fh.close()
        raise


class _RawAdapter(io.RawIOBase):
    """A binary file-like object without ``peek`` as a raw stream (for BufferedReader)."""

    def __init__(self, fh):
        self._fh = fh

    def readable(self):
        return True

    def readinto(self, b):
        data = self._fh.read(len(b))
        b[:len(data)] = data
        return len(data)


def _id_exact(v) -> bool:
    """Whether a subject ID survives as a float64 (IDs are numbers): an integer up to 2^53, or
    a text whose number is the float's own (no digits lost). Anything else is checked where
    IDs are parsed."""
    from decimal import Decimal, InvalidOperation

    if isinstance(v, (bool, np.bool_)):
        return True
    if isinstance(v, (int, np.integer)):
        try:
            return int(float(v)) == int(v)
        except OverflowError:
            return False
    if isinstance(v, str):
        try:
            f = float(v)
            return not math.isfinite(f) or Decimal(v.strip()) == Decimal(repr(f))
        except (ValueError, InvalidOperation):
            return True
    return True


def _blank_item(v) -> bool:
    """Whether a record's value is a blank cell: None, blank or ``.`` text, NaN, pandas' NA."""
    return v is None or (isinstance(v, str) and v.strip() in ("", ".")) or _missing_value(v)


# a NONMEM record's dose items: without EVID and MDV, a record whose items are all 0 or blank
# is an observation (NM-TRAN supplies EVID 0), in a dataset with a DV column
_DOSE_ITEMS = ("amount_mg", "rate_mg_h", "ii_h", "addl", "ss")


def _zero_item(v) -> bool:
    """Whether a NONMEM flag (C, DATE) or dose item is not set: blank, ``.`` or 0, as
    read_doses reads it (text a plain decimal: '0_0' or other digits than ASCII are no 0, as
    they are no number; such a dose item had made its row an observation, skipped)."""
    if _blank_item(v):
        return True
    try:
        return (to_float(v) if isinstance(v, str) else float(v)) == 0.0
    except (TypeError, ValueError):
        return False


def _missing_value(v) -> bool:
    """Whether a record's value is an empty cell of a DataFrame: a float NaN (a NumPy or
    Python float) or pandas' NA."""
    if isinstance(v, (float, np.floating)):
        return bool(np.isnan(v))
    t = type(v)
    return t.__name__ == "NAType" and t.__module__.startswith("pandas")


def _no_record_dose_items(rec, names, source, row, kind) -> None:
    """Refuse an observation record (``kind``: evid 0 or 2, or MDV 0) that sets a dose item
    (:data:`_DOSE_ITEMS`: not blank, ``.`` or 0; a value that is no number counts too, refused
    as a dose's would be), naming it by the record's own key (``names``); the records' twin of
    :func:`_no_dose_items`."""
    for c in _DOSE_ITEMS:
        if not _zero_item(rec.get(c)):
            raise _observation_item(source, None, kind, c, rec[c], names[c], row=row)


def _observation_item(where, line_no, kind, item, value, name=None,
                      row=None) -> KetasimInputError:
    """The error for an observation row (evid 0 or 2, or MDV 0) that carries a dose item
    (``item``, one of :data:`_DOSE_ITEMS`, whose column the table calls ``name``): NONMEM
    requires dose items to be 0 there, and ketasim skips such rows, so the dose (its amount,
    rate, repeats or steady state) would be lost without a word."""
    at = f"line {line_no}" if row is None else f"row {row}"
    give = "MDV 1" if kind.startswith("MDV") else "evid 1 (or blank)"
    named = item if name is None or name.lower() == item else f"{item} ({name})"
    what = "to give it" if item == "amount_mg" else "to make the row a dose"
    return KetasimInputError(f"{where}: {at}: {named}: got {value} on an observation row "
                             f"({kind}), which gives no dose; expected 0 or blank there, or "
                             f"{give} {what}")


def _observation_only(skipped_ids, kept) -> tuple:
    """The subject IDs (floats, sorted) of skipped rows that have no kept row: subjects with
    observations only. IDs that are blank or not numbers are left out (a kept row's ID is
    checked where it is read)."""
    out = set()
    for v in skipped_ids:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.add(f)
    if not out:
        return ()
    have = set()
    for v in kept:
        try:
            have.add(float(v))
        except (TypeError, ValueError):
            pass
    return tuple(sorted(out - have))


class _TimeRestart:
    """Refuses, in a NONMEM dataset (a ``DV`` or ``MDV`` column), a reset row (evid 3 or 4)
    whose time is earlier than a row of its subject read before it (observation rows
    included). NONMEM starts the time again there (a new occasion of a crossover, TIME back to
    0), while ketasim orders a subject's rows by time, so the reset would have come before the
    earlier rows' doses and added to them. (Other tables' rows may come in any order.) So is
    a reset at the time of a dose row above it (a steady-state dose, ss 1, resets too): NONMEM
    gives that dose, then resets (the dose is lost), while ketasim resets before every dose at
    its time. So are rows of an ID that come back after another ID's: a new individual to
    NONMEM, while ketasim joins them to the ID's subject."""

    def __init__(self, where: str):
        self.where = where
        self.latest: dict = {}      # subject -> (latest time, its line or row)
        self.dose: dict = {}        # subject -> (time, line or row) of its last dose row
        self.last = None            # the subject of the row before, and that row

    def see(self, subject, time, reset: int, at: str, nonmem: bool, dose: bool,
            ss=None) -> None:
        if not nonmem:              # (rows of other tables may come in any order)
            return
        t = _cell_float(time)
        if t is None or not math.isfinite(t):
            return                  # (reported where the row's time is read)
        key = _cell_float(subject)
        key = subject if key is None else key
        seen = self.latest.get(key)
        if self.last is not None and key != self.last[0] and key in self.latest:
            raise KetasimInputError(
                f"{self.where}: {at}: subject {subject} again, after the rows of subject "
                f"{self.last[2]} ({self.last[1]}): NONMEM reads the rows of an ID that come back "
                "after another ID's as a new individual, while ketasim joins them into one "
                "subject (their doses add up); expected each subject's rows together, or "
                "another ID for the new individual")
        self.last = (key, at, subject)
        if reset and seen is not None and t < seen[0]:
            raise KetasimInputError(
                f"{self.where}: {at}: a reset (evid {reset}) at time_h "
                f"{t:g} after {seen[1]} at {seen[0]:g} h of the same subject: NONMEM starts "
                "the time again at such a reset, which ketasim does not (it orders a subject's "
                "rows by time, so the reset would come before those rows' doses); expected "
                f"time_h in hours since the first dose, {seen[0]:g} or later here")
        given = self.dose.get(key)
        # (blank, or reported where the row's ss is read: not steady here)
        steady = dose and _cell_float(ss) == 1.0
        if (reset or steady) and given is not None and t == given[0]:
            kind = f"evid {reset}" if reset else "a steady-state dose, ss 1"
            raise KetasimInputError(
                f"{self.where}: {at}: a reset ({kind}) at time_h "
                f"{t:g}, the time of the dose on {given[1]} above it: NONMEM gives that dose and "
                "then resets (the dose is lost), while ketasim resets before every dose at its "
                "time (the dose would be kept); expected the reset row above the doses of its "
                "time, or the dose left out")
        if seen is None or t > seen[0]:
            self.latest[key] = (t, at)
        if dose:
            self.dose[key] = (t, at)


def _cell_float(v):
    """A cell or record value as a float (text read as a dose table reads numbers), or None
    when it is none."""
    try:
        return float(to_float(v) if isinstance(v, str) else v)
    except (TypeError, ValueError):
        return None


def _number(v: str, c: str, where: str, line_no: int) -> float:
    try:
        x = to_float(v)
    except ValueError:
        raise KetasimInputError(f"{where}: line {line_no}: {c}: got {v!r}, expected a "
                                "number") from None
    if not math.isfinite(x):
        raise KetasimInputError(f"{where}: line {line_no}: {c}: got {v!r}, expected a "
                                "finite number")
    return x


def read_doses(path_or_text, *, source: str | None = None) -> Doses:
    """Read a dose table from a CSV file, ``"-"`` (standard input) or a file-like object.

    Columns ``time_h, amount_mg, route`` (or ``TIME, AMT, CMT``) are required; every other
    column of the module docstring is optional (blank or ``.`` = not given). Header cells are
    matched in any letter case, NONMEM aliases included. A header cell that is neither a
    column, an alias nor a NONMEM data item is a covariate (a model parameter name or
    ``weight_kg``), checked against the model when the table is simulated; one that looks like
    a misspelt column (``ammount_mg``) is an error here. Rows with ``evid`` 0 or 2 (and, when
    there is no ``evid`` column, rows with ``MDV`` = 0, or ``MDV`` = 1 and no dose item; with
    neither, in a NONMEM dataset, one with a ``DV`` column, rows whose dose items ``AMT``,
    ``RATE``, ``II``, ``ADDL`` and ``SS`` are all 0 or blank, as NM-TRAN reads them) are
    observations and are skipped; their count is :attr:`Doses.n_skipped`. A dose item other
    than 0 or blank on a row with ``evid`` 0 or 2 or ``MDV`` 0 is refused, naming the line and
    the column, as NONMEM refuses it.

    The file is read row by row into typed arrays (UTF-8, with or without a byte-order mark,
    or UTF-16/32 with one); files larger than :data:`MAX_DOSE_FILE_BYTES` are refused.
    Messages name the file's physical line (comment lines starting with ``#`` and blank lines
    count).
    """
    lines, where, close = _open_source(path_or_text, source)
    try:
        return _parse(lines, where)
    except csv.Error as exc:
        raise KetasimInputError(f"{where}: not a readable CSV dose table ({exc})") from None
    finally:
        if hasattr(lines, "close"):
            lines.close()          # the decoder lets go of the file (stdin stays open)
        if close is not None:
            close()


class _Rows:
    """csv.reader over the lines, whose errors name the file and the line (csv's own message
    names neither: 'field larger than field limit (131072)')."""

    def __init__(self, lines, where: str):
        # (skipinitialspace: '"time_h", "amount_mg"' is quoted after its spaces, as a CSV
        # written by hand often is; its header had been read as '"amount_mg"')
        self._reader = csv.reader(_ended(lines), skipinitialspace=True)
        self._where = where
        self.header = None          # the column names, once read (for messages)

    @property
    def line_num(self) -> int:
        return self._reader.line_num

    def __iter__(self):
        return self

    def __next__(self):
        start = self._reader.line_num + 1
        try:
            r = next(self._reader)
        except csv.Error as exc:
            msg = str(exc)
            if "field limit" in msg:
                msg = (f"a field longer than {csv.field_size_limit():,} characters; expected "
                       "numbers and route names")
            raise KetasimInputError(f"{self._where}: line {self._reader.line_num}: not a "
                                    f"readable CSV row ({msg})") from None
        # a quoted cell whose closing quote is missing runs on over the line break (to the end
        # of the file, or to the next quote): csv reads it without a word, as one cell
        if self._reader.line_num > start or (r and r[-1].endswith(("\n", "\r"))):
            k = next(i for i, c in enumerate(r) if "\n" in c or "\r" in c)
            h = self.header
            cell = (h[k] if h is not None and k < len(h) and h[k] else f"cell {k + 1}")
            raise KetasimInputError(
                f"{self._where}: line {start}: {cell}: a quote (\") is not closed on its "
                "line (csv would read on to the next quote or the end of the file as this "
                "cell); expected a closing quote before the next comma or the end of the line")
        return r


def _ended(lines):
    """The lines, a last one without a line ending given one (so that a quote left open on
    it leaves a line break in its cell, as on any other line)."""
    for text in lines:
        if text and text[-1] not in "\r\n":
            text += "\n"
        yield text


def _parse(lines, where: str) -> Doses:
    reader = _Rows(lines, where)
    header = None
    header_line = 1
    for r in reader:
        if r and r[0].startswith("\ufeff"):      # a byte-order mark written twice
            r[0] = r[0].lstrip("\ufeff")
        if any(c.strip() for c in r) and not r[0].lstrip().startswith("#"):
            header = [h.strip() for h in r]
            header_line = reader.line_num
            reader.header = header
            break
    if header is None:
        raise KetasimInputError(f"{where}: empty dose table; expected a header "
                                "time_h,amount_mg,route then one row per dose")
    hl = f"line {header_line}"
    check_commas(header, header[0], f"{where}: {hl}", "time_h,amount_mg,route")
    _not_toml(header, f"{where}: {hl}")
    canon = []
    for h in header:
        c = _canonical(h)
        if c is None and not h:
            raise KetasimInputError(f"{where}: {hl}: an empty column name in {','.join(header)!r}"
                                    " (a comma too many, at the end of the line?); expected a "
                                    "name for every column")
        if c is None:
            hint = _near_column(h)
            if hint or not h.isidentifier():
                raise KetasimInputError(f"{where}: {hl}: unknown column {h!r}{hint}; expected "
                                        f"{', '.join(COLUMNS)} (or NONMEM's "
                                        f"{', '.join(ALIASES)}), a covariate (a model "
                                        "parameter name or weight_kg) or a NONMEM data item")
            c = h
        canon.append(c)
    named = [c for c in canon if c]
    dup = [c for c in named if named.count(c) > 1]
    if dup:
        raise KetasimInputError(f"{where}: {hl}: column {dup[0]!r} appears twice in {header} "
                                "(an alias counts as its column)")
    for c in REQUIRED:
        if c not in canon:
            raise KetasimInputError(f"{where}: {hl}: missing column {c!r} (header: "
                                    f"{','.join(header)}); required: {', '.join(REQUIRED)} "
                                    "(or TIME, AMT, CMT)")
    pos = {c: i for i, c in enumerate(canon) if c}
    mdv_pos = next((i for i, h in enumerate(header) if h.lower() == "mdv"), None)
    # a NONMEM dataset (it has a DV column) without EVID and MDV: NM-TRAN supplies EVID, 0 for
    # a record whose dose items are all 0 or blank (an observation), 1 otherwise
    nonmem = any(h.upper() == "DV" for h in header)
    dose_items = [c for c in _DOSE_ITEMS if c in pos]
    # NONMEM's comment flag: a row with C (or anything but blank, "." or 0) in a C column is
    # a comment, as with $DATA ... IGNORE=C
    c_pos = next((i for i, h in enumerate(header) if h.upper() == "C"), None)
    # DATE and DAT1-DAT3 turn TIME into a clock time (NM-TRAN): refused when given (below)
    date_pos = [i for i, h in enumerate(header) if h.upper() in ("DATE", "DAT1", "DAT2",
                                                                  "DAT3")]
    numeric = [c for c in COLUMNS if c != "route" and c in pos]
    covariates = [c for c in canon if c and c not in COLUMNS]
    data = {c: array.array("d") for c in numeric + covariates}
    lines_out = array.array("q")
    route_codes = array.array("i")
    route_names: dict[str, int] = {}
    ncol = len(header)
    skipped = 0
    skipped_ids = []
    obs_cov: dict = {}          # (subject text, covariate) -> set of values on skipped rows
    n_rows = 0
    nan = float("nan")
    restarts = _TimeRestart(where)
    for r in reader:
        line_no = reader.line_num
        if not any(c.strip() for c in r) or r[0].lstrip().startswith("#"):
            continue
        # (a comment row is skipped whatever its number of fields, as NONMEM skips it)
        if c_pos is not None and c_pos < len(r) and r[c_pos].strip() not in ("", ".", "0"):
            continue
        if len(r) != ncol:
            raise KetasimInputError(f"{where}: line {line_no}: {len(r)} fields, expected "
                                    f"{ncol} ({','.join(header)})")
        for i in date_pos:
            if r[i].strip() not in ("", ".", "0"):
                raise KetasimInputError(
                    f"{where}: line {line_no}: {header[i]}: got {r[i].strip()!r}; with a "
                    "date, NONMEM reads TIME as a clock time on that day, which ketasim does "
                    "not: expected TIME (time_h) in hours since the first dose, and the "
                    f"{header[i]} column blank or left out")
        cells = {c: r[i].strip() for c, i in pos.items()}
        ev = cells.get("evid", "")
        if ev in ("", "."):
            mdv = r[mdv_pos].strip() if mdv_pos is not None else ""
            if mdv not in ("", "."):
                m = _number(mdv, "MDV", where, line_no)
                if m == 0:
                    _no_dose_items(cells, dose_items, header, pos, where, line_no, "MDV 0")
                # (MDV 1: a dose when any dose item is set, NM-TRAN's EVID 1: a constant
                # infusion at steady state, AMT 0 with RATE and SS, had been skipped)
                observation = m == 0 or all(_zero_item(cells[c]) for c in dose_items)
            else:
                # (without MDV, in a NONMEM dataset: such rows had been doses of 0 mg, each a
                # session of its own in the summaries, and the run's end 28 days after the
                # last observation)
                observation = nonmem and all(_zero_item(cells[c]) for c in dose_items)
            evid = 1.0
        else:
            evid = _number(ev, "evid", where, line_no)
            observation = evid in (0.0, 2.0)
            if observation:
                _no_dose_items(cells, dose_items, header, pos, where, line_no, f"evid {ev}")
            elif evid not in (1.0, 3.0, 4.0):
                raise KetasimInputError(f"{where}: line {line_no}: evid: got {ev}, expected 0, "
                                        "1, 2, 3 or 4 (NONMEM event ids)")
        restarts.see(cells.get("subject", ""), cells["time_h"],
                     int(evid) if not observation and evid in (3.0, 4.0) else 0,
                     f"line {line_no}", nonmem or mdv_pos is not None,
                     not observation and evid != 3.0, cells.get("ss"))
        if observation:          # skipped, counted, its subject and covariates kept
            skipped += 1
            skipped_ids.append(cells.get("subject", ""))
            _keep_obs_covariates(r, pos, covariates, cells, obs_cov)
            continue
        n_rows += 1
        if n_rows > MAX_EVENTS:
            raise KetasimInputError(f"{where}: line {line_no}: more than {MAX_EVENTS:,} dose "
                                    "rows (MAX_EVENTS); split the table or use addl/ii_h")
        route = cells["route"]
        route = "" if route == "." else route
        if not route and evid != 3.0:
            raise KetasimInputError(f"{where}: line {line_no}: route is blank; expected a "
                                    "route name such as iv")
        code = route_names.setdefault(route, len(route_names))
        route_codes.append(code)
        lines_out.append(line_no)
        for c in numeric:
            v = cells[c]
            if c == "evid":
                data[c].append(evid)
                continue
            if v in ("", "."):
                if c in REQUIRED and not (c == "amount_mg" and evid == 3.0):
                    raise KetasimInputError(f"{where}: line {line_no}: {c} is blank; expected a "
                                            "number")
                if c == "subject":
                    raise KetasimInputError(f"{where}: line {line_no}: subject is blank; "
                                            "expected an ID on every row")
                data[c].append(0.0)
                continue
            x = _number(v, c, where, line_no)
            if c == "subject" and not _id_exact(v):
                raise KetasimInputError(f"{where}: line {line_no}: subject: got {v}, an ID with "
                                        f"more digits than a number keeps ({x!r}: other IDs "
                                        "would merge with it); expected an ID a double keeps "
                                        "exactly (15 significant digits at most)")
            if x < 0 and c != "subject" and not (c == "rate_mg_h" and x == -2.0):
                raise KetasimInputError(f"{where}: line {line_no}: {c}: got {v}, expected a "
                                        "number >= 0" + (" (or -2: duration from the model)"
                                                         if c == "rate_mg_h" else ""))
            if c in _INT_COLUMNS and (x != int(x) or x > MAX_EVENTS):
                raise KetasimInputError(f"{where}: line {line_no}: {c}: got {v}, expected a "
                                        f"whole number <= {MAX_EVENTS:,}")
            data[c].append(x)
        for c in covariates:
            v = r[pos[c]].strip()
            data[c].append(nan if v in ("", ".") else _number(v, c, where, line_no))
    if n_rows == 0:
        if skipped:
            raise KetasimInputError(f"{where}: no dose rows (" + (
                f"all {skipped:,} rows are observations" if skipped > 1
                else "its one row is an observation") + ": evid 0 or 2, MDV, or no dose item)")
        raise KetasimInputError(f"{where}: the dose table has a header but no doses")
    if obs_cov:
        _fill_from_observation_rows(data, covariates, obs_cov, where)
    names = list(route_names)
    routes = tuple(names[i] for i in route_codes)   # one string object per distinct route

    def col(c, dtype=np.float64):   # a view of the parsed buffer (Doses copies it once)
        if c not in data:
            return None
        a = np.frombuffer(data[c], dtype=np.float64)
        return a if dtype == np.float64 else a.astype(dtype)

    d = Doses(col("time_h"), col("amount_mg"), routes, col("duration_h"),
              col("addl", np.int64), col("ii_h"), source=where, rate_mg_h=col("rate_mg_h"),
              ss=col("ss", np.int64), evid=col("evid", np.int64), subject=col("subject"),
              covariates={c: col(c) for c in covariates} or None, n_skipped=skipped,
              line=np.frombuffer(lines_out, dtype=np.int64),
              observation_only_subjects=_observation_only(
                  skipped_ids, col("subject") if "subject" in data else ()))
    return d


def _no_dose_items(cells, dose_items, header, pos, where, line_no, kind) -> None:
    """Refuse an observation row (``kind``: evid 0 or 2, or MDV 0) of a CSV table that sets a
    dose item (AMT, RATE, II, ADDL, SS: not blank, ``.`` or 0), naming its column as the
    header does; NONMEM refuses such a record, and ketasim skips the row, so the item had been
    dropped without a word."""
    for c in dose_items:
        v = cells[c]
        if v not in ("", ".") and _number(v, c, where, line_no) != 0:
            raise _observation_item(where, line_no, kind, c, v, header[pos[c]])


def _keep_covariate(obs_cov, subject: str, c: str, v) -> None:
    """One covariate value of a skipped (observation) row or record, for
    :func:`_fill_from_observation_rows`: kept under (its subject's text, ``c``) when it is a
    finite number (blank, ``.``, text that is no number and NaN are left out)."""
    try:
        x = to_float(v.strip()) if isinstance(v, str) else float(v)
    except (TypeError, ValueError):
        return
    if math.isfinite(x):
        obs_cov.setdefault((subject, c), set()).add(x)


def _keep_record_covariates(rec, obs_cov) -> None:
    """The covariate values of a skipped (observation) record (:func:`_keep_covariate`)."""
    for c, v in rec.items():
        if c not in COLUMNS:
            _keep_covariate(obs_cov, str(rec.get("subject", "")), c, v)


def _keep_obs_covariates(r, pos, covariates, cells, obs_cov) -> None:
    """The covariate values of a skipped (observation) CSV row (:func:`_keep_covariate`)."""
    for c in covariates:
        _keep_covariate(obs_cov, cells.get("subject", ""), c, r[pos[c]])


def _fill_from_observation_rows(data, covariates, obs_cov, where) -> None:
    """A covariate blank on every dose row of a subject (or of the table, without a subject
    column) takes its value from the subject's observation rows (NONMEM datasets often carry
    covariates there); a value that changes over them is an error (covariates are constant
    per subject)."""
    subj = data.get("subject")
    rows: dict = {}         # subject -> its dose rows (one key for a table without subjects)
    for i in range(len(subj) if subj is not None else len(data[covariates[0]])):
        rows.setdefault(f"{subj[i]:.17g}" if subj is not None else "", []).append(i)
    for c in covariates:
        a = data[c]
        for (sid, k), vals in obs_cov.items():
            if k != c:
                continue
            try:
                key = f"{to_float(sid):.17g}" if subj is not None else ""
            except ValueError:
                continue
            idx = rows.get(key)
            if not idx or any(a[i] == a[i] for i in idx):     # has a value on a dose row
                continue
            if len(vals) > 1:
                who = f"subject {sid}: " if subj is not None else ""
                lo, hi = min(vals), max(vals)
                raise KetasimInputError(
                    f"{where}: {who}{c} is blank on every dose row and changes from {lo:g} to "
                    f"{hi:g} over the observation rows; expected one value per subject (on "
                    "its dose rows; time-varying covariates are not supported)")
            a[idx[0]] = next(iter(vals))


def write_doses(doses: Doses, path) -> None:
    """Write a dose table as CSV with ketasim's column names, atomically (numbers read back
    exactly; the text is :func:`doses_csv_text`)."""
    from .io import atomic_write

    atomic_write(path, doses_csv_text(doses))


def doses_csv_text(doses: Doses) -> str:
    """A dose table as CSV text with ketasim's column names, numbers that read back exactly.

    ``time_h, amount_mg, route, duration_h, addl, ii_h`` always; ``rate_mg_h``, ``ss``,
    ``evid``, ``subject`` and covariate columns only when the table uses them."""
    def num(x):   # shortest text that reads back as the same float
        if x != x:
            return ""     # a covariate not given on this row: a blank cell, as it is read
        t = f"{x:.15g}"
        return t if float(t) == x else repr(float(x))

    extra = doses._optional_columns()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["time_h", "amount_mg", "route", "duration_h", "addl", "ii_h"] + extra)
    for r in doses.to_records():
        w.writerow([num(r["time_h"]), num(r["amount_mg"]), r["route"], num(r["duration_h"]),
                    r["addl"], num(r["ii_h"])]
                   + [num(r[c]) if isinstance(r[c], float) else r[c] for c in extra])
    return buf.getvalue()
