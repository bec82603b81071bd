"""Figures from Results (matplotlib). Functions return a Figure or Axes; nothing calls
``plt.show()`` and nothing needs a display (figures are built on the Agg canvas)."""

from __future__ import annotations

import textwrap

import numpy as np

from .dosing import expand

__all__ = ["plot_course", "plot_concentrations", "DISCLAIMER"]

DISCLAIMER = ("ketasim: teaching and research tool, not a dosing recommendation. "
              "Occupancy is model-predicted; glutamate and plasticity are SCHEMATIC "
              "(illustrative parameters, not fitted to data).")
_COLORS = {"plasma": "#1f5fa8", "metabolite": "#d07a12", "occupancy": "#6a3d9a",
           "glutamate": "#2e8b57", "plasticity": "#b22222"}


def _time_axis(t):
    if t[-1] - t[0] > 72:
        return t / 24.0, "time (days)"
    return t, "time (h)"


def _band(ax, x, y, color, label):
    """A line for one subject; median and 5-95 % band for a population (N, T)."""
    if y.ndim == 1:
        ax.plot(x, y, color=color, lw=1.3, label=label)
        return
    lo, med, hi = np.percentile(y, [5, 50, 95], axis=0)
    ax.fill_between(x, lo, hi, color=color, alpha=0.25, lw=0, label=f"{label} (5-95 %)")
    ax.plot(x, med, color=color, lw=1.3, label=f"{label} (median)")


def _dose_marks(ax, result, scale):
    if result.doses is None or len(result.doses) == 0:
        return
    d = expand(result.doses)
    t = d.time_h[d.time_h <= result.times[-1]]
    if t.size:
        ax.plot(t / scale, np.ones_like(t), transform=ax.get_xaxis_transform(), ls="none",
                marker="v", ms=5, color="0.35", clip_on=False, label="dose")


def plot_concentrations(result, names=None, ax=None, unit="ng/mL"):
    """Concentration-time curves of ``names`` (default: ``plasma`` and ``metabolite`` when
    defined, else every compartment) on ``ax``; returns the Axes."""
    from matplotlib.figure import Figure

    if ax is None:
        ax = Figure(figsize=(8, 3.5), layout="constrained").add_subplot()
    model = result.model
    if names is None:
        names = [n for n in ("plasma", "metabolite") if n in result.names] or \
            [n for n in result.names if n in model.concentration_names][:4]
    x, xlabel = _time_axis(result.times)
    scale = result.times[-1] / x[-1] if x[-1] else 1.0
    for i, nm in reversed(list(enumerate(names))):
        label = {"plasma": "plasma (parent)", "metabolite": "metabolite"}.get(nm, nm)
        _band(ax, x, result.concentration(nm, unit), _COLORS.get(nm, f"C{i}"), label)
    _dose_marks(ax, result, scale)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"concentration ({unit})")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    return ax


def _draw(kind, ax, result, x, sel):
    """Draw one panel ("pk", "occupancy" or "schematic") of the points ``sel`` against ``x``."""
    if kind == "pk":
        names = [n for n in ("plasma", "metabolite") if n in result.names] or \
            [n for n in result.names if n in result.model.concentration_names][:4]
        for i, nm in reversed(list(enumerate(names))):
            label = {"plasma": "plasma (parent)", "metabolite": "metabolite"}.get(nm, nm)
            _band(ax, x, result.concentration(nm)[..., sel], _COLORS.get(nm, f"C{i}"), label)
        ax.set_ylabel("concentration (ng/mL)")
        ax.set_ylim(bottom=0)
        handles = [ax]
    elif kind == "occupancy":
        _band(ax, x, result.occupancy[..., sel] * 100.0, _COLORS["occupancy"], "NMDA occupancy")
        ax.set_ylabel("occupancy (%)")
        ax.set_ylim(0, 100)
        handles = [ax]
    else:
        _band(ax, x, result.glutamate[..., sel], _COLORS["glutamate"],
              "glutamate signal (baseline 1)")
        ax.set_ylabel("glutamate (relative)")
        ax.set_ylim(bottom=0.9)
        ax2 = ax.twinx()
        _band(ax2, x, result.plasticity[..., sel], _COLORS["plasticity"], "plasticity index")
        ax2.set_ylabel("plasticity index (0-1)")
        ax2.set_ylim(0, 1)
        handles = [ax, ax2]
    ax.grid(alpha=0.3)
    return handles


