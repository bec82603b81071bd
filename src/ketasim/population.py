"""Virtual populations and parameter sweeps, in bounded memory, locally or on a Dask cluster.

Both are thin layers over :func:`ketasim.engine.session_metrics`, run on *chunks* of subjects:

* :func:`population` — ``n`` virtual patients drawn from the model's ``[variability]``
  (:mod:`ketasim.variability`), one row of metrics per subject, and optional 5/50/95 % bands
  over time;
* :func:`sweep` — a full grid over model parameters, ``weight_kg`` and course parameters, one row
  per grid point (typical subject), or ``n`` subjects per point summarised as median and
  5/95 %.

Reproducibility: subject ``i`` of a population depends only on ``(seed, i)``; chunks are the unit
of work and never change a result, whatever their size, the thread count or the number of Dask
workers (``scheduler="tcp://host:port"`` or ``"local"``). Chunks also bound the memory and are
where a run can be interrupted (Ctrl-C) and where the progress bar advances.

Bands over time are kept as fixed-memory histograms per output and time point (4096
logarithmic bins from 1e-4 to 1e5 in the output's unit — ng/mL for concentrations, the
dimensionless value for occupancy and the schematic outputs), updated chunk by chunk; curves are
never kept. Integer counts add up exactly, so bands do not depend on the chunking either. A
quantile is numpy's default (linear) one, as in the population summary and a sweep's
``_p05``/``_p50``/``_p95``, with the two values it interpolates between each read
(geometrically) inside its bin: its relative error is at most one bin width, 0.51 %, far below
the sampling error of a 5 % quantile for any practical ``n``, and it never leaves the exact
range of the values (their smallest and largest, kept per output and time point): where
every subject has the same value, the bands are that value. A quantile below 1e-4 is reported
as 0, one at or above 1e5 as NaN. A quantile between a value outside the range and one inside
it (the median of subjects at 9e-5 and 1.2e-4 ng/mL, 1.05e-4) takes the outside one exactly:
it is the largest value below 1e-4 (or the smallest at or above 1e5), also kept per output
and time point. The schematic glutamate signal is
binned as its rise above its baseline of 1 (it never falls below it: every role of the response
is >= 0), so a surge of a few per cent keeps 0.51 % of itself rather than of the whole signal.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import signal
import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ._numtext import to_float, to_int
from .errors import KetasimInputError, check_flag, is_real, is_whole, positive_hours, suggest

__all__ = ["population", "sweep", "PopulationResult", "SweepResult", "Bands",
           "DEFAULT_METRICS", "parse_vary", "metric_unit", "BAND_BINS", "BAND_RANGE"]

DEFAULT_METRICS = ("cmax", "tmax", "auc", "trough", "peak_occupancy", "time_above_occ_0.3")
DEFAULT_CHUNK = 20_000
MAX_PARAM_COLUMNS_N = 2_000_000   # a population table has param_* columns up to this size
BAND_BINS = 4096
BAND_RANGE = (1e-4, 1e5)
QUANTILES = (0.05, 0.5, 0.95)
_FIRST_CHUNK = 16            # the first local chunk is small; later ones aim at _TARGET_S
_TARGET_S = 0.5              # seconds per local chunk: Ctrl-C and the progress bar stay prompt
_BAND_VALUES = 4_000_000     # values per band sub-chunk (subjects x outputs x times)
MAX_GRID_POINTS = 10_000_000  # points of a sweep grid
SCHEDULER_TIMEOUT_S = 5.0     # to reach a scheduler address
WORKER_WAIT_S = 60.0          # for the first worker of a scheduler that has none yet


# ---------------------------------------------------------------------- metric names and units
def metric_unit(name: str) -> str:
    """Unit of a metric column (``cmax``, ``cmax_s3``, ``time_above_occ_0.3_p50`` ...)."""
    from .engine import METRICS

    base = _base_metric(name)
    for prefix in ("time_above_occ_", "time_above_conc_"):
        if base.startswith(prefix):
            return METRICS.get(prefix + "X", ("h", ""))[0]
    return METRICS.get(base, ("", ""))[0]


def _base_metric(name: str) -> str:
    for suf in ("_p50", "_p05", "_p95"):
        if name.endswith(suf):
            name = name[: -len(suf)]
    head, _, tail = name.rpartition("_s")
    if head and tail.isdigit():
        return head
    return name


def _check_metrics(metrics) -> tuple:
    from .engine import METRICS

    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    try:
        metrics = tuple(metrics)
    except TypeError:
        raise KetasimInputError(f"metrics: got {metrics!r}, expected metric names (a list, or "
                                "one text of names separated by commas)") from None
    if not metrics:
        raise KetasimInputError("metrics: expected at least one metric name")
    known = [k for k in METRICS if not k.endswith("_X")]
    patterns = [k[:-1] + "<X>" for k in METRICS if k.endswith("_X")]
    out = []
    for m in metrics:
        if not isinstance(m, str):
            raise KetasimInputError(f"metrics: got {m!r}, expected metric names")
        for prefix, lo, hi, what in (("time_above_occ_", 0.0, 1.0, "an occupancy in [0, 1]"),
                                     ("time_above_conc_", 0.0, math.inf, "ng/mL >= 0")):
            if m.startswith(prefix):
                from ._numtext import UNSIGNED as _PLAIN_NUMBER

                text = m[len(prefix):]
                x = float(text) if _PLAIN_NUMBER.fullmatch(text) else math.nan
                if not (lo <= x <= hi) or math.isinf(x):
                    raise KetasimInputError(f"metrics: {m!r}: the threshold must be {what}, "
                                            f"e.g. {prefix}0.3")
                if prefix + "X" not in METRICS:
                    raise KetasimInputError(f"metrics: {m!r} is not available; expected one "
                                            "of " + ", ".join(known + patterns))
                break
        else:
            if m not in known:
                raise KetasimInputError(f"metrics: unknown metric {m!r}{suggest(m, known)}; "
                                        "expected " + ", ".join(known + patterns))
        m = str(m)             # (a NumPy array's np.str_: the columns are named by str)
        if m not in out and _metric_key(m) not in [_metric_key(o) for o in out]:
            out.append(m)      # (time_above_occ_0.30 is time_above_occ_0.3 again: once)
    return tuple(out)


def _metric_needs(model, m: str):
    """What of the model a metric needs that the model lacks (None: it can give it)."""
    if m == "peak_occupancy" or m.startswith("time_above_occ_"):
        return None if model.has_occupancy else "occupancy (an [occupancy] section)"
    if m in ("peak_glutamate", "plasticity_end"):
        return None if model.has_glutamate else "the schematic response (a [glutamate] section)"
    if m == "consolidation_end":
        return None if model.has_consolidation else "a consolidation stage"
    return None


def refuse_what_model_lacks(model, metrics, hint: str = "leave it out") -> None:
    """Refuse a metric ``model`` cannot give (an occupancy metric without occupancy, a
    schematic one without the schematic response), naming it and the model; ``hint`` ends
    the message."""
    for m in metrics:
        why = _metric_needs(model, m)
        if why is not None:
            raise KetasimInputError(f"metrics: {m} needs {why}; model {model.name!r} has "
                                    f"none ({hint})")


def model_metrics(model, metrics=None) -> tuple:
    """The metrics of a run of ``model``: ``None`` (or :data:`DEFAULT_METRICS` itself) gives
    the default set without the metrics the model cannot give (no occupancy metrics for a
    model without occupancy: they would be columns of NaN); a metric named that the model
    cannot give is refused. One rule for the Python API and the command line."""
    if metrics is None or metrics is DEFAULT_METRICS:
        return tuple(m for m in DEFAULT_METRICS if _metric_needs(model, m) is None)
    metrics = _check_metrics(metrics)
    refuse_what_model_lacks(model, metrics, "leave it out; metrics=None gives the default "
                            "metrics the model has")
    return metrics


def _column_key(name: str):
    """A threshold metric's column by its number and suffixes (``time_above_occ_0.30_s2_p50``
    and ``time_above_occ_0.3_s2_p50`` are one); None for any other name."""
    base = _base_metric(name)
    for prefix in ("time_above_occ_", "time_above_conc_"):
        if base.startswith(prefix):
            from ._numtext import UNSIGNED

            text = base[len(prefix):]
            if not UNSIGNED.fullmatch(text):
                return None
            return prefix, float(text), name[len(base):]
    return None


def _same_threshold(name, columns):
    """The column of ``columns`` that is ``name`` spelt with another threshold number
    (metrics asked for in two spellings are computed once, under the first), or None."""
    if not isinstance(name, str):
        return None
    key = _column_key(name)
    if key is None:
        return None
    for c in columns:
        if _column_key(c) == key:
            return c
    return None


def _metric_key(m: str):
    """A metric's identity: a threshold metric by its number (0.3 and 0.30 are one), as its
    columns are found (:func:`_column_key`)."""
    key = _column_key(m)
    return m if key is None else key


# ---------------------------------------------------------------------- the unit of work
@dataclass(frozen=True)
class _Job:
    """Everything a chunk needs; plain data that pickles cheaply (sent to Dask workers).

    Rows are laid out point-major: row ``r`` is subject ``r % n_per_point`` of grid point
    ``r // n_per_point``. ``typical`` holds per-point typical values (P,), ``weight`` (P,) per
    point or ``row_weight`` (N,) per row; ``row_cov`` covariate columns (N,) per row."""

    model: object
    doses: object
    metrics: tuple
    analyte: str | None
    horizon_h: float | None
    typical: dict
    weight: np.ndarray
    n_per_point: int
    seed: int
    use_variability: bool
    row_weight: np.ndarray | None = None
    row_cov: dict = field(default_factory=dict)
    band_times: np.ndarray | None = None
    band_outputs: tuple = ()
    threads: int | None = None
    sweep: bool = False

    @property
    def n_rows(self) -> int:
        return int(self.weight.shape[0]) * self.n_per_point

    def row_inputs(self, a: int, b: int):
        """(params, weight_kg) for rows a..b-1 (arrays of length b - a)."""
        from .variability import standard_normals

        n = self.n_per_point
        rows = np.arange(a, b)
        point = rows // n
        params = {k: np.asarray(v, dtype=np.float64)[point] for k, v in self.typical.items()}
        var = self.model.variability
        if self.use_variability and var:
            k = len(var.names)
            z = np.empty((b - a, k))
            for p in range(a // n, (b - 1) // n + 1):      # contiguous subject runs per point
                r0, r1 = max(a, p * n), min(b, (p + 1) * n)
                z[r0 - a:r1 - a] = standard_normals(self.seed, r0 - p * n, r1 - r0, k)
            eta = z @ var.chol.T
            for j, name in enumerate(var.names):
                typ = params.get(name, self.model.parameters[name])
                params[name] = typ * np.exp(eta[:, j])
        if var:       # covariates apply with or without the random effects
            for col, pname in var.covariates.items():
                if col in self.row_cov:
                    params[pname] = np.asarray(self.row_cov[col][a:b], dtype=np.float64)
        w = (self.row_weight[a:b] if self.row_weight is not None else self.weight[point])
        return params, np.asarray(w, dtype=np.float64)


def _run_chunk(job: _Job, a: int, b: int, counts: np.ndarray | None = None) -> dict:
    """Metrics (and band histogram counts) of rows a..b-1. A plain function: Dask ships it.
    ``counts``: the run's band histograms, added to in place (a local run; see
    :func:`_band_counts`)."""
    from .engine import session_metrics

    params, w = job.row_inputs(a, b)
    with warnings.catch_warnings():
        # sessions after the horizon: said once, by population() or sweep(), not per chunk
        from .errors import KetasimWarning
        warnings.simplefilter("ignore", KetasimWarning)
        # (so are the doses' routes: said once, by population() or sweep())
        try:
            res = session_metrics(job.model, job.doses, params=params, weight_kg=w,
                                  metrics=job.metrics, analyte=job.analyte,
                                  horizon_h=job.horizon_h, threads=job.threads)
        except KetasimInputError as exc:
            raise _named_row_error(job, a, params, w, exc) from None
        out = {"metrics": {k: np.asarray(v, dtype=np.float64) for k, v in res.items()
                           if k != "session_start_h"},
               "session_start_h": np.asarray(res["session_start_h"], dtype=np.float64)}
        if job.band_times is not None:
            out["hist"] = _band_counts(job, params, w, counts)
    return out


def _named_row_error(job: _Job, a: int, params: dict, w: np.ndarray, exc):
    """The error of a chunk (rows ``a`` ..), its subject named as in the result: the model's
    own message counts the subjects of the chunk ("for subject 661 of 2049" had been subject
    1610 of a population of 3000, and a chunk of one subject named none). The first row the
    model refuses alone is found by halving the chunk; ``exc`` itself when none is."""
    def refusal(i, j):
        """The model's error for rows i..j-1, or None when it takes them."""
        try:
            _accepted(job.model, {k: v[i:j] for k, v in params.items()}, w[i:j], j - i)
        except KetasimInputError as err:
            return err
        return None

    lo, hi = 0, w.shape[0]
    if refusal(lo, hi) is None:
        return exc
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if refusal(lo, mid) is not None:
            hi = mid
        else:
            lo = mid
    one = refusal(lo, lo + 1)
    if one is None:
        return exc
    row = a + lo
    if not job.sweep:
        who = f"subject {row} (from 0, as in the subject column)"
    else:
        p, n = row // job.n_per_point, job.n_per_point
        at = ", ".join([f"{k} = {float(v[p]):g}" for k, v in job.typical.items()]
                       + [f"weight_kg = {float(job.weight[p]):g}"])
        who = (f"the grid point {at}" if n == 1 else
               f"subject {row % n} (from 0) of the grid point {at}")
    return KetasimInputError(f"{who}: {one}")


