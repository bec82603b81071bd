"""Figures: what a lecturer sees is what the model computes, labelled, readable and safe for
colour-blind viewers; the plotting API never shows windows."""

import dataclasses
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

import ketasim  # noqa: E402
from ketasim.plotting import (  # noqa: E402
    OKABE_ITO,
    analyte_labels,
    plot_bands,
    plot_compare,
    plot_course,
    run_course,
)


@pytest.fixture(autouse=True)
def no_show(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("plotting called plt.show()")
    monkeypatch.setattr(plt, "show", boom)
    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before        # no pyplot figures were opened


@pytest.fixture(scope="module")
def iv_run():
    return run_course("ketamine-iv", "standard-iv", 70, regimen="standard IV course")


@pytest.fixture(scope="module")
def nasal_run():
    return run_course("esketamine-nasal", "spravato", 70, until_h=60 * 24)


def _texts(fig):
    return [t for t in fig.findobj(matplotlib.text.Text) if t.get_text().strip()
            and t.get_visible()]


def _all_text(fig):
    return "\n".join(t.get_text() for t in _texts(fig))


def _legend_labels(fig):
    return [t.get_text() for lg in fig.findobj(matplotlib.legend.Legend)
            for t in lg.get_texts()]


def test_course_figure_names_everything(iv_run):
    fig = plot_course(iv_run)
    text = _all_text(fig)
    title = fig.subfigs[0]._suptitle.get_text()
    for part in ("Racemic ketamine", "0.5 mg/kg (35 mg)", "IV infusion over 40 min", "70 kg",
                 "standard IV course"):
        assert part in title
    assert "MODEL-PREDICTED" in text and "SCHEMATIC" in text
    assert "Fanta S et al." in text and "Preset ketamine-iv" in text
    labels = _legend_labels(fig)
    for lab in ("ketamine (S + R)", "norketamine (S + R)", "S-ketamine",
                "IV infusion 35 mg, 40 min", "session peak"):
        assert lab in labels
    # R-ketamine's curve lies on S-ketamine's (within 3 % of its peak): the legend says so
    assert "R-ketamine (on the S-ketamine line)" in labels
    assert any(t.startswith("trough before next session (at most ") for t in labels)
    assert not any("plasma (parent)" in t or t == "metabolite" for t in labels)


def test_nasal_labels(nasal_run):
    assert analyte_labels(nasal_run.model) == {"plasma": "esketamine",
                                               "metabolite": "noresketamine"}
    fig = plot_course(nasal_run)
    assert "nasal spray 56 mg" in _legend_labels(fig)
    assert "Esketamine: 56 mg nasal spray" in fig.subfigs[0]._suptitle.get_text()


def test_model_file_labels_win(iv_run):
    m = dataclasses.replace(iv_run.model, meta={**iv_run.model.meta,
                                                "labels": {"plasma": "ketamine, total"}})
    assert analyte_labels(m)["plasma"] == "ketamine, total"
    assert analyte_labels(m)["metabolite"] == "norketamine (S + R)"


def test_closeup_shows_the_exact_peak_and_the_infusion(iv_run):
    fig = plot_course(iv_run)
    axz = fig.subfigs[0].axes[0]
    # the main analyte's close-up curve reaches the end-of-infusion value exactly
    exact = ketasim.simulate("ketamine-iv", ketasim.Doses.single(35.0, "iv", duration_h=2 / 3),
                             [2 / 3], outputs=["plasma"]).concentration("plasma")[0]
    line = next(ln for ln in axz.get_lines() if ln.get_label() == "ketamine (S + R)")
    assert np.max(line.get_ydata()) == pytest.approx(exact, rel=1e-9)
    assert f"peak {exact:.0f} ng/mL\nat 40 min" in _all_text(fig)
    # the infusion bar spans 0 to 40 minutes
    bar = [c for c in axz.collections if c.get_label().startswith("IV infusion")]
    x = bar[0].get_paths()[0].vertices[:, 0]
    assert x.min() == pytest.approx(0) and x.max() == pytest.approx(2 / 3)


def test_a_grid_ending_during_the_infusion_shows_no_false_peak():
    """The output grid ends at 18 min of a 40-min infusion: the highest value shown is where
    the grid ends, not the session's peak (159 ng/mL at 40 min), and the infusion bar stops at
    the panel's edge."""
    d = ketasim.Doses.single(35.0, "iv", duration_h=2 / 3)
    r = ketasim.simulate("ketamine-iv", d, ketasim.time_grid(0.3, 0.1))
    fig = plot_course(r)
    text = _all_text(fig)
    assert "highest shown" in text and "where the grid ends" in text and "peak 9" not in text
    axz = fig.subfigs[0].axes[0]
    bar = [c for c in axz.collections if c.get_label().startswith("IV infusion")]
    x = bar[0].get_paths()[0].vertices[:, 0]
    assert x.min() == pytest.approx(0) and x.max() <= axz.get_xlim()[1] + 1e-12


def test_every_session_has_a_peak_marker(iv_run):
    fig = plot_course(iv_run)
    axc = fig.subfigs[0].axes[1]
    mk = next(ln for ln in axc.get_lines() if ln.get_label() == "session peak")
    n = len(ketasim.standard_iv_course())
    assert len(mk.get_ydata()) == n
    np.testing.assert_allclose(mk.get_ydata(), iv_run.metrics.cmax_ng_ml)
    starts = ketasim.expand(ketasim.standard_iv_course()).time_h
    np.testing.assert_allclose(mk.get_xdata(), (starts + 2 / 3) / 24, atol=1e-9)


def test_readable_and_colour_blind_safe(iv_run, nasal_run):
    for fig in (plot_course(iv_run), plot_compare([iv_run, nasal_run])):
        fig.draw_without_rendering()
        small = [(t.get_text()[:30], t.get_fontsize()) for t in _texts(fig)
                 if t.get_fontsize() < 11]
        assert small == []
        palette = {matplotlib.colors.to_hex(c) for c in OKABE_ITO.values()}
        for ax in fig.axes:
            for ln in ax.get_lines():
                c = matplotlib.colors.to_hex(ln.get_color())
                assert c in palette or c in ("#595959", "#808080"), c


def _overlaps(a, b):
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_legends_never_cover_data(iv_run, nasal_run):
    for fig in (plot_course(iv_run), plot_compare([iv_run, nasal_run])):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig).draw()
        r = fig.canvas.get_renderer()
        legends = fig.findobj(matplotlib.legend.Legend)
        assert legends
        for lg in legends:
            box = lg.get_window_extent(r)
            for ax in fig.axes:
                assert not _overlaps(box, ax.get_window_extent(r))


def test_bands_and_calibration_range_are_drawn_when_present(iv_run):
    band = SimpleNamespace(name="dissociative effects", analyte="plasma", lo_ng_ml=50.0,
                           hi_ng_ml=200.0, source="Bowdle 1998")
    high = SimpleNamespace(name="anaesthesia", analyte="plasma", lo_ng_ml=640.0,
                           hi_ng_ml=2210.0, source="Idvall 1979: awakening at 2.7 uM")
    other = SimpleNamespace(name="other analyte", analyte="metabolite", lo_ng_ml=1.0,
                            hi_ng_ml=2.0, source="x")
    model = iv_run.model
    m2 = dataclasses.replace(model)
    object.__setattr__(m2, "bands", (band, high, other))

    def with_range(res):
        if "occupancy_high" in res.names:       # the preset has calibrations: its own range
            return dataclasses.replace(res, model=m2)
        occ = res.output("occupancy")[None]
        data = np.concatenate([res.data, 0.5 * occ[:, None], 1.5 * occ[:, None]], axis=1)
        return dataclasses.replace(res, model=m2, data=data,
                                   names=res.names + ("occupancy_low", "occupancy_high"))

    run = dataclasses.replace(iv_run, course=with_range(iv_run.course),
                              closeup=with_range(iv_run.closeup))
    fig = plot_course(run)
    labels = _legend_labels(fig)
    assert "ketamine (S + R) window, dissociative effects: 50-200 ng/mL" in labels
    assert any(t.startswith("range over Ki calibrations") for t in labels)
    # a window far above the curves is named in the caption, not drawn; another analyte's
    # windows are not drawn on the main analyte's axis
    assert not any(t.startswith(("anaesthesia", "other analyte")) for t in labels)
    assert "Above the plotted range: anaesthesia: 640-2210 ng/mL (Idvall 1979)" in \
        _all_text(fig).replace("\n", " ")
    axz = fig.subfigs[0].axes[0]
    span = next(p for p in axz.patches if "dissociative" in p.get_label())
    if isinstance(span, Rectangle):
        y = np.array([span.get_y(), span.get_y() + span.get_height()])
    else:
        y = span.get_xy()[:, 1]
    assert y.min() == pytest.approx(50) and y.max() == pytest.approx(200)
    assert axz.get_ylim()[1] > 200            # a window just above the peak is shown whole
    assert "dissociative effects: 50-200 ng/mL (Bowdle 1998)" in _all_text(fig)
    occ_ax = fig.subfigs[0].axes[2]
    fill = next(c for c in occ_ax.collections if isinstance(c, PolyCollection)
                and c.get_label().startswith("range over Ki calibrations"))
    v = fill.get_paths()[0].vertices[:, 1]
    assert v.max() == pytest.approx(100 * run.closeup.output("occupancy_high").max(), rel=1e-6)
    # and without them nothing of the kind is drawn
    m0 = dataclasses.replace(model)
    object.__setattr__(m0, "bands", ())

    def without_range(res):
        keep = [i for i, nm in enumerate(res.names)
                if nm not in ("occupancy_low", "occupancy_high")]
        return dataclasses.replace(res, model=m0, data=res.data[:, keep],
                                   names=tuple(res.names[i] for i in keep))
    bare = dataclasses.replace(iv_run, course=without_range(iv_run.course),
                               closeup=without_range(iv_run.closeup))
    labels = _legend_labels(plot_course(bare))
    assert not any("Ki calibrations" in t or "ng/mL:" in t for t in labels)


def test_compare_overlays_runs_in_distinct_colours(iv_run, nasal_run):
    fig = plot_compare([iv_run, nasal_run], labels=["IV", "nasal"])
    axz = fig.subfigs[0].axes[0]
    by_label = {ln.get_label(): ln for ln in axz.get_lines()}
    a, b = by_label["IV: ketamine (S + R)"], by_label["nasal: esketamine"]
    assert a.get_color() != b.get_color()
    assert np.max(b.get_ydata()) == pytest.approx(
        nasal_run.closeup.concentration("plasma").max())
    assert "Comparison: IV  vs  nasal" == fig.subfigs[0]._suptitle.get_text()


def test_compare_with_long_labels_keeps_the_x_labels_apart(iv_run, nasal_run):
    """Two compare labels of 57 characters: each legend entry ("<label>: IV infusion 35 mg,
    40 min") had widened the legend column until the close-up's x label ran into the whole
    course's ("... after its sWHOLE COURSE ..."). Long entries are now wrapped."""
    from ketasim.plotting import LEGEND_CHARS

    labels = ["Racemic ketamine IV, standard course, monthly maintenance",
              "Spravato nasal spray 56 mg twice weekly then biweekly"]
    fig = plot_compare([iv_run, nasal_run], labels=labels)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    axes = fig.subfigs[0].axes
    r = fig.canvas.get_renderer()
    a = axes[-2].xaxis.label.get_window_extent(r)
    b = axes[-1].xaxis.label.get_window_extent(r)
    assert a.x1 < b.x0, (a, b)
    entries = _legend_labels(fig)
    assert any("\n" in t for t in entries)
    assert all(len(line) <= LEGEND_CHARS for t in entries for line in t.split("\n"))
    # the figure's usual entries are not wrapped
    plain = plot_compare([iv_run, nasal_run], labels=["IV", "nasal"])
    assert not any("\n" in t for t in _legend_labels(plain))


