"""Property-based tests (hypothesis) over random networks, dose tables and output grids.

Invariants of an exact linear solver: amounts never go negative, mass is conserved (with unit
yields), outputs scale with the dose and add up over dose tables, the order of the dose table and
the choice of output grid do not matter, and results are identical with or without the JIT, with
1 or 2 threads, and whether subjects are simulated together or one at a time.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ketasim

from _netgen import delivered, dose_rows, grids, mass_rows, networks, run_no_jit

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                       HealthCheck.data_too_large])


def sim(spec, rows, times, **kw):
    return ketasim.simulate(ketasim.Model.from_dict(spec), ketasim.Doses.from_records(rows),
                            times, **kw)


def peak(a):
    return max(float(np.max(np.abs(a))), 1e-300)


@st.composite
def cases(draw, unit_yield=False, t_end=24.0):
    spec = draw(networks(unit_yield=unit_yield))
    return spec, draw(dose_rows(spec, t_end=t_end)), draw(grids(t_end))


@settings(max_examples=40, **SETTINGS)
@given(cases(unit_yield=True))
def test_nonnegative_amounts_and_mass_balance(case):
    spec, rows, times = case
    model = ketasim.Model.from_dict(spec)
    r = ketasim.simulate(model, ketasim.Doses.from_records(rows), times, amounts=True)
    scale = peak(r.data)
    assert np.all(r.data >= -1e-12 * scale), "a negative amount or concentration"
    mass = r.data[0, mass_rows(model, r), :].sum(axis=0)
    ref = delivered(spec, rows, times)
    np.testing.assert_allclose(mass, ref, rtol=0, atol=1e-9 * max(ref.max(), 1e-300))


@settings(max_examples=25, **SETTINGS)
@given(cases(), st.floats(1e-3, 1e3))
def test_nonnegative_with_yields_and_dose_linearity(case, factor):
    spec, rows, times = case
    base = sim(spec, rows, times, amounts=True)
    assert np.all(base.data >= -1e-12 * peak(base.data))
    scaled_rows = [dict(r, amount_mg=r["amount_mg"] * factor) for r in rows]
    scaled = sim(spec, scaled_rows, times, amounts=True)
    np.testing.assert_allclose(scaled.data, factor * base.data, rtol=0,
                               atol=1e-10 * factor * peak(base.data))


@settings(max_examples=25, **SETTINGS)
@given(cases(), st.data())
def test_superposition(case, data):
    spec, rows, times = case
    split = data.draw(st.lists(st.booleans(), min_size=len(rows), max_size=len(rows)))
    a = [r for r, s in zip(rows, split) if s]
    b = [r for r, s in zip(rows, split) if not s]
    whole = sim(spec, rows, times, amounts=True).data
    parts = sum(sim(spec, x, times, amounts=True).data for x in (a, b))
    np.testing.assert_allclose(whole, parts, rtol=0, atol=1e-10 * peak(whole))


@settings(max_examples=25, **SETTINGS)
@given(cases(), st.randoms(use_true_random=False))
def test_dose_table_order_and_addl_expansion_do_not_matter(case, rnd):
    spec, rows, times = case
    ref = sim(spec, rows, times, amounts=True).data
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    got = sim(spec, shuffled, times, amounts=True).data
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * peak(ref))
    # addl/ii_h repeats written out as separate rows give the same result
    explicit = ketasim.expand(ketasim.Doses.from_records(shuffled))
    got = ketasim.simulate(ketasim.Model.from_dict(spec), explicit, times, amounts=True).data
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * peak(ref))


@settings(max_examples=25, **SETTINGS)
@given(cases(), grids())
def test_adding_output_times_does_not_change_the_others(case, extra):
    """The solution is exact, so it cannot depend on the output grid."""
    spec, rows, times = case
    ref = sim(spec, rows, times).data
    both = np.union1d(times, extra)
    got = sim(spec, rows, both).data[:, :, np.searchsorted(both, times)]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10 * peak(ref))


@settings(max_examples=20, **SETTINGS)
@given(cases(), st.data())
def test_population_equals_one_subject_at_a_time_and_threads_do_not_matter(case, data):
    spec, rows, times = case
    names = sorted(spec["parameters"])
    n = 3
    varied = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))
    fac = data.draw(st.lists(st.floats(0.5, 2.0), min_size=n * len(varied),
                             max_size=n * len(varied)))
    params = {}
    for j, p in enumerate(varied):
        v = np.asarray(fac[j * n:(j + 1) * n]) * spec["parameters"][p]
        if p.startswith("F"):       # fractions: a split part's two halves stay <= 1 in sum
            v = np.minimum(v, 0.5 if p[-1] in "ab" else 1.0)
        params[p] = v
    wts = np.asarray(data.draw(st.lists(st.floats(40.0, 120.0), min_size=n, max_size=n)))
    model = ketasim.Model.from_dict(spec)
    doses = ketasim.Doses.from_records(rows)
    together = ketasim.simulate(model, doses, times, params=params, weight_kg=wts,
                                amounts=True, threads=2)
    assert together.data.shape[0] == n and together.population
    one_thread = ketasim.simulate(model, doses, times, params=params, weight_kg=wts,
                                  amounts=True, threads=1)
    np.testing.assert_array_equal(one_thread.data, together.data)
    for s in range(n):
        single = ketasim.simulate(model, doses, times,
                                  params={p: float(v[s]) for p, v in params.items()},
                                  weight_kg=float(wts[s]), amounts=True, threads=1)
        np.testing.assert_array_equal(single.data[0], together.data[s])


@pytest.mark.slow
@settings(max_examples=2, **SETTINGS)
@given(st.lists(cases(t_end=12.0), min_size=4, max_size=4))
def test_identical_without_jit(batch):
    """NUMBA_DISABLE_JIT=1 runs the same kernels as plain Python: same numbers (one subprocess
    per batch of four random cases)."""
    payload = [dict(spec=s, rows=r, times=t, amounts=True) for s, r, t in batch]
    py = run_no_jit(payload)
    for (spec, rows, times), (names, data) in zip(batch, py):
        jit = sim(spec, rows, times, amounts=True)
        assert names == jit.names
        np.testing.assert_allclose(data, jit.data, rtol=0, atol=1e-13 * peak(jit.data))


@pytest.mark.slow
def test_presets_identical_without_jit_population_and_pd():
    """Presets with occupancy and the schematic response, a 2-subject population, no JIT."""
    times = ketasim.time_grid(6.0, 0.25)
    cases_ = [dict(preset="esketamine-iv", rows=[dict(time_h=0.5, amount_mg=20.0, route="iv",
                                                       duration_h=0.6667)],
                   times=times, params={"KEL": [0.9, 1.3]}, weight_kg=[60.0, 90.0]),
              dict(preset="esketamine-nasal", rows=[dict(time_h=0.0, amount_mg=56.0,
                                                          route="intranasal")],
                   times=times)]
    py = run_no_jit(cases_)
    for c, (names, data) in zip(cases_, py):
        jit = ketasim.simulate(c["preset"], ketasim.Doses.from_records(c["rows"]), times,
                               params={k: np.asarray(v) for k, v in c.get("params", {}).items()}
                               or None, weight_kg=np.asarray(c.get("weight_kg", 70.0)))
        assert names == jit.names
        np.testing.assert_allclose(data, jit.data, rtol=1e-12, atol=1e-15)


@given(lo=st.integers(0, 50), n=st.integers(1, 5000), k=st.integers(1, 8),
       part=st.integers(1, 2000))
@settings(max_examples=300, deadline=None)
def test_subject_ranges_cover_all_subjects_in_balanced_parts(lo, n, k, part):
    """Every subject in exactly one range of at most ``part``; on several threads the ranges
    are a multiple of the threads (or one subject each) and within one subject of each
    other in size, so no thread waits out a last range alone (11 equal ranges on 2 threads
    had left one idle for a tenth of the run)."""
    from ketasim.engine import _ranges

    k = min(k, n)
    e = _ranges(lo, lo + n, k, part)
    sizes = np.diff(e)
    assert e[0] == lo and e[-1] == lo + n and np.all(sizes >= 1)
    assert sizes.max() <= part
    if k > 1:
        assert sizes.max() - sizes.min() <= 1
        assert sizes.size % k == 0 or sizes.size == n
        assert sizes.max() <= -(-n // (4 * k))       # about four ranges a thread at least
