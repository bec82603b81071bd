"""The engine: prepare a simulation once (a :class:`Plan` of plain arrays), run it on slices of
subjects. ``simulate``, ``course_metrics``, ``population``, ``sweep`` and the Dask backend are thin
layers over :func:`prepare` + :func:`run` (outputs on a time grid) and :func:`run_metrics`
(exact per-session metrics, no time grid at all).

Memory is checked before anything large is allocated; populations run in chunks of subjects so
that a run can be interrupted between chunks (Ctrl-C) and never holds more than one chunk's
working arrays.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ._memo import kept
from ._numtext import UNSIGNED as _PLAIN_NUMBER  # a metric name keeps this text
from .dosing import Doses, expand, new_session, read_doses
from .errors import (
    KetasimInputError,
    check_flag,
    check_name,
    is_real,
    is_whole,
    name_subjects,
    naming_subjects,
    positive_hours,
)
from .events import build_events, dose_route_warning, subject_covariates
from .model import GLUTAMATE_ROLES, Model, _copy_values
from .modelfile import load_model

__all__ = ["Plan", "prepare", "run", "run_metrics", "session_metrics", "METRICS",
           "PD_OUTPUTS", "OCCUPANCY_OUTPUTS", "SCHEMATIC_OUTPUTS", "DEFAULT_PD_RTOL",
           "check_memory", "session_starts"]

OCCUPANCY_OUTPUTS = ("occupancy", "occupancy_low", "occupancy_high")
SCHEMATIC_OUTPUTS = ("glutamate", "plasticity", "consolidation")
PD_OUTPUTS = OCCUPANCY_OUTPUTS + SCHEMATIC_OUTPUTS
DEFAULT_PD_RTOL = 1e-6
MAX_ABS_OUTPUT = 1e250               # larger outputs are reported as an overflow
CHUNK_WORK = 4_000_000               # kernel work units per call (Ctrl-C granularity)

# metric name -> (unit, description); per session k the column is f"{name}_s{k}" (k from 1),
# over the whole course f"{name}"
METRICS = {
    "cmax": ("ng/mL", "peak concentration of the analyte (exact: at an event or where its "
                      "derivative is zero)"),
    "tmax": ("h", "time of the peak after the session start"),
    "auc": ("ng*h/mL", "area under the concentration curve (exact integral)"),
    "trough": ("ng/mL", "concentration just before the next session (whole course: before "
                        "the last session)"),
    "peak_occupancy": ("fraction", "model-predicted peak NMDA occupancy"),
    "time_above_occ_X": ("h", "hours with occupancy >= X (exact crossings; any X in [0, 1])"),
    "time_above_conc_X": ("h", "hours with the analyte >= X ng/mL (exact crossings)"),
    "peak_glutamate": ("relative", "schematic glutamate peak (baseline 1)"),
    "plasticity_end": ("index", "schematic plasticity index at the end of the course"),
    "consolidation_end": ("index", "schematic consolidated plasticity at the end"),
}


def _available_bytes() -> int:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 * 2**30


#: The share of the available memory one array may take (the rest: the other arrays of the
#: run, the interpreter, the system).
MEMORY_SHARE = 0.8

MEMORY_ADVICE = ("use a coarser step, a shorter horizon, fewer outputs or fewer subjects per "
                 "call")


def check_memory(n_values: int, what: str, limit_bytes: int | None = None,
                 bytes_per_value: int = 8, advice: str = MEMORY_ADVICE) -> None:
    """Refuse, before allocating, an array of ``n_values`` float64 that cannot fit
    (``advice``: what to change, ending the message)."""
    need = n_values * bytes_per_value
    avail = _available_bytes() if limit_bytes is None else limit_bytes
    if need > MEMORY_SHARE * avail:
        # (a Python int beyond any float, 10**400 subjects say, has no GiB to show)
        size = f"{need / 2**30:.1f} GiB" if need < 1e300 else "more than 1e300 bytes"
        # (the share is said: "17.2 GiB, more than fits in memory (about 20.7 GiB
        # available)" had read as a contradiction)
        raise KetasimInputError(
            f"{what} = {n_values:,} values ({size}), more than {MEMORY_SHARE * 100:g} % of the "
            f"memory available (about {avail / 2**30:.1f} GiB); {advice}")


_POOLS: dict = {}
if hasattr(os, "register_at_fork"):      # a forked child has none of its parent's threads
    os.register_at_fork(after_in_child=_POOLS.clear)


def _threads(k) -> int:
    """The number of threads for ``threads=k`` (None: Numba's thread count, which honours
    ``NUMBA_NUM_THREADS``, normally the number of cores; never more than the cores or that
    count)."""
    from numba import config

    if k is None:
        return max(1, int(config.NUMBA_NUM_THREADS))
    if not is_whole(k) or k < 1:
        raise KetasimInputError(f"threads: got {k!r}, expected a whole number >= 1")
    # more threads than cores only adds switching (the kernels never wait)
    return min(int(k), max(1, int(config.NUMBA_NUM_THREADS), os.cpu_count() or 1))


def close_pools() -> None:
    """Stop the engine's worker threads (they start again when needed)."""
    while _POOLS:
        _POOLS.popitem()[1].shutdown(wait=True)


def _pool(k: int):
    """The engine's pool of ``k`` worker threads (started on first use, kept)."""
    from concurrent.futures import ThreadPoolExecutor

    pool = _POOLS.get(k)
    if pool is None:
        pool = _POOLS[k] = ThreadPoolExecutor(k, thread_name_prefix="ketasim")
    return pool