def test_compare_says_venous_only_when_every_model_does(iv_run, nasal_run):
    """A comparison of the (venous) ketamine-iv preset with a model file that states no
    sampling had titled both curves "Plasma concentration (venous blood)"."""
    from pathlib import Path

    from ketasim.plotting import _row_title

    toml = Path(__file__).resolve().parents[1] / "examples" / "one_compartment.toml"
    other = run_course(str(toml), ketasim.Doses.single(100.0, "oral"), 70)
    assert _row_title("pk", [iv_run, nasal_run]) == "Plasma concentration (venous blood)"
    assert _row_title("pk", [iv_run, other]) == "Plasma concentration"
    assert _row_title("pk", [other]) == "Plasma concentration"


def test_plot_bands_percentiles():
    rng = np.random.default_rng(3)
    cl = 95.2 * rng.lognormal(0, 0.3, 200)
    r = ketasim.simulate("ketamine-iv", ketasim.Doses.single(35.0, "iv", duration_h=2 / 3),
                         ketasim.time_grid(12, 0.25), params={"CL": cl}, outputs=["plasma"])
    fig = plot_bands(r, "plasma", label="ketamine", color="#D55E00")
    ax = fig.axes[0]
    med = next(ln for ln in ax.get_lines() if ln.get_label() == "ketamine: median")
    np.testing.assert_allclose(med.get_ydata(), np.median(r.concentration("plasma"), axis=0))
    assert matplotlib.colors.to_hex(med.get_color()) == "#d55e00"
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.max() == pytest.approx(np.percentile(r.concentration("plasma"), 95,
                                                     axis=0).max())
    # plain arrays work too, on a given Axes
    from matplotlib.figure import Figure
    ax2 = Figure().add_subplot()
    assert plot_bands(np.ones((3, 4)), times=np.arange(4.0), ax=ax2) is ax2.figure
    # the legend sits inside the axes (two panels side by side keep their width), clear of
    # the median
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig).draw()
    leg = ax.get_legend().get_window_extent()
    box = ax.get_window_extent()
    assert box.x0 <= leg.x0 and leg.x1 <= box.x1 and box.y0 <= leg.y0 and leg.y1 <= box.y1


def test_plot_course_accepts_a_plain_result():
    d = ketasim.standard_iv_course(months=1)
    r = ketasim.simulate("ketamine-iv", d, ketasim.time_grid(40 * 24, 0.1))
    fig = plot_course(r)
    assert len(fig.subfigs[0].axes) == 6


def test_plot_course_of_a_population_draws_median_and_band():
    """A population Result (parameter arrays): the course figure shows each output's median
    over subjects and its 5-95 % band, and no per-session markers (they are one subject's)."""
    d = ketasim.standard_iv_course(months=1)
    cl = np.array([70.0, 95.0, 120.0])
    r = ketasim.simulate("ketamine-iv", d, ketasim.time_grid(40 * 24, 0.25), params={"CL": cl})
    fig = plot_course(r)
    course_pk = fig.subfigs[0].axes[1]
    med = next(ln for ln in course_pk.get_lines()
               if ln.get_label().endswith("(median at each time)"))
    np.testing.assert_allclose(med.get_ydata(), np.median(r.concentration("plasma"), axis=0))
    assert not any(ln.get_label() == "session peak" for ln in course_pk.get_lines())


def test_compare_peak_labels_sit_clear_of_the_curves_and_name_their_peaks(iv_run, nasal_run):
    """In a comparison each run's first-session peak is labelled in its colour, in a column
    in the close-up's upper right; drawn, no label's box crosses a close-up curve (the lower
    peak's label had sat on its own curve)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from ketasim.plotting import encode_figure

    fig = plot_compare([iv_run, nasal_run])
    encode_figure(fig, "png", 60)                  # laid out and drawn
    FigureCanvasAgg(fig).draw()
    axz = fig.subfigs[0].axes[0]
    notes = [t for t in axz.texts if t.get_text().startswith("peak ")]
    peaks = [float(np.ravel(r.metrics.cmax_ng_ml)[0]) for r in (iv_run, nasal_run)]
    assert [t.get_text().split()[1] for t in notes] == [f"{p:.0f}" for p in peaks]
    renderer = fig.canvas.get_renderer()
    for t in notes:
        box = t.get_window_extent(renderer)
        for ln in axz.get_lines():
            xy = ln.get_transform().transform(np.column_stack([ln.get_xdata(),
                                                               ln.get_ydata()]))
            inside = ((xy[:, 0] >= box.x0) & (xy[:, 0] <= box.x1) & (xy[:, 1] >= box.y0)
                      & (xy[:, 1] <= box.y1))
            assert not inside.any(), (t.get_text(), ln.get_label())


def test_png_laid_out_once_is_the_same_picture(iv_run, nasal_run):
    """encode_figure runs a PNG's layout once: the same file as a plain savefig, and the
    figure keeps its layout engine (a later SVG or PDF is laid out as usual)."""
    import io
    from hashlib import sha256

    from ketasim.plotting import encode_figure

    for make in (lambda: plot_course(iv_run), lambda: plot_compare([iv_run, nasal_run])):
        fig = make()
        engine = fig.get_layout_engine()
        fast = encode_figure(fig, "png", 60)
        assert fig.get_layout_engine() is engine and fig.dpi == 100
        buf = io.BytesIO()
        make().savefig(buf, format="png", dpi=60)
        # (digests: pytest's diff of two large byte strings would take minutes)
        assert sha256(fast).hexdigest() == sha256(buf.getvalue()).hexdigest()


def test_course_figure_of_a_dose_tables_subjects_says_what_it_shows(tmp_path):
    """Several subjects of a dose table: the title names them (not one dose and weight that
    no subject had), and the course axis promises no per-session markers."""
    d = tmp_path / "d.csv"
    d.write_text("subject,time_h,amount_mg,route,duration_h,weight_kg\n"
                 "1,0,35,iv,0.6667,60\n1,48,35,iv,0.6667,60\n2,0,40,iv,0.6667,80\n")
    r = ketasim.simulate("ketamine-iv", ketasim.read_doses(d), ketasim.time_grid(96, 0.25))
    fig = plot_course(r)
    title = fig.subfigs[0]._suptitle.get_text()
    assert "2 subjects of d.csv" in title and "kg" not in title.split("\n")[0][-6:]
    assert "median and 5-95 % band" in title
    # the same table built in Python has no file name to give ("<doses>" had been shown)
    recs = [{"subject": 1, "time_h": 0.0, "amount_mg": 35.0, "route": "iv", "duration_h": 0.6667,
             "weight_kg": 60.0},
            {"subject": 2, "time_h": 0.0, "amount_mg": 40.0, "route": "iv", "duration_h": 0.6667,
             "weight_kg": 80.0}]
    rp = ketasim.simulate("ketamine-iv", ketasim.Doses.from_records(recs),
                          ketasim.time_grid(96, 0.25))
    tp = plot_course(rp).subfigs[0]._suptitle.get_text()
    assert "2 subjects of a dose table" in tp and "<" not in tp
    xlabels = [ax.get_xlabel() for ax in fig.subfigs[0].axes if ax.get_xlabel()]
    assert any(x.startswith("WHOLE COURSE") for x in xlabels)
    # no marker at each subject's peak is promised; the markers are their median's
    assert not any("every session's peak" in x for x in xlabels)
    assert any("the subjects' median peak" in x for x in xlabels)


def test_dose_marks_describe_every_dose_in_the_window():
    """A table's subjects may have different doses: the legend gives their range, not the
    first row's amount; one entry per route and kind (bar or triangle)."""
    from ketasim.plotting import _infusion_bars

    d = ketasim.Doses.from_records([
        {"subject": 1, "time_h": 0, "amount_mg": 30, "route": "iv", "duration_h": 2 / 3},
        {"subject": 2, "time_h": 0, "amount_mg": 45, "route": "iv", "duration_h": 0.5},
        {"subject": 2, "time_h": 1, "amount_mg": 10, "route": "iv"},
        {"subject": 1, "time_h": 99, "amount_mg": 90, "route": "iv", "duration_h": 1}])
    fig, ax = plt.subplots()
    _infusion_bars(ax, d, 0.0, 8.0)
    labels = [h.get_label() for h in ax.get_legend_handles_labels()[0]]
    assert labels == ["IV infusion 30–45 mg, 30–40 min", "IV bolus 10 mg"]
    plt.close(fig)


def test_caption_says_only_what_the_model_has():
    from ketasim.plotting import _caption_lines

    one = ketasim.Model.from_dict({
        "model": {"name": "one", "citation": "closed form"}, "parameters": {"V": 50.0,
                                                                           "CL": 10.0},
        "compartments": {"central": "V"}, "flows": [{"from": "central", "to": "out",
                                                     "cl": "CL"}],
        "routes": {"iv": {"to": "central"}}})
    fig = plt.figure(figsize=(16, 6))
    text = " ".join(_caption_lines(fig, [one]))
    assert "not a dosing recommendation" in text
    assert "Occupancy" not in text and "SCHEMATIC" not in text
    text = " ".join(_caption_lines(fig, [ketasim.load_model("ketamine-iv")]))
    assert "Occupancy is model-predicted" in text and "SCHEMATIC" in text
    plt.close(fig)


def test_course_grid_longer_than_allowed_is_refused_before_it_is_built():
    """run_course's grid for a course beyond the grid limit is refused with the numbers, not
    allocated (10^12 hours on a 5-minute grid would be 1.2e13 points)."""
    from ketasim.plotting import course_grid

    d = ketasim.resolve_doses("standard-iv", months=1)
    with pytest.raises(ketasim.KetasimInputError, match="more than the 200,000,000 allowed"):
        course_grid(d, 1 / 12, 1e12)
    with pytest.raises(ketasim.KetasimInputError, match="time points"):
        course_grid(d, 1 / 12, float("inf"))
    t = course_grid(d, 1 / 12, 48.0)
    assert t[0] == 0.0 and t[-1] == 48.0 and np.all(np.diff(t) > 0)


def test_the_occupancy_panel_names_a_chosen_ki_calibration():
    """A course drawn with another occupancy calibration says which (the figure had shown a
    40 % peak under the default title, the calibration only in the printed summary); the
    default one is named too (a lecturer quoting "19 % occupancy" could not tell what it
    rests on)."""
    import matplotlib.pyplot as plt

    from ketasim.plotting import plot_course, run_course

    m = ketasim.load_model("ketamine-iv")
    texts = []
    for cal in (None, "in-vitro"):
        kw = {} if cal is None else {"occupancy_calibration": cal}
        fig = plot_course(run_course(m, ketasim.standard_iv_course(months=1), **kw))
        texts.append(" ".join(t.get_text() for ax in fig.axes for t in [ax.title]
                              + list(ax.texts)))
        plt.close(fig)
    assert "Ki calibration in-vivo" in texts[0]
    assert "Ki calibration in-vitro" in texts[1]


def test_a_title_states_the_weight_only_when_the_model_depends_on_it():
    """esketamine-nasal has no weight effect (fixed-dose sprays): its course title does not
    claim a weight; ketamine-iv's (mg/kg doses, allometric disposition) does."""
    from ketasim.plotting import _title, run_course, uses_weight

    titles = {}
    for name, doses in (("esketamine-nasal", ketasim.spravato_course(months=1)),
                        ("ketamine-iv", ketasim.standard_iv_course(months=1))):
        m = ketasim.load_model(name)
        titles[name] = _title(run_course(m, doses))
        # the claim checked: a different weight changes the curves exactly when it is stated
        t = np.linspace(0.0, 6.0, 61)
        a = ketasim.simulate(m, doses, t, weight_kg=50.0, outputs=["plasma"]).data
        b = ketasim.simulate(m, doses, t, weight_kg=90.0, outputs=["plasma"]).data
        assert uses_weight(m) == (not np.array_equal(a, b))
    assert " kg" not in titles["esketamine-nasal"].split("\n")[0]
    assert "70 kg" in titles["ketamine-iv"]


