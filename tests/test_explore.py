"""The live explorer: widget callbacks driven headless (Agg) change the plotted data as the
pharmacology says they must, and the browser view renders its sliders in a real browser."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import ketasim  # noqa: E402
from ketasim.explore import Explorer, course_doses  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ex():
    import matplotlib.pyplot as plt

    e = Explorer("ketamine-iv")
    yield e
    plt.close(e.fig)


def _reset(e):
    e.preset.set_active(0)
    for k, v in {"dose": 0.5, "weight": 70, "interval": 28, "miss": 0}.items():
        e.sliders[k].set_val(v)


def test_doubling_the_dose_doubles_the_plotted_peaks(ex):
    _reset(ex)
    p1 = ex.peaks().copy()
    conc1 = np.asarray(ex.lines["conc"].get_ydata()).copy()
    ex.sliders["dose"].set_val(1.0)
    p2 = ex.peaks()
    # linear PK: every session's peak and the whole curve scale with the dose
    np.testing.assert_allclose(p2, 2 * p1, rtol=1e-9)
    np.testing.assert_allclose(np.asarray(ex.lines["conc"].get_ydata()), 2 * conc1,
                               rtol=1e-9, atol=1e-9)
    assert ex.ax_conc.get_ylim()[1] >= p2.max()     # the axis follows the new peak


def test_plotted_peak_matches_an_independent_simulation(ex):
    _reset(ex)
    d = ketasim.standard_iv_course(0.5, 70, 6)
    r = ketasim.simulate("ketamine-iv", d, np.r_[0:1:1 / 600], weight_kg=70,
                         outputs=["plasma"])
    # the explorer's 20-minute grid holds the end of the 40-minute infusion (the peak)
    assert ex.peaks()[0] == pytest.approx(r.concentration("plasma").max(), rel=1e-6)


def test_missing_a_session_removes_its_peak(ex):
    _reset(ex)
    days = ex.peak_days().copy()
    ex.sliders["miss"].set_val(3)
    after = ex.peak_days()
    assert after.size == days.size - 1
    np.testing.assert_allclose(after, np.delete(days, 2))
    # and the concentration curve is zero where session 3 was (day 4 + 1 h)
    x = np.asarray(ex.lines["conc"].get_xdata())
    y = np.asarray(ex.lines["conc"].get_ydata())
    i = np.argmin(np.abs(x - (4 + 1 / 24)))
    assert y[i] < 0.05 * ex.peaks().max()


def test_title_names_a_missed_session_only_when_the_course_has_it(ex):
    _reset(ex)
    n = ex.peak_days().size
    ex.sliders["miss"].set_val(2)
    assert "session 2 missed" in ex.fig._suptitle.get_text()
    ex.sliders["miss"].set_val(n + 1)
    title = ex.fig._suptitle.get_text()
    assert "missed" not in title and f"no session {n + 1} to miss" in title
    assert ex.peak_days().size == n                   # and every session is still there


def test_the_course_axis_says_where_days_count_from_when_session_1_is_missed(ex):
    """With session 1 missed, the first session given is on day 2 (IV) or 3 (nasal), but the
    axis still read "days from the first session"; it says where its days count from, as the
    course figure does, and goes back when no first session is missed."""
    _reset(ex)
    assert ex.ax_plast.get_xlabel() == "days from the first session"
    ex.sliders["miss"].set_val(1)
    assert ex.ax_plast.get_xlabel() == "days from time 0 (first session on day 2)"
    assert ex.peak_days()[0] == pytest.approx(2.0, abs=0.1)     # (drawn from time 0)
    ex.sliders["miss"].set_val(2)
    assert ex.ax_plast.get_xlabel() == "days from the first session"
    _reset(ex)


def _extent_as_drawn(t, renderer):
    """``t``'s extent as drawn: a text drawn wrapped (the title) measured in its drawn lines
    (matplotlib 3.7 measures it in one line, though it draws it wrapped; later versions
    measure the wrapped lines themselves, so wrapping it again changes nothing there)."""
    if not t.get_wrap() or not hasattr(t, "_get_wrapped_text"):
        return t.get_window_extent(renderer)
    text = t.get_text()
    t.set_text(t._get_wrapped_text())
    try:
        return t.get_window_extent(renderer)
    finally:
        t.set_text(text)


def _texts_outside_the_figure(e):
    from matplotlib.text import Text

    e.fig.canvas.draw()
    renderer = e.fig.canvas.get_renderer()
    ticks = {id(label) for ax in e.fig.axes for axis in (ax.xaxis, ax.yaxis)
             for tick in axis.get_major_ticks() + axis.get_minor_ticks()
             for label in (tick.label1, tick.label2)}   # (drawn only inside their axes)
    out = []
    for t in e.fig.findobj(Text):
        if id(t) in ticks or not t.get_visible() or not t.get_text().strip():
            continue
        b = _extent_as_drawn(t, renderer)
        if b.x0 < 0 or b.y0 < 0 or b.x1 > e.fig.bbox.x1 or b.y1 > e.fig.bbox.y1:
            out.append(t.get_text())
    return out


def test_every_label_and_the_title_fit_in_the_figure(ex):
    """The title with a long note (a session the course does not have, at the largest dose
    and weight) ran off both sides of the figure, drug name included, and the left edge of
    the interval slider's label was cut."""
    _reset(ex)
    assert _texts_outside_the_figure(ex) == []
    for k, v in {"dose": 0.95, "weight": 130, "interval": 56, "miss": 20}.items():
        ex.sliders[k].set_val(v)
    assert "no session 20 to miss" in ex.fig._suptitle.get_text()
    assert _texts_outside_the_figure(ex) == []
    ex.sliders["interval"].set_val(7)
    ex.sliders["miss"].set_val(19)
    assert _texts_outside_the_figure(ex) == []
    _reset(ex)


def test_a_two_line_title_keeps_a_margin_at_both_sides(ex):
    """The nasal course with session 1 missed has a title of two lines; wrapped by
    matplotlib to the figure's very edges, it ran to 2 pixels of the left edge. It keeps
    TITLE_MARGIN of the width clear each side, at the design size and in a smaller window,
    every word kept, the note on a line of its own."""
    from matplotlib.backend_bases import ResizeEvent

    from ketasim.explore import DESIGN_INCHES, TITLE_MARGIN

    _reset(ex)
    ex.preset.set_active(2)
    ex.sliders["miss"].set_val(1)
    try:
        for size in (DESIGN_INCHES, (8, 6), DESIGN_INCHES):
            ex.fig.set_size_inches(*size)
            ResizeEvent("resize_event", ex.fig.canvas)._process()     # as a backend does
            ex.fig.canvas.draw()
            title = ex.fig._suptitle
            b = _extent_as_drawn(title, ex.fig.canvas.get_renderer())
            w = ex.fig.bbox.width
            margin = TITLE_MARGIN * w - 1
            assert b.x0 >= margin and b.x1 <= w - margin, (size, b, w)
            words = title.get_text().split()
            assert " ".join(words) == ("Esketamine: 56 mg nasal spray · maintenance every 14 "
                                       "days session 1 missed; session 2 is then the first "
                                       "given, at the 56 mg starting dose")
            assert title.get_text().split("\n")[-1].startswith("session 1 missed") or \
                size != DESIGN_INCHES
    finally:
        ex.fig.set_size_inches(*DESIGN_INCHES)
        ResizeEvent("resize_event", ex.fig.canvas)._process()
        _reset(ex)


