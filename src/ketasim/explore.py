"""A live explorer for teaching: change dose, weight, schedule and preset, see the course.

Matplotlib widgets only (no extra dependency): sliders for the dose, the body weight and the
maintenance interval, radio buttons for the preset (which also sets the route), and a "miss
session k" slider. Every change re-simulates the whole course on a coarse 20-minute grid with
only the outputs drawn (main analyte, occupancy, plasticity), which takes a few tens of
milliseconds once the kernels are compiled. Where the figure has an event loop (a browser page,
a desktop window, ipympl), changes that come faster than that are coalesced: the course is
re-simulated once, for the latest settings (:meth:`Explorer.request_update`).

Three ways to run it:

- in a browser: ``ketasim explore --port 8765 [--no-browser]`` (matplotlib's WebAgg backend,
  which needs tornado) prints the URL to open;
- in a desktop window: ``ketasim explore`` where a display is available;
- in Jupyter: ``ketasim.explore()`` (interactive with ``%matplotlib widget``/ipympl).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

__all__ = ["Explorer", "explore", "serve", "window", "PRESETS", "DEFAULT_PORT"]

DEFAULT_PORT = 8765
GRID_STEP_H = 1 / 3          # 20-minute grid plus every session start and infusion end:
#                              smooth at course scale, fast to recompute (the schematic
#                              integrator's cost grows with the number of output times)
PD_RTOL = 1e-3               # schematic response tolerance: a teaching view, not a table
MONTHS = 6.0
_compiled_loaded = False     # set by the first update in this process
#: how long a change waits before the course is re-simulated, ms (where the figure has an event
#: loop): the changes that come in meanwhile (a slider's drag queues one per mouse motion) are
#: taken together, and only the latest settings are simulated
UPDATE_DELAY_MS = 40
#: a change not yet simulated after this long, s, is simulated with the next change at once: a
#: busy server's timer can wait (tornado reads a page's messages as long as they keep coming,
#: without a pause for a timer), while the figure follows a long drag
UPDATE_MAX_WAIT_S = 0.25
DESIGN_INCHES = (13.0, 8.5)  # the figure's size as laid out; smaller: text scales down with it
TITLE_MARGIN = 0.02          # the title keeps this fraction of the figure's width clear each side

# preset -> how the explorer doses it: route, dose unit, slider range and default
PRESETS = {
    "ketamine-iv": {"label": "ketamine IV", "route": "iv", "unit": "mg/kg",
                    "range": (0.1, 1.0), "default": 0.5, "step": 0.05},
    "esketamine-iv": {"label": "esketamine IV", "route": "iv", "unit": "mg/kg",
                      "range": (0.1, 1.0), "default": 0.25, "step": 0.05},
    "esketamine-nasal": {"label": "esketamine nasal", "route": "intranasal", "unit": "mg",
                         "range": (28.0, 112.0), "default": 56.0, "step": 28.0},
}


def _fast_kwargs():
    """A looser tolerance for the schematic response: the explorer redraws on every change."""
    return {"pd_rtol": PD_RTOL}


def _guard_pixel_ratio(canvas) -> None:
    """A browser's device pixel ratio that is not a number in (0, 16] is ignored: WebAgg
    takes any value a page sends, and one message with 0 left the figure undrawable (a
    division by zero) for every later page until the server was restarted. A ratio that
    would make the canvas larger than :data:`MAX_CANVAS_PX` a side (at the figure's present
    size) is lowered to the largest that does not: 16 had made the explorer's canvas 20800 x
    13600 pixels, every drawing 13 s and 2.7 GB, for every page (a page's resize is held to
    the same size, :func:`_guard_resize`)."""
    set_ratio = getattr(canvas, "_handle_set_device_pixel_ratio", None)
    if set_ratio is None:           # pragma: no cover - another matplotlib
        return

    def guarded(ratio):
        try:
            r = float(ratio)
        except (TypeError, ValueError):
            return
        if not 0.0 < r <= 16.0:
            return
        fig = canvas.figure
        side = max(fig.get_size_inches()) * getattr(fig, "_original_dpi", fig.dpi)
        if side > 0 and r * side > MAX_CANVAS_PX:
            r = max(1.0, MAX_CANVAS_PX / side)
        set_ratio(r)

    canvas._handle_set_device_pixel_ratio = guarded
    _guard_resize(canvas)


MAX_CANVAS_PX = 8192     # a page may ask for a canvas up to this many pixels a side


def _guard_resize(canvas) -> None:
    """A page's resize to a size that is not a number, or gives a canvas under 50 or over
    MAX_CANVAS_PX pixels a side (its size times the pixel ratio), is ignored: WebAgg takes any
    size, and one message of 30000 x 30000 made every later drawing take 49 s and 8 GB, one of
    0 x 0 left the figure undrawable for every later page.

    The frame drawn after a page's resize is the whole figure: the page cleared its canvas to
    resize it, and WebAgg sends only what changed since the last frame while the figure's
    size stays the same. A page that resized its canvas after it had drawn the figure (a
    browser that lays the page out late: on a busy machine, or a tab opened in the background,
    laid out when shown) to the size the figure already had (another page in a window of the
    same size) got a frame with nothing in it and stayed blank until something changed."""
    resize = getattr(canvas, "handle_resize", None)
    if resize is None:              # pragma: no cover - another matplotlib
        return

    def guarded(event):
        try:
            r = float(getattr(canvas, "device_pixel_ratio", 1.0) or 1.0)
            w = float(event.get("width", 800)) * r
            h = float(event.get("height", 800)) * r
        except (TypeError, ValueError, AttributeError):
            return
        if 50.0 <= w <= MAX_CANVAS_PX and 50.0 <= h <= MAX_CANVAS_PX:
            canvas._force_full = True   # (WebAgg's own flag: the next frame is whole)
            resize(event)

    canvas.handle_resize = guarded


def _flush_before_drawing(ex) -> None:
    """A page's request for a frame first simulates a change still pending (see
    :meth:`Explorer.request_update`): the frame shows the sliders' present settings, not the
    course before them with the sliders moved. (A page asks for a frame after each change it is
    told of; its requests and a drag's motions, coming without a pause, keep tornado from the
    timer that would simulate the change.)"""
    canvas = ex.fig.canvas
    handle = getattr(canvas, "handle_draw", None)
    if handle is None:              # pragma: no cover - another matplotlib
        return

    def guarded(event):
        try:
            ex.flush()
        except Exception as exc:        # (the frame is drawn all the same)
            _say(f"could not re-simulate the course: {type(exc).__name__}: {exc}")
        handle(event)

    canvas.handle_draw = guarded


def _guard_sockets(manager) -> None:
    """A page that has gone (a closed tab, a dropped connection) is skipped when a frame or an
    event is sent: WebAgg sends each one to every page, and a send to a page that had just gone
    raised out of the drawing, so the page that asked for the frame was disconnected too (it
    froze), and a traceback was printed; a send that failed on the way was reported again
    later ("Task exception was never retrieved"). The page is forgotten when its connection's
    close is handled, as before.

    Frames go to every page as binary: a page may say it takes none, and WebAgg's text
    fallback for it fails (Python 2 code), which raised out of every drawing and disconnected
    every other page that asked for a frame (every browser takes binary frames)."""
    add = getattr(manager, "add_web_socket", None)
    if add is None:                 # pragma: no cover - another matplotlib
        return
    from tornado.iostream import StreamClosedError
    from tornado.websocket import WebSocketClosedError

    def retrieved(fut):
        if not fut.cancelled():
            fut.exception()         # (a page gone on the way: nothing to report)

    def add_guarded(ws):
        write = ws.write_message

        def write_message(message, binary=False):
            try:
                fut = write(message, binary=binary)
            except (WebSocketClosedError, StreamClosedError):
                return None
            if hasattr(fut, "add_done_callback"):
                fut.add_done_callback(retrieved)
            return fut

        ws.write_message = write_message
        ws.send_binary = lambda blob: write_message(blob, binary=True)
        add(ws)

    manager.add_web_socket = add_guarded


def _say(message: str) -> None:
    print(f"ketasim explorer: {message}", file=sys.stderr, flush=True)


#: Least size of the figure in a browser page, CSS pixels: a smaller window scrolls (below it
#: the text, scaled with the figure by :meth:`Explorer.fit_text`, would be too small to read).
MIN_PAGE_PX = (640, 420)

#: Added to matplotlib's page script (``/js/mpl.js``) by :func:`serve`: the figure fills the
#: browser window's room under the page header, less the toolbar beneath it, instead of the
#: figure's 1300 x 850 pixels (an 800 x 600 window scrolled both ways to see the sliders), and
#: follows the window when it is resized. Where the server sends the figure's size (when a page
#: connects), the page sets its canvas to the window's room instead; matplotlib's own resize
#: observer then asks the server for a figure of that size, as when the canvas's corner is
#: dragged (which still works).
FIT_WINDOW_JS = """
;(function () {
    var MIN_W = %d, MIN_H = %d, figs = [];
    function fit(fig) {
        var div = fig.canvas_div;
        if (!div || !fig.root) { return; }
        var doc = document.documentElement;
        var box = div.getBoundingClientRect();
        var bar = fig.root.querySelector('.mpl-toolbar');
        var left = box.left + window.scrollX, top = box.top + window.scrollY;
        var w = doc.clientWidth - 2 * left - 2;
        var h = doc.clientHeight - top - (bar ? bar.offsetHeight : 0) - left - 4;
        div.style.width = Math.floor(Math.max(MIN_W, w)) + 'px';
        div.style.height = Math.floor(Math.max(MIN_H, h)) + 'px';
    }
    var handle = mpl.figure.prototype.handle_resize;
    mpl.figure.prototype.handle_resize = function (fig, msg) {
        if (!msg['forward']) { return handle.call(this, fig, msg); }
        if (figs.indexOf(fig) < 0) { figs.push(fig); }
        fit(fig);       // (the new size is sent to the server, which draws the figure anew)
    };
    // (once the window has kept its size for a moment: each new size is a new figure drawn
    // by the server, and the canvas is blank until it comes)
    var timer = null;
    window.addEventListener('resize', function () {
        clearTimeout(timer);
        timer = setTimeout(function () { figs.forEach(fit); }, 250);
    });
})();
""" % MIN_PAGE_PX


def _guard_requests() -> None:
    """Requests the explorer's server cannot answer get a short error, not a traceback in the
    terminal: a page or download of a figure number that does not exist (``/2``,
    ``/2/download.png``: "404, no figure 2"), a download in a format matplotlib cannot write
    here (``download.xyz``; ``download.pgf`` without LaTeX), a connection to a figure that
    does not exist, and a page's message that is not one WebAgg understands (not JSON, no
    ``type``, fields missing, of the wrong kind or out of range, such as ``"x": Infinity``): it
    is ignored, with one line saying so,
    and the page stays connected. Each of these had printed a traceback and a malformed
    message had dropped the connection of the page that sent it. (And the page script served
    ends with :data:`FIT_WINDOW_JS`: the figure fits the browser window.)"""
    from matplotlib._pylab_helpers import Gcf
    from matplotlib.backends.backend_webagg import WebAggApplication
    from matplotlib.backends.backend_webagg_core import FigureManagerWebAgg

    if getattr(WebAggApplication, "_ketasim_guarded", False):
        return
    WebAggApplication._ketasim_guarded = True
    page_get = WebAggApplication.SingleFigurePage.get
    download_get = WebAggApplication.Download.get
    ws = WebAggApplication.WebSocket
    ws_open, ws_close, ws_message = ws.open, ws.on_close, ws.on_message

    def answer(handler, status: int, text: str) -> None:
        """A short plain-text answer with its status."""
        handler.set_status(status)
        handler.set_header("Content-Type", "text/plain; charset=UTF-8")
        handler.finish(f"{status}: {text}\n")

    def manager_of(fignum):
        """The figure's manager, or None. (A number of over 4,300 digits, which int() refuses,
        had printed a traceback and answered 500: no figure has such a number.)"""
        return Gcf.get_fig_manager(int(fignum)) if len(fignum) <= 100 else None

    def shown(fignum) -> str:
        return str(int(fignum)) if len(fignum) <= 100 else fignum[:20] + "..."

    def missing(handler, fignum) -> bool:
        if manager_of(fignum) is not None:
            return False
        answer(handler, 404, f"no figure {shown(fignum)}; the explorer is at /")
        return True

    def get_page(self, fignum):
        if not missing(self, fignum):
            page_get(self, fignum)

    def get_download(self, fignum, fmt):
        if missing(self, fignum):
            return
        canvas = Gcf.get_fig_manager(int(fignum)).canvas
        known = canvas.get_supported_filetypes()
        if fmt not in known:
            answer(self, 404, f"no download as {fmt!r}; formats: {', '.join(sorted(known))}")
            return
        try:
            download_get(self, fignum, fmt)
        except Exception as exc:        # (a writer that needs a tool not installed: pgf)
            _say(f"cannot write the figure as {fmt}: {exc}")
            self.clear()
            answer(self, 500, f"cannot write the figure as {fmt} here: {exc}")

    def open_ws(self, fignum):
        if manager_of(fignum) is None:
            self.manager = None
            self.close(4004, f"no figure {shown(fignum)}")
            return
        ws_open(self, fignum)

    def close_ws(self):
        if getattr(self, "manager", None) is not None:
            ws_close(self)

    def on_message(self, message):
        if getattr(self, "manager", None) is None:     # (closed: no figure of that number)
            return
        try:
            ws_message(self, message)
        except Exception as exc:
            # (any error: "x": Infinity (OverflowError) or {"type": "event"} (WebAgg's
            # dispatcher calling itself: RecursionError) had printed a traceback and cut the
            # page's connection)
            text = message if len(message) <= 80 else message[:77] + "..."
            _say(f"ignored a message from a page that it cannot use: {text!r} "
                 f"({type(exc).__name__}: {exc})")

    def get_js(self):
        # matplotlib's page script, then the explorer's: the figure fits the browser window
        self.set_header("Content-Type", "application/javascript")
        self.write(FigureManagerWebAgg.get_javascript() + FIT_WINDOW_JS)

    WebAggApplication.SingleFigurePage.get = get_page
    WebAggApplication.Download.get = get_download
    WebAggApplication.MplJs.get = get_js
    ws.open, ws.on_close, ws.on_message = open_ws, close_ws, on_message


def interval_default(model_name: str) -> float:
    """The maintenance interval the explorer starts with, days: 28 for an IV preset, 14 for
    the nasal spray (the label's maintenance is every week or every two weeks)."""
    return 28.0 if PRESETS[model_name]["route"] == "iv" else 14.0


#: the nasal label's starting dose (Spravato): 56 mg at the first session given, whatever the
#: dose after it (56 or 84 mg)
NASAL_START_MG = 56.0


def course_doses(model_name: str, dose: float, weight_kg: float, interval_days: float,
                 missed: int = 0, months: float = MONTHS):
    """The explorer's course: the standard IV course (IV presets; ``dose`` in mg/kg) or the
    Spravato schedule (nasal; ``dose`` in mg), maintenance every ``interval_days``, with
    session ``missed`` (1-based; 0 = none) left out.

    Nasal: the first session *given* is the label's 56 mg starting dose (``dose`` when it is
    below 56 mg), ``dose`` after it. With session 1 missed, treatment starts at session 2,
    which is then the 56 mg starting dose (the label doses day 1 of treatment at 56 mg: a
    course whose first session is missed does not start at 84 mg)."""
    from .courses import STANDARD_IV_PHASES, Phase, course_from_phases
    from .dosing import Doses

    spec = PRESETS[model_name]
    if spec["route"] == "iv":
        d = course_from_phases(list(STANDARD_IV_PHASES) + [Phase(every_days=interval_days)],
                               dose * weight_kg, "iv", duration_h=40 / 60, months=months)
    else:
        d = course_from_phases([Phase(weeks=4, per_week=2), Phase(weeks=4, per_week=1),
                                Phase(every_days=interval_days, after_days=7.0)],
                               float(dose), "intranasal", months=months,
                               first_amount_mg=min(NASAL_START_MG, float(dose)))
    if 1 <= missed <= len(d):
        keep = np.arange(len(d)) != missed - 1
        amounts = d.amount_mg[keep].copy()
        if missed == 1 and spec["route"] != "iv" and amounts.size:
            amounts[0] = d.amount_mg[0]        # the starting dose moves to the first given
        d = Doses(d.time_h[keep], amounts, tuple(np.asarray(d.route)[keep]),
                  d.duration_h[keep], source=d.source)
    return d


def first_given_note(model_name: str, dose: float, missed: int, n_sessions: int) -> str:
    """The title's words on the first session given when session 1 is missed from a nasal
    course: it is the starting dose (empty otherwise)."""
    if PRESETS[model_name]["route"] == "iv" or missed != 1 or n_sessions < 2:
        return ""
    start = min(NASAL_START_MG, float(dose))
    return f"; session 2 is then the first given, at the {start:g} mg starting dose"


def check_model(model, field: str = "explore: model") -> None:
    """Refuse a model the explorer does not know (it knows how to dose each of
    :data:`PRESETS`), before anything is imported or started; the message names ``field``."""
    if not isinstance(model, str) or model not in PRESETS:
        from .errors import KetasimInputError, suggest
        name = model if isinstance(model, str) else getattr(model, "name", None)
        shown = (repr(model) if isinstance(model, str) or name is None   # (a Model: its
                 else f"{type(model).__name__} {name!r}")           # name, not its repr)
        raise KetasimInputError(f"{field} {shown}{suggest(str(name), PRESETS)}; "
                                f"expected the name of one of {', '.join(PRESETS)} (the "
                                "explorer knows how to dose each)")


class Explorer:
    """The explorer's figure, widgets and state.

    Attributes
    ----------
    fig : Figure
    sliders : dict name -> Slider (``dose``, ``weight``, ``interval``, ``miss``)
    preset : RadioButtons
    lines : dict name -> Line2D (``conc``, ``occ``, ``plast``) and ``peaks`` (markers)
    last_update_s : float   seconds the last re-simulation and redraw took
    """

    def __init__(self, model: str = "ketamine-iv", fig=None):
        import matplotlib.pyplot as plt
        from matplotlib.widgets import RadioButtons, Slider

        from .modelfile import load_model
        from .plotting import BODY_PT, OKABE_ITO, _style

        check_model(model)
        self._models = {}
        self._load = load_model
        self.model_name = model
        self._kw = _fast_kwargs()
        self.fig = fig if fig is not None else plt.figure(figsize=DESIGN_INCHES)
        fig = self.fig
        fig.subplots_adjust(left=0.08, right=0.78, top=0.88, bottom=0.36, hspace=0.35)
        self.ax_conc, self.ax_occ, self.ax_plast = fig.subplots(3, 1, sharex=True)
        for ax in (self.ax_conc, self.ax_occ, self.ax_plast):
            _style(ax)
        c = self.ax_conc
        self.lines = {
            "conc": c.plot([], [], color=OKABE_ITO["blue"], lw=1.4)[0],
            "peaks": c.plot([], [], ls="none", marker="o", ms=6, color=OKABE_ITO["blue"])[0],
            "occ": self.ax_occ.plot([], [], color=OKABE_ITO["green"], lw=1.4)[0],
            "plast": self.ax_plast.plot([], [], color=OKABE_ITO["black"], lw=2)[0],
        }
        c.set_ylabel("ng/mL", fontsize=BODY_PT)
        self.ax_occ.set_ylabel("% of receptors", fontsize=BODY_PT)
        self.ax_occ.set_title("NMDA occupancy, MODEL-PREDICTED", loc="left",
                              fontsize=BODY_PT)     # (and its Ki calibration: update)
        self.ax_plast.set_ylabel("index (0-1)", fontsize=BODY_PT)
        self.ax_plast.set_title("SCHEMATIC plasticity index (illustrative, not fitted)",
                                loc="left", fontsize=BODY_PT)
        self.ax_plast.set_xlabel("days from the first session", fontsize=BODY_PT)
        fig.text(0.01, 0.005, "ketasim explorer: a teaching tool, not a dosing "
                 "recommendation. 20-minute grid; peaks exact.", fontsize=10, color="0.35")

        spec = PRESETS[model]
        self.sliders = {}

        def slider(name, rect, label, lo, hi, v, step, fmt):
            ax = fig.add_axes(rect)
            s = Slider(ax, label, lo, hi, valinit=v, valstep=step, valfmt=fmt)
            s.label.set_fontsize(BODY_PT)
            s.valtext.set_fontsize(BODY_PT)
            self.sliders[name] = s
            return s

        slider("dose", [0.2, 0.25, 0.48, 0.03], f"dose ({spec['unit']})", *spec["range"],
               spec["default"], spec["step"], "%g")
        slider("weight", [0.2, 0.19, 0.48, 0.03], "weight (kg)", 40, 130, 70, 1, "%g")
        slider("interval", [0.2, 0.13, 0.48, 0.03], "maintenance every (days)", 7, 56,
               interval_default(model), 1, "%g")
        # up to the longest course the sliders make (maintenance every 7 days: 30-31 sessions)
        from .engine import session_starts

        most = max(len(session_starts(course_doses(n, p["default"], 70.0, 7.0)))
                   for n, p in PRESETS.items())
        slider("miss", [0.2, 0.07, 0.48, 0.03], "miss session (0 = none)", 0, most, 0, 1,
               "%d")
        rax = fig.add_axes([0.81, 0.55, 0.17, 0.2])
        rax.set_title("preset / route", fontsize=BODY_PT, loc="left")
        names = list(PRESETS)
        self.preset = RadioButtons(rax, [PRESETS[n]["label"] for n in names],
                                   active=names.index(model))
        for t in self.preset.labels:
            t.set_fontsize(BODY_PT)
        self.timing_text = fig.text(0.81, 0.5, "", fontsize=10, color="0.35", va="top")
        for s in self.sliders.values():
            s.on_changed(self._on_change)
        self.preset.on_clicked(self._on_preset)
        #: matplotlib's key bindings (keymap.* names of rcParams) the figure ignores; the
        #: browser view adds keymap.quit and keymap.quit_all (see :meth:`_guard_keys`)
        self.ignored_keymaps = {"keymap.xscale", "keymap.yscale"}
        self._guard_keys()
        self.last_update_s = float("nan")
        self._result = None
        self._metrics = None
        self._scale = 1.0
        self._pending = False           # a change not yet simulated (see request_update)
        self._timer = None              # (canvas, single-shot timer) of the coalesced update
        self._timer_due = False         # that timer is started and has not fired
        self._pending_since = 0.0       # (perf_counter) when the pending change came
        self.update()
        # every text's size at the design size of the figure (tick labels: BODY_PT); a smaller
        # figure (a small browser window or desktop window, a notebook cell) scales them down
        from matplotlib.text import Text

        ticks = {id(lb) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
                 for tick in axis.get_major_ticks() + axis.get_minor_ticks()
                 for lb in (tick.label1, tick.label2)}
        self._text_pt = [(t, t.get_fontsize()) for t in fig.findobj(Text)
                         if id(t) not in ticks]
        self._tick_pt = BODY_PT
        fig.canvas.mpl_connect("resize_event", lambda _event: self.fit_text())
        self.fit_text()

    def _guard_keys(self) -> None:
        """Keys bound by matplotlib that would break the explorer are ignored: ``k``/``L``
        and ``l`` (keymap.xscale, keymap.yscale) put an axis on a log scale, where the
        explorer's limits (from -2 days, from 0 ng/mL) left the figure undrawable; and, in
        the browser view, ``q`` or ``ctrl+w`` (keymap.quit) closed the figure for every
        page while the server kept running. Every other binding (home, pan, zoom, grid,
        save, full screen) works as in any matplotlib figure."""
        import matplotlib
        from matplotlib.backend_bases import key_press_handler

        manager = getattr(self.fig.canvas, "manager", None)
        cid = getattr(manager, "key_press_handler_id", None)
        if cid is None:                  # (no default bindings: nothing to guard)
            return
        self.fig.canvas.mpl_disconnect(cid)

        def handler(event):
            if any(event.key in matplotlib.rcParams[k] for k in self.ignored_keymaps):
                return
            key_press_handler(event)

        manager.key_press_handler_id = self.fig.canvas.mpl_connect("key_press_event",
                                                                   handler)

    # ---------------------------------------------------------------- layout
    def fit_text(self) -> float:
        """Scale every text with the figure: the layout is in fractions of the figure, so
        text of fixed size ran off its edges and over the sliders in a figure smaller than
        :data:`DESIGN_INCHES` (labels cut at the left, the preset names at the right). Text
        keeps its size in a larger figure. Called on every resize; returns the scale."""
        w, h = self.fig.get_size_inches()
        s = float(min(1.0, w / DESIGN_INCHES[0], h / DESIGN_INCHES[1]))
        if not s > 0:                    # (a figure of no size: nothing to fit)
            return self._scale
        self._scale = s
        for t, pt in self._text_pt:
            t.set_fontsize(pt * s)
        for ax in (self.ax_conc, self.ax_occ, self.ax_plast):
            ax.tick_params(labelsize=self._tick_pt * s)
        self._fit_title()
        return s

    def _fit_title(self) -> None:
        """The title at 14 pt (scaled with the figure), in lines that leave
        :data:`TITLE_MARGIN` of the figure's width clear at each side, measured as drawn; a
        note (a missed session) too long for the first line starts the second. (Wrapped by
        matplotlib, to the figure's very edges, a two-line title had run to 2 pixels of the
        left edge.)"""
        from .plotting import _wrap_to

        head, note = getattr(self, "_title", ("", ""))
        if not (head or note):
            return
        fig = self.fig
        pt = 14 * self._scale
        room = (1 - 2 * TITLE_MARGIN) * fig.bbox.width

        def lines(text):
            return _wrap_to(fig, text, pt, room, hyphens=False, bold=True)

        shown = lines(head + note)
        if len(shown) > 1 and note:
            shown = lines(head) + lines(note.removeprefix(" · "))
        fig.suptitle("\n".join(shown), fontsize=pt, fontweight="bold")

    # ---------------------------------------------------------------- state
    @property
    def model(self):
        if self.model_name not in self._models:
            self._models[self.model_name] = self._load(self.model_name)
        return self._models[self.model_name]

    def values(self) -> dict:
        return {k: float(s.val) for k, s in self.sliders.items()}

    def doses(self):
        v = self.values()
        return course_doses(self.model_name, v["dose"], v["weight"], v["interval"],
                            int(round(v["miss"])))

    @property
    def result(self):
        """The simulated course drawn (a :class:`~ketasim.result.Result`), for the sliders'
        present values: a pending change is simulated first (:meth:`flush`)."""
        self.flush()
        return self._result

    @property
    def metrics(self) -> dict:
        """The exact per-session peaks drawn (:func:`~ketasim.engine.session_metrics`), for the
        sliders' present values: a pending change is simulated first (:meth:`flush`)."""
        self.flush()
        return self._metrics

    # ---------------------------------------------------------------- callbacks
    def _on_change(self, _value):
        self.request_update()

    def request_update(self) -> None:
        """Re-simulate for the settings as they are once the changes coming in are taken.

        Where the figure has an event loop (a browser page through WebAgg, a desktop window,
        ipympl), the course is re-simulated by a single-shot timer :data:`UPDATE_DELAY_MS`
        after the first change not yet simulated, for the sliders' values *then*: every change
        that came meanwhile is in it, and a change that comes during a re-simulation starts
        another after it. (Every change had re-simulated the course at once: a drag of the dose
        slider queued one re-simulation per mouse motion, and a browser page waited tens of
        seconds for the server behind them on a loaded machine.) Without an event loop (Agg,
        ``%matplotlib inline``) no timer can fire, and the course is re-simulated at once, as
        by :meth:`update`. :meth:`flush` re-simulates a pending change now, as does a change
        that comes when one has waited :data:`UPDATE_MAX_WAIT_S` (the timer of a busy server
        can wait), and a browser page's request for a frame (:func:`serve`)."""
        now = time.perf_counter()
        if not self._pending:
            self._pending_since = now
        self._pending = True
        if self._timer_due:
            if now - self._pending_since >= UPDATE_MAX_WAIT_S:
                self.flush()            # (the timer, when it fires, finds nothing to do)
            return
        timer = self._update_timer()
        if timer is not None:
            try:
                timer.start()
            except Exception:   # (an asyncio timer with no event loop to run on)
                timer = None
        if timer is None:
            self.flush()
            return
        self._timer_due = True

    def _update_timer(self):
        """The canvas's single-shot timer for :meth:`request_update`, or None when the canvas
        has none that fires (matplotlib's base timer, as Agg's: it never runs its callbacks)."""
        from matplotlib.backend_bases import TimerBase

        canvas = self.fig.canvas
        if self._timer is None or self._timer[0] is not canvas:
            timer = None
            try:
                made = canvas.new_timer(interval=UPDATE_DELAY_MS)
            except Exception:   # pragma: no cover - a canvas that cannot make one
                made = None
            if made is not None and type(made) is not TimerBase:
                timer = made
                timer.single_shot = True
                timer.add_callback(self._on_timer)
            self._timer = (canvas, timer)
        return self._timer[1]

    def _on_timer(self):
        self._timer_due = False
        try:
            self.flush()
        except Exception as exc:        # (out of a timer: one line, not a traceback)
            _say(f"could not re-simulate the course: {type(exc).__name__}: {exc}")

    def flush(self) -> bool:
        """Re-simulate now when a change is pending (:meth:`request_update`); returns
        whether it did. The pending timer then finds nothing to do."""
        if not self._pending:
            return False
        self.update()
        return True

    def _on_preset(self, label):
        name = next(n for n, s in PRESETS.items() if s["label"] == label)
        if name == self.model_name:
            return
        # the maintenance interval's default follows the route (IV every 28 days, the spray
        # every 14): its marker moves, and so does its value when it was at the old default
        # (switching IV -> nasal had kept 28 days, a course the explorer started with the
        # nasal preset does not show); an interval the user chose stays
        s = self.sliders["interval"]
        old, new = interval_default(self.model_name), interval_default(name)
        s.eventson = False
        if s.val == old:
            s.set_val(new)
        s.valinit = new
        s.vline.set_xdata([new] * 2)
        s.eventson = True
        self.model_name = name
        spec = PRESETS[name]
        s = self.sliders["dose"]
        # re-range the dose slider for the new unit without firing an update per change
        s.eventson = False
        s.valmin, s.valmax = spec["range"]
        s.valstep = spec["step"]
        s.ax.set_xlim(*spec["range"])
        s.label.set_text(f"dose ({spec['unit']})")
        s.valinit = spec["default"]          # (and its marker: the new preset's default)
        s.vline.set_xdata([spec["default"]] * 2)
        s.set_val(spec["default"])
        s.eventson = True
        self.request_update()

    # ---------------------------------------------------------------- simulation
    def update(self):
        """Re-simulate with the current settings and redraw (returns seconds taken)."""
        from .engine import session_metrics
        from .plotting import (
            analyte_labels,
            course_grid,
            days_origin,
            describe_doses,
            drug_title,
            ki_calibration,
            main_analyte,
            uses_weight,
        )
        from .simulate import simulate

        t0 = time.perf_counter()
        # (the settings read below are the latest: a change that comes after this point, while
        # the course is simulated, asks for another update)
        self._pending = False
        model = self.model
        d = self.doses()
        v = self.values()
        main = main_analyte(model)
        until = float(MONTHS * 30.44 * 24 + 14 * 24)
        t = course_grid(d, GRID_STEP_H, until)
        outs = [main] + [o for o in ("occupancy", "plasticity")
                         if o == "occupancy" and model.has_occupancy
                         or o == "plasticity" and model.has_glutamate]
        r = simulate(model, d, t, weight_kg=v["weight"], outputs=outs, **self._kw)
        self._result = r
        x = t / 24.0
        conc = r.concentration(main)
        self.lines["conc"].set_data(x, conc)
        # exact per-session peaks (grid-free), without the schematic response: a few ms
        sm = session_metrics(model, d, weight_kg=v["weight"], metrics=("cmax", "tmax"),
                             analyte=main, horizon_h=until)
        starts = sm["session_start_h"]
        k = np.arange(1, starts.size + 1)
        cmax = np.array([sm[f"cmax_s{i}"][0] for i in k])
        tmax = np.array([sm[f"tmax_s{i}"][0] for i in k])
        self._metrics = sm
        self.lines["peaks"].set_data((starts + tmax) / 24, cmax)
        occ = r.occupancy * 100 if "occupancy" in r.names else np.zeros_like(t)
        self.lines["occ"].set_data(x, occ)
        # the Ki calibration named, in the course figure's words (the panel had said only
        # "MODEL-PREDICTED", though the preset's other calibration predicts another occupancy)
        cal = ki_calibration(r) if "occupancy" in r.names else None
        self.ax_occ.set_title("NMDA occupancy, MODEL-PREDICTED"
                              + (f" (Ki calibration {cal})" if cal else ""), loc="left",
                              fontsize=12 * self._scale)
        pl = r.plasticity if "plasticity" in r.names else np.zeros_like(t)
        self.lines["plast"].set_data(x, pl)
        # a model without a weight effect (the nasal spray's flat doses): the weight slider
        # says so and is greyed, instead of moving while nothing changes
        w = self.sliders["weight"]
        weighs = uses_weight(model)
        w.valfmt = "%g" if weighs else "%g (no effect in this model)"
        w.valtext.set_text(w._format(w.val))
        for t in (w.label, w.valtext):
            t.set_color("black" if weighs else "0.55")
        w.poly.set_alpha(1.0 if weighs else 0.35)
        # days from the course's time 0: with session 1 missed, the axis says where the first
        # session given is ("days from the first session" had been said of day 2)
        first_h = float(np.min(d.time_h)) if len(d.time_h) else 0.0
        self.ax_plast.xaxis.label.set_text(f"days from {days_origin(first_h)}")
        self.ax_conc.set_xlim(-2, x[-1])
        self.ax_conc.set_ylim(0, max(1.0, float(np.nanmax(conc))) * 1.15)
        self.ax_occ.set_ylim(0, max(10.0, float(occ.max()) * 1.15))
        self.ax_plast.set_ylim(0, max(0.05, float(pl.max()) * 1.15))
        self.ax_conc.set_title(f"{analyte_labels(model)[main]}: plasma concentration "
                               "(a dot at each session's peak)", loc="left",
                               fontsize=12 * self._scale)
        miss = int(round(v["miss"]))
        # a session is missed only when the course has it (a slider at 20 on a course of 10
        # sessions leaves every session in)
        n_full = len(course_doses(self.model_name, v["dose"], v["weight"], v["interval"]))
        note = ("" if not miss else f" · session {miss} missed"
                + first_given_note(self.model_name, v["dose"], miss, n_full)
                if miss <= n_full else f" · no session {miss} to miss (the course has {n_full})")
        self._title = (f"{drug_title(model)}: {describe_doses(d, v['weight'])} · "
                       + (f"{v['weight']:g} kg · " if uses_weight(model) else "")
                       + f"maintenance every {v['interval']:g} days", note)
        self._fit_title()
        self.last_update_s = time.perf_counter() - t0     # simulation + new data, no drawing
        # the first update in this process loads the compiled code (a later explorer's first
        # update does not: it had said "first run: loading compiled code" too)
        global _compiled_loaded
        first, _compiled_loaded = not _compiled_loaded, True
        # (short lines: the text's room right of the plots is a fifth of the figure)
        self.timing_text.set_text(f"{starts.size} session{'s' if starts.size != 1 else ''}"
                                  "\nre-simulated in "
                                  f"{self.last_update_s * 1000:.0f} ms"
                                  + ("\n(first run: loading\ncompiled code)" if first
                                     else ""))
        self.fig.canvas.draw_idle()
        return self.last_update_s

    # ---------------------------------------------------------------- what is drawn
    def peaks(self) -> np.ndarray:
        """The plotted per-session peak concentrations (ng/mL), for the sliders' present
        values (a pending change is simulated first: :meth:`flush`)."""
        self.flush()
        return np.asarray(self.lines["peaks"].get_ydata(), float)

    def peak_days(self) -> np.ndarray:
        self.flush()
        return np.asarray(self.lines["peaks"].get_xdata(), float)


def explore(model: str = "ketamine-iv") -> Explorer:
    """Open the explorer in the current matplotlib backend (Jupyter: use ``%matplotlib
    widget`` for live sliders) and return it."""
    return Explorer(model)


def has_display() -> bool:
    """True when a desktop window can open (an interactive backend and a display)."""
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def window(model: str = "ketamine-iv") -> bool:
    """Show the explorer in a desktop window (blocks until it is closed) and return True; or
    return False at once, showing nothing, when matplotlib's backend opens no window (Agg,
    e.g. with ``MPLBACKEND=Agg``, or when no GUI toolkit can use the display)."""
    import matplotlib.pyplot as plt

    ex = Explorer(model)
    if getattr(type(ex.fig.canvas), "required_interactive_framework", None) is None:
        plt.close(ex.fig)
        return False
    ex.fig.canvas.manager.set_window_title("ketasim explorer")
    plt.show()
    return True


def serve(port: int = DEFAULT_PORT, open_browser: bool = True, model: str = "ketamine-iv",
          address: str = "127.0.0.1", *, any_free: bool = False) -> None:
    """Serve the explorer to a browser through matplotlib's WebAgg backend (needs tornado).

    The page sizes the figure to the browser window (:data:`FIT_WINDOW_JS`). Prints the URL,
    then serves until interrupted: Ctrl+C stops the server and raises
    :class:`KeyboardInterrupt`, as any interrupt does. ``port=0``: a free port, which the URL
    names. ``any_free``: when ``port`` is taken, a free port instead (the command's default
    port, which nobody asked for by number, as Jupyter moves on from a taken one)."""
    import matplotlib

    try:
        import tornado  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        from .errors import KetasimInputError
        raise KetasimInputError("explore: the browser view needs tornado (pip install "
                                "tornado); or run it in Jupyter with ketasim.explore()") \
            from None
    import socket

    with socket.socket() as probe:       # a taken port: one line, not a server traceback
        if os.name != "nt":
            # as the server binds (tornado): a port whose last connections are in TIME_WAIT
            # (for a minute after the explorer stopped with a page open) is free to listen on
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            try:
                probe.bind((address, int(port)))
            except OSError as exc:
                if not any_free:
                    raise
                _say(f"port {port} is taken ({exc.strerror or exc}); serving on a free one")
                probe.bind((address, 0))
            port = probe.getsockname()[1]      # (0: the free port the system chose)
        except OSError as exc:
            from .errors import KetasimInputError
            raise KetasimInputError(f"--port: cannot listen on {address}:{port} "
                                    f"({exc.strerror or exc}); choose another port") from None
    if model not in PRESETS:
        from .errors import KetasimInputError, suggest
        raise KetasimInputError(f"--model: {model!r}{suggest(model, PRESETS)}; expected one "
                                f"of {', '.join(PRESETS)}")
    matplotlib.use("webagg", force=True)
    _guard_requests()
    matplotlib.rcParams["webagg.port"] = int(port)
    matplotlib.rcParams["webagg.port_retries"] = 1   # exactly this port
    matplotlib.rcParams["webagg.address"] = address
    matplotlib.rcParams["webagg.open_in_browser"] = bool(open_browser)
    import matplotlib.pyplot as plt

    ex = Explorer(model)
    ex.ignored_keymaps |= {"keymap.quit", "keymap.quit_all"}   # (one figure for every page)
    _guard_pixel_ratio(ex.fig.canvas)
    _guard_sockets(ex.fig.canvas.manager)
    _flush_before_drawing(ex)
    ex.fig.canvas.manager.set_window_title("ketasim explorer")   # the page's header
    # (matplotlib 3.7 gives a page that connects the figure's label as its header, later
    # versions the window title)
    ex.fig.set_label("ketasim explorer")
    print(f"ketasim explorer: open http://{address}:{port}/ in a browser (Ctrl+C stops it)",
          flush=True)
    import contextlib

    # (matplotlib's server prints its own "To view figure, visit ...", "Press Ctrl+C to stop
    # WebAgg server" and "Server is stopped": the line above says it once)
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        plt.show()
    from matplotlib.backends.backend_webagg import WebAggApplication

    # matplotlib's server takes Ctrl+C itself (its own SIGINT handler stops the loop) and
    # returns as if nothing happened: the interrupt goes on from here, so that `ketasim
    # explore` stops as every command does after Ctrl-C (status 130, not 0). (In Jupyter,
    # where a loop already runs, the server keeps running and show() returns at once.)
    if not getattr(WebAggApplication, "started", True):
        raise KeyboardInterrupt