def test_a_coarse_grid_keeps_the_exact_peaks_on_the_scale_and_says_what_it_shows(
        monkeypatch):
    """On a 6-hour grid the curves pass far below the 40-minute infusion's peaks: the exact
    session peaks drawn as markers stay on the concentration scale (they had vanished above
    it, while the occupancy panel showed its own), the title counts the sessions the grid
    shows, and the close-up note gives the grid's step, not its last remainder."""
    import matplotlib.pyplot as plt

    from ketasim.plotting import _as_run, _title, plot_course

    r = ketasim.simulate("ketamine-iv", "standard-iv", ketasim.time_grid(400.0, 6.0))
    fig = plot_course(r)         # (the close-up is run again on a one-minute grid)
    notes = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    assert "no close-up" not in notes and "the curve" not in notes
    plt.close(fig)
    # a close-up too large to run again is the grid's own points: too coarse here, and said
    import ketasim.plotting as kp
    monkeypatch.setattr(kp, "CLOSEUP_RERUN_BYTES", 0)
    fig = plot_course(r)
    conc_axes = [ax for ax in fig.axes if ax.get_ylabel() == "ng/mL"]
    from ketasim.engine import session_metrics

    cmax = session_metrics("ketamine-iv", "standard-iv", metrics=("cmax",))["cmax"][0]
    assert conc_axes and all(ax.get_ylim()[1] >= cmax for ax in conc_axes)
    notes = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    assert "step 6 h" in notes
    plt.close(fig)
    assert "6 of 13 sessions shown" in _title(_as_run(r, 8.0))
    # a grid that ends just as a session starts shows nothing of that session
    at = ketasim.simulate("ketamine-iv", "standard-iv", ketasim.time_grid(48.0, 0.5))
    assert "1 of 13 sessions shown" in _title(_as_run(at, 8.0))


@pytest.mark.parametrize("fmt", ["svg", "pdf"])
def test_a_vector_figure_has_no_date_and_the_same_ids_each_run(fmt):
    """No creation date in a PDF or SVG, and the SVG's ids from a fixed salt, so two runs of a
    command differ in neither (they differed in both every time). (Not always byte for byte:
    matplotlib's layout solver now and then places an edge at -0 instead of 0.)"""
    import re
    import subprocess
    import sys

    code = ("import sys, ketasim; from ketasim.plotting import encode_figure, plot_course; "
            "r = ketasim.simulate('ketamine-iv', ketasim.Doses.single(35.0, 'iv', "
            "duration_h=2 / 3), ketasim.time_grid(48.0, 0.5)); "
            f"sys.stdout.buffer.write(encode_figure(plot_course(r), '{fmt}', 120))")
    a, b = (subprocess.run([sys.executable, "-c", code], capture_output=True, check=True,
                           timeout=300).stdout for _ in range(2))
    assert len(a) > 10_000 and b"CreationDate" not in a and b"<dc:date>" not in a
    if fmt == "svg":
        ids = [re.findall(rb'id="([^"]+)"', x) for x in (a, b)]
        assert len(ids[0]) > 20 and ids[0] == ids[1]


def test_a_table_in_mg_is_described_in_mg_and_a_course_per_kg():
    """The standard course is dosed per kg: '0.5 mg/kg (35 mg)'. A table given in mg reads
    '35 mg (0.5 mg/kg at 70 kg)': it had read as if it were given per kg."""
    from ketasim.plotting import describe_doses

    course = ketasim.standard_iv_course(months=1)
    table = ketasim.Doses.single(35.0, "iv", duration_h=2 / 3)
    assert describe_doses(course, 70.0) == "0.5 mg/kg (35 mg) IV infusion over 40 min"
    assert describe_doses(table, 70.0) == "35 mg (0.5 mg/kg at 70 kg) IV infusion over 40 min"
    assert describe_doses(table, 80.0) == \
        "35 mg (0.438 mg/kg at 80 kg) IV infusion over 40 min"


def test_windows_of_another_analyte_are_named_not_silently_dropped():
    """A model file's [[bands]] window for another analyte than the plotted one is not drawn
    against the plotted one's curve: the caption names it (it had vanished without a word)."""
    import tomllib
    from pathlib import Path

    spec = tomllib.loads(Path(ketasim.__file__).with_name("presets").joinpath(
        "ketamine-iv.toml").read_text())
    spec["bands"].append({"name": "hypothetical", "analyte": "metabolite", "lo_ng_ml": 10,
                          "hi_ng_ml": 20, "source": "test"})
    m = ketasim.Model.from_dict(spec)
    r = ketasim.simulate(m, ketasim.Doses.single(35.0, "iv", duration_h=2 / 3),
                         ketasim.time_grid(48.0, 0.5))
    text = _all_text(plot_course(r))
    assert "Not drawn (for another analyte than plasma): metabolite hypothetical: 10-20 ng/mL" \
        in text
    assert "Not drawn" not in _all_text(plot_course(ketasim.simulate(
        "ketamine-iv", ketasim.Doses.single(35.0, "iv", duration_h=2 / 3),
        ketasim.time_grid(48.0, 0.5))))


def test_course_figure_scales_and_labels_say_what_is_drawn():
    """From a lecturer's review: the occupancy close-up and course panels had different
    scales (0-40 against 0-50 %); a tiny dose printed "1e-8+1" over a glutamate axis; a 72-h
    close-up over two sessions was labelled FIRST SESSION; the windows' caption did not say
    they are levels of the parent drug (the metabolite's curve shares the axis); the
    course titles said "monthly" and "every 1-2 weeks" for every 28 and every 14 days."""
    import matplotlib.pyplot as plt

    from ketasim.plotting import plot_course, run_course

    def texts(fig):
        # (words as read: an x label may be on two lines, see test_long_labels_in_capitals...)
        return " ".join((" ".join(t.get_text() for sf in [fig, *fig.subfigs] for t in sf.texts)
                         + " " + " ".join(t.get_text() for ax in fig.axes
                                          for t in [ax.xaxis.label, *ax.texts])).split())

    fig = plot_course(run_course("esketamine-nasal", "spravato", until_h=24 * 60))
    axes = fig.subfigs[0].axes
    assert axes[2].get_ylim() == axes[3].get_ylim()          # the occupancy row, one scale
    assert "windows of esketamine:" in texts(fig)
    assert "then every 2 weeks" in fig.subfigs[0]._suptitle.get_text()
    plt.close(fig)
    fig = plot_course(run_course("ketamine-iv", ketasim.standard_iv_course(dose_mg_per_kg=1e-3,
                                                                           months=1)))
    glu = fig.subfigs[0].axes[4]
    fig.canvas.draw()
    assert glu.yaxis.get_offset_text().get_text() == ""
    assert glu.get_ylim()[1] >= 1.1 and fig.subfigs[0].axes[5].get_ylim()[1] >= 0.05
    assert "FIRST SESSION: hours after its start" in texts(fig)
    plt.close(fig)
    fig = plot_course(run_course("ketamine-iv", "standard-iv", until_h=24 * 30, closeup_h=72))
    assert "FIRST 72 HOURS: from the first session's start" in texts(fig)
    assert "then every 4 weeks" in fig.subfigs[0]._suptitle.get_text()
    plt.close(fig)


def test_a_peak_between_grid_points_is_labelled_as_exact_with_what_the_curve_shows(
        monkeypatch):
    """simulate --plot on its 0.1-h grid misses a 40-min infusion's end: the exact peak's
    marker floated 8 ng/mL above the drawn curve, unexplained. (The close-up is now run
    again on a one-minute grid; a population too large for that keeps its grid's points.)"""
    import matplotlib.pyplot as plt

    import ketasim.plotting as kp
    from ketasim.plotting import plot_course, run_course

    monkeypatch.setattr(kp, "CLOSEUP_RERUN_BYTES", 0)
    d = ketasim.Doses.single(40.0, "iv", duration_h=0.6667)
    m = ketasim.load_model("ketamine-iv")
    res = ketasim.simulate(m, d, ketasim.time_grid(48, 0.1))
    fig = plot_course(res)
    text = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    drawn = res.concentration("plasma").max()
    assert f"the curve, every 6 min,\nreaches {drawn:.3g})" in text
    plt.close(fig)
    fig = plot_course(run_course(m, d, until_h=48))      # its grid holds the infusion's end
    assert "the curve" not in " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    plt.close(fig)


def test_the_esketamine_iv_figure_says_what_its_default_dose_is():
    """`course --model esketamine-iv` draws the standard course's 0.5 mg/kg, racemic
    ketamine's dose, under the title 'standard IV course': the caption now says so and
    gives the doses IV esketamine was studied at."""
    import matplotlib.pyplot as plt

    from ketasim.plotting import plot_course, run_course

    fig = plot_course(run_course("esketamine-iv", "standard-iv", until_h=24 * 10))
    cap = " ".join(" ".join(t.get_text() for t in sf.texts) for sf in fig.subfigs)
    assert "0.5 mg/kg is racemic ketamine's dose" in cap.replace("\n", " ")
    assert "0.20 and 0.40 mg/kg" in cap.replace("\n", " ")
    plt.close(fig)
    fig = plot_course(run_course("ketamine-iv", "standard-iv", until_h=24 * 10))
    assert "racemic ketamine's dose" not in " ".join(
        " ".join(t.get_text() for t in sf.texts) for sf in fig.subfigs)
    plt.close(fig)


def test_compare_and_peak_labels_keep_to_what_is_drawn():
    """A comparison's occupancy bands had one legend entry that named none of them, and its
    dose bars lay on one another with no legend; a low peak's label hung across the axis into
    the row below; a dose of 0 was labelled 'peak 0 ng/mL' below the axis; a nasal run's
    caption gave a weight the model does not use. (One entry per band kind, not per run,
    keeps five runs' legends within their rows.)"""
    import matplotlib.pyplot as plt

    from ketasim.plotting import plot_compare, plot_course, run_course

    runs = [run_course("ketamine-iv", "standard-iv", until_h=24 * 8, label="iv"),
            run_course("esketamine-nasal", "spravato", until_h=24 * 8, label="nasal")]
    fig = plot_compare(runs)
    labels = _legend_labels(fig)
    assert "range over Ki calibrations (in-vitro, in-vivo), each run's hatch" in labels
    assert "plasticity index: thin, each run's colour" in labels
    assert "iv: IV infusion 35 mg, 40 min" in labels and "nasal: nasal spray 56 mg" in labels
    cap = " ".join(t.get_text() for sf in fig.subfigs for t in sf.texts).replace("\n", " ")
    assert "iv: racemic ketamine, 0.5 mg/kg (35 mg) IV infusion over 40 min, 70 kg," in cap
    assert "nasal: esketamine, 56 mg nasal spray, Spravato" in cap
    plt.close(fig)
    oral = ketasim.Doses.single(100.0, "oral")
    fig = plot_course(run_course("esketamine-nasal", oral, until_h=48))
    note = next(t for t in fig.subfigs[0].axes[0].texts if t.get_text().startswith("peak"))
    # in the upper right corner, inside the axes: clear of the curves and of the row below
    assert note.get_transform() == fig.subfigs[0].axes[0].transAxes
    assert note.get_position() == (0.97, 0.96) and note.get_va() == "top"
    plt.close(fig)
    fig = plot_course(run_course("ketamine-iv", ketasim.Doses.single(0.0, "iv"), until_h=48))
    texts = [t.get_text() for t in fig.subfigs[0].axes[0].texts]
    assert "no drug in the plasma" in texts and not any(t.startswith("peak") for t in texts)
    plt.close(fig)


