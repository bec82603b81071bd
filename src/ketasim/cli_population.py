"""``ketasim population`` and ``ketasim sweep``: per-subject and per-grid-point metric tables.

Tables are CSV (two ``#`` comment lines first: what was run, and the unit of every column;
``pandas.read_csv(path, comment="#")`` reads them) or Parquet (``--out x.parquet``, needs
pyarrow: the same information is in the schema metadata, key ``ketasim``, and each field's
``unit`` metadata); ``--out -`` writes the CSV to standard output (messages and the summary
then go to standard error). Column names follow the metric names exactly (``cmax``, ``cmax_s3``,
``cmax_p50``), so units live in the header comment / metadata rather than in the names.
Every file is written all-or-nothing (temporary sibling, renamed at the end); an interrupted
or failed run leaves none.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import re
import sys
from pathlib import Path

import numpy as np

from ._numtext import g4, to_float, to_int
from .errors import KetasimInputError, check_input_file

__all__ = ["add_population_parser", "add_sweep_parser", "write_table"]


def _seed(s):
    try:
        v = to_int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a whole number (seed >= 0)") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"{s} is out of range: expected a seed >= 0")
    from .variability import _MAX_SEED

    if v >= _MAX_SEED:       # (it had been refused after the model and doses were read, as
        # "expected a whole number >= 0")
        raise argparse.ArgumentTypeError(f"{s} is out of range: expected a seed below 2**128 "
                                         "(the generator's 128-bit key)")
    return v


def _common(p, out_required: bool):
    from .cli import ParamAction, _finite, _param, _whole

    p.add_argument("--model", default="ketamine-iv",
                   help="preset name or TOML model file (default: ketamine-iv)")
    p.add_argument("--doses", default="standard-iv",
                   help="dose table CSV, course TOML file or course name: standard-iv, "
                        "spravato (default: standard-iv)")
    p.add_argument("--metrics", default=None, metavar="LIST",
                   help="comma-separated metrics (default: cmax,tmax,auc,trough,"
                        "peak_occupancy,time_above_occ_0.3); also time_above_occ_<X> for any "
                        "X, time_above_conc_<X> (X in ng/mL), peak_glutamate, plasticity_end, "
                        "consolidation_end")
    p.add_argument("--out", required=out_required,
                   type=_table_out,
                   help="metrics table: .csv, or .parquet (needs pyarrow), or - for CSV on "
                        "standard output" + (
                       " (required)" if out_required else " (default: none, print a summary)"))
    p.add_argument("--seed", type=_seed, default=None,
                   help="random seed of the drawn subjects (default: 0)")
    p.add_argument("--weight", type=_finite("kg", 0, True), default=None,
                   help="body weight, kg (default: 70)")
    p.add_argument("--param", type=_param, action=ParamAction, default=[], metavar="NAME=VALUE",
                   help="typical value of a model parameter (repeatable; default: the model's)")
    p.add_argument("--months", type=_finite("months", 0, True), default=None,
                   help="course length in months when --doses names a course or a course "
                        "TOML file (default: the course's, 6, or the file's)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on a Dask cluster: tcp://HOST:PORT, or 'local' for a cluster on "
                        "this machine (needs ketasim[distributed]; default: this process)")
    p.add_argument("--chunk-size", type=_whole("subjects", 1), default=20_000,
                   help="most subjects simulated at once (default: 20000); never changes "
                        "results")
    p.add_argument("--threads", type=_whole("threads", 1), default=None,
                   help="threads (default: all cores)")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="no progress bar (default: a bar on a terminal for runs over a second)")


def add_population_parser(sub):
    from .cli import _finite, _out_path, _whole

    p = sub.add_parser("population", help="virtual patients: per-subject metrics table and "
                       "5/50/95 %% bands over time")
    _common(p, out_required=False)
    p.add_argument("--n", type=_whole("subjects", 1), required=True,
                   help="number of virtual patients")
    p.add_argument("--bands", type=lambda v: _out_path(v, (".csv",), "--bands"), default=None,
                   help="write 5/50/95 %% bands over time (CSV; default: none)")
    p.add_argument("--plot", type=lambda v: _out_path(v, (".png", ".pdf", ".svg"), "--plot"),
                   default=None, help="figure of the bands (PNG, PDF or SVG; default: none)")
    p.add_argument("--band-outputs", default=None, metavar="LIST",
                   help="outputs of the bands (default: plasma and occupancy where the model "
                        "has them)")
    p.add_argument("--band-step", type=_finite("hours", 0, True), default=None,
                   help="band time step, h (default: every 4 h, every 5 min for 8 h after "
                        "each session)")
    p.add_argument("--age", type=_finite("years", 0), default=None,
                   help="age in years of every subject (models whose [variability] uses "
                        "age_y, e.g. esketamine-nasal; default: the model's)")
    p.add_argument("--covariates", default=None, metavar="CSV",
                   help="per-subject covariates: a CSV with columns weight_kg and/or age_y, "
                        "one row per subject (N rows), or - for standard input (default: none)")
    p.add_argument("--no-variability", action="store_true",
                   help="every subject has the typical parameter values (default: off)")
    p.set_defaults(_run=run_population)


def add_sweep_parser(sub):
    from .cli import _out_path, _whole

    p = sub.add_parser("sweep", help="a grid over model, weight and course parameters: one "
                       "row of metrics per grid point")
    _common(p, out_required=True)
    p.add_argument("--vary", action="append", required=True, metavar="NAME=LO:HI:N",
                   help="a grid axis (repeatable): linear LO:HI:N or log:LO:HI:N; NAME a model "
                        "parameter, weight_kg, or a course parameter (standard-iv: "
                        "dose_mg_per_kg, maintenance_days, months, infusion_min; spravato: "
                        "dose_mg, months)")
    p.add_argument("--n", type=_whole("subjects", 1), default=None,
                   help="subjects per grid point (variability); metrics become median and "
                        "5/95 %% (<metric>_p50, _p05, _p95) (default: typical values only)")
    p.add_argument("--plot", type=lambda v: _out_path(v, (".png", ".pdf", ".svg"), "--plot"),
                   default=None,
                   help="heat map of one metric over two varied names (default: none)")
    p.add_argument("--plot-metric", default=None, metavar="COLUMN",
                   help="column of the heat map (default: the first metric; its _p50 with --n)")
    p.set_defaults(_run=run_sweep)


# ---------------------------------------------------------------------- writing tables
def _units_line(columns, units) -> str:
    seen, parts = set(), []
    for k in columns:
        from .population import _base_metric
        base = _base_metric(k)
        key = base if not k.startswith("param_") else "param_<NAME>"
        if key in seen:
            continue
        seen.add(key)
        u = units.get(k, "")
        if key == "param_<NAME>":
            u = "the subject's parameter value (model units, before weight scaling)"
        parts.append(f"{key}: {u or '-'}")
    return "; ".join(parts)


def _one_line(text: str) -> str:
    """``text`` with its line breaks written as escapes (``\\n``): a file name holding one
    (given as --doses, say) had ended the header's ``#`` line, and the rest of the line was
    read as the table's column names."""
    import re

    return re.sub(r"[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]",
                  lambda m: repr(m.group())[1:-1], text)


TABLE_NOTE = ("<metric>_s<k> is session k, <metric> alone the whole course (the largest peak, "
              "the sum of AUCs and times, the trough before the last session), "
              "<metric>_p05/_p50/_p95 the 5/50/95 % over subjects")