def test_the_occupancy_panel_names_its_ki_calibration_as_the_course_figure_does(ex):
    """The explorer's occupancy panel said "MODEL-PREDICTED" but not which Ki calibration,
    unlike the course figure ("...; Ki calibration in-vivo)"); it names it in the same words,
    for every preset."""
    from ketasim.plotting import _row_title

    _reset(ex)
    try:
        for k in range(3):
            ex.preset.set_active(k)
            cal = ex.model.default_calibration
            assert cal == "in-vivo"
            assert ex.ax_occ.get_title(loc="left") == \
                f"NMDA occupancy, MODEL-PREDICTED (Ki calibration {cal})"
            run = SimpleNamespace(course=ex.result, model=ex.model)
            assert f"Ki calibration {cal})" in _row_title("occupancy", [run])
    finally:
        _reset(ex)


def test_a_bad_device_pixel_ratio_from_a_page_is_ignored():
    """WebAgg takes a page's device pixel ratio as sent: 0 made every later draw divide by
    zero, for every client, until a restart. The explorer's canvas ignores such values."""
    from matplotlib.backends.backend_webagg_core import FigureCanvasWebAggCore
    from matplotlib.figure import Figure

    from ketasim.explore import _guard_pixel_ratio

    canvas = FigureCanvasWebAggCore(Figure())
    _guard_pixel_ratio(canvas)
    for bad in (0, -1, "x", None, float("nan"), float("inf"), 1e9):
        canvas.handle_set_device_pixel_ratio({"device_pixel_ratio": bad})
        assert canvas.device_pixel_ratio == 1
    canvas.handle_set_device_pixel_ratio({"device_pixel_ratio": 2})
    assert canvas.device_pixel_ratio == 2
    canvas.get_renderer()                             # draws at the new ratio


def test_a_device_pixel_ratio_is_held_to_the_largest_canvas_a_page_may_ask_for():
    """A ratio of 16 (within the range taken) made the explorer's 1300 x 850 figure a canvas of
    20800 x 13600 pixels: every drawing took 13 s and 2.7 GB, for every page, which the limit
    on a page's resize (MAX_CANVAS_PX a side) is there to prevent. It is lowered to the
    largest ratio that keeps the canvas within that limit; a usual ratio is kept."""
    from matplotlib.backends.backend_webagg_core import FigureCanvasWebAggCore
    from matplotlib.figure import Figure

    from ketasim.explore import DESIGN_INCHES, MAX_CANVAS_PX, _guard_pixel_ratio

    canvas = FigureCanvasWebAggCore(Figure(figsize=DESIGN_INCHES, dpi=100))
    _guard_pixel_ratio(canvas)
    canvas.handle_set_device_pixel_ratio({"device_pixel_ratio": 16})
    w, h = canvas.get_width_height(physical=True)
    assert max(w, h) <= MAX_CANVAS_PX and w > 1300 * 6, (w, h)
    canvas.handle_set_device_pixel_ratio({"device_pixel_ratio": 2})
    assert canvas.device_pixel_ratio == 2
    assert canvas.get_width_height(physical=True) == (2600, 1700)


def test_weight_and_interval_change_the_course(ex):
    _reset(ex)
    p70 = ex.peaks()[0]
    ex.sliders["weight"].set_val(100)
    assert ex.peaks()[0] > p70       # mg/kg dosing: more drug for a heavier patient
    assert ex.values()["weight"] == 100
    ex.sliders["weight"].set_val(70)
    n28 = ex.peaks().size
    ex.sliders["interval"].set_val(14)
    # maintenance every 14 instead of 28 days: more sessions after the first 5 weeks
    expected = len(course_doses("ketamine-iv", 0.5, 70, 14))
    assert ex.peaks().size == expected > n28
    gaps = np.diff(ex.peak_days())
    assert gaps[-1] == pytest.approx(14, abs=0.01)


@pytest.mark.slow
def test_switching_to_the_nasal_preset(ex):
    _reset(ex)
    ex.preset.set_active(2)
    assert ex.model_name == "esketamine-nasal"
    assert ex.sliders["dose"].val == 56 and "mg" in ex.sliders["dose"].label.get_text()
    # the marked peak is the exact one: a 1-second grid around it agrees
    ref = ketasim.simulate("esketamine-nasal", ketasim.Doses.single(56.0, "intranasal"),
                           np.r_[0.3:0.9:1 / 3600], outputs=["plasma"])
    assert ex.peaks()[0] == pytest.approx(ref.concentration("plasma").max(), rel=1e-6)
    assert "nasal spray" in ex.fig._suptitle.get_text()
    assert " kg" not in ex.fig._suptitle.get_text()       # no weight effect: no weight shown
    ex.sliders["dose"].set_val(84)
    # day 1 stays 56 mg (label); later sessions are 84 mg and peak higher (less than 1.5x:
    # the nasal fraction falls with each further device)
    assert ex.peaks()[0] == pytest.approx(ref.concentration("plasma").max(), rel=1e-6)
    assert ex.peaks()[1] > 1.2 * ex.peaks()[0]
    _reset(ex)
    assert ex.model_name == "ketamine-iv"


def test_jupyter_entry_point_and_bad_input():
    import matplotlib.pyplot as plt

    e = ketasim.explore("esketamine-iv")
    assert isinstance(e, Explorer) and e.model_name == "esketamine-iv"
    assert e.sliders["dose"].val == 0.25
    plt.close(e.fig)
    with pytest.raises(ketasim.KetasimInputError, match="esketamine-iv"):
        Explorer("esketamine-i")