def test_a_kind_of_window_looks_the_same_in_every_preset():
    """Yellow had been analgesia in ketamine-iv's figure and psychedelic effects in
    esketamine's (the colour went by the window's place in the list)."""
    import matplotlib.pyplot as plt

    from ketasim.plotting import plot_course, run_course

    look = {}
    for preset, doses in (("ketamine-iv", "standard-iv"), ("esketamine-iv", "standard-iv")):
        fig = plot_course(run_course(preset, doses, until_h=48))
        for p in fig.subfigs[0].axes[0].patches:
            name = p.get_label().split(" (")[0].split(":")[0]
            if "effects" in name or "analgesia" in name:
                look.setdefault(name.replace("psychedelic", "X"), set()).add(
                    (tuple(np.round(p.get_edgecolor() if p.get_hatch() else p.get_facecolor(),
                                    3)[:3]), bool(p.get_hatch())))
        plt.close(fig)
    assert look and all(len(v) == 1 for v in look.values()), look


def test_mixed_routes_are_described_each_with_its_doses_and_the_dose_note_only_where_it_applies():
    """A table of oral 50, IV 20, nasal 84 and IV 30 mg had been titled '20-84 mg nasal spray
    + IV infusion + oral'; esketamine-iv's note on the standard course's 0.5 mg/kg was shown
    under a 3 mg/kg course too."""
    import matplotlib.pyplot as plt

    from ketasim.plotting import describe_doses, plot_course, run_course

    d = ketasim.Doses([0.0, 24.0, 48.0, 72.0], [50.0, 20.0, 84.0, 30.0],
                      ["oral", "iv", "intranasal", "iv"], [0.0, 2 / 3, 0.0, 2 / 3])
    assert describe_doses(d, 70.0) == ("84 mg nasal spray + 20-30 mg IV infusion over 40 min "
                                       "+ 50 mg oral")

    def caption(run):
        fig = plot_course(run)
        text = " ".join(t.get_text() for sf in fig.subfigs for t in sf.texts).replace("\n", " ")
        plt.close(fig)
        return text

    from ketasim.plotting import COURSE_DESCRIPTIONS

    std = COURSE_DESCRIPTIONS["standard-iv"]
    assert "racemic ketamine's dose" in caption(run_course(
        "esketamine-iv", "standard-iv", until_h=48, regimen=std + "; 6 months"))
    assert "racemic ketamine's dose" not in caption(run_course(
        "esketamine-iv", ketasim.standard_iv_course(dose_mg_per_kg=3.0), until_h=48,
        regimen=std + "; 6 months"))


def test_five_runs_compared_keep_their_peak_labels_apart_and_their_title_inside():
    """Five runs: the peak labels had been stacked two lines each, 0.2 of the panel apart,
    the last one down on the curves and the axis; a title of five labels had run past both
    edges of the figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from ketasim.plotting import encode_figure

    runs = [run_course("ketamine-iv", ketasim.Doses([0.0], [a], ["iv"], [2 / 3]), 70,
                       until_h=48.0, label=f"Ketamine IV {a:g} mg – a longer label")
            for a in (17.5, 35.0, 52.5, 70.0, 105.0)]
    fig = plot_compare(runs)
    encode_figure(fig, "png", 60)
    FigureCanvasAgg(fig).draw()
    r = fig.canvas.get_renderer()
    axz = fig.subfigs[0].axes[0]
    notes = [t for t in axz.texts if t.get_text().startswith("peak ")]
    assert len(notes) == 5 and all("\n" not in t.get_text() for t in notes)
    boxes = [t.get_window_extent(r) for t in notes]
    assert not any(_overlaps(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    ax_box = axz.get_window_extent(r)
    assert all(b.y0 > ax_box.y0 + 0.4 * ax_box.height for b in boxes)   # the upper part
    # the runs' dose bars have one legend entry between them (there is no room for five)
    assert any(lb.startswith("doses (bars, triangles)") for lb in _legend_labels(fig))
    title = next(t for t in _texts(fig) if t.get_text().startswith("Comparison"))
    tb, fb = title.get_window_extent(r), fig.bbox
    assert fb.x0 <= tb.x0 and tb.x1 <= fb.x1


def test_a_figure_of_a_tables_subjects_gives_their_exact_peaks():
    """The median curve on a 6-minute grid passes below the subjects' peaks (an infusion
    ending between output times): the figure gives their exact peaks, as --summary does."""
    from ketasim.metrics import course_metrics

    d = ketasim.Doses([0.0, 0.0, 0.0], [35.0, 25.0, 50.0], ["iv"] * 3, [2 / 3] * 3,
                      subject=[1, 2, 3])
    res = ketasim.simulate("ketamine-iv", d, ketasim.time_grid(24 * 7, 0.1))
    fig = plot_course(res)
    note = next(t.get_text() for t in _texts(fig) if t.get_text().startswith("subjects' exact"))
    first = np.asarray(course_metrics(res).cmax_ng_ml)[:, 0]
    assert f"median {ketasim.plotting._num(np.median(first))} ng/mL" in note
    hatched = [c for c in fig.findobj(matplotlib.collections.PolyCollection) if c.get_hatch()]
    assert hatched, "the Ki-calibration range is hatched beside the subjects' shaded band"


def test_a_short_named_course_promises_no_maintenance():
    from ketasim.plotting import course_description

    one = course_description("standard-iv", ketasim.standard_iv_course(months=1))
    assert "then every" not in one and one.startswith("standard IV course (")
    short = course_description("spravato", ketasim.resolve_doses("spravato", months=0.3))
    assert short.endswith("its first 3 sessions")
    assert "then every 4 weeks" in course_description("standard-iv",
                                                      ketasim.standard_iv_course())


def test_a_figure_title_keeps_a_model_name_as_written():
    # a model without a drug name is titled by its own name, an identifier, as written (it
    # had been capitalised: "my-model" as "My-model", "pbpk-KET" as "Pbpk-KET"); a drug named
    # in words still begins the title capitalised
    from _models import one_cpt_spec

    from ketasim.plotting import _as_run, _title

    for name, want in (("my-model", "my-model: "), ("pbpk-KET", "pbpk-KET: ")):
        spec = one_cpt_spec()
        spec["model"] = {"name": name}
        m = ketasim.Model.from_dict(spec)
        r = ketasim.simulate(m, ketasim.Doses.single(10.0, "iv"), ketasim.time_grid(24, 0.5))
        assert _title(_as_run(r, 8.0)).startswith(want)
    r = ketasim.simulate("ketamine-iv", ketasim.Doses.single(35.0, "iv", duration_h=2 / 3),
                         ketasim.time_grid(24, 0.5))
    assert _title(_as_run(r, 8.0)).startswith("Racemic ketamine: ")


def test_a_coarse_results_closeup_reaches_its_exact_peak():
    # simulate's 6-minute grid misses a 40-minute infusion's end: its close-up is drawn on a
    # one-minute grid through every event (the same subject, outputs and settings), so the
    # curve reaches the exact peak its marker shows (it had topped out 10 ng/mL below it)
    from ketasim.plotting import _as_run

    d = ketasim.Doses.single(35.0, "iv", duration_h=2 / 3)
    r = ketasim.simulate("ketamine-iv", d, np.arange(0.0, 24.0, 0.1), weight_kg=80.0,
                         params={"CL": 80.0}, occupancy_calibration="in-vitro")
    run = _as_run(r, 8.0)
    zoom = run.closeup
    assert zoom.names == r.names and zoom.times[-1] == pytest.approx(8.0)
    assert np.diff(zoom.times).max() <= 1 / 60 + 1e-9 and 2 / 3 in zoom.times
    cmax = float(np.ravel(run.metrics.cmax_ng_ml)[0])
    assert zoom.concentration("plasma").max() == pytest.approx(cmax, rel=1e-12)
    assert r.concentration("plasma").max() < 0.97 * cmax       # (the grid's own points)
    # the same subject: its values at the coarse grid's times are the result's own
    k = np.searchsorted(zoom.times, r.times[:81] - 1e-9)
    assert np.allclose(zoom.times[k], r.times[:81], rtol=0, atol=1e-12)
    np.testing.assert_allclose(zoom.data[:, :, k], r.data[:, :, :81], rtol=1e-6, atol=1e-12)


def test_plot_concentrations_keeps_a_short_legend_inside():
    # up to four entries inside the axes (panels side by side keep their width); more (two
    # runs of the preset's four analytes) to the right, where they hide no curve
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from ketasim.plotting import plot_concentrations

    r = ketasim.simulate("ketamine-iv", ketasim.Doses.single(35.0, "iv", duration_h=2 / 3),
                         ketasim.time_grid(8, 1 / 60))
    for names, inside in ((["plasma"], True), (None, True), (None, False)):
        ax = plot_concentrations(r, names, label="a")
        if not inside:
            plot_concentrations(r, names, ax=ax, label="b")
        FigureCanvasAgg(ax.figure).draw()
        leg = ax.get_legend().get_window_extent()
        box = ax.get_window_extent()
        assert (box.x0 <= leg.x0 and leg.x1 <= box.x1) == inside, names


def test_plot_bands_names_what_it_cannot_draw():
    # (values without their times had failed in an index, times of another length inside
    # matplotlib, a population's metrics table on a missing .times, and two percentiles in
    # an unpacking)
    r = ketasim.simulate("ketamine-iv", ketasim.Doses.single(35.0, "iv"), [0.0, 1.0, 2.0],
                         params={"CL": [80.0, 100.0]}, outputs=["plasma"])
    y = r.concentration("plasma")
    for args, kw, what in (((y,), {}, "need times"),
                           ((y,), {"times": [0.0, 1.0]}, r"need times .* shape \(2,\)"),
                           ((r, "plasma"), {"times": r.times}, "a result has its own"),
                           ((SimpleNamespace(columns={}),), {}, "expected a Result"),
                           ((r, "plasma"), {"percentiles": (5, 95)}, "three numbers"),
                           ((r, "plasma"), {"percentiles": (5, 50, 150)}, "three numbers"),
                           # (in the wrong order: the band's legend had said 95-5 %)
                           ((r, "plasma"), {"percentiles": (95, 50, 5)}, "in that order"),
                           ((r, "plasma"), {"percentiles": (5, 5, 95)}, "in that order")):
        with pytest.raises(ketasim.KetasimInputError, match=f"plot_bands: .*{what}"):
            plot_bands(*args, **kw)
    assert plot_bands(y.tolist(), times=r.times.tolist()).axes


def test_plot_concentrations_takes_one_name_as_a_name():
    # (a name had been read letter by letter: "output: unknown name 'p'")
    from ketasim.plotting import plot_concentrations

    r = ketasim.simulate("ketamine-iv", ketasim.Doses.single(35.0, "iv"), [0.0, 1.0, 2.0])
    ax = plot_concentrations(r, "plasma")
    assert len(ax.get_lines()) == 1
    np.testing.assert_array_equal(ax.get_lines()[0].get_ydata(), r.concentration("plasma"))


@pytest.mark.parametrize("kw", [{"step_h": 0}, {"step_h": -1.0}, {"step_h": np.nan},
                                {"step_h": "5"}, {"until_h": -3.0}, {"until_h": np.inf}])
def test_run_course_names_a_grid_step_or_end_that_is_not_hours(kw):
    # (step_h=0 had failed with ZeroDivisionError, a negative step had been dropped without a
    # word, NaN had been "nan time points, more than allowed")
    (name,) = kw
    with pytest.raises(ketasim.KetasimInputError, match=f"^{name}: got .*expected hours > 0"):
        run_course("ketamine-iv", ketasim.Doses.single(35.0, "iv"), **kw)


def test_run_course_takes_dose_records_as_simulate_does():
    # ("As for ketasim.simulate": a list of dose records had been refused as "neither a file
    # nor a course")
    rec = [{"time_h": 0, "amount_mg": 35, "route": "iv", "duration_h": 0.5},
           {"time_h": 48, "amount_mg": 35, "route": "iv", "duration_h": 0.5}]
    a = run_course("ketamine-iv", rec, closeup_h=1.0)
    b = run_course("ketamine-iv", ketasim.Doses.from_records(rec), closeup_h=1.0)
    np.testing.assert_array_equal(a.course.data, b.course.data)
    assert a.course.doses == b.course.doses


def test_plot_compare_refuses_labels_or_colours_that_do_not_match_the_runs(iv_run):
    # (zip had left the runs without a label or colour out of the figure without a word)
    for kw, what in (({"labels": ["a"]}, "1 labels for 2 runs"),
                     ({"labels": "ab"}, "1 labels for 2 runs"),
                     ({"colors": ["#000000", "#111111", "#222222"]}, "3 colors for 2 runs"),
                     ({"closeup_h": -1.0}, "closeup_h: got -1")):
        with pytest.raises(ketasim.KetasimInputError, match=what):
            plot_compare([iv_run, iv_run], **kw)


@pytest.mark.parametrize("closeup_h", [-1.0, 0.0, np.nan, np.inf, "2"])
def test_plot_course_names_a_closeup_that_is_not_hours(iv_run, closeup_h):
    # (a negative or NaN length had drawn an 8-hour close-up of a run and failed on an empty
    # array for a Result; infinity and text had failed inside matplotlib or an addition)
    r = ketasim.simulate("ketamine-iv", ketasim.Doses.single(35.0, "iv"), [0.0, 1.0, 2.0])
    for run in (iv_run, r):
        with pytest.raises(ketasim.KetasimInputError, match="closeup_h: got"):
            plot_course(run, closeup_h=closeup_h)


@pytest.mark.parametrize("closeup_h", [1e-300, 0.01, 1 / 61])
def test_a_closeup_under_a_minute_is_refused_as_the_cli_refuses_it(iv_run, closeup_h):
    """A close-up shorter than its one-minute grid's step holds one time of that grid: the
    figure said "no close-up: the output grid is too coarse" over a "6e-299-min panel".
    ``ketasim course --closeup`` refused it; run_course, plot_course and plot_compare now
    refuse it too, in the same words."""
    from ketasim.cli_teach import _closeup

    msg = r"closeup_h: got .*expected hours (from|>=) 0\.0166667 \(a minute: the close-up " \
          r"is drawn on a one-minute grid\)"
    with pytest.raises(ketasim.KetasimInputError, match=msg):
        run_course("ketamine-iv", "standard-iv", closeup_h=closeup_h)
    with pytest.raises(ketasim.KetasimInputError, match=msg):
        plot_course(iv_run, closeup_h=closeup_h)
    with pytest.raises(ketasim.KetasimInputError, match=msg):
        plot_compare([iv_run, iv_run], closeup_h=closeup_h)
    import argparse
    with pytest.raises(argparse.ArgumentTypeError, match=r"\(a minute: the close-up is"):
        _closeup(repr(closeup_h))
    # a minute itself is drawn
    assert run_course("ketamine-iv", "standard-iv", closeup_h=1 / 60,
                      until_h=24 * 3).closeup.times.size == 2


@pytest.mark.parametrize("until_h", [24.0, 48.0])
def test_run_course_names_an_end_before_the_first_dose(until_h):
    # (it had been refused as "metrics: no session starts within the horizon")
    with pytest.raises(ketasim.KetasimInputError, match=r"^until_h: got .* expected hours "
                                                        r"after the first dose \(48 h\)"):
        run_course("ketamine-iv", ketasim.Doses.single(35.0, "iv", time_h=48.0),
                   until_h=until_h)


@pytest.mark.parametrize("figsize", [(0.1, 0.1), (10, 20000), "big", (16,), (np.nan, 10),
                                     (True, 10), None])
def test_a_figure_size_that_cannot_be_drawn_is_refused_by_name(iv_run, figsize):
    # ((0.1, 0.1) had failed inside the caption's wrapping as "invalid width 0", (10, 20000)
    # had taken memory until the process was killed, text as "can't multiply sequence")
    with pytest.raises(ketasim.KetasimInputError, match=r"^plot_course: figsize: got .*"
                                                        r"expected \(width, height\)"):
        plot_course(iv_run, figsize=figsize)
    with pytest.raises(ketasim.KetasimInputError, match=r"^plot_compare: figsize: got"):
        plot_compare([iv_run], figsize=figsize)


def _marker_keys(lg):
    """The marker-only keys of a legend's entries: [(marker, colour, Line2D)]."""
    from matplotlib.colors import to_hex
    from matplotlib.lines import Line2D

    return [(ln.get_marker(), to_hex(ln.get_color()), ln) for ln in lg.findobj(Line2D)
            if ln.get_marker() not in (None, "None", "", " ") and ln.get_linestyle() == "None"]


