"""Event-time semantics that survive floating point: an output time and a dose time that agree
to rounding are one instant; results never depend on the horizon; long runs in pieces equal one
run."""

import _models
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ketasim
from ketasim import engine


def one_cpt():
    return _models.one_cpt(V=100.0, CL=10.0, observe=True)


def test_dose_at_0_9_on_a_0_3_grid_reports_the_value_after_the_dose():
    t = ketasim.time_grid(1.5, 0.3)
    assert t[3] != 0.9          # 3 x 0.3 < 0.9 in floating point
    r = ketasim.simulate(one_cpt(), ketasim.Doses.single(10.0, "iv", time_h=0.9), t)
    assert r.concentration("plasma")[3] == pytest.approx(100.0, rel=1e-12)  # 10 mg / 100 L


@settings(max_examples=60, deadline=None)
@given(step=st.floats(1e-3, 5.0), k=st.integers(1, 400))
def test_value_at_a_dose_time_equals_the_value_just_after(step, k):
    t = ketasim.time_grid(step * (k + 3), step)
    dose_t = step * k          # computed differently from the grid's own t[k]
    r = ketasim.simulate(one_cpt(), ketasim.Doses.single(10.0, "iv", time_h=dose_t), t)
    c = r.concentration("plasma", "mg/L")
    i = int(np.argmin(np.abs(t - dose_t)))
    assert c[i] == pytest.approx(0.1, rel=1e-9)
    assert c[i - 1] == 0.0


@settings(max_examples=30, deadline=None)
@given(dur=st.floats(1e-13, 2.0), mid=st.floats(0.01, 0.99), until=st.sampled_from(
    [24.0, 1e3, 1e6]))
def test_results_do_not_depend_on_the_horizon(dur, mid, until):
    """A short infusion with an unrelated event inside it delivers the same mass whatever the
    last output time."""
    m = ketasim.load_model("esketamine-iv")
    d = ketasim.Doses([5.0, 5.0 + dur * mid], [10.0, 1.0], ["iv", "iv"], [dur, 0.0])
    t = [0.0, 4.0, 6.0 + dur, 30.0]
    a = ketasim.simulate(m, d, t, amounts=True)
    b = ketasim.simulate(m, d, t + [until + 30.0], amounts=True)
    np.testing.assert_allclose(b.data[0, :, :4], a.data[0], rtol=1e-12, atol=1e-15)


def test_long_single_subject_runs_in_pieces(monkeypatch):
    m = ketasim.load_model("ketamine-iv")
    d = ketasim.standard_iv_course(months=1)
    t = ketasim.time_grid(24 * 30, 0.05)
    whole = ketasim.simulate(m, d, t)
    monkeypatch.setattr(engine, "CHUNK_WORK", 20_000)   # pieces of about 1000 times
    pieces = ketasim.simulate(m, d, t)
    np.testing.assert_array_equal(pieces.data, whole.data)


def test_nominal_grid_step_is_used_only_for_uniform_grids():
    h, u_end = engine._nominal_step(ketasim.time_grid(100, 0.1))
    assert h == pytest.approx(0.1, rel=1e-12) and u_end == 1001
    assert engine._nominal_step(np.array([0.0, 1.0, 3.0])) == (-1.0, 0)
    assert engine._nominal_step(np.array([0.0, 1.0, 2.5, 3.0])) == (-1.0, 0)
    # uniform but for the last time (an end that is not a whole number of steps): the
    # uniform part keeps its step
    t = np.r_[np.arange(0.0, 182.0 + 0.5, 1.0), 182.625]
    assert engine._nominal_step(t) == (1.0, t.size - 1)
    # simulate learns it in the same pass as its checks of the grid: the same answer
    from ketasim import _kernels
    rng = np.random.default_rng(3)
    grids = [ketasim.time_grid(100, 0.1), ketasim.time_grid(4320, 1 / 60, start_h=7.0),
             np.array([0.0, 1.0, 3.0]), np.array([2.0, 2.0, 2.0]), np.array([0.0, 5.0]),
             np.sort(rng.uniform(0, 50, 200)), np.r_[ketasim.time_grid(10, 0.5), 10.0 + 1e-9]]
    for t in grids:
        kind, _, uniform = _kernels.times_fault(t)
        assert kind == 0
        assert engine._nominal_step(t, uniform) == engine._nominal_step(t)