# ---------------------------------------------------------------------- bands (histograms)
def _band_edges():
    lo, hi = np.log10(BAND_RANGE[0]), np.log10(BAND_RANGE[1])
    return lo, (hi - lo) / (BAND_BINS - 2)


def _bin_index(v: np.ndarray) -> np.ndarray:
    """Histogram bin of each value: 0 below 1e-4 (and NaN), B-1 at or above 1e5, log bins
    between; the compiled bins the band counts use (``_kernels._band_bin``)."""
    from . import _kernels

    lo, w = _band_edges()
    v = np.ascontiguousarray(v, dtype=np.float64)
    out = np.empty(v.size, np.int64)
    _kernels.band_bins(v.ravel(), lo, w, BAND_RANGE[0], BAND_RANGE[1], BAND_BINS, out)
    return out.reshape(v.shape)


BAND_OFFSET = {"glutamate": 1.0}   # binned as the rise above this baseline (see above)


def _band_counts(job: _Job, params: dict, w: np.ndarray, into: np.ndarray | None = None):
    """Sparse histogram counts (flat index, count) of this chunk's curves, with the smallest
    and largest value per output and time point (R, T), as binned (after BAND_OFFSET), and
    the largest value below the bins' range and the smallest at or above it (R, T; -inf and
    inf where there is none): see :func:`_quantiles_from_counts`.

    ``into``: the run's histograms (R x T x BAND_BINS int64, flat), counted into in place,
    and (None, None) returned for the counts: a local run. A chunk's own histograms (for a
    Dask worker) cost their whole size per chunk, however few its subjects: bands of many
    outputs had taken more than half a second a chunk, which the chunks' sizing (about half a
    second each) had answered with chunks of one subject, each paying it again (300
    subjects, 21 band outputs: about 3 minutes, most of it in that cost)."""
    from .simulate import simulate

    T, R = job.band_times.size, len(job.band_outputs)
    n = w.shape[0]
    total = into if into is not None else np.zeros(R * T * BAND_BINS, dtype=np.int64)
    vmin = np.full((R, T), np.inf)
    vmax = np.full((R, T), -np.inf)
    below = np.full((R, T), -np.inf)        # the largest value under BAND_RANGE[0]
    above = np.full((R, T), np.inf)         # the smallest at or over BAND_RANGE[1]
    step = max(1, _BAND_VALUES // max(1, R * T))     # (the counting pass allocates nothing)
    for s0 in range(0, n, step):
        s1 = min(n, s0 + step)
        sub = {k: v[s0:s1] for k, v in params.items()}
        r = simulate(job.model, job.doses, job.band_times, params=sub, weight_kg=w[s0:s1],
                     outputs=list(job.band_outputs), threads=job.threads)
        for j, name in enumerate(job.band_outputs):
            _count_row(r.data, r.names.index(name), name, total, j * T * BAND_BINS,
                       (vmin[j], vmax[j], below[j], above[j]), job.threads)
    if into is not None:
        return None, None, vmin, vmax, below, above
    idx = np.flatnonzero(total)
    return idx.astype(np.int64), total[idx].astype(np.int64), vmin, vmax, below, above


def _count_row(data: np.ndarray, row: int, name: str, total: np.ndarray, start: int,
               extremes: tuple, threads) -> None:
    """Count output row ``row`` of a simulation's ``data`` (subjects, rows, T), the output
    ``name``, into the histograms ``total[start:]`` (laid out T x BAND_BINS) and its extremes
    (vmin, vmax, below, above: (T,) each, see :func:`_band_counts`), in one compiled pass
    (``_kernels.band_add``) over time ranges on the engine's threads. Concentrations are
    binned in ng/mL, glutamate as its rise (BAND_OFFSET); the bins are :func:`_bin_index`'s."""
    from . import _kernels
    from .engine import _compile_here, _spread, _threads
    from .result import MG_PER_L_TO_NG_PER_ML, PD_OUTPUTS

    scale = 1.0 if name in PD_OUTPUTS else MG_PER_L_TO_NG_PER_ML
    offset = BAND_OFFSET.get(name, 0.0)
    lo, w = _band_edges()
    vmin, vmax, below, above = extremes
    T = data.shape[2]

    args = (data, row, scale, offset, lo, w, BAND_RANGE[0], BAND_RANGE[1], BAND_BINS, total,
            start, vmin, vmax, below, above)

    def part(a, b):
        _kernels.band_add(*args, a, b)

    _compile_here(_kernels.band_add, args + (0, 1))      # (not on a worker thread)
    _spread(part, 0, T, _threads(threads), max(8, -(-T // 8)))


def _quantiles_from_counts(counts: np.ndarray, qs=QUANTILES, vmin=None, vmax=None,
                           below=None, above=None) -> np.ndarray:
    """counts (R, T, B) -> quantiles (R, len(qs), T); with the values' exact smallest and
    largest (R, T), a quantile read inside a bin stays within them.

    The quantile is numpy's default (linear) one, as in the population summary and a sweep's
    ``_p05``/``_p50``/``_p95``: between the values of rank ``floor(q (n - 1))`` and the next
    (from 0), each read inside its bin (the value of rank ``r`` among the ``c`` of a bin at
    ``(r - below + 1/2) / c`` of its width). A quantile below the bins' range is 0, one at or
    above it NaN. ``below`` and ``above`` (R, T): the largest value under the range and the
    smallest at or over it (-inf and inf where there is none). When the two values a quantile
    lies between are one outside the range and one inside, the outside one is exactly that
    value (the value of rank ``j`` in bin 0 with rank ``j + 1`` beyond it is the largest in bin
    0; so for the top bin), so the quantile is read to one bin however near the range's edge
    it lies (reading a value under the range as 0 had put the median of 9e-5 and 1.2e-4 at
    6e-5, not 1.05e-4). Without them, such a value is read as the range's edge."""
    lo, w = _band_edges()
    R, T, B = counts.shape
    cum = np.cumsum(counts, axis=2)
    total = cum[..., -1]
    edge_lo = np.full((R, T), BAND_RANGE[0]) if below is None else below
    edge_hi = np.full((R, T), BAND_RANGE[1]) if above is None else above

    def ranked(r):                                           # (R, T) ranks -> values
        k = np.argmax(cum > r[..., None], axis=2)            # the bin holding rank r
        under = np.where(k > 0, np.take_along_axis(cum, np.maximum(k - 1, 0)[..., None],
                                                   axis=2)[..., 0], 0)
        cnt = np.take_along_axis(counts, k[..., None], axis=2)[..., 0]
        with np.errstate(all="ignore"):
            frac = np.clip((r - under + 0.5) / cnt, 0.0, 1.0)
            val = 10.0 ** (lo + (k - 1 + frac) * w)
        if vmin is not None:
            val = np.clip(val, vmin, vmax)
        # outside the range: the largest value under it (the one a quantile inside the range
        # can lie above; any other there is below it, and so is the quantile), the smallest
        # at or over it
        val = np.where(k == 0, edge_lo, val)
        return np.where(k == B - 1, edge_hi, val)

    out = np.empty((R, len(qs), T))
    for i, q in enumerate(qs):
        h = q * np.maximum(total - 1, 0)
        j = np.floor(h)
        g = h - j
        v0 = ranked(j)
        v1 = ranked(np.minimum(j + 1, np.maximum(total - 1, 0)))
        with np.errstate(all="ignore"):
            val = np.where(g > 0, v0 + g * (v1 - v0), v0)
        val = np.where(val < BAND_RANGE[0], 0.0, val)
        val = np.where(val >= BAND_RANGE[1], np.nan, val)
        out[:, i, :] = np.where(total > 0, val, np.nan)
    return out


@dataclass(frozen=True, eq=False)
class Bands:
    """5/50/95 % bands over time: ``values`` (R, 3, T) for ``outputs`` at ``times_h``, in
    ``units`` (ng/mL for concentrations; occupancy a fraction; glutamate, plasticity schematic).
    Read from fixed-memory histograms (see :mod:`ketasim.population`): relative error at most
    0.51 % (of glutamate's rise above its baseline), within the values' exact range."""

    times_h: np.ndarray
    outputs: tuple
    quantiles: tuple
    values: np.ndarray
    units: dict

    def get(self, output: str) -> dict:
        """``{"p05": (T,), "p50": (T,), "p95": (T,)}`` of one output."""
        if output not in self.outputs:
            raise KetasimInputError(f"bands: no output {output!r}; have "
                                    + ", ".join(self.outputs))
        j = self.outputs.index(output)
        return {f"p{round(q * 100):02d}": self.values[j, i] for i, q in enumerate(self.quantiles)}

    def columns(self) -> dict:
        """Tidy columns: ``time_h``, then ``<output>_p05``, ``_p50``, ``_p95``."""
        cols = {"time_h": self.times_h}
        for o in self.outputs:
            for k, v in self.get(o).items():
                cols[f"{o}_{k}"] = v
        return cols

    def to_dataframe(self):
        import pandas as pd
        return pd.DataFrame(self.columns())


# ---------------------------------------------------------------------- results
class _Columns:
    """Column access shared by the population and sweep tables (``columns``: name -> array)."""

    _what = "table"

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.columns:
            same = _same_threshold(name, self.columns)
            if same is not None:      # time_above_occ_0.30: the column time_above_occ_0.3
                return self.columns[same]
            if isinstance(name, str) and f"{name}_p50" in self.columns:
                # a metric of n subjects per point is its percentiles ('cmax' had been
                # answered with 'cmax_p95', the nearest text)
                hint = (f" (did you mean '{name}_p50', the median over the subjects of a "
                        f"point? also '{name}_p05' and '{name}_p95')")
            else:
                hint = suggest(name, list(self.columns))
            raise KetasimInputError(f"{self._what}: no column {name!r}{hint}")
        return self.columns[name]

    def __contains__(self, name) -> bool:
        """``name in res``: whether ``res[name]`` is a column (``in`` had tried ``res[0]``
        and failed as "no column 0")."""
        return isinstance(name, str) and (name in self.columns
                                          or _same_threshold(name, self.columns) is not None)

    __iter__ = None     # not a sequence: iter(res) is a TypeError (the names: res.columns)

    def to_dict(self) -> dict:
        return dict(self.columns)

    def to_dataframe(self):
        """A pandas DataFrame, one row per subject or grid point (needs pandas)."""
        import pandas as pd
        return pd.DataFrame(self.columns)


@dataclass(frozen=True, eq=False)
class PopulationResult(_Columns):
    """Per-subject metrics of a population (frozen).

    ``columns``: column name -> (N,) array: ``subject``, the covariates and drawn parameters
    (``param_<NAME>``), then for each metric ``m``: ``m`` over the course and ``m_s<k>`` for
    session k. ``units``: column -> unit. ``session_start_h`` (S,). ``bands``: :class:`Bands`
    or None."""

    _what = "population"

    columns: dict
    units: dict
    session_start_h: np.ndarray
    bands: Bands | None
    metrics: tuple
    info: dict

    @property
    def n_subjects(self) -> int:
        return int(self.columns["subject"].shape[0])


@dataclass(frozen=True, eq=False)
class SweepResult(_Columns):
    """One row per grid point: the varied values, then the metrics (``m``, ``m_s<k>``; with
    ``n`` subjects per point ``m_p50``, ``m_p05``, ``m_p95``). ``units``: column -> unit."""

    _what = "sweep"

    columns: dict
    units: dict
    varied: tuple
    metrics: tuple
    info: dict

    def grid(self, metric: str) -> tuple:
        """For a two-name sweep: (values of name 1, values of name 2, metric (n1, n2))."""
        if len(self.varied) != 2:
            raise KetasimInputError(f"sweep: a grid needs two varied names, got {len(self.varied)}")
        # the rows are in grid order (the first name slowest), each axis in the order given;
        # the axes are returned sorted, and the metric with them
        ca, cb = (np.asarray(self.columns[v], dtype=np.float64) for v in self.varied)
        a, ia = np.unique(ca, return_inverse=True)
        b, ib = np.unique(cb, return_inverse=True)
        vals = np.asarray(self[metric], dtype=np.float64)
        if a.size * b.size != vals.size:
            raise KetasimInputError(f"sweep: the rows are not a full grid of {self.varied[0]} "
                                    f"x {self.varied[1]} (a value given twice?)")
        z = np.full((a.size, b.size), np.nan)
        z[ia.ravel(), ib.ravel()] = vals
        return a, b, z


# ---------------------------------------------------------------------- running chunks
def _progress_bar(total: int, progress, desc: str):
    if progress is False:
        return None
    if progress is None and not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency of the extras only
        return None
    return tqdm(total=total, desc=desc, unit="subj", file=sys.stderr, delay=1.0,
                dynamic_ncols=True, leave=False)


def _check_address(scheduler: str) -> None:
    """Refuse an address that names no host and port (a port not a number from 1 to 65535,
    a missing host, another protocol than tcp or tls), before trying to reach it: it had been
    reported as 'cannot reach ... within 5 s' after a failure inside Dask."""
    proto, _, rest = scheduler.partition("://") if "://" in scheduler else ("tcp", "", scheduler)
    host, _, port = rest.rpartition(":")
    expected = "expected tcp://HOST:PORT (a port from 1 to 65535) or local"
    if proto not in ("tcp", "tls"):
        raise KetasimInputError(f"scheduler: got {scheduler!r}: protocol {proto!r} is not "
                                f"supported; {expected}")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise KetasimInputError(f"scheduler: got {scheduler!r}, not a valid address; {expected}")


class _LostDaskTasks:
    """A filter on the ``asyncio`` logger dropping one kind of record: a task of Dask's own
    (its message names a ``distributed`` module) whose exception no one retrieved. A cluster
    ketasim closes on a Ctrl-C may leave one behind in this process's scheduler (a copy of the
    job to a worker the closing cluster has removed: a KeyError), which asyncio had printed as
    a traceback after ketasim's own two lines. Every other asyncio record passes."""

    @staticmethod
    def filter(record) -> bool:
        text = record.getMessage()
        if "never retrieved" not in text:
            return True
        if "distributed" in text:          # (a task: its coroutine is named)
            return False
        # (a bare future: its traceback's frames say whose it was)
        tb = record.exc_info[2] if record.exc_info else None
        while tb is not None:
            if "distributed" in tb.tb_frame.f_code.co_filename:
                return False
            tb = tb.tb_next
        return True


def _quiet_dask_logs() -> None:
    """Dask's own log lines (a lost connection's traceback, from ``distributed.client``, which
    Dask's configuration gives its own level) stay out of the terminal: ketasim says in one
    line what went wrong. Nor do Dask's tasks whose errors no one retrieved
    (:class:`_LostDaskTasks`)."""
    import logging

    for name in ["distributed", *[n for n in logging.root.manager.loggerDict
                                  if n.startswith("distributed.")]]:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    log = logging.getLogger("asyncio")
    if not any(isinstance(f, _LostDaskTasks) for f in log.filters):
        log.addFilter(_LostDaskTasks())


def _bounded_client(distributed, scheduler):
    """``distributed.Client(scheduler)``, given up on after SCHEDULER_TIMEOUT_S plus a margin
    in all: Dask's own timeout bounds the TCP connection only, and a listener that accepts it
    but is no scheduler (its dashboard port, say) had kept the command waiting for ever."""
    import threading

    box = {}

    def make():
        try:
            box["client"] = distributed.Client(scheduler, timeout=SCHEDULER_TIMEOUT_S)
        except BaseException as exc:       # noqa: BLE001 - raised again below
            box["error"] = exc

    t = threading.Thread(target=make, name="ketasim-dask-connect", daemon=True)
    t.start()
    t.join(2 * SCHEDULER_TIMEOUT_S + 5.0)
    if "error" in box:
        raise box["error"]
    if "client" not in box:
        raise KetasimInputError(f"scheduler: {scheduler} accepted a connection but no Dask "
                                f"scheduler answered within {2 * SCHEDULER_TIMEOUT_S + 5.0:g} "
                                "s; expected a scheduler's address (usually port 8786; 8787 "
                                "is its dashboard)")
    return box["client"]


_LOCAL_GUARD = ("a script that runs ketasim with scheduler='local' must do so under "
                "if __name__ == \"__main__\": (each worker process imports the script again)")


def _close_quietly(*things) -> None:
    """Close a client or cluster ketasim started, on the way out of an interrupted or failed
    run: its own complaints about the work it loses are not the user's news."""
    for thing in things:
        if thing is not None:
            try:
                thing.close()
            except Exception:       # noqa: BLE001 - already leaving with the first error
                pass


@contextlib.contextmanager
def _ctrl_c_held():
    """Hold back Ctrl-C (SIGINT) from this thread while a local cluster starts, and so from
    every thread and process started meanwhile: a blocked signal stays blocked in a new
    thread and across fork and exec. A worker process then never sees a terminal's Ctrl-C,
    not even while it still imports its modules (it had printed a KeyboardInterrupt
    traceback; once started it ignores the signal, :mod:`ketasim._dask_local`). A Ctrl-C
    pressed meanwhile is delivered here when the block ends, as the KeyboardInterrupt it is."""
    block = getattr(signal, "pthread_sigmask", None)
    if block is None:                      # (no POSIX signal masks: Windows)
        yield
        return
    # multiprocessing's resource tracker unblocks SIGINT in the thread that first starts it
    # (a thread of Dask's, whose later threads then start the workers): started here first
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    old = block(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        block(signal.SIG_SETMASK, old)


def _connect(scheduler):
    """(client, owned) for a scheduler address, ``"local"`` or a ``distributed.Client``."""
    try:
        import distributed
    except ImportError:
        raise KetasimInputError("scheduler: needs dask.distributed; install it with "
                                "pip install 'ketasim[distributed]'") from None
    if isinstance(scheduler, distributed.Client):
        if scheduler.status != "running":
            # (a closed one had raised a bare RuntimeError from inside Dask)
            raise KetasimInputError(f"scheduler: the Client given is {scheduler.status}; "
                                    "expected a running distributed.Client")
        return scheduler, False
    if not isinstance(scheduler, str) or not scheduler:
        raise KetasimInputError(f"scheduler: got {scheduler!r}, expected tcp://HOST:PORT or "
                                "local")
    import logging
    if scheduler == "local":
        # (each worker process ignores Ctrl-C, ketasim._dask_local: a terminal sends it to the
        # whole process group; this process alone stops, then stops them)
        import multiprocessing

        if getattr(multiprocessing.current_process(), "_inheriting", False):
            # a worker process starting up, which runs the user's script again (no
            # ``if __name__ == "__main__":``): stop here, in one line, not in a cluster of its own
            raise KetasimInputError(f"scheduler: local: {_LOCAL_GUARD}")
        with warnings.catch_warnings():
            # the scheduler's small HTTP server (health, metrics; no dashboard) on 127.0.0.1
            # takes another port when 8787 is taken (another cluster): not the user's news
            warnings.filterwarnings("ignore", message=r"Port \d+ is already in use")
            from distributed.deploy.spec import SpecCluster

            before = set(SpecCluster._instances)
            try:
                with _ctrl_c_held():
                    cluster = distributed.LocalCluster(processes=True, host="127.0.0.1",
                                                       dashboard_address=None,
                                                       silence_logs=logging.CRITICAL,
                                                       preload=["ketasim._dask_local"])
            except RuntimeError as exc:       # ("Nanny failed to start.")
                raise KetasimInputError(f"scheduler: local: its worker processes failed to "
                                        f"start ({exc}); {_LOCAL_GUARD}") from None
            except BaseException:
                # a Ctrl-C while it starts: close the half-started cluster here. Left to
                # Dask's exit hook, it had printed a traceback about the workers still
                # starting (AssertionError: Status.init).
                _quiet_dask_logs()
                for half in set(SpecCluster._instances) - before:
                    _close_quietly(half)
                    half.shutdown_on_close = False
                raise
        try:
            return distributed.Client(cluster), True
        except BaseException:
            _quiet_dask_logs()
            _close_quietly(cluster)
            raise
    if "://" not in scheduler and ":" not in scheduler:
        raise KetasimInputError(f"scheduler: got {scheduler!r}, expected tcp://HOST:PORT or "
                                "local")
    _check_address(scheduler)
    _quiet_dask_logs()
    try:
        client = _bounded_client(distributed, scheduler)
    except KetasimInputError:     # (its own message: a listener that is no scheduler)
        raise
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        # (TypeError: a protocol this installation cannot speak, ucx:// without ucx)
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise KetasimInputError(f"scheduler: cannot reach {scheduler} (tried for up to "
                                f"{SCHEDULER_TIMEOUT_S:g} s: {why})") from None
    except Exception as exc:       # noqa: BLE001 - MemoryError, struct.error, ...
        # a listener that answered with something else than Dask's handshake (an SSH banner,
        # an HTTP reply: its first bytes read as a frame length of exabytes) had been "out of
        # memory; use a coarser --step" or an internal error
        raise KetasimInputError(f"scheduler: {scheduler} answered, but not as a Dask scheduler "
                                f"({type(exc).__name__}); expected a scheduler's address "
                                "(usually port 8786; 8787 is its dashboard)") from None
    # a scheduler without workers accepts work and never runs it: wait a while for one
    # (workers may still be starting), then stop with what to do
    if not client.scheduler_info().get("workers"):
        print(f"ketasim: no worker has joined {scheduler} yet; waiting up to "
              f"{WORKER_WAIT_S:g} s", file=sys.stderr)
        try:
            client.wait_for_workers(1, timeout=WORKER_WAIT_S)
        except (TimeoutError, OSError):
            client.close()
            raise KetasimInputError(
                f"scheduler: no worker joined {scheduler} within {WORKER_WAIT_S:g} s; start "
                f"workers with: dask worker {scheduler}") from None
    return client, True


def _worker_import_error(exc):
    """The one-line error for a worker that cannot import ketasim, or None. (Dask hands back
    data or a task a worker could not even load as a plain Exception naming the import
    error.)"""
    text = str(exc)
    if type(exc) is Exception and any(w in text for w in ("ModuleNotFoundError", "ImportError",
                                                          "No module named")):
        return KetasimInputError(f"scheduler: a worker failed ({text.splitlines()[0]}); is the "
                                 "same ketasim installed on every worker?")
    return None


# Dask's exceptions for work a cluster lost (names: their modules move between versions)
_LOST_WORK = ("CancelledError", "FutureCancelledError", "KilledWorker")


def _execute(jobs, chunk_size: int, scheduler, progress, desc: str, counts=None):
    """Run every job's rows in chunks; yields (job index, a, b, chunk result), any order.
    ``counts``: the band histograms of a one-job run, counted into in place by a local run
    (a chunk's result then has no counts of its own)."""
    total = sum(j.n_rows for j in jobs)
    bar = _progress_bar(total, progress, desc)
    try:
        if scheduler is None:
            for ji, job in enumerate(jobs):
                a, size = 0, min(chunk_size, _FIRST_CHUNK)
                while a < job.n_rows:
                    b = min(job.n_rows, a + size)
                    t0 = time.perf_counter()
                    # (three arguments without bands: the signature a Dask worker and a
                    # caller's stand-in for _run_chunk take)
                    res = (_run_chunk(job, a, b) if counts is None else
                           _run_chunk(job, a, b, counts))
                    dt = max(time.perf_counter() - t0, 1e-6)
                    yield ji, a, b, res
                    if bar is not None:
                        bar.update(b - a)
                    # aim at ~_TARGET_S per chunk, growing at most 4x; chunks never change
                    # a result, only how often progress is shown and Ctrl-C is seen
                    size = int(min(chunk_size, 4 * (b - a), max(1, (b - a) * _TARGET_S / dt)))
                    a = b
        else:
            client, owned = _connect(scheduler)
            futures = []
            try:
                from distributed import as_completed

                keys = {}
                for ji, job in enumerate(jobs):
                    try:
                        jf = client.scatter(job, broadcast=True)
                    except Exception as exc:
                        err = _worker_import_error(exc)
                        if err is not None:
                            raise err from None
                        raise
                    for a in range(0, job.n_rows, chunk_size):
                        b = min(job.n_rows, a + chunk_size)
                        f = client.submit(_run_chunk, jf, a, b, pure=False)
                        futures.append(f)
                        keys[f.key] = (ji, a, b)
                for f in as_completed(futures):
                    ji, a, b = keys[f.key]
                    try:
                        res = f.result()
                    except KetasimInputError:
                        raise
                    except (ImportError, AttributeError, TypeError) as exc:
                        # a worker without ketasim, or with another version of it
                        raise KetasimInputError(
                            f"scheduler: a worker failed ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}); is the same "
                            "ketasim installed on every worker?") from None
                    except Exception as exc:
                        err = _worker_import_error(exc)
                        if err is not None:
                            raise err from None
                        # (a closed stream may reach a result before the client marks itself
                        # disconnected: under load it had been an internal error)
                        if client.status != "running" or isinstance(exc, OSError):
                            raise KetasimInputError(
                                f"scheduler: lost the connection to the scheduler "
                                f"{scheduler if isinstance(scheduler, str) else ''} during "
                                "the run (it stopped, or the network failed); nothing was "
                                "written: run it again when the scheduler is back") from None
                        # the cluster lost work: a worker died (with the data scattered to
                        # it) or killed workers repeatedly
                        if type(exc).__name__ in _LOST_WORK:
                            raise KetasimInputError(
                                f"scheduler: the cluster lost part of the run "
                                f"({type(exc).__name__}: a worker died or was restarted, and "
                                "its data with it, even when a nanny restarts it); run it "
                                "again, with more workers or more memory per worker, or with "
                                "--scheduler local") \
                                from None
                        raise
                    yield ji, a, b, res
                    if bar is not None:
                        bar.update(b - a)
            finally:
                if owned and sys.exc_info()[0] is not None:
                    # stopped (Ctrl-C, an error): the complaints of a cluster ketasim started
                    # about the work it loses now are not the user's news
                    _quiet_dask_logs()
                for f in futures:
                    f.cancel()
                if owned:
                    cluster = getattr(client, "cluster", None)
                    if sys.exc_info()[0] is not None:
                        _close_quietly(client, cluster)
                    else:
                        client.close()
                        if cluster is not None:
                            cluster.close()
    finally:
        if bar is not None:
            bar.close()


METRICS_ADVICE = ("expected fewer subjects (n, --n) or fewer metrics (the metrics of every "
                  "subject are held until the table is made)")
SWEEP_ADVICE = ("expected fewer grid points, fewer subjects per point (n, --n) or fewer "
                "metrics (the metrics of every subject are held until the table is made)")


def _values_per_subject(metrics, doses) -> int:
    """The metric values kept per subject: each metric for every session and the course."""
    from .engine import session_starts
    return max(1, len(metrics)) * (session_starts(doses).size + 1)


def _check_metrics_memory(values: int, what: str, advice: str = METRICS_ADVICE) -> None:
    """Refuse, before anything runs, a run whose per-subject metrics cannot be held."""
    from .simulate import check_memory
    check_memory(values, what, advice=advice)


class _Collector:
    """Places chunk results into full-length columns (allocated at the first chunk)."""

    def __init__(self, n_rows: int, what: str = "subjects", advice: str = METRICS_ADVICE):
        self.n = n_rows
        self.what = what
        self.advice = advice
        self.cols: dict | None = None
        self.session_start_h = None

    def add(self, a: int, b: int, res: dict):
        m = res["metrics"]
        if self.cols is None:
            from .simulate import check_memory
            check_memory(self.n * len(m), f"metrics of {self.n:,} {self.what} x {len(m)} "
                         "values", advice=self.advice)
            self.cols = {k: np.full(self.n, np.nan) for k in m}
            self.session_start_h = res["session_start_h"]
        for k, v in m.items():
            self.cols[k][a:b] = v


# ---------------------------------------------------------------------- inputs
def _check_int(name, v, lo):
    if not is_whole(v) or v < lo:
        raise KetasimInputError(f"{name}: got {v!r}, expected a whole number >= {lo}")
    return int(v)


def _check_progress(progress):
    """None (a bar when stderr is a terminal), or True/False (0/1, a NumPy bool): 'no', 0 or
    np.False_ had shown the bar, which only ``progress is False`` turned off."""
    return None if progress is None else check_flag("progress", progress)


def _check_params(model, params) -> dict:
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise KetasimInputError(f"params: got {type(params).__name__}, expected a dict of "
                                "parameter name -> typical value")
    out = {}
    for k, v in params.items():
        if k in ("WT", "weight_kg") and k not in model.parameters:
            raise KetasimInputError(f"params: {k!r} is the body weight; give it as weight_kg= "
                                    "(--weight), a number or one per subject")
        if isinstance(v, np.ndarray) and v.ndim == 0:
            v = v[()]                   # a 0-d array: its number, as simulate() takes it
        if k not in model.parameters and k in model.derived:
            raise KetasimInputError(f"params: {k!r} is derived (computed from parameters: "
                                    f"{k} = {model.derived[k].text}), so it cannot be set; "
                                    "expected a model parameter "
                                    f"({', '.join(model.parameters)})")
        if k not in model.parameters:
            raise KetasimInputError(f"params: unknown parameter {k!r}"
                                    f"{suggest(str(k), model.parameters)}")
        if not is_real(v) or not math.isfinite(v):
            raise KetasimInputError(f"params[{k!r}]: got {v!r}, expected a finite number (the "
                                    "typical value; subjects vary around it)")
        out[k] = float(v)
    return out


def _doses_for(spec, weight_kg, what="population", **course):
    from .courses import resolve_doses
    from .dosing import Doses

    d = spec if isinstance(spec, Doses) and not course else resolve_doses(
        spec, weight_kg=weight_kg, **course)
    d = d.one_table(f"a {what}")
    if d.covariates:
        # a covariate column is one subject's value; virtual subjects draw or are given theirs
        cols = ", ".join(sorted(d.covariates))
        raise KetasimInputError(
            f"doses: {d.source or 'the dose table'} has covariate columns ({cols}); a {what} "
            "sets each virtual subject's values itself: leave out the columns and give them as "
            + ("weight_kg= / params= / vary= (--weight, --param, --vary)" if what == "sweep"
               else "weight_kg= / covariates= / params= (--weight, --covariates, --param)"))
    return d


def _horizon(doses) -> float:
    """The default horizon of a run of these doses, refused by name where exact metrics
    cannot reach it (it had been refused as "horizon_h", which nobody had given)."""
    from .engine import checked_default_horizon_h

    return checked_default_horizon_h(doses)


def _band_setup(model, doses, bands, band_outputs, horizon):
    """Band times (up to ``horizon``, h: the run's end, as its metrics') and outputs."""
    from .result import PD_OUTPUTS
    from .simulate import _coerce_times

    if isinstance(bands, np.ndarray) and bands.ndim == 0:
        bands = bands[()]           # a 0-d array is its number, as elsewhere (not one time)
    if isinstance(bands, np.bool_):   # np.True_ is True (it had been read as a band time)
        bands = bool(bands)
    if bands is None or bands is False:
        # (as --band-outputs without --bands or --plot; an empty list asks for nothing)
        if band_outputs is not None and not (isinstance(band_outputs, (list, tuple))
                                             and len(band_outputs) == 0):
            raise KetasimInputError(f"band_outputs: got {band_outputs!r} without bands; "
                                    "expected bands=True (or a step in h) with it, or no "
                                    "band_outputs")
        return None, ()
    if band_outputs is None:    # as the CLI: the main concentration, and the occupancy where
        from .plotting import main_analyte  # the model has one

        band_outputs = (main_analyte(model),) + (("occupancy",) if model.has_occupancy else ())
    try:
        outs = (band_outputs,) if isinstance(band_outputs, str) else tuple(band_outputs)
    except TypeError:
        raise KetasimInputError(f"band_outputs: got {band_outputs!r}, expected an output name "
                                "or a list of names") from None
    if not outs:
        raise KetasimInputError("band_outputs: expected at least one output name")
    outs = tuple(dict.fromkeys(outs))        # an output named twice has one band
    allowed = list(model.concentration_names) + [o for o in PD_OUTPUTS if o not in
                                                  model.concentration_names]
    for o in outs:
        if o not in allowed:
            raise KetasimInputError(f"band_outputs: model {model.name!r} has no output {o!r}"
                                    f"{suggest(o, allowed)}; expected one of its "
                                    "concentrations (" + ", ".join(model.concentration_names)
                                    + ") or occupancy, glutamate, plasticity where it has them")
    from .errors import KetasimWarning
    from .simulate import simulate
    try:                                    # checks the PD outputs the model has
        with warnings.catch_warnings():     # (the doses' routes: said by population())
            warnings.simplefilter("ignore", KetasimWarning)
            simulate(model, doses, [0.0], outputs=list(outs))
    except KetasimInputError as exc:
        if not str(exc).startswith("outputs: "):
            raise
        raise KetasimInputError(f"band_outputs: {str(exc).removeprefix('outputs: ')}") from None
    if bands is True:
        times = default_band_times(doses, horizon)
    elif is_real(bands):          # a step (a NumPy number too), not one band time
        if not (math.isfinite(bands) and bands > 0):
            raise KetasimInputError(f"bands: got a step of {bands!r} h, expected hours > 0")
        from .simulate import time_grid
        try:
            times = time_grid(horizon, float(bands))
        except KetasimInputError as exc:       # its "step" is this step
            raise KetasimInputError(f"bands: got a step of {bands:g} h: "
                                    f"{str(exc).removeprefix('step: ')}") from None
    else:
        try:
            times, _ = _coerce_times(bands)
        except KetasimInputError as exc:     # its "times" are these band times
            raise KetasimInputError("bands: " + str(exc).removeprefix("times: ").replace(
                "expected an array of hours", "expected True, a step in hours or an array of "
                "band times in hours")) from None
    from .simulate import check_memory
    # the run's histograms and a chunk's own (_band_counts, on a Dask worker), or the run's
    # and their running sums while the quantiles are read: two and a little; three counted
    # (named as the argument that sets the band times: --band-step on the command line)
    check_memory(3 * len(outs) * times.size * BAND_BINS,
                 f"bands: band histograms: {len(outs)} output{'s' if len(outs) != 1 else ''} x "
                 f"{times.size:,} times x {BAND_BINS} bins, three copies while a chunk is "
                 "counted", bytes_per_value=8,
                 advice="use a coarser step, a shorter horizon or fewer band outputs")
    _ = PD_OUTPUTS
    return times, outs


def default_band_times(doses, horizon_h: float) -> np.ndarray:
    """A time grid for bands: every 4 h over the course, and every 5 min for the 8 h after
    each session start (so the peaks are resolved), hours."""
    from .dosing import expand

    starts = np.unique(expand(doses).time_h)
    fine = (starts[:, None] + np.arange(0, 8.0, 1 / 12)[None, :]).ravel()
    t = np.unique(np.round(np.concatenate([np.arange(0.0, horizon_h, 4.0), fine,
                                           [horizon_h]]), 9))
    return t[(t >= 0) & (t <= horizon_h)]


def _covariate_arrays(model, n, weight_kg, covariates):
    """(row_weight or None, scalar weight, row covariates) for a population of n."""
    from .variability import AGE_LIMITS_Y, AGE_WORDS, COVARIATE_NAMES

    row_cov = {}
    if covariates is not None and hasattr(covariates, "columns") and hasattr(covariates,
                                                                             "to_numpy"):
        covariates = {str(c): covariates[c].to_numpy() for c in covariates.columns}  # a frame
    if covariates is not None and not isinstance(covariates, Mapping):
        raise KetasimInputError(f"covariates: got {type(covariates).__name__}, expected a dict "
                                "(or DataFrame) of column name -> one value per subject")
    cov = dict(covariates or {})
    if "subject" in cov:
        # rows matched to subjects by a subject column, as a --covariates table's: the
        # subjects are 0 .. n-1, as in the result's subject column
        if not set(cov) - {"subject"}:
            raise KetasimInputError("covariates: no covariate column (only subject); expected "
                                    "weight_kg and/or " + ", ".join(COVARIATE_NAMES))
        order = subject_order(cov.pop("subject"), n, "covariates['subject']")
        cov = {k: _per_subject(v, n, f"covariates[{k!r}]")[order] for k, v in cov.items()}
    if "weight_kg" in cov:
        if np.ndim(weight_kg) > 0 or weight_kg != 70.0:
            raise KetasimInputError("covariates: weight_kg is given twice (covariates and "
                                    "weight_kg)")
        weight_kg = cov.pop("weight_kg")
    for k, v in cov.items():
        if k not in COVARIATE_NAMES:
            raise KetasimInputError(f"covariates: unknown column {k!r}"
                                    f"{suggest(str(k), COVARIATE_NAMES)}; expected weight_kg or "
                                    + ", ".join(COVARIATE_NAMES))
        a = _per_subject(v, n, f"covariates[{k!r}]")
        var = model.variability
        if var is None or k not in var.covariates:
            raise KetasimInputError(f"covariates: model {model.name!r} does not use {k!r} (its "
                                    "[variability] covariates name none)")
        if k == "age_y" and np.any(bad := (a < AGE_LIMITS_Y[0]) | (a > AGE_LIMITS_Y[1])):
            raise KetasimInputError(f"covariates['age_y']: got {a[bad][0]:g}, expected "
                                    f"{AGE_WORDS}")
        if k in var.covariate_range:
            lo, hi = var.covariate_range[k]
            out = (a < lo) | (a > hi)
            if np.any(out):
                i = int(np.argmax(out))
                src = "--age or --covariates" if k == "age_y" else "--covariates"
                raise KetasimInputError(
                    f"covariates[{k!r}] ({src}): subject {i} (from 0, as in the subject "
                    f"column): got {a[i]:.15g}, outside {lo:g}-"
                    f"{hi:g}, the range of the population model {model.name!r} was fitted to "
                    "([variability] covariate_range: its covariate effect is not known "
                    "beyond); expected values within it")
        row_cov[k] = a
    if np.ndim(weight_kg) > 0:
        w = _per_subject(weight_kg, n, "weight_kg")
        if np.any(w <= 0):
            raise KetasimInputError(f"weight_kg: got {w[w <= 0][0]:g}, expected kg > 0")
        model.check_weight(w)      # (here, once: the chunks' runs say nothing)
        return w, 70.0, row_cov
    w = _scalar_weight(weight_kg, "a body weight in kg > 0")
    model.check_weight(w)
    return None, w, row_cov


def subject_order(sid, n: int, what: str) -> np.ndarray:
    """The order that puts the rows of a covariates table with a subject column (IDs 0 ..
    n-1, each once, any order) in subject order; ``what`` heads the message."""
    raw = np.asarray(sid)
    if raw.dtype.kind not in "iuf" or raw.shape != (n,):
        raise KetasimInputError(f"{what}: got {sid!r}, expected the subject IDs 0 to {n - 1} "
                                "(one per row)")
    sid = raw.astype(np.float64)
    if not np.array_equal(np.sort(sid), np.arange(n)):
        bad = next((v for v in sid if not (np.isfinite(v) and v == int(v) and 0 <= v < n)),
                   None)
        why = (f"got {bad:g}" if bad is not None else "a subject appears twice")
        raise KetasimInputError(f"{what}: {why}; expected each of the subjects 0 to {n - 1} "
                                "once")
    return np.argsort(sid)


def _scalar_weight(w, expected: str) -> float:
    """One body weight (kg): a finite number > 0 (a 0-d array is its scalar)."""
    if isinstance(w, np.ndarray) and w.ndim == 0:
        w = w[()]
    if not (is_real(w) and math.isfinite(w) and w > 0):
        raise KetasimInputError(f"weight_kg: got {w!r}, expected {expected}")
    return float(w)


def _per_subject(v, n, what):
    raw = np.asarray(v)
    if raw.dtype.kind not in "iuf":      # bools, text or objects are not numbers here
        raise KetasimInputError(f"{what}: got {v!r}, expected numbers")
    a = raw.astype(np.float64)
    if a.ndim == 0:
        a = np.full(n, float(a))
    if a.shape != (n,):
        raise KetasimInputError(f"{what}: expected {n} values (one per subject, a 1-D array), "
                                f"got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise KetasimInputError(f"{what}: got {a[~np.isfinite(a)][0]!r}, expected finite numbers")
    return a


# ---------------------------------------------------------------------- population
def _variability_text(model) -> str:
    """What a run's header says of the drawn variability: its source, or what was drawn when
    the model file names no source."""
    v = model.variability
    if v.source:
        return v.source
    return "model file's [variability] (no source given): " + ", ".join(
        f"{k} CV {c:g} %" for k, c in v.cv_pct.items())


def population(model, doses, n: int, seed: int = 0, *, metrics=None, bands=None,
               band_outputs=None, chunk_size: int = DEFAULT_CHUNK,
               scheduler=None, weight_kg=70.0, covariates=None, params=None,
               variability: bool = True, analyte: str | None = None,
               horizon_h: float | None = None, threads: int | None = None,
               progress=None, keep_parameters: bool = True) -> PopulationResult:
    """Simulate ``n`` virtual patients and return per-subject metrics (and bands over time).

    Parameters
    ----------
    model : Model or str
        A model with a ``[variability]`` section (all presets have one).
    doses : Doses, list of dict, DataFrame, or str
        A dose table, dose records (or a pandas DataFrame of them), CSV path or course name
        (``standard-iv``, ``spravato``); a course is built for ``weight_kg`` (a per-subject
        weight with a mg/kg course is refused).
    n, seed : int
        Subjects ``0 .. n-1``; subject ``i``'s parameters depend only on ``(seed, i)``.
    metrics : sequence of str, optional
        Names of :data:`ketasim.engine.METRICS` (``time_above_occ_<X>`` for any threshold).
        Default: :data:`DEFAULT_METRICS` without those the model cannot give (a model without
        occupancy: no occupancy metrics). A metric named that the model cannot give is
        refused.
    bands : None, True, float or array
        5/50/95 % bands over time: ``True`` for a default grid up to the horizon (every 4 h,
        every 5 min for 8 h after each session), a step in hours (also up to the horizon),
        or the times (h).
    band_outputs : sequence of str, optional
        Outputs of the bands (concentrations in ng/mL; ``occupancy``; schematic outputs).
        Default: ``plasma`` (or the model's first concentration) and ``occupancy`` where the
        model has it.
    chunk_size : int
        Largest number of subjects simulated at once (bounds the memory). Never changes a
        result.
    scheduler : None, ``"local"``, ``"tcp://HOST:PORT"`` or a ``distributed.Client``
        Run the chunks on a Dask cluster; identical results.
    weight_kg : float or array (n,)
        Body weight, kg (an array gives each subject's weight).
    covariates : dict or DataFrame, optional
        Per-subject covariate columns (n,): ``weight_kg``, ``age_y`` (used where the model's
        ``[variability]`` maps it to a parameter, e.g. esketamine-nasal's ``AGE``), and
        optionally ``subject``: the subject (0 .. n-1, each once) of each row, as in a
        ``--covariates`` table; without it row i is subject i.
    params : dict, optional
        Typical values replacing the model's (subjects vary around them).
    variability : bool
        False: every subject has the typical values (covariates still apply).
    analyte : str, optional
        The concentration the PK metrics (``cmax``, ``tmax``, ``auc``, ``trough``,
        ``time_above_conc_<X>``) describe (default ``plasma``, or the model's first
        concentration).
    horizon_h : float, optional
        End of the course, h (default: the last dose start + 28 days): the metrics' and the
        bands' (``bands=True`` or a step). Sessions starting at or after it have no metrics:
        a :class:`~ketasim.errors.KetasimWarning` says how many.
    threads : int, optional
        Threads for this call (default: one per core); never changes a result.
    progress : None, bool
        A progress bar on stderr: None = when stderr is a terminal.
    keep_parameters : bool
        Keep each subject's drawn parameters as ``param_<NAME>`` columns (default True; up
        to 2,000,000 subjects).

    Returns
    -------
    PopulationResult
        ``res["cmax"]`` (n,) over the course, ``res["cmax_s1"]`` session 1, ...;
        ``res.units``, ``res.to_dataframe()``; ``res.bands`` the 5/50/95 % over time (or None).
    """
    from .engine import default_analyte
    from .modelfile import load_model
    from .variability import check_seed

    model = load_model(model)
    n = _check_int("n", n, 1)
    seed = check_seed(seed)
    chunk_size = _check_int("chunk_size", chunk_size, 1)
    variability = check_flag("variability", variability)
    keep_parameters = check_flag("keep_parameters", keep_parameters)
    progress = _check_progress(progress)
    metrics = model_metrics(model, metrics)
    typical = _check_params(model, params)
    row_weight, w0, row_cov = _covariate_arrays(model, n, weight_kg, covariates)
    for col in row_cov:     # a parameter set in two places is an error, never one of them
        pname = model.variability.covariates[col]
        if pname in typical:
            src = "--age or --covariates" if col == "age_y" else "--covariates"
            raise KetasimInputError(
                f"params[{pname!r}] (--param {pname}): got {typical[pname]:g}, but "
                f"covariates[{col!r}] ({src}) gives each subject's {pname}; give it in one "
                "place")
    if not row_cov:       # (a covariate column sets its parameter subject by subject)
        _check_fixed(model, typical, w0, "typical values")
    from .courses import check_course_weights
    check_course_weights(doses, row_weight is not None)
    spec = doses
    doses = _doses_for(doses, w0)
    from .engine import warn_dose_routes
    warn_dose_routes(model, doses, "population")
    horizon = _horizon(doses) if horizon_h is None else positive_hours("horizon_h", horizon_h)
    if horizon_h is not None:
        from .engine import warn_after_horizon
        warn_after_horizon(doses, horizon)
    band_times, band_outs = _band_setup(model, doses, bands, band_outputs, horizon)
    job = _Job(model=model, doses=doses, metrics=metrics, analyte=analyte, horizon_h=horizon,
               typical={k: np.array([v]) for k, v in typical.items()},
               weight=np.array([w0]), n_per_point=n, seed=seed,
               use_variability=bool(variability), row_weight=row_weight, row_cov=row_cov,
               band_times=band_times, band_outputs=band_outs, threads=threads)
    per = _values_per_subject(metrics, doses)
    _check_metrics_memory(n * per, f"metrics of {n:,} subjects x {per:,} values (the "
                          f"{len(metrics)} metrics of each session and of the course)")
    col = _Collector(n)
    counts = (np.zeros(len(band_outs) * band_times.size * BAND_BINS, dtype=np.int64)
              if band_times is not None else None)
    if counts is not None:
        bmin = np.full((len(band_outs), band_times.size), np.inf)
        bmax = np.full((len(band_outs), band_times.size), -np.inf)
        bbelow = np.full((len(band_outs), band_times.size), -np.inf)
        babove = np.full((len(band_outs), band_times.size), np.inf)
    for _, a, b, res in _execute([job], chunk_size, scheduler, progress, "population",
                                 counts):
        col.add(a, b, res)
        if counts is not None:
            idx, c, lo_, hi_, below_, above_ = res["hist"]
            if idx is not None:         # (a Dask worker's; a local chunk counted in place)
                counts[idx] += c
            bmin = np.minimum(bmin, lo_)
            bmax = np.maximum(bmax, hi_)
            bbelow = np.maximum(bbelow, below_)
            babove = np.minimum(babove, above_)
    columns = {"subject": np.arange(n, dtype=np.int64)}
    units = {"subject": ""}
    if row_weight is not None:
        columns["weight_kg"], units["weight_kg"] = row_weight, "kg"
    for k, v in row_cov.items():
        columns[k], units[k] = v, "years" if k == "age_y" else ""
    note = None
    if keep_parameters and variability and model.variability:
        drawn, _ = job.row_inputs(0, n) if n <= MAX_PARAM_COLUMNS_N else ({}, None)
        if n > MAX_PARAM_COLUMNS_N and model.variability.names:
            note = (f"the drawn parameters (param_*) are not in the table above "
                    f"{MAX_PARAM_COLUMNS_N:,} subjects (they would be drawn again, all at once); "
                    "the same seed draws them in smaller runs (the first k subjects of a run "
                    "are the k subjects of a run of k)")
        from .modelfile import parameter_units
        from .plotting import uses_weight
        punits = parameter_units(model)
        # the value drawn at the model's reference weight (a model without a weight effect,
        # esketamine-nasal, had its values said to be "at 70 kg" too)
        at = f" at {model.reference_weight_kg:g} kg" if uses_weight(model) else ""
        for k in model.variability.names:
            if k in drawn:
                columns[f"param_{k}"] = drawn[k]
                units[f"param_{k}"] = f"{punits.get(k, 'model unit')}{at}"
    for k in _order_columns(list(col.cols), metrics):
        columns[k] = col.cols[k]
        units[k] = metric_unit(k)
    band = None
    if counts is not None:
        vals = _quantiles_from_counts(counts.reshape(len(band_outs), band_times.size, BAND_BINS),
                                      vmin=bmin, vmax=bmax, below=bbelow, above=babove)
        for j, o in enumerate(band_outs):
            vals[j] += BAND_OFFSET.get(o, 0.0)
        band = Bands(times_h=band_times, outputs=band_outs, quantiles=QUANTILES, values=vals,
                     units={o: _output_unit(o) for o in band_outs})
    info = {"model": model.name, "n": n, "seed": seed,
            "variability": (_variability_text(model) if (variability and model.variability)
                            else "none"),
            # (a course by its name, as a sweep's; the analyte the metrics describe: a model
            # without plasma had been said to have its plasma described)
            "doses": spec if isinstance(spec, str) else getattr(doses, "source", ""),
            "analyte": analyte or default_analyte(model)}
    if note:
        info["note"] = note
    return PopulationResult(columns=columns, units=units, session_start_h=col.session_start_h,
                            bands=band, metrics=metrics, info=info)


def _output_unit(name: str) -> str:
    from .result import PD_OUTPUTS
    if name.startswith("occupancy"):
        return "fraction (model-predicted)"
    if name in PD_OUTPUTS:
        return "schematic (relative)"
    return "ng/mL"


# ---------------------------------------------------------------------- sweep
def parse_vary(text: str) -> tuple:
    """``NAME=LO:HI:N`` (linear) or ``NAME=log:LO:HI:N`` (log spacing) -> (name, values).

    A bad text is refused as ``vary``'s (the argument of :func:`sweep`; the command line names
    it as its option, ``--vary``)."""
    if not isinstance(text, str) or "=" not in text:
        raise KetasimInputError(f"vary: got {text!r}, expected NAME=LO:HI:N or "
                                "NAME=log:LO:HI:N")
    name, spec = (s.strip() for s in text.split("=", 1))
    parts = spec.split(":")
    log = bool(parts) and parts[0].strip().lower() == "log"
    if log:
        parts = parts[1:]
    if len(parts) != 3:
        raise KetasimInputError(f"vary {name}: got {spec!r}, expected LO:HI:N or log:LO:HI:N")
    try:
        lo, hi = to_float(parts[0]), to_float(parts[1])
        k = to_int(parts[2])
    except ValueError:
        raise KetasimInputError(f"vary {name}: got {spec!r}, expected numbers LO:HI and a "
                                "whole number of points N") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or k < 1 or (k == 1 and lo != hi):
        raise KetasimInputError(f"vary {name}: got {spec!r}, expected finite LO, HI and "
                                "N >= 1 (N = 1 needs LO = HI)")
    if log and (lo <= 0 or hi <= 0):
        raise KetasimInputError(f"vary {name}: log spacing needs LO and HI > 0, got {spec!r}")
    if k > MAX_GRID_POINTS:       # before any array of that size exists
        raise KetasimInputError(f"vary {name}: {k:,} points, expected at most "
                                f"{MAX_GRID_POINTS:,} in a grid")
    values = np.geomspace(lo, hi, k) if log else np.linspace(lo, hi, k)
    return name, values


def _varied_name(exc, course) -> str:
    """A course builder's message about one of its arguments, led by the name the sweep
    varies instead (``maintenance_days``, not the builder's ``maintenance_every_days``;
    ``dose_mg``, not ``dose``): the names were the builder's, which a sweep never shows."""
    from .courses import COURSE_PARAMETERS

    text = str(exc)
    names = {v: k for k, v in COURSE_PARAMETERS.get(course, {}).items() if k != v}
    if course == "spravato":
        names["dose"] = "dose_mg"
    for own, varied in names.items():
        if text.startswith(f"{own}: "):
            return f"{varied}: " + text[len(own) + 2:]
    return text


def sweep(model, doses, vary, *, metrics=None, n: int | None = None,
          seed: int = 0, params=None, weight_kg: float | None = None,
          chunk_size: int = DEFAULT_CHUNK, scheduler=None, analyte: str | None = None,
          horizon_h: float | None = None, threads: int | None = None,
          progress=None, _doses_field: str = "doses") -> SweepResult:
    """A full grid over model parameters, ``weight_kg`` and course parameters.

    Parameters
    ----------
    model, doses, metrics
        As for :func:`population`; course parameters need ``doses`` to name a course
        (:data:`ketasim.courses.COURSE_PARAMETERS`: ``dose_mg_per_kg``, ``maintenance_days``,
        ``months``, ``infusion_min`` for standard-iv; ``dose_mg``, ``months`` for spravato).
    vary : dict or sequence
        ``{name: values}`` or ``[(name, values), ...]`` or ``["NAME=LO:HI:N", ...]`` (one
        pair or text alone is one axis); the grid is their product, the first name varying
        slowest.
    n : int, optional
        Subjects per grid point drawn from the model's variability (the same subjects ``0 ..
        n-1`` at every point: differences between points are not sampling noise); metrics are
        then summarised as ``<metric>_p50``, ``_p05``, ``_p95``. Without ``n``: one typical
        subject per point, columns ``<metric>`` and ``<metric>_s<k>``.
    horizon_h : float, optional
        End of every course, h (default: each dose table's last dose + 28 days). Sessions
        starting at or after it have no metrics: a :class:`~ketasim.errors.KetasimWarning`
        says how many (for the first dose table of the grid where some do).
    weight_kg : float, optional
        One body weight, kg, for every point (default 70); refused when ``weight_kg`` is also
        varied.
    seed : int
        Seed of the ``n`` subjects' parameters (as for :func:`population`).
    params : dict, optional
        Typical values replacing the model's at every point (a varied name is set by ``vary``).
    chunk_size, scheduler, analyte, threads, progress
        As for :func:`population`.

    Returns
    -------
    SweepResult
        One row per grid point: ``res.to_dataframe()``, ``res["cmax"]`` (points,),
        ``res.grid("cmax")`` (for two varied names: the values of each, sorted, and the
        metric as an array (n1, n2)), ``res.units``.

    Points sharing a dose table run as one batch; course-parameter points are grouped by their
    dose table.
    """
    from .courses import COURSE_PARAMETERS, COURSES
    from .modelfile import load_model
    from .variability import check_seed

    model = load_model(model)
    metrics = model_metrics(model, metrics)
    seed = check_seed(seed)
    chunk_size = _check_int("chunk_size", chunk_size, 1)
    progress = _check_progress(progress)
    if n is not None:
        n = _check_int("n", n, 1)
    weight_given = weight_kg is not None
    weight_kg = _scalar_weight(70.0 if weight_kg is None else weight_kg,
                               "one body weight in kg > 0 (to vary it: vary weight_kg)")
    if weight_given:
        model.check_weight(weight_kg)       # (here, once: the checks and runs say nothing)
    base = _check_params(model, params)
    if isinstance(vary, str):          # one NAME=LO:HI:N
        vary = [vary]
    elif (isinstance(vary, tuple) and len(vary) == 2 and isinstance(vary[0], str)
          and not isinstance(vary[1], str)):
        vary = [vary]                  # one (name, values) pair
    if hasattr(vary, "to_numpy") and not isinstance(vary, (Mapping, np.ndarray)):
        # a pandas DataFrame or Series: its columns paired row by row, or a product of them?
        # (it had ended in pandas' "truth value ... is ambiguous")
        raise KetasimInputError(f"vary: got a {type(vary).__name__}, expected {{name: values}}"
                                ", [(name, values), ...] or [\"NAME=LO:HI:N\", ...] (the grid "
                                "is the product of the values; for a frame's columns: "
                                "{c: frame[c].unique() for c in frame})")
    if isinstance(vary, Mapping):
        items = list(vary.items())
    else:
        try:
            items = [parse_vary(v) if isinstance(v, str) else v
                     for v in (vary if vary is not None else [])]
        except TypeError:
            raise KetasimInputError(f"vary: got {vary!r}, expected {{name: values}}, "
                                    "[(name, values), ...] or [\"NAME=LO:HI:N\", ...]") from None
    if not items:
        raise KetasimInputError("vary: expected at least one NAME=LO:HI:N")
    for item in items:
        if not (isinstance(item, (tuple, list)) and len(item) == 2
                and isinstance(item[0], str)):
            raise KetasimInputError(f"vary: got {item!r}, expected a name (text) and its "
                                    "values: {name: values}, [(name, values), ...] or "
                                    "[\"NAME=LO:HI:N\", ...]")
    course = doses if isinstance(doses, str) and doses in COURSES else None
    course_names = COURSE_PARAMETERS.get(course, {}) if course else {}
    from .courses import is_course_file

    if course is None and is_course_file(doses):
        # a course file (phases) sets its own amounts and timing; its length is a course's
        # months, as --months sets it (it had been refused as needing a course name)
        course_names = {"months": "months"}
    names, values, kinds = [], [], []
    for name, vals in items:
        name = str(name)          # (a NumPy array's np.str_: the column is named by str)
        if name in names:
            raise KetasimInputError(f"vary: {name!r} is given twice")
        clash = next((m for m in metrics if name == m or name.startswith(m + "_")), None)
        if clash is not None:
            # the grid's column and the metric's would share the name: the metric had
            # silently replaced the varied values
            raise KetasimInputError(f"vary: {name!r} is also the name of a metric column "
                                    f"({clash}); its column would be overwritten: rename the "
                                    "model parameter, or leave out that metric")
        if name in base:
            raise KetasimInputError(f"vary: {name!r} is also given in params (--param); give it "
                                    "in one place")
        if name == "weight_kg" and weight_given:
            raise KetasimInputError("vary: 'weight_kg' is also given as weight_kg= (--weight); "
                                    "give it in one place")
        raw = np.asarray(vals) if not isinstance(vals, (str, bytes)) else np.asarray([vals])
        if raw.dtype.kind not in "iuf":    # bools, text or objects are not numbers here
            raise KetasimInputError(f"vary {name}: got {vals!r}, expected numbers")
        v = np.atleast_1d(raw.astype(np.float64))
        if v.ndim != 1 or v.size == 0 or not np.all(np.isfinite(v)):
            raise KetasimInputError(f"vary {name}: expected one or more finite numbers")
        if np.unique(v).size != v.size:
            raise KetasimInputError(f"vary {name}: a value is given twice "
                                    f"({_first_repeat(v):g}); expected distinct values")
        if name in model.parameters:
            kind = "param"
        elif name == "weight_kg":
            kind = "weight"
            if np.any(v <= 0):
                raise KetasimInputError(f"vary weight_kg: got {v[v <= 0][0]:g}, expected kg > 0")
            model.check_weight(v)
        elif name in course_names and name != "weight_kg":
            kind = "course"
        elif name in model.derived:
            # a [derived] value is computed from the parameters: vary one of those instead
            own = [c for c in course_names if c not in ("weight_kg", "maintenance")]
            raise KetasimInputError(
                f"vary: {name!r} is derived (computed from parameters: {name} = "
                f"{model.derived[name].text}), so it cannot be varied; expected a model "
                f"parameter ({', '.join(model.parameters)}) or weight_kg"
                + (f", or a course parameter ({', '.join(own)})" if own else ""))
        else:
            known = list(model.parameters) + ["weight_kg"] + [c for c in course_names
                                                              if c != "weight_kg"]
            # (spravato's maintenance is a word, weekly or biweekly: no grid varies it)
            own = [c for c in course_names if c not in ("weight_kg", "maintenance")]
            hint = (f", or a parameter of the course {course} ({', '.join(own)})"
                    if own and course else f", or months (the length of the course file "
                    f"{doses})" if own else "" if course else "; course parameters "
                    "(dose_mg_per_kg, "
                    f"maintenance_days, months, infusion_min, dose_mg) need {_doses_field} to "
                    "name a course")
            near = (" (did you mean 'weight_kg'? body weight is varied as weight_kg, in kg)"
                    if name.lower() in ("wt", "weight", "bw", "body_weight", "bodyweight",
                                        "weight_g", "wgt", "kg") else suggest(name, known))
            raise KetasimInputError(f"vary: unknown name {name!r}{near}; "
                                    f"expected a model parameter or weight_kg{hint}")
        names.append(name)
        values.append(v)
        kinds.append(kind)
    P = math.prod(v.size for v in values)      # checked before the grid is built
    if P > MAX_GRID_POINTS:
        raise KetasimInputError(f"vary: the grid has {P:,} points, expected at most "
                                f"{MAX_GRID_POINTS:,}")
    # (the metrics of every subject: at least one value per metric, before the grid is built;
    # with each dose table's sessions once the points are grouped by it, below)
    _check_metrics_memory(P * (n or 1) * max(1, len(metrics)),
                          f"metrics of {P:,} grid points x {n or 1:,} subjects each x "
                          f"{len(metrics)} metrics", SWEEP_ADVICE)
    for i, nm in enumerate(names):
        if kinds[i] in ("param", "weight"):
            _check_axis(model, nm, values[i], base, weight_kg)
    grid = list(itertools.product(*[range(v.size) for v in values]))
    point_vals = {nm: np.array([values[i][g[i]] for g in grid]) for i, nm in enumerate(names)}
    weight_dep = course == "standard-iv"
    # group points by dose table: course parameters (and weight for the mg/kg course)
    group_keys = [i for i, k in enumerate(kinds) if k == "course" or (k == "weight"
                                                                       and weight_dep)]
    groups: dict = {}
    for p, g in enumerate(grid):
        groups.setdefault(tuple(g[i] for i in group_keys), []).append(p)
    jobs, members = [], []
    for key, pts in groups.items():
        pts = np.asarray(pts)
        course_kw = {}
        w_grp = weight_kg
        for i, gi in zip(group_keys, key):
            if kinds[i] == "course":
                x = float(values[i][gi])
                course_kw[names[i]] = (int(x) if names[i] == "dose_mg" and x.is_integer()
                                       else x)
            else:
                w_grp = float(values[i][gi])
        try:
            d = _doses_for(doses, w_grp, "sweep", **course_kw)
        except KetasimInputError as exc:
            at = ", ".join(f"{k} = {v:g}" for k, v in course_kw.items())
            raise KetasimInputError(f"sweep at {at}: {_varied_name(exc, course)}" if at
                                    else str(exc)) from None
        typical = {k: np.full(pts.size, v) for k, v in base.items()}
        for i, nm in enumerate(names):
            if kinds[i] == "param":
                typical[nm] = point_vals[nm][pts]
        if "weight_kg" in names:
            w = point_vals["weight_kg"][pts]
        else:
            w = np.full(pts.size, float(weight_kg))
        try:
            h = _horizon(d) if horizon_h is None else positive_hours("horizon_h", horizon_h)
        except KetasimInputError as exc:
            at = ", ".join(f"{k} = {v:g}" for k, v in course_kw.items())
            raise KetasimInputError(f"sweep at {at}: {exc}" if at else str(exc)) from None
        jobs.append(_Job(model=model, doses=d, metrics=metrics, analyte=analyte,
                         horizon_h=h,
                         typical=typical, weight=w,
                         n_per_point=n or 1, seed=seed, use_variability=n is not None,
                         threads=threads, sweep=True))
        members.append(pts)
    from .errors import warn
    from .events import dose_route_warning
    # (the first dose table of the grid with something to say, once)
    said = next((m for m in (dose_route_warning(model, j.doses) for j in jobs)
                 if m is not None), None)
    if said is not None:
        warn(f"sweep: {said}")
    if horizon_h is not None:
        from .engine import after_horizon_note
        note = next((n for n in (after_horizon_note(j.doses, j.horizon_h) for j in jobs)
                     if n is not None), None)
        if note is not None:
            at = "" if len(jobs) == 1 else "at some points of the grid, "
            warn(f"sweep: {at}{note}")
    _check_metrics_memory(sum(j.n_rows * _values_per_subject(metrics, j.doses) for j in jobs),
                          f"metrics of {P:,} grid points x {n or 1:,} subjects each (the "
                          f"{len(metrics)} metrics of each session and of the course)",
                          SWEEP_ADVICE)
    cols_all = [_Collector(j.n_rows, "subjects of a sweep", SWEEP_ADVICE) for j in jobs]
    for ji, a, b, res in _execute(jobs, chunk_size, scheduler, progress, "sweep"):
        cols_all[ji].add(a, b, res)
    # assemble: one row per grid point, in grid order
    metric_cols: list = []
    for c in cols_all:
        for k in c.cols:
            if k not in metric_cols:
                metric_cols.append(k)
    metric_cols = _order_columns(metric_cols, metrics)
    columns = {nm: point_vals[nm] for nm in names}
    from .modelfile import parameter_units

    punits = parameter_units(model)
    units = {nm: _vary_unit(nm, kinds[i], punits) for i, nm in enumerate(names)}
    stats = (("_p50", 50.0), ("_p05", 5.0), ("_p95", 95.0)) if n is not None else (("", None),)
    for k in metric_cols:
        for suf, _ in stats:
            columns[k + suf] = np.full(P, np.nan)
            units[k + suf] = metric_unit(k)
    for c, pts in zip(cols_all, members):
        for k, v in c.cols.items():
            if n is None:
                columns[k][pts] = v
            else:
                per = v.reshape(pts.size, n)
                with np.errstate(all="ignore"):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        q = np.nanpercentile(per, [50.0, 5.0, 95.0], axis=1)
                for (suf, _), row in zip(stats, q):
                    columns[k + suf][pts] = row
    info = {"model": model.name, "points": P, "n": n, "seed": seed if n else None,
            "doses": str(doses) if isinstance(doses, str) else getattr(doses, "source", ""),
            "variability": (_variability_text(model) if (n and model.variability) else "none")}
    return SweepResult(columns=columns, units=units, varied=tuple(names), metrics=metrics,
                       info=info)


def _first_repeat(v) -> float:
    seen = set()
    for x in v:
        if x in seen:
            return float(x)
        seen.add(x)
    return float("nan")


def _accepted(model, p, w, n) -> None:
    """Raise the model's own KetasimInputError when it refuses the parameters ``p`` (name ->
    (n,) arrays) at weight(s) ``w``."""
    from .engine import _check_covariate_range
    from .errors import KetasimWarning

    with warnings.catch_warnings():     # (a weight no person has: said by the caller, once)
        warnings.simplefilter("ignore", KetasimWarning)
        vals = model.resolve(p, w, n=n)
    _check_covariate_range(model, vals)     # (e.g. AGE outside the fitted ages)
    model.matrices(vals)


def _check_fixed(model, base, weight_kg, what) -> None:
    """The fixed values ``base`` (``--param``) alone, before any subject or grid point: a value
    the model refuses is reported as the one given (in a population, a subject drawn around
    it had been named with its drawn value instead)."""
    if not base:
        return
    try:
        _accepted(model, {k: np.array([float(b)]) for k, b in base.items()}, weight_kg, 1)
    except KetasimInputError as exc:
        raise KetasimInputError(f"params (--param): the model refuses the {what}: "
                                f"{exc}") from None


def _check_axis(model, name, v, base, weight_kg) -> None:
    """Every value of a varied model parameter (or of weight_kg), the others typical: a value
    the model refuses (a negative clearance, say, found where a derived flow is evaluated) is
    reported under the varied name, with the value."""
    def check(x):
        p = {k: np.full(x.size, float(b)) for k, b in base.items()}
        if name == "weight_kg":
            _accepted(model, p or None, x, x.size)
            return
        p[name] = x
        _accepted(model, p, weight_kg, x.size)

    # the fixed values alone first: a refused one is theirs, not the axis's
    _check_fixed(model, base, weight_kg, "fixed values")
    v = np.unique(v)
    for a in range(0, v.size, 1024):       # a few MiB of matrices at a time
        try:
            check(v[a:a + 1024])
        except KetasimInputError as exc:
            for x in v[a:a + 1024]:
                try:
                    check(np.array([x]))
                except KetasimInputError as one:
                    raise KetasimInputError(f"vary {name}: the value {x:g} is refused by the "
                                            f"model: {one}") from None
            raise KetasimInputError(f"vary {name}: {exc}") from None


def _vary_unit(name, kind, param_units=None):
    """The unit of a varied name: a course parameter's, or a model parameter's from its model
    file's comments (``param_units``), else "model unit"."""
    if kind == "weight":
        return "kg"
    if kind == "param":
        return (param_units or {}).get(name, "model unit")
    return {"dose_mg_per_kg": "mg/kg", "dose_mg": "mg", "maintenance_days": "days",
            "months": "months", "infusion_min": "min"}.get(name, "")


def _order_columns(cols, metrics):
    """Course columns first per metric, then its sessions in order."""
    out = []
    base = {c: _base_metric(c) for c in cols}
    by_metric: dict = {}
    for c in cols:
        by_metric.setdefault(base[c], []).append(c)
    present = set(cols)
    for m in metrics:
        if m in present:
            out.append(m)
        out.extend(sorted((c for c in by_metric.get(m, ()) if c != m),
                          key=lambda c: int(c.rpartition("_s")[2])))
    placed = set(out)            # a set: a long course has tens of thousands of columns
    out.extend(c for c in cols if c not in placed)
    return out