def test_compared_runs_session_peak_markers_are_in_the_legend(iv_run, nasal_run):
    """A comparison marks each session's peak in the course panels with each run's own shape
    (a circle for the first run, a square for the second ...), but no legend entry said what
    the markers were. The concentration and occupancy rows now have one entry, its key
    each run's marker in the run's colour (the troughs' open circles said there too)."""
    from matplotlib.colors import to_hex

    fig = plot_compare([iv_run, nasal_run], labels=["IV", "nasal"])
    try:
        rows = [ax for ax in fig.axes if ax.get_legend() is not None]
        for ax, trough in zip(rows[:2], (True, False)):      # concentration, occupancy
            lg = ax.get_legend()
            texts = [" ".join(t.get_text().split()) for t in lg.get_texts()]
            want = "session peak: each run's marker" + (
                " (open circle: trough before next)" if trough else "")
            assert want in texts, texts
            drawn = {(ln.get_marker(), to_hex(ln.get_color())) for ln in ax.get_lines()
                     if ln.get_linestyle() == "None" and ln.get_marker() in ("o", "s")
                     and ln.get_markerfacecolor() != "white"}
            assert drawn == {("o", OKABE_ITO["blue"].lower()),
                             ("s", OKABE_ITO["vermillion"].lower())}
            assert drawn <= {(m, c) for m, c, _ in _marker_keys(lg)}
        # one entry a row, not one a run; the schematic row has no markers, and no entry
        assert sum("session peak" in t.get_text() for t in rows[2].get_legend().get_texts()) == 0
        assert sum("session peak" in lb for lb in _legend_labels(fig)) == 2
    finally:
        plt.close(fig)


def test_five_compared_runs_peak_markers_are_keyed_side_by_side():
    """With five runs the legend key of the session peaks holds five markers: the keys are
    made long enough that they are drawn side by side, not over each other."""
    runs = [run_course(m, c, w, until_h=24 * 10, closeup_h=2) for m, c, w in (
        ("ketamine-iv", "standard-iv", 70), ("esketamine-nasal", "spravato", 70),
        ("esketamine-iv", "standard-iv", 70), ("ketamine-iv", "standard-iv", 100),
        ("esketamine-nasal", "spravato", 90))]
    fig = plot_compare(runs, labels=list("ABCDE"))
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig).draw()
        lg = next(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)
        # each key's marker: at the middle point of its line (HandlerLine2D), ms points wide
        at = []
        for m, _c, ln in _marker_keys(lg):
            if m in ("o", "s", "^", "D"):
                k = len(ln.get_xdata()) // 2
                x, y = ln.get_transform().transform((ln.get_xdata()[k], ln.get_ydata()[k]))
                at.append((x, y, ln.get_markersize() * fig.dpi / 72))
        peak_row = sorted(p for p in at if abs(p[1] - at[-1][1]) < 1)
        assert len(peak_row) == 5
        for (x0, _y0, w0), (x1, _y1, w1) in zip(peak_row, peak_row[1:]):
            assert x1 - x0 >= (w0 + w1) / 2, peak_row     # (no marker over the next)
    finally:
        plt.close(fig)


def test_plot_compare_takes_one_run_given_alone(iv_run):
    # (it had failed with "TypeError: 'CourseRun' object is not iterable")
    assert len(plot_compare(iv_run).axes) == len(plot_compare([iv_run]).axes)


def _laid_out(fig):
    """The figure as saved (laid out once, as encode_figure does), with a renderer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from ketasim.plotting import encode_figure

    encode_figure(fig, "png", 60)
    FigureCanvasAgg(fig).draw()
    return fig.canvas.get_renderer()


@pytest.mark.parametrize("extra", ["", " at 70 kg, with monthly maintenance",
                                   " and a great many more words" * 6])
def test_three_long_compare_labels_keep_every_legend_apart(iv_run, nasal_run, extra):
    """Three long labels: the legend of the concentration row (two entries a run) had been
    left unwrapped, its column took the panels' width and the close-up's x label ran into the
    course's; longer ones left the layout unapplied, each row's legend drawn over the next's
    and off the figure."""
    from ketasim.plotting import LEGEND_CHARS

    labels = [f"Racemic ketamine standard course{extra}",
              f"Esketamine nasal label course 84 mg{extra}",
              f"Another long label for the same course{extra}"]
    fig = plot_compare([iv_run, nasal_run, iv_run], labels=labels)
    r = _laid_out(fig)
    legends = fig.findobj(matplotlib.legend.Legend)
    assert len(legends) == 3
    boxes = [lg.get_window_extent(r) for lg in legends]
    assert not any(_overlaps(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    for box in boxes:
        assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 + 1
        assert fig.bbox.y0 <= box.y0 and box.y1 <= fig.bbox.y1 + 1
        assert not any(_overlaps(box, ax.get_window_extent(r)) for ax in fig.axes)
    entries = [t for lg in legends for t in lg.get_texts()]
    tb = [t.get_window_extent(r) for t in entries]
    assert not any(_overlaps(a, b) for i, a in enumerate(tb) for b in tb[i + 1:])
    assert all(len(line) <= LEGEND_CHARS for t in entries for line in t.get_text().split("\n"))
    axes = fig.subfigs[0].axes
    a = axes[-2].xaxis.label.get_window_extent(r)
    b = axes[-1].xaxis.label.get_window_extent(r)
    assert a.x1 < b.x0, (a, b)


def test_long_labels_in_capitals_keep_the_two_time_axis_labels_apart(iv_run):
    """Legend entries are wrapped at LEGEND_CHARS characters, but capitals are wide: two run
    labels in capitals still widened the legend until the close-up's 'FIRST SESSION: hours
    after its start' ran into 'WHOLE COURSE: days from the first session ...'. When they
    would touch, each is put on two lines; with room, each stays on one."""
    esk = run_course("esketamine-iv", "standard-iv", until_h=24 * 8)
    for labels, split in ((["Racemic Ketamine Monthly Maintenance Weekly Booster Scheme One",
                            "ESKETAMINE WITH MAINTENANCE EVERY FOUR WEEKS AND DOUBLE DOSE"],
                           True), (["iv", "esketamine"], False)):
        fig = plot_compare([iv_run, esk], labels=labels)
        r = _laid_out(fig)
        axz, axc = fig.subfigs[0].axes[-2:]
        a, b = axz.xaxis.label, axc.xaxis.label
        # (the esketamine run's grid ends on day 8, before its course does)
        assert a.get_text().startswith("FIRST") and b.get_text().startswith("COURSE TO DAY")
        ba, bb = a.get_window_extent(r), b.get_window_extent(r)
        assert ba.x1 < bb.x0, (a.get_text(), b.get_text())
        assert ("\n" in a.get_text()) == ("\n" in b.get_text()) == split


def _points_in(ax, box, r):
    """The drawn curve and marker points of ``ax`` (data lines) inside a display box."""
    inside = 0
    for ln in ax.get_lines():
        if ln.get_transform() != ax.transData or not len(ln.get_xdata()):
            continue
        xy = ax.transData.transform(np.column_stack([ln.get_xdata(), ln.get_ydata()]))
        inside += int(np.sum((xy[:, 0] >= box.x0) & (xy[:, 0] <= box.x1)
                             & (xy[:, 1] >= box.y0) & (xy[:, 1] <= box.y1)))
    return inside


@pytest.mark.parametrize("model, course, closeup_h", [("esketamine-nasal", "spravato", 100.0),
                                                     ("ketamine-iv", "standard-iv", 72.0)])
def test_a_long_closeups_peak_note_names_the_first_session_and_sits_clear_of_later_spikes(
        model, course, closeup_h):
    """`ketasim course --closeup 72`: the first session's peak note, in the panel's upper
    right, had sat over the second session's spike (a 100-hour nasal close-up: its
    noresketamine curve ran through the note) or right beside a spike of the same height,
    and read as that spike's label."""
    run = run_course(model, course, 70, closeup_h=closeup_h, until_h=24 * 21)
    fig = plot_course(run)
    r = _laid_out(fig)
    axz = fig.subfigs[0].axes[0]
    note = next(t for t in axz.texts if "peak" in t.get_text())
    assert note.get_text().startswith("first-session\npeak ")
    box = note.get_bbox_patch().get_window_extent(r)      # the note with its white ground
    assert _points_in(axz, box, r) == 0
    assert _overlaps(box, axz.get_window_extent(r))       # in the panel, not moved off it
    # an 8-hour close-up keeps its note as it was: upper right, "peak ..."
    short = plot_course(run_course("ketamine-iv", "standard-iv", 70, until_h=24 * 21))
    r = _laid_out(short)
    axz = short.subfigs[0].axes[0]
    note = next(t for t in axz.texts if "peak" in t.get_text())
    assert note.get_text().startswith("peak 159 ng/mL") and note.get_position()[0] == 0.97
    assert _points_in(axz, note.get_bbox_patch().get_window_extent(r), r) == 0