_TITLES = {"occupancy": "NMDA-receptor occupancy — model-predicted (effect site, unbound, "
                        "competitive binding; Ki: Ebert 1997)",
           "schematic": "SCHEMATIC glutamate surge and plasticity (illustrative, not fitted "
                        "to data)"}


def plot_course(result, title: str | None = None, figsize=(12, 8.5), closeup_h: float = 8.0):
    """The educators' figure: plasma levels, model-predicted NMDA occupancy and the schematic
    glutamate/plasticity response of a course, with dose markers and the model's source. For a
    course longer than three days a right-hand column shows the first ``closeup_h`` hours of
    the first session.

    Returns a matplotlib Figure (save it with ``fig.savefig(path)``).
    """
    from matplotlib.figure import Figure

    kinds = ["pk"] + ["occupancy"] * ("occupancy" in result.names) + \
        ["schematic"] * ("glutamate" in result.names)
    n = len(kinds)
    model = result.model
    t = result.times
    x, xlabel = _time_axis(t)
    scale = t[-1] / x[-1] if x[-1] else 1.0
    first = float(expand(result.doses).time_h.min()) if result.doses is not None and len(
        result.doses) else float(t[0])
    zoom = (t >= first) & (t <= first + closeup_h)
    closeup = scale != 1.0 and int(zoom.sum()) >= 5
    fig = Figure(figsize=(figsize[0] if closeup else figsize[0] * 0.8,
                          figsize[1] * (0.45 + 0.55 * n / 3)), layout="constrained")
    axes = fig.subplots(n, 2 if closeup else 1, squeeze=False,
                        width_ratios=[3, 1] if closeup else None)
    for r, kind in enumerate(kinds):
        ax = axes[r, 0]
        handles = _draw(kind, ax, result, x, slice(None))
        if r:
            ax.sharex(axes[0, 0])
        if kind == "pk":
            _dose_marks(ax, result, scale)
            sampling = model.meta.get("sampling")
            ax.set_title("Plasma concentration" + (f" (model: {sampling} sampling)"
                                                   if sampling else ""), fontsize=10, loc="left")
        else:
            ax.set_title(_TITLES[kind], fontsize=10, loc="left")
        h, lab = [], []
        for a in handles:
            hh, ll = a.get_legend_handles_labels()
            h += hh
            lab += ll
        ax.legend(h, lab, loc="upper right", fontsize=8, frameon=False)
        if r < n - 1:
            ax.tick_params(labelbottom=False)
        if closeup:
            axz = axes[r, 1]
            _draw(kind, axz, result, t[zoom] - first, zoom)
            axz.set_title("first session, close-up" if r == 0 else "", fontsize=10, loc="left")
            if r:
                axz.sharex(axes[0, 1])
            if r < n - 1:
                axz.tick_params(labelbottom=False)
            axz.set_xlim(0, closeup_h)
    axes[-1, 0].set_xlabel(xlabel)
    if closeup:
        axes[-1, 1].set_xlabel("hours after the first dose")
    if title is None:
        title = model.meta.get("title", model.name)
        if result.population:
            title += f" — {result.n_subjects} subjects"
    fig.suptitle(title, fontsize=12)
    src = model.meta.get("citation", "")
    lines = textwrap.wrap(f"Source: {src}", 190) if src else []
    lines += textwrap.wrap(DISCLAIMER, 190)
    fig.text(0.01, 0.0, "\n".join(lines), fontsize=6.5, color="0.3", va="bottom", ha="left")
    fig.get_layout_engine().set(rect=(0, 0.05, 1, 0.95))
    return fig