def _ranges(lo: int, hi: int, k: int, part: int) -> list:
    """Edges of the ranges :func:`_spread` runs: at most ``part`` subjects each; on k > 1
    threads at least four ranges per thread, their number a multiple of k (when there are
    enough subjects) and their sizes within one of each other (11 ranges on 2 threads would
    leave one thread idle for the last range's time, a tenth of the run)."""
    n = hi - lo
    if k <= 1:
        return list(range(lo, hi, max(1, part))) + [hi]
    part = min(part, -(-n // (4 * k)))
    nr = -(-n // max(1, part))
    nr = min(n, -(-nr // k) * k)
    return [lo + (n * i) // nr for i in range(nr + 1)]


def _spread(call, lo: int, hi: int, k: int, part: int):
    """``call(a, b)`` over subjects [lo, hi) in ranges of at most ``part`` subjects, on ``k``
    threads: the compiled kernels release the GIL, so ranges run side by side, each thread
    taking the next range when it is done (:func:`_ranges`). One thread runs the ranges in
    turn. Ctrl-C stops at the end of the ranges running. Returns the
    sum of what the calls return (None counts as 0)."""
    k = min(k, hi - lo)
    edges = _ranges(lo, hi, k, part)
    if k <= 1:
        return sum(call(a, b) or 0 for a, b in zip(edges[:-1], edges[1:]))
    from concurrent.futures import FIRST_EXCEPTION, wait

    pool = _pool(k)
    jobs = [pool.submit(call, a, b) for a, b in zip(edges[:-1], edges[1:])]
    try:
        # wait in short slices: a signal (Ctrl-C) may be delivered to a worker thread, and
        # the main thread only runs its handler when it wakes up
        pending = jobs
        while pending:
            done, pending = wait(pending, timeout=0.1, return_when=FIRST_EXCEPTION)
            for j in done:
                if j.exception() is not None:
                    raise j.exception()
        return sum(j.result() or 0 for j in jobs)
    except BaseException:
        for j in jobs:
            j.cancel()
        raise


def _compile_here(kernel, args) -> None:
    """Compile ``kernel`` for ``args`` (or load it from the cache) on this thread, before
    worker threads call it. Numba compiles on whichever thread calls first, and a
    compilation on a worker thread cannot be stopped: a Ctrl-C during a first run had
    waited for it (a minute and more on a loaded machine) before the command could end.
    Quick when the kernel is compiled for these arguments already; nothing for a function
    that is no Numba dispatcher (``NUMBA_DISABLE_JIT``, a stand-in). An error is left to the
    call itself to raise, as it would have."""
    typeof = getattr(kernel, "typeof_pyval", None)
    if typeof is None or not callable(getattr(kernel, "compile", None)):
        return
    try:
        kernel.compile(tuple(typeof(a) for a in args))
    except Exception:
        pass


def _pair(f0, f1):
    """``f0()`` on this thread while ``f1()`` runs on a worker thread (one thread to wake, not
    two); returns the sum of what they return. Both have ended when it returns or raises."""
    from concurrent.futures import wait

    job = _pool(1).submit(f1)
    try:
        a = f0()
    except BaseException:
        wait([job])             # it writes into the caller's output: let it end first
        raise
    return (a or 0) + (job.result() or 0)


def _coerce_doses(doses, weight_kg=70.0) -> Doses:
    """A Doses from what ``doses=`` takes; a course name is built for ``weight_kg`` (the
    standard IV course is in mg/kg: one weight for all, or it is refused); a ``.toml`` file is
    a course file (:func:`ketasim.read_course_toml`)."""
    if isinstance(doses, Doses):
        return doses
    if isinstance(doses, (str, os.PathLike)):
        from .courses import (
            COURSES,
            check_course_weights,
            check_doses_spec,
            is_course_file,
            is_course_name,
            read_course_toml,
            resolve_doses,
        )
        if str(doses) in COURSES and (isinstance(doses, str) or is_course_name(str(doses))):
            if str(doses) == "standard-iv":
                check_course_weights("standard-iv", np.ndim(weight_kg) > 0)
                return resolve_doses("standard-iv", weight_kg=_check_weight(weight_kg))
            return resolve_doses(str(doses))
        if is_course_file(str(doses)):      # a course TOML file, as every command takes
            return read_course_toml(doses)
        check_doses_spec(doses)     # a misspelt course name: the nearest course, not a file
        return read_doses(doses)
    from .dosing import records_table
    table = records_table(doses)        # dose records, or a DataFrame of them
    if table is not None:
        return table
    raise KetasimInputError(f"doses: got {type(doses).__name__}, expected a Doses, a list of "
                            "dose records, a DataFrame, a course name or a CSV path")


def _check_weight(w):
    """A scalar body weight: a real number (not a bool, text or None), kg."""
    if isinstance(w, np.ndarray) and w.ndim == 0:
        w = w[()]                      # a 0-d array: its scalar
    if not is_real(w):
        raise KetasimInputError(f"weight_kg: got {w!r}, expected a body weight in kg (a number "
                                "or an array of numbers)")
    return float(w)


PD_MAX_HORIZON_H = 1e7    # about 1,100 years: the schematic response's steps are at most 64 h


def check_pd_horizon(end_h: float, what: str) -> None:
    """Refuse a schematic response integrated beyond :data:`PD_MAX_HORIZON_H`: its steps are
    at most 64 h, so the run would take time in proportion (1e9 h: 10 s; 1e12 h: hours) inside
    one compiled call that neither Ctrl-C nor SIGTERM can stop."""
    if not end_h <= PD_MAX_HORIZON_H:
        raise KetasimInputError(
            f"{what}: the schematic response (glutamate, plasticity, consolidation) up to "
            f"{end_h:g} h is beyond its {PD_MAX_HORIZON_H:g}-h limit (about 1,100 years: its "
            "steps are at most 64 h); expected a shorter horizon, or outputs without the "
            "schematic response")


def check_metrics_horizon(end_h: float, what: str, expected: str = "a shorter horizon") -> None:
    """Refuse exact metrics up to a horizon beyond :data:`PD_MAX_HORIZON_H`: their ladder's
    steps are at most 64 h too, with or without the schematic response, so the run would take
    time in proportion (1e12 h: about 20 minutes a subject) inside one compiled call that
    neither Ctrl-C nor SIGTERM can stop. ``what`` names where the horizon came from."""
    if not end_h <= PD_MAX_HORIZON_H:
        raise KetasimInputError(
            f"{what}: exact metrics up to {end_h:g} h are beyond their {PD_MAX_HORIZON_H:g}-h "
            f"limit (about 1,100 years: their steps are at most 64 h); expected {expected}")


#: where a run's end comes from when no horizon is given (:func:`default_horizon_h`)
DEFAULT_HORIZON_NOTE = "a run ends 28 days after the last dose starts"
DEFAULT_HORIZON_WHAT = f"doses ({DEFAULT_HORIZON_NOTE})"


def checked_default_horizon_h(doses) -> float:
    """:func:`default_horizon_h`, refused (naming the doses, where it comes from) when exact
    metrics cannot reach it (:func:`check_metrics_horizon`): it had been refused as
    "horizon_h", which nobody had given."""
    h = default_horizon_h(doses)
    check_metrics_horizon(h, DEFAULT_HORIZON_WHAT, "a shorter course")
    return h


#: The tightest ``pd_rtol`` taken. Below it rounding, not the tolerance, sets the schematic
#: response's error, and asking for less had given more: against a Radau reference at rtol
#: 3e-14, the six-month standard IV course's glutamate was off by 5.9e-12 at 1e-11 but
#: 3.7e-10 at 1e-12 and 8.5e-10 at 1e-13 (up to 20,000 times the promised bound, on the
#: plasticity index), where 1e-13 had been taken.
MIN_PD_RTOL = 1e-11


def _check_rtol(pd_rtol):
    if not is_real(pd_rtol) or not (np.isfinite(pd_rtol) and MIN_PD_RTOL <= pd_rtol <= 1e-1):
        raise KetasimInputError(f"pd_rtol: got {pd_rtol!r}, expected a relative tolerance "
                                f"between {MIN_PD_RTOL:g} and 0.1 (below {MIN_PD_RTOL:g} "
                                "rounding sets the error, not the tolerance)")
    return float(pd_rtol)


@dataclass(frozen=True, eq=False)
class Plan:
    """A prepared simulation: per-subject matrices, events and output maps as plain arrays
    (row s of every per-subject array belongs to subject s; they pickle cheaply).

    Attributes
    ----------
    names : tuple of str          output names (rows of the output), see :func:`prepare`
    K : (N, S, S)                 rate matrices, 1/h (states: model states, sink, integrators)
    events : tuple                ``(ev_t, ev_c, ev_amt, ev_kind, nev, ev_vec)`` (events.py);
                                  an array with one row holds every subject's events
    C : (N, M, S)                 concentration/amount rows, mg/L or mg per state
    W : (N, O, S)                 occupancy weights of the occupancy outputs
    wd : (N, S)                   weights of the occupancy that drives the schematic response
    pd : (N, 8)                   schematic parameters (GLUTAMATE_ROLES order)
    pd_on : bool                  integrate the schematic response
    pd_rows : int64 (3,)          output row of G, P, Q (-1: not output)
    pd_rtol : float               relative tolerance of the schematic integrator
    vals : dict                   resolved parameters (N,)
    """

    names: tuple
    K: np.ndarray
    events: tuple
    C: np.ndarray
    W: np.ndarray
    wd: np.ndarray
    pd: np.ndarray
    pd_on: bool
    pd_rows: np.ndarray
    pd_rtol: float
    vals: dict
    model: Model
    doses: Doses
    population: bool
    inputs: dict = field(default_factory=dict)

    @property
    def n_subjects(self) -> int:
        return self.K.shape[0]

    def subjects(self, rows) -> "Plan":
        """The plan of a slice (or index array) of subjects."""
        from dataclasses import replace

        def cut(a):
            return np.ascontiguousarray(a[rows])

        def cut_ev(a):          # (an event array with one row is every subject's)
            return a if a.shape[0] == 1 else cut(a)
        return replace(self, K=cut(self.K), events=tuple(cut_ev(a) for a in self.events),
                       C=cut(self.C), W=cut(self.W), wd=cut(self.wd), pd=cut(self.pd),
                       vals={k: v[rows] for k, v in self.vals.items()})


def _resolve(model, doses, params, weight_kg):
    """Model, doses, resolved parameters (N,) and the population flag; dose tables with
    subjects set N and contribute their covariates. Returns the caller's own ``params`` and
    ``weight_kg`` last (a re-run with them and the same doses gives the same subjects).

    A covariate column of the dose table sets that value: a parameter given both there and in
    ``params``, or weights given both as a ``weight_kg`` column and as an array, is refused
    (neither silently wins); a scalar ``weight_kg`` (the 70 kg default) gives way to the
    column."""
    model = load_model(model)
    if np.ndim(weight_kg) == 0:
        _check_weight(weight_kg)
    elif np.asarray(weight_kg).dtype.kind not in "iuf":
        raise KetasimInputError(f"weight_kg: got an array of {np.asarray(weight_kg).dtype}, "
                                "expected numbers (kg)")
    doses = _coerce_doses(doses, weight_kg)
    if params is not None and not isinstance(params, Mapping):
        raise KetasimInputError(f"params: got {type(params).__name__}, expected a dict of "
                                "parameter name -> value (or array of values)")
    given_params, given_weight = params, weight_kg
    params = dict(params or {})
    n_ds, cov = subject_covariates(doses, model)   # checks covariate names against the model
    src = doses.source or "the dose table"
    if cov:
        cov = dict(cov)
        if "weight_kg" in cov:
            if np.ndim(weight_kg) > 0:
                raise KetasimInputError(
                    f"weight_kg: {src} has a weight column (weight_kg or WT) and weights were "
                    "also given (an array); give them in one place")
            weight_kg = cov.pop("weight_kg")
        for k, v in cov.items():
            if k in params:
                raise KetasimInputError(
                    f"params[{k!r}] (--param {k}): also a column of {src}; give it in one "
                    "place (the column sets each subject's value)")
            params[k] = v
    if n_ds is not None:
        # arrays beside a table of subjects: one value per subject of the table
        given = dict(given_params or {})
        if np.ndim(given_weight) > 0 and "weight_kg" not in cov:
            given["weight_kg"] = given_weight
        for k, v in given.items():
            if np.ndim(v) > 0 and np.size(v) != n_ds:
                name = k if k == "weight_kg" else f"params[{k!r}]"
                raise KetasimInputError(
                    f"{name}: {np.size(v):,} values, but {src} has {n_ds:,} subjects; give "
                    "one value per subject (in the table's order) or one value for all")
    population = (any(np.ndim(v) > 0 for v in params.values()) or np.ndim(weight_kg) > 0
                  or n_ds is not None)
    n_guess = max([n_ds or 1] + [np.size(v) for v in params.values()] + [np.size(weight_kg)])
    S = len(model.state_names) + 2
    check_memory(n_guess * S * S * 4, f"rate matrices: {n_guess:,} subjects x {S} states "
                 f"x {S} states")
    if n_ds is not None and doses.subject_ids is not None:     # (messages name them by ID)
        name_subjects(doses.subject_ids, doses.source or "the dose table")
    vals = model.resolve(params, weight_kg, n=n_ds)
    _check_covariate_range(model, vals, doses if n_ds is not None else None)
    return model, doses, vals, population, dict(given_params or {}), given_weight


def _check_covariate_range(model, vals, table=None) -> None:
    """A parameter that a covariate with a fitted range sets (esketamine-nasal's AGE, from
    age_y) stays within that range however it is given (``params``, ``--param``, ``--vary``,
    a dose-table column), as it does when given as the covariate."""
    var = getattr(model, "variability", None)
    if not var or not getattr(var, "covariate_range", None):
        return
    for col, pname in var.covariates.items():
        if col not in var.covariate_range or pname not in vals:
            continue
        lo, hi = var.covariate_range[col]
        a = np.asarray(vals[pname], dtype=float)
        out = (a < lo) | (a > hi)
        if np.any(out):
            i = int(np.argmax(out))
            who = f" (subject {i}, counted from 0 as in the subject column)" if a.size > 1 else ""
            ids = table.subject_ids if table is not None else None
            if ids is not None and len(ids) == a.size:     # a dose table's own subject IDs
                from .io import id_label
                who = f" (subject {id_label(ids[i])} of {table.source or 'the dose table'})"
            raise KetasimInputError(
                f"{pname} (the {col} covariate){who}: got {a[i]:.15g}, outside {lo:g}-{hi:g}, the "
                f"range of the population model {model.name!r} was fitted to ([variability] "
                "covariate_range: its effect is not known beyond); expected values within it")


def _weight_sets(model, vals, calibration):
    if not model.has_occupancy:
        if calibration is not None:
            raise KetasimInputError(f"occupancy_calibration: model {model.name!r} has no "
                                    "occupancy")
        return {}
    def compute():
        try:
            return model.occupancy_weight_sets(vals, calibration=calibration)
        except TypeError:   # a model class without calibrations
            w = model.occupancy_weights(vals)
            return {"occupancy": w, "drive": w}

    if (vals["WT"].shape[0] == 1 and isinstance(model, Model)
            and type(model).occupancy_weight_sets is Model.occupancy_weight_sets
            and type(model).occupancy_weights is Model.occupancy_weights):
        # one subject: kept with the model like its matrices (see _rate_and_output_matrices)
        return kept(model, "weights",
                    lambda: (calibration, model.ligands, tuple(model.calibrations.items()),
                             model.default_calibration, model.drive_calibration,
                             tuple(model.compartments.items()), _values_key(vals)),
                    compute, _copy_values, _MEMO_KEYS)
    return compute()


def _pad(a, n_states):
    """(N, s) or (N, k, s) weights/rows padded with zeros to n_states columns."""
    pad = n_states - a.shape[-1]
    if pad == 0:
        return np.ascontiguousarray(a, dtype=np.float64)
    widths = [(0, 0)] * (a.ndim - 1) + [(0, pad)]
    return np.ascontiguousarray(np.pad(a, widths), dtype=np.float64)


def _frozen(a):
    """A read-only view of ``a`` (``a`` itself keeps its flags)."""
    v = a.view()
    v.setflags(write=False)
    return v


def _pad_events(ev, n_states, n_reset=None):
    """The kernels' event arrays, always read-only: rows kept with a dose table are read-only
    and rows built for a population are not, and Numba compiles a kernel once per read-only
    flag, so one flag for all keeps one compiled kernel for one subject and for a population
    (and for a run and its metrics). A reset empties the first ``n_reset`` states (default:
    all ``n_states``; the metrics kernel's AUC integrator, after them, is never reset)."""
    from .events import RESET

    ev_t, ev_c, ev_a, ev_k, nev, ev_vec = ev
    ev_c = np.where(np.asarray(ev_k) == RESET, n_states if n_reset is None else n_reset, ev_c)
    return (_frozen(np.ascontiguousarray(ev_t, dtype=np.float64)),
            _frozen(np.ascontiguousarray(ev_c, np.int64)),
            _frozen(np.ascontiguousarray(ev_a, dtype=np.float64)),
            _frozen(np.ascontiguousarray(ev_k, np.int64)),
            _frozen(np.ascontiguousarray(nev, np.int64)), _frozen(_pad(ev_vec, n_states)))


_MEMO_KEYS = 8     # rate/output matrices kept per model (one subject's parameter values each)


def _rate_and_output_matrices(model, vals, conc, sink):
    """``model.matrices`` and ``model.observation``; for one subject they are kept with the
    model (frozen), keyed by the parameter values, the outputs, and the model's states, flows,
    effects, volumes and observe aliases (the dicts' contents, so an edited dict is seen)."""
    def compute():
        return model.matrices(vals, sink=sink), model.observation(vals, conc, sink=sink)

    if (vals["WT"].shape[0] == 1 and isinstance(model, Model)
            and type(model).matrices is Model.matrices
            and type(model).observation is Model.observation):
        return kept(model, "matrices",
                    lambda: (sink, tuple(conc), model.flows, model.effects,
                             tuple(model.compartments.items()), tuple(model.observe.items()),
                             _values_key(vals)),
                    compute, lambda kc: (kc[0].copy(), kc[1].copy()), _MEMO_KEYS)
    return compute()


def _values_key(vals: dict) -> tuple:
    """Parameter values as part of a key (exact bytes; a value not an array raises
    AttributeError, so nothing is kept)."""
    return tuple((k, v.dtype.str, v.tobytes()) for k, v in vals.items())


@naming_subjects
def prepare(model, doses, params=None, weight_kg=70.0, *, outputs=None, amounts=False,
            occupancy_calibration=None, pd_rtol=DEFAULT_PD_RTOL) -> Plan:
    """Prepare a simulation: resolve parameters, build matrices, events and the output map.

    Outputs (default: every concentration, then ``occupancy`` (+ ``occupancy_low``/``_high``
    where the model has calibrations), ``glutamate``, ``plasticity`` (+ ``consolidation``); a
    model with no concentration at all (every compartment amount-only) gives its compartments'
    amounts, as ``amounts=True`` does).
    Occupancy is a formula on the exact state; the schematic response is integrated only when
    one of ``glutamate``, ``plasticity``, ``consolidation`` is asked for.
    """
    pd_rtol = _check_rtol(pd_rtol)
    amounts = check_flag("amounts", amounts)
    model, doses, vals, population, raw_params, raw_weight = _resolve(model, doses, params,
                                                                      weight_kg)
    n = vals["WT"].shape[0]
    wsets = _weight_sets(model, vals, occupancy_calibration)
    occ_avail = [k for k in OCCUPANCY_OUTPUTS if k in wsets]
    sch_avail = []
    if model.has_glutamate:
        sch_avail = ["glutamate", "plasticity"] + (["consolidation"]
                                                   if model.has_consolidation else [])
    if outputs is None and not model.concentration_names:
        amounts = True       # nothing else to show: the amounts (mg), as NONMEM's A(i) would
    amount_names = ([f"amount:{c}" for c in model.compartments] + ["amount:eliminated"]
                    if amounts else [])
    if outputs is None:
        conc = list(model.concentration_names) + amount_names
        occ = occ_avail
        sch = sch_avail
    else:
        try:
            if isinstance(outputs, Mapping):    # (its keys had been taken, its values dropped)
                raise TypeError
            requested = [outputs] if isinstance(outputs, str) else list(outputs)
        except TypeError:
            raise KetasimInputError(f"outputs: got {outputs!r}, expected an output name or a "
                                    "list of names") from None
        conc, occ, sch = [], [], []
        for nm in requested:
            if not isinstance(nm, str):
                raise KetasimInputError(f"outputs: got {nm!r}, expected output names")
            nm = str(nm)            # (a NumPy string as the name it holds)
            if nm in PD_OUTPUTS:
                if nm not in occ_avail + sch_avail:
                    raise KetasimInputError(f"outputs: model {model.name!r} has no {nm!r} "
                                            "output")
                group = occ if nm in OCCUPANCY_OUTPUTS else sch
                if nm not in group:          # a name given twice is one output, as below
                    group.append(nm)
            elif nm not in conc:
                conc.append(nm)
        conc += [a for a in amount_names if a not in conc]
        if not (conc or occ or sch):
            # (a result with no outputs at all had been returned without a word)
            raise KetasimInputError("outputs: empty; expected at least one output name "
                                    "(None: the model's default outputs)")
    sink = amounts or any(nm == "amount:eliminated" for nm in conc)
    K, C = _rate_and_output_matrices(model, vals, conc, sink)
    S = K.shape[1]
    W = np.stack([_pad(wsets[k], S) for k in occ], axis=1) if occ else np.zeros((n, 0, S))
    wd = _pad(wsets["drive"], S) if "drive" in wsets else np.zeros((n, S))
    pd_on = bool(sch)
    pdp = (model.glutamate_parameters(vals) if pd_on
           else np.zeros((n, len(GLUTAMATE_ROLES))))
    names = tuple(conc) + tuple(occ) + tuple(sch)
    pd_rows = np.full(3, -1, np.int64)
    for k, nm in enumerate(SCHEMATIC_OUTPUTS):
        if nm in sch:
            pd_rows[k] = names.index(nm)
    ev = _pad_events(build_events(model, doses, vals, shared_rows=True), S)
    return Plan(names=names, K=np.ascontiguousarray(K), events=ev, C=np.ascontiguousarray(C),
                W=np.ascontiguousarray(W), wd=wd, pd=np.ascontiguousarray(pdp), pd_on=pd_on,
                pd_rows=pd_rows, pd_rtol=pd_rtol, vals=vals, model=model, doses=doses,
                population=population,
                inputs={"params": raw_params, "weight_kg": raw_weight,
                        "occupancy_calibration": occupancy_calibration, "pd_rtol": pd_rtol})


def _nominal_step(t: np.ndarray, uniform: bool | None = None) -> tuple[float, int]:
    """(h, u_end): the grid ``t`` is uniform with step h (to rounding) up to (not including)
    index u_end, which is its length, or its length - 1 when only its last time is off the
    step (a grid that ends at a time that is not a whole number of steps); (-1, 0) when
    neither. ``uniform``: whether the whole grid was found uniform already
    (``_kernels.times_fault``)."""
    from . import _kernels

    T = t.size
    if T < 3:
        return (float(t[1] - t[0]), T) if T == 2 and t[1] > t[0] else (-1.0, 0)
    for m in (T, T - 1):
        if m < 3:
            break
        last = float(t[m - 1])
        h = (last - float(t[0])) / (m - 1)
        if h <= 0:
            continue
        if m == T and uniform is not None:
            ok = uniform
        else:
            ok = _kernels.uniform_within(t[:m], h, _EPS8 * max(1.0, abs(last)))
        if ok:
            return h, m
    return -1.0, 0


_EPS8 = 8 * float(np.finfo(float).eps)
SPLIT_VALUES = 1_000_000      # one subject's rows run on two threads from this many values
# the schematic response (its error-controlled steps and its rows) costs about as much as 16
# output rows, for one subject over the presets' six-month one-minute courses with both threads
# busy (measured as the two-thread time of each cut: ketamine-iv 8.6 ms with its rows cut
# after 18, 9.4-10 ms after 17; Spravato's cut is the same for 14 to 16); an output row costs
# about the same whatever it holds (its fresh pages, zeroed by the system when first written,
# cost as much as the row's own work)
PD_ROWS_COST = 16.0


def block_length(rows: int, n: int, u_end: int, h_nom: float) -> int:
    """Output times per block of :func:`_kernels.grid_range` (1: no blocks): blocks on a
    uniform grid with enough points per unit of set-up; a block's tables (rows x states x its
    length) stay within about 1 MiB (shorter blocks cost more per output time than tables that
    spill out of the first cache levels), and setting them up costs at most about 16
    operations per output time."""
    from . import _kernels

    if not (h_nom > 0.0 and u_end >= 64 and rows * n * n <= u_end):
        return 1
    nb = _kernels.BLK
    while nb > 16 and (rows * n * nb * 8 > 1048576 or rows * n * n * nb > 16 * u_end):
        nb //= 2
    return nb


def _dup_rows(C, W) -> np.ndarray:
    """For each output row of the kernel (C's rows, then W's): an earlier row of the same kind
    with the same functional, bit for bit, in every subject (the kernel copies its values on
    the block path), or -1. Presets repeat rows: 's_ketamine' is 's_central', and two
    occupancy calibrations may share their weights."""
    m, no = C.shape[1], W.shape[1]
    dup = np.full(m + no, -1, np.int64)
    for part, off in ((C, 0), (W, m)):
        k = part.shape[1]
        if k < 2:
            continue
        bits = np.ascontiguousarray(part).view(np.int64)
        seen = {}
        for r in range(k):
            q = seen.setdefault(bits[0, r].tobytes(), r)
            if q < r and (bits.shape[0] == 1 or np.array_equal(bits[:, r], bits[:, q])):
                dup[off + r] = off + q
    return dup


def _group_dups(dup, b: int):
    """:func:`_dup_rows` of the rows from ``b`` on, numbered from ``b`` (a row whose equal
    is before ``b`` has none in its group)."""
    d = dup[b:].copy()
    d[d < b] = -1
    d[d >= 0] -= b
    return d


def _row_split(plan, T: int):
    """For one subject with many output values: the output row at which its rows are cut in
    two groups, each run on a thread of its own (rows before it: concentrations, then
    occupancies; from it, the rest, with the schematic response), or None to run in one call.
    The cut balances the groups: a row costs 1, the schematic response with its rows
    :data:`PD_ROWS_COST`."""
    m = plan.C.shape[1]
    no = plan.W.shape[1]
    R = len(plan.names)
    top = min(m + no, R - 1)                  # the second group gets at least one row
    if R * T < SPLIT_VALUES or top < 1:
        return None
    total = m + no + (PD_ROWS_COST if plan.pd_on else R - m - no)
    cuts = np.arange(1, top + 1)
    return int(cuts[int(np.argmin(np.maximum(cuts, total - cuts)))])


_F64 = np.dtype(np.float64)


def run(plan: Plan, times, *, out: np.ndarray | None = None, threads=None,
        check_overflow: bool = True, dtype="float64", _h_nom: tuple | None = None,
        times_out: list | None = None) -> np.ndarray:
    """Outputs of every subject of ``plan`` on ``times`` (h): an array (N, R, T) in internal
    units (mg/L, mg, dimensionless), written into ``out`` when given. Runs in chunks of
    subjects (Ctrl-C is honoured between chunks). ``dtype="float32"`` halves the output's
    memory (the computation stays in float64). ``times_out``: a list that receives an array
    of the grid's length, uninitialised, allocated with the outputs (for a copy of the grid;
    nothing is appended when ``out`` is given or the outputs are float32)."""
    from . import _kernels

    if not getattr(_kernels.grid_range, "overloads", True):   # a first run: see ketasim._warm
        from . import _warm

        _warm.start("grid", "metrics")
    else:
        warm = sys.modules.get("ketasim._warm")
        if warm is not None and warm._PENDING:
            warm.reap()
    t = np.ascontiguousarray(times, dtype=np.float64)
    if not t.flags.writeable:     # one compiled kernel: the times are always a writeable array
        t = t.copy()
    if plan.pd_on:
        check_pd_horizon(float(t[-1]), "times")
    N = plan.n_subjects
    R = len(plan.names)
    T = t.size
    if out is None:
        dt = np.dtype(dtype)
        if dt is not _F64 and str(dt) not in ("float64", "float32"):
            raise KetasimInputError(f"dtype: got {dtype!r}, expected 'float64' or 'float32'")
        item = dt.itemsize
        check_memory(N * R * T, f"output: {N:,} subjects x {R} outputs x {T:,} times",
                     bytes_per_value=item)
        if times_out is not None and dt == _F64:
            # the grid's own copy for the result in the same allocation as the outputs: one
            # block of memory per call, as without it (a second large block each call had
            # made the allocator hand memory back and fault it in again: 3x the time)
            buf = np.empty(N * R * T + T)
            out = buf[:N * R * T].reshape(N, R, T)
            times_out.append(buf[N * R * T:])
        else:
            out = np.empty((N, R, T), dtype=dtype)
    h_nom, u_end = _nominal_step(t) if _h_nom is None else _h_nom
    ev_t, ev_c, ev_a, ev_k, nev, ev_v = plan.events
    n_st = plan.K.shape[1]
    # work per output time: one propagation (n^2) and the outputs (R n); a kernel call does
    # about CHUNK_WORK x 64 of those operations (a fraction of a second), so Ctrl-C is seen soon
    per_point = max(1, (n_st * n_st + R * n_st) // 64)
    per = max(1, CHUNK_WORK // max(1, T * per_point))
    k = _threads(threads)
    nf, ni = _kernels.carry_sizes(n_st)
    K, C, W, wd, pdp = plan.K, plan.C, plan.W, plan.wd, plan.pd
    pd_on, pd_rtol, pd_rows = plan.pd_on, plan.pd_rtol, plan.pd_rows

    lim = min(MAX_ABS_OUTPUT, float(np.finfo(out.dtype).max) / 1e6)

    # one block length for every call on this grid: the output rows of one subject then get
    # the same values whether they run in one call or in groups
    nb = block_length(C.shape[1] + W.shape[1], n_st, u_end, h_nom)

    dup_all = _dup_rows(C, W)

    def grid_args(a, b, dst=None, cf=None, ci=None, tt=t, rows=None, work=None):
        if cf is None:
            cf, ci = np.zeros(nf), np.zeros(ni, np.int64)
        Cr, Wr, on, pr, dup = (C, W, pd_on, pd_rows, dup_all) if rows is None else rows
        if work is None:
            work = _kernels.grid_work(n_st, Cr.shape[1], Wr.shape[1], nb)
        return (a, b, K, tt, h_nom, u_end, nb, ev_t, ev_c, ev_a, ev_k, nev, ev_v, Cr, Wr, wd,
                pdp, on, pd_rtol, pr, dup, out[a:b] if dst is None else dst, cf, ci,
                lim if check_overflow else -1.0, *work)

    def grid(*args, **kw):
        return _kernels.grid_range(*grid_args(*args, **kw))

    piece = max(1024, CHUNK_WORK // per_point) // _kernels.BLK * _kernels.BLK
    split = _row_split(plan, T) if (N == 1 and k > 1 and T <= piece) else None
    if N > 1 and per > 1:
        _compile_here(_kernels.grid_range, grid_args(0, 1))     # (not on a worker thread)
        bad = _spread(grid, 0, N, k, per)
    elif split is not None:
        # one subject, many output values: its rows in two groups on two threads (rows before
        # the cut; the rest, with the schematic response), each group written by its own
        # kernel call into its own rows. Every row's values are the same as from one call
        # (the same blocks, the same steps).
        b = split
        m = C.shape[1]
        cm, wm = min(b, m), max(0, b - m)
        rows_b = pd_rows.copy()
        rows_b[rows_b >= 0] -= b
        groups = ((C[:, :cm], W[:, :wm], False, np.full(3, -1, np.int64)),
                  (C[:, cm:], W[:, wm:], pd_on, rows_b))
        groups = (groups[0] + (dup_all[:b].copy(),), groups[1] + (_group_dups(dup_all, b),))

        for rows, dst in ((groups[0], out[:, :b]), (groups[1], out[:, b:])):
            _compile_here(_kernels.grid_range, grid_args(0, 1, dst, rows=rows))
        bad = _pair(lambda: grid(0, 1, out[:, :b], rows=groups[0]),
                    lambda: grid(0, 1, out[:, b:], rows=groups[1]))
    else:
        # one subject at a time (alone, or each a long run): pieces of the time grid,
        # carrying the state between them, so that Ctrl-C is honoured between pieces
        bad = 0
        work = _kernels.grid_work(n_st, C.shape[1], W.shape[1], nb)    # (reset by each call)
        for a in range(N):
            cf = np.zeros(nf)
            ci = np.zeros(ni, np.int64)
            buf = out[a] if T <= piece else np.empty((R, piece), dtype=out.dtype)
            for p0 in range(0, T, piece):
                p1 = min(T, p0 + piece)
                dst = buf if T <= piece else buf[:, :p1 - p0]
                if T > piece and p1 - p0 < piece:
                    dst = np.empty((R, p1 - p0), dtype=out.dtype)
                bad += grid(a, a + 1, dst[None], cf, ci, t if T <= piece else t[p0:p1],
                            work=work)
                if T > piece:
                    out[a, :, p0:p1] = dst
    if check_overflow and bad:
        row = int(_kernels.first_out_of_range(out, lim)[1])
        raise KetasimInputError(
            f"{_doses_head(plan.doses)}simulation: output {plan.names[row]!r} overflows "
            f"(|value| >= {lim:g} or not a number): check for extreme amounts, rates or "
            "volumes in the model and dose table")
    return out


def _doses_head(doses) -> str:
    """``"doses: <its source>: "``, heading a message about what a run of these doses gave
    (an output that overflows): the argument, named as the option ``--doses`` on the command
    line, and the table's file (a course's table is the course given there)."""
    src = getattr(doses, "source", None)
    return "doses: " + (f"{src}: " if src and src != "course" else "")


# ---------------------------------------------------------------------------------------------
# exact metrics

#: A course's tail by default: its metrics, populations, sweeps, ``simulate`` and ``ketasim
#: course`` all run on to 28 days after the last dose (:func:`default_horizon_h`).
COURSE_TAIL_H = 28 * 24.0


def default_horizon_h(doses) -> float:
    """Where a course ends when no horizon is given, h: :data:`COURSE_TAIL_H` after its last
    dose starts (repeats of ``addl`` included, reset rows not; in a table of several subjects,
    the latest subject's). One rule for every command, so the last session's AUC, time above
    and plasticity at the end agree between them."""
    t = _dose_times(doses)
    if not t.size:
        t = expand(doses).time_h
    if not t.size:         # (np.max of nothing had been a bare ValueError)
        raise KetasimInputError(f"doses: {getattr(doses, 'source', '') or 'the dose table'} "
                                "has no doses; expected at least one (a course ends 28 days "
                                "after its last dose)")
    return float(np.max(t)) + COURSE_TAIL_H


def after_horizon_note(doses, horizon_h: float, merge_h: float = 1.0,
                       field: str = "horizon_h") -> str | None:
    """What a horizon leaves out, in words: the sessions (and doses) of ``doses`` that start
    at or after ``horizon_h`` and so have no metrics; None when every session starts before
    it."""
    starts = session_starts(doses, merge_h)
    later = starts[starts >= horizon_h]
    if later.size == 0:
        return None
    nd = int(np.sum(_dose_times(doses) >= horizon_h))
    k, s = later.size, starts.size
    return (f"{field} = {horizon_h:g} h: {k} of {s} session{'s' if s != 1 else ''} "
            f"({nd} dose{'s' if nd != 1 else ''}) start{'s' if k == 1 else ''} at or after it "
            f"(from day {later[0] / 24:g}) and {'is' if k == 1 else 'are'} left out of the "
            f"metrics; expected a horizon after the last session (day {starts[-1] / 24:g}) to "
            f"include {'it' if k == 1 else 'them'} (the default: the last dose + "
            f"{COURSE_TAIL_H / 24:g} days, {default_horizon_h(doses):g} h)")


def running_at_end_note(doses, end_h: float) -> str | None:
    """What an infusion still running at ``end_h``, the end of a run, leaves out, in words
    (the first such row); None when there is none. Only an infusion that outlasts the default
    course too (:func:`default_horizon_h`: one running 28 days after the last dose starts,
    such as 100 mg at ``rate_mg_h`` 0.001, 100,000 h) is named: a shorter one cut by a
    horizon chosen short is what that horizon asked for."""
    from .dosing import Doses
    from .plotting import row_durations

    if not isinstance(doses, Doses):
        return None             # (a course by name: its infusions are minutes long)
    d = expand(doses)
    if not len(d):
        return None
    dur = row_durations(d)
    end = d.time_h + dur
    # (one longer than the longest run is refused when the run's events are built)
    late = ((dur > 0) & (dur <= PD_MAX_HORIZON_H) & (end > end_h)
            & (end > default_horizon_h(doses)))
    if getattr(d, "evid", None) is not None:
        late &= d.evid != 3
        # a reset (evid 3 or 4, ss 1) stops an infusion running then (any subject's, here)
        ss = d.ss if getattr(d, "ss", None) is not None else np.zeros(len(d), np.int64)
        rs = d.time_h[(d.evid == 3) | (d.evid == 4) | (ss == 1)]
        if rs.size:
            late &= ~((rs[None, :] > d.time_h[:, None]) & (rs[None, :] <= end_h)).any(axis=1)
    if not late.any():
        return None
    i = int(np.argmax(late))
    how = (f"rate_mg_h {d.rate_mg_h[i]:g} mg/h" if d.duration_h[i] <= 0
           else f"duration_h {d.duration_h[i]:g} h")
    given = d.amount_mg[i] * max(0.0, min(1.0, (end_h - d.time_h[i]) / dur[i]))
    return (f"{d.source}: {d.where(i)} (dose at {d.time_h[i]:g} h): the infusion of "
            f"{d.amount_mg[i]:g} mg at {how} runs to {end[i]:.6g} h, past the end of the run "
            f"({end_h:g} h): only {given:.3g} mg of it is given there, and the curves and "
            "metrics show only that; expected a higher rate_mg_h (or a shorter duration_h), or "
            "a later end of the run")


def warn_after_horizon(doses, horizon_h: float, merge_h: float = 1.0) -> None:
    """:func:`after_horizon_note` as a :class:`~ketasim.errors.KetasimWarning` at the
    caller's line (:func:`ketasim.errors.warn`), if any."""
    note = after_horizon_note(doses, horizon_h, merge_h)
    if note is not None:
        from .errors import warn
        warn(note)


def warn_dose_routes(model, doses, what: str) -> None:
    """:func:`ketasim.events.dose_route_warning` as a :class:`~ketasim.errors.KetasimWarning`
    headed by ``what`` (the function the caller called), at the caller's line, if any: a dose
    into a route's compartment by its name, or a nasal session entered one row per device,
    give other numbers than meant (the CLI says so its own way)."""
    msg = dose_route_warning(model, doses)
    if msg is not None:
        from .errors import warn
        warn(f"{what}: {msg}")


def _dose_times(doses) -> np.ndarray:
    """Every dose's start time, h, repeats of ``addl`` included (a reset row, evid 3, gives no
    dose and is left out)."""
    ex = expand(doses)
    return ex.time_h if getattr(ex, "evid", None) is None else ex.time_h[ex.evid != 3]


def session_starts(doses, merge_h: float = 1.0) -> np.ndarray:
    """Distinct session start times (h): dose times closer than ``merge_h`` form one session
    (a reset row, evid 3, gives no dose: it starts no session)."""
    t = np.unique(_dose_times(doses))
    if t.size == 0:
        return t
    keep = np.r_[True, new_session(np.diff(t), merge_h)]
    return t[keep]


#: Transfers from the nearest dose at or beyond which a compartment's drug arrives as a
#: delayed pulse (a transit chain): the exact metrics then also look at each step's middle
#: (:func:`ketasim._kernels._monitor`), where a pulse that rises and falls back inside one
#: step can show though the step's ends do not (it costs about half again the metrics' time).
PROBE_LINKS = 6


def _far_from_doses(Ka, ev, n_states: int) -> bool:
    """Whether some compartment is at least :data:`PROBE_LINKS` transfers from every
    compartment a dose enters (for any subject's matrices)."""
    flow = (Ka[:, :n_states, :n_states] != 0).any(axis=0)     # flow[j, i]: i feeds j
    np.fill_diagonal(flow, False)
    _, ev_c, _, ev_k, nev, ev_v = ev
    live = np.arange(ev_k.shape[1])[None, :] < np.asarray(nev)[:, None]
    src = np.zeros(n_states, bool)
    direct = ev_c[live & ((ev_k == 0) | (ev_k == 1))]
    src[direct[(direct >= 0) & (direct < n_states)]] = True
    rows = np.unique(ev_c[live & (ev_k == 3)])
    if rows.size:                # doses split between compartments (a vector per event)
        src |= (ev_v[:, rows, :n_states] != 0).any(axis=(0, 1))
    dist = np.where(src, 0, -1)
    frontier = src
    d = 0
    while frontier.any():
        d += 1
        frontier = flow[:, frontier].any(axis=1) & (dist < 0)
        dist[frontier] = d
    return bool(dist.max() >= PROBE_LINKS)


def default_analyte(model) -> str | None:
    """The concentration the PK metrics describe when no analyte is named: ``plasma`` where
    the model has it, else its first concentration (None: it has none)."""
    names = model.concentration_names
    return "plasma" if "plasma" in names else (names[0] if names else None)


def _parse_thresholds(metrics):
    occ, conc = set(), set()
    for m in metrics:
        for prefix, bucket, lo, hi in (("time_above_occ_", occ, 0.0, 1.0),
                                       ("time_above_conc_", conc, 0.0, np.inf)):
            if m.startswith(prefix):
                try:
                    text = m[len(prefix):]
                    if not _PLAIN_NUMBER.fullmatch(text):    # the column keeps this text
                        raise ValueError(text)
                    v = float(text)
                except ValueError:
                    raise KetasimInputError(f"metrics: {m!r}: expected {prefix}<number>") \
                        from None
                if not (lo <= v <= hi) or not np.isfinite(v):
                    raise KetasimInputError(f"metrics: {m!r}: threshold {v:g} out of range "
                                            f"[{lo:g}, {hi:g}]")
                bucket.add(v)
    return sorted(occ), sorted(conc)


_THRESHOLD_KINDS = {"occupancy": (lambda v: 0 <= v <= 1, "occupancies in [0, 1]"),
                    "concentration": (lambda v: 0 <= v < np.inf,
                                      "finite concentrations >= 0, in ng/mL")}


def threshold_values(v, field: str, kind: str) -> tuple:
    """Thresholds given as one number or as any iterable of numbers (a list, tuple, set,
    generator, NumPy array or pandas Series, as other lists are taken): a tuple of floats
    (float32 0.3 is not 0.3), each an occupancy or a concentration (``kind``); else a one-line
    error naming ``field`` (a set or a generator had been refused as if its numbers were out
    of range: "got {0.3}, expected occupancies in [0, 1]")."""
    ok, expected = _THRESHOLD_KINDS[kind]
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v[()]                       # a 0-d array: its number
    if is_real(v):
        items = [v]
    elif isinstance(v, (str, bytes, Mapping)) or not hasattr(v, "__iter__"):
        raise KetasimInputError(f"{field}: got {v!r}, expected a number or a list of numbers "
                                f"({expected})")
    else:
        items = list(v)
    for th in items:
        if not is_real(th):
            raise KetasimInputError(f"{field}: got {th!r} in {items!r}, expected a number or "
                                    f"a list of numbers ({expected})")
        if not ok(th):
            raise KetasimInputError(f"{field}: got {th!r}, expected {expected}")
    return tuple(float(th) for th in items)


@dataclass(frozen=True, eq=False)
class MetricsRun:
    """Raw exact metrics of N subjects over S sessions (internal units).

    ``per_session`` (N, rows, S) with rows cmax (mg/L), tmax (h after the session start),
    auc (mg·h/L), trough (mg/L; for the last session NaN, or the value at the horizon when
    a session starts exactly there), peak occupancy, peak glutamate,
    minimum plasticity, then time above each occupancy threshold (h), then time above each
    concentration threshold (h); ``end`` (N, 3): glutamate, plasticity, consolidation at the
    horizon; ``session_start_h`` (S,), or (N, S) for a dataset with subjects, where each
    subject's sessions are its own dose times (NaN beyond its last)."""

    per_session: np.ndarray
    end: np.ndarray
    session_start_h: np.ndarray
    thresholds_occ: tuple
    thresholds_conc_ng_ml: tuple
    analyte: str
    horizon_h: float
    has_occupancy: bool
    has_schematic: bool


@naming_subjects
def run_metrics(model, doses, params=None, weight_kg=70.0, *, analyte=None, thresholds_occ=(),
                thresholds_conc_ng_ml=(), horizon_h=None, merge_h: float = 1.0,
                schematic: bool = True, occupancy_calibration=None, pd_rtol=DEFAULT_PD_RTOL,
                threads=None, chunk_size: int = 20_000, conc_peaks: bool = True,
                occupancy_peaks: bool = True, _warn_after_horizon: bool = False,
                _warn_doses: bool = False, _horizon_field: str = "horizon_h") -> MetricsRun:
    """Exact per-session metrics for every subject, computed in the kernel with no time grid
    (memory: a few arrays per chunk of subjects). See :class:`MetricsRun`.

    ``conc_peaks=False``: Cmax and Tmax are not searched for (NaN; the AUC, troughs and times
    above concentration thresholds are still exact); ``occupancy_peaks=False``: the same for
    peak occupancy (times above occupancy thresholds still exact). A search costs about as much
    as the rest of the run."""
    from . import _kernels, _warm

    _warm.wait()        # a helper compiling this kernel into the cache (a first run)
    pd_rtol = _check_rtol(pd_rtol)
    model, doses, vals, population, _, _ = _resolve(model, doses, params, weight_kg)
    n = vals["WT"].shape[0]
    if analyte is None:
        analyte = default_analyte(model)
    if analyte is None:
        raise KetasimInputError(f"metrics: model {model.name!r} has no concentration (no "
                                "compartment with a volume) to compute Cmax, AUC or troughs of")
    check_name(analyte, model.concentration_names, "analyte")
    thresholds_occ = threshold_values(thresholds_occ, "thresholds_occ", "occupancy")
    thresholds_conc_ng_ml = threshold_values(thresholds_conc_ng_ml, "thresholds_conc_ng_ml",
                                             "concentration")
    if not (is_real(merge_h) and 0 <= merge_h < np.inf):
        raise KetasimInputError(f"merge_h: got {merge_h!r}, expected hours >= 0 (doses closer "
                                "than this are one session)")
    if not (is_whole(chunk_size) and chunk_size >= 1):
        raise KetasimInputError(f"chunk_size: got {chunk_size!r}, expected a whole number of "
                                "subjects >= 1")
    starts = session_starts(doses, merge_h)
    if starts.size == 0:
        # (named as the doses, as the course figure names them: it had been "metrics: the
        # dose table has no doses", an option population, sweep and simulate --summary lack)
        raise KetasimInputError(f"doses: {getattr(doses, 'source', '') or 'the dose table'} "
                                "has no doses (only reset rows); expected at least one")
    if horizon_h is None:
        horizon_h = checked_default_horizon_h(doses)
    horizon_h = positive_hours("horizon_h", horizon_h)
    check_metrics_horizon(horizon_h, "horizon_h")
    if _warn_after_horizon:           # (the caller's caller gave the horizon)
        warn_after_horizon(doses, horizon_h, merge_h)
    if _warn_doses:                   # (and the doses)
        warn_dose_routes(model, doses, "session_metrics")
    # a session has a window only when it starts before the horizon (one starting at it would
    # report the previous session's leftover as its "peak"); one starting exactly at it still
    # ends the session before it, whose trough is then the value at the horizon
    next_at_end = np.full(n, int(np.any(starts == horizon_h)), np.int64)
    first = float(starts[0])
    starts = starts[starts < horizon_h]
    if starts.size == 0:     # (the message had named no argument: "metrics: no session ...")
        raise KetasimInputError(f"{_horizon_field}: got {horizon_h:g} h, expected hours after "
                                f"the first session start ({first:g} h): no session starts "
                                "before it, so there is nothing to measure")
    S0 = len(model.state_names)
    K = model.matrices(vals)
    ra_s = model.observation(vals, [analyte])[:, 0, :]
    Ka = np.zeros((n, S0 + 1, S0 + 1))
    Ka[:, :S0, :S0] = K
    Ka[:, S0, :S0] = ra_s                     # integrator state: d(AUC)/dt = analyte (mg/L)
    ra = _pad(ra_s, S0 + 1)
    wsets = _weight_sets(model, vals, occupancy_calibration)
    rw = _pad(wsets["occupancy"], S0 + 1) if "occupancy" in wsets else np.zeros((n, S0 + 1))
    wd = _pad(wsets["drive"], S0 + 1) if "drive" in wsets else np.zeros((n, S0 + 1))
    pd_on = bool(schematic and model.has_glutamate)
    if pd_on:
        check_pd_horizon(float(horizon_h), "horizon_h")
    pdp = (model.glutamate_parameters(vals) if pd_on
           else np.zeros((n, len(GLUTAMATE_ROLES))))
    ev = _pad_events(build_events(model, doses, vals, shared_rows=True), S0 + 1,
                     n_reset=S0)
    kmax = np.max(np.abs(np.diagonal(Ka, axis1=1, axis2=2)), axis=1)
    h0 = 2.0 ** np.floor(np.log2(1.0 / (16.0 * np.maximum(kmax, 1e-6))))
    h0 = np.clip(h0, 2.0 ** -20, 1.0)
    thr_o = np.array([th / (1.0 - th) if th < 1 else np.inf for th in thresholds_occ])
    thr_c = np.asarray(thresholds_conc_ng_ml, dtype=np.float64) / 1000.0
    S = starts.size
    rows = _kernels.M_FIXED + thr_o.size + thr_c.size
    check_memory(n * rows * S, f"metrics: {n:,} subjects x {rows} metrics x {S} sessions")
    mo = np.empty((n, rows, S))
    endv = np.empty((n, 3))
    # a writeable copy for any n (for one subject, ascontiguousarray would keep broadcast_to's
    # read-only view, and Numba would compile the kernel again for it)
    sess = np.empty((n, S))
    sess[:] = starts
    nsess = np.full(n, S, np.int64)
    ids = getattr(doses, "subject_ids", None)
    if ids is not None and len(ids) == n:
        # a dataset with subjects: each subject's sessions are its own dose times
        ex = expand(doses)
        own = []
        for sid in ids:
            sel = ex.subject == sid
            if getattr(ex, "evid", None) is not None:
                sel &= ex.evid != 3               # a reset is not a session
            t = np.unique(ex.time_h[sel])
            t = t[np.r_[True, new_session(np.diff(t), merge_h)]] if t.size else t
            own.append(t[t < horizon_h])
            next_at_end[len(own) - 1] = int(np.any(t == horizon_h))
        S = max(1, max(t.size for t in own))
        sess = np.full((n, S), np.inf)
        for i, t in enumerate(own):
            sess[i, :t.size] = t
            nsess[i] = t.size
        starts = np.where(np.isfinite(sess), sess, np.nan)
        check_memory(n * rows * S, f"metrics: {n:,} subjects x {rows} metrics x {S} sessions")
        mo = np.empty((n, rows, S))
    hor = np.full(n, float(horizon_h))
    ev_t, ev_c, ev_a, ev_k, nev, ev_v = ev
    k = _threads(threads)

    has_occ = "occupancy" in wsets
    mon = np.int64((1 if conc_peaks or thr_c.size else 0)
                   | (2 if has_occ and (occupancy_peaks or thr_o.size) else 0))
    if mon and _far_from_doses(Ka, ev, S0):
        mon |= 4        # also look at each step's middle (ketasim._kernels._monitor)

    met_args = (Ka, ev_t, ev_c, ev_a, ev_k, nev, ev_v, sess, nsess, hor, ra, rw, wd, pdp, pd_on,
                pd_rtol, thr_o, thr_c, h0, S0, mo, endv, mon, next_at_end)

    def met(a, b):
        _kernels.metrics_range(a, b, *met_args)

    _compile_here(_kernels.metrics_range, (0, 1) + met_args)     # (not on a worker thread)

    # ranges of at most 64 subjects with the schematic response (about 4 ms a subject over a
    # six-month course), 512 without: Ctrl-C is seen within a fraction of a second
    _spread(met, 0, n, k, min(max(1, int(chunk_size)), 64 if pd_on else 512))
    if not has_occ:
        mo[:, _kernels.M_POCC] = np.nan
        mo[:, _kernels.M_FIXED:_kernels.M_FIXED + thr_o.size] = np.nan
    if not pd_on:
        mo[:, _kernels.M_PGLU] = np.nan
        mo[:, _kernels.M_PMIN] = np.nan
        endv[:] = np.nan
    elif not model.has_consolidation:
        endv[:, 2] = np.nan
    used = np.arange(mo.shape[2])[None, :] < nsess[:, None]
    # the limit the curves have (:func:`run`): a peak or area of 1e250 or more, in mg/L or
    # mg*h/L, is an overflow too (in ng/mL it would be infinite or nearly so)
    for what, r in (("a concentration", _kernels.M_CMAX), ("an AUC", _kernels.M_AUC)):
        v = mo[:, r][used]
        if not np.all(np.abs(v) < MAX_ABS_OUTPUT):
            raise KetasimInputError(
                f"{_doses_head(doses)}metrics: {what} overflows (|value| >= "
                f"{MAX_ABS_OUTPUT:g} or not a number): "
                "check for extreme amounts, rates or volumes in the model and dose table")
    if not conc_peaks:
        mo[:, _kernels.M_CMAX] = np.nan
        mo[:, _kernels.M_TMAX] = np.nan
    if not occupancy_peaks:
        mo[:, _kernels.M_POCC] = np.nan
    return MetricsRun(per_session=mo, end=endv, session_start_h=starts,
                      thresholds_occ=tuple(float(x) for x in thresholds_occ),
                      thresholds_conc_ng_ml=tuple(float(x) for x in thresholds_conc_ng_ml),
                      analyte=analyte, horizon_h=float(horizon_h), has_occupancy=has_occ,
                      has_schematic=pd_on)


_TO_NG = {"cmax": 1000.0, "auc": 1000.0, "trough": 1000.0}


def session_metrics(model, doses, params=None, weight_kg=70.0, *, metrics=("cmax", "auc"),
                    analyte=None, horizon_h=None, threads=None, merge_h: float = 1.0,
                    occupancy_calibration=None, pd_rtol=DEFAULT_PD_RTOL,
                    chunk_size: int = 20_000) -> dict:
    """Per-subject metrics, per session and over the course, exact and grid-free.

    Parameters
    ----------
    model, doses, params, weight_kg
        As for :func:`ketasim.simulate` (``params``/``weight_kg`` arrays of length N give N
        subjects).
    metrics : sequence of str
        Names from :data:`METRICS` (a list, tuple, NumPy array or pandas Series of them, or one
        text of names separated by commas); ``time_above_occ_0.3`` / ``time_above_conc_100``
        style for thresholds (occupancy 0-1, concentration ng/mL). A concentration threshold
        is resolved down to about 1e-15 of the concentration a step starts from: far below
        that (1e-40 ng/mL after a 1000 ng/mL peak, say) a decaying curve reads as 0 once it
        drops under the rounding level of its step, and its time above ends there.
    analyte : str, optional
        The concentration the PK metrics describe (default ``plasma`` where the model has it).
    horizon_h : float, optional
        End of the course, h (default: last session start + 28 days). Sessions starting at
        or after it have no metrics: a :class:`~ketasim.errors.KetasimWarning` says how many.
    merge_h : float
        Doses closer than this (h) belong to one session (default 1).
    occupancy_calibration, pd_rtol
        As for :func:`ketasim.simulate`.
    threads : int, optional
        Threads for this call (default: one per core); never changes a result.
    chunk_size : int
        Largest number of subjects run at once (bounds the memory); never changes a result.

    Returns
    -------
    dict
        ``"session_start_h"`` -> (S,) and, for each metric m (a threshold given twice, as
        ``time_above_occ_0.3`` and ``time_above_occ_0.30``, once: under its first spelling),
        ``m`` -> (N,) over the course (max for peaks, with ``tmax`` the time of the highest
        session peak after its session's start; sum for AUC and times above; the last trough;
        the value at the end for ``plasticity_end``/``consolidation_end``) and
        ``f"{m}_s{k}"`` -> (N,) per session k.
    """
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]  # names by commas
    # any sequence of names, a NumPy array or a pandas Series of them too, as population()
    # and sweep() take them (they had been refused here); kept as str, not np.str_
    names = (list(metrics) if hasattr(metrics, "__iter__") and not isinstance(metrics, Mapping)
             else None)
    if names is None or not all(isinstance(m, str) for m in names):
        raise KetasimInputError(f"metrics: got {metrics!r}, expected a list of metric names")
    metrics = [str(m) for m in names]
    if not metrics:     # (it had returned the session starts alone; population() refuses it)
        raise KetasimInputError(f"metrics: got {metrics!r}, expected at least one metric name")
    known = {m for m in METRICS if not m.endswith("_X")}
    for m in metrics:
        if m not in known and not m.startswith(("time_above_occ_", "time_above_conc_")):
            from .errors import suggest
            raise KetasimInputError(f"metrics: unknown metric {m!r}{suggest(m, sorted(known))}; "
                                    f"expected {', '.join(sorted(known))}, time_above_occ_<X> "
                                    "or time_above_conc_<X>")
    thr_o, thr_c = _parse_thresholds(metrics)
    # one threshold spelt twice (time_above_occ_0.3 and _0.30) is one metric, under the
    # first spelling, as population() and sweep() compute it (it had been two columns)
    from .population import _metric_key
    first = {}
    for m in metrics:
        first.setdefault(_metric_key(m), m)
    metrics = list(first.values())
    # a metric the model cannot give is refused, as population() and sweep() refuse it (it
    # had been a column of NaN: a model without occupancy has no peak occupancy)
    from .population import refuse_what_model_lacks
    model = load_model(model)
    refuse_what_model_lacks(model, metrics)
    schematic = any(m in ("peak_glutamate", "plasticity_end", "consolidation_end")
                    for m in metrics)
    mr = run_metrics(model, doses, params, weight_kg, analyte=analyte, thresholds_occ=thr_o,
                     thresholds_conc_ng_ml=thr_c, horizon_h=horizon_h, merge_h=merge_h,
                     schematic=schematic, occupancy_calibration=occupancy_calibration,
                     pd_rtol=pd_rtol, threads=threads, chunk_size=chunk_size,
                     conc_peaks=any(m in ("cmax", "tmax") for m in metrics),
                     occupancy_peaks="peak_occupancy" in metrics,
                     _warn_after_horizon=horizon_h is not None, _warn_doses=True)
    return metrics_columns(mr, metrics)


def metrics_columns(mr: MetricsRun, metrics) -> dict:
    """Table columns (``m`` and ``m_s<k>``) of the named metrics from a :class:`MetricsRun`."""
    from . import _kernels

    K = _kernels
    mo = mr.per_session
    N, _, S = mo.shape
    nto = len(mr.thresholds_occ)
    rows = {"cmax": K.M_CMAX, "tmax": K.M_TMAX, "auc": K.M_AUC, "trough": K.M_TROUGH,
            "peak_occupancy": K.M_POCC, "peak_glutamate": K.M_PGLU}
    out = {"session_start_h": mr.session_start_h}
    for m in metrics:
        if m in ("plasticity_end", "consolidation_end"):
            out[m] = mr.end[:, 1 if m == "plasticity_end" else 2].copy()
            continue
        if m.startswith("time_above_occ_"):
            row = K.M_FIXED + mr.thresholds_occ.index(float(m[len("time_above_occ_"):]))
        elif m.startswith("time_above_conc_"):
            row = K.M_FIXED + nto + mr.thresholds_conc_ng_ml.index(
                float(m[len("time_above_conc_"):]))
        else:
            row = rows[m]
        a = mo[:, row, :] * _TO_NG.get(m, 1.0)
        for k in range(S):
            out[f"{m}_s{k + 1}"] = a[:, k].copy()
        st = np.asarray(mr.session_start_h, dtype=float)
        ns = (np.sum(np.isfinite(st), axis=1) if st.ndim == 2 else np.full(N, S))
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)    # all-NaN rows stay NaN
            if m in ("cmax", "peak_occupancy", "peak_glutamate"):
                out[m] = np.nanmax(a, axis=1) if S else np.full(N, np.nan)
            elif m == "tmax":
                cm = np.where(np.isnan(mo[:, K.M_CMAX, :]), -np.inf, mo[:, K.M_CMAX, :])
                out[m] = a[np.arange(N), np.argmax(cm, axis=1)]
            elif m == "trough":      # each subject's last trough: before its last session
                # (one starting exactly at the horizon has no window and is not in ns: the
                # trough before it is the last counted session's, its only non-NaN one)
                rows_n = np.arange(N)
                last = a[rows_n, np.clip(ns - 1, 0, max(S - 1, 0))]
                prev = np.where(ns > 1, a[rows_n, np.clip(ns - 2, 0, max(S - 1, 0))], np.nan)
                out[m] = np.where(np.isnan(last), prev, last)
            else:            # a sum over sessions; NaN where every session is NaN (a model
                # without occupancy has no time above an occupancy threshold, not 0 h)
                out[m] = np.where(np.all(np.isnan(a), axis=1), np.nan, np.nansum(a, axis=1))
    return out