def test_a_comparisons_peak_notes_with_no_free_room_go_to_the_legend(iv_run, nasal_run):
    """A long comparison close-up leaves no stretch wide enough for the notes' column: they
    are legend entries with the peak marker's look, not drawn over the second session."""
    fig = plot_compare([iv_run, nasal_run], labels=["IV", "nasal"], closeup_h=60)
    r = _laid_out(fig)
    axz = fig.subfigs[0].axes[0]
    for t in axz.texts:
        if "peak" in t.get_text():
            assert _points_in(axz, t.get_window_extent(r), r) == 0
    shown = [t.get_text() for t in axz.texts] + _legend_labels(fig)
    assert any(s.startswith("first-session peak 159 ng/mL") for s in shown)
    assert any(s.startswith("first-session peak 73 ng/mL") for s in shown)


def test_compared_occupancy_ranges_are_hatched_apart_not_blended(iv_run, nasal_run):
    """Two runs' ranges over the Ki calibrations had been translucent fills over each other,
    blending into one grey-green that was neither run's colour: each is now hatched in its
    own direction, in its run's colour, with no fill."""
    from matplotlib.colors import to_rgba

    from ketasim.plotting import RUN_COLORS

    fig = plot_compare([iv_run, nasal_run], labels=["IV", "nasal"])
    axz = fig.subfigs[0].axes[2]                     # the occupancy close-up
    assert axz.get_ylabel() == "% of receptors"
    ranges = [c for c in axz.collections if isinstance(c, PolyCollection)
              and c.get_hatch()]
    assert len(ranges) == 2
    assert len({c.get_hatch() for c in ranges}) == 2
    for c, col in zip(ranges, RUN_COLORS):
        assert all(fc[3] == 0 for fc in c.get_facecolor())          # no fill to blend
        assert np.allclose(c.get_edgecolor()[0][:3], to_rgba(col)[:3])
    # no other translucent fill on the panel either
    assert not [c for c in axz.collections if isinstance(c, PolyCollection)
                and not c.get_hatch() and any(fc[3] > 0 for fc in c.get_facecolor())]
    entry = next(t for t in _legend_labels(fig) if t.startswith("range over Ki"))
    assert entry.endswith("each run's hatch")


def test_a_window_drawn_behind_a_metabolite_names_its_drug(nasal_run):
    """The nasal figure's noresketamine curve (peak about 120 ng/mL) crosses esketamine's
    shaded window: the window's legend entry had not said whose window it is, so the
    metabolite read as being in a window of its own."""
    fig = plot_course(nasal_run)
    entries = [t for t in _legend_labels(fig) if "ng/mL" in t and "-" in t
               and "peak" not in t and "trough" not in t]
    assert entries and all(" ".join(t.split()).startswith("esketamine window, ")
                           for t in entries), entries
    assert "noresketamine" in _legend_labels(fig)
    assert "windows of esketamine" in _all_text(fig)         # and the caption says so


def test_a_tables_subjects_whole_course_marks_their_median_exact_session_peaks():
    """The whole-course median curve (a median at each time, on the output grid) topped out
    at 151 ng/mL, below the subjects' exact per-session peaks (median 159) that the
    close-up's note gives, and nothing said what the line was: each session now has a marker
    at the subjects' median exact peak, and the line's entry says it is a median at each
    time."""
    from ketasim.metrics import course_metrics

    t = [0.0, 48.0, 96.0]
    d = ketasim.Doses(t * 3, [35.0] * 3 + [25.0] * 3 + [50.0] * 3, ["iv"] * 9, [2 / 3] * 9,
                      subject=[1] * 3 + [2] * 3 + [3] * 3)
    res = ketasim.simulate("ketamine-iv", d, ketasim.time_grid(24 * 7, 0.1))
    fig = plot_course(res)
    axc = fig.subfigs[0].axes[1]
    med_peaks = np.median(np.asarray(course_metrics(res).cmax_ng_ml), axis=0)
    marks = next(ln for ln in axc.get_lines()
                 if ln.get_label() == "subjects' exact session peaks: median")
    np.testing.assert_allclose(marks.get_ydata(), med_peaks, rtol=1e-9)
    curve = next(ln for ln in axc.get_lines()
                 if ln.get_label() == "ketamine (S + R) (median at each time)")
    assert np.nanmax(curve.get_ydata()) < med_peaks.min()      # (why the markers are there)
    assert "subjects' exact session peaks: median" in _legend_labels(fig)
    assert any("the subjects' median peak" in ax.get_xlabel() for ax in fig.subfigs[0].axes)


def test_a_tables_subjects_get_a_median_peak_marker_only_for_sessions_they_start_together():
    """Subjects dosed at different times (one on days 0 and 2, the other on days 0 and 4) had
    their second sessions' median peak marked at day 3, where neither peaked, at the median
    of the two peaks; the axis said there was a marker at every session."""
    from ketasim.metrics import course_metrics

    d = ketasim.Doses([0.0, 48.0, 0.0, 96.0], [35.0, 35.0, 50.0, 50.0], ["iv"] * 4,
                      [2 / 3] * 4, subject=[1, 1, 2, 2])
    res = ketasim.simulate("ketamine-iv", d, ketasim.time_grid(24 * 7, 0.1))
    fig = plot_course(res)
    axc = fig.subfigs[0].axes[1]
    marks = next(ln for ln in axc.get_lines()
                 if ln.get_label() == "subjects' exact session peaks: median")
    first = np.median(np.asarray(course_metrics(res).cmax_ng_ml)[:, 0])
    np.testing.assert_allclose(marks.get_ydata(), [first], rtol=1e-9)
    assert np.all(np.asarray(marks.get_xdata()) < 1.0)       # day 0 only, not day 3
    label = " ".join(ax.get_xlabel() for ax in fig.subfigs[0].axes)
    assert "a marker at every session the subjects start together" in label, label
    # apart in every session: no marker, and the axis promises none
    d2 = ketasim.Doses([0.0, 96.0], [35.0, 50.0], ["iv"] * 2, [2 / 3] * 2, subject=[1, 2])
    fig2 = plot_course(ketasim.simulate("ketamine-iv", d2, ketasim.time_grid(24 * 7, 0.1)))
    assert "subjects' exact session peaks: median" not in _legend_labels(fig2)
    assert not any("marker" in ax.get_xlabel() for ax in fig2.subfigs[0].axes)


def test_a_dose_into_a_compartment_by_number_or_name_is_described_as_such():
    """A NONMEM table's doses by compartment number (CMT 1, 2) had been titled "100 mg 1
    over 120 min + 100 mg 2" and drawn in the legend as "2 100 mg"."""
    from ketasim.plotting import describe_doses

    m = ketasim.load_model("ketamine-iv")
    first = list(m.compartments)[0]
    d = ketasim.Doses([0.0, 24.0], [35.0, 20.0], ["1", first], [2.0, 0.0])
    assert describe_doses(d._take(np.array([0])), 70.0, m) == \
        f"35 mg into {first} over 120 min"
    assert describe_doses(d._take(np.array([1])), 70.0, m) == f"20 mg into {first}"
    assert describe_doses(d._take(np.array([0]))) == "35 mg into compartment 1 over 120 min"
    fig = plot_course(ketasim.simulate(m, ketasim.Doses([0.0], [35.0], ["1"]),
                                       ketasim.time_grid(24, 0.1)))
    assert f"dose into {first} 35 mg" in _legend_labels(fig)
    assert f"35 mg into {first}" in _all_text(fig)


def test_plot_bands_occupancy_axis_in_the_unit_drawn_and_named_in_the_legend():
    """plot_bands of occupancy with unit_scale=100 (in %, as the course figure draws it) had
    its axis read "fraction of receptors" under values of 0-40, and the legend called
    occupancy_low "occupancy_low"."""
    m = ketasim.load_model("ketamine-iv")
    cals = ", ".join(m.calibrations)
    r = ketasim.simulate(m, ketasim.standard_iv_course(0.5, 70, 1), ketasim.time_grid(24 * 40, 0.1),
                         params={"CL": [80.0, 95.2, 110.0]},
                         outputs=["plasma", "occupancy", "occupancy_low"])
    ax = plot_bands(r, "occupancy", unit_scale=100).axes[0]
    assert ax.get_ylabel() == "% of receptors (model-predicted)"
    assert ax.get_ylim()[1] < 100 and max(ax.get_lines()[0].get_ydata()) > 1
    assert plot_bands(r, "occupancy").axes[0].get_ylabel() == \
        "fraction of receptors (model-predicted)"
    ax = plot_bands(r, "occupancy_low", unit_scale=100).axes[0]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts[1] == f"NMDA occupancy, lowest over Ki calibrations ({cals}): median"
    pop = ketasim.population(m, ketasim.standard_iv_course(0.5, 70, 2), 5, metrics=("cmax",),
                             bands=True, band_outputs=("plasma", "occupancy_high"),
                             progress=False)
    texts = [t.get_text() for t in
             plot_bands(pop, "occupancy_high").axes[0].get_legend().get_texts()]
    assert texts[1] == "NMDA occupancy, highest over Ki calibrations: median"