BANDS_NOTE = "<output>_p05/_p50/_p95 the 5/50/95 % over subjects at each time"


def write_table(fh_or_path, columns: dict, units: dict, title: str, fmt: str = "csv",
                note: str = TABLE_NOTE) -> None:
    """Write columns (name -> (N,) array) with their units: CSV text to an open file, or
    Parquet to an open binary file. ``note``: how the CSV's column names read, after its
    units."""
    names = list(columns)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        fields = [pa.field(k, pa.from_numpy_dtype(np.asarray(columns[k]).dtype),
                           metadata={"unit": units.get(k, "")}) for k in names]
        meta = {"ketasim": json.dumps({"title": title, "units": {k: units.get(k, "")
                                                                  for k in names}})}
        table = pa.Table.from_arrays([pa.array(np.asarray(columns[k])) for k in names],
                                     schema=pa.schema(fields, metadata=meta))
        pq.write_table(table, fh_or_path)
        return
    fh = fh_or_path
    fh.write(f"# {_one_line(title)}\n")
    fh.write("# units: " + _units_line(names, units) + f"; {note}\n")
    fh.write(",".join(names) + "\n")
    n = len(next(iter(columns.values()))) if columns else 0
    ints = [np.issubdtype(np.asarray(columns[k]).dtype, np.integer) for k in names]
    fmts = ["%d" if i else "%.10g" for i in ints]
    # a time that ten digits would write as another's text is written exactly
    from .io import _rows_text, exact_times
    tj = names.index("time_h") if "time_h" in names and not ints[names.index("time_h")] else -1
    exact = exact_times(columns["time_h"]) if tj >= 0 else None
    for a in range(0, n, 65536):
        b = min(n, a + 65536)
        block = np.column_stack([np.asarray(columns[k][a:b], dtype=np.float64) for k in names])
        if exact is not None and exact[a:b].any():
            fh.write(_rows_text(block, ",".join(fmts) + "\n", tj, exact[a:b]))
        else:
            np.savetxt(fh, block, delimiter=",", fmt=fmts)


def _write_all(outputs, args=None) -> None:
    """Write every output or none (:func:`ketasim.io.write_outputs`: temporaries first, moved
    into place when all are complete; an existing file is never removed; no output may be one
    of the command's input files)."""
    from .cli import _input_files
    from .io import write_outputs

    write_outputs([(path, data, "b" in mode) for path, mode, data in outputs],
                  _input_files(args) if args is not None else ())


_NO_PYARROW = ("Parquet needs pyarrow; install it with pip install 'ketasim[parquet]', or "
               "write .csv")


def _table_out(v):
    """--out of population and sweep: ``-`` (CSV on standard output), or a .csv or .parquet
    file name; Parquet is refused here, before any work, when pyarrow's Parquet module cannot
    be imported (a build without it, such as conda's pyarrow-core, had failed after the whole
    run, as an internal error; a pyarrow built for another numpy as "invalid _table_out
    value")."""
    from .cli import _out_path

    if v == "-":
        return v
    p = _out_path(v, (".csv", ".parquet"))
    if p.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet  # noqa: F401
        except Exception as exc:        # ImportError, or a build that does not load here
            why = " ".join(str(exc).split())[:200]
            raise argparse.ArgumentTypeError(f"{v!r}: {_NO_PYARROW} (import pyarrow.parquet: "
                                             f"{type(exc).__name__}: {why})") from None
    return p


def _table_output(path: Path, columns, units, title):
    """``path`` from --out (:func:`_table_out`: a Parquet file was checked for pyarrow; ``-``
    is CSV on standard output)."""
    if path != "-" and path.suffix.lower() == ".parquet":
        return (path, "wb", lambda fh: write_table(fh, columns, units, title, "parquet"))
    return (path, "w", lambda fh: write_table(fh, columns, units, title, "csv"))


def _figure_bytes(fig, path: Path) -> bytes:
    from .plotting import encode_figure

    data = encode_figure(fig, path.suffix.lstrip(".").lower(), 120)
    import matplotlib.pyplot as plt
    plt.close(fig)
    return data