def test_explore_port_in_use_is_one_line(capsys):
    from ketasim.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["explore", "--port", str(port), "--no-browser"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "choose another port" in err


@pytest.mark.parametrize("port_given", [True, False])
def test_explore_refuses_a_bad_model_before_it_looks_at_the_port(capsys, monkeypatch,
                                                                 port_given):
    """`explore --port P --model BAD` with P taken had been refused for the port, and a
    taken default port was first said to be moved from; the bad --model is now the error,
    before any port is tried."""
    import importlib

    from ketasim.cli import main

    explore_module = importlib.import_module("ketasim.explore")
    monkeypatch.setattr(explore_module, "has_display", lambda: False)
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", 0 if port_given else explore_module.DEFAULT_PORT))
            s.listen()
        except OSError:         # (the default port taken already: as well)
            pass
        port = s.getsockname()[1]
        argv = ["explore", "--model", "ketamin-iv", "--no-browser"]
        assert main(argv + (["--port", str(port)] if port_given else [])) == 1
    err = capsys.readouterr().err
    assert err.startswith("ketasim: error: --model: 'ketamin-iv'"), err
    assert err.count("\n") == 1 and "ketamine-iv" in err and "port" not in err


def test_the_default_port_taken_serves_on_a_free_one(capsys):
    """With no --port, a taken default port had stopped the explorer with '--port: cannot
    listen on 127.0.0.1:8765 ...; choose another port', naming an option the user never gave;
    it now serves on a free port (the URL names it), as Jupyter moves on. A port asked for by
    number is still refused when taken."""
    from ketasim.explore import serve

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        # the port check passes; the bad model name is then the (first) error
        with pytest.raises(ketasim.KetasimInputError, match="--model"):
            serve(port=port, open_browser=False, model="no-such-model", any_free=True)
        assert f"port {port} is taken" in capsys.readouterr().err
        with pytest.raises(ketasim.KetasimInputError, match="choose another port"):
            serve(port=port, open_browser=False, model="no-such-model")


def test_explore_help_says_a_free_port_serves_when_8765_is_taken(capsys):
    """`explore --help` said the default was port 8765, but with 8765 taken the command
    serves on a free port (and says so): the help says that too."""
    from ketasim.cli import main

    with pytest.raises(SystemExit):
        main(["explore", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "else port 8765, or a free port when 8765 is taken" in text, text


def test_explore_restarts_on_the_port_it_just_left():
    """Stopping the explorer while a page is open leaves the server's side of that connection
    in TIME_WAIT for a minute; the server can listen on the port again at once (as tornado
    binds), so the port check must not call it taken ("choose another port")."""
    from ketasim.explore import serve

    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        page = socket.create_connection(("127.0.0.1", port))
        conn, _ = listener.accept()
        conn.close()                   # the server closes first: its side waits in TIME_WAIT
        page.close()
    time.sleep(0.1)
    # the port check passes; the bad model name is then the (first) error
    with pytest.raises(ketasim.KetasimInputError, match="--model"):
        serve(port=port, open_browser=False, model="no-such-model")


def test_explore_serves_to_a_browser_when_no_desktop_window_can_open(monkeypatch, capsys):
    """A display, but a matplotlib backend that opens no window (MPLBACKEND=Agg, or no GUI
    toolkit for that display): ``ketasim explore`` serves to a browser instead, saying why. It
    had shown nothing (a UserWarning) and exited at once with status 0."""
    import importlib

    import matplotlib.pyplot as plt

    from ketasim.cli import main

    served = []
    monkeypatch.setenv("DISPLAY", ":0")
    # (the module: ketasim.explore is also the name of the function the package exports)
    monkeypatch.setattr(importlib.import_module("ketasim.explore"), "serve",
                        lambda **kw: served.append(kw))
    figures = plt.get_fignums()
    assert matplotlib.get_backend().lower() == "agg"
    assert main(["explore", "--model", "esketamine-iv"]) == 0
    assert served == [{"port": 8765, "open_browser": True, "model": "esketamine-iv",
                       "any_free": True}]
    assert "serving to a browser instead" in capsys.readouterr().err
    assert plt.get_fignums() == figures          # the window's figure is not left open


def test_explore_port_0_serves_on_a_free_port(monkeypatch):
    """``ketasim explore --port 0`` serves on a free port (which the printed URL names), as
    ``serve(port=0)`` does and as Jupyter's ``--port 0`` does. It had been refused as out of
    range, and a 0 given through would have become the default port 8765."""
    import importlib

    from ketasim.cli import main

    served = []
    monkeypatch.setattr(importlib.import_module("ketasim.explore"), "serve",
                        lambda **kw: served.append(kw))
    assert main(["explore", "--port", "0", "--no-browser"]) == 0
    assert served == [{"port": 0, "open_browser": False, "model": "ketamine-iv",
                       "any_free": False}]


@pytest.mark.slow
def test_serve_on_port_0_prints_the_port_it_listens_on(tmp_path):
    """serve(port=0) listens on a free port; the URL it printed named port 0."""
    pytest.importorskip("tornado")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep
               + os.environ.get("PYTHONPATH", ""))
    env.pop("MPLBACKEND", None)
    proc = subprocess.Popen([sys.executable, "-c", "from ketasim.explore import serve; "
                             "serve(port=0, open_browser=False)"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    try:
        line = ""
        while "open http://" not in line and (line or proc.poll() is None):
            line = proc.stdout.readline()
        url = line.split("open ", 1)[1].split()[0]
        assert not url.endswith(":0/"), url
        for _ in range(100):          # the URL is printed just before the server listens
            try:
                with urllib.request.urlopen(url, timeout=2) as page:
                    assert b"<html" in page.read().lower()
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError(f"nothing listens at {url}")
        proc.terminate()
        rest = proc.communicate(timeout=10)[0]
        # the URL once: none of matplotlib's own lines ("To view figure, visit ...")
        assert "To view figure" not in rest and "WebAgg" not in rest, rest
    finally:
        _stop(proc)
        proc.stdout.close()


def _stop(proc):
    """End a server process: SIGTERM, then SIGKILL after 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


class _Browser:
    """A headless Chromium showing one page, driven over its DevTools protocol, so that a test
    waits in real time (up to a deadline) for what it looks for on the page. Chromium's
    ``--virtual-time-budget`` is no such wait: a budget of 8 or 40 s ended after a few seconds
    of real time, and the page (laid out late under virtual time) was shot or read before it
    had drawn the figure a busy server was still drawing, or had sent the server its size."""

    #: run in the page before its own scripts: ``window.figureSize`` is the figure's size the
    #: server last told the page (CSS pixels), as the page's websocket receives it
    LISTEN_JS = """(function () {
        var onmessage = Object.getOwnPropertyDescriptor(WebSocket.prototype, 'onmessage');
        Object.defineProperty(WebSocket.prototype, 'onmessage', {
            configurable: true, get: onmessage.get, set: function (handle) {
                onmessage.set.call(this, function (event) {
                    if (typeof event.data === 'string' && event.data.charAt(0) === '{') {
                        var msg = JSON.parse(event.data);
                        if (msg.type === 'resize') { window.figureSize = msg.size; }
                    }
                    return handle.apply(this, arguments);
                });
            }});
    })();"""

    def __init__(self, chromium, profile, window):
        profile.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             f"--window-size={window[0]},{window[1]}", f"--user-data-dir={profile}",
             "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ws = None
        self.loaded = False
        self._ids = iter(range(1, 1 << 30))
        self._port_file = profile / "DevToolsActivePort"

    async def open(self, url, timeout=60):
        """Wait for the browser, then open ``url`` in its page (with :attr:`LISTEN_JS`) and
        wait for the page to load."""
        import asyncio
        import json

        from tornado.websocket import websocket_connect

        deadline = time.monotonic() + timeout
        while len(lines := (self._port_file.read_text().split()
                            if self._port_file.exists() else [])) < 2:
            assert self.proc.poll() is None and time.monotonic() < deadline, \
                f"Chromium did not start (exit {self.proc.poll()})"
            await asyncio.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{lines[0]}/json/list",
                                    timeout=30) as answer:
            page = next(t for t in json.load(answer) if t["type"] == "page")
        self.ws = await websocket_connect(page["webSocketDebuggerUrl"],
                                          max_message_size=1 << 28)
        await self.call("Page.enable")
        await self.call("Page.addScriptToEvaluateOnNewDocument", source=self.LISTEN_JS)
        await self.call("Page.navigate", url=url)
        while not self.loaded:
            m = await asyncio.wait_for(self.ws.read_message(), deadline - time.monotonic())
            assert m is not None, f"Chromium closed its connection loading {url}"
            self.loaded = json.loads(m).get("method") == "Page.loadEventFired"
        return self

    async def call(self, method, **params):
        import json

        i = next(self._ids)
        await self.ws.write_message(json.dumps({"id": i, "method": method, "params": params}))
        while (m := await self.ws.read_message()) is not None:
            answer = json.loads(m)
            self.loaded |= answer.get("method") == "Page.loadEventFired"
            if answer.get("id") == i:
                assert "error" not in answer, (method, answer)
                return answer["result"]
        raise AssertionError(f"Chromium closed its connection ({method})")

    async def evaluate(self, expression):
        """The value of a JavaScript expression in the page."""
        r = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return r["result"].get("value")

    async def screenshot(self) -> bytes:
        import base64

        return base64.b64decode((await self.call("Page.captureScreenshot"))["data"])

    async def close(self):
        """Close the browser (as its window's close does), else end its process."""
        import asyncio

        if self.ws is not None:
            try:
                await asyncio.wait_for(self.call("Browser.close"), 10)
                self.proc.wait(timeout=10)
            except (AssertionError, OSError, asyncio.TimeoutError, subprocess.TimeoutExpired):
                pass
            await _closed(SimpleNamespace(ws=self.ws, close=self.ws.close))
        _stop(self.proc)


def _slider_bars(png: bytes) -> int:
    """How many of the explorer's slider bars a screenshot shows: the sliders' blue filled
    bars (the Slider face colour) are long horizontal runs of one colour."""
    import io

    import matplotlib.image as mpimg

    img = mpimg.imread(io.BytesIO(png), format="png")[..., :3]
    blue = np.all(np.abs(img - np.array([0x1f, 0x77, 0xb4]) / 255) < 0.06, axis=-1)
    rows = np.nonzero(blue.sum(axis=1) > 100)[0]
    return len(np.split(rows, np.nonzero(np.diff(rows) > 3)[0] + 1)) if rows.size else 0


@pytest.mark.slow
def test_browser_renders_the_explorer_with_its_sliders(tmp_path):
    import asyncio

    chromium = _chromium()
    if chromium is None:
        pytest.skip("needs a headless Chromium (Debian: apt-get install chromium; .ci/run "
                    "installs it)")
    pytest.importorskip("tornado")
    port = _free_port()
    # the server's output goes to a file (a pipe no one reads could fill and stop the server),
    # and is shown if the page does not show the explorer
    server = _Served(tmp_path, port)
    url = f"http://127.0.0.1:{port}/"

    async def session():
        # the page connects over a websocket and the server then draws the figure: on a busy
        # machine that can take a while, so look until the sliders show (or 120 s have gone)
        browser = _Browser(chromium, tmp_path / "profile", (1400, 1000))
        try:
            await browser.open(url)
            deadline = time.monotonic() + 120
            sizes = []
            while True:
                shot = await browser.screenshot()
                sizes.append(len(shot))
                bands = _slider_bars(shot)
                if bands >= 3 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            (tmp_path / "explorer.png").write_bytes(shot)
            return bands, sizes, await browser.evaluate("document.documentElement.outerHTML")
        finally:
            await browser.close()

    try:
        assert f"open {url}" in server.output(), server.output()
        bands, sizes, dom = asyncio.run(asyncio.wait_for(session(), 300))
        # the page holds matplotlib's figure canvas ...
        assert "mpl-canvas" in dom or "<canvas" in dom, dom[:500]
        # ... with the explorer's dose, weight and interval sliders drawn (miss is at 0)
        assert bands >= 3, (f"slider bars found: {bands}; {len(sizes)} screenshots, the last "
                            f"ones {sizes[-3:]} bytes; server output:\n"
                            f"{server.output()[-3000:]}")
    finally:
        server.stop()


#: matplotlib's canvas box in a page (the box styled "resize: both"): its size in CSS pixels
#: once the page has fitted it to the window (null before), and the figure's size the server
#: last told the page
_FITTED_BOX_JS = """(function () {
    var box = Array.from(document.querySelectorAll('div')).find(function (d) {
        return (d.getAttribute('style') || '').indexOf('resize: both') >= 0; });
    return [box && box.style.width && box.style.height
            ? [parseFloat(box.style.width), parseFloat(box.style.height)] : null,
            window.figureSize || null];
})()"""


@pytest.mark.slow
def test_the_browser_page_fits_the_figure_to_the_window(tmp_path):
    """The figure was served at a fixed 1300 x 850 pixels, so a browser window of 800 x 600
    scrolled both ways to reach the sliders; the page now sizes the figure to the window's
    room (no smaller than MIN_PAGE_PX) and the server draws it at that size."""
    import asyncio
    import json

    from ketasim.explore import MIN_PAGE_PX

    chromium = _chromium()
    if chromium is None:
        pytest.skip("needs a headless Chromium (Debian: apt-get install chromium)")
    pytest.importorskip("tornado")
    from tornado.websocket import websocket_connect

    port = _free_port()
    server = _Served(tmp_path, port)

    async def told_size():
        """The figure's size the server tells a page that connects."""
        ws = await websocket_connect(f"ws://127.0.0.1:{port}/1/ws")
        try:
            while (m := await ws.read_message()) is not None:
                if isinstance(m, str) and json.loads(m)["type"] == "resize":
                    return tuple(round(v) for v in json.loads(m)["size"])
        finally:
            await _closed(SimpleNamespace(ws=ws, close=ws.close))

    async def fitted(browser, window, timeout=120, steady=1.0):
        """The page's canvas box, fitted to the window, once the server has told the page a
        figure of that size and both have kept it for ``steady`` seconds (a page fits its box
        again when its room changes, as when scroll bars come and go)."""
        deadline, since, last = time.monotonic() + timeout, None, None
        while True:
            box, told = await browser.evaluate(_FITTED_BOX_JS)
            agreed = box and told and [round(v) for v in told] == [round(v) for v in box]
            if not agreed or (box, told) != last:
                since, last = time.monotonic(), (box, told)
            elif time.monotonic() - since >= steady:
                return tuple(round(v) for v in box)
            assert time.monotonic() < deadline, (
                f"a {window} window's page: canvas box {box}, the server's figure {told} "
                f"after {timeout} s; server output:\n{server.output()[-3000:]}")
            await asyncio.sleep(0.1)

    async def session():
        sizes = []
        for k, window in enumerate(((1000, 760), (1600, 1100))):
            browser = _Browser(chromium, tmp_path / f"profile{k}", window)
            try:
                # the page connects, sizes its canvas box to the window's room and asks the
                # server for a figure of that size
                await browser.open(f"http://127.0.0.1:{port}/")
                w, h = await fitted(browser, window)
                sizes.append((w, h))
                assert MIN_PAGE_PX[0] <= w < window[0] and MIN_PAGE_PX[1] <= h < window[1], \
                    (window, w, h)
            finally:
                await browser.close()
        assert sizes[0] != (1300, 850) and sizes[1][0] > sizes[0][0], sizes
        # and the server's figure follows the page: the size it tells a page that connects
        # now is the last page's
        return sizes, await asyncio.wait_for(told_size(), 30)

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/js/mpl.js", timeout=10) as js:
            assert b"handle_resize" in js.read()
        sizes, told = asyncio.run(asyncio.wait_for(session(), 600))
        assert told == sizes[1], (told, sizes)
        assert "Traceback" not in server.output(), server.output()[-3000:]
    finally:
        server.stop()


def test_a_bad_canvas_size_from_a_page_is_ignored():
    """WebAgg takes a page's canvas size as sent: 30000 x 30000 made every later drawing take
    49 s and 8 GB, and 0 x 0 left the figure undrawable for every page. The explorer's canvas
    passes on only sizes of 50 to 8192 pixels a side."""
    from matplotlib.backends.backend_webagg_core import FigureCanvasWebAggCore
    from matplotlib.figure import Figure

    from ketasim.explore import _guard_resize

    canvas = FigureCanvasWebAggCore(Figure())
    seen = []
    canvas.handle_resize = seen.append
    _guard_resize(canvas)
    for w, h in ((30000, 30000), (0, 0), (100000, 10), ("x", 600), (None, 600), (-5, 600)):
        canvas.handle_resize({"type": "resize", "width": w, "height": h})
    assert seen == []
    canvas.handle_resize({"type": "resize", "width": 1200, "height": 800})
    assert seen == [{"type": "resize", "width": 1200, "height": 800}]


class _Served:
    """``ketasim explore --port PORT --no-browser`` in a subprocess, its output in a file."""

    def __init__(self, tmp_path, port):
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep
                   + os.environ.get("PYTHONPATH", ""))
        env.pop("MPLBACKEND", None)
        self.log = open(tmp_path / "server.log", "w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "ketasim", "explore", "--port",
                                      str(port), "--no-browser"], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as page:
                    page.read()
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"no server (exit {self.proc.poll()}): {self.output()}")

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        _stop(self.proc)
        self.log.close()


# how long a page waits for the server (its connection, a frame after a drag): on a loaded
# machine the server takes seconds per update, and a drag queues many
PAGE_WAIT_S = 120.0


class _Page:
    """A browser page's side of WebAgg's websocket: it answers every "draw" with a request
    for the frame (as matplotlib's page does) and counts the frames it receives."""

    async def connect(self, port):
        import json

        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        self._json = json
        self.frames = 0
        self.frame = None           # the last frame (PNG)
        self.size = None            # the figure's size the server last told, CSS pixels
        self.cut = False
        self.labels = []
        # (the server may be busy with another page's updates, each a new simulation and
        # figure: on a loaded machine the handshake had waited longer than tornado's 20 s)
        self.ws = await websocket_connect(
            HTTPRequest(f"ws://127.0.0.1:{port}/1/ws", connect_timeout=PAGE_WAIT_S,
                        request_timeout=PAGE_WAIT_S), max_message_size=1 << 28)
        for m in ({"type": "supports_binary", "value": True}, {"type": "send_image_mode"},
                  {"type": "set_device_pixel_ratio", "device_pixel_ratio": 1},
                  {"type": "refresh"}):
            await self.send(m)
        import asyncio

        self.reader = asyncio.ensure_future(self._read())
        return self

    async def send(self, message):
        from tornado.websocket import WebSocketClosedError

        try:
            await self.ws.write_message(self._json.dumps(dict(message, figure_id=1)))
        except WebSocketClosedError:
            self.cut = True         # the server closed this page's connection

    async def _read(self):
        from tornado.websocket import WebSocketClosedError

        try:
            while (m := await self.ws.read_message()) is not None:
                if isinstance(m, bytes):
                    self.frames += 1
                    self.frame = m
                elif (event := self._json.loads(m))["type"] == "draw":
                    await self.send({"type": "draw"})
                elif event["type"] == "figure_label":
                    self.labels.append(event["label"])
                elif event["type"] == "resize":
                    self.size = event["size"]
        except WebSocketClosedError:
            pass

    async def drag_dose(self, n):
        """Drag the dose slider from one end to the other in n steps (figure pixels)."""
        y = 850 - (0.25 + 0.015) * 850
        for i in range(n + 1):
            kind = "button_press" if i == 0 else "button_release" if i == n else "motion_notify"
            await self.send({"type": kind, "x": (0.18 + 0.5 * (0.05 + 0.9 * i / n)) * 1300,
                             "y": y, "button": 0, "buttons": int(i < n), "modifiers": [],
                             "guiEvent": {}})

    def drop(self):
        """The tab closes or the network goes: the connection ends without a goodbye."""
        self.ws.protocol.stream.close()

    def close(self):
        self.reader.cancel()
        self.ws.close()


async def _drag_and_wait(page, *watch):
    """Drag the dose slider of ``page`` a little and wait (up to PAGE_WAIT_S) until every
    page of ``watch`` (default: ``page``) has had a new frame; returns their frame counts
    before."""
    import asyncio

    watch = watch or (page,)
    before = [w.frames for w in watch]
    await page.drag_dose(5)
    for _ in range(int(PAGE_WAIT_S * 10)):
        if all(w.frames > b for w, b in zip(watch, before)):
            break
        await asyncio.sleep(0.1)
    return before


async def _closed(*pages):
    """Close the pages' connections (each left open warns when it is collected, in whatever
    test runs then)."""
    import asyncio

    for p in pages:
        p.close()
    await asyncio.sleep(0.2)
    for p in pages:          # (the connection's socket itself, whatever the goodbye did)
        stream = getattr(p.ws, "stream", None)
        if stream is not None and not stream.closed():
            stream.close()


@pytest.mark.slow
def test_a_page_that_goes_mid_update_leaves_the_others_live(tmp_path):
    """Two pages; one goes (a closed tab, a dropped connection) while the other drags a
    slider: the other keeps receiving frames and the terminal shows no traceback. WebAgg sent
    the frame to the page that had gone, the error raised out of the drawing and the page
    that had asked for the frame was disconnected (it froze)."""
    import asyncio

    pytest.importorskip("tornado")
    port = _free_port()
    server = _Served(tmp_path, port)

    async def session():
        a = await _Page().connect(port)
        dropped = []
        for _ in range(3):
            b = await _Page().connect(port)
            dropped.append(b)
            await asyncio.sleep(1.0)
            dragging = asyncio.ensure_future(a.drag_dose(100))
            await asyncio.sleep(0.1)
            b.drop()
            await dragging
        await asyncio.sleep(1.0)
        before, = await _drag_and_wait(a)
        await _closed(a, *dropped)
        return before, a.frames, a.cut

    try:
        before, after, cut = asyncio.run(asyncio.wait_for(session(), 600))
        assert not cut, "the server disconnected the page that stayed"
        assert after > before, "the page that stayed receives no more frames"
        out = server.output()
        assert "Traceback" not in out and "never retrieved" not in out, out[-3000:]
    finally:
        server.stop()


@pytest.mark.slow
def test_a_page_that_resizes_its_canvas_gets_the_whole_figure(tmp_path):
    """A page clears its canvas when it resizes it (to the window's room, once the server has
    told it the figure's size) and asks the server for a figure of that size. When that size
    was the figure's already and the page had drawn a frame before its resize (a browser that
    lays the page out late, as headless Chromium did on a busy machine), the server sent only
    what had changed since the last frame: nothing, and the page stayed blank. The frame after
    a page's resize is the whole figure."""
    import asyncio
    import io

    import matplotlib.image as mpimg

    pytest.importorskip("tornado")
    port = _free_port()
    server = _Served(tmp_path, port)

    async def frame_after(page, frames):
        for _ in range(int(PAGE_WAIT_S * 10)):
            if page.frames > frames:
                return page.frame
            await asyncio.sleep(0.1)
        raise AssertionError(f"no frame after {frames}; server output:\n{server.output()}")

    async def session():
        page = await _Page().connect(port)
        await frame_after(page, 0)          # the page shows the figure ...
        await asyncio.sleep(0.5)
        # ... then clears its canvas to resize it, to the figure's size
        w, h = page.size
        frames = page.frames
        await page.send({"type": "resize", "width": w, "height": h})
        frame = await frame_after(page, frames)
        await _closed(page)
        return frame, (w, h)

    try:
        frame, size = asyncio.run(asyncio.wait_for(session(), 600))
        img = mpimg.imread(io.BytesIO(frame), format="png")
        assert img.shape[:2] == (size[1], size[0]), (img.shape, size)
        # the whole figure: every pixel drawn (a frame of what changed is transparent elsewhere)
        assert img.shape[-1] == 3 or (img[..., 3] == 1).all(), \
            f"{(img[..., 3] < 1).mean():.0%} of the frame's pixels left out"
        assert "Traceback" not in server.output(), server.output()[-3000:]
    finally:
        server.stop()


@pytest.mark.slow
def test_a_page_that_declines_binary_frames_breaks_no_other_page(tmp_path):
    """A page may say it takes no binary frames; WebAgg's text fallback for it fails (Python 2
    code), which raised out of every drawing: every other page that asked for a frame was
    disconnected. Frames go to every page as binary (every browser takes them)."""
    import asyncio

    pytest.importorskip("tornado")
    port = _free_port()
    server = _Served(tmp_path, port)

    async def session():
        a = await _Page().connect(port)
        b = await _Page().connect(port)
        await b.send({"type": "supports_binary", "value": False})
        await asyncio.sleep(1.0)
        before = tuple(await _drag_and_wait(a, a, b))
        await _closed(a, b)
        return before, (a.frames, b.frames), a.cut

    try:
        before, after, cut = asyncio.run(asyncio.wait_for(session(), 600))
        assert not cut, "the server disconnected the other page"
        assert after[0] > before[0] and after[1] > before[1], (before, after)
        assert "Traceback" not in server.output(), server.output()[-3000:]
    finally:
        server.stop()


@pytest.mark.slow
def test_the_page_header_names_the_explorer(tmp_path):
    """The browser page's header above the figure reads "ketasim explorer", as the desktop
    window's title does (it read "Figure 1")."""
    import asyncio

    pytest.importorskip("tornado")
    port = _free_port()
    server = _Served(tmp_path, port)

    async def session():
        page = await _Page().connect(port)
        for _ in range(int(PAGE_WAIT_S * 10)):
            if page.labels:
                break
            await asyncio.sleep(0.1)
        await _closed(page)
        return page.labels

    try:
        assert asyncio.run(asyncio.wait_for(session(), 600)) == ["ketasim explorer"]
    finally:
        server.stop()


def test_every_session_of_the_longest_course_can_be_missed_and_defaults_follow_the_preset(ex):
    # weekly maintenance gives 30 sessions (31 for the spray): the slider had stopped at 20
    _reset(ex)
    ex.sliders["interval"].set_val(7)
    n = len(ex.doses())
    assert n >= 30 and ex.sliders["miss"].valmax >= n
    ex.sliders["miss"].set_val(n)
    assert f"session {n} missed" in ex.fig._suptitle.get_text() and len(ex.doses()) == n - 1
    # the dose slider's default marker moves with the preset (it had stayed at 0.5 mg/kg,
    # off the nasal spray's mg scale)
    ex.preset.set_active(2)
    s = ex.sliders["dose"]
    assert s.valinit == s.val and s.vline.get_xdata()[0] == s.val
    _reset(ex)


def test_explore_names_a_model_object_instead_of_failing_on_its_hash():
    # (a Model had failed with "TypeError: unhashable type: 'dict'")
    with pytest.raises(ketasim.KetasimInputError,
                       match=r"explore: model Model 'ketamine-iv' \(did you mean "
                             r"'ketamine-iv'\?\); expected the name of one of"):
        ketasim.explore(ketasim.load_model("ketamine-iv"))
    with pytest.raises(ketasim.KetasimInputError, match="explore: model None"):
        ketasim.explore(None)


def test_nasal_course_missing_session_1_starts_at_the_56_mg_starting_dose(ex):
    """The label doses the first treatment day at 56 mg, 56 or 84 mg after it: with session 1
    missed, session 2 is the first one given and had been 84 mg (the dose of a later
    session). It is the 56 mg starting dose, and the title says so."""
    _reset(ex)
    ex.preset.set_active(2)
    ex.sliders["dose"].set_val(84)
    d = ex.doses()
    assert d.amount_mg[0] == 56 and d.amount_mg[1] == 84
    # a single 56 mg spray into an empty system, shifted to day 3 (session 2)
    ref = ketasim.simulate("esketamine-nasal", ketasim.Doses.single(56.0, "intranasal"),
                           np.r_[0.3:0.9:1 / 3600], outputs=["plasma"])
    full = ex.peaks().copy()
    ex.sliders["miss"].set_val(1)
    d = ex.doses()
    assert d.time_h[0] == 72.0 and d.amount_mg[0] == 56.0
    np.testing.assert_array_equal(d.amount_mg[1:], 84.0)
    assert len(d) == len(course_doses("esketamine-nasal", 84, 70, ex.values()["interval"])) - 1
    assert ex.peak_days()[0] == pytest.approx(3 + 0.5, abs=0.5)
    assert ex.peaks()[0] == pytest.approx(ref.concentration("plasma").max(), rel=1e-3)
    assert ex.peaks()[0] < full[1]          # session 2 at 84 mg (course with no miss)
    title = ex.fig._suptitle.get_text()
    assert "session 1 missed" in title and "56 mg starting dose" in title, title
    assert "56-84 mg" in title
    assert _texts_outside_the_figure(ex) == []
    # a later session missed: the course starts at 56 mg as always, no such note
    ex.sliders["miss"].set_val(2)
    assert ex.doses().amount_mg[0] == 56 and "starting dose" not in ex.fig._suptitle.get_text()
    # IV: mg/kg every session, nothing moves
    _reset(ex)
    ex.sliders["miss"].set_val(1)
    np.testing.assert_array_equal(ex.doses().amount_mg, 35.0)
    assert "starting dose" not in ex.fig._suptitle.get_text()
    _reset(ex)


@pytest.mark.slow
def test_ctrl_c_stops_explore_with_the_interrupt_status(tmp_path):
    """Ctrl-C on ``ketasim explore``: status 130 and the one line every command prints after
    an interrupt (matplotlib's server took the signal itself and the command exited 0)."""
    import signal

    pytest.importorskip("tornado")
    server = _Served(tmp_path, _free_port())
    try:
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(timeout=30) == 130
        assert "ketasim: interrupted (Ctrl-C)" in server.output()
    finally:
        server.stop()


def test_a_small_window_scales_the_text_so_no_label_is_cut():
    """A browser or desktop window smaller than the figure's 13 x 8.5 in (1300 x 850 px)
    resizes the figure: the slider labels ran off its left edge, the preset names and the
    timing off its right, the title off both. Text now scales with the figure (and is back
    to its size when the window grows again)."""
    import matplotlib.pyplot as plt
    from matplotlib.backend_bases import ResizeEvent

    e = Explorer("ketamine-iv")
    try:
        title_pt = e.fig._suptitle.get_fontsize()
        for w, h in ((10, 7), (8, 6), (6.4, 4.8), (13, 4), (4.5, 8.5)):
            e.fig.set_size_inches(w, h)
            ResizeEvent("resize_event", e.fig.canvas)._process()     # as a backend does
            for k, v in {"dose": 0.95, "weight": 130, "interval": 56, "miss": 20}.items():
                e.sliders[k].set_val(v)         # the longest title and slider values
            assert _texts_outside_the_figure(e) == [], (w, h)
            _reset(e)
            assert _texts_outside_the_figure(e) == [], (w, h)
        e.fig.set_size_inches(20, 12)
        ResizeEvent("resize_event", e.fig.canvas)._process()
        assert e.fig._suptitle.get_fontsize() == title_pt
        assert e.sliders["dose"].label.get_fontsize() == 12
    finally:
        plt.close(e.fig)


def test_log_scale_keys_leave_the_figure_drawable():
    """``k``/``L`` and ``l`` are matplotlib's log-scale keys: pressed over the plot (a
    presenter's stray key), they put an axis on a log scale where the explorer's limits
    start at -2 days and 0 ng/mL, and the figure could no longer be drawn. They are ignored;
    other bindings (here ``g``, the grid) still work."""
    import io

    import matplotlib.pyplot as plt
    from matplotlib.backend_bases import KeyEvent

    e = Explorer("ketamine-iv")
    try:
        for ax in (e.ax_conc, e.ax_occ, e.ax_plast):
            x, y = ax.transAxes.transform((0.5, 0.5))
            for key in ("k", "L", "l"):
                KeyEvent("key_press_event", e.fig.canvas, key, x, y)._process()
            assert (ax.get_xscale(), ax.get_yscale()) == ("linear", "linear")
        e.sliders["dose"].set_val(0.8)
        e.fig.savefig(io.BytesIO(), format="png", dpi=30)
        assert e.peaks()[0] > 0 and e.ax_conc.get_xlim()[0] == -2
        x, y = e.ax_occ.transAxes.transform((0.5, 0.5))
        grid = e.ax_occ.xaxis.get_gridlines()[0].get_visible()
        KeyEvent("key_press_event", e.fig.canvas, "g", x, y)._process()
        assert e.ax_occ.xaxis.get_gridlines()[0].get_visible() != grid
    finally:
        plt.close(e.fig)


@pytest.mark.slow
def test_a_key_pressed_in_one_page_does_not_close_the_explorer_for_all(tmp_path):
    """In the browser view ``q`` (matplotlib's quit key) closed the one figure every page
    shows: every page went blank, reloading gave an error page and a traceback, while the
    server kept running. The page's q, ctrl+w and log-scale keys are ignored."""
    import asyncio

    pytest.importorskip("tornado")
    port = _free_port()
    server = _Served(tmp_path, port)

    async def session():
        a = await _Page().connect(port)
        await asyncio.sleep(1.0)
        for key in ("q", "ctrl+w", "k", "l"):
            for kind in ("key_press", "key_release"):
                await a.send({"type": kind, "key": "k" + key, "guiEvent": {}})
        await asyncio.sleep(0.5)
        b = await _Page().connect(port)
        await asyncio.sleep(1.0)
        before, = await _drag_and_wait(b)
        await _closed(a, b)
        return before, b.frames, b.cut

    try:
        before, after, cut = asyncio.run(asyncio.wait_for(session(), 600))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/1", timeout=10) as page:
            assert page.status == 200
        assert not cut and after > before, (before, after, cut)
        assert "Traceback" not in server.output(), server.output()[-3000:]
    finally:
        server.stop()


@pytest.mark.slow
def test_odd_requests_get_a_short_answer_and_no_traceback(tmp_path):
    """A figure number that does not exist (/2, /2/download.png), a download format matplotlib
    cannot write (download.xyz) and a page's message WebAgg cannot use (not JSON, fields
    missing) had each printed a traceback in the terminal (and answered 500); the message
    also dropped the connection of the page that sent it. Now: 404 with a sentence, the
    message ignored with one line, the page still connected."""
    import asyncio
    import urllib.error

    pytest.importorskip("tornado")
    port = _free_port()
    server = _Served(tmp_path, port)

    def get(path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    async def session():
        from tornado.websocket import websocket_connect

        far = await websocket_connect(f"ws://127.0.0.1:{port}/{'1' * 5000}/ws")
        assert await far.read_message() is None       # closed: no such figure
        await _closed(SimpleNamespace(ws=far, close=far.close))
        a = await _Page().connect(port)
        await asyncio.sleep(1.0)
        for m in ("not json", "[]", '{"type": "button_press"}',
                  '{"type": "supports_binary"}',
                  # (out of range: OverflowError; WebAgg's own dispatcher: RecursionError)
                  '{"type": "button_press", "x": Infinity, "y": 600, "button": 0, '
                  '"buttons": 1, "modifiers": []}', '{"type": "event"}'):
            await a.ws.write_message(m)
        await asyncio.sleep(0.5)
        before, = await _drag_and_wait(a)
        await _closed(a)
        return before, a.frames, a.cut

    try:
        assert get("/2") == (404, b"404: no figure 2; the explorer is at /\n")
        assert get("/2/download.png")[0] == 404
        # (a number int() refuses, over 4,300 digits: a traceback and 500)
        assert get("/" + "1" * 5000)[0] == 404
        assert get("/" + "1" * 5000 + "/download.png")[0] == 404
        code, body = get("/1/download.xyz")
        assert code == 404 and b"no download as 'xyz'" in body and b"png" in body
        code, body = get("/1/download.png")
        assert code == 200 and body.startswith(b"\x89PNG")
        before, after, cut = asyncio.run(asyncio.wait_for(session(), 600))
        assert not cut and after > before, (before, after, cut)
        out = server.output()
        assert "Traceback" not in out, out[-3000:]
        assert out.count("ignored a message from a page") == 6, out[-3000:]
    finally:
        server.stop()


def test_the_weight_slider_says_when_weight_has_no_effect(ex):
    """The nasal spray's model has no weight effect (flat doses): its weight slider moved
    while nothing in the figure changed, labelled as if it did. It now says so and is greyed,
    and is back to normal for the IV presets (dosed per kg)."""
    _reset(ex)
    w = ex.sliders["weight"]
    assert w.valtext.get_text() == "70"
    ex.preset.set_active(2)
    peaks = ex.peaks().copy()
    w.set_val(100)
    np.testing.assert_array_equal(ex.peaks(), peaks)          # nothing changes ...
    assert w.valtext.get_text() == "100 (no effect in this model)"   # ... and it says so
    assert w.label.get_color() != "black" and w.poly.get_alpha() < 1
    assert _texts_outside_the_figure(ex) == []
    ex.preset.set_active(0)
    assert w.valtext.get_text() == "100" and w.label.get_color() == "black"
    _reset(ex)


@pytest.mark.parametrize("size", [(8, 6), (10, 7), (6.4, 4.8)])
def test_the_first_run_note_fits_in_a_small_window(size, monkeypatch):
    """Until the first change the timing note says the first run loaded compiled code; in an
    8 x 6 in window that line ran off the figure's right edge ("(first run:" cut)."""
    import matplotlib.pyplot as plt
    from matplotlib.backend_bases import ResizeEvent

    # (as in a fresh process; the module, not the function ketasim.explore)
    monkeypatch.setattr(sys.modules[Explorer.__module__], "_compiled_loaded", False)
    e = Explorer("ketamine-iv")
    try:
        e.fig.set_size_inches(*size)
        ResizeEvent("resize_event", e.fig.canvas)._process()
        assert "first run" in e.timing_text.get_text()
        assert _texts_outside_the_figure(e) == []
    finally:
        plt.close(e.fig)


def test_only_the_first_explorer_in_a_process_says_it_loaded_compiled_code():
    """A second explorer in the same process (a notebook cell run again) said "first run:
    loading compiled code" next to its 12 ms, though nothing was loaded."""
    import matplotlib.pyplot as plt

    first = Explorer("ketamine-iv")
    second = Explorer("esketamine-nasal")
    try:
        assert "first run" not in second.timing_text.get_text()
        assert "re-simulated in" in second.timing_text.get_text()
        first.sliders["dose"].set_val(0.7)
        assert "first run" not in first.timing_text.get_text()
    finally:
        plt.close(first.fig)
        plt.close(second.fig)


def test_switching_route_moves_the_interval_to_the_routes_default_unless_chosen(ex):
    """The explorer starts the spray at 14-day maintenance and IV at 28 days; switching IV ->
    nasal had kept 28 days (and the default marker at 28), so the nasal course differed from
    the one ``explore("esketamine-nasal")`` shows. An interval the user chose stays."""
    import matplotlib.pyplot as plt

    _reset(ex)
    ex.preset.set_active(2)
    s = ex.sliders["interval"]
    assert s.val == 14 and s.valinit == 14 and s.vline.get_xdata()[0] == 14
    fresh = Explorer("esketamine-nasal")
    try:
        np.testing.assert_array_equal(ex.doses().time_h, fresh.doses().time_h)
        np.testing.assert_allclose(ex.peaks(), fresh.peaks(), rtol=1e-12)
    finally:
        plt.close(fresh.fig)
    assert "maintenance every 14 days" in ex.fig._suptitle.get_text()
    s.set_val(21)                               # chosen: kept across a switch
    ex.preset.set_active(0)
    assert s.val == 21 and s.valinit == 28
    assert "maintenance every 21 days" in ex.fig._suptitle.get_text()
    _reset(ex)


def _live_explorer(model="ketamine-iv"):
    """An explorer on a browser page's canvas (WebAgg's, with its event-loop timers), as
    ``ketasim explore`` serves it, without a server."""
    from matplotlib.backends.backend_webagg_core import (
        FigureCanvasWebAggCore,
        FigureManagerWebAgg,
    )
    from matplotlib.figure import Figure

    from ketasim.explore import DESIGN_INCHES

    fig = Figure(figsize=DESIGN_INCHES)
    FigureManagerWebAgg(FigureCanvasWebAggCore(fig), 1)     # (no page connected)
    return Explorer(model, fig=fig)


def _count_simulations(monkeypatch):
    """Count the explorer's re-simulations (each calls ketasim.simulate.simulate once)."""
    sim = sys.modules["ketasim.simulate"]     # (the module: ketasim.simulate is its function)

    calls = []
    real = sim.simulate

    def counted(*args, **kwargs):
        calls.append(kwargs.get("weight_kg"))
        return real(*args, **kwargs)

    monkeypatch.setattr(sim, "simulate", counted)
    return calls


async def _settled(e, timeout=60.0):
    """Wait until the explorer has no change left to simulate (and its timer has fired)."""
    import asyncio

    for _ in range(int(timeout * 100)):
        if not getattr(e, "_pending", False) and not getattr(e, "_timer_due", False):
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)          # (and nothing more comes)


def _same_course(e, values, model="ketamine-iv"):
    """The explorer shows exactly the course of ``values``: as a fresh explorer (Agg, updated
    at once) draws it."""
    import matplotlib.pyplot as plt

    ref = Explorer(model)
    try:
        for k, v in values.items():
            ref.sliders[k].set_val(v)
        assert ({k: e.sliders[k].val for k in ref.sliders}
                == {k: ref.sliders[k].val for k in ref.sliders})
        np.testing.assert_array_equal(e.lines["peaks"].get_ydata(), ref.peaks())
        np.testing.assert_array_equal(e.lines["conc"].get_ydata(),
                                      ref.lines["conc"].get_ydata())
        np.testing.assert_array_equal(e.lines["occ"].get_ydata(), ref.lines["occ"].get_ydata())
        assert e._title == ref._title
    finally:
        plt.close(ref.fig)


def test_changes_that_come_together_are_simulated_once_for_the_last_settings(monkeypatch):
    """A slider's drag sends a change per mouse motion; each had re-simulated the whole course
    at once, so a browser page waited tens of seconds behind a drag on a loaded machine. The
    changes that come together are simulated once, for the latest settings."""
    import asyncio

    e = _live_explorer()
    calls = _count_simulations(monkeypatch)

    async def drag():
        for dose in (0.3, 0.4, 0.55, 0.7, 0.85):        # a drag: five changes in a row
            e.sliders["dose"].set_val(dose)
        e.sliders["weight"].set_val(90)
        e.sliders["miss"].set_val(3)
        assert calls == [], "a change was simulated before the changes after it came"
        await _settled(e)
        assert len(calls) == 1, f"{len(calls)} re-simulations for one burst of changes"
        _same_course(e, {"dose": 0.85, "weight": 90.0, "miss": 3.0, "interval": 28.0})
        before = np.array(e.lines["peaks"].get_ydata(), float)
        del calls[:]            # (the reference explorer's own simulations)
        # what is drawn is asked for before the timer fires: the latest settings, at once
        e.sliders["dose"].set_val(0.6)
        e.sliders["dose"].set_val(0.45)
        np.testing.assert_allclose(e.peaks(), before * 0.45 / 0.85, rtol=1e-9)
        assert len(calls) == 1
        await _settled(e)
        assert len(calls) == 1, "the timer simulated again a course already drawn"
        _same_course(e, {"dose": 0.45, "weight": 90.0, "miss": 3.0, "interval": 28.0})

    asyncio.run(drag())


def test_the_result_and_metrics_read_before_the_timer_are_of_the_latest_settings(monkeypatch):
    """``ex.result`` and ``ex.metrics`` read right after a change (in a notebook cell, before
    the coalescing timer fires) are those of the sliders' present values, as ``peaks()`` is:
    they had stayed the course before the change until the timer fired."""
    import asyncio

    e = _live_explorer()
    calls = _count_simulations(monkeypatch)

    async def read():
        peak = float(np.max(e.result.concentration("plasma")))
        cmax = float(e.metrics["cmax_s1"][0])
        e.sliders["dose"].set_val(0.25)                  # half the default 0.5 mg/kg
        assert calls == []
        np.testing.assert_allclose(np.max(e.result.concentration("plasma")), peak / 2,
                                   rtol=1e-9)
        np.testing.assert_allclose(e.metrics["cmax_s1"][0], cmax / 2, rtol=1e-9)
        assert len(calls) == 1
        await _settled(e)
        assert len(calls) == 1, "the timer simulated again a course already drawn"

    asyncio.run(read())


def test_a_change_during_a_simulation_is_never_lost(monkeypatch):
    """A change that comes while the course is being simulated (or between the timer's start
    and its firing, in bursts of every length) is simulated after it: the figure always ends
    showing the last settings. (A change that came during a re-simulation had been drawn,
    then overwritten by the older settings' course: the sliders and the curves disagreed.)"""
    import asyncio

    sim = sys.modules["ketasim.simulate"]     # (the module: ketasim.simulate is its function)

    e = _live_explorer()
    real = sim.simulate
    calls = []

    def slider_moves_meanwhile(*args, **kwargs):
        calls.append(kwargs.get("weight_kg"))
        if len(calls) == 1:                     # the first simulation: a change comes in
            e.sliders["weight"].set_val(55)
        return real(*args, **kwargs)

    monkeypatch.setattr(sim, "simulate", slider_moves_meanwhile)

    async def changes():
        e.sliders["weight"].set_val(100)
        await _settled(e)
        assert calls == [100.0, 55.0]
        monkeypatch.setattr(sim, "simulate", real)
        _same_course(e, {"dose": 0.5, "weight": 55.0, "interval": 28.0, "miss": 0.0})
        # bursts of changes with waits of every length between them: the last always wins
        last = None
        for i, wait in enumerate((0, 0.001, 0.02, 0.05, 0, 0.1, 0.001, 0.06)):
            last = 0.1 + 0.05 * ((7 * i) % 19)
            e.sliders["dose"].set_val(last)
            e.sliders["interval"].set_val(7 + 3 * i)
            await asyncio.sleep(wait)
        await _settled(e)
        _same_course(e, {"dose": last, "weight": 55.0, "interval": 7.0 + 3 * 7, "miss": 0.0})

    asyncio.run(changes())


def test_a_preset_switch_and_slider_changes_are_simulated_once():
    """A preset switch comes with its dose and interval: one re-simulation, for the new
    preset's course (the sliders' changes in the same moment in it)."""
    import asyncio

    e = _live_explorer()

    async def switch():
        e.sliders["weight"].set_val(80)
        e.preset.set_active(2)
        e.sliders["dose"].set_val(84)
        await _settled(e)
        _same_course(e, {"dose": 84.0, "weight": 80.0, "interval": 14.0, "miss": 0.0},
                     model="esketamine-nasal")

    asyncio.run(switch())


def test_a_page_frame_and_a_long_wait_show_the_latest_settings(monkeypatch):
    """The browser view's timer can wait (tornado reads a page's messages as long as they keep
    coming: a drag's motions and the page's requests for frames): a page's request for a frame
    simulates a pending change first, and a change that comes when one has waited
    UPDATE_MAX_WAIT_S is simulated at once, so frames follow a long drag and are never of a
    course older than the sliders."""
    import asyncio

    ke = sys.modules["ketasim.explore"]
    e = _live_explorer()
    ke._flush_before_drawing(e)           # as serve() sets up the browser view
    calls = _count_simulations(monkeypatch)

    async def changes():
        e.sliders["dose"].set_val(0.8)
        e.sliders["dose"].set_val(0.9)
        e.fig.canvas.handle_event({"type": "draw"})      # a page asks for a frame
        assert len(calls) == 1 and not e._pending
        await _settled(e)
        assert len(calls) == 1
        monkeypatch.setattr(ke, "UPDATE_MAX_WAIT_S", 0.0)   # (every change has waited)
        e.sliders["weight"].set_val(60)                    # (the timer starts)
        e.sliders["weight"].set_val(65)                    # simulated at once
        assert len(calls) == 2 and calls[-1] == 65.0
        await _settled(e)
        assert len(calls) == 2
        del calls[:]
        _same_course(e, {"dose": 0.9, "weight": 65.0, "interval": 28.0, "miss": 0.0})

    asyncio.run(changes())