def test_plot_bands_own_figure_has_no_curve_under_its_legend():
    """Over a course the sessions' spikes reach the top all along the time axis: the legend
    matplotlib placed 'best' sat over the last session's spike. The y axis is raised until no
    curve passes under the legend."""
    m = ketasim.load_model("ketamine-iv")
    r = ketasim.simulate(m, ketasim.standard_iv_course(0.5, 70, 1), ketasim.time_grid(24 * 40, 0.1),
                         params={"CL": [80.0, 95.2, 110.0]}, outputs=["plasma"])
    pop = ketasim.population(m, ketasim.standard_iv_course(0.5, 70, 2), 5, metrics=("cmax",),
                             bands=True, band_outputs=("plasma",), progress=False)
    for fig in (plot_bands(r, "plasma"), plot_bands(pop, "plasma")):
        ax = fig.axes[0]
        fig.canvas.draw()
        box = ax.get_legend().get_window_extent()
        xy = ax.transData.transform(np.vstack([np.column_stack(ln.get_data())
                                               for ln in ax.get_lines()]))
        inside = ((xy[:, 0] >= box.x0) & (xy[:, 0] <= box.x1) & (xy[:, 1] >= box.y0)
                  & (xy[:, 1] <= box.y1))
        assert not inside.any(), xy[inside][:3]


def test_plot_bands_says_a_schematic_output_is_schematic():
    """A population band of the schematic response is labelled SCHEMATIC (legend and axis),
    and occupancy model-predicted, as in the course figure; the legend had read plain
    "glutamate" and the axis "glutamate"."""
    d = ketasim.Doses.single(35.0, "iv", duration_h=2 / 3)
    r = ketasim.simulate("ketamine-iv", d, ketasim.time_grid(12, 0.25),
                         params={"CL": [90.0, 95.2, 100.0]},
                         outputs=["occupancy", "glutamate", "plasticity"])
    for name in ("glutamate", "plasticity"):
        ax = plot_bands(r, name).axes[0]
        assert "SCHEMATIC" in ax.get_ylabel()
        assert all("SCHEMATIC" in t.get_text() for t in ax.get_legend().get_texts())
    assert "model-predicted" in plot_bands(r, "occupancy").axes[0].get_ylabel()
    # (occupancy is a fraction 0-1: its axis says of what)
    assert "fraction of receptors" in plot_bands(r, "occupancy").axes[0].get_ylabel()
    # a label or axis label given is kept
    ax = plot_bands(r, "glutamate", label="surge", ylabel="× baseline").axes[0]
    assert ax.get_ylabel() == "× baseline"
    assert ax.get_legend().get_texts()[0].get_text().startswith("surge")


def test_a_course_figure_of_a_result_without_an_analyte_it_draws_names_it():
    """A result simulated with fewer outputs than the figure draws had failed inside the
    figure code ("output: unknown name 'metabolite'; expected one of 'plasma'"), as if the
    user had asked for the metabolite; a comparison, which draws the main analyte only,
    takes it."""
    m = ketasim.load_model("ketamine-iv")
    d = ketasim.Doses.single(35.0, "iv")
    r = ketasim.simulate(m, d, ketasim.time_grid(24, 0.25), outputs=["plasma", "occupancy"])
    with pytest.raises(ketasim.KetasimInputError) as exc:
        plot_course(r)
    assert str(exc.value) == (
        "plot_course: the result of model 'ketamine-iv' has no output 'metabolite', which the "
        "figure draws; expected a result with 'plasma', 'metabolite', 's_ketamine', "
        "'r_ketamine' (simulate with outputs=None, the model's default, or naming them)")
    fig = plot_compare([r])
    assert fig.axes


@pytest.mark.parametrize("call, message", [
    (lambda: plot_course("course.csv"),
     "run: got str, expected a CourseRun of run_course or a Result of ketasim.simulate"),
    (lambda: plot_compare(["course.csv"]),
     "run: got str, expected a CourseRun of run_course or a Result of ketasim.simulate"),
    (lambda: plot_compare(None),
     "runs: got NoneType, expected CourseRuns of run_course or Results of ketasim.simulate"),
    (lambda: plot_compare("course.csv"),
     "runs: got str, expected CourseRuns of run_course or Results of ketasim.simulate"),
])
def test_a_figure_of_what_is_not_a_run_names_it(call, message):
    """These had raised AttributeError ('str' object has no attribute 'doses') or TypeError
    ('NoneType' object is not iterable) from inside the figure code."""
    with pytest.raises(ketasim.KetasimInputError) as exc:
        call()
    assert str(exc.value) == message


@pytest.mark.parametrize("scale", ["100", np.nan, 0, -1.0, True])
def test_plot_bands_refuses_a_scale_that_is_not_a_positive_number(scale):
    """Text had failed inside numpy (UFuncTypeError), NaN had drawn an empty panel (with
    numpy's 'All-NaN slice' warning), 0 a flat line at 0 and a negative scale negative
    values; True had been read as 1."""
    r = ketasim.simulate("ketamine-iv", ketasim.Doses.single(35.0, "iv"), [0.0, 1.0, 2.0],
                         params={"CL": [90.0, 100.0]}, outputs=["plasma"])
    with pytest.raises(ketasim.KetasimInputError) as exc:
        plot_bands(r, unit_scale=scale)
    assert str(exc.value) == (f"plot_bands: unit_scale: got {scale!r}, expected a finite "
                              "number > 0 (a multiplier for the values)")


def test_run_course_refuses_an_unknown_course_name():
    """run_course(..., course="nope") had run as if no course had been named (its
    maintenance then found from the intervals alone); a misspelt name is refused."""
    from ketasim.plotting import run_course

    d = ketasim.standard_iv_course(months=1)
    with pytest.raises(ketasim.KetasimInputError,
                       match=r"^course: unknown name 'standard_iv' \(did you mean "
                             r"'standard-iv'\?\); expected one of 'standard-iv', 'spravato'$"):
        run_course("ketamine-iv", d, course="standard_iv", closeup_h=2)
    assert run_course("ketamine-iv", d, course="standard-iv", closeup_h=2).course is not None


def test_plot_bands_draws_a_populations_bands():
    # population() keeps no curves, only its bands' quantiles: plot_bands refused them
    d = ketasim.standard_iv_course(months=1)
    pop = ketasim.population("ketamine-iv", d, 40, 3, bands=True, progress=False,
                             band_outputs=["plasma", "glutamate"], metrics=("cmax",))
    for src in (pop, pop.bands):
        fig = plot_bands(src, "plasma")
        ax = fig.axes[0]
        p = pop.bands.get("plasma")
        line, = ax.get_lines()
        np.testing.assert_array_equal(line.get_ydata(), p["p50"])
        np.testing.assert_allclose(line.get_xdata(), pop.bands.times_h / 24.0)
        verts = ax.collections[0].get_paths()[0].vertices[:, 1]
        assert np.isclose(verts.max(), p["p95"].max())
        assert "5-95 %" in ax.get_legend_handles_labels()[1][0]
    fig = plot_bands(pop, "glutamate", unit_scale=2.0)
    assert "SCHEMATIC" in fig.axes[0].get_ylabel()
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(),
                               2.0 * pop.bands.get("glutamate")["p50"])
    with pytest.raises(ketasim.KetasimInputError, match=r"bands hold 5/50/95 %"):
        plot_bands(pop, "plasma", percentiles=(10, 50, 90))
    with pytest.raises(ketasim.KetasimInputError, match=r"bands: no output 'occupancy'"):
        plot_bands(pop, "occupancy")
    no_bands = ketasim.population("ketamine-iv", d, 4, 3, progress=False, metrics=("cmax",))
    with pytest.raises(ketasim.KetasimInputError, match=r"no bands; run population"):
        plot_bands(no_bands, "plasma")


@pytest.mark.parametrize("what", [None, "plasma", b"x"])
def test_plot_bands_of_nothing_says_what_it_takes(what):
    # None had been read as one NaN: "values of shape (1, 1) need times"
    with pytest.raises(ketasim.KetasimInputError,
                       match=rf"plot_bands: got {type(what).__name__}, expected a Result"):
        plot_bands(what)


def test_the_course_axis_says_where_its_days_count_from():
    """The course panel is drawn from time 0 of the dose table: a table whose first session
    starts on day 41.7 had its axis labelled 'days from the first session', with that session
    drawn at 41.7."""
    from ketasim.plotting import plot_course

    late = ketasim.Doses([1000.0, 1048.0], [35.0, 35.0], ["iv", "iv"], [2 / 3, 2 / 3])
    fig = plot_course(run_course("ketamine-iv", late))
    labels = [ax.get_xlabel() for ax in fig.axes]
    plt.close(fig)
    assert any(lb.startswith("WHOLE COURSE: days from time 0 (first session on day 41.7)")
               for lb in labels), labels
    fig = plot_course(run_course("ketamine-iv", ketasim.standard_iv_course(months=1)))
    labels = [ax.get_xlabel() for ax in fig.axes]
    plt.close(fig)
    assert any(lb.startswith("WHOLE COURSE: days from the first session") for lb in labels)


def test_svg_ids_are_numbered_in_order_so_a_clip_box_one_rounding_off_keeps_its_id():
    # matplotlib names a clip box by a hash of its corners: now and then the layout solver
    # placed one a rounding off, and the same figure's ids differed run to run
    from ketasim.plotting import _numbered_ids

    def svg(h1, h2):
        return (f'<defs><clipPath id="p{h1}"><rect/></clipPath><path id="m{h2}"/></defs>'
                f'<g clip-path="url(#p{h1})"><use xlink:href="#m{h2}"/></g>'
                f'<g clip-path="url(#p{h1})"/>').encode()

    a = _numbered_ids(svg("ed46ba73b1", "0123456789"))
    b = _numbered_ids(svg("a1734156d2", "abcdefabcd"))
    assert a == b == (b'<defs><clipPath id="p1"><rect/></clipPath><path id="m1"/></defs>'
                      b'<g clip-path="url(#p1)"><use xlink:href="#m1"/></g>'
                      b'<g clip-path="url(#p1)"/>')


def test_a_comparisons_title_and_caption_stay_within_the_figure_with_wide_labels():
    # widths were estimated from an average letter: run labels in capitals ran off the edge
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    a = run_course("ketamine-iv", ketasim.standard_iv_course(months=1),
                   label="WWWWWWWWWW MMMMMMMMMM WWWWWWWWWW MMMMMMMMMM WWWWWWWWWW")
    b = run_course("esketamine-nasal", ketasim.spravato_course(months=1),
                   label="MMMMMMMMMM WWWWWWWWWW MMMMMMMMMM WWWWWWWWWW MMMMMMMMMM")
    fig = plot_compare([a, b])
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    texts = [t for sf in fig.subfigs for t in sf.texts if t.get_text()]
    texts.append(fig.subfigs[0]._suptitle)
    assert len(texts) >= 2
    for t in texts:
        box = t.get_window_extent(r)
        assert box.x0 >= -0.5 and box.x1 <= fig.bbox.width + 0.5, t.get_text()[:60]


def test_run_course_names_itself_for_a_keyword_it_does_not_take():
    # it had come from inside: "simulate() got an unexpected keyword argument 'months'"
    with pytest.raises(TypeError, match=r"^run_course\(\) got an unexpected keyword argument "
                                        r"'months'.*pd_rtol.*standard_iv_course\(months=1\)"):
        run_course("ketamine-iv", "standard-iv", months=1)
    a = run_course("ketamine-iv", "standard-iv", closeup_h=2, pd_rtol=1e-4)
    assert a.course.inputs["pd_rtol"] == 1e-4


def test_a_course_figure_keeps_to_the_callers_warning_filters():
    """run_course said a weight no person has even to a caller who ignores KetasimWarning (or
    makes it an error): its runs' own filter had shown it whatever the caller's were."""
    import warnings

    from ketasim.plotting import run_course

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("ignore", ketasim.KetasimWarning)
        run_course("ketamine-iv", "standard-iv", weight_kg=700.0)
    assert not [x for x in w if issubclass(x.category, ketasim.KetasimWarning)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ketasim.KetasimWarning)
        with pytest.raises(ketasim.KetasimWarning, match=r"weight_kg: 700 kg is more"):
            run_course("ketamine-iv", "standard-iv", weight_kg=700.0)
    with pytest.warns(ketasim.KetasimWarning, match=r"weight_kg: 700 kg is more") as w:
        run_course("ketamine-iv", "standard-iv", weight_kg=700.0)
    assert len([x for x in w if "weight_kg" in str(x.message)]) == 1
    assert w[0].filename == __file__