def test_a_grid_uniform_but_for_its_last_time():
    """The uniform part of such a grid runs in blocks; its values equal those on the uniform
    part alone, and the last value equals that of a grid that was never uniform."""
    m = ketasim.load_model("ketamine-iv")
    d = ketasim.standard_iv_course(months=1)
    uni = ketasim.time_grid(24 * 30, 0.25)
    t = np.r_[uni, uni[-1] + 0.1]
    full = ketasim.simulate(m, d, t)
    part = ketasim.simulate(m, d, uni)
    scale = np.abs(part.data).max(axis=2, keepdims=True)
    assert np.all(np.abs(full.data[..., :-1] - part.data) <= 1e-13 * scale)
    never = np.r_[uni[:-1:7], uni[-1], uni[-1] + 0.1]         # steps 1.75 h, then 0.5, 0.1
    assert engine._nominal_step(never)[0] == -1.0
    last = ketasim.simulate(m, d, never).data[..., -1]
    np.testing.assert_allclose(full.data[..., -1], last, rtol=1e-9, atol=1e-14)


def test_float32_output_is_the_float64_result_rounded():
    m = ketasim.load_model("esketamine-nasal")
    d = ketasim.spravato_course(months=1)
    t = ketasim.time_grid(24 * 30, 0.1)
    a = ketasim.simulate(m, d, t)
    b = ketasim.simulate(m, d, t, dtype="float32")
    assert b.data.dtype == np.float32
    np.testing.assert_array_equal(b.data, a.data.astype(np.float32))
    with pytest.raises(ketasim.KetasimInputError, match="dtype"):
        ketasim.simulate(m, d, t, dtype="int8")


def test_infusion_cut_inside_a_grid_interval_is_shift_invariant():
    """A 40-minute infusion on an hourly grid ends inside an interval; that piece is taken as
    exactly 2/3 of the step whatever the clock reads, so the same dose at 48 h and at 4,000 h
    gives the same curve (to rounding), and both match the one-compartment closed form."""
    m = _models.one_cpt(V=50.0, CL=10.0)
    k, V, dur, amt = 10.0 / 50.0, 50.0, 2.0 / 3.0, 35.0
    curves = []
    for t0 in (48.0, 4000.0):
        t = ketasim.time_grid(t0 + 24.0, 1.0)
        r = ketasim.simulate(m, ketasim.Doses.single(amt, "iv", time_h=t0, duration_h=dur), t)
        s = t[t >= t0] - t0
        c = r.concentration("central", "mg/L")[t >= t0]
        rate = amt / dur
        exact = np.where(s <= dur, rate / (k * V) * (1 - np.exp(-k * s)),
                         rate / (k * V) * (1 - np.exp(-k * dur)) * np.exp(-k * (s - dur)))
        np.testing.assert_allclose(c, exact, rtol=1e-12, atol=1e-15)
        curves.append(c)
    np.testing.assert_allclose(curves[0], curves[1], rtol=1e-12)


def test_block_path_cuts_at_an_event_where_single_steps_do(monkeypatch):
    """On a uniform grid the outputs run in blocks that stop at the next event: a bolus a few
    ulp after an output time belongs to that instant (the output is the value after it), one
    further away to the next interval, wherever it falls in a block. The block path and
    single steps agree on the side of every dose (a misplaced cut is off by the dose)."""
    t = np.arange(3000) * 0.1          # (0.1 is not a binary fraction: times carry rounding)
    ks = [64, 70, 127, 128, 129, 200, 255, 256, 300, 1000, 2047, 2999]
    rows = []
    for k, off in zip(ks, [-3, -1, 0, 1, 2, 3, 5, 8, 40, 0, 2, -2]):
        tk = t[k]
        for _ in range(abs(off)):
            tk = np.nextafter(tk, np.inf if off > 0 else -np.inf)
        rows.append(tk)
    d = ketasim.Doses.from_records([{"time_h": s, "amount_mg": 10.0 + i, "route": "iv"}
                                    for i, s in enumerate(rows)])
    m = one_cpt()
    blocks = ketasim.simulate(m, d, t, outputs=["central"]).data[0, 0]
    assert engine.block_length(1, 1, t.size, 0.1) > 1
    monkeypatch.setattr(engine, "block_length", lambda *a: 1)
    steps = ketasim.simulate(m, d, t, outputs=["central"]).data[0, 0]
    np.testing.assert_allclose(blocks, steps, rtol=1e-12, atol=0)
    # and each output is on the side the 4-ulp rule puts it: the value just after a dose at
    # most a few ulp past its output time, the value before for one 40 ulp past
    for k, s in zip(ks, rows):
        jump = blocks[k] - (blocks[k - 1] * np.exp(-0.1 * 0.1) if k else 0.0)
        after = s <= t[k] + 4 * 2.220446049250313e-16 * max(1.0, abs(t[k]))
        assert (jump > 0.05) == after, (k, s - t[k])