# ---------------------------------------------------------------------- figures
def plot_bands_figure(bands, title: str, first_dose_h: float = 0.0, model=None,
                      notes=()):
    """Bands over time from their quantiles (the curves are not kept): one row per output, the
    whole course (days) and the first session close up (hours after ``first_dose_h``).
    ``model``: names its analytes as the course figure does, and its source in a caption.
    Occupancy is drawn in % of receptors, as in the course figure. ``notes``: lines said in
    red under the figure (as its own notes on values not drawn)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .plotting import (
        BODY_PT,
        CAPTION_PT,
        _wrap_to,
        disclaimer,
        drawable,
        model_kind,
        output_label,
    )

    title, notes = drawable(title), [drawable(n) for n in notes]   # (see plotting.drawable)

    R = len(bands.outputs)
    # two columns of rows; more than three outputs get a wider, shorter figure (a 16:9 slide)
    fig, axes = plt.subplots(R, 2, figsize=(13 if R > 3 else 11, 2.3 * R + 1.6),
                             squeeze=False, gridspec_kw={"width_ratios": [2.2, 1]})
    from .population import _output_unit
    from .result import PD_OUTPUTS

    t = bands.times_h
    first = (t >= first_dose_h) & (t <= first_dose_h + 8.0)    # the first session, close up

    def label(o, chars=None):
        # in words, as the course figure names them (output_label), wrapped to the row (at
        # ``chars`` characters a line, where the rows are close: see below)
        import textwrap

        def fill(line):
            return textwrap.fill(line, chars, break_on_hyphens=False) if chars else line

        # ("(in-vivo Ki)" kept on one line: it had been broken before "Ki)")
        text = textwrap.fill(output_label(model, o).replace(" Ki)", "\N{NO-BREAK SPACE}Ki)"),
                             chars or 28, break_on_hyphens=False)
        if o.startswith("occupancy"):
            return text + "\n% of receptors,\nmodel-predicted"
        if o == "glutamate":
            return text + "\n(x baseline)"
        if o in PD_OUTPUTS:
            return text + "\n(index 0-1)"
        # a concentration: the drug, then where it is with the unit (a slide of the bands
        # had not said whether "ketamine (S + R)" was in plasma or at the effect site)
        words = output_label(model, o)
        for where in (" in plasma", " at the effect site", " in compartment "):
            if where in words:
                drug, _, rest = words.partition(where)
                return fill(drug) + "\n" + fill(f"{where.strip()} {rest}".rstrip()
                                                + f" ({_output_unit(o)})")
        return f"{text}\n({_output_unit(o)})"

    notes = list(notes)
    for row, o in enumerate(bands.outputs):
        q = bands.get(o)
        scale = 100.0 if o.startswith("occupancy") else 1.0
        for col, (x, sel) in enumerate(((t / 24.0, slice(None)),
                                        (t[first] - first_dose_h, first))):
            ax = axes[row, col]
            ax.fill_between(x, scale * q["p05"][sel], scale * q["p95"][sel], color="tab:blue",
                            alpha=0.3, lw=0, label="5–95 % of subjects")
            ax.plot(x, scale * q["p50"][sel], color="tab:blue", lw=1.6, label="median")
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=BODY_PT - 1)
            ax.set_ylim(bottom=0)
        axes[row, 0].set_ylabel(label(o), fontsize=BODY_PT - 1)
        gone = np.isnan(np.vstack([q["p05"], q["p50"], q["p95"]])).any(axis=0)
        if gone.any():       # at or above the top of the bands' range: not drawn, said so
            from .population import BAND_RANGE

            notes.append(f"{o}: not drawn at {int(gone.sum()):,} of {gone.size:,} times "
                         f"(from {t[gone][0]:g} h), where a quantile is at or above "
                         f"{BAND_RANGE[1]:g} {_output_unit(o)}, the top of the bands' range")
    # (in the close-up's upper right, where the first session has fallen: over the whole
    # course it hid a late session's spike)
    axes[0, 1].legend(loc="upper right", fontsize=BODY_PT - 2)
    axes[0, 0].set_title("whole course", fontsize=BODY_PT)
    axes[0, 1].set_title("first session, close-up", fontsize=BODY_PT)
    axes[-1, 0].set_xlabel("time (days)", fontsize=BODY_PT)
    axes[-1, 1].set_xlabel("time after the first dose (h)", fontsize=BODY_PT)
    # (wrapped, measured as drawn: a run with a few options had its title run off both edges)
    head = _wrap_to(fig, title, BODY_PT, 0.96 * fig.bbox.width, hyphens=False)
    # (0.1 in from the top, and its room measured by tight_layout itself, which keeps its
    # height and a pad free under the rect's top: a fixed 0.35 in taken besides had left about
    # half an inch blank under the title)
    fig.suptitle("\n".join(head), fontsize=BODY_PT, y=1 - 0.1 / fig.get_figheight(),
                 va="top")
    pt = CAPTION_PT          # (as every figure's caption: it had been 2 pt smaller)

    def wrap(text):
        return _wrap_to(fig, text, pt, 0.98 * fig.bbox.width)     # across the figure

    lines = [(x, "tab:red") for n in notes for x in wrap(n)]
    if model is not None:
        cite = model.meta.get("citation") or ""
        kind = model_kind(model)
        for part in (f"{kind} {model.name}: {cite}" if cite else f"{kind} {model.name}",
                     disclaimer([model])):
            lines += [(x, "0.3") for x in wrap(part)]
    line_h = 1.3 * pt / 72 / fig.get_figheight()              # one line, figure fraction
    for i, (line, color) in enumerate(lines):
        fig.text(0.01, 0.004 + line_h * (len(lines) - 1 - i), line, fontsize=pt, color=color,
                 va="bottom")
    rect = (0, line_h * (len(lines) + 0.6) if lines else 0, 1, 1)
    fig.tight_layout(rect=rect)
    # each row's label (centred on its panel) no longer than the distance between the rows'
    # centres, less a margin: on a figure of four or more outputs, 'glutamate signal
    # (SCHEMATIC)' and the occupancy labels had run into the labels of the rows above and
    # below. Then laid out again for the labels' new width.
    mid = [0.5 * (b.y0 + b.y1) for b in (ax.get_window_extent() for ax in axes[:, 0])]
    longer = False
    for i, (ax, o) in enumerate(zip(axes[:, 0], bands.outputs)):
        lab = ax.yaxis.label
        room = min([abs(mid[i] - m) for j, m in enumerate(mid) if j != i] or [np.inf]) \
            - 0.1 * fig.dpi
        chars = 28
        while lab.get_window_extent().height > room and chars > 12:
            chars -= 2
            lab.set_text(label(o, chars))
            longer = True
    if longer:
        fig.tight_layout(rect=rect)
    return fig


def _describe(column: str) -> str:
    """A short description of a metric column, for figure labels."""
    from .engine import METRICS
    from .population import _base_metric

    base = _base_metric(column)
    for prefix, what in (("time_above_occ_", "hours with occupancy >= {x} %"),
                         ("time_above_conc_", "hours with concentration >= {x} ng/mL")):
        if base.startswith(prefix):
            x = base[len(prefix):]
            if prefix == "time_above_occ_":
                # the column's fraction (time_above_occ_0.1) in %, as the figures draw
                # occupancy: "occupancy >= 0.1" had stood beside axes of 0-40 %
                try:
                    x = f"{float(x) * 100:.6g}"
                except ValueError:          # (not a number: the column's text, as it is)
                    pass
            text = what.format(x=x)
            break
    else:
        text = METRICS.get(base, ("", base))[1].split(" (")[0]
    sess = column[len(base):].split("_p")[0]
    where = f", session {sess[2:]}" if sess.startswith("_s") else ", whole course"
    if base == "trough" and not sess.startswith("_s"):
        text, where = "concentration just before the last session", ""
    stat = {"_p50": "median of ", "_p05": "5th percentile of ", "_p95": "95th percentile of "}
    pre = next((v for k, v in stat.items() if column.endswith(k)), "")
    return f"{pre}{text}{where}"


def _schematic_metric(column: str) -> bool:
    """Whether a metric column is of the schematic glutamate/plasticity response (its name
    names one of the schematic outputs: peak_glutamate, plasticity_end, ...)."""
    from .engine import SCHEMATIC_OUTPUTS

    return any(w in column for w in SCHEMATIC_OUTPUTS)


def _geometric(v) -> bool:
    """Whether the grid values ``v`` are log-spaced (at least 3, positive, a constant ratio,
    not a constant difference)."""
    v = np.asarray(v, dtype=float)
    if v.size < 3 or not np.all(v > 0):
        return False
    lr, d = np.diff(np.log(v)), np.diff(v)
    return bool(np.allclose(lr, lr[0], rtol=1e-6, atol=0)
                and not np.allclose(d, d[0], rtol=1e-6, atol=0))


def _round_values(v) -> bool:
    """Whether grid values are round enough to label as they are: each exact with at most
    four significant digits (0.25, 102.5, 60; not 97.142857 or 0.215443)."""
    v = np.asarray(v, dtype=float)
    return bool(np.all([abs(float(f"{x:.4g}") - x) <= 1e-9 * max(1.0, abs(x)) for x in v]))


NEGLIGIBLE = 1e-3      # a heat map whose values are all smaller (in its units) says so


def plot_heatmap(result, metric: str, title: str, analyte: str | None = None,
                 calibration: str | None = None):
    """A heat map of ``metric`` over the two varied names (``analyte``: the drug "the
    analyte" of the metric's description is, named in the colour bar; ``calibration``: the
    Ki calibration of an occupancy metric, named there too, as the population figure does)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .plotting import drawable

    title = drawable(title)        # (see plotting.drawable)
    a, b, z = result.grid(metric)
    unit = result.units.get(metric, "")
    if unit == "fraction" and "occupancy" in metric:     # in %, as every other figure draws it
        z = np.asarray(z, dtype=float) * 100.0
        unit = "% of receptors"
    na, nb = result.varied
    from .plotting import BODY_PT, _wrap_to

    # (text at the course figure's sizes, for a slide: it had been matplotlib's 10 pt)
    fig, ax = plt.subplots(figsize=(8, 5.6))
    ax.tick_params(which="major", labelsize=BODY_PT - 1)

    def edges(v):
        if v.size == 1:
            return np.array([v[0] - 0.5, v[0] + 0.5])
        mid = (v[1:] + v[:-1]) / 2
        return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])

    def cells(v):
        """Cell edges, and whether the axis is log-spaced (log:LO:HI:N), then drawn on a log
        scale with edges at the geometric midpoints."""
        if _geometric(v):
            return np.exp(edges(np.log(v))), True
        return edges(v), False

    xe, xlog = cells(b)
    ye, ylog = cells(a)
    m = ax.pcolormesh(xe, ye, z, cmap="viridis", shading="flat")
    from matplotlib.ticker import (
        FixedFormatter,
        FixedLocator,
        FuncFormatter,
        LogLocator,
        MaxNLocator,
        NullLocator,
    )

    for is_log, axis, v, scale, ends in ((xlog, ax.xaxis, b, ax.set_xscale, xe),
                                         (ylog, ax.yaxis, a, ax.set_yscale, ye)):
        if is_log:
            scale("log")
        if not _round_values(v):
            # grid values such as 97.142857 (80:200:8) or 0.215 (log:0.1:10:7): the axis is
            # ticked at round numbers (1-2-2.5-5 steps, or 1-2-5 on a log scale), a short
            # tick without a label at each grid value (the cells' centres); it had been
            # labelled 97.143, 114.29, 131.43 ... at the cells
            if is_log:
                # 1-2-5, or denser where that labels fewer than three values: CL =
                # log:50:150:9 had been labelled at 50 and 100 only
                lo, hi = float(np.min(ends)), float(np.max(ends))
                for subs in ((1.0, 2.0, 5.0), (1.0, 1.5, 2.0, 3.0, 5.0, 7.0),
                             tuple(range(1, 10))):
                    loc = LogLocator(base=10, subs=subs, numticks=30)
                    if np.count_nonzero([lo <= t <= hi for t in loc.tick_values(lo, hi)]) >= 3:
                        break
                axis.set_major_locator(loc)
            else:
                axis.set_major_locator(MaxNLocator(nbins=7, steps=[1, 2, 2.5, 5, 10]))
            axis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:.6g}"))
            axis.set_minor_locator(FixedLocator(v))
            axis.set_minor_formatter(FuncFormatter(lambda x, _pos: ""))
        elif is_log or v.size <= 12:      # ticked at the grid values (cell centres), plainly
            shown = v[::max(1, -(-v.size // 8))]
            axis.set_major_locator(FixedLocator(shown))
            # as many digits as tell the values apart and show each within a thousandth of
            # the grid's step (102.5 kg had read "102"), and no more (97.1428571 had run into
            # its neighbours)
            step = float(np.min(np.abs(np.diff(v)))) if v.size > 1 else abs(float(v[0])) or 1.0

            def close(dg, shown=shown, step=step):
                return all(abs(float(f"{x:.{dg}g}") - x) <= 1e-3 * step for x in shown)
            digits = 3
            while digits < 8 and (len({f"{x:.{digits}g}" for x in shown}) < len(shown)
                                  or (not is_log and not close(digits))):
                digits += 1
            axis.set_major_formatter(FixedFormatter([f"{x:.{digits}g}" for x in shown]))
            axis.set_minor_locator(NullLocator())
    empty = not np.isfinite(z).any()
    negligible = not empty and np.nanmax(np.abs(z)) < NEGLIGIBLE
    if negligible:
        # (a trough of 1e-13 ng/mL had spread over the whole colour scale, a dose effect on
        # nothing)
        shown_unit = "" if unit in ("", "index", "fraction") else f" {unit}"
        ax.text(0.5, 0.5, f"every value is below {NEGLIGIBLE:g}{shown_unit}:\neffectively "
                "zero (the colours spread\ndifferences that do not matter)",
                transform=ax.transAxes, ha="center", va="center", fontsize=11,
                bbox={"facecolor": "white", "edgecolor": "0.5"})
    if empty:
        ax.text(0.5, 0.5, f"no value of {metric} at any grid point\n(not a number everywhere)",
                transform=ax.transAxes, ha="center", va="center", fontsize=11,
                bbox={"facecolor": "white", "edgecolor": "0.5"})
    if not empty and not np.isfinite(z).all():
        # cells without a value (a session k that a shorter course of the grid does not
        # have): hatched and said what they are, not left as a blank that reads as missing
        # ink or as the colour bar's lowest value
        import re

        from matplotlib.patches import Patch, Rectangle

        hatch = {"facecolor": "0.93", "edgecolor": "0.55", "hatch": "//"}
        ax.add_patch(Rectangle((0, 0), 1, 1, transform=ax.transAxes, lw=0, zorder=-1,
                               **hatch))
        k = re.search(r"_s(\d+)(?:_|$)", metric)
        if k and metric.startswith("trough"):      # (the last session has no trough)
            why = (f"no session {int(k.group(1)) + 1} at these grid points, so no trough "
                   f"before it (the course has fewer sessions)")
        elif k:
            why = f"no session {k.group(1)} at these grid points (the course has fewer sessions)"
        else:
            why = f"no value of {metric} at these grid points (not a number)"
        ax.legend(handles=[Patch(label=why, **hatch)], loc="upper center",
                  bbox_to_anchor=(0.5, -0.13), frameon=False, fontsize=BODY_PT - 2,
                  handlelength=1.6, handleheight=1.2)
    what = _describe(metric)
    if analyte:
        what = what.replace("the analyte", analyte)
    if calibration and "occ" in metric:
        what += f" ({calibration} Ki)"
    import textwrap

    # (wrapped: a long description had run past the figure's top and bottom)
    cb = fig.colorbar(m, ax=ax)
    # ("(S + R)" and "10 %" kept on one line: wrapped with no-break spaces, which textwrap
    # keeps)
    kept = what.replace(" + ", "\u00a0+\u00a0").replace(" %", "\u00a0%")
    cb.set_label((f"{metric} ({unit})" if unit else metric) + "\n"
                 + textwrap.fill(kept, 44, break_on_hyphens=False).replace("\u00a0", " "),
                 fontsize=BODY_PT - 1)
    cb.ax.tick_params(labelsize=BODY_PT - 1)
    if empty:
        cb.set_ticks([])
    elif negligible:
        # each tick written out ("6e-19"): the colour bar of an "effectively zero" map had
        # ticks 0-6 under a "1e-19" multiplier above it, which drew the eye as if the values
        # mattered (and without the multiplier, 0-6 would read as 0-6 ng/mL)
        cb.ax.yaxis.set_major_formatter(FuncFormatter(
            lambda x, _pos: f"{x:.3g}".replace("-", "\u2212")))
    def axis_label(name):
        # (a unit that is the name itself is not repeated: "months (months)" had been the
        # label of a sweep over the course length)
        unit = result.units.get(name, "")
        return f"{name} ({unit})" if unit and unit != name else name

    ax.set_xlabel(axis_label(nb) + (", log scale" if xlog else ""), fontsize=BODY_PT)
    ax.set_ylabel(axis_label(na) + (", log scale" if ylog else ""), fontsize=BODY_PT)
    ax.set_title(title, fontsize=BODY_PT - 1)
    fig.tight_layout()
    # the title is centred over the map: wrapped to the room on its narrower side (a sweep
    # with a few options had its title run off both edges, the model and the number of
    # subjects cut), then laid out again for its height
    box = ax.get_window_extent()
    mid = (box.x0 + box.x1) / 2
    room = 2 * min(mid, fig.bbox.width - mid) - 0.1 * fig.dpi
    lines = _wrap_to(fig, title, BODY_PT - 1, room, hyphens=False)
    if len(lines) > len(str(title).split("\n")):
        ax.set_title("\n".join(lines), fontsize=BODY_PT - 1)
        fig.tight_layout()
    return fig


# ---------------------------------------------------------------------- commands
def _file_name(spec) -> str:
    """A --doses or --covariates value for a figure's title: a file by its name alone (a
    title had carried the whole path, '/home/.../study/doses.csv', across a slide); a course
    name, or '-', as it is. The table's header line keeps the value as given."""
    text = str(spec)
    return os.path.basename(text) or text


def _given(args, skip=(), title=False) -> str:
    """The options of a run that change its numbers, for the table's header line (a reader
    of the file must not have to guess the weight, the course length or a parameter);
    ``skip``: options a figure's title says on a line of its own ("weight"); ``title``: for a
    figure's title, a file by its name alone (:func:`_file_name`)."""
    parts = []
    for attr, fmt in (("months", "months {:.15g}"), ("weight", "weight {:.15g} kg"),
                      ("age", "age {:.15g} y"), ("covariates", "covariates {}"),
                      ("analyte", "analyte {}"), ("horizon", "horizon {:.15g} h"),
                      ("occupancy_calibration", "occupancy calibration {}")):
        v = getattr(args, attr, None)
        if v is not None and attr not in skip:
            parts.append(fmt.format(_file_name(v) if title and attr == "covariates" else v))
    parts += [f"{k} = {v:.15g}" for k, v in getattr(args, "param", None) or []]
    if getattr(args, "no_variability", False):
        parts.append("no variability")
    return "".join(f" | {p}" for p in parts)


def _peaks_between_band_times(res, model, first_h: float) -> list:
    """A note when the median curve passes below the first session's median exact peak, and
    why: with --band-step 1 the median curve had topped out at 105 ng/mL, a third below the
    median exact peak (159, printed in the summary), without a word. Its causes: peaks that
    fall between band times (a finer --band-step helps), and subjects that peak at different
    times (the median at each time then stays below the median of the peaks, on any grid:
    the nasal spray's absorption). The grid is named when its step is more than a quarter of
    the spread of the subjects' exact peak times (tmax_s1; without them, always)."""
    from .plotting import _num, analyte_labels, main_analyte

    b, name = res.bands, main_analyte(model)
    exact = res.columns.get("cmax_s1")
    if b is None or exact is None or name not in b.outputs:
        return []
    exact = np.asarray(exact, dtype=float)
    exact = exact[np.isfinite(exact)]
    t = b.times_h
    first = (t >= first_h) & (t <= first_h + 8.0)
    if not exact.size or not first.any():
        return []
    peak = float(np.median(exact))
    drawn = float(np.nanmax(b.get(name)["p50"][first]))
    if not drawn < 0.98 * peak:
        return []
    # (a close-up with one band time, --band-step longer than 8 h, had said "every nan min")
    step = float(np.median(np.diff(t[first] if first.sum() > 1 else t))) if t.size > 1 \
        else float("inf")
    every = (f"every {_num(step * 60)} min" if step < 2 else f"every {_num(step)} h"
             if np.isfinite(step) else "at one time")
    tmax = res.columns.get("tmax_s1")
    tmax = np.asarray(tmax, dtype=float) if tmax is not None else np.array([])
    tmax = tmax[np.isfinite(tmax)]
    spread = float(tmax.max() - tmax.min()) if tmax.size else None
    timing = spread is not None and spread > 0.0
    grid = spread is None or not step <= spread / 4
    label = analyte_labels(model)[name]
    if grid:
        why = ", which subjects reach at different times" if timing else ""
        return [f"{label}: the bands ({every}) pass below the peaks{why}: first session "
                f"{_num(drawn)} ng/mL drawn, median exact peak (cmax_s1) {_num(peak)} ng/mL"]
    return [f"{label}: the median curve tops out at {_num(drawn)} ng/mL in the first session, "
            f"below the median exact peak (cmax_s1) {_num(peak)} ng/mL: subjects peak at "
            f"different times"]


def _dose_and_weight(model, doses, weight, varied=()) -> str:
    """The dose per session and the weight simulated, for a figure's title, as the course
    figure says them (``0.5 mg/kg (35 mg) IV infusion over 40 min · 70 kg``); with the
    defaults a title had named neither 35 mg nor 70 kg. ``weight``: one weight, or each
    subject's (an array); ``varied``: a sweep's varied names, which no fixed value describes
    (a dose or infusion length, or the weight, which sets a per-kg course's mg)."""
    from .courses import resolve_doses
    from .plotting import _num, describe_doses, uses_weight

    one_kg = np.ndim(weight) == 0
    w = 70.0 if weight is None or not one_kg else float(weight)
    parts = []
    if not {"dose_mg_per_kg", "dose_mg", "infusion_min", "weight_kg"} & set(varied):
        given = doses if not isinstance(doses, str) else resolve_doses(doses, weight_kg=w)
        parts.append(describe_doses(given, w if one_kg else None, model))
    if uses_weight(model) and "weight_kg" not in varied:
        parts.append(f"{_num(w)} kg" if one_kg else "each subject's weight")
    return " · ".join(parts)


def _doses_arg(args):
    """The --doses value, with --months for a course (a course file: its dose table of that
    length)."""
    from .courses import COURSES, check_doses_spec, is_course_file, is_course_name, resolve_doses

    check_doses_spec(args.doses, "--doses")
    if is_course_name(args.doses):
        if args.months is None:
            return args.doses, {}
        return args.doses, {"months": args.months}
    if args.months is not None and not is_course_file(args.doses):
        raise KetasimInputError(f"--months applies to a course ({', '.join(COURSES)}) or a "
                                f"course TOML file, not the dose table {args.doses!r}")
    try:
        d = resolve_doses(args.doses, **({} if args.months is None
                                         else {"months": args.months}))
    except KetasimInputError as exc:
        msg = str(exc)
        raise KetasimInputError("--" + msg if msg.startswith("doses:") else msg) from None
    from .cli import note_skipped
    note_skipped(d)
    return d, {}


def _check_horizon(args, doses) -> None:
    """Refuse a run whose end (28 days after the last dose) exact metrics cannot reach, naming
    the option it comes from (the Python API names its doses, which the command line calls
    --doses). A course name is left to the run, which names the varied months."""
    if isinstance(doses, str):
        return
    from .engine import DEFAULT_HORIZON_NOTE, check_metrics_horizon, default_horizon_h

    what = ("--months" if args.months is not None else
            f"--doses {args.doses} ({DEFAULT_HORIZON_NOTE})")
    horizon = default_horizon_h(doses)
    check_metrics_horizon(horizon, what, "a shorter course")
    from .cli_teach import _warn
    from .engine import running_at_end_note
    _warn(running_at_end_note(doses, horizon))


def _route_warning(model, doses) -> None:
    """Say what simulate, course and compare say of the doses' routes (a nasal model given IV
    doses, a dose into a route's compartment by its name, a spray session one row per
    device: +28 % Cmax), before the run; an IV model given nasal doses is refused."""
    from .cli_teach import _warn, route_warning
    from .courses import resolve_doses

    _warn(route_warning(model, resolve_doses(doses) if isinstance(doses, str) else doses))


def _warn_band_ceiling(bands) -> None:
    """Say where a band quantile is at or above the histograms' top (reported as nan)."""
    from .population import BAND_RANGE

    for j, o in enumerate(bands.outputs):
        v = bands.values[j]
        nan_t = np.isnan(v).any(axis=0)
        if nan_t.any():
            print(f"ketasim: warning: bands: {o}: a quantile is at or above {BAND_RANGE[1]:g} "
                  f"{bands.units.get(o, '')} at {int(nan_t.sum()):,} of {v.shape[1]:,} times "
                  "(the top of the bands' range); those values are nan", file=sys.stderr)


_LINE_BREAK = re.compile("\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def _lines_of(text: str):
    """The lines of ``text`` as ``text.splitlines()`` gives them, one at a time."""
    start = 0
    for m in _LINE_BREAK.finditer(text):
        yield text[start:m.start()]
        start = m.end()
    if start < len(text):
        yield text[start:]


def _read_covariates(path, n):
    from .dosing import MAX_DOSE_FILE_BYTES, _decode, _read_at_most, check_commas
    from .variability import AGE_LIMITS_Y, AGE_WORDS

    too_large = (f"larger than the {MAX_DOSE_FILE_BYTES / 2**20:.0f} MiB limit for a table "
                 "(MAX_DOSE_FILE_BYTES); expected one row per subject")
    if str(path) == "-":        # standard input, as --doses - (it had been "file '-' not found")
        if sys.stdin is None:
            raise KetasimInputError("--covariates: standard input is closed; expected a "
                                    "covariates CSV there, or a file name")
        data = _read_at_most(getattr(sys.stdin, "buffer", sys.stdin), MAX_DOSE_FILE_BYTES,
                             f"--covariates: standard input: {too_large}")
        text = _decode(data, "standard input", "a covariates CSV (weight_kg and/or age_y)")
    else:
        p = Path(path)
        check_input_file("--covariates", path, p, "a CSV file")
        if p.stat().st_size > MAX_DOSE_FILE_BYTES:
            # (read whole, as text and then as rows of cells: several times its size)
            raise KetasimInputError(
                f"--covariates: {path}: {p.stat().st_size / 2**20:.0f} MiB, {too_large}")
        text = _decode(p.read_bytes(), str(p), "a covariates CSV (weight_kg and/or age_y)")

    def numbered():
        # (line numbers as in the file: comment and blank lines are skipped, not renumbered;
        # one line at a time: a list of every line, as a file of a few characters a line
        # makes, had taken 60 times the file's size in memory, 5.6 GB for 90 MB)
        for k, ln in enumerate(_lines_of(text)):
            if ln.strip() and not ln.startswith("#"):
                yield k + 1, ln

    first = next(numbered(), None)
    if first is None:
        raise KetasimInputError(f"--covariates: {path}: empty; expected a header with weight_kg "
                                "and/or age_y")
    # column names as in a dose table: any letter case, quoted or not
    head = [h.strip().strip('"').strip().lower() for h in first[1].split(",")]
    hl = f"line {first[0]}"
    # (as a dose table's header: it had been "unknown column 'weight_kg;age_y'")
    check_commas(head, first[1].strip(), f"--covariates: {path}: {hl}", "weight_kg,age_y")
    if "" in head:
        raise KetasimInputError(f"--covariates: {path}: {hl}: an empty column name in "
                                f"{first[1].strip()!r} (a comma too many, at the end of the "
                                "line?); expected weight_kg, age_y (and optionally subject)")
    given = [c.strip().strip('"').strip() for c in first[1].split(",")]
    for h, g in zip(head, given):
        if h not in ("weight_kg", "age_y", "subject"):
            # (named as written, not lowercased: "unknown column 'wt'" for a header WT; and
            # a dose table's NONMEM names, which this file does not take, pointed to its own)
            alias = {"wt": "weight_kg", "id": "subject", "age": "age_y"}.get(h)
            raise KetasimInputError(f"--covariates: {path}: unknown column {g!r}"
                                    + (f" (write {alias})" if alias else "")
                                    + "; expected weight_kg, age_y (and optionally subject)")
        if head.count(h) > 1:
            raise KetasimInputError(f"--covariates: {path}: column {h!r} appears twice")
    if not set(head) - {"subject"}:
        raise KetasimInputError(f"--covariates: {path}: no covariate column (only subject); "
                                "expected weight_kg and/or age_y")
    count = sum(1 for _ in itertools.islice(numbered(), 1, n + 2))   # (n + 1 at most)
    if count != n:
        raise KetasimInputError(f"--covariates: {path} has {'more than ' if count > n else ''}"
                                f"{min(count, n)} rows, expected {n} (one per subject, --n)")
    out = {h: np.empty(n) for h in head}
    for i, (line, ln) in enumerate(itertools.islice(numbered(), 1, None)):
        cells = ln.split(",")
        if len(cells) != len(head):
            raise KetasimInputError(
                f"--covariates: {path}: line {line}: got {len(cells)} value"
                f"{'s' if len(cells) != 1 else ''} ({ln.strip()!r}), expected {len(head)} "
                f"({', '.join(head)})")
        for h, c in zip(head, cells):
            c = c.strip()
            if len(c) >= 2 and c[0] == c[-1] == '"':      # quoted, as the header may be
                c = c[1:-1].strip()
            try:
                out[h][i] = v = to_float(c)
            except ValueError:
                raise KetasimInputError(f"--covariates: {path}: line {line}, {h}: got "
                                        f"{c!r}, expected a number") from None
            if not np.isfinite(v):
                raise KetasimInputError(f"--covariates: {path}: line {line}, {h}: got "
                                        f"{c!r}, expected a finite number")
            # (found here, the file's line named; the model's own range is checked later)
            if h == "weight_kg" and not v > 0:
                raise KetasimInputError(f"--covariates: {path}: line {line}, weight_kg: got "
                                        f"{c}, expected kg > 0")
            if h == "age_y" and not AGE_LIMITS_Y[0] <= v <= AGE_LIMITS_Y[1]:
                raise KetasimInputError(f"--covariates: {path}: line {line}, age_y: got {c}, "
                                        f"expected {AGE_WORDS}")
    if "subject" in out:
        # rows matched to subjects by the subject column: the subjects are 0 .. n-1, as in
        # the output's subject column
        from .population import subject_order

        order = subject_order(out.pop("subject"), n, f"--covariates: {path}: subject column")
        out = {h: v[order] for h, v in out.items()}
    return out


def _metrics_arg(args, model):
    """--metrics, or the default set of those the model has (no occupancy metrics for a model
    without occupancy). A metric named that the model cannot give is an error (as in the
    Python API: :func:`ketasim.population.model_metrics`)."""
    from .population import model_metrics

    return model_metrics(model, args.metrics)


def _interruptible(fn):
    def run(args) -> int:
        from .io import commits

        before = commits()
        try:
            return fn(args)
        except KeyboardInterrupt:
            # (an interrupt after the files were moved into place, while the summary is
            # printed, had been reported as "no file was written")
            if commits() == before:
                print("ketasim: interrupted; no file was written", file=sys.stderr)
            raise
    run.__name__ = fn.__name__
    return run


@_interruptible
def run_population(args) -> int:
    from .cli import _check_output_paths, _check_stdout_open, weight_or_default
    from .modelfile import load_model
    from .population import population

    # before any work (a run can take minutes)
    _check_output_paths(args, "out", "bands", "plot")
    _check_stdout_open(args.out)
    if args.covariates == "-" and str(getattr(args, "doses", "")) == "-":
        raise KetasimInputError("--covariates: '-': standard input is the --doses input "
                                "already; expected a file name for one of the two")
    model = load_model(args.model)
    if args.seed is not None and args.no_variability:
        raise KetasimInputError("--seed: no subjects are drawn with --no-variability (every "
                                "subject has the typical values); give one of them")
    args.seed = 0 if args.seed is None else args.seed
    from .cli_teach import _warn, _weight_given, weight_unused

    _warn(weight_unused(model, _weight_given(args)))
    doses, course_kw = _doses_arg(args)
    _route_warning(model, doses)
    if course_kw:
        from .courses import resolve_doses
        doses = resolve_doses(doses, weight_kg=weight_or_default(args.weight),
                              **course_kw)
    _check_horizon(args, doses)
    covariates = {}
    weight = weight_or_default(args.weight)
    if args.covariates is not None:       # ('' is refused, not taken for none)
        covariates = _read_covariates(args.covariates, args.n)
        var = model.variability
        for col in covariates:          # (had been refused as "covariates: ...")
            if col != "weight_kg" and (not var or col not in var.covariates):
                raise KetasimInputError(
                    f"--covariates: {args.covariates}: column {col}: model {model.name!r} has "
                    f"no {col} covariate (its [variability] covariates use no {col}); leave "
                    "the column out, or use a model with one, such as esketamine-nasal")
        if "weight_kg" in covariates:
            if args.weight is not None:
                raise KetasimInputError(f"--weight: {args.covariates} gives each subject's "
                                        "weight (weight_kg); give weights in one place")
            weight = covariates.pop("weight_kg")
            # (as --weight is: the weight_kg column had been taken without a word)
            _warn(weight_unused(model, f"--covariates {args.covariates} (weight_kg)"))
            # (the course by name: a str without --months, a table with it; the first had
            # been refused by the run as "weight_kg: ... give one weight")
            if args.doses == "standard-iv" and (isinstance(doses, str) or
                                                getattr(doses, "source", "") == "course"):
                raise KetasimInputError("--covariates: per-subject weights with the mg/kg course "
                                        "standard-iv would need one dose table per subject; "
                                        "give --weight, or a dose table in mg")
    if args.age is not None:
        var = model.variability
        if not var or "age_y" not in var.covariates:     # (had been named "covariates")
            raise KetasimInputError(
                f"--age: model {model.name!r} has no age covariate (its [variability] "
                "covariates use no age_y), so an age changes nothing; leave --age out, or use "
                "a model with one, such as esketamine-nasal")
        if "age_y" in covariates:
            raise KetasimInputError("--age: age_y is also in --covariates; give one")
        covariates["age_y"] = np.full(args.n, args.age)
    if not model.variability and not args.no_variability:
        print(f"ketasim: note: model {model.name!r} has no [variability] section: every subject "
              "has the typical parameter values", file=sys.stderr)
    want_bands = args.bands is not None or args.plot is not None
    for opt, v in (("--band-outputs", args.band_outputs), ("--band-step", args.band_step)):
        if v is not None and not want_bands:
            raise KetasimInputError(f"{opt}: only with --bands or --plot (it sets the bands, "
                                    "which neither asks for)")
    bands = (args.band_step if args.band_step is not None else True) if want_bands else None
    if args.band_outputs is not None:
        band_outputs = tuple(o.strip() for o in args.band_outputs.split(",") if o.strip())
    elif want_bands:
        from .plotting import main_analyte
        band_outputs = (main_analyte(model),) + (("occupancy",) if model.has_occupancy else ())
    else:
        band_outputs = ()
    res = population(model, doses, args.n, args.seed, metrics=_metrics_arg(args, model),
                     bands=bands, band_outputs=band_outputs, chunk_size=args.chunk_size,
                     scheduler=args.scheduler, weight_kg=weight, covariates=covariates or None,
                     params=dict(args.param), variability=not args.no_variability,
                     threads=args.threads, progress=False if args.quiet else None)
    _name_analyte(args, model)
    title = (f"ketasim population | model {model.name} | doses {args.doses}{_given(args)} | "
             f"n {args.n} | seed {args.seed} | variability: {res.info['variability']}")
    if res.info.get("note"):
        print(f"ketasim: note: {res.info['note']}", file=sys.stderr)
        title += f" | {res.info['note']}"
    if res.bands is not None:
        _warn_band_ceiling(res.bands)
    outputs = []
    if args.out is not None:
        outputs.append(_table_output(args.out, res.columns, res.units, title))
    if args.bands is not None:
        b = res.bands
        units = {"time_h": "h"}
        units.update({f"{o}_{q}": b.units[o] for o in b.outputs for q in ("p05", "p50", "p95")})
        btitle = (title + " | bands: 5/50/95 % over subjects, from 4096-bin histograms (<= 0.51 "
                  "%) from 1e-4 to 1e5 in each output's unit (below: 0; at or above: nan)")
        outputs.append((args.bands, "w", lambda fh: write_table(fh, b.columns(), units, btitle,
                                                                 note=BANDS_NOTE)))
    if args.plot is not None:
        from .dosing import expand
        first_h = float(np.min(expand(doses).time_h)) if not isinstance(doses, str) else 0.0
        what = _dose_and_weight(model, doses, weight)
        said = ("weight",) if " kg" in what.rpartition(" · ")[2] else ()
        fig = plot_bands_figure(res.bands, f"{model.name}: {args.n:,} virtual patients "
                                f"({_file_name(args.doses)}{_given(args, said, True)})\n"
                                f"{what}; model-predicted, "
                                "not a dosing recommendation", first_h, model=model,
                                notes=_peaks_between_band_times(res, model, first_h))
        outputs.append((args.plot, "wb", _figure_bytes(fig, args.plot)))
    if args.out == "-":
        written = _write_some(outputs, args)
        _print_summary(res.columns, res.metrics, res.units, args.n, file=sys.stderr,
                       analyte=getattr(args, "analyte", None))
    else:
        # the summary first: one that cannot be printed fails before a file is replaced
        from .cli import _summary_then_files

        text = io.StringIO()
        _print_summary(res.columns, res.metrics, res.units, args.n, file=text,
                       analyte=getattr(args, "analyte", None))
        written = []
        _summary_then_files(text.getvalue().rstrip("\n"),
                            lambda: written.extend(_write_some(outputs, args)))
    if written:
        print("wrote " + ", ".join(written), file=sys.stderr)
    return 0


def _write_some(outputs, args) -> list[str]:
    """Write ``outputs``: a table for ``-`` to standard output first (one that cannot be
    written fails the command before a file is replaced, as simulate's), then the files, all
    or none; a reader that stops reading (``| head``) still gets the files. Returns what was
    written."""
    from .cli import _to_stdout

    files = [o for o in outputs if o[0] != "-"]
    for path, _, write in outputs:
        if path == "-":
            try:
                with _to_stdout():
                    write(sys.stdout)
            except BrokenPipeError:
                _write_all(files, args)
                raise
    _write_all(files, args)
    return ["standard output" if p == "-" else str(p) for p, _, _ in outputs]


def _name_analyte(args, model) -> None:
    """The concentration the metrics describe, named in the table's header line, the figure's
    title and the summary (``args.analyte``) when it is not ``plasma``: a model without an
    observe alias ``plasma`` has its first compartment with a volume described, which may be
    a peripheral one, and the table had said only "cmax: ng/mL"."""
    from .engine import default_analyte

    an = default_analyte(model)
    if getattr(args, "analyte", None) is None and an is not None and an != "plasma":
        args.analyte = an


def _print_summary(columns, metrics, units, n, file=None, analyte=None):
    def fmt(x):      # (a washed-out trough: "<0.001", as the course summary says "<0.005")
        return "<0.001" if 0 < abs(x) < 1e-3 else g4(x)

    print(f"{n:,} subject{'' if n == 1 else 's'}: median [5 %, 95 %] over the course"
          + (f" (concentrations: {analyte})" if analyte else ""), file=file)
    for m in metrics:
        if m not in columns:
            continue
        v = columns[m]
        v = v[np.isfinite(v)]
        if v.size == 0:
            print(f"  {m}: n/a", file=file)
            continue
        q = np.percentile(v, [50, 5, 95])
        print(f"  {m}: {fmt(q[0])} [{fmt(q[1])}, {fmt(q[2])}] {units.get(m, '')}".rstrip(),
              file=file)


def _check_plot_metric(column: str, metrics, varied, per_point: bool) -> None:
    """--plot-metric, before the sweep runs: a column the table will have (a varied name, or
    a metric, whole course or ``_s<k>``, with ``_p50``/``_p05``/``_p95`` when there are
    subjects per point). A misspelt one had been refused only after the whole sweep ran.
    (Whether session k exists is known only from the run.)"""
    from .errors import suggest
    from .population import _base_metric

    if column in varied:
        return
    stats = ("_p50", "_p05", "_p95")
    stat = next((sfx for sfx in stats if column.endswith(sfx)), "")
    base = _base_metric(column)
    session = column[len(base):len(column) - len(stat)]
    if base in metrics and bool(stat) == per_point and (
            not session or (session[2:].isdigit() and int(session[2:]) >= 1)):
        return
    names = list(varied) + [m + sfx for m in metrics for sfx in (stats if per_point else ("",))]
    raise KetasimInputError(f"--plot-metric: no column {column!r}{suggest(column, names)}; "
                            f"expected a metric of --metrics ({', '.join(metrics)})"
                            + (" with _p50, _p05 or _p95 (--n gives each grid point subjects)"
                               if per_point else "")
                            + ", or _s<k> for session k")


@_interruptible
def run_sweep(args) -> int:
    from .cli import _check_output_paths, _check_stdout_open
    from .modelfile import load_model
    from .population import parse_vary, sweep

    _check_output_paths(args, "out", "plot")     # before any work (a run can take minutes)
    _check_stdout_open(args.out)
    model = load_model(args.model)
    if args.seed is not None and not args.n:
        raise KetasimInputError("--seed: only with --n (it draws the subjects at each grid "
                                "point; without --n each point is the typical subject)")
    args.seed = 0 if args.seed is None else args.seed
    vary = [parse_vary(v) for v in args.vary]
    from .cli_teach import _warn, _weight_given, weight_unused

    _warn(weight_unused(model, _weight_given(args) or (
        "varying weight_kg" if "weight_kg" in [nm for nm, _ in vary] else None)))
    doses, course_kw = _doses_arg(args)
    _route_warning(model, doses)
    _check_horizon(args, doses)
    from .courses import is_course_file

    months_varied = "months" in [nm for nm, _ in vary]
    file_months = months_varied and is_course_file(args.doses)
    if months_varied and (course_kw or (file_months and args.months is not None)):
        raise KetasimInputError("--months: months is also varied; give one")
    if file_months:
        doses = args.doses      # the course file's dose table at each varied length
    if course_kw:
        vary = vary + [("months", np.array([course_kw["months"]]))]
    metrics = _metrics_arg(args, model)
    plot_metric = None
    if args.plot_metric is not None and args.plot is None:
        raise KetasimInputError("--plot-metric: only with --plot (it names the heat map's "
                                "column)")
    if args.plot is not None:
        if len(args.vary) != 2:
            raise KetasimInputError(f"--plot: a heat map needs exactly two --vary names, got "
                                    f"{len(args.vary)}")
        plot_metric = args.plot_metric or (metrics[0] + ("_p50" if args.n else ""))
        _check_plot_metric(plot_metric, metrics, [nm for nm, _ in vary], bool(args.n))
    if args.weight is not None and "weight_kg" in [nm for nm, _ in vary]:
        raise KetasimInputError("--weight: weight_kg is also varied (--vary); give one")
    res = sweep(model, doses, vary, metrics=metrics, n=args.n, seed=args.seed,
                params=dict(args.param),
                weight_kg=args.weight,
                chunk_size=args.chunk_size,
                scheduler=args.scheduler, threads=args.threads,
                progress=False if args.quiet else None, _doses_field="--doses")
    columns, units = res.columns, res.units
    if course_kw:     # the fixed --months is a constant column: keep it, it documents the run
        pass
    _name_analyte(args, model)
    title = (f"ketasim sweep | model {model.name} | doses {args.doses}{_given(args)} | "
             f"{res.info['points']} grid points"
             + (f" | n {args.n} per point, seed {args.seed} | variability: "
                f"{res.info['variability']}" if args.n else " | typical subject"))
    outputs = [_table_output(args.out, columns, units, title)]
    if args.plot is not None:
        if plot_metric not in columns:
            from .errors import suggest
            raise KetasimInputError(f"--plot-metric: no column {plot_metric!r}"
                                    f"{suggest(plot_metric, list(columns))}")
        from .population import SweepResult
        two = SweepResult(columns={k: v for k, v in columns.items()}, units=units,
                          varied=tuple(nm for nm, _ in vary[:2]), metrics=res.metrics,
                          info=res.info)
        from .plotting import analyte_labels, main_analyte

        names = analyte_labels(model)
        an = getattr(args, "analyte", None) or main_analyte(model)
        fixed = _dose_and_weight(model, doses, args.weight, [nm for nm, _ in vary])
        # (the weight: on the dose line when the model uses it, not twice)
        said = ("weight",) if " kg" in fixed.rpartition(" · ")[2] else ()
        fig = plot_heatmap(two, plot_metric, f"{model.name}, {_file_name(args.doses)}"
                           f"{_given(args, said, True)}: "
                           f"{plot_metric}"
                           + ((" (" + next((w for sfx, w in (("_p05", "5th percentile"),
                                                             ("_p95", "95th percentile"))
                                             if plot_metric.endswith(sfx)), "median")
                               + f" of {args.n} subjects)") if args.n else
                              " (typical subject)")
                           + (f"\n{fixed}" if fixed else "")
                           + ("\nSCHEMATIC (illustrative, not fitted to data);\na research "
                              "tool, not a dosing recommendation"
                              if _schematic_metric(plot_metric) else
                              "\nmodel-predicted; a research tool, not a dosing recommendation"),
                           analyte=names.get(an, an),
                           calibration=getattr(model, "default_calibration", "")
                           or next(iter(getattr(model, "calibrations", None) or {}), None))
        outputs.append((args.plot, "wb", _figure_bytes(fig, args.plot)))
        if not np.isfinite(np.asarray(columns[plot_metric], dtype=float)).any():
            print(f"ketasim: warning: --plot-metric {plot_metric} is not a number at any grid "
                  "point: the heat map has no colours (choose another metric)", file=sys.stderr)
    _write_some(outputs, args)
    print(f"wrote {'standard output' if args.out == '-' else args.out} "
          f"({res.info['points']} grid points)"
          + (f" and {args.plot}" if args.plot else ""), file=sys.stderr)
    return 0