def test_a_results_figure_does_not_repeat_its_runs_warnings(tmp_path):
    """plot_course(result) runs the close-up again on a finer grid: that run had said the
    result's warning again ('simulate: route intranasal: ... 5 min apart'), from inside
    ketasim, after the simulate call that made the result had said it."""
    import warnings

    from ketasim.plotting import plot_course

    src = tmp_path / "split.csv"
    src.write_text("time_h,amount_mg,route\n0,28,intranasal\n0.08,28,intranasal\n"
                   "168,56,intranasal\n")
    d = ketasim.read_doses(src)
    with pytest.warns(ketasim.KetasimWarning, match="5 min apart"):
        r = ketasim.simulate("esketamine-nasal", d, np.arange(0.0, 400.0, 0.1))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        plot_course(r)
    assert not [x for x in w if issubclass(x.category, ketasim.KetasimWarning)], \
        [str(x.message) for x in w]


def test_a_citation_over_several_lines_is_one_caption_line():
    # a model file's multi-line TOML string had given the caption a split and an empty line
    from ketasim.plotting import _caption_lines

    one = ketasim.Model.from_dict({
        "model": {"name": "one", "citation": "\nSmith J et al.\n  J Pharm 2020;1:1-2.\n"},
        "parameters": {"V": 50.0, "CL": 10.0}, "compartments": {"central": "V"},
        "flows": [{"from": "central", "to": "out", "cl": "CL"}],
        "routes": {"iv": {"to": "central"}}})
    fig = plt.figure(figsize=(16, 6))
    lines = _caption_lines(fig, [one])
    plt.close(fig)
    assert lines[0] == "Model one — source: Smith J et al. J Pharm 2020;1:1-2." and all(lines)


def test_a_grid_ending_during_a_later_first_infusion_shows_no_false_peak():
    """The same with the first dose at 5 h: the peak's time after the session start (30 min)
    had been compared with the grid's end on the clock (5.5 h), so the value where the grid
    ends was labelled as the session's peak."""
    d = ketasim.Doses.single(35.0, "iv", time_h=5.0, duration_h=2 / 3)
    r = ketasim.simulate("ketamine-iv", d, ketasim.time_grid(5.5, 0.1))
    text = _all_text(plot_course(r))
    assert "highest shown" in text and "where the grid ends" in text
    assert "peak 131" not in text


@pytest.mark.parametrize("as_result", [False, True])
def test_a_reset_row_before_the_first_dose_does_not_start_the_closeup(as_result):
    """A reset row (evid 3) at 0 h before the first dose at 5 h: the close-up had started at
    the reset, so the first session's exact peak was marked at 40 min while the curve peaked
    at 5 h 40 min; it starts at the first dose, as the first session does."""
    d = ketasim.Doses([0.0, 5.0], [0.0, 35.0], ["", "iv"], [0.0, 2 / 3], evid=[3, 1])
    run = (ketasim.simulate("ketamine-iv", d, ketasim.time_grid(30, 0.1)) if as_result
           else run_course("ketamine-iv", d))
    axz = plot_course(run).subfigs[0].axes[0]
    curve = next(ln for ln in axz.get_lines() if ln.get_label() == "ketamine (S + R)")
    x, y = curve.get_xdata(), curve.get_ydata()
    marker = next(ln for ln in axz.get_lines()
                  if len(ln.get_xdata()) == 1 and ln.get_marker() == "o")
    assert x[np.argmax(y)] == pytest.approx(2 / 3)
    assert marker.get_xdata()[0] == pytest.approx(2 / 3)
    assert marker.get_ydata()[0] == pytest.approx(np.max(y), rel=1e-9)


def test_every_infusion_in_a_long_closeup_has_a_visible_bar():
    """A 672-hour close-up holds the first month's 8 infusions of 40 minutes: each bar is at
    least a couple of pixels wide (a third of a pixel each, all but one had vanished), and a
    bar still starts where its infusion does."""
    from ketasim.plotting import FIGURE_DPI

    run = run_course("ketamine-iv", "standard-iv", until_h=24 * 30, closeup_h=672)
    fig = plot_course(run, closeup_h=672)
    fig.set_dpi(FIGURE_DPI)
    fig.canvas.draw()
    axz = fig.subfigs[0].axes[0]
    bars = [c for c in axz.collections if c.get_label().startswith("IV infusion")
            or (c.get_label().startswith("_") and c.get_transform() != axz.transData)]
    bars.sort(key=lambda b: float(b.get_paths()[0].vertices[:, 0].min()))
    starts = [float(b.get_paths()[0].vertices[:, 0].min()) for b in bars]
    assert starts == pytest.approx([0, 48, 96, 168, 240, 336, 504, 672])
    for b in bars[:-1]:     # (the last starts where the close-up ends)
        assert b.get_window_extent().width >= 2.0
    plt.close(fig)


def test_compared_runs_peaking_alike_at_different_times_each_get_a_label_and_marker():
    """A 28-mg infusion over 20 minutes peaks 1 % below a 35-mg one over 40 minutes, 20
    minutes earlier: each run's peak is labelled with its own time and marked on its curve
    (the runs had shared the 40-minute run's label and marker: the 20-minute run's peak was
    neither marked nor said)."""
    single = ketasim.Doses.single
    runs = [run_course("ketamine-iv", single(35.0, "iv", duration_h=2 / 3), label="40 min"),
            run_course("ketamine-iv", single(28.0, "iv", duration_h=1 / 3), label="20 min")]
    fig = plot_compare(runs)
    axz = fig.subfigs[0].axes[0]
    notes = [t.get_text() for t in axz.texts if t.get_text().startswith("peak ")]
    assert notes == ["peak 159 ng/mL at 40 min", "peak 157 ng/mL at 20 min"]
    marks = [(float(ln.get_xdata()[0]), float(ln.get_ydata()[0])) for ln in axz.get_lines()
             if ln.get_marker() == "o" and len(ln.get_xdata()) == 1]
    for r in runs:
        at = (float(r.metrics.tmax_h[0]), float(r.metrics.cmax_ng_ml[0]))
        assert any(m == pytest.approx(at) for m in marks), (at, marks)
    plt.close(fig)


def test_a_grid_ending_before_the_last_session_is_not_labelled_the_whole_course():
    """A 30-day grid of the 22-session nasal course: the course panel says how far it goes
    (it had said WHOLE COURSE under the title's '9 of 22 sessions shown'); a grid that holds
    every session keeps WHOLE COURSE."""
    doses = ketasim.spravato_course(months=6)
    r = ketasim.simulate("esketamine-nasal", doses, ketasim.time_grid(720, 0.25))
    fig = plot_course(r)
    labels = [ax.get_xlabel() for sf in fig.subfigs for ax in sf.axes if ax.get_xlabel()]
    assert any(lb.startswith("COURSE TO DAY 30: days from") for lb in labels), labels
    assert not any("WHOLE COURSE" in lb for lb in labels)
    plt.close(fig)
    r = ketasim.simulate("esketamine-nasal", ketasim.spravato_course(months=1),
                         ketasim.time_grid(24 * 40, 0.25))
    fig = plot_course(r)
    labels = [ax.get_xlabel() for sf in fig.subfigs for ax in sf.axes if ax.get_xlabel()]
    assert any(lb.startswith("WHOLE COURSE: days from") for lb in labels), labels
    plt.close(fig)


def test_a_dose_tables_subjects_are_said_to_have_their_own_weights_only_when_they_do():
    """A table without weight_kg runs every subject at one weight: the title states it (it had
    said 'each with its own doses and weight'); a fixed-dose model states none; a table with
    different weights keeps 'its own doses and weight'."""
    def title(model, recs, **kw):
        r = ketasim.simulate(model, ketasim.Doses.from_records(recs),
                             ketasim.time_grid(48, 0.25), **kw)
        fig = plot_course(r)
        text = " ".join(fig.subfigs[0]._suptitle.get_text().split())
        plt.close(fig)
        return text

    iv = [{"subject": s, "time_h": 0.0, "amount_mg": a, "route": "iv", "duration_h": 2 / 3}
          for s, a in ((1, 25.0), (2, 35.0))]
    t = title("ketamine-iv", iv, weight_kg=60)
    assert "each with its own doses · 60 kg median" in t and "weight" not in t
    spray = [{"subject": s, "time_h": 0.0, "amount_mg": a, "route": "intranasal"}
             for s, a in ((1, 56.0), (2, 84.0))]
    t = title("esketamine-nasal", spray)
    assert "each with its own doses median" in t and "kg" not in t
    t = title("ketamine-iv", [dict(r, weight_kg=w) for r, w in zip(iv, (50.0, 90.0))])
    assert "each with its own doses and weight" in t


def test_a_named_course_cut_to_one_session_says_so_in_words():
    """--months 0.05 leaves one session: 'its first session only' (it had been 'its first 1
    session'), in the printed heading and the figure's title alike."""
    from ketasim.plotting import course_description

    for name in ("standard-iv", "spravato"):
        text = course_description(name, ketasim.resolve_doses(name, months=0.05))
        assert text.endswith("), its first session only"), text


def test_compare_peak_labels_after_a_short_closeup_stay_inside_their_panel():
    """A 15-minute close-up: each run's label 'peak ... at 40 min, after this 15-min panel'
    is wider than the panel on one line; it had run over the axis's tick labels to the
    figure's edge. It takes two lines, inside the panel, the labels apart."""
    runs = [run_course("ketamine-iv", "standard-iv", until_h=24 * 8, closeup_h=0.25),
            run_course("esketamine-nasal", "spravato", until_h=24 * 8, closeup_h=0.25)]
    fig = plot_compare(runs, closeup_h=0.25)
    r = _laid_out(fig)
    axz = fig.subfigs[0].axes[0]
    notes = [t for t in axz.texts if t.get_text().startswith("peak ")]
    assert len(notes) == 2
    box = axz.get_window_extent(r)
    boxes = [t.get_window_extent(r) for t in notes]
    for t, b in zip(notes, boxes):
        assert "after this 15-min panel" in t.get_text()
        assert b.x0 >= box.x0 and b.x1 <= box.x1, (t.get_text(), b, box)
    assert boxes[1].y1 <= boxes[0].y0 + 1
    plt.close(fig)


def test_a_course_drawn_on_a_coarse_grid_says_its_curves_pass_below_the_peaks():
    """A result on a daily grid draws the whole course as a flat line under the exact peak
    markers: the panel says why and what draws the curves (it had said nothing). On the
    course's own grid (every 15 minutes and at each infusion's end) and on a nasal course's,
    whose peaks fall between grid times by a few per cent, there is no such note."""
    import matplotlib
    import matplotlib.pyplot as plt

    from ketasim.courses import resolve_doses
    from ketasim.plotting import plot_course, run_course

    def texts(fig):
        return " ".join(t.get_text() for t in fig.findobj(matplotlib.text.Text))

    days = np.arange(0.0, 24.0 * 60 + 1e-9, 24.0)
    fig = plot_course(ketasim.simulate("ketamine-iv", "standard-iv", days))
    assert "curves drawn at the output grid's times (every 24 h), below the peaks" in texts(fig)
    for model, course in (("ketamine-iv", "standard-iv"), ("esketamine-nasal", "spravato")):
        fig = plot_course(run_course(model, resolve_doses(course, months=1)))
        assert "below the peaks" not in texts(fig), model
    plt.close("all")
